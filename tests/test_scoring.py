"""score(): end to end on a tiny real-photo dataset with random-weight networks; every bad input's error."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from misato.composite import composite_uint8
from evaluators.functional.ids import inception_discriminative_scores
from evaluators.inputs import InputError
from evaluators.lpips_metric import lpips_distance
from misato.lpips_network import build_lpips
from evaluators.metrics import DEFAULT
from evaluators.metrics import SCORED as METRICS
from evaluators.scoring import ScoreConfig, score
from misato.data import load_dataset
from misato.io import read_mask, read_rgb
from misato.weights import WeightsNotFoundError, resolve

FAST = ("lpips", "fid", "u_ids", "p_ids", "kid", "psnr", "ssim", "grad_error")


def _config(weights, **kwargs):
    """Scoring on CPU; FID/KID intervals off (each resample is a 2048-d eigendecomposition; the interval tests
    use the 16-d stand-in features)."""
    return ScoreConfig(weights=weights, device="cpu", batch_size=3, **{"set_bootstrap": 0, **kwargs})


def test_result_files_and_layout(tiny_dataset, tiny_predictions, tmp_path, random_weights, small_clip_protocols):
    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "noise", tmp_path / "out", _config(random_weights), dataset_kind="MISATO")
    record = json.loads(result.json_path.read_text())
    assert result.json_path.name == f"noise__{dataset.name}__comod.json"
    assert record["protocol"]["name"] == "comod" and record["protocol"]["feature_net"] == "inception-tf"
    assert set(record["metrics"]["per_domain"]) == {"landscape", "indoor"}
    assert record["metrics"]["overall"]["n"] == 8 and record["metrics"]["per_domain"]["indoor"]["n"] == 4
    assert set(DEFAULT) <= set(record["metrics"]["overall"])
    opt_in = set(METRICS) - set(DEFAULT)
    assert opt_in == {"hallucination", "hallucination_area", "cmmd", "cmmd_l14", "fd_dinov2", "dreamsim",
                      "dreamsim_image"} and not opt_in & set(record["metrics"]["overall"])
    assert record["unavailable"] == {}
    assert record["weights"]["inception-tf"]["matches"] is False  # random stand-in, recorded as a mismatch
    assert record["weights"]["lpips-alex-lin"]["matches"] is True  # the real file shipped in the lpips wheel
    assert record["versions"]["torch"] and record["seeds"]["kid"] == 2020
    rows = list(csv.DictReader(result.csv_path.open()))
    assert [r["stem"] for r in rows] == [s.stem for s in dataset.samples]
    assert all(np.isfinite(float(r["lpips"])) for r in rows)
    # per-domain means are means of the per-image rows
    indoor = [float(r["psnr"]) for r in rows if r["domain"] == "indoor"]
    assert record["metrics"]["per_domain"]["indoor"]["psnr"] == pytest.approx(np.mean(indoor), rel=1e-5)


def test_lpips_column_equals_direct_lpips_on_composites(tiny_dataset, tiny_predictions, tmp_path, random_weights):
    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, _config(random_weights, metrics=("lpips",)))
    model = build_lpips(resolve("alexnet-torchvision", random_weights["alexnet-torchvision"]), resolve("lpips-alex-lin"))
    rows = list(csv.DictReader(result.csv_path.open()))
    for sample, row in zip(dataset.samples, rows):
        gt = read_rgb(sample.image_path)
        comp = composite_uint8(read_rgb(tiny_predictions / f"{sample.stem}.png"), gt, read_mask(sample.mask_path))
        t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
        assert float(row["lpips"]) == pytest.approx(float(lpips_distance(model, t(comp), t(gt))), rel=1e-4)


def test_set_metrics_equal_direct_computation(tiny_dataset, tiny_predictions, tmp_path, random_weights):
    from evaluators.features import EXTRACTORS
    from evaluators.functional.frechet import frechet_distance

    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, _config(random_weights, metrics=("fid", "u_ids", "p_ids")))
    extractor = EXTRACTORS["inception-tf"](resolve("inception-tf", random_weights["inception-tf"]), torch.device("cpu"))
    pre = extractor.preprocess()
    real, fake = [], []
    for sample in dataset.samples:
        gt = read_rgb(sample.image_path)
        comp = composite_uint8(read_rgb(tiny_predictions / f"{sample.stem}.png"), gt, read_mask(sample.mask_path))
        real.append(extractor.forward(pre(gt)[None])[0].numpy())
        fake.append(extractor.forward(pre(comp)[None])[0].numpy())
    real, fake = np.array(real, np.float64), np.array(fake, np.float64)
    u, p = inception_discriminative_scores(real, fake)
    fid = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert result.record.overall["fid"] == pytest.approx(fid, rel=1e-4)
    indoor = [i for i, s in enumerate(dataset.samples) if s.domain == "indoor"]
    fid_indoor = frechet_distance(real[indoor].mean(0), np.cov(real[indoor], rowvar=False),
                                  fake[indoor].mean(0), np.cov(fake[indoor], rowvar=False))
    assert result.record.per_domain["indoor"]["fid"] == pytest.approx(fid_indoor, rel=1e-4)
    assert result.record.overall["u_ids"] == pytest.approx(u, abs=1e-9)
    assert result.record.overall["p_ids"] == pytest.approx(p, abs=1e-9)


def test_batch_size_and_workers_do_not_change_results(tiny_dataset, tiny_predictions, tmp_path, tiny_features):
    dataset = load_dataset(tiny_dataset)
    config = dict(weights=tiny_features, metrics=FAST, protocol="tiny-features", use_cache=False, device="cpu")
    a = score(dataset, tiny_predictions, "a", tmp_path, ScoreConfig(batch_size=1, **config))
    b = score(dataset, tiny_predictions, "b", tmp_path, ScoreConfig(batch_size=5, num_workers=2, **config))
    for key in FAST:
        assert b.record.overall[key] == pytest.approx(a.record.overall[key], rel=1e-5, abs=1e-9)


def test_second_method_reuses_ground_truth_cache(tiny_dataset, tiny_predictions, tmp_path, tiny_features, monkeypatch):
    from conftest import TinyFeatures

    dataset = load_dataset(tiny_dataset)
    calls = []
    original = TinyFeatures.forward
    monkeypatch.setattr(TinyFeatures, "forward", lambda self, batch: calls.append(len(batch)) or original(self, batch))
    config = ScoreConfig(weights=tiny_features, metrics=("u_ids", "p_ids"), protocol="tiny-features", device="cpu",
                         batch_size=3)
    score(dataset, tiny_predictions, "first", tmp_path, config)
    assert sum(calls) == 16  # real + fake
    calls.clear()
    other = tmp_path / "other-predictions"  # another method's predictions (the same ones would reuse the whole pass)
    other.mkdir()
    for path in sorted(tiny_predictions.glob("*.png")):
        Image.fromarray(255 - read_rgb(path)).save(other / path.name)
    score(dataset, other, "second", tmp_path, config)
    assert sum(calls) == 8  # fake only: real features came from the cache
    calls.clear()
    (tiny_dataset / "image" / "0000.png").write_bytes((tiny_dataset / "image" / "0001.png").read_bytes())
    score(load_dataset(tiny_dataset), tiny_predictions, "third", tmp_path, config)
    assert sum(calls) == 16  # changed dataset content -> new key, recomputed


@pytest.mark.parametrize("protocol", ["clean", "asuka"])
def test_other_protocols_run_and_are_recorded(protocol, tiny_dataset, tiny_predictions, tmp_path, random_weights):
    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, _config(random_weights, protocol=protocol, metrics=FAST))
    overall = result.record.overall
    assert result.record.protocol["name"] == protocol
    assert np.isfinite(overall["fid"]) and overall["fid"] > 0
    if protocol == "asuka":  # PCA(512) needs >= 512 rows: IDS is left null here, never silently computed otherwise
        assert overall["u_ids"] is None and result.record.ids_pca_dim == 64  # the image side
        assert "PCA to 64 dimensions needs at least 64" in result.record.notes["overall.u_ids"]
        assert result.record.protocol["departures"]


def test_clip_score_runs_with_hole_only_images(tiny_dataset, tiny_predictions, tmp_path, random_weights, small_clip_protocols):
    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, _config(random_weights, metrics=("clip_score",)))
    value = result.record.overall["clip_score"]
    assert 0 < value <= 1.0 + 1e-6
    same = score(dataset, tiny_dataset / "image", "gt", tmp_path, _config(random_weights, metrics=("clip_score",)))
    assert same.record.overall["clip_score"] == pytest.approx(1.0, abs=1e-5)


def test_paste_back_keeps_known_pixels_raw_does_not(tiny_dataset, tiny_predictions, tmp_path, random_weights):
    dataset = load_dataset(tiny_dataset)
    pasted = score(dataset, tiny_predictions, "p", tmp_path, _config(random_weights, metrics=("psnr",)))
    raw = score(dataset, tiny_predictions, "r", tmp_path, _config(random_weights, metrics=("psnr",), paste_back=False))
    assert raw.record.paste_back is False
    assert raw.record.overall["psnr"] < pasted.record.overall["psnr"] - 3


def test_missing_weights_are_listed_with_the_fix(tiny_dataset, tiny_predictions, tmp_path):
    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, ScoreConfig(device="cpu"))
    overall = result.record.overall
    assert {"psnr", "ssim", "grad_error"} <= set(overall) and np.isfinite(overall["psnr"])
    assert {"lpips", "fid", "u_ids", "p_ids", "kid", "clip_score"} == set(result.record.unavailable)
    assert "misato weights fetch inception-tf" in result.record.unavailable["fid"]
    assert "weights-inception-2015-12-05-6726825d.pth" in result.record.unavailable["fid"]
    with pytest.raises(WeightsNotFoundError, match="alexnet-owt-7be5be79.pth"):
        score(dataset, tiny_predictions, "m", tmp_path, ScoreConfig(device="cpu", strict=True, metrics=("lpips",)))


def test_mask_convention_option(tiny_dataset, tiny_predictions, tmp_path, random_weights):
    normal = score(load_dataset(tiny_dataset), tiny_predictions, "a", tmp_path, _config(random_weights, metrics=("psnr", "ssim")))
    for path in (tiny_dataset / "mask").iterdir():
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)
    inverted = load_dataset(tiny_dataset, mask_hole_is_white=False)
    flipped = score(inverted, tiny_predictions, "b", tmp_path, _config(random_weights, metrics=("psnr", "ssim")))
    assert flipped.record.overall["psnr"] == pytest.approx(normal.record.overall["psnr"])
    assert flipped.record.dataset.mask_hole_is_white is False


# ---- bad inputs: each gets an error naming the file --------------------------------------------------------


def _bad(tiny_dataset, tiny_predictions, tmp_path, match, **kwargs):
    with pytest.raises(InputError, match=match):
        score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path, ScoreConfig(device="cpu", metrics=("psnr",), **kwargs))


def test_missing_prediction(tiny_dataset, tiny_predictions, tmp_path):
    (tiny_predictions / "0002.png").unlink()
    _bad(tiny_dataset, tiny_predictions, tmp_path, "no prediction for '0002'")


def test_extra_prediction(tiny_dataset, tiny_predictions, tmp_path):
    (tiny_predictions / "9999.png").write_bytes((tiny_predictions / "0000.png").read_bytes())
    _bad(tiny_dataset, tiny_predictions, tmp_path, "9999.png: extra prediction")


def test_wrong_size(tiny_dataset, tiny_predictions, tmp_path):
    Image.new("RGB", (32, 64)).save(tiny_predictions / "0001.png")
    _bad(tiny_dataset, tiny_predictions, tmp_path, r"0001.png: sizes differ .*prediction 32x64")


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "CMYK"])
def test_non_rgb_modes(mode, tiny_dataset, tiny_predictions, tmp_path):
    image = Image.new(mode, (64, 64))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    (tiny_predictions / "0003.png").unlink()
    image.save(tiny_predictions / f"0003{suffix}")
    _bad(tiny_dataset, tiny_predictions, tmp_path, rf"0003{suffix}: mode '{mode}' is not 8-bit RGB")


def test_unreadable_file(tiny_dataset, tiny_predictions, tmp_path):
    (tiny_predictions / "0500.png").write_bytes(b"not a png")
    _bad(tiny_dataset, tiny_predictions, tmp_path, "0500.png: unreadable prediction")


def test_truncated_file(tiny_dataset, tiny_predictions, tmp_path):
    data = (tiny_predictions / "0502.png").read_bytes()
    (tiny_predictions / "0502.png").write_bytes(data[: len(data) // 2])
    _bad(tiny_dataset, tiny_predictions, tmp_path, "0502.png: unreadable prediction")


def test_16_bit_mask_is_listed(tiny_dataset, tiny_predictions, tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(tiny_dataset / "mask" / "0503.png")
    _bad(tiny_dataset, tiny_predictions, tmp_path, "0503.png: mask mode 'I;16'")


@pytest.mark.parametrize("value,word", [(0, "empty"), (255, "full")])
def test_degenerate_masks(value, word, tiny_dataset, tiny_predictions, tmp_path):
    Image.fromarray(np.full((64, 64), value, np.uint8)).save(tiny_dataset / "mask" / "0501.png")
    _bad(tiny_dataset, tiny_predictions, tmp_path, f"0501.png: .*{word} mask")
    result = score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path,
                   ScoreConfig(device="cpu", metrics=("psnr",), allow_degenerate_masks=True))
    assert result.record.degenerate_masks[word] == ["0501"]
    assert result.record.overall["n"] == 8


def test_all_problems_reported_at_once(tiny_dataset, tiny_predictions, tmp_path):
    (tiny_predictions / "0500.png").write_bytes(b"garbage")
    Image.new("RGBA", (64, 64)).save(tiny_predictions / "0001.png")
    with pytest.raises(InputError, match="2 problem") as error:
        score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path, ScoreConfig(device="cpu", metrics=("psnr",)))
    assert "0500.png" in str(error.value) and "0001.png" in str(error.value)


def test_unknown_metric_and_protocol(tiny_dataset, tiny_predictions, tmp_path):
    with pytest.raises(ValueError, match="unknown metric"):
        score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path, ScoreConfig(metrics=("fidd",)))
    with pytest.raises(KeyError, match="unknown protocol"):
        score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path, ScoreConfig(protocol="nope"))


def test_cli_score(tiny_dataset, tiny_predictions, tmp_path, random_weights, capsys):
    from misato.cli import main

    args = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "cli",
            "--out", str(tmp_path / "res"), "--metrics", "psnr,lpips", "--device", "cpu"]
    for key in ("alexnet-torchvision",):
        args += ["--weight", f"{key}={random_weights[key]}"]
    assert main(args) == 0
    record = json.loads(next((tmp_path / "res").glob("cli__*.json")).read_text())
    assert record["dataset"]["kind"] == "MISATO" and "lpips" in record["metrics"]["overall"]
    (tiny_predictions / "0000.png").unlink()
    assert main(args) == 1
    assert "no prediction for '0000'" in capsys.readouterr().err


def test_inpaint_output_folder_is_scored_from_raw(tiny_dataset, tiny_predictions, tmp_path):
    run = tmp_path / "run"
    (run / "composite").mkdir(parents=True)
    tiny_predictions.rename(run / "raw")
    (run / "manifest.json").write_text("{}")
    result = score(load_dataset(tiny_dataset), run, "m", tmp_path, ScoreConfig(device="cpu", metrics=("psnr",)))
    assert result.record.predictions == str((run / "raw").resolve())


def test_thumbnails_are_written_for_the_report(tiny_dataset, tiny_predictions, tmp_path, random_weights):
    """The scorer keeps the first sample of each domain (input, scored, truth), or the samples asked for; the
    scored thumbnail is the composite it scored."""
    from evaluators.thumbnails import jpeg_thumbnail

    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, _config(random_weights, metrics=("psnr",)))
    assert set(result.record.thumbnails) == {"0000", "0500"}  # landscape, indoor
    files = {role: tmp_path / path for role, path in result.record.thumbnails["0500"].items()}
    assert set(files) == {"input", "scored", "truth"} and all(f.is_file() for f in files.values())
    sample = dataset.samples[4]
    gt = read_rgb(sample.image_path)
    composite = composite_uint8(read_rgb(tiny_predictions / "0500.png"), gt, read_mask(sample.mask_path))
    assert files["scored"].read_bytes() == jpeg_thumbnail(composite)
    assert files["truth"].read_bytes() == jpeg_thumbnail(gt)

    chosen = score(dataset, tiny_predictions, "n", tmp_path, _config(random_weights, metrics=("psnr",),
                                                                     thumbnail_samples=("0003",)))
    assert set(chosen.record.thumbnails) == {"0003"}
    with pytest.raises(ValueError, match="--thumbnail-samples: not in dataset .*: 9999"):
        score(dataset, tiny_predictions, "o", tmp_path / "none", _config(random_weights, thumbnail_samples=("9999",)))
    assert not (tmp_path / "none").exists()


def test_a_metric_is_one_table_entry(tiny_dataset, tiny_predictions, tmp_path, monkeypatch):
    """A new per-image metric needs its MetricSpec and its function, nothing else: the scorer computes it, the
    record carries its direction, the CSV its column, the help its line."""
    import evaluators.metrics as metrics
    from evaluators.metrics import MetricSpec

    spec = MetricSpec("mean_abs", "MAE", False, 3, "per_image", "pixels", "test_scoring:mean_abs_error",
                      "mean absolute difference")
    monkeypatch.setitem(metrics.METRICS, "mean_abs", spec)
    monkeypatch.setattr(metrics, "SCORED", (*metrics.SCORED, "mean_abs"))
    dataset = load_dataset(tiny_dataset)
    result = score(dataset, tiny_predictions, "m", tmp_path, ScoreConfig(metrics=("mean_abs",), device="cpu"))
    rows = list(csv.DictReader(result.csv_path.open()))
    expected = [mean_abs_error_of(s, tiny_predictions) for s in dataset.samples]
    assert [float(r["mean_abs"]) for r in rows] == pytest.approx(expected, rel=1e-5)
    assert result.record.higher_is_better == {"mean_abs": False}
    assert "mean_abs" in metrics.metrics_help()


def mean_abs_error(sample, protocol) -> float:
    return float(np.abs(sample.scored.astype(float) - sample.gt.astype(float)).mean())


def mean_abs_error_of(sample, predictions) -> float:
    gt = read_rgb(sample.image_path)
    composite = composite_uint8(read_rgb(predictions / f"{sample.stem}.png"), gt, read_mask(sample.mask_path))
    return float(np.abs(composite.astype(float) - gt.astype(float)).mean())


def test_two_processes_score_like_one(tiny_dataset, tiny_predictions, tmp_path, random_weights):
    """`accelerate launch` with 2 processes (gloo on CPU): each scores its shard, rank 0 gathers every row and
    writes the result, which equals the one-process result (every sample once, in dataset order)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from test_runner import REPO, free_port

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    args = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
            "--metrics", "psnr,ssim,lpips,fid,u_ids,p_ids,kid", "--device", "cpu", "--batch-size", "3",
            "--bootstrap", "100", "--set-bootstrap", "0", "--no-progress", "--no-cache"]
    for key in ("inception-tf", "alexnet-torchvision"):
        args += ["--weight", f"{key}={random_weights[key]}"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "misato", *args, "--out", str(tmp_path / "one")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "misato", *args, "--out", str(tmp_path / "two")]
    two = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads(next((tmp_path / d).glob("*.json")).read_text()) for d in ("one", "two"))
    assert b["timing"]["processes"] == 2 and a["timing"]["processes"] == 1
    for scope in ("overall", "landscape", "indoor"):
        rows_a = a["metrics"]["overall"] if scope == "overall" else a["metrics"]["per_domain"][scope]
        rows_b = b["metrics"]["overall"] if scope == "overall" else b["metrics"]["per_domain"][scope]
        assert rows_b == pytest.approx(rows_a, rel=1e-5, abs=1e-7), scope
        for metric, pair in a["intervals"][scope].items():
            assert b["intervals"][scope][metric] == pytest.approx(pair, rel=1e-5, abs=1e-7), (scope, metric)
    csv_a, csv_b = (list(csv.DictReader(next((tmp_path / d).glob("*.csv")).open())) for d in ("one", "two"))
    assert [r["stem"] for r in csv_b] == [r["stem"] for r in csv_a]  # every sample once, in dataset order
    assert [float(r["psnr"]) for r in csv_b] == [float(r["psnr"]) for r in csv_a]
    assert set(b["thumbnails"]) == set(a["thumbnails"])
