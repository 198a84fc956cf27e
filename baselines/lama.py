"""LaMa (Suvorov et al., WACV 2022), big-lama, from its published TorchScript export.

The file (`big-lama.pt`, weights key "lama-big" in `baselines.weight_specs`) is a TorchScript module,
loaded with `torch.jit.load` (TorchScript archives are not pickles, so `torch.load(weights_only=True)`
does not apply). Its forward is `model(image, mask) -> image`:
  image: float32 (B, 3, H, W) RGB in [0, 1]; mask: float32 (B, 1, H, W) in {0, 1}, 1 = hole;
  H and W multiples of 8; output float32 (B, 3, H, W) in [0, 1], already composited by the model.
We call it one sample at a time: the export was traced at batch size 1.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch

from baselines.base import Inpainter, ResolutionPolicy


class LamaInpainter(Inpainter):
    """big-lama; options: `weight_paths={"lama-big": PATH}`, `allow_download` (see `Inpainter.resolve_weight`).

    A missing file raises `misato.weights.WeightsNotFoundError` from the constructor, naming the fix.
    """

    name: ClassVar[str] = "lama"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=8)
    batched: ClassVar[bool] = False
    weights: ClassVar[tuple[str, ...]] = ("lama-big",)

    def __init__(self, device: str | torch.device = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        resolved = self.resolve_weight("lama-big")
        with warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.export, but the published file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(resolved.path), map_location=self.device)
        self.model.eval()

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        if images.shape[-2] % 8 or images.shape[-1] % 8:
            raise ValueError(f"lama: H and W must be multiples of 8 (the harness pads), got {tuple(images.shape)}")
        outputs = [self.model(image[None], (mask[None] > 0.5).float()) for image, mask in zip(images, masks)]
        return torch.cat(outputs).float()
