"""Unpaired / paired Inception discriminative scores (Co-Mod-GAN, MAT and ASUKA use the same SVM).

Own code (why): no maintained library ships U-IDS/P-IDS; it is a few lines around scikit-learn's LinearSVC,
written here to state the pairing rule explicitly.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.svm import LinearSVC


def inception_discriminative_scores(
    real: np.ndarray, fake: np.ndarray, pca_dim: int | None = None, pca_seed: int = 0
) -> tuple[float, float]:
    """(U-IDS, P-IDS) of paired features: row i of `real` and row i of `fake` are the same image.

    real, fake: (N, D) features. A LinearSVC(dual=False) with sklearn defaults is fitted on real (label 1)
    and fake (label 0) together; U-IDS = 1 - its training accuracy (no held-out split), P-IDS = the share of
    pairs where the fake is scored as more real than its own real: mean(decision(fake_i) > decision(real_i)).
    pca_dim: the asuka protocol's PCA on the stacked features before the SVM (seeded).
    """
    real, fake = np.asarray(real), np.asarray(fake)
    if real.shape != fake.shape or real.ndim != 2:
        raise ValueError(f"real and fake features must be paired (N, D) arrays, got {real.shape} and {fake.shape}")
    inputs = np.concatenate([real, fake])
    if pca_dim is not None and pca_dim != inputs.shape[1]:
        if inputs.shape[0] < pca_dim:
            raise ValueError(
                f"PCA to {pca_dim} dimensions needs at least {pca_dim} feature rows (real+fake), got {inputs.shape[0]}"
            )
        inputs = PCA(pca_dim, random_state=pca_seed).fit_transform(inputs)
    targets = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
    svm = LinearSVC(dual=False)
    svm.fit(inputs, targets)
    u_ids = 1.0 - svm.score(inputs, targets)
    decision_real = svm.decision_function(inputs[: len(real)])
    decision_fake = svm.decision_function(inputs[len(real):])
    p_ids = float(np.mean(decision_fake > decision_real))
    return float(u_ids), p_ids
