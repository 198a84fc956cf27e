"""Bootstrap confidence intervals and paired comparisons, resampling images with a recorded seed.

Own code (why): clean-fid, torch-fidelity, torchmetrics and the papers' scripts report point values only;
scipy.stats.bootstrap has no paired set-metric form (a set metric is recomputed from resampled feature rows).

Conventions: one resample = n image indices drawn with replacement from the n images (numpy
`default_rng(seed)`); the interval is the percentile interval (level 0.95: the 2.5th and 97.5th percentiles of
the resampled statistic). Per-image values that are not finite (left out of the mean, see the scorer) are left
out of each resample's mean too. The same indices serve every metric of a result, and two methods scored on the
same images with the same seed are resampled identically (paired).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class BootstrapConfig:
    """Resample counts by cost; 0 turns those intervals off. resamples: per-image means and U/P-IDS (cheap);
    set_resamples: FID, a full recomputation each (an N x N SVD for N images, `frechet_distance_of_rows`: 0.05 s
    at 500 images, 1.6 s at 2,000 on 2 CPU cores); kid_resamples: KID, its protocol's 100 subsets each (9.5 s at
    500 images, 17 s at 2,000 on 2 CPU cores), off by default. seed: recorded."""

    resamples: int = 1000
    set_resamples: int = 20
    kid_resamples: int = 0
    seed: int = 0
    level: float = LEVEL

    def record(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "set_resamples": self.set_resamples,
                "kid_resamples": self.kid_resamples, "seed": self.seed,
                "level": self.level, "method": "percentile, images resampled with replacement"}


def count_for(config: "BootstrapConfig", cost: str) -> int:
    """The resample count of a set metric whose `per_resample_cost` is "image", "set" or "kid"."""
    return {"image": config.resamples, "set": config.set_resamples,
            "kid": config.kid_resamples}[cost]


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """int (resamples, n): row r holds the image indices of resample r."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(statistics: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """(low, high) of the finite resampled statistics; None when fewer than 2 are finite."""
    finite = statistics[np.isfinite(statistics)]
    if len(finite) < 2:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def resampled_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """float (resamples,): the mean of the finite values of each resample (NaN where none is finite)."""
    taken = values[indices]
    finite = np.isfinite(taken)
    counts = finite.sum(axis=1)
    sums = np.where(finite, taken, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def mean_interval(values: np.ndarray, indices: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """Interval of the mean of per-image `values` (N,) over the resamples `indices` (R, N)."""
    return percentile_interval(resampled_means(np.asarray(values, np.float64), indices), level)


def set_intervals(compute: Callable[[np.ndarray], dict[str, float | None]], indices: np.ndarray,
                  level: float = LEVEL) -> dict[str, tuple[float, float] | None]:
    """Intervals of set metrics: `compute(rows)` recomputes every metric from the resampled rows (a resample too
    small or degenerate for a metric raises ValueError and is skipped)."""
    collected: dict[str, list[float]] = {}
    for rows in indices:
        try:
            values = compute(rows)
        except ValueError:
            continue
        for key, value in values.items():
            collected.setdefault(key, []).append(np.nan if value is None else float(value))
    return {key: percentile_interval(np.array(found), level) for key, found in collected.items()}


def win_probability(a: np.ndarray, b: np.ndarray, higher_is_better: bool, resamples: int = 1000,
                    seed: int = 0) -> float | None:
    """P(A beats B) under the paired bootstrap: the share of resamples (the same images for both) where A's mean
    is better than B's; ties count half. a, b: per-image values (N,) of two methods on the same images, in the
    same order. None when no resample has a finite mean for both."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
    indices = resample_indices(len(a), resamples, seed)
    mean_a, mean_b = resampled_means(a, indices), resampled_means(b, indices)
    both = np.isfinite(mean_a) & np.isfinite(mean_b)
    if not both.any():
        return None
    diff = (mean_a - mean_b)[both] * (1 if higher_is_better else -1)
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


class Stopwatch:
    """Seconds spent computing intervals (recorded beside them)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start
