"""Runner: outputs and manifest, seeds independent of batch size and workers, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from misato.cli import main as cli_main
from misato.data import load_dataset
from misato.io import read_mask, read_rgb, save_png
from misato.composite import composite_uint8
from baselines.runner import inpaint_dataset
from misato.seeds import sample_seed

REPO = Path(__file__).resolve().parent.parent


def write_dataset(root: Path, n: int = 6, size: int = 64) -> Path:
    """`n` crops of scikit-image photos with rectangle and stroke masks, as image/ + mask/ PNGs."""
    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    for i in range(n):
        photo = photos[i % 3]
        top, left = 20 + 11 * i, 40 + 7 * i
        save_png(root / "image" / f"{i:04d}.png", np.ascontiguousarray(photo[top : top + size, left : left + size]))
        mask = np.zeros((size, size), np.uint8)
        if i % 2:
            mask[8 + i : 30 + i, 12:40] = 255
        else:
            for t in range(6, size - 6):
                mask[t, max(0, t - 3 + i) : t + 2 + i] = 255
        save_png(root / "mask" / f"{i:04d}.png", mask)
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny"))


def folder_bytes(out: Path) -> dict[str, bytes]:
    return {f"{sub}/{p.name}": p.read_bytes() for sub in ("raw", "composite") for p in sorted((out / sub).glob("*.png"))}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# ---------------------------------------------------------------- seeds and compositing


def test_sample_seed_is_stable_across_processes():
    here = [sample_seed("0001", 0), sample_seed("0001", 1), sample_seed("0002", 0)]
    assert len(set(here)) == 3 and all(0 <= s < 2**32 for s in here)
    code = "from misato.seeds import sample_seed; print(sample_seed('0001', 0), sample_seed('0001', 1), sample_seed('0002', 0))"
    for hash_seed in ("1", "2"):  # Python's own hash() would differ between these
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert [int(v) for v in out.stdout.split()] == here
    with pytest.raises(ValueError):
        sample_seed("", 0)


def test_composite_rounds_to_nearest_and_keeps_known_pixels():
    gt = np.full((2, 2, 3), 100, np.uint8)
    hole = np.array([[1, 0], [0.5, 1]], np.float32)
    out = composite_uint8(np.full((2, 2, 3), 11, np.uint8), gt, hole)
    assert out[0, 0, 0] == 11 and out[0, 1, 0] == 100
    assert out[1, 0, 0] == 56  # 0.5 * 11 + 0.5 * 100 = 55.5 -> 56 (truncation would give 55)


# ---------------------------------------------------------------- outputs and manifest


def test_outputs_and_manifest(dataset_dir, tmp_path):
    out = tmp_path / "run"
    path = inpaint_dataset(dataset_dir, "dummy", out, seed=3, batch_size=2, device="cpu",
                           options={"noise": 0.1}, progress=False)
    record = manifest(out)
    assert path == out / "manifest.json" and record["status"] == "complete"
    stems = [s.stem for s in load_dataset(dataset_dir).samples]
    assert sorted(record["samples"]) == stems
    for stem in stems:
        sample = record["samples"][stem]
        assert sample["seed"] == sample_seed(stem, 3)
        assert sample["seconds"] >= 0 and sample["batch_size"] in (1, 2)
        gt = read_rgb(dataset_dir / "image" / f"{stem}.png")
        hole = read_mask(dataset_dir / "mask" / f"{stem}.png")
        raw = read_rgb(out / "raw" / f"{stem}.png")
        np.testing.assert_array_equal(read_rgb(out / "composite" / f"{stem}.png"), composite_uint8(raw, gt, hole))
        assert not np.array_equal(raw[hole == 0], gt[hole == 0])  # raw is the model output, not composited
    assert record["method"]["class"] == "baselines.dummy:MeanColourInpainter"
    assert record["method"]["options"]["noise"] == 0.1
    assert record["method"]["policy"] == {"pad_multiple": 1, "min_size": 0, "square": False}
    assert record["dataset"]["content_sha256"] == load_dataset(dataset_dir).content_hash()
    assert record["arguments"]["seed"] == 3 and record["arguments"]["batch_size"] == 2
    assert record["device"]["device"] == "cpu"
    assert record["packages"]["torch"] and record["misato_version"]
    assert "git" in record and record["world_size"] == 1


def test_seeds_do_not_depend_on_batch_size(dataset_dir, tmp_path):
    runs = {}
    for name, batch, seed in (("b1", 1, 0), ("b3", 3, 0), ("seed1", 3, 1)):
        inpaint_dataset(dataset_dir, "dummy", tmp_path / name, seed=seed, batch_size=batch, device="cpu",
                        options={"noise": 0.1}, progress=False)
        runs[name] = folder_bytes(tmp_path / name)
    assert len(runs["b1"]) == 12
    assert runs["b1"] == runs["b3"]
    assert runs["b1"] != runs["seed1"]  # the noise really follows the seed


def test_limit_and_cli(dataset_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["inpaint", "--method", "mean", "--dataset", str(dataset_dir), "--out", str(out),
                     "--device", "cpu", "--batch-size", "4", "--limit", "2", "--option", "noise=0.05",
                     "--no-progress"])
    assert code == 0 and "complete: 2/2" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "composite").iterdir()) == ["0000.png", "0001.png"]
    record = manifest(out)
    assert record["arguments"]["limit"] == 2 and record["arguments"]["options"] == {"noise": 0.05}
    assert record["method"]["spec"] == "mean"


def test_resume_refuses_another_method_or_seed(dataset_dir, tmp_path):
    out = tmp_path / "run"
    inpaint_dataset(dataset_dir, "dummy", out, limit=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="another method"):
        inpaint_dataset(dataset_dir, "dummy", out, seed=1, limit=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="another method"):
        inpaint_dataset(dataset_dir, "telea", out, limit=1, device="cpu", progress=False)



def test_resume_refuses_another_dataset_or_mask_convention(dataset_dir, tmp_path):
    """The same --out given another dataset used to resume: its finished samples were kept as the new dataset's
    (nothing read, the manifest rewritten to name the new one)."""
    out = tmp_path / "run"
    inpaint_dataset(dataset_dir, "dummy", out, limit=1, device="cpu", progress=False)
    other = tmp_path / "other"
    shutil.copytree(dataset_dir, other)
    save_png(other / "image" / sorted(os.listdir(other / "image"))[0], np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="another dataset or mask convention"):
        inpaint_dataset(other, "dummy", out, limit=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="another dataset or mask convention"):
        inpaint_dataset(load_dataset(dataset_dir, mask_hole_is_white=False), "dummy", out, limit=1, device="cpu",
                        progress=False)
    inpaint_dataset(dataset_dir, "dummy", out, limit=2, device="cpu", progress=False)  # the same one resumes
    assert manifest(out)["num_finished"] == 2


def test_image_of_another_size_or_unreadable_is_refused_before_any_output(dataset_dir, tmp_path):
    """A mask of another size than its image, or a broken image file, used to stop the run at that sample
    ("sample 0: mask shape ... differs", no file named) after the output folder had been created."""
    broken = shutil.copytree(dataset_dir, tmp_path / "broken")
    stems = sorted(p.stem for p in (broken / "image").iterdir())
    save_png(broken / "image" / f"{stems[0]}.png", np.zeros((48, 64, 3), np.uint8))
    (broken / "image" / f"{stems[1]}.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="2 image problem") as error:
        inpaint_dataset(broken, "telea", out, device="cpu", progress=False)
    assert f"{stems[0]}.png: image 64x48 but mask 64x64" in str(error.value)
    assert f"{stems[1]}.png: unreadable image" in str(error.value)
    assert not out.exists()

def test_folder_of_predictions(dataset_dir, tmp_path):
    first = tmp_path / "first"
    inpaint_dataset(dataset_dir, "dummy", first, device="cpu", options={"noise": 0.1}, progress=False)
    again = tmp_path / "again"
    inpaint_dataset(dataset_dir, f"folder:{first / 'raw'}", again, device="cpu", progress=False)
    assert folder_bytes(again) == folder_bytes(first)
    assert manifest(again)["method"]["folder"] == str((first / "raw").resolve())
    (first / "raw" / "0003.png").unlink()
    with pytest.raises(ValueError, match="no prediction for 1 of 6"):
        inpaint_dataset(dataset_dir, f"folder:{first}", tmp_path / "bad", device="cpu", progress=False)


# ---------------------------------------------------------------- resume after SIGKILL


def test_resume_after_sigkill_is_byte_identical(dataset_dir, tmp_path):
    reference = tmp_path / "reference"
    inpaint_dataset(dataset_dir, "dummy", reference, device="cpu", options={"noise": 0.1}, progress=False)

    out = tmp_path / "killed"
    options = ["--option", "noise=0.1", "--option", "delay=0.4"]
    command = [sys.executable, "-m", "misato", "inpaint", "--method", "dummy", "--dataset", str(dataset_dir),
               "--out", str(out), "--device", "cpu", "--no-progress", *options]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((out / "composite").glob("*.png"))) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "composite").glob("*.png")}
    assert 2 <= len(finished) < 6, f"kill came too late or too early: {sorted(finished)}"
    # what a kill during a write leaves behind: a temporary file, and a raw file without its composite
    (out / "composite" / ".0005.png.x1y2.tmp").write_bytes(b"half a png")
    pending = sorted({f"{i:04d}.png" for i in range(6)} - set(finished))
    shutil.copy(reference / "raw" / pending[-1], out / "raw" / pending[-1])

    inpaint_dataset(dataset_dir, "dummy", out, device="cpu", options={"noise": 0.1, "delay": 0.4}, progress=False)
    assert folder_bytes(out) == folder_bytes(reference)
    assert {n: (out / "composite" / n).stat().st_mtime_ns for n in finished} == finished  # not recomputed
    assert not list(out.rglob("*.tmp"))
    record = manifest(out)
    assert record["status"] == "complete" and len(record["samples"]) == 6


# ---------------------------------------------------------------- data parallel


def test_two_processes_with_accelerate_match_one(dataset_dir, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert accelerate is not None, "the accelerate launcher is missing: install the `test` extra"
    single = tmp_path / "single"
    inpaint_dataset(dataset_dir, "dummy", single, batch_size=2, device="cpu", options={"noise": 0.1}, progress=False)
    out = tmp_path / "parallel"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    # `--multi_gpu` is accelerate's multi-process (torchrun) launcher; on CPU the processes use gloo.
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "misato", "inpaint", "--method", "dummy", "--option", "noise=0.1", "--dataset", str(dataset_dir),
               "--out", str(out), "--device", "cpu", "--batch-size", "3", "--no-progress"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    record = manifest(out)
    assert record["world_size"] == 2 and record["status"] == "complete"
    assert {s: r["rank"] for s, r in record["samples"].items()} == {f"{i:04d}": i % 2 for i in range(6)}
    assert folder_bytes(out) == folder_bytes(single)


def test_cli_weight_flag_reaches_lama(dataset_dir, tmp_path, capsys):
    import warnings

    import torch

    class Grey(torch.nn.Module):  # big-lama's signature: (image, mask 1 = hole) -> composited image
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image * (1 - mask) + mask * 0.5

    weights = tmp_path / "grey.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(Grey()).save(str(weights))
    out = tmp_path / "lama"
    code = cli_main(["inpaint", "--method", "lama", "--dataset", str(dataset_dir), "--out", str(out), "--limit", "1",
                     "--device", "cpu", "--weight", f"lama-big={weights}", "--no-progress"])
    assert code == 0
    (record,) = manifest(out)["method"]["weights"]
    assert record["path"] == str(weights) and record["matches"] is False
    hole = read_mask(dataset_dir / "mask" / "0000.png") == 1
    assert np.all(read_rgb(out / "composite" / "0000.png")[hole] == 128)  # rint(0.5 * 255)
    missing = cli_main(["inpaint", "--method", "lama", "--dataset", str(dataset_dir), "--out", str(tmp_path / "x"),
                        "--device", "cpu", "--weight", f"lama-big={tmp_path / 'absent.pt'}", "--no-progress"])
    assert missing == 1 and "lama-big" in capsys.readouterr().err


@pytest.mark.parametrize("n,world", [(36500, 8), (2000, 8), (7, 3), (3, 8)])
def test_shards_cover_every_sample_once(n, world):
    """Places2's 36,500 images over 8 processes (and uneven, tiny cases): every stem in exactly one shard, shard
    sizes differ by at most one, each shard in dataset order."""
    from misato.devices import Workers

    stems = [f"{i:08d}" for i in range(n)]
    shards = [Workers(rank=rank, world_size=world).shard(stems) for rank in range(world)]
    assert sorted(stem for shard in shards for stem in shard) == stems
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(shard == sorted(shard) for shard in shards)
