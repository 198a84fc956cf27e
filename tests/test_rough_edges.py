"""Rough edges a new user hit (issue 10): values that must stay valid, settings checked before any work."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from evaluators.scoring import ScoreConfig, score
from misato.cli import main
from misato.data import load_dataset


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("misato 0.")


def _perfect_predictions(dataset_root, out, noisy: int = 0):
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(sorted((dataset_root / "image").iterdir())):
        image = np.asarray(Image.open(path).convert("RGB")).copy()
        if i < noisy:
            image[0, 0] = 255 - image[0, 0]
        Image.fromarray(image).save(out / path.name)
    return out


@pytest.mark.parametrize("noisy", [0, 1])
def test_infinite_psnr_is_left_out_of_the_mean_and_noted(noisy, tiny_dataset, tmp_path):
    predictions = _perfect_predictions(tiny_dataset, tmp_path / "pred", noisy)
    result = score(load_dataset(tiny_dataset), predictions, "perfect", tmp_path / "results",
                   ScoreConfig(metrics=("psnr", "ssim"), device="cpu", paste_back=False))
    text = result.json_path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    record = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the result"))
    overall = record["metrics"]["overall"]
    if noisy:
        assert overall["psnr"] > 40 and record["notes"]["overall.psnr"] == (
            "7 infinite (prediction identical to the ground truth) of 8 per-image values left out; the mean is "
            "over the other 1")
    else:
        assert overall["psnr"] is None and record["notes"]["overall.psnr"].endswith("left out: no mean")
    assert overall["ssim"] == pytest.approx(1.0, abs=1e-3)
    from leaderboard.results import load_result
    from leaderboard.tables import build_metrics_table

    table = build_metrics_table([load_result(result.json_path)])
    assert any("PSNR of perfect" in line and "infinite" in line for line in table.notes)


def test_device_is_checked_before_any_work(tiny_dataset, tiny_predictions, tmp_path, capsys):
    args = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
            "--out", str(tmp_path / "r1")]
    assert main([*args, "--device", "tpu"]) == 1
    assert "--device 'tpu'" in capsys.readouterr().err and not (tmp_path / "r1").exists()
    if not torch.cuda.is_available():
        assert main(["inpaint", "--method", "telea", "--dataset", str(tiny_dataset), "--out", str(tmp_path / "o"),
                     "--device", "cuda"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_weight_flag_with_an_unknown_key_or_missing_file_fails_before_any_work(tiny_dataset, tiny_predictions, tmp_path,
                                                                                capsys):
    """A typo in --weight's key or path used to be ignored (the metric recorded as unavailable, with a hint to pass
    the very flag given); both now end the command before it writes anything."""
    weight = tmp_path / "alex.pth"
    weight.write_bytes(b"x")
    args = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
            "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main([*args, "--weight", f"lpips-alex-lni={weight}"]) == 1
    assert "unknown weights key 'lpips-alex-lni'; did you mean lpips-alex-lin" in capsys.readouterr().err
    assert main([*args, "--weight", f"lpips-alex-lin={tmp_path / 'nope.pth'}"]) == 1
    assert "nope.pth: no such file" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_run_checks_protocol_and_out_before_inpainting(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--methods", "telea", "--dataset", str(tiny_dataset), "--out", str(out),
                 "--protocol", "xx", "--no-progress"]) == 1
    assert "unknown protocol 'xx'" in capsys.readouterr().err and not out.exists()


def test_score_out_that_is_a_file_fails_before_scoring(tiny_dataset, tiny_predictions, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
                 "--out", str(target), "--device", "cpu"]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_unknown_inpainter_options_are_errors_naming_the_valid_ones(tiny_dataset, tmp_path, capsys):
    from baselines.registry import InpainterLoadError, create_inpainter

    with pytest.raises(InpainterLoadError, match=r"telea: unknown option\(s\) radiuss \(did you mean radius for "
                                                 r"radiuss\?\); valid: allow_download, radius, weight_paths"):
        create_inpainter("telea", radiuss=5)
    assert create_inpainter("telea", radius=5).options["radius"] == 5
    assert main(["inpaint", "--method", "telea", "--dataset", str(tiny_dataset), "--out", str(tmp_path / "o"),
                 "--option", "radiuss=5", "--no-progress"]) == 1
    assert "radiuss" in capsys.readouterr().err and not (tmp_path / "o" / "raw").exists()
    # misato run: a shared option goes to the methods that take it; one that no method takes is an error
    from misato.jobs.pipeline import MethodEntry, check_shared_options, method_options

    methods = [MethodEntry("telea", "telea"), MethodEntry("dummy", "dummy")]
    check_shared_options(methods, {"radius": 2, "noise": 0.1})
    assert method_options("telea", {"radius": 2, "noise": 0.1}) == {"radius": 2}
    with pytest.raises(ValueError, match="--option steps: no method of this run takes it"):
        check_shared_options(methods, {"steps": 2})


def test_plugin_with_its_own_options_keeps_them(tmp_path):
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "from baselines.base import Inpainter\n"
        "class Mine(Inpainter):\n"
        "    name = 'mine'\n"
        "    def inpaint(self, images, masks, seeds):\n"
        "        return images\n")
    from baselines.registry import create_inpainter

    assert create_inpainter(f"{plugin}:Mine", anything=3).options["anything"] == 3


def test_sixteen_bit_predictions_are_refused(tiny_dataset, tiny_predictions, tmp_path):
    import cv2
    import numpy as np

    from evaluators.inputs import InputError, check_inputs

    target = tiny_predictions / "0000.png"
    sixteen = (np.asarray(cv2.imread(str(target))).astype(np.uint16) * 257)
    cv2.imwrite(str(target), sixteen)
    with pytest.raises(InputError, match=r"0000.png: mode RGB with 16 bits per channel is not 8-bit RGB"):
        check_inputs(load_dataset(tiny_dataset), tiny_predictions)


def test_anti_aliased_masks_are_counted_and_recorded(tiny_dataset, tiny_predictions, tmp_path, caplog):
    import numpy as np
    from PIL import Image

    path = tiny_dataset / "mask" / "0001.png"
    mask = np.asarray(Image.open(path).convert("L")).copy()
    mask[mask == 255] = 200  # still hole (>= 128), but not binary
    Image.fromarray(mask).save(path)
    result = score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path / "r",
                   ScoreConfig(metrics=("psnr",), device="cpu"))
    assert result.record.non_binary_masks == {"count": 1, "samples": ["0001"], "threshold": 128}
    assert "1 mask(s) are not binary" in caplog.text


def test_tiny_images_are_refused_naming_the_file(tmp_path):
    import numpy as np
    from PIL import Image

    from evaluators.inputs import InputError, check_inputs

    for folder in ("image", "mask", "pred"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "image" / "a.png")
    Image.fromarray(np.array([[255, 0], [0, 0]], np.uint8)).save(tmp_path / "mask" / "a.png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "pred" / "a.png")
    with pytest.raises(InputError, match=r"image/a.png: 2x2 is too small to score"):
        check_inputs(load_dataset(tmp_path), tmp_path / "pred")


def test_resume_redoes_samples_whose_files_were_damaged(tiny_dataset, tmp_path, caplog):
    from baselines.runner import inpaint_dataset

    out = tmp_path / "telea"
    inpaint_dataset(tiny_dataset, "telea", out, progress=False)
    good = {p.name: p.read_bytes() for p in (out / "raw").iterdir()}
    composite = (out / "composite" / "0001.png").read_bytes()
    (out / "raw" / "0000.png").write_bytes(good["0000.png"][:100])  # truncated
    flipped = bytearray(composite)
    flipped[-20] ^= 0xFF  # same size, other bytes
    (out / "composite" / "0001.png").write_bytes(bytes(flipped))
    manifest = json.loads(inpaint_dataset(tiny_dataset, "telea", out, progress=False).read_text())
    assert manifest["status"] == "complete"
    assert {p.name: p.read_bytes() for p in (out / "raw").iterdir()} == good
    assert (out / "composite" / "0001.png").read_bytes() == composite
    assert caplog.text.count("does not match its record") == 2
    assert manifest["samples"]["0000"]["files"]["raw"]["size"] == len(good["0000.png"])


def test_plugin_rows_use_their_name_and_inpaint_lists_methods(tmp_path, capsys):
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "from baselines.base import Inpainter\n"
        "class MyInpainter(Inpainter):\n"
        "    '''Copies the image.'''\n"
        "    name = 'mine'\n"
        "    def inpaint(self, images, masks, seeds):\n"
        "        return images\n"
        "class Unnamed(MyInpainter):\n"
        "    name = ''\n")
    from misato.jobs.pipeline import parse_method

    assert parse_method(f"{plugin}:MyInpainter").label == "mine"
    assert parse_method(f"{plugin}:Unnamed").label == "Unnamed"
    assert parse_method(f"{tmp_path}/absent.py:Gone").label == "Gone"
    assert main(["inpaint", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "telea:" in listing and "options: allow_download, radius, weight_paths" in listing
    assert main(["inpaint", "--method", "telea"]) == 1
    assert "--dataset, --out" in capsys.readouterr().err


def test_degenerate_masks_are_left_out_of_the_metrics_they_break(tiny_dataset, tiny_predictions, tmp_path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tiny_dataset / "mask" / "0501.png")  # empty
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tiny_dataset / "mask" / "0502.png")  # full
    result = score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path / "r",
                   ScoreConfig(device="cpu", metrics=("psnr", "ssim", "grad_error"), allow_degenerate_masks=True))
    import csv

    rows = {r["stem"]: r for r in csv.DictReader(result.csv_path.open())}
    overall, notes = result.record.overall, result.record.notes
    kept = [s for s in rows if s != "0501"]
    assert rows["0501"]["psnr"] == "inf" and float(rows["0502"]["grad_error"]) >= 0  # the CSV keeps every value
    assert overall["psnr"] == pytest.approx(np.mean([float(rows[s]["psnr"]) for s in kept]), rel=1e-5)
    assert overall["grad_error"] == pytest.approx(
        np.mean([float(rows[s]["grad_error"]) for s in rows if s not in ("0501", "0502")]), rel=1e-5)
    assert "1 from samples with an empty or full mask" in notes["overall.psnr"]
    assert "2 from samples with an empty or full mask" in notes["overall.grad_error"]
    assert overall["n"] == 8 and result.record.degenerate_masks == {"empty": ["0501"], "full": ["0502"]}


def test_every_command_help_has_examples():
    from misato.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them there)
    missing = [name for name, sub in commands.items() if "examples" not in (sub.epilog or "")]
    assert not missing, f"no examples in the --help of: {missing}"


def test_run_passes_every_scoring_flag_to_the_scorer(tiny_dataset, tmp_path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tiny_dataset / "mask" / "0501.png")  # empty: needs the flag
    out = tmp_path / "run"
    assert main(["run", "--methods", "telea", "--dataset", str(tiny_dataset), "--out", str(out), "--metrics", "psnr",
                 "--allow-degenerate-masks", "--no-cache", "--cache-dir", str(tmp_path / "fc"), "--device", "cpu",
                 "--no-progress"]) == 0
    (result,) = (out / "results").glob("telea__*.json")
    config = json.loads(result.read_text())["config"]
    assert config["allow_degenerate_masks"] and not config["use_cache"] and config["cache_dir"] == str(tmp_path / "fc")
    assert config["metrics"] == ["psnr"] and config["device"] == "cpu"


def test_missing_weight_notes_once_without_machine_paths(tiny_dataset, tiny_predictions, tmp_path, capsys):
    from pathlib import Path

    from leaderboard.report import write_reports

    base = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--device", "cpu",
            "--out", str(tmp_path / "results")]
    assert main([*base, "--method", "a"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert text.count("lpips: needs alexnet-torchvision") == 1  # printed once (no second log line)
    assert str(Path.home()) not in text and "$MISATO_WEIGHTS_DIR (default ~/.cache/misato/weights)" in text
    assert main([*base, "--method", "b"]) == 0
    written = write_reports([tmp_path / "results"], tmp_path / "board", formats=("html",))
    page = Path(written["html"]).read_text()
    assert page.count("misato weights fetch inception-tf") == 1  # under the first table only
    assert "<code>misato weights fetch alexnet-torchvision</code>" in page and "`" not in page


def test_one_cache_root_for_features_embedded_and_weights(monkeypatch, tmp_path):
    from evaluators.cache import FeatureCache
    from misato import defaults
    from misato.embedded import default_dir
    from misato.weights import default_weights_dir

    monkeypatch.setenv("MISATO_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.delenv("MISATO_WEIGHTS_DIR")
    assert FeatureCache().folder == tmp_path / "c" / "features"
    assert default_dir(64) == tmp_path / "c" / "embedded" / "64"
    assert default_weights_dir() == tmp_path / "c" / "weights"
    assert ScoreConfig().protocol == defaults.PROTOCOL and ScoreConfig().batch_size == defaults.SCORE_BATCH_SIZE


def test_verify_checks_the_embedded_set_and_a_misato_folder_without_manifest(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from misato.embedded import build_embedded

    embedded = build_embedded(tmp_path / "embedded", size=32)
    assert main(["verify", str(embedded)]) == 0
    assert "22 file(s) listed in the manifest" in capsys.readouterr().out
    first = sorted((embedded / "mask").iterdir())[0]
    mask = np.asarray(Image.open(first)).copy()
    mask[0, 0] = 255 - mask[0, 0]
    Image.fromarray(mask).save(first)
    assert main(["verify", str(embedded)]) == 1
    assert f"mask/{first.name}" in capsys.readouterr().out

    root = tmp_path / "MISATO"
    for folder in ("512/image", "512/mask"):
        (root / folder).mkdir(parents=True)
    for stem in ("0000", "0001", "0500"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "512" / "image" / f"{stem}.png")
        hole = np.zeros((16, 16), np.uint8)
        hole[4:8, 4:8] = 255 if stem != "0500" else 200  # 0500: anti-aliased (not binary)
        Image.fromarray(hole).save(root / "512" / "mask" / f"{stem}.png")
    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert "no manifest.json; structure checked only" in out and "512: landscape 2, indoor 1" in out
    assert "512/mask/0500.png: not binary" in out


def test_shared_flags_mean_the_same_in_every_command():
    from misato.cli import build_parser
    from misato.cli._common import parse_option

    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in ("inpaint", "run"):
        option = next(a for a in commands[name]._actions if a.dest == "option")  # noqa: SLF001
        assert option.type is parse_option, name
    tables = next(a for a in commands["reproduce"]._actions if a.dest == "table").choices  # noqa: SLF001
    parsers = {**{name: commands[name] for name in ("inpaint", "run", "score", "train", "demo", "build")},
               **{f"reproduce {t}": p for t, p in tables.items()}}
    for name, parser in parsers.items():
        actions = {s: a for a in parser._actions for s in a.option_strings}  # noqa: SLF001
        assert "--no-progress" in actions, name
        if name != "build":
            assert {"--weight", "--allow-download"} <= set(actions), name
        if "--device" in actions:  # one meaning and one default everywhere
            assert actions["--device"].default == "auto" and "accelerate" in actions["--device"].help, name
    args = commands["inpaint"].parse_args(["--option", "radius=5", "--option", "name=x", "--weight", "k=/p"])
    assert dict(args.option) == {"radius": 5, "name": "x"} and args.weight == ["k=/p"]


def test_weights_fetch_unknown_protocol_or_key_is_one_plain_line(capsys):
    """`weights fetch --for score --protocol bogus` ended in "error: 'bogus'" (a bare KeyError of PROTOCOLS[...]);
    a KeyError's message was printed as its repr, in quotes."""
    assert main(["weights", "fetch", "--for", "score", "--protocol", "bogus", "--dry-run"]) == 1
    assert capsys.readouterr().err == "misato weights: error: unknown protocol 'bogus'; known: comod, clean, asuka\n"
    assert main(["weights", "fetch", "incepton-tf"]) == 1
    assert capsys.readouterr().err.startswith("misato weights: error: unknown weights key 'incepton-tf'; did you mean")


def test_os_errors_name_the_file_without_errno(tmp_path):
    """`study agreement --out FILE` ended in "[Errno 17] File exists: 'FILE'" (os.makedirs on a file)."""
    import errno

    from misato.cli import os_error_text

    target = tmp_path / "a-file"
    target.write_text("x")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        assert os_error_text(error) == f"{target} is a file, not a folder (a folder is expected there)"
    missing = OSError(errno.ENOENT, "No such file or directory", str(tmp_path / "nope"))
    assert os_error_text(missing) == f"{tmp_path / 'nope'}: No such file or directory"


def test_score_batch_size_and_workers_checked_before_any_work(tiny_dataset, tiny_predictions, tmp_path, capsys):
    """--score-batch-size 0 was accepted (a PSNR-only score ran), -1 ended in torch's DataLoader message naming
    batch_size; --num-workers -2 likewise. Now one line naming the flag, nothing written."""
    args = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--label", "m",
            "--out", str(tmp_path / "r"), "--metrics", "psnr", "--device", "cpu", "--no-progress"]
    for flag, value in (("--score-batch-size", "0"), ("--score-batch-size", "-1"), ("--num-workers", "-2")):
        assert main([*args, flag, value]) == 1
        assert f"{flag} (" in capsys.readouterr().err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["demo", "run"])
def test_embedded_size_below_the_minimum_is_refused_when_parsed(command, tmp_path, capsys):
    """`misato demo --embedded-size 0` used to write OUT/run.json and fail every pair ("embedded dataset size must
    be at least 32") with exit 1; now argparse refuses it (exit 2) and nothing is written."""
    from misato.embedded import MIN_SIZE

    with pytest.raises(SystemExit) as stop:
        main([command, "--out", str(tmp_path / "o"), "--embedded-size", str(MIN_SIZE - 1), "--no-progress"])
    assert stop.value.code == 2 and f"at least {MIN_SIZE} pixels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_verify_names_flat_domains_and_refuses_a_negative_max_listed(tiny_dataset, capsys):
    """`misato verify` of an image/ + mask/ folder printed "None: landscape 4, indoor 4"; --max-listed -3 was
    accepted (names[:-3] drops the last three of each list)."""
    assert main(["verify", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "domains: landscape 4, indoor 4" in out and "None" not in out
    with pytest.raises(SystemExit) as stop:
        main(["verify", str(tiny_dataset), "--max-listed", "-3"])
    assert stop.value.code == 2 and "--max-listed: must be 0 or more, got -3" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--inpaint-batch-size", "--batch-size"])
def test_inpaint_batch_size_below_one_is_refused_when_parsed(flag, tiny_dataset, tmp_path, capsys):
    """`inpaint --inpaint-batch-size 0` was refused by the runner as "batch_size must be >= 1" (not the flag)."""
    with pytest.raises(SystemExit) as stop:
        main(["inpaint", "--method", "telea", "--dataset", str(tiny_dataset), "--out", str(tmp_path / "o"), flag, "0"])
    assert stop.value.code == 2 and f"argument {flag}: must be 1 or more, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_limit_below_one_is_refused_when_parsed(value, tmp_path, capsys):
    """`misato build places2 --limit 0` built every image (0 read as no limit); --limit is now checked when parsed
    in every command that takes it, and Places2Config(limit=0) is a ValueError."""
    from misato.builder.places2 import Places2Config, build_places2

    with pytest.raises(SystemExit) as stop:
        main(["build", "places2", "--places2-val", str(tmp_path), "--out", str(tmp_path / "o"), "--limit", value])
    assert stop.value.code == 2 and f"--limit: must be 1 or more, got {value}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="limit must be >= 1"):
        build_places2(Places2Config(val_dir=tmp_path, out=tmp_path / "o", limit=int(value)))
    assert not (tmp_path / "o").exists()
