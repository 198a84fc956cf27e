"""CMMD: the maximum mean discrepancy between CLIP embeddings of truths and results (Jayasumana et al., "Rethinking
FID", CVPR 2024; reference implementation google-research/cmmd).

The estimator is the reference's `distance.mmd`: a Gaussian RBF kernel k(a, b) = exp(-||a - b||^2 / (2 sigma^2)),
MMD = scale * (mean K_xx + mean K_yy - 2 mean K_xy), each mean over the full N x N kernel matrix, diagonal included
(the biased, minimum-variance estimate), sigma 10 and scale 1000 (`Protocol.cmmd_sigma` / `cmmd_scale`). Here it is
computed in float64 (the reference: float32 on its accelerator).

Embeddings (`cmmd`): the reference's CLIP ViT-L/14 at 336 px on the whole image: float RGB in [0, 1] resized to
336 x 336 by bicubic interpolation with antialiasing (jax.image.resize's default; here torch's antialiased bicubic,
the same Keys a = -0.5 kernel), the CLIP mean/std normalisation, no crop; the L2-normalised image embedding.
`cmmd_l14` reuses the CLIP score's own embeddings (ViT-L/14, the hole region only, `evaluators.clip_score`): no
second forward pass, its cache included.
"""

from __future__ import annotations

import numpy as np
import torch

from evaluators.bootstrap import set_intervals
from evaluators.set_metrics import _PairedRows

Interval = tuple[float, float] | None


def maximum_mean_discrepancy(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """scale * (mean k(x_i, x_j) + mean k(y_i, y_j) - 2 mean k(x_i, y_j)) with the Gaussian RBF kernel of bandwidth
    `sigma`, every mean over all index pairs (diagonal included). x: (N, D), y: (M, D) embeddings, N, M >= 1."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"MMD needs (N, D) and (M, D) embeddings with N, M >= 1, got {x.shape} and {y.shape}")
    if sigma <= 0:
        raise ValueError(f"MMD kernel bandwidth must be positive, got {sigma}")
    gamma = 1.0 / (2.0 * sigma**2)
    x_norms, y_norms = (x * x).sum(1), (y * y).sum(1)

    def kernel_mean(a: np.ndarray, a_norms: np.ndarray, b: np.ndarray, b_norms: np.ndarray) -> float:
        squared = a_norms[:, None] + b_norms[None, :] - 2.0 * (a @ b.T)
        return float(np.exp(-gamma * squared).mean())

    return scale * (kernel_mean(x, x_norms, x, x_norms) + kernel_mean(y, y_norms, y, y_norms)
                    - 2.0 * kernel_mean(x, x_norms, y, y_norms))


class WholeImage:
    """uint8 (H, W, 3) RGB -> float32 (3, size, size): [0, 1], antialiased bicubic resize (values may overshoot
    [0, 1] slightly, as in the reference, which does not clip), then (x - mean) / std per channel."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True,
                                            align_corners=False)[0]
        mean, std = torch.tensor(self.mean).view(3, 1, 1), torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std).contiguous()


class ClipMaximumMeanDiscrepancy(_PairedRows):
    """`cmmd` of all rows (embeddings of truths and results, paired row by row); set metric in the
    `evaluators.set_metrics` shape. Kept rows, so the value does not depend on how they arrived in batches."""

    metric = "cmmd"
    per_resample_cost = "set"

    def _value(self, real: np.ndarray, fake: np.ndarray) -> float:
        return maximum_mean_discrepancy(real, fake, self.protocol.cmmd_sigma, self.protocol.cmmd_scale)

    def compute(self) -> dict[str, float]:
        real, fake = self.rows()
        value = self._value(real, fake)
        self.computed = True
        return {self.metric: value}

    def intervals(self, real: np.ndarray, fake: np.ndarray, indices: np.ndarray, level: float) -> dict[str, Interval]:
        real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
        return set_intervals(lambda rows: {self.metric: self._value(real[rows], fake[rows])}, indices, level)


class HoleMaximumMeanDiscrepancy(ClipMaximumMeanDiscrepancy):
    """`cmmd_l14`: the same estimator on the CLIP score's ViT-L/14 hole-region embeddings."""

    metric = "cmmd_l14"
