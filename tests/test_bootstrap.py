"""Bootstrap intervals and paired comparisons: coverage on synthetic data with a known answer, pairing, and the
intervals the scorer records."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators.bootstrap import mean_interval, resample_indices, win_probability
from evaluators.scoring import ScoreConfig, score
from misato.data import load_dataset


def test_mean_interval_covers_the_true_mean_at_about_the_nominal_rate():
    """200 samples of 60 draws from N(mu, 1): the 95% interval covers mu about 95% of the time (the percentile
    bootstrap runs a little narrow at this n: we accept 0.88 to 0.99)."""
    rng = np.random.default_rng(1)
    mu, trials, n = 3.0, 200, 60
    covered = 0
    for trial in range(trials):
        values = rng.normal(mu, 1.0, n)
        low, high = mean_interval(values, resample_indices(n, 400, seed=trial))
        covered += low <= mu <= high
    assert 0.88 <= covered / trials <= 0.99


def test_mean_interval_leaves_out_non_finite_values_and_is_seeded():
    values = np.array([1.0, 2.0, np.inf, 3.0, np.nan, 4.0])
    indices = resample_indices(6, 300, seed=5)
    first = mean_interval(values, indices)
    assert first == mean_interval(values, resample_indices(6, 300, seed=5))
    # by hand: each resample's mean over its finite values only (a resample with none has no mean), then the
    # 2.5th and 97.5th percentiles
    means = [np.mean(kept) for row in indices if (kept := [values[i] for i in row if np.isfinite(values[i])])]
    assert first == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=1e-12)
    assert first != mean_interval(values, resample_indices(6, 300, seed=6))  # the seed decides the resamples


def test_win_probability_is_paired():
    """B = A + a small constant on every image: B wins every paired resample (an unpaired comparison of two such
    noisy sets would not tell them apart)."""
    a = np.random.default_rng(0).normal(0, 5, 100)
    b = a + 0.01
    assert win_probability(b, a, higher_is_better=True) == 1.0
    assert win_probability(b, a, higher_is_better=False) == 0.0
    assert win_probability(a, a, higher_is_better=True) == 0.5
    with pytest.raises(ValueError, match="same shape"):
        win_probability(a, b[:5], True)


def test_scorer_records_intervals_for_every_metric(tiny_dataset, tiny_predictions, tmp_path, tiny_features):
    dataset = load_dataset(tiny_dataset)
    config = dict(weights=tiny_features, protocol="tiny-features", device="cpu", bootstrap=200, set_bootstrap=10, kid_bootstrap=3,
                  metrics=("psnr", "ssim", "lpips", "fid", "u_ids", "p_ids", "kid"))
    result = score(dataset, tiny_predictions, "m", tmp_path, ScoreConfig(batch_size=3, **config))
    record = result.record
    for scope, row in {"overall": record.overall, **record.per_domain}.items():
        for metric in config["metrics"]:
            low, high = record.intervals[scope][metric]
            assert low <= high, (scope, metric)
            if metric in ("psnr", "ssim", "lpips", "u_ids", "p_ids"):  # the mean's own resamples bracket it
                assert low - 1e-9 <= row[metric] <= high + 1e-9, (scope, metric)
    assert record.bootstrap["resamples"] == 200 and record.bootstrap["set_resamples"] == 10
    assert record.bootstrap["seconds"] >= 0
    assert sum(row["n"] for row in record.per_hole_ratio.values()) == len(dataset)
    again = score(dataset, tiny_predictions, "m2", tmp_path, ScoreConfig(batch_size=5, **config))
    for scope, rows in record.intervals.items():  # seeded by the images, not by batching (float rounding aside)
        for metric, pair in rows.items():
            assert again.record.intervals[scope][metric] == pytest.approx(pair, rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="--bootstrap must be 0"):
        score(dataset, tiny_predictions, "m3", tmp_path, ScoreConfig(bootstrap=-1, device="cpu"))
