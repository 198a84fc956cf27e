"""Our Frechet distance and streaming statistics against clean-fid, torch-fidelity, torchmetrics and closed forms."""

import numpy as np
import pytest
import torch

from evaluators.functional.frechet import GaussianStats, fid_from_stats, frechet_distance


def _features(seed: int, n: int = 600, d: int = 64, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


@pytest.fixture(scope="module")
def stats():
    a, b = _features(0), _features(1, shift=0.3)
    return a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)


def test_equals_clean_fid(stats):
    import warnings

    from cleanfid.fid import frechet_distance as clean

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's sqrtm(disp=...) deprecation inside clean-fid
        expected = clean(*stats)
    assert frechet_distance(*stats) == pytest.approx(expected, rel=1e-9)


def test_equals_torch_fidelity(stats):
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    mu1, s1, mu2, s2 = stats
    expected = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    assert frechet_distance(*stats) == pytest.approx(expected["frechet_inception_distance"], rel=1e-9)


def test_equals_torchmetrics(stats):
    from torchmetrics.image.fid import _compute_fid

    mu1, s1, mu2, s2 = (torch.from_numpy(x) for x in stats)
    assert frechet_distance(*stats) == pytest.approx(float(_compute_fid(mu1, s1, mu2, s2)), rel=1e-9)


def test_same_distribution_is_zero():
    x = _features(3)
    stats = GaussianStats(x.shape[1])
    stats.update(x)
    assert abs(fid_from_stats(stats, stats)) < 1e-9


def test_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_closed_form_scaled_covariance():
    # sigma2 = c^2 sigma1 -> tr term = (1 - c)^2 tr(sigma1)
    a = np.random.default_rng(1).normal(size=(8, 8))
    sigma = a @ a.T + np.eye(8)
    c = 3.0
    assert frechet_distance(np.zeros(8), sigma, np.zeros(8), c**2 * sigma) == pytest.approx((1 - c) ** 2 * np.trace(sigma), rel=1e-10)


def test_streaming_statistics_do_not_depend_on_batches():
    x = _features(4, n=301)
    whole = GaussianStats(x.shape[1])
    whole.update(x)
    chunked = GaussianStats(x.shape[1])
    for start in range(0, len(x), 37):
        chunked.update(x[start : start + 37])
    np.testing.assert_allclose(chunked.mean(), whole.mean(), rtol=1e-12)
    np.testing.assert_allclose(chunked.cov(), whole.cov(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(whole.cov(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_state_round_trip():
    x = _features(5, n=50, d=8)
    stats = GaussianStats(8)
    stats.update(x)
    again = GaussianStats.from_state(stats.state())
    np.testing.assert_array_equal(again.cov(), stats.cov())
    assert again.n == 50


def test_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="expected features"):
        GaussianStats(4).update(np.zeros((2, 5)))


@pytest.mark.parametrize("n,dim", [(40, 64), (120, 64), (64, 64)])
def test_frechet_of_rows_equals_the_covariance_form(n, dim):
    """The nuclear-norm form (fewer rows than dimensions) and the covariance form give the same FID."""
    from evaluators.functional.frechet import frechet_distance, frechet_distance_of_rows

    rng = np.random.default_rng(n)
    real = rng.normal(size=(n, dim))
    fake = 0.8 * real + rng.normal(0.1, 0.5, size=(n, dim))
    expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert frechet_distance_of_rows(real, fake) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("n", [40, 64, 100])
def test_fid_metric_streams_rows_only_below_the_dimension(n):
    """The scorer's FID class keeps rows while N < D (the fast form) and drops them from N = D on (the streamed
    covariance form); the value is the covariance form's in both regimes, whatever the batch split."""
    from evaluators.protocols import get_protocol
    from evaluators.set_metrics import FrechetInceptionDistance

    rng = np.random.default_rng(n)
    real = rng.normal(size=(n, 64))
    fake = 0.8 * real + rng.normal(0.1, 0.5, size=(n, 64))
    metric = FrechetInceptionDistance(get_protocol("comod"), None)
    for rows in np.array_split(np.arange(n), 3):
        metric.update(real[rows], fake[rows])
    assert (metric.rows is None) == (n >= 64)
    expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert metric.compute()["fid"] == pytest.approx(expected, rel=1e-7)
