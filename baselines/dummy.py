"""A registered dummy inpainter for tests and dry runs (like lm-evaluation-harness's `models/dummy.py`)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch

from baselines.base import Inpainter


class MeanColourInpainter(Inpainter):
    """Outputs, over the whole frame, the mean colour of each sample's known pixels (0.5 if none is known).

    Options:
      noise: std of Gaussian noise added from a `torch.Generator` seeded with the sample's seed, so that
        tests can see whether seeds follow the sample id (default 0: fully deterministic, seed unused).
      delay: seconds to sleep per sample, to test interrupted runs (default 0).
    Input and output follow the contract: images float32 (B, 3, H, W) in [0, 1], masks (B, 1, H, W), 1 = hole.
    """

    name: ClassVar[str] = "dummy"
    version: ClassVar[str] = "1"

    def __init__(self, device: str | torch.device = "cpu", noise: float = 0.0, delay: float = 0.0, **options: Any):
        super().__init__(device, noise=noise, delay=delay, **options)
        if noise < 0 or delay < 0:
            raise ValueError(f"dummy: noise and delay must be >= 0, got noise={noise}, delay={delay}")
        self.noise = float(noise)
        self.delay = float(delay)

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        if len(seeds) != images.shape[0]:
            raise ValueError(f"dummy: {len(seeds)} seeds for a batch of {images.shape[0]}")
        known = 1.0 - masks
        count = known.sum(dim=(2, 3))  # (B, 1)
        mean = (images * known).sum(dim=(2, 3)) / count.clamp(min=1.0)  # (B, 3)
        mean = torch.where(count > 0, mean, torch.full_like(mean, 0.5))
        out = mean[:, :, None, None].expand_as(images).clone()
        if self.noise > 0:
            for i, seed in enumerate(seeds):
                generator = torch.Generator(device="cpu").manual_seed(int(seed))
                noise = torch.randn(images.shape[1:], generator=generator) * self.noise
                out[i] += noise.to(out.device)
        if self.delay > 0:
            time.sleep(self.delay * images.shape[0])
        return out.clamp(0.0, 1.0)
