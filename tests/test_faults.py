"""Faults that used to give a traceback, a lost computation or unbounded memory (issue 21, cases 5, 8 and 9): a
corrupt feature-cache file, a bootstrap count without bound, a full disk under `score`, `inpaint` and `train`."""

from __future__ import annotations

import errno
import logging
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from evaluators import scoring
from evaluators.bootstrap import BootstrapConfig, Resamples, percentile_interval, resample_indices, resampled_sums
from evaluators.cache import HASH_ARRAY, FeatureCache
from evaluators.scoring import ScoreConfig, score
from misato.cli import main
from misato.data import load_dataset
from misato.defaults import BOOTSTRAP_MAX

METRICS = ("psnr", "fid", "u_ids", "p_ids")


@pytest.fixture
def forwards(monkeypatch) -> list[int]:
    """Counts the images through the stand-in Inception (0: nothing was computed)."""
    from conftest import TinyFeatures

    calls: list[int] = []
    original = TinyFeatures.forward
    monkeypatch.setattr(TinyFeatures, "forward", lambda self, batch: calls.append(len(batch)) or original(self, batch))
    return calls


def _config(weights: dict[str, str], **kwargs) -> ScoreConfig:
    return ScoreConfig(weights=weights, metrics=METRICS, protocol="tiny-features", device="cpu", batch_size=4,
                       progress=False, bootstrap=50, set_bootstrap=2, **kwargs)


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------ case 5: the cache
def test_truncated_cache_files_are_removed_and_recomputed_with_a_warning(tiny_dataset, tiny_predictions, tmp_path,
                                                                         tiny_features, forwards, caplog):
    dataset = load_dataset(tiny_dataset)
    cache = tmp_path / "features"
    first = score(dataset, tiny_predictions, "m", tmp_path / "a", _config(tiny_features, cache_dir=str(cache)))
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 2 and sum(forwards) == 16  # ground-truth features and the scoring pass
    for path in files:  # a kill or a full disk during a copy: the zip's central directory is gone
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    forwards.clear()
    with caplog.at_level(logging.WARNING, logger="evaluators.cache"):
        again = score(dataset, tiny_predictions, "m", tmp_path / "b", _config(tiny_features, cache_dir=str(cache)))
    warned = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert sorted(line.split(":")[0] for line in warned) == sorted(map(str, files))
    assert all("removed, recomputing" in line for line in warned)
    assert sum(forwards) == 16 and again.record.timing["pass_from_cache"] is False  # both sides recomputed
    assert again.record.overall == first.record.overall and again.record.intervals == first.record.intervals
    # written again, whole: a third run reads both
    forwards.clear()
    third = score(dataset, tiny_predictions, "m", tmp_path / "c", _config(tiny_features, cache_dir=str(cache)))
    assert forwards == [] and third.record.timing["pass_from_cache"] is True
    assert third.record.overall == first.record.overall


@pytest.mark.parametrize("damage", ["flipped byte", "arrays changed, hash kept", "no hash", "empty", "not a zip"])
def test_a_damaged_cache_entry_is_a_miss_with_a_warning_naming_the_file(tmp_path, caplog, damage):
    cache = FeatureCache(tmp_path)
    stems, features = ["a", "b", "c"], np.arange(12, dtype=np.float32).reshape(3, 4) + 0.5
    cache.save("k", stems, features)
    path = cache.path("k")
    assert np.array_equal(cache.load("k", stems), features)
    data = path.read_bytes()
    if damage == "flipped byte":  # inside the features member: its CRC no longer matches
        at = data.index(features.tobytes())
        path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    elif damage == "arrays changed, hash kept":  # a valid zip whose arrays are not those hashed
        with np.load(path) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
        arrays["features"] = arrays["features"] * 2
        np.savez(path, **arrays)
    elif damage == "no hash":
        np.savez(path, stems=np.array(stems), features=features)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"<html>proxy error</html>" * 10)
    with caplog.at_level(logging.WARNING, logger="evaluators.cache"):
        assert cache.load("k", stems) is None
    assert not path.exists()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [str(path)]
    cache.save("k", stems, features)
    assert np.array_equal(cache.load("k", stems), features)


def test_the_cache_refuses_its_own_hash_name_and_a_failed_cache_write_is_a_warning(tmp_path, caplog, monkeypatch):
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(ValueError, match=HASH_ARRAY):
        cache.save_arrays("k", {HASH_ARRAY: np.zeros(1)})
    monkeypatch.setattr(os, "fsync", _enospc)
    with caplog.at_level(logging.WARNING, logger="evaluators.cache"):
        cache.save("k", ["a"], np.zeros((1, 2)))  # the cache only saves time: no error
    assert f"{cache.path('k')}: feature-cache file not written (No space left on device)" in caplog.text
    assert _temporaries(tmp_path) == []


# ------------------------------------------------------------------------------------- case 8: the bootstrap
def test_bootstrap_counts_above_the_maximum_are_refused_when_parsed(tiny_dataset, tiny_predictions, tmp_path, capsys):
    args = ["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
            "--out", str(tmp_path / "r")]
    for flag in ("--bootstrap", "--set-bootstrap", "--kid-bootstrap"):
        with pytest.raises(SystemExit) as stop:
            main([*args, flag, str(BOOTSTRAP_MAX + 1)])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"argument {flag}: " in err and f"up to {BOOTSTRAP_MAX:,}" in err, err
        with pytest.raises(SystemExit):
            main([*args, flag, "-1"])
        assert "got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", "tally", str(tmp_path), "--out", str(tmp_path / "t"), "--bootstrap", "10000000"])
    assert f"up to {BOOTSTRAP_MAX:,}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()
    # the Python API: the same rule
    for config in (ScoreConfig(bootstrap=BOOTSTRAP_MAX + 1), ScoreConfig(set_bootstrap=BOOTSTRAP_MAX + 1),
                   ScoreConfig(kid_bootstrap=BOOTSTRAP_MAX + 1)):
        with pytest.raises(ValueError, match="bootstrap must be 0 .* up to 100,000"):
            config.selected()
    with pytest.raises(ValueError, match="--set-bootstrap must be"):
        BootstrapConfig(set_resamples=BOOTSTRAP_MAX + 1)
    assert ScoreConfig(bootstrap=BOOTSTRAP_MAX).selected()


def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bootstrap_memory_is_flat_in_the_resample_count():
    """The scorer's intervals of 2 per-image metrics on 32 images: 10x the resamples took 10x the memory when every
    index was drawn at once (4.8 GB for 10M resamples of 16 images); in chunks only the R means grow (8 bytes
    each)."""
    rng = np.random.default_rng(0)
    kept = {"psnr": rng.normal(20, 3, 32), "lpips": rng.uniform(0, 1, 32)}
    scopes = {"overall": np.arange(32)}

    def intervals(count: int):
        return lambda: scoring._intervals(scopes, kept, {}, {}, BootstrapConfig(resamples=count, set_resamples=0))

    small, large = _peak_bytes(intervals(10_000)), _peak_bytes(intervals(100_000))
    assert large < 2.0 * small, (small, large)
    assert large < 12 * 2**20  # 100,000 x 32 int64 indices alone are 24 MiB


def test_chunked_resamples_are_the_indices_of_one_draw_and_give_the_same_intervals():
    for n, count in ((1, 5), (7, 33), (16, 1000), (1000, 700)):
        chunks = list(Resamples(n, count, seed=3).chunks(elements_per_row=7))  # several chunks at n = 1000
        assert np.array_equal(np.concatenate(chunks), resample_indices(n, count, seed=3)), (n, count)
    assert len(list(Resamples(1000, 700, 3).chunks(7))) > 1
    values = np.random.default_rng(1).normal(size=300)
    values[[3, 50]] = [np.inf, np.nan]
    rows = resample_indices(300, 5000, seed=0)  # the whole (R, N) draw, as before chunking
    taken = values[rows]
    finite = np.isfinite(taken)
    means = np.where(finite, taken, 0.0).sum(axis=1) / finite.sum(axis=1)
    kept = {"v": values}
    found = scoring._intervals({"overall": np.arange(300)}, kept, {}, {}, BootstrapConfig(resamples=5000))
    assert found["overall"]["v"] == list(percentile_interval(means))  # bit for bit
    picks = np.random.default_rng(2).integers(0, 3, size=(40, 4, 2)).astype(float)  # the study tally's counts
    study_rows = resample_indices(40, 3000, seed=5)
    assert np.array_equal(resampled_sums(picks, Resamples(40, 3000, 5)), picks[study_rows].sum(axis=1))


# ------------------------------------------------------------------------------------- case 9: a full disk
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write on a full disk: no file named


def _full_for(pattern: str):
    """An os.fsync that fails as on a full disk for files whose name contains `pattern` (a write that names no
    file: Python's own message is "[Errno 28] No space left on device")."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if pattern in os.readlink(f"/proc/self/fd/{fd}"):
            _enospc()
        real(fd)

    return fsync


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith(f"misato {command}: error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def _score_args(dataset: Path, predictions: Path, out: Path, weights: dict[str, str]) -> list[str]:
    return ["score", "--dataset", str(dataset), "--predictions", str(predictions), "--method", "m", "--out", str(out),
            "--protocol", "tiny-features", "--metrics", ",".join(METRICS), "--device", "cpu", "--no-progress",
            "--bootstrap", "20", "--set-bootstrap", "0",
            *[arg for key, path in weights.items() for arg in ("--weight", f"{key}={path}")]]


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd")


@needs_proc
def test_score_checks_it_can_write_its_output_before_computing(tiny_dataset, tiny_predictions, tmp_path,
                                                                tiny_features, forwards, capsys, monkeypatch):
    out = tmp_path / "results" / "new"
    monkeypatch.setattr(os, "fsync", _enospc)
    assert main(_score_args(tiny_dataset, tiny_predictions, out, tiny_features)) == 1
    line = _one_line_error(capsys, "score")
    assert line == f"misato score: error: {out}: No space left on device (free some space and run the same command " \
                   "again)"
    assert forwards == [] and not out.exists() and _temporaries(tmp_path) == []


@needs_proc
def test_score_failing_at_its_final_write_names_the_file_and_keeps_the_computed_pass(
        tiny_dataset, tiny_predictions, tmp_path, tiny_features, forwards, capsys, monkeypatch):
    out = tmp_path / "results"
    args = _score_args(tiny_dataset, tiny_predictions, out, tiny_features)
    with monkeypatch.context() as full:
        full.setattr(os, "fsync", _full_for(".json."))  # the result JSON's temporary file
        assert main(args) == 1
    json_path = out / "m__data__tiny-features.json"
    assert _one_line_error(capsys, "score") == f"misato score: error: {json_path}: No space left on device (free " \
                                               "some space and run the same command again)"
    assert not json_path.exists() and _temporaries(tmp_path) == [] and sum(forwards) == 16
    forwards.clear()  # space freed: the same command reuses the pass and writes the result
    assert main(args) == 0 and forwards == [] and json_path.is_file()


@needs_proc
def test_inpaint_on_a_full_disk_names_the_file_and_leaves_no_temporary_file(tiny_dataset, tmp_path, capsys,
                                                                             monkeypatch):
    out = tmp_path / "o"
    with monkeypatch.context() as full:
        full.setattr(os, "fsync", _full_for(".png."))
        assert main(["inpaint", "--method", "telea", "--dataset", str(tiny_dataset), "--out", str(out), "--device",
                     "cpu", "--no-progress"]) == 1
    line = _one_line_error(capsys, "inpaint")
    assert line.startswith(f"misato inpaint: error: {out / 'raw'}/") and ".png: No space left on device" in line
    assert _temporaries(tmp_path) == []
    assert main(["inpaint", "--method", "telea", "--dataset", str(tiny_dataset), "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 0


def _photos(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    folder.mkdir()
    for i, photo in enumerate((data.astronaut(), data.chelsea(), data.coffee(), data.rocket())):
        Image.fromarray(np.ascontiguousarray(photo[:192:4, :256:4])).save(folder / f"p{i}.png")
    return folder


def _torch_writer_failure(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")  # torch.save, measured


@pytest.mark.parametrize("failure", ["oserror", "torch"])
def test_train_checkpoint_on_a_full_disk_names_it_and_removes_the_temporary_folder(tmp_path, capsys, monkeypatch,
                                                                                   failure):
    from accelerate import Accelerator

    real_save_state = Accelerator.save_state

    def save_state(self, output_dir=None, **kwargs):  # the optimizer file fails after the model's was written
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        (_enospc if failure == "oserror" else _torch_writer_failure)()

    out = tmp_path / "run"
    args = ["train", "mae", "--preset", "tiny", "--data", str(_photos(tmp_path / "photos")), "--out", str(out),
            "--max-steps", "2", "--set", "checkpoint_every=2", "--no-progress", "--cpu"]
    monkeypatch.setattr(Accelerator, "save_state", save_state)
    assert main(args) == 1
    line = _one_line_error(capsys, "train")
    checkpoint = out / "checkpoints" / "step-00000002"
    if failure == "oserror":
        assert line == f"misato train: error: {checkpoint}: No space left on device (free some space and run the " \
                       "same command again)"
    else:
        assert line.startswith(f"misato train: error: {checkpoint}: write failed ([enforce fail") and " free on its " \
            "disk" in line
    assert _temporaries(tmp_path) == [] and not checkpoint.exists()
    monkeypatch.setattr(Accelerator, "save_state", real_save_state)
    assert main(args) == 0 and (out / "mae.safetensors").is_file()


def test_train_final_weights_on_a_full_disk_name_the_file_and_leave_no_temporary_file(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    def save_file(tensors, filename, metadata=None):  # safetensors' own words for ENOSPC
        Path(filename).write_bytes(b"partial")
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    out = tmp_path / "run"
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    assert main(["train", "mae", "--preset", "tiny", "--data", str(_photos(tmp_path / "photos")), "--out", str(out),
                 "--max-steps", "1", "--no-progress", "--cpu"]) == 1
    assert _one_line_error(capsys, "train") == f"misato train: error: {out / 'mae.safetensors'}: No space left on " \
                                               "device (free some space and run the same command again)"
    assert _temporaries(tmp_path) == []


def test_weights_convert_on_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    import safetensors.torch
    import torch

    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    source, dest = tmp_path / "model.pth", tmp_path / "out" / "model.safetensors"
    torch.save({"weight": torch.zeros(3)}, source)
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    assert main(["weights", "convert", str(source), str(dest)]) == 1
    assert _one_line_error(capsys, "weights") == f"misato weights: error: {dest}: No space left on device (free " \
                                                 "some space and run the same command again)"
    assert _temporaries(tmp_path) == [] and not dest.exists()


def test_unpacking_an_archive_on_a_full_disk_names_the_target_and_removes_the_partial_folder(tmp_path, monkeypatch):
    import zipfile

    from misato.builder.released import safe_extract

    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("image/0000.png", b"x" * 100)

    def extractall(self, path=None, *args, **kwargs):
        (Path(path) / "image").mkdir(parents=True)
        (Path(path) / "image" / "0000.png").write_bytes(b"x")
        _enospc()

    monkeypatch.setattr(zipfile.ZipFile, "extractall", extractall)
    target = tmp_path / "unpacked"
    with pytest.raises(OSError) as raised:
        safe_extract(archive, target)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.zip"]  # no partial folder
