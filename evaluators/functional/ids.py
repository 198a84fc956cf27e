"""Unpaired / paired Inception discriminative scores (Co-Mod-GAN, MAT and ASUKA use the same SVM).

Own code (why): no maintained library ships U-IDS/P-IDS; it is a few lines around scikit-learn's LinearSVC,
written here to state the pairing rule explicitly.
"""

from __future__ import annotations

import numpy as np


def discriminative_decisions(
    real: np.ndarray, fake: np.ndarray, pca_dim: int | None = None, pca_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """SVM decision values (decision_real (N,), decision_fake (N,)) of paired features: row i of `real` and row i
    of `fake` are the same image.

    real, fake: (N, D) features. A LinearSVC(dual=False) with sklearn defaults is fitted on real (label 1) and
    fake (label 0) together (no held-out split). pca_dim: the asuka protocol's PCA on the stacked features
    before the SVM (seeded).
    """
    real, fake = np.asarray(real), np.asarray(fake)
    if real.shape != fake.shape or real.ndim != 2:
        raise ValueError(f"real and fake features must be paired (N, D) arrays, got {real.shape} and {fake.shape}")
    inputs = np.concatenate([real, fake])
    reduce = pca_dim is not None and pca_dim != inputs.shape[1]
    if reduce and inputs.shape[0] < pca_dim:
        raise ValueError(f"PCA to {pca_dim} dimensions needs at least {pca_dim} feature rows (real+fake), got {inputs.shape[0]}")
    # Imported only now: scikit-learn takes 2-3 s to import, which a scoring run that computes no U/P-IDS (another
    # metric set, or too few rows for the protocol's PCA) would otherwise pay before its first image.
    from sklearn.decomposition import PCA
    from sklearn.svm import LinearSVC

    if reduce:
        inputs = PCA(pca_dim, random_state=pca_seed).fit_transform(inputs)
    targets = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
    svm = LinearSVC(dual=False)
    svm.fit(inputs, targets)
    decisions = svm.decision_function(inputs)
    return decisions[: len(real)], decisions[len(real):]


def scores_from_decisions(decision_real: np.ndarray, decision_fake: np.ndarray) -> tuple[float, float]:
    """(U-IDS, P-IDS): U-IDS = 1 - the SVM's training accuracy (a real row is classified real when its decision
    is > 0, as LinearSVC.predict does), P-IDS = mean(decision_fake_i > decision_real_i) over pairs."""
    correct = np.concatenate([decision_real > 0, decision_fake <= 0])
    return float(1.0 - correct.mean()), float(np.mean(decision_fake > decision_real))


def inception_discriminative_scores(
    real: np.ndarray, fake: np.ndarray, pca_dim: int | None = None, pca_seed: int = 0
) -> tuple[float, float]:
    """(U-IDS, P-IDS) of paired features (see `discriminative_decisions` and `scores_from_decisions`)."""
    return scores_from_decisions(*discriminative_decisions(real, fake, pca_dim, pca_seed))
