"""Per-image metrics computed from the decoded images in the data-loader workers (source "pixels").

Each function takes one `Decoded` sample and the protocol and returns a float; `evaluators.metrics` names them.
The formulas themselves live in `evaluators.functional.pixel` (one variant per protocol setting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.functional.pixel import PSNR_VARIANTS, SSIM_VARIANTS, boundary_gradient_error
from evaluators.protocols import Protocol


@dataclass
class Decoded:
    """One sample as the scorer reads it.

    gt, pred: uint8 (H, W, 3) RGB ground truth and prediction as read.
    gray: uint8 (H, W) mask, hole = 255 (whatever the file's polarity), possibly soft (anti-aliased).
    hole: float32 (H, W) in {0, 1}, 1 = hole (gray thresholded at the protocol's mask_threshold).
    scored: uint8 (H, W, 3), what is scored: the composite pred*hole + gt*(1-hole) with paste-back, else pred.
    """

    gt: np.ndarray
    pred: np.ndarray
    gray: np.ndarray
    hole: np.ndarray
    scored: np.ndarray
    paste_back: bool


def psnr(sample: Decoded, protocol: Protocol) -> float:
    return PSNR_VARIANTS[protocol.psnr](sample.scored, sample.gt)


def ssim(sample: Decoded, protocol: Protocol) -> float:
    return SSIM_VARIANTS[protocol.ssim](sample.scored, sample.gt)


def grad_error(sample: Decoded, protocol: Protocol) -> float:
    """Boundary gradient error; the asuka protocol composites with the soft mask m/255 in float64, unrounded,
    as its cal_grad.py does."""
    result = sample.scored
    if protocol.grad_soft_mask and sample.paste_back:
        soft = sample.gray.astype(np.float64)[..., None] / 255.0
        result = sample.pred * soft + sample.gt * (1.0 - soft)
    return boundary_gradient_error(result, sample.gt, sample.gray)
