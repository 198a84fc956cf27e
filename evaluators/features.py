"""Feature extractors for FID / IDS / KID, one per protocol input convention.

Each extractor splits into a picklable `preprocess` (runs in data-loader workers on one uint8 (H, W, 3)
image) and `forward` (a batch on the chosen device -> float32 (B, 2048) on the CPU).
"""

from __future__ import annotations

import abc
from typing import Callable, ClassVar
from unittest import mock

import numpy as np
import torch

from misato.checkpoints import build_empty, check_loaded, load_state_dict_file
from misato.devices import to_inference_layout
from misato.weights import ResolvedWeight


class FeatureExtractor(abc.ABC):
    """Network + input convention. `weight_key` names the file in misato.weights."""

    key: ClassVar[str]
    weight_key: ClassVar[str]
    dim: ClassVar[int] = 2048

    def __init__(self, weights: ResolvedWeight, device: torch.device):
        self.weights = weights
        self.device = device

    @abc.abstractmethod
    def preprocess(self) -> Callable[[np.ndarray], torch.Tensor]:
        """A picklable function: uint8 (H, W, 3) RGB -> the network's per-image input tensor."""

    @abc.abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, ...) stacked preprocessed inputs -> float32 (B, dim) features on the CPU."""


def _torch_fidelity_inception() -> type:
    """torch-fidelity's `FeatureExtractorInceptionV3` class, without running the package's __init__ if the package is
    not imported yet: that __init__ imports every metric and dataset of torch-fidelity, hence torchvision and with it
    torch._dynamo (1.1-1.5 s of a score's start-up on 2 CPU cores, issue 26), none of which the network module
    uses. The package is a bare placeholder (its path, no __init__) while the network module loads; then it and
    the modules loaded under it leave `sys.modules` again, so that a later `import torch_fidelity` is the normal one
    (tested: it then has all its attributes)."""
    import importlib
    import importlib.util
    import sys

    package, module = "torch_fidelity", "torch_fidelity.feature_extractor_inceptionv3"
    if package in sys.modules:
        return importlib.import_module(module).FeatureExtractorInceptionV3
    before = set(sys.modules)
    sys.modules[package] = importlib.util.module_from_spec(importlib.util.find_spec(package))
    try:
        return importlib.import_module(module).FeatureExtractorInceptionV3
    finally:
        for name in set(sys.modules) - before:
            if name == package or name.startswith(package + "."):
                del sys.modules[name]


def build_tf_inception(weights_path) -> torch.nn.Module:
    """torch-fidelity's port of the TF Inception 2015-12-05 graph, loaded weights-only.

    torch-fidelity calls `torch.load(..., weights_only=False)` on the file; we patch that one call so the
    file is read weights-only (the port itself, layers and TF1 resize, is used unchanged).
    """
    FeatureExtractorInceptionV3 = _torch_fidelity_inception()
    state = load_state_dict_file(weights_path)
    with mock.patch.object(torch, "load", lambda *args, **kwargs: state):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path))
    return net


def tf_inception_float_forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pool3 features of torch-fidelity's network for float (B, 3, 299, 299) inputs in [0, 255].

    torch-fidelity's forward accepts only uint8 and resizes inside; clean-fid feeds float images already
    resized to 299 (PIL bicubic, unquantised). At 299 the TF1 resize is the identity, so this runs the same
    layers in the same order after the same (x - 128) / 128 scaling (tested equal to the uint8 path).
    """
    if x.shape[-2:] != (299, 299):
        raise ValueError(f"expected 299x299 inputs, got {tuple(x.shape)}")
    x = (x.float() - 128) / 128
    for name in (
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
        "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
        "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
    ):
        x = getattr(net, name)(x)
    return torch.flatten(x, 1)


def _to_chw_uint8(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


class _CleanResize:
    """clean-fid's resize (PIL bicubic per channel on float32, to 299x299), created lazily per process."""

    def __init__(self) -> None:
        self._fn = None

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if self._fn is None:
            from cleanfid.resize import make_resizer

            self._fn = make_resizer("PIL", False, "bicubic", (299, 299))
        return torch.from_numpy(self._fn(image)).permute(2, 0, 1).contiguous()

    def __getstate__(self) -> dict:
        return {"_fn": None}


class InceptionTF(FeatureExtractor):
    """comod: uint8 images at native size, TF1 bilinear resize to 299 inside the network."""

    key = "inception-tf"
    weight_key = "inception-tf"

    def __init__(self, weights: ResolvedWeight, device: torch.device):
        super().__init__(weights, device)
        self.net = to_inference_layout(build_tf_inception(weights.path), device)

    def preprocess(self) -> Callable[[np.ndarray], torch.Tensor]:
        return _to_chw_uint8

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch.to(self.device))[0].float().cpu()


class InceptionTFClean(InceptionTF):
    """clean: clean-fid's PIL bicubic float resize to 299, then the same network."""

    key = "inception-tf-clean"

    def preprocess(self) -> Callable[[np.ndarray], torch.Tensor]:
        return _CleanResize()

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return tf_inception_float_forward(self.net, batch.to(self.device)).float().cpu()


def build_torchvision_inception(weights_path) -> torch.nn.Module:
    """torchvision's inception_v3 as `inception_v3(weights=IMAGENET1K_V1)` builds it, with fc = Identity (our
    module of the same layout, `evaluators.inception_torchvision`: no torchvision import)."""
    from evaluators.inception_torchvision import InceptionV3
    from misato.checkpoints import load_state_strict

    net = build_empty(InceptionV3)
    load_state_strict(net, load_state_dict_file(weights_path), weights_path, "torchvision Inception v3", assign=True)
    net.fc = torch.nn.Identity()
    return check_loaded(net, str(weights_path)).eval()


class InceptionTorchvision(FeatureExtractor):
    """asuka: torchvision ImageNet Inception, resize 342 + centre crop 299 + ImageNet normalisation."""

    key = "inception-torchvision"
    weight_key = "inception-torchvision"

    def __init__(self, weights: ResolvedWeight, device: torch.device):
        super().__init__(weights, device)
        self.net = to_inference_layout(build_torchvision_inception(weights.path), device)

    def preprocess(self) -> Callable[[np.ndarray], torch.Tensor]:
        from evaluators.inception_torchvision import ImageNetInceptionTransform

        return ImageNetInceptionTransform()

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch.to(self.device)).float().cpu()


EXTRACTORS: dict[str, type[FeatureExtractor]] = {
    cls.key: cls for cls in (InceptionTF, InceptionTFClean, InceptionTorchvision)
}
