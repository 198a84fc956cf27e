"""Regular masks for ASUKA training only: a rectangle, and its complement (keep a box, fill the rest).

The paper (Sec. 3.1) names "rectangle and complement rectangle" masks without sizes; the side ranges
below are our choice, picked so that both kinds mostly land in ASUKA's hole-ratio range [0.1, 0.75].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RectangleParams:
    """Box sides drawn as U(side_range) * size independently for height and width; uniform position.

    `complement=True` marks everything outside the box as hole (outpainting-like).
    """

    side_range: tuple[float, float]
    complement: bool = False


RECTANGLE_PRESETS: dict[str, RectangleParams] = {
    "rectangle": RectangleParams(side_range=(0.25, 0.85)),  # hole ratio ~ [0.06, 0.72]
    "complement-rectangle": RectangleParams(side_range=(0.5, 0.95), complement=True),  # ~ [0.10, 0.75]
}


def rectangle_mask(rng: np.random.Generator, size: int, params: RectangleParams) -> np.ndarray:
    """A random axis-aligned box (or its complement): uint8 (size, size) in {0, 1}, 1 = hole."""
    s = int(size)
    lo, hi = params.side_range
    h = max(1, min(s, int(round(rng.uniform(lo, hi) * s))))
    w = max(1, min(s, int(round(rng.uniform(lo, hi) * s))))
    y = int(rng.integers(0, s - h + 1))
    x = int(rng.integers(0, s - w + 1))
    box = np.zeros((s, s), np.uint8)
    box[y : y + h, x : x + w] = 1
    return 1 - box if params.complement else box
