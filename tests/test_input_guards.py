"""Issue 21, cases 1, 2 and 4: inputs that used to give a wrong or missing number with exit status 0.

1. masks stored 0/1 (LaMa), masks whose gray levels never reach 128, empty and full masks: refused by every entry
   point (`misato inpaint`, `misato score`, `misato run`, the Python APIs), naming the file; 0/1 masks read with
   `--mask-binary-01`, degenerate ones kept with `--allow-degenerate-masks`.
2. a folder of 0000.png... files is not MISATO unless its layout or its `misato build` manifest says so.
4. inpainter outputs outside [0, 1] (or NaN) are refused naming method and sample, or clipped with `--clip-outputs`,
   recorded in the run manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from baselines.base import Inpainter
from baselines.harness import OutputError
from misato.cli import main
from misato.data import dataset_kind, load_dataset
from misato.io import ImageFileError, read_mask
from misato.masks.files import MaskError
from baselines.runner import inpaint_dataset

SIZE = 24
STEMS = ("0000", "0501", "1002")


def _write_set(root: Path, masks: dict[str, np.ndarray] | None = None, stems=STEMS) -> Path:
    """image/ + mask/ PNGs of SIZE x SIZE: smooth colour images, a 0/255 square hole unless `masks` says otherwise."""
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir(parents=True)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for i, stem in enumerate(stems):
        image = np.stack([x * 9 + i * 20, y * 9, (x + y) * 4 + 30], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "image" / f"{stem}.png")
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[6:14, 8:18] = 255
        Image.fromarray((masks or {}).get(stem, mask)).save(root / "mask" / f"{stem}.png")
    return root


def _lama_masks() -> dict[str, np.ndarray]:
    """The same square holes stored 0/1 (LaMa's convention)."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[6:14, 8:18] = 1
    return {stem: mask for stem in STEMS}


def _inpaint(dataset: Path, out: Path, *extra: str) -> int:
    return main(["inpaint", "--method", "telea", "--dataset", str(dataset), "--out", str(out), "--no-progress",
                 *extra])


def _score(dataset: Path, predictions: Path, out: Path, *extra: str) -> int:
    return main(["score", "--dataset", str(dataset), "--predictions", str(predictions), "--method", "m", "--out",
                 str(out), "--metrics", "psnr", "--no-cache", "--bootstrap", "0", "--set-bootstrap", "0", "--device",
                 "cpu", "--no-progress", *extra])


# ---------------------------------------------------------------- case 1: masks


def test_inpaint_refuses_01_masks_naming_the_file_and_the_flag(tmp_path, capsys):
    data = _write_set(tmp_path / "lama", _lama_masks())
    assert _inpaint(data, tmp_path / "run") == 1  # it used to write the ground truth as output and exit 0
    err = capsys.readouterr().err
    assert f"{data / 'mask' / '0000.png'}: looks like a 0/1 mask" in err and "--mask-binary-01" in err
    assert not (tmp_path / "run" / "raw").exists()  # refused before any work

    assert _inpaint(data, tmp_path / "run", "--mask-binary-01") == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dataset"]["mask_binary_01"] is True and manifest["status"] == "complete"
    hole = read_mask(data / "mask" / "0000.png", binary_01=True) == 1
    assert hole.sum() == 80
    truth = np.asarray(Image.open(data / "image" / "0000.png"), np.int16)
    raw = np.asarray(Image.open(tmp_path / "run" / "raw" / "0000.png"), np.int16)
    assert np.abs(raw[hole] - truth[hole]).mean() > 1  # inpainted, not the ground truth copied back


def test_score_names_01_masks_and_reads_them_with_the_flag(tmp_path, capsys):
    data = _write_set(tmp_path / "lama", _lama_masks())
    assert _inpaint(data, tmp_path / "run", "--mask-binary-01") == 0
    assert _score(data, tmp_path / "run" / "raw", tmp_path / "res") == 1
    err = capsys.readouterr().err
    assert "looks like a 0/1 mask" in err and "--mask-binary-01" in err and "has no hole" not in err
    assert _score(data, tmp_path / "run" / "raw", tmp_path / "res", "--mask-binary-01") == 0
    (result,) = tmp_path.joinpath("res").glob("*.json")
    record = json.loads(result.read_text())
    assert record["metrics"]["overall"]["n"] == 3 and record["metrics"]["overall"]["psnr"] < 60  # holes scored
    assert record["dataset"]["mask_binary_01"] is True


@pytest.mark.parametrize("case", ["empty", "faint", "full"])
def test_degenerate_masks_are_refused_by_inpaint_and_score_unless_allowed(tmp_path, capsys, case):
    mask = {"empty": np.zeros((SIZE, SIZE), np.uint8), "faint": np.full((SIZE, SIZE), 0, np.uint8),
            "full": np.full((SIZE, SIZE), 255, np.uint8)}[case]
    if case == "faint":
        mask[4:20, 4:20] = 100  # anti-aliased or a 0-127 scale: never reaches the 128 threshold
    data = _write_set(tmp_path / "d", {"0501": mask})
    path = data / "mask" / "0501.png"
    expected = {"empty": f"{path}: no hole (empty mask)",
                "faint": f"{path}: no hole (empty mask; its gray levels never reach the hole threshold 128 (the "
                         "closest is 100)",
                "full": f"{path}: all hole (full mask"}[case]
    assert _inpaint(data, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert expected in err and "--allow-degenerate-masks" in err
    assert _inpaint(data, tmp_path / "run", "--allow-degenerate-masks") == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dataset"]["empty_masks" if case != "full" else "full_masks"] == ["0501"]
    assert manifest["arguments"]["allow_degenerate_masks"] is True
    assert _score(data, tmp_path / "run" / "raw", tmp_path / "res") == 1
    assert expected in capsys.readouterr().err
    assert _score(data, tmp_path / "run" / "raw", tmp_path / "res", "--allow-degenerate-masks") == 0


def test_python_apis_apply_the_same_rule(tmp_path):
    data = _write_set(tmp_path / "lama", _lama_masks())
    with pytest.raises(MaskError, match=r"(?s)3 mask problem\(s\).*0000.png: looks like a 0/1 mask"):
        inpaint_dataset(load_dataset(data), "telea", tmp_path / "run", progress=False)
    with pytest.raises(ImageFileError, match="looks like a 0/1 mask"):
        read_mask(data / "mask" / "0000.png")  # every reader, not only the entry points
    manifest = inpaint_dataset(load_dataset(data, mask_binary_01=True), "telea", tmp_path / "run", progress=False)
    assert json.loads(manifest.read_text())["num_finished"] == 3
    Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(data / "mask" / "1002.png")
    with pytest.raises(MaskError, match="1002.png: read as a 0/1 mask .* gray levels up to 255"):
        load_dataset(data, mask_binary_01=True).mask_report().require_usable()


def test_run_applies_the_mask_rule_and_flag(tmp_path, capsys):
    data = _write_set(tmp_path / "lama", _lama_masks())
    args = ["run", "--methods", "telea", "--dataset", str(data), "--metrics", "psnr", "--no-cache", "--bootstrap",
            "0", "--set-bootstrap", "0", "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) != 0
    assert "looks like a 0/1 mask" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--mask-binary-01"]) == 0
    (result,) = (tmp_path / "b" / "results").glob("*.json")
    assert json.loads(result.read_text())["metrics"]["overall"]["n"] == 3


def test_study_create_reads_the_runs_masks_as_they_did(tmp_path):
    """`misato study create` opens the runs' dataset with the recorded mask convention (a 0/1 set used to be "not
    the dataset the runs read")."""
    from misato.jobs.study.create import CreateConfig, create_study

    data = _write_set(tmp_path / "lama", _lama_masks())
    for label, spec in (("a", "telea"), ("b", "ns")):
        inpaint_dataset(load_dataset(data, mask_binary_01=True), spec, tmp_path / "runs" / "predictions" / "lama" / label,
                        progress=False)
    study = create_study(CreateConfig(tmp_path / "runs", ("a", "b"), 2, tmp_path / "study"))
    assert len(study.items) == 2 and study.source["dataset"]["kind"] == "custom"


# ---------------------------------------------------------------- case 2: kind


def test_a_folder_of_four_digit_stems_is_custom(tmp_path):
    data = _write_set(tmp_path / "photos")
    dataset = load_dataset(data)
    assert dataset.kind == "custom" and dataset.domains == [] and {s.domain for s in dataset.samples} == {None}
    with pytest.raises(ValueError, match="--kind MISATO: .* is a custom dataset"):
        dataset_kind(dataset, "MISATO")
    assert dataset_kind(dataset, "Places2") == "Places2" and dataset_kind(dataset) == "custom"


def test_score_writes_custom_kind_without_domains(tmp_path, capsys):
    data = _write_set(tmp_path / "photos")
    assert _inpaint(data, tmp_path / "run") == 0
    assert _score(data, tmp_path / "run" / "raw", tmp_path / "res") == 0
    (result,) = tmp_path.joinpath("res").glob("*.json")
    record = json.loads(result.read_text())
    assert record["dataset"]["kind"] == "custom" and record["dataset"]["domains"] == []
    assert record["metrics"].get("per_domain", {}) == {}
    assert _score(data, tmp_path / "run" / "raw", tmp_path / "res2", "--kind", "MISATO") == 1
    assert "is a custom dataset" in capsys.readouterr().err


def test_misato_by_layout_or_manifest(tmp_path):
    release = tmp_path / "MISATO"
    _write_set(release / "512")
    by_root, by_folder = load_dataset(release), load_dataset(release / "512")
    for dataset in (by_root, by_folder):
        assert dataset.kind == "MISATO" and dataset.domains == ["landscape", "indoor", "building"]
        assert (dataset.name, dataset.root, dataset.resolution) == ("MISATO-512", release, 512)
    assert by_root.content_hash() == by_folder.content_hash()
    # a folder named 512 whose files are not MISATO ids is the user's own
    assert load_dataset(_write_set(tmp_path / "mine" / "512", stems=("a", "b"))).kind == "custom"

    from misato.builder.export import MANIFEST_FORMAT, MANIFEST_NAME

    built = _write_set(tmp_path / "places")
    (built / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_FORMAT, "dataset": "places2", "files": {}}))
    assert load_dataset(built).kind == "Places2" and load_dataset(built).domains == []
    with pytest.raises(ValueError, match="is a Places2 dataset"):
        dataset_kind(load_dataset(built), "MISATO")
    (built / MANIFEST_NAME).write_text(json.dumps({"schema": "misato.run/1"}))  # another tool's manifest: no say
    assert load_dataset(built).kind == "custom"


# ---------------------------------------------------------------- case 4: inpainter outputs


class OffRange(Inpainter):
    """Works in [-1, 1] and forgets to convert back (or returns NaN with `nan=True`)."""

    name: ClassVar[str] = "off-range"

    def __init__(self, device="cpu", nan: bool = False, **options):
        super().__init__(device, nan=nan, **options)
        self.nan = nan

    def inpaint(self, images, masks, seeds):
        out = images * 2 - 1
        if self.nan:
            out[-1, 0, 0, 0] = float("nan")
        return out


def test_out_of_range_outputs_are_refused_naming_method_and_sample(tmp_path):
    data = _write_set(tmp_path / "d")
    with pytest.raises(OutputError, match=r"off-range: the output for sample '0000' has \d+\.\d% of its values "
                                          r"outside \[0, 1\] \(min -1, max .*--clip-outputs"):
        inpaint_dataset(load_dataset(data), OffRange(), tmp_path / "run", progress=False)
    assert not list((tmp_path / "run" / "raw").glob("*.png"))  # nothing clipped silently
    with pytest.raises(OutputError, match="NaN or infinite values for sample\\(s\\) '0501'"):
        inpaint_dataset(load_dataset(data), OffRange(nan=True), tmp_path / "nan", batch_size=2, progress=False)


def test_clipping_only_when_asked_and_recorded(tmp_path, capsys):
    data = _write_set(tmp_path / "d")
    manifest = json.loads(inpaint_dataset(load_dataset(data), OffRange(), tmp_path / "run", progress=False,
                                          clip_outputs=True).read_text())
    assert manifest["arguments"]["clip_outputs"] is True
    assert manifest["value_policy"]["beyond_tolerance"] == "clip"
    assert all(record["out_of_range"] > 0.3 for record in manifest["samples"].values())

    plugin = tmp_path / "plugin.py"
    plugin.write_text("import torch\nfrom baselines.base import Inpainter\n\n\nclass Off(Inpainter):\n"
                      "    name = 'off'\n\n    def inpaint(self, images, masks, seeds):\n"
                      "        return images * 2 - 1\n")
    args = ["inpaint", "--method", f"{plugin}:Off", "--dataset", str(data), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 1
    assert "off: the output for sample '0000'" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "cli2"), "--clip-outputs"]) == 0
    recorded = json.loads((tmp_path / "cli2" / "manifest.json").read_text())
    assert recorded["value_policy"]["beyond_tolerance"] == "clip" and recorded["arguments"]["clip_outputs"] is True


def test_run_refuses_or_clips_like_inpaint(tmp_path, capsys):
    data = _write_set(tmp_path / "d")
    plugin = tmp_path / "plugin.py"
    plugin.write_text("from baselines.base import Inpainter\n\n\nclass Off(Inpainter):\n    name = 'off'\n\n"
                      "    def inpaint(self, images, masks, seeds):\n        return images * 2 - 1\n")
    args = ["run", "--methods", f"off={plugin}:Off", "--dataset", str(data), "--metrics", "psnr", "--no-cache",
            "--bootstrap", "0", "--set-bootstrap", "0", "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) != 0
    assert "off: the output for sample '0000'" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--clip-outputs"]) == 0
    manifest = json.loads((tmp_path / "b" / "predictions" / "d" / "off" / "manifest.json").read_text())
    assert manifest["value_policy"]["beyond_tolerance"] == "clip"
