"""Kernel Inception Distance with seeded subsets.

Own code (why): clean-fid and torchmetrics draw subsets unseeded; torch-fidelity seeds but only through its
folder-level API. Same estimator as torch-fidelity (unbiased MMD^2, cubic polynomial kernel
k(x, y) = (x.y / D + 1)^3, subsets drawn with numpy RandomState(seed).choice without replacement).
"""

from __future__ import annotations

import numpy as np


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    dim = x.shape[1]
    k_xx = (x @ x.T / dim + 1) ** 3
    k_yy = (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    m = x.shape[0]
    sum_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    sum_yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(sum_xx + sum_yy - 2 * k_xy.mean())


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[float, float]:
    """(mean, std) of unbiased MMD^2 over `subsets` random subsets; subset_size is capped at min(N_real, N_fake)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} and {len(fake)}")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        values.append(_mmd2_unbiased(x, y))
    return float(np.mean(values)), float(np.std(values))
