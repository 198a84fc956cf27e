"""Set metrics over paired Inception features (source "inception"), in the torchmetrics shape.

Each class: `__init__(protocol, pca_dim)`, `update(real, fake)` with float (N, D) rows paired row by row (row
i of both is the same image), state kept in float64, and `compute() -> {metric: value}`; a set too small for
the metric raises ValueError (the scorer records the reason and writes null). The formulas are the functional
forms in `evaluators.functional`, so a result equals a direct call on the same features.

`intervals(real, fake, indices, level)` gives bootstrap intervals (`evaluators.bootstrap`) from all the rows and
resampled image indices (R, N). `per_resample_cost` says which `BootstrapConfig` count applies: "image"
(cheap), "set" (FID, a recomputation per resample) or "kid" (KID, the costliest).
"""

from __future__ import annotations

import numpy as np

from evaluators.bootstrap import mean_interval, set_intervals
from evaluators.functional.frechet import GaussianStats, fid_from_stats, frechet_distance_of_rows
from evaluators.functional.ids import discriminative_decisions, scores_from_decisions
from evaluators.functional.kid import kernel_inception_distance
from evaluators.protocols import Protocol

Interval = tuple[float, float] | None


class _PairedRows:
    """Keeps every paired row as given (the scorer's float32 features: 16 KiB per image at D = 2048, not a float64
    copy per instance): the SVM and the KID subsets need them all, in update order; `rows()` is float64."""

    def __init__(self, protocol: Protocol, pca_dim: int | None) -> None:
        self.protocol, self.pca_dim = protocol, pca_dim
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []
        self.computed = False  # set by a successful `compute` (intervals need it)

    def update(self, real: np.ndarray, fake: np.ndarray) -> None:
        real, fake = np.asarray(real), np.asarray(fake)
        if real.shape != fake.shape or real.ndim != 2:
            raise ValueError(f"real and fake rows must be paired (N, D), got {real.shape} and {fake.shape}")
        self.real.append(real)
        self.fake.append(fake)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.real:
            raise ValueError("no features were added")
        return np.concatenate(self.real).astype(np.float64), np.concatenate(self.fake).astype(np.float64)


class FrechetInceptionDistance:
    """FID from streamed float64 Gaussian statistics (O(D^2) memory whatever N); needs 2 images.

    While fewer rows than dimensions have arrived it also keeps them (at most D x D per side, so memory stays
    O(D^2)) and computes the same distance through `frechet_distance_of_rows` (an N x N SVD: 0.05 s instead of 2.3 s
    for two 2048 x 2048 eigendecompositions at 500 images; equal to 1e-7 relative, tested)."""

    per_resample_cost = "set"

    def __init__(self, protocol: Protocol, pca_dim: int | None) -> None:
        self.real: GaussianStats | None = None
        self.fake: GaussianStats | None = None
        self.rows: tuple[list[np.ndarray], list[np.ndarray]] | None = ([], [])
        self.computed = False  # set by a successful `compute` (intervals need it)

    def update(self, real: np.ndarray, fake: np.ndarray) -> None:
        if self.real is None or self.fake is None:
            self.real, self.fake = GaussianStats(real.shape[1]), GaussianStats(fake.shape[1])
        self.real.update(real)
        self.fake.update(fake)
        if self.rows is not None:
            self.rows[0].append(np.asarray(real))
            self.rows[1].append(np.asarray(fake))
            if self.real.n >= self.real.dim:
                self.rows = None

    def compute(self) -> dict[str, float]:
        if self.real is None or self.fake is None or self.real.n < 2:
            raise ValueError(f"FID needs at least 2 images, got {self.real.n if self.real else 0}")
        if self.rows is not None:
            value = frechet_distance_of_rows(np.concatenate(self.rows[0]), np.concatenate(self.rows[1]))
        else:
            value = fid_from_stats(self.real, self.fake)
        self.computed = True
        return {"fid": value}

    @staticmethod
    def intervals(real: np.ndarray, fake: np.ndarray, indices: np.ndarray, level: float) -> dict[str, Interval]:
        def fid(rows: np.ndarray) -> dict[str, float]:
            return {"fid": frechet_distance_of_rows(real[rows], fake[rows])}

        return set_intervals(fid, indices, level)


class DiscriminativeScores(_PairedRows):
    """U-IDS and P-IDS from one linear SVM (with the protocol's PCA when `pca_dim` is set).

    Intervals are conditional on the SVM fitted to all rows: each resample re-scores the resampled pairs with
    that SVM's decisions (an SVM refit per resample would cost a fit of 2N x D rows each time; this keeps the cost
    at one fit whatever the number of resamples, and leaves the fit's own variance out of the interval)."""

    per_resample_cost = "image"

    def compute(self) -> dict[str, float]:
        real, fake = self.rows()
        self.decisions = discriminative_decisions(real, fake, self.pca_dim, self.protocol.ids_pca_seed)
        u_ids, p_ids = scores_from_decisions(*self.decisions)
        self.computed = True
        return {"u_ids": u_ids, "p_ids": p_ids}

    def intervals(self, real: np.ndarray, fake: np.ndarray, indices: np.ndarray, level: float) -> dict[str, Interval]:
        decision_real, decision_fake = self.decisions  # of `compute`, on the same rows
        wrong = ((decision_real <= 0).astype(float) + (decision_fake > 0).astype(float)) / 2.0  # per pair
        wins = (decision_fake > decision_real).astype(float)
        return {"u_ids": mean_interval(wrong, indices, level), "p_ids": mean_interval(wins, indices, level)}


class KernelInceptionDistance(_PairedRows):
    """KID mean and std over the protocol's seeded subsets; needs 2 images."""

    per_resample_cost = "kid"

    def compute(self) -> dict[str, float]:
        real, fake = self.rows()
        p = self.protocol
        mean, std = kernel_inception_distance(real, fake, p.kid_subsets, p.kid_subset_size, p.kid_seed)
        self.computed = True
        return {"kid": mean, "kid_std": std}

    def intervals(self, real: np.ndarray, fake: np.ndarray, indices: np.ndarray, level: float) -> dict[str, Interval]:
        p = self.protocol

        def kid(rows: np.ndarray) -> dict[str, float]:
            return {"kid": kernel_inception_distance(real[rows], fake[rows], p.kid_subsets, p.kid_subset_size,
                                                     p.kid_seed)[0]}

        return set_intervals(kid, indices, level)
