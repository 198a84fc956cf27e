"""Frechet distance between Gaussians and streaming float64 feature statistics.

Own implementation (why): clean-fid and pytorch-fid call `scipy.linalg.sqrtm(..., disp=False)`, whose `disp`
argument recent scipy deprecates, and its complex-valued result needs their ad-hoc imaginary-part checks. We compute
tr((S1 S2)^(1/2)) as the sum of square roots of the eigenvalues of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2),
which has the same eigenvalues as S1 S2; symmetric eigendecompositions in float64 give real, non-negative results.
The covariance is np.cov's (divisor N - 1), as clean-fid, pytorch-fid, torch-fidelity and torchmetrics use; the
StyleGAN2-ADA metric code MAT evaluates with divides by N, a relative difference of 1/N in the covariances.
"""

from __future__ import annotations

import numpy as np


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 @ sigma2)^(1/2)) for symmetric PSD float64 matrices of shape (D, D)."""
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2.0
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)); inputs (D,) and (D, D)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_of_rows(real: np.ndarray, fake: np.ndarray) -> float:
    """`frechet_distance` of the rows' means and np.cov covariances, computed without a D x D square root when
    there are fewer rows than dimensions: with centred rows X1, X2 (N x D), the non-zero eigenvalues of S1 S2 are
    those of (X1 X2^T)(X2 X1^T) / (N-1)^2, so tr((S1 S2)^(1/2)) = ||X1 X2^T||_* / (N-1) (the nuclear norm: an N x N
    SVD instead of two D x D eigendecompositions; what makes FID bootstrap resamples of 500 images cheap).
    real, fake: (N, D) with the same N >= 2."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    n, dim = real.shape
    if fake.shape != real.shape or n < 2:
        raise ValueError(f"need paired (N >= 2, D) rows, got {real.shape} and {fake.shape}")
    if n >= dim:
        return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    x1, x2 = real - real.mean(0), fake - fake.mean(0)
    diff = real.mean(0) - fake.mean(0)
    trace1, trace2 = (x1 * x1).sum() / (n - 1), (x2 * x2).sum() / (n - 1)
    nuclear = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum() / (n - 1)
    return float(diff @ diff + trace1 + trace2 - 2.0 * nuclear)


class GaussianStats:
    """Streaming mean and covariance of (N, D) features, accumulated in float64.

    Memory is O(D^2) whatever N; the result does not depend on how features are split into batches
    beyond float64 rounding (sums of products, as torchmetrics keeps them).
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self.total = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def update(self, features: np.ndarray) -> None:
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {features.shape}")
        self.n += features.shape[0]
        self.total += features.sum(axis=0)
        self.outer += features.T @ features

    def mean(self) -> np.ndarray:
        return self.total / self.n

    def cov(self) -> np.ndarray:
        """Covariance with divisor N - 1 (np.cov)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got {self.n}")
        mu = self.mean()
        return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)

    def state(self) -> dict[str, np.ndarray]:
        return {"n": np.array(self.n), "total": self.total, "outer": self.outer}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "GaussianStats":
        stats = cls(int(state["total"].shape[0]))
        stats.n = int(state["n"])
        stats.total = np.asarray(state["total"], np.float64)
        stats.outer = np.asarray(state["outer"], np.float64)
        return stats


def fid_from_stats(real: GaussianStats, fake: GaussianStats) -> float:
    return frechet_distance(real.mean(), real.cov(), fake.mean(), fake.cov())
