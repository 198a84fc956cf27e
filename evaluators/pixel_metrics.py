"""Per-image metrics computed from the decoded images in the data-loader workers (source "pixels").

Each function takes one `Decoded` sample and the protocol and returns a float; `evaluators.metrics` names them.
The formulas themselves live in `evaluators.functional.pixel` (one variant per protocol setting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.functional.color import low_pass_color_shift, seam_color_step
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
    if protocol.grad_soft_mask and sample.paste_back:
        return boundary_gradient_error(sample.pred, sample.gt, sample.gray, soft=True)
    return boundary_gradient_error(sample.scored, sample.gt, sample.gray)


def color_shift(sample: Decoded, protocol: Protocol) -> float:
    """Low-frequency colour shift of what is scored, over the hole (`low_pass_color_shift`, sigma
    `protocol.color_sigma` pixels at 512)."""
    return low_pass_color_shift(sample.scored, sample.gt, sample.hole, protocol.color_sigma)


def color_shift_raw(sample: Decoded, protocol: Protocol) -> float:
    """Low-frequency colour shift of the raw prediction over the whole image: the shift a method applies to the
    known pixels as well (a VAE decoder's), which paste-back hides from `color_shift`."""
    return low_pass_color_shift(sample.pred, sample.gt, np.ones_like(sample.hole), protocol.color_sigma)


def seam(sample: Decoded, protocol: Protocol) -> float:
    """Colour step across the hole's edge beyond the ground truth's (`seam_color_step`, bands of
    `protocol.seam_band` pixels at 512)."""
    return seam_color_step(sample.scored, sample.gt, sample.hole, protocol.seam_band)
