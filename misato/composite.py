"""The one place where predictions are pasted back onto the ground truth (runner and scorer both call it)."""

from __future__ import annotations

import numpy as np


def composite_uint8(pred: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`pred * hole + gt * (1 - hole)` in float64, rounded half-to-even (np.rint, never truncated) to uint8.

    pred, gt: uint8 (H, W, 3) RGB; hole: (H, W) float in [0, 1], 1 = hole (binary or soft).
    """
    if pred.dtype != np.uint8 or gt.dtype != np.uint8:
        raise ValueError(f"composite: pred and gt must be uint8, got {pred.dtype} and {gt.dtype}")
    if pred.shape != gt.shape or hole.shape != gt.shape[:2]:
        raise ValueError(f"composite: shape mismatch: pred {pred.shape}, gt {gt.shape}, hole {hole.shape}")
    hole = np.asarray(hole)
    if np.isin(hole, (0, 1)).all():  # binary mask: the blend is a selection, exact without float arithmetic
        return np.where(hole[..., None] == 1, pred, gt)
    weight = hole.astype(np.float64)[..., None]
    mixed = pred.astype(np.float64) * weight + gt.astype(np.float64) * (1.0 - weight)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
