"""U-IDS / P-IDS against a direct scikit-learn computation; KID against torch-fidelity."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.svm import LinearSVC

from evaluators.functional.ids import inception_discriminative_scores
from evaluators.functional.kid import kernel_inception_distance


def _paired(seed=0, n=200, d=32):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d))
    fake = real + rng.normal(scale=0.8, size=(n, d)) + 0.15
    return real, fake


def _direct(real, fake, pca=None):
    x = np.concatenate([real, fake])
    if pca:
        x = PCA(pca, random_state=0).fit_transform(x)
    y = np.array([1] * len(real) + [0] * len(fake))
    svm = LinearSVC(dual=False).fit(x, y)
    u = 1 - svm.score(x, y)
    p = np.mean(svm.decision_function(x[len(real):]) > svm.decision_function(x[: len(real)]))
    return u, p


def test_equals_direct_sklearn():
    real, fake = _paired()
    u, p = inception_discriminative_scores(real, fake)
    eu, ep = _direct(real, fake)
    assert (u, p) == (pytest.approx(eu, abs=1e-12), pytest.approx(ep, abs=1e-12))
    assert 0 < u < 0.5 and 0 < p < 0.5


def test_pca_variant_equals_direct_sklearn():
    real, fake = _paired(n=150, d=40)
    assert inception_discriminative_scores(real, fake, pca_dim=20) == pytest.approx(_direct(real, fake, pca=20))


def test_p_ids_depends_on_pairing_u_ids_does_not():
    real, fake = _paired(seed=1)
    u, p = inception_discriminative_scores(real, fake)
    shuffled = fake[np.random.default_rng(2).permutation(len(fake))]
    u2, p2 = inception_discriminative_scores(real, shuffled)
    assert u2 == pytest.approx(u, abs=1e-9)
    assert abs(p2 - p) > 0.02


def test_unpaired_shapes_refused():
    real, fake = _paired()
    with pytest.raises(ValueError, match="paired"):
        inception_discriminative_scores(real, fake[:-1])


def test_pca_needs_enough_rows():
    real, fake = _paired(n=10, d=64)
    with pytest.raises(ValueError, match="PCA"):
        inception_discriminative_scores(real, fake, pca_dim=50)


def test_kid_is_the_unbiased_polynomial_mmd():
    """One subset holding every sample (a permutation: MMD does not depend on order) equals the unbiased MMD^2 with
    k(x, y) = (x.y / D + 1)^3 written out here; the subset size is capped at the smaller set."""
    real, fake = _paired(seed=3, n=40, d=16)

    def kernel(a, b):
        return (a @ b.T / a.shape[1] + 1) ** 3

    m = len(real)
    k_xx, k_yy, k_xy = kernel(fake, fake), kernel(real, real), kernel(fake, real)
    expected = ((k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))) / (m * (m - 1)) - 2 * k_xy.mean()
    mean, std = kernel_inception_distance(real, fake, subsets=1, subset_size=1000, seed=7)
    assert mean == pytest.approx(expected, rel=1e-9) and std == 0.0


def test_kid_is_seeded():
    real, fake = _paired(seed=4, n=80, d=8)
    assert kernel_inception_distance(real, fake, 5, 30, seed=1) == kernel_inception_distance(real, fake, 5, 30, seed=1)
    assert kernel_inception_distance(real, fake, 5, 30, seed=1) != kernel_inception_distance(real, fake, 5, 30, seed=2)


def test_scikit_learn_is_imported_only_to_fit_the_svm() -> None:
    """A scoring process that computes no U/P-IDS (here: too few rows for the PCA) never pays scikit-learn's
    2-3 s import; the refusal names the row count."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, evaluators.scoring, evaluators.set_metrics\n"
            "from evaluators.functional.ids import discriminative_decisions\n"
            "try:\n"
            "    discriminative_decisions(np.zeros((64, 2048)), np.zeros((64, 2048)), pca_dim=512)\n"
            "except ValueError as error:\n"
            "    print(error)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["PCA to 512 dimensions needs at least 512 feature rows (real+fake), got 128", "[]"]
