"""Shared fixtures: a tiny real-photo dataset and random-weight stand-ins for every pretrained file.

Random-initialised networks saved to files stand in for the pretrained ones (no downloads): they have the
real architectures, so every loading path and every formula runs as it would with real weights.
"""

from __future__ import annotations

import os
from pathlib import Path

# No test touches the network: set before anything imports huggingface_hub (which reads HF_HUB_OFFLINE once, at
# import). The download tests unset MISATO_OFFLINE locally and point MISATO_WEIGHTS_ENDPOINT / HF_ENDPOINT at
# servers on 127.0.0.1 (tests/test_download.py).
os.environ["MISATO_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


def _loopback_only(connect):
    """The network disabled for this process: a connection to anything but 127.0.0.1 / ::1 fails as on a machine
    without a route (ENETUNREACH), naming the address, whatever library makes it."""
    import errno
    import socket

    def guarded(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(errno.ENETUNREACH, f"network disabled in the tests: connect to {address[0]}:{address[1]}")
        return connect(self, address, *args)

    return guarded


def _local_names_only(getaddrinfo):
    """Name lookups only for this machine (localhost, its own name) and address literals: a lookup of any other
    name would be a DNS query leaving the machine."""
    import ipaddress
    import socket

    local = {"localhost", socket.gethostname()}

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name in local:
            return getaddrinfo(host, *args, **kwargs)
        try:
            ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, f"network disabled in the tests: name lookup of {name}") from None
        return getaddrinfo(host, *args, **kwargs)

    return guarded


def _disable_network() -> None:
    import socket

    socket.socket.connect = _loopback_only(socket.socket.connect)
    socket.socket.connect_ex = _loopback_only(socket.socket.connect_ex)
    socket.getaddrinfo = _local_names_only(socket.getaddrinfo)


_disable_network()
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

# One intra-op thread per test process: the suite runs with pytest-xdist (-n 2) on 2 cores, and two
# threads per worker made CPU-bound tests several times slower (threads waiting on each other).
torch.set_num_threads(1)


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]


def make_dataset(root: Path, stems: list[str], size: int = 64, seed: int = 0, misato: bool = True) -> Path:
    """Write image/ and mask/ PNGs (crops of scikit-image photos; stroke + box masks, white = hole); with `misato`
    also the `misato build` manifest stating a MISATO dataset (kind MISATO, domains from the stems)."""
    import cv2
    import json

    from misato.builder.export import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION

    rng = np.random.default_rng(seed)
    photos = _photos()
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        photo = photos[i % len(photos)]
        y = int(rng.integers(0, photo.shape[0] - 2 * size))
        x = int(rng.integers(0, photo.shape[1] - 2 * size))
        crop = photo[y : y + 2 * size : 2, x : x + 2 * size : 2]
        Image.fromarray(np.ascontiguousarray(crop)).save(root / "image" / f"{stem}.png")
        mask = np.zeros((size, size), np.uint8)
        a, b = rng.integers(4, size // 2, 2)
        mask[a : a + size // 3, b : b + size // 3] = 255
        cv2.line(mask, tuple(int(v) for v in rng.integers(0, size, 2)), tuple(int(v) for v in rng.integers(0, size, 2)), 255, 5)
        Image.fromarray(mask).save(root / "mask" / f"{stem}.png")
    if misato:
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "dataset": "misato", "files": {}}
        (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return root


def make_predictions(dataset_root: Path, out: Path, seed: int = 1, noise: float = 40.0) -> Path:
    """Predictions = ground truth + noise (a fake inpainter), PNG by stem."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((dataset_root / "image").iterdir()):
        gt = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
        pred = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pred).save(out / f"{path.stem}.png")
    return out


MISATO_STEMS = ["0000", "0001", "0002", "0003", "0500", "0501", "0502", "0503"]


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", MISATO_STEMS)


@pytest.fixture
def tiny_predictions(tiny_dataset, tmp_path) -> Path:
    return make_predictions(tiny_dataset, tmp_path / "pred")


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


@torch.no_grad()
def _calibrate_batchnorm(net: torch.nn.Module, forward) -> None:
    """Set BatchNorm running statistics from real photos, so random networks give well-spread features."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    forward()
    net.eval()


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> dict[str, str]:
    """Explicit paths, by misato.weights key, to random-weight files of the real architectures."""
    import lpips
    import open_clip
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    with mock.patch.object(torch, "load", lambda *a, **k: {}), mock.patch.object(
        FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None
    ):
        tf_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    tv_net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    photos = torch.stack([torch.from_numpy(np.ascontiguousarray(p[:256, :256])).permute(2, 0, 1) for p in _photos()])
    _calibrate_batchnorm(tf_net, lambda: tf_net(photos))
    _calibrate_batchnorm(tv_net, lambda: tv_net(torch.nn.functional.interpolate(photos.float() / 127.5 - 1, size=299)))
    clip_model = open_clip.create_model("ViT-S-32", pretrained=None)
    return {
        "inception-tf": str(_save(tf_net.state_dict(), folder / "inception-tf.pth")),
        "inception-torchvision": str(_save(tv_net.state_dict(), folder / "inception-tv.pth")),
        "alexnet-torchvision": str(_save(torchvision.models.alexnet().state_dict(), folder / "alexnet.pth")),
        "lpips-alex-lin": str(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"),
        "clip-vit-l-14-openai": str(_save(clip_model.state_dict(), folder / "clip-vit-s-32.pth")),
    }


@pytest.fixture
def small_clip_protocols(monkeypatch):
    """Protocols whose CLIP model is the small ViT-S-32 the random CLIP weights were made for (registered, for the
    test, under the ViT-L-14 weights key that `random_weights` fills)."""
    import dataclasses

    from evaluators import protocols
    from misato.clip import CLIP_PRESETS, ClipPreset

    monkeypatch.setitem(CLIP_PRESETS, "ViT-S-32", ClipPreset("ViT-S-32", "clip-vit-l-14-openai", True))
    patched = {name: dataclasses.replace(p, clip_model="ViT-S-32") for name, p in protocols.PROTOCOLS.items()}
    monkeypatch.setattr(protocols, "PROTOCOLS", patched)
    return patched


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """No test reads or writes the user's caches or weights folders."""
    monkeypatch.setenv("MISATO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MISATO_WEIGHTS_DIR", str(tmp_path / "weights-dir"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class TinyFeatures:
    """A stand-in feature network for plumbing tests (layout, batch invariance, cache reuse): two strided convs
    and a mean, 16-d, on uint8 (3, H, W) inputs. Registered as the extractor of the `tiny-features` protocol by
    the `tiny_features` fixture; the real-size Inception runs only where numbers are checked against a library."""

    key = "tiny-features"
    weight_key = "tiny-features"
    dim = 16

    def __init__(self, weights, device):
        self.device = device
        self.net = _tiny_feature_net()
        self.net.load_state_dict(torch.load(weights.path, map_location="cpu", weights_only=True))
        self.net.to(device).eval()

    def preprocess(self):
        return _chw_uint8

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch.to(self.device).float() / 255.0).cpu()


def _tiny_feature_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def _chw_uint8(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


@pytest.fixture
def tiny_features(monkeypatch, tmp_path) -> dict[str, str]:
    """The `tiny-features` protocol (comod's settings with the `TinyFeatures` stand-in) and its weight file;
    returns the explicit weight paths for ScoreConfig.weights (LPIPS included, on random AlexNet weights)."""
    import dataclasses

    import torchvision

    import lpips
    from evaluators import features, protocols
    from misato.io import sha256_file
    from misato.weights import WeightSpec, register

    torch.manual_seed(0)
    path = _save(_tiny_feature_net().state_dict(), tmp_path / "tiny-features.pth")
    register(WeightSpec("tiny-features", "tiny-features.pth", "", sha256_file(path), "test stand-in"))
    monkeypatch.setitem(features.EXTRACTORS, TinyFeatures.key, TinyFeatures)
    protocol = dataclasses.replace(protocols.PROTOCOLS["comod"], name="tiny-features", feature_net=TinyFeatures.key)
    monkeypatch.setitem(protocols.PROTOCOLS, protocol.name, protocol)
    return {"tiny-features": str(path),
            "alexnet-torchvision": str(_save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")),
            "lpips-alex-lin": str(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth")}
