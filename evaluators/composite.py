"""The one place where predictions are pasted back onto the ground truth."""

from __future__ import annotations

import numpy as np
import torch


def composite_uint8(pred: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`pred * hole + gt * (1 - hole)`, rounded half-to-even (np.rint, not truncated) to uint8.

    pred: (H, W, 3) uint8, or float in [0, 255]; gt: (H, W, 3) uint8; hole: (H, W) float in [0, 1], 1 = hole.
    """
    if pred.shape != gt.shape or hole.shape != gt.shape[:2]:
        raise ValueError(f"shape mismatch: pred {pred.shape}, gt {gt.shape}, hole {hole.shape}")
    hole = hole.astype(np.float64)[..., None]
    mixed = pred.astype(np.float64) * hole + gt.astype(np.float64) * (1.0 - hole)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def composite_tensor(pred: torch.Tensor, gt: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Float version for inpainter outputs: (B,3,H,W) [0,1] pred and gt, (B,1,H,W) hole -> uint8 (B,3,H,W)."""
    mixed = (pred.double() * hole.double() + gt.double() * (1.0 - hole.double())) * 255.0
    return torch.round(mixed).clamp(0, 255).to(torch.uint8)
