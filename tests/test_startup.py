"""Start-up cost of the scoring path: what a command imports, and the on-disk cache of weight-file hashes."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from misato import weights

REPO = Path(__file__).resolve().parents[1]

# Packages a command must not import unless it uses them (issue 26): each costs 0.1-1.5 s of start-up.
HEAVY = ("torchvision", "open_clip", "sklearn", "diffusers", "transformers", "dreamsim", "starlette", "uvicorn",
         "jinja2", "torch._dynamo", "pandas", "scipy", "skimage", "lpips", "accelerate", "timm", "matplotlib")

# Runs `misato` in a fresh interpreter and prints, as JSON, the heavy packages present in sys.modules at exit.
WRAPPER = """
import json, sys
from misato.cli import main
heavy = json.loads(sys.argv[1])
try:
    code = main(sys.argv[2:])
except SystemExit as stop:
    code = stop.code
print("LOADED=" + json.dumps(sorted(name for name in heavy if name in sys.modules)))
sys.exit(code)
"""


def _loaded(*argv: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    done = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(heavy), *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED="))
    return json.loads(line.removeprefix("LOADED="))


def test_score_help_imports_no_heavy_package():
    """--help builds every subcommand's parser: none may import torch (1.5-2 s) to add its arguments."""
    assert _loaded("score", "--help", heavy=(*HEAVY, "torch")) == []


def test_psnr_only_score_imports_no_heavy_package(tiny_dataset, tiny_predictions, tmp_path):
    out = tmp_path / "results"
    assert _loaded("score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
                   "--out", str(out), "--metrics", "psnr", "--no-progress", "--offline", "--device", "cpu") == []
    assert json.loads(next(out.glob("*.json")).read_text())["metrics"]["overall"]["psnr"] > 0  # it scored


# The networks' own packages that the scoring path replaced (issue 26): lpips and torch-fidelity's __init__ import
# torchvision, and torchvision.ops imports torch._dynamo.
NETWORK_PACKAGES = ("torchvision", "torch._dynamo", "lpips", "torch_fidelity")


@pytest.mark.parametrize("protocol,inception,ssim_packages", [("asuka", "inception-torchvision", ["scipy", "skimage"]),
                                                              ("comod", "inception-tf", [])])
def test_network_score_imports_neither_torchvision_nor_dynamo(protocol, inception, ssim_packages, random_weights,
                                                              tiny_dataset, tiny_predictions, tmp_path):
    """LPIPS, FID and SSIM (the official trio's metrics) under both Inceptions: own LPIPS and torchvision-layout
    Inception modules, torch-fidelity's network module without its package __init__."""
    out = tmp_path / "results"
    weight_flags = [f"--weight={key}={random_weights[key]}" for key in (inception, "alexnet-torchvision", "lpips-alex-lin")]
    assert _loaded("score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--label", "m",
                   "--out", str(out), "--metrics", "lpips,fid,ssim", "--protocol", protocol, "--no-progress",
                   "--offline", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), *weight_flags,
                   heavy=(*HEAVY, *NETWORK_PACKAGES)) == ssim_packages  # asuka's SSIM is skimage's
    overall = json.loads(next(out.glob("*.json")).read_text())["metrics"]["overall"]
    assert overall["lpips"] > 0 and overall["fid"] > 0 and 0 < overall["ssim"] < 1


def test_torch_fidelity_stays_a_normal_package_after_its_network_is_built(random_weights):
    """The network module is loaded under a placeholder package; a later `import torch_fidelity` is the real one."""
    script = (
        "import sys, torch\n"
        "from evaluators.features import build_tf_inception\n"
        "net = build_tf_inception(sys.argv[1]).eval()\n"
        "assert not any(name.startswith(('torch_fidelity', 'torchvision')) for name in sys.modules)\n"
        "import torch_fidelity\n"
        "assert callable(torch_fidelity.calculate_metrics)\n"
        "reference = torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3(\n"
        "    'inception-v3-compat', ['2048'], feature_extractor_weights_path=sys.argv[1]).eval()\n"
        "x = torch.randint(0, 256, (1, 3, 80, 80), dtype=torch.uint8)\n"
        "with torch.no_grad():\n"
        "    assert torch.equal(net(x)[0], reference(x)[0])\n"
        "print('OK')\n")
    done = subprocess.run([sys.executable, "-c", script, random_weights["inception-tf"]], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr


class HashCalls(list):
    """The files `misato.weights` read to hash them, in order; `new_process()` forgets this process's digests."""

    def new_process(self) -> None:
        weights._HASH_CACHE.clear()


@pytest.fixture
def counted_hashes(monkeypatch) -> HashCalls:
    calls = HashCalls()

    def counting(path, *args, **kwargs):
        calls.append(Path(path))
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    monkeypatch.setattr(weights, "sha256_file", counting)
    monkeypatch.setattr(weights, "_HASH_CACHE", {})
    return calls


def test_weight_hash_cached_on_disk_until_the_file_changes(tmp_path, counted_hashes):
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    first.write_bytes(b"weights one")
    second.write_bytes(b"weights two")
    digest = hashlib.sha256(b"weights one").hexdigest()
    assert weights.file_sha256(first) == digest and len(counted_hashes) == 1
    assert weights.file_sha256(second) == hashlib.sha256(b"weights two").hexdigest() and len(counted_hashes) == 2
    cache = json.loads((Path(os.environ["MISATO_CACHE_DIR"]) / "weight-hashes.json").read_text())
    assert cache["entries"][str(first.resolve())]["sha256"] == digest
    counted_hashes.new_process()
    assert weights.file_sha256(first) == digest and len(counted_hashes) == 2  # unchanged: from the disk cache
    # Same size, new bytes, the old modification time put back: the inode alone tells (a new file replaced it).
    before = first.stat()
    replacement = tmp_path / "new.pth"
    replacement.write_bytes(b"weights ONE")
    os.replace(replacement, first)
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns))
    counted_hashes.new_process()
    assert weights.file_sha256(first) == hashlib.sha256(b"weights ONE").hexdigest() and len(counted_hashes) == 3
    # Rewritten in place (same inode and size): the modification time tells.
    with first.open("r+b") as handle:
        handle.write(b"W")
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    counted_hashes.new_process()
    assert weights.file_sha256(first) == hashlib.sha256(b"Weights ONE").hexdigest() and len(counted_hashes) == 4
    counted_hashes.new_process()
    assert weights.file_sha256(second) == hashlib.sha256(b"weights two").hexdigest() and len(counted_hashes) == 4
    assert counted_hashes == [first, second, first, first]


@pytest.mark.parametrize("text", ["{not json", '{"format": 1, "entries": []}', '[1, 2]',
                                  '{"format": 1, "entries": {"PATH": {"sha256": "00"}}}'])
def test_corrupt_weight_hash_cache_is_ignored_with_a_warning(tmp_path, counted_hashes, caplog, text):
    path = tmp_path / "a.pth"
    path.write_bytes(b"weights")
    cache = Path(os.environ["MISATO_CACHE_DIR"]) / "weight-hashes.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(text.replace("PATH", str(path.resolve())))
    assert weights.file_sha256(path) == hashlib.sha256(b"weights").hexdigest() and len(counted_hashes) == 1
    if text.startswith('{"format": 1, "entries": {'):  # a bad entry is dropped quietly, the rest of the file kept
        assert "ignored" not in caplog.text
    else:
        assert f"{cache}: ignored" in caplog.text
    counted_hashes.new_process()
    assert weights.file_sha256(path) == hashlib.sha256(b"weights").hexdigest() and len(counted_hashes) == 1
    assert not list(cache.parent.glob("*.tmp*"))  # the rewrite was atomic: no temporary file left


def test_a_verified_download_is_not_read_again_by_the_next_command(tmp_path, counted_hashes, monkeypatch):
    """fetch_url checked the full sha256 while downloading: neither this process nor the next reads the file again."""
    from misato import download as fetching

    body = b"downloaded weights"
    spec = weights.WeightSpec("k", "k.bin", "http://127.0.0.1:9/k.bin", hashlib.sha256(body).hexdigest(), "test file")

    def verified_fetch(url, target, *args, **kwargs):  # what fetch_url leaves: the checked bytes at `target`
        Path(target).write_bytes(body)
        return Path(target)

    for name in fetching.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fetching, "fetch_url", verified_fetch)
    resolved = weights.download(spec, folder=tmp_path, progress=False)
    assert resolved.matches and counted_hashes == []
    counted_hashes.new_process()
    assert weights.file_sha256(tmp_path / "k.bin") == spec.sha256 and counted_hashes == []
