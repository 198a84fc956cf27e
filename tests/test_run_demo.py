"""`misato run`, `misato demo` and the embedded default dataset (CPU, offline, no pretrained weights)."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from misato.cli import main as cli_main
from misato.data import load_dataset
from misato.embedded import SOURCES, build_embedded, center_crop_box, load_embedded
from misato.io import read_mask, read_rgb, sha256_file

PIXEL_METRICS = ("psnr", "ssim", "grad_error")


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- embedded dataset


def test_embedded_is_deterministic_and_matches_its_manifest(tmp_path):
    first = build_embedded(tmp_path / "a", size=64)
    second = build_embedded(tmp_path / "b", size=64)
    hashes = tree_hashes(first)
    assert hashes == tree_hashes(second)
    assert len([k for k in hashes if k.startswith("image/")]) == len(SOURCES)

    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["parameters"]["size"] == 64 and manifest["parameters"]["resize_filter"].endswith("LANCZOS")
    for sample in manifest["samples"]:
        image = read_rgb(first / "image" / f"{sample['stem']}.png")
        mask = read_mask(first / "mask" / f"{sample['stem']}.png")
        assert image.shape == (64, 64, 3)
        assert sample["image_sha256"] == hashes[f"image/{sample['stem']}.png"]
        assert sample["mask_sha256"] == hashes[f"mask/{sample['stem']}.png"]
        assert sample["hole_ratio"] == pytest.approx(float(mask.mean()), abs=1e-6)
        assert 0.2 <= sample["hole_ratio_at_512"] <= 0.8  # MISATO's range, where the mask is drawn
        assert abs(mask.mean() - sample["hole_ratio_at_512"]) < 0.05  # resizing keeps the hole area
        left, top, right, bottom = sample["crop_box"]
        assert right - left == bottom - top == min(sample["source_shape"][:2])


def test_embedded_crop_and_resize_agree_with_a_direct_computation(tmp_path):
    folder = build_embedded(tmp_path / "e", size=96)
    source = next(s for s in SOURCES if s.name == "coffee")  # 400 x 600: a non-square photo
    photo = source.load()
    h, w = photo.shape[:2]
    side = min(h, w)
    crop = photo[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    expected = np.asarray(Image.fromarray(crop).resize((96, 96), Image.Resampling.LANCZOS))
    stem = f"{SOURCES.index(source):04d}_coffee"
    np.testing.assert_array_equal(read_rgb(folder / "image" / f"{stem}.png"), expected)
    assert center_crop_box(h, w) == ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)


def test_embedded_is_reused_custom_and_guarded(tmp_path, monkeypatch):
    monkeypatch.setenv("MISATO_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_embedded(size=48)
    assert dataset.root == tmp_path / "cache" / "embedded" / "48"
    assert dataset.name == "embedded-48" and dataset.domains == []  # no MISATO domains: a custom set
    assert load_dataset(dataset.root).domains == []  # also when opened as a plain folder
    image = dataset.samples[0].image_path
    before = image.stat().st_mtime_ns
    load_embedded(size=48)
    assert image.stat().st_mtime_ns == before  # an up-to-date build is not rewritten
    image.write_bytes(b"corrupted")
    load_embedded(size=48)
    assert sha256_file(image) == json.loads((dataset.root / "manifest.json").read_text())["samples"][0]["image_sha256"]

    foreign = tmp_path / "someone-elses"
    (foreign / "image").mkdir(parents=True)
    (foreign / "image" / "keep.png").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="no embedded-dataset manifest"):
        build_embedded(foreign, size=48)
    assert (foreign / "image" / "keep.png").read_bytes() == b"not ours"


# ---------------------------------------------------------------- misato demo


def test_demo_end_to_end_offline(tmp_path, capsys):
    out = tmp_path / "demo"
    start = time.perf_counter()
    code = cli_main(["demo", "--out", str(out), "--embedded-size", "128", "--no-progress"])
    seconds = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert seconds < 90, f"demo at 128 px took {seconds:.0f} s"

    for method in ("telea", "ns", "biharmonic"):
        record = json.loads((out / "results" / f"{method}__embedded-128__comod.json").read_text())
        assert record["dataset"]["kind"] == "custom" and record["dataset"]["n_images"] == len(SOURCES)
        overall = record["metrics"]["overall"]
        for metric in PIXEL_METRICS:
            assert math.isfinite(overall[metric]), (method, metric, overall)
        # No weights are present (conftest isolates the weights folders): every network metric is listed.
        assert {"lpips", "fid", "u_ids", "p_ids", "kid", "clip_score"} <= set(record["unavailable"])
        for reason in record["unavailable"].values():
            assert "misato weights fetch" in reason
    assert not (out / "results" / "lama__embedded-128__comod.json").exists()  # lama's weights are absent

    board = out / "leaderboard"
    for name in ("leaderboard.md", "leaderboard.tex", "report.html", "table1.csv"):
        assert (board / name).is_file() and (board / name).stat().st_size > 0, name
    assert "telea" in (board / "leaderboard.md").read_text()
    summary = json.loads((out / "run.json").read_text())
    assert [o["status"] for o in summary["outcomes"]] == ["ok", "ok", "ok"]
    assert str(board / "report.html") in printed
    assert "misato weights fetch inception-tf" in printed and "misato weights fetch lama-big" in printed


class TinyLama(torch.nn.Module):
    """big-lama's TorchScript signature: (image [0, 1] (B, 3, H, W), mask 1 = hole (B, 1, H, W)) -> image."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return image * (1 - mask) + mask * 0.5


def test_demo_adds_lama_when_its_weights_resolve(tmp_path, capsys):
    weights = tmp_path / "tiny-lama.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, still supported
        torch.jit.script(TinyLama()).save(str(weights))
    out = tmp_path / "demo"
    assert cli_main(["demo", "--out", str(out), "--embedded-size", "64", "--no-progress", "--weight", f"lama-big={weights}"]) == 0
    assert "lama included" in capsys.readouterr().out
    record = json.loads((out / "results" / "lama__embedded-64__comod.json").read_text())
    assert math.isfinite(record["metrics"]["overall"]["psnr"])
    raw_path = next((out / "predictions" / "embedded-64" / "lama" / "raw").glob("*.png"))
    hole = read_mask(Path(record["dataset"]["root"]) / "mask" / raw_path.name) == 1
    assert hole.any() and np.all(read_rgb(raw_path)[hole] == 128)  # the stand-in's 0.5 grey, rint(127.5)


# ---------------------------------------------------------------- misato run

BROKEN_PLUGIN = '''
from baselines.base import Inpainter


class Broken(Inpainter):
    name = "broken"

    def inpaint(self, images, masks, seeds):
        raise RuntimeError("this plug-in always fails")
'''


def test_run_goes_on_when_methods_fail(tmp_path, tiny_dataset, capsys):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(BROKEN_PLUGIN)
    out = tmp_path / "run"
    args = ["run", "--methods", f"telea,bad={plugin}:Broken,lama", "--dataset", str(tiny_dataset),
            "--dataset", "embedded", "--embedded-size", "64", "--limit", "3", "--out", str(out), "--no-progress"]
    assert cli_main(args) == 1  # a failed method fails the job; the others were still run, scored and tabulated
    printed = capsys.readouterr().out

    summary = json.loads((out / "run.json").read_text())
    assert summary["status"] == "finished" and summary["failed"] == 4
    outcomes = {(o["dataset"], o["method"]): o for o in summary["outcomes"]}
    assert set(outcomes) == {(d, m) for d in ("data", "embedded-64") for m in ("telea", "bad", "lama")}
    for dataset in ("data", "embedded-64"):
        ok = outcomes[(dataset, "telea")]
        assert ok["status"] == "ok" and Path(ok["result_json"]).is_file()
        record = json.loads(Path(ok["result_json"]).read_text())
        assert record["dataset"]["n_images"] == 3 and math.isfinite(record["metrics"]["overall"]["psnr"])
        assert len(list((out / "predictions" / dataset / "telea" / "composite").glob("*.png"))) == 3
        bad, lama = outcomes[(dataset, "bad")], outcomes[(dataset, "lama")]
        assert (bad["status"], bad["stage"]) == ("failed", "inpaint") and "always fails" in bad["error"]
        assert lama["status"] == "failed" and lama["error_type"] == "WeightsNotFoundError"
        assert "misato weights fetch lama-big" in lama["error"]
    kinds = {json.loads(p.read_text())["dataset"]["kind"] for p in (out / "results").glob("*.json")}
    assert kinds == {"MISATO", "custom"}  # the tiny set has MISATO stems, the embedded set is custom
    assert (out / "leaderboard" / "report.html").is_file() and (out / "leaderboard" / "leaderboard.md").is_file()
    assert "always fails" in printed and "misato weights fetch lama-big" in printed
    assert printed.rstrip().splitlines()[-1].startswith("    ")  # the failures (with their errors) come last
    board = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "| bad | measured | failed |" in board and "| lama | measured | failed |" in board

    # a rerun: telea's finished samples are reused, not recomputed; still exit status 1.
    composite = out / "predictions" / "data" / "telea" / "composite" / "0000.png"
    before = composite.stat().st_mtime_ns
    assert cli_main(args) == 1
    assert composite.stat().st_mtime_ns == before


def test_run_fails_when_every_method_fails(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    code = cli_main(["run", "--methods", f"{tmp_path / 'missing.py'}:Nothing,lama", "--dataset", str(tiny_dataset),
                     "--out", str(out), "--no-progress"])
    assert code == 1
    summary = json.loads((out / "run.json").read_text())
    assert [o["status"] for o in summary["outcomes"]] == ["failed", "failed"]
    assert summary["leaderboard"] == {} and not (out / "leaderboard").exists()


def test_method_and_dataset_labels():
    from misato.jobs.pipeline import parse_dataset, parse_methods

    entries = parse_methods(["telea,mine=plugins/m.py:MyInpainter", "pkg.mod:Other,folder:preds/mat/"])
    assert [(e.label, e.spec) for e in entries] == [
        ("telea", "telea"), ("mine", "plugins/m.py:MyInpainter"), ("Other", "pkg.mod:Other"), ("mat", "folder:preds/mat/"),
    ]
    with pytest.raises(ValueError, match="LABEL=SPEC"):
        parse_methods(["a.py:Model,b.py:Model"])
    assert parse_dataset("places=data/places").label == "places"
    assert parse_dataset("embedded").source == "embedded"


def test_run_passes_weights_to_the_scorer(tmp_path, tiny_dataset, random_weights):
    out = tmp_path / "run"
    weights = [f"--weight={key}={random_weights[key]}" for key in ("alexnet-torchvision", "lpips-alex-lin")]
    code = cli_main(["run", "--methods", "ns", "--dataset", str(tiny_dataset), "--out", str(out), "--metrics",
                     "lpips,psnr", "--no-progress", *weights])
    assert code == 0
    record = json.loads((out / "results" / "ns__data__comod.json").read_text())
    assert record["unavailable"] == {}
    assert set(record["weights"]) == {"alexnet-torchvision", "lpips-alex-lin"}
    assert math.isfinite(record["metrics"]["overall"]["lpips"]) and record["metrics"]["overall"]["lpips"] > 0


def test_run_refuses_two_datasets_of_one_name_before_any_work(tmp_path, tiny_dataset):
    import shutil

    other = shutil.copytree(tiny_dataset, tmp_path / "elsewhere" / "data")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="LABEL=PATH"):
        cli_main(["-v", "run", "--methods", "telea", "--dataset", str(tiny_dataset), "--dataset", str(other),
                  "--out", str(out), "--no-progress"])
    assert not (out / "predictions").exists()
    code = cli_main(["run", "--methods", "telea", "--dataset", str(tiny_dataset), "--dataset", f"copy={other}",
                     "--dataset", str(tmp_path / "missing"), "--out", str(out), "--no-progress"])
    assert code == 1  # the missing folder fails its own runs only (the others are run and scored)
    statuses = {o["dataset"]: o["status"] for o in json.loads((out / "run.json").read_text())["outcomes"]}
    assert statuses == {"data": "ok", "copy": "ok", str(tmp_path / "missing"): "failed"}
