"""Co-Mod-GAN free-form masks (box fills + brush strokes), re-implemented from the published algorithm.

Source of the algorithm: zsyzzsoft/co-mod-gan `training/mask_generator.py` (`RandomBrush`, `RandomMask`);
MAT (fenglinglwb/MAT) uses the same code with other fill/stroke counts. Facts are summarised in
shared/notes/misato-and-masks.md. Strokes are rasterised with PIL's `ImageDraw` (line + vertex ellipses)
because that is the rasteriser of the original, so stroke joints look the same.

The original starts from ones (1 = known) and returns 0 = hole; here the result is inverted to 1 = hole.
The original's own hole-ratio rejection loop is left to the samplers (`misato.masks.samplers`); only its
`coef = min(lo + hi, 1)` scaling of the counts is kept, through `hole_range`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class ComodParams:
    """Counts of `RandomMask`: `randint(int(n * coef))` boxes/strokes each, coef = min(sum(hole_range), 1).

    `half_fills`: boxes of side < s/2; `full_fills`: boxes of side < s; `brushes`: brush strokes.
    """

    half_fills: int = 10
    full_fills: int = 5
    brushes: int = 20
    hole_range: tuple[float, float] = (0.0, 1.0)
    min_num_vertex: int = 4
    max_num_vertex: int = 18
    mean_angle: float = 2 * math.pi / 5
    angle_range: float = 2 * math.pi / 15
    min_width: float = 12
    max_width: float = 48


COMOD_PRESETS: dict[str, ComodParams] = {
    "comod": ComodParams(),  # Co-Mod-GAN: MultiFill(10, s/2), MultiFill(5, s), RandomBrush(20)
    "mat": ComodParams(half_fills=5, full_fills=3, brushes=9),  # MAT at 512
    "mat-small": ComodParams(half_fills=3, full_fills=2, brushes=4),  # MAT's `_small` generator
    "brush": ComodParams(half_fills=0, full_fills=0),  # strokes only: no rectangles at all
}


def _randint_upto(rng: np.random.Generator, n: int) -> int:
    """`np.random.randint(n)` for n >= 1, and 0 for n <= 0 (where the original would raise)."""
    return int(rng.integers(n)) if n >= 1 else 0


def comod_brush(rng: np.random.Generator, size: int, max_tries: int, params: ComodParams) -> np.ndarray:
    """`RandomBrush(max_tries, s)`: uint8 (size, size) in {0, 1}, 1 = stroke."""
    s = int(size)
    average_radius = math.sqrt(s * s + s * s) / 8
    canvas = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(_randint_upto(rng, max_tries)):
        num_vertex = int(rng.integers(params.min_num_vertex, params.max_num_vertex))
        angle_min = params.mean_angle - rng.uniform(0, params.angle_range)
        angle_max = params.mean_angle + rng.uniform(0, params.angle_range)
        angles = [
            2 * math.pi - rng.uniform(angle_min, angle_max) if i % 2 == 0 else rng.uniform(angle_min, angle_max)
            for i in range(num_vertex)
        ]
        vertex = [(int(rng.integers(0, s)), int(rng.integers(0, s)))]
        for angle in angles:
            r = float(np.clip(rng.normal(average_radius, average_radius // 2), 0, 2 * average_radius))
            new_x = np.clip(vertex[-1][0] + r * math.cos(angle), 0, s)
            new_y = np.clip(vertex[-1][1] + r * math.sin(angle), 0, s)
            vertex.append((int(new_x), int(new_y)))
        width = int(rng.uniform(params.min_width, params.max_width))
        draw.line(vertex, fill=1, width=width)
        half = width // 2
        for vx, vy in vertex:
            draw.ellipse((vx - half, vy - half, vx + half, vy + half), fill=1)
    mask = np.asarray(canvas, np.uint8)
    if rng.random() > 0.5:
        mask = np.flip(mask, 0)
    if rng.random() > 0.5:
        mask = np.flip(mask, 1)
    return np.ascontiguousarray(mask)


def comod_free_form_mask(rng: np.random.Generator, size: int, params: ComodParams) -> np.ndarray:
    """One `RandomMask(s)` candidate without its rejection loop: uint8 (size, size) in {0, 1}, 1 = hole."""
    s = int(size)
    coef = min(params.hole_range[0] + params.hole_range[1], 1.0)
    hole = np.zeros((s, s), np.uint8)

    def fill(max_size: int) -> None:
        w, h = int(rng.integers(max_size)), int(rng.integers(max_size))
        ww, hh = w // 2, h // 2
        x, y = int(rng.integers(-ww, s - w + ww)), int(rng.integers(-hh, s - h + hh))
        hole[max(y, 0) : min(y + h, s), max(x, 0) : min(x + w, s)] = 1

    for count, max_size in ((int(params.half_fills * coef), s // 2), (int(params.full_fills * coef), s)):
        for _ in range(_randint_upto(rng, count)):
            fill(max_size)
    hole |= comod_brush(rng, s, int(params.brushes * coef), params)
    return hole
