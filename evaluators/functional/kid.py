"""Kernel Inception Distance with seeded subsets, through torch-fidelity's estimator.

`torch_fidelity.metric_kid.kid_features_to_metric` on our features: unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / D + 1)^3 over `subsets` subsets drawn with numpy RandomState(seed).choice without replacement
(clean-fid and torchmetrics draw theirs unseeded). Ours only caps the subset size at the smaller set instead of
refusing, so small evaluation sets still get a KID.
"""

from __future__ import annotations

import numpy as np


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[float, float]:
    """(mean, std) of unbiased MMD^2 over `subsets` random subsets; subset_size is capped at min(N_real, N_fake).

    real, fake: (N, D) features. The fake set is torch-fidelity's first input (its subset is drawn first)."""
    import torch
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} and {len(fake)}")
    out = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])
