"""Set metrics over paired Inception features (source "inception"), in the torchmetrics shape.

Each class: `__init__(protocol, pca_dim)`, `update(real, fake)` with float (N, D) rows paired row by row (row
i of both is the same image), state kept in float64, and `compute() -> {metric: value}`; a set too small for
the metric raises ValueError (the scorer records the reason and writes null). The formulas are the functional
forms in `evaluators.functional`, so a result equals a direct call on the same features.
"""

from __future__ import annotations

import numpy as np

from evaluators.functional.frechet import GaussianStats, fid_from_stats
from evaluators.functional.ids import inception_discriminative_scores
from evaluators.functional.kid import kernel_inception_distance
from evaluators.protocols import Protocol


class _PairedRows:
    """Keeps every paired row (float64): the SVM and the KID subsets need them all, in update order."""

    def __init__(self, protocol: Protocol, pca_dim: int | None) -> None:
        self.protocol, self.pca_dim = protocol, pca_dim
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    def update(self, real: np.ndarray, fake: np.ndarray) -> None:
        real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
        if real.shape != fake.shape or real.ndim != 2:
            raise ValueError(f"real and fake rows must be paired (N, D), got {real.shape} and {fake.shape}")
        self.real.append(real)
        self.fake.append(fake)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.real:
            raise ValueError("no features were added")
        return np.concatenate(self.real), np.concatenate(self.fake)


class FrechetInceptionDistance:
    """FID from streamed float64 Gaussian statistics (O(D^2) memory whatever N); needs 2 images."""

    def __init__(self, protocol: Protocol, pca_dim: int | None) -> None:
        self.real: GaussianStats | None = None
        self.fake: GaussianStats | None = None

    def update(self, real: np.ndarray, fake: np.ndarray) -> None:
        if self.real is None or self.fake is None:
            self.real, self.fake = GaussianStats(real.shape[1]), GaussianStats(fake.shape[1])
        self.real.update(real)
        self.fake.update(fake)

    def compute(self) -> dict[str, float]:
        if self.real is None or self.fake is None or self.real.n < 2:
            raise ValueError(f"FID needs at least 2 images, got {self.real.n if self.real else 0}")
        return {"fid": fid_from_stats(self.real, self.fake)}


class DiscriminativeScores(_PairedRows):
    """U-IDS and P-IDS from one linear SVM (with the protocol's PCA when `pca_dim` is set)."""

    def compute(self) -> dict[str, float]:
        real, fake = self.rows()
        u_ids, p_ids = inception_discriminative_scores(real, fake, self.pca_dim, self.protocol.ids_pca_seed)
        return {"u_ids": u_ids, "p_ids": p_ids}


class KernelInceptionDistance(_PairedRows):
    """KID mean and std over the protocol's seeded subsets; needs 2 images."""

    def compute(self) -> dict[str, float]:
        real, fake = self.rows()
        p = self.protocol
        mean, std = kernel_inception_distance(real, fake, p.kid_subsets, p.kid_subset_size, p.kid_seed)
        return {"kid": mean, "kid_std": std}
