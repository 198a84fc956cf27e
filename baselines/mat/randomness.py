"""Per-sample random draws, so a sample's output depends on its seed only (not on its batch or position)."""

from __future__ import annotations

import torch


class SampleRandomness:
    """One CPU `torch.Generator` per batch element; every draw is made per sample and stacked along dim 0.

    Draws are made on the CPU (the same numbers on every device) and moved by the caller.
    """

    def __init__(self, seeds: list[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    @property
    def batch(self) -> int:
        return len(self.generators)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        """N(0, 1) draws of shape (B, *shape), float32."""
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def keep_half(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A {0, 1} float32 map of shape (B, *shape), each entry 1 with probability 1/2.

        This is what MAT's `F.dropout(0.5 * ones, p=0.5, training=True)` yields (kept entries become
        0.5 / (1 - 0.5) = 1), drawn here from the per-sample generators.
        """
        return torch.stack([(torch.rand(shape, generator=g) < 0.5).float() for g in self.generators])
