"""LaMa irregular stroke masks, re-implemented from the published algorithm.

Source of the algorithm: advimman/lama `saicinpainting/training/data/masks.py::make_random_irregular_mask`
and the 512 presets `configs/data_gen/random_{thin,medium,thick}_512.yaml` (irregular part). Facts are
summarised in shared/notes/misato-and-masks.md; the code is written here from that description with a
`numpy.random.Generator` instead of the global legacy RNG, so streams differ but distributions match.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LamaIrregularParams:
    """Parameters of `make_random_irregular_mask` as the LaMa mask generator calls it.

    `min_times`/`max_times` are the config values; the generator passes `max_times + 1` to the drawing
    function, which draws `randint(min_times, max_times + 2)`, so the stroke count is in
    [min_times, max_times + 1]. Set `lama_off_by_one=False` for [min_times, max_times].
    """

    min_times: int
    max_times: int
    max_width: int
    max_len: int
    max_angle: int = 4
    lama_off_by_one: bool = True


# configs/data_gen/random_{thin,medium,thick}_512.yaml, irregular part.
LAMA_512: dict[str, LamaIrregularParams] = {
    "thin": LamaIrregularParams(min_times=4, max_times=70, max_width=20, max_len=100),
    "medium": LamaIrregularParams(min_times=4, max_times=10, max_width=100, max_len=200),
    "thick": LamaIrregularParams(min_times=1, max_times=5, max_width=250, max_len=450),
}


def lama_irregular_mask(rng: np.random.Generator, size: int, params: LamaIrregularParams) -> np.ndarray:
    """One LaMa irregular mask: uint8 (size, size) in {0, 1}, 1 = hole.

    Strokes of 1-5 straight segments with integer angles (+0.01 rad), drawn by `cv2.line` with a random
    brush width; x advances by length*sin(angle), y by length*cos(angle), as in the original.
    """
    height = width = int(size)
    mask = np.zeros((height, width), np.uint8)
    top = params.max_times + (2 if params.lama_off_by_one else 1)
    times = int(rng.integers(params.min_times, top))
    for i in range(times):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(params.max_angle))
            if i % 2 == 0:
                angle = 2 * 3.1415926 - angle
            length = 10 + int(rng.integers(params.max_len))
            brush_w = 5 + int(rng.integers(params.max_width))
            # int() truncates toward zero like the original's astype(np.int32); clip to [0, size] inclusive.
            end_x = int(np.clip(int(x + length * np.sin(angle)), 0, width))
            end_y = int(np.clip(int(y + length * np.cos(angle)), 0, height))
            cv2.line(mask, (x, y), (end_x, end_y), 1, brush_w)
            x, y = end_x, end_y
    return mask
