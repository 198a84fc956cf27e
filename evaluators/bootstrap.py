"""Bootstrap confidence intervals and paired comparisons, resampling images with a recorded seed.

Own code (why): clean-fid, torch-fidelity, torchmetrics and the papers' scripts report point values only;
scipy.stats.bootstrap has no paired set-metric form (a set metric is recomputed from resampled feature rows).

Conventions: one resample = n image indices drawn with replacement from the n images (numpy
`default_rng(seed)`; `Resamples` draws them in chunks of rows from one generator, the same indices as one
`resample_indices` call, so memory does not grow with the count); every count is at most
`misato.defaults.BOOTSTRAP_MAX` (`check_resamples`); the interval is the percentile interval (level 0.95: the
2.5th and 97.5th percentiles of the resampled statistic). Per-image values that are not finite (left out of the
mean, see the scorer) are left out of each resample's mean too. The same indices serve every metric of a result,
and two methods scored on the same images with the same seed are resampled identically (paired).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from misato.defaults import BOOTSTRAP_MAX, BOOTSTRAP_RESAMPLES, KID_BOOTSTRAP_RESAMPLES, SET_BOOTSTRAP_RESAMPLES

LEVEL = 0.95
# Indices drawn per chunk (2 MiB of int64); a resample's means take about 25 bytes per index, so a chunk's
# working memory stays near 6.5 MiB whatever the resample count.
CHUNK_ELEMENTS = 1 << 18


def check_resamples(count: int, flag: str = "--bootstrap") -> int:
    """`count` when it is a resample count in [0, BOOTSTRAP_MAX] (0: no intervals); ValueError naming `flag`."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= BOOTSTRAP_MAX:
        raise ValueError(f"{flag} must be 0 (no intervals) or a number of resamples up to {BOOTSTRAP_MAX:,} "
                         f"(misato.defaults.BOOTSTRAP_MAX), got {count!r}")
    return int(count)


@dataclass(frozen=True)
class BootstrapConfig:
    """Resample counts by cost; 0 turns those intervals off. resamples: per-image means and U/P-IDS (cheap);
    set_resamples: FID, a full recomputation each (an N x N SVD for N images, `frechet_distance_of_rows`: 0.05 s
    at 500 images, 1.6 s at 2,000 on 2 CPU cores); kid_resamples: KID, its protocol's 100 subsets each (9.5 s at
    500 images, 17 s at 2,000 on 2 CPU cores), off by default. seed: recorded."""

    resamples: int = BOOTSTRAP_RESAMPLES
    set_resamples: int = SET_BOOTSTRAP_RESAMPLES
    kid_resamples: int = KID_BOOTSTRAP_RESAMPLES
    seed: int = 0
    level: float = LEVEL

    def __post_init__(self) -> None:
        for flag, count in (("--bootstrap", self.resamples), ("--set-bootstrap", self.set_resamples),
                            ("--kid-bootstrap", self.kid_resamples)):
            check_resamples(count, flag)

    def record(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "set_resamples": self.set_resamples,
                "kid_resamples": self.kid_resamples, "seed": self.seed,
                "level": self.level, "method": "percentile, images resampled with replacement"}


def count_for(config: "BootstrapConfig", cost: str) -> int:
    """The resample count of a set metric whose `per_resample_cost` is "image", "set" or "kid"."""
    return {"image": config.resamples, "set": config.set_resamples,
            "kid": config.kid_resamples}[cost]


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """int (resamples, n): row r holds the image indices of resample r (all at once: `Resamples` for large
    counts)."""
    check_resamples(resamples, "resamples")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _rows_per_chunk(n: int, elements_per_row: int) -> int:
    """Rows r of n indices such that r x n x elements_per_row <= CHUNK_ELEMENTS (at least one row)."""
    return max(1, CHUNK_ELEMENTS // max(1, n * elements_per_row))


class Resamples:
    """`count` resamples of n image indices from `default_rng(seed)`, drawn in chunks of rows: the same rows as
    `resample_indices(n, count, seed)` (numpy draws a Generator's integers one after another, so consecutive
    draws of r1 and r2 rows equal one draw of r1 + r2 rows; tested), with memory bounded by `CHUNK_ELEMENTS`
    instead of count x n. Each pass over the chunks draws them again from the seed."""

    def __init__(self, n: int, count: int, seed: int) -> None:
        self.n, self.count, self.seed = int(n), check_resamples(count, "resamples"), seed

    def __len__(self) -> int:
        return self.count

    def chunks(self, elements_per_row: int = 1) -> Iterator[np.ndarray]:
        """int (r, n) blocks of consecutive rows, r chosen so r x n x elements_per_row <= CHUNK_ELEMENTS (at
        least one row)."""
        rows = _rows_per_chunk(self.n, elements_per_row)
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.count, rows):
            yield rng.integers(0, self.n, size=(min(rows, self.count - start), self.n))

    def __iter__(self) -> Iterator[np.ndarray]:
        """One resample's indices (n,) at a time (set metrics recompute from each)."""
        for chunk in self.chunks():
            yield from chunk


Indices = np.ndarray | Resamples  # int (R, N) rows, or the same rows drawn in chunks


def _chunks(indices: Indices, elements_per_row: int = 1) -> Iterator[np.ndarray]:
    """Row blocks of `indices` within the chunk budget (an array is split; `Resamples` draws them)."""
    if isinstance(indices, Resamples):
        yield from indices.chunks(elements_per_row)
        return
    indices = np.asarray(indices)
    rows = _rows_per_chunk(indices.shape[1], elements_per_row)
    for start in range(0, len(indices), rows):
        yield indices[start:start + rows]


def percentile_interval(statistics: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """(low, high) of the finite resampled statistics; None when fewer than 2 are finite."""
    finite = statistics[np.isfinite(statistics)]
    if len(finite) < 2:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _finite_means(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float (r,): the mean of the finite `values` (N,) of each row of `rows` (r, N) (NaN where none is)."""
    taken = values[rows]
    finite = np.isfinite(taken)
    counts = finite.sum(axis=1)
    sums = np.where(finite, taken, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def resampled_means(values: np.ndarray, indices: Indices) -> np.ndarray:
    """float (resamples,): the mean of the finite values of each resample (NaN where none is finite)."""
    return resampled_means_of({"values": values}, indices)["values"]


def resampled_means_of(values: dict[str, np.ndarray], indices: Indices) -> dict[str, np.ndarray]:
    """`resampled_means` of several per-image arrays (N,) over the same resamples, each chunk drawn once."""
    arrays = {key: np.asarray(v, np.float64) for key, v in values.items()}
    out: dict[str, list[np.ndarray]] = {key: [] for key in arrays}
    for rows in _chunks(indices):
        for key, array in arrays.items():
            out[key].append(_finite_means(array, rows))
    return {key: np.concatenate(parts) if parts else np.zeros(0) for key, parts in out.items()}


def resampled_sums(values: np.ndarray, indices: Indices) -> np.ndarray:
    """float (R, ...): per resample, the sum of the rows `values[i]` (N, ...) it draws (in chunks)."""
    values = np.asarray(values)
    per_row = int(np.prod(values.shape[1:], dtype=np.int64))
    parts = [values[rows].sum(axis=1) for rows in _chunks(indices, per_row)]
    return np.concatenate(parts) if parts else np.zeros((0, *values.shape[1:]))


def mean_interval(values: np.ndarray, indices: Indices, level: float = LEVEL) -> tuple[float, float] | None:
    """Interval of the mean of per-image `values` (N,) over the resamples `indices` (R, N)."""
    return percentile_interval(resampled_means(values, indices), level)


def mean_intervals(values: dict[str, np.ndarray], indices: Indices,
                   level: float = LEVEL) -> dict[str, tuple[float, float] | None]:
    """`mean_interval` of several per-image arrays over the same resamples (each chunk drawn once)."""
    return {key: percentile_interval(means, level) for key, means in resampled_means_of(values, indices).items()}


def set_intervals(compute: Callable[[np.ndarray], dict[str, float | None]], indices: Indices,
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


def win_probability(a: np.ndarray, b: np.ndarray, higher_is_better: bool, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0) -> float | None:
    """P(A beats B) under the paired bootstrap: the share of resamples (the same images for both) where A's mean
    is better than B's; ties count half. a, b: per-image values (N,) of two methods on the same images, in the
    same order. None when no resample has a finite mean for both."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
    means = resampled_means_of({"a": a, "b": b}, Resamples(len(a), resamples, seed))
    mean_a, mean_b = means["a"], means["b"]
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
