"""The one owner of the inpainter test inputs and of the contract every inpainter must keep.

Plain functions (no fixtures); the tests import them as `from inpainter_contract import ...` (tests/ is on
sys.path). Conventions are the harness's (`baselines.harness`): images uint8 (H, W, 3) RGB, masks float32
(H, W) in {0, 1} with 1 = hole, one seed per sample.
"""

from __future__ import annotations

import numpy as np
from skimage import data

from baselines.base import Inpainter
from baselines.harness import Prediction, inpaint_arrays
from misato.composite import composite_uint8
from baselines.runner import to_uint8

# (photo, top, left) of each crop: an astronaut's face, a cat, a coffee cup (distinct textures and colours)
_CROPS = ((data.astronaut, 30, 180), (data.chelsea, 100, 150), (data.coffee, 200, 300))
MAX_CROP = 200  # the largest size every crop fits (chelsea is 300 x 451, coffee 400 x 600)
CONTRACT_SEEDS = [1, 2, 3]
OTHER_SEED = 99


def photo_crops(size: int, n: int = 3) -> list[np.ndarray]:
    """`n` (1..3) real-photo crops, each a C-contiguous uint8 (size, size, 3) RGB array in [0, 255].

    The same crops on every call; `size` is at most MAX_CROP.
    """
    if not 1 <= n <= len(_CROPS) or not 1 <= size <= MAX_CROP:
        raise ValueError(f"photo_crops: n must be 1..{len(_CROPS)} and size 1..{MAX_CROP}, got n={n}, size={size}")
    return [np.ascontiguousarray(photo()[y : y + size, x : x + size]) for photo, y, x in _CROPS[:n]]


def hole_masks(n: int, size: int) -> list[np.ndarray]:
    """`n` binary masks, float32 (size, size) in {0, 1} with 1 = hole, scaled to `size` (at least 8).

    Even indices: a square of side ceil(3 size / 8), top-left at (size // 4 + i, 5 size // 16), so each
    rectangle sits one row lower than the one before. Odd indices: a diagonal stroke from row and column
    10 size // 64 to size - 10 size // 64, 2 max(1, size // 32) + 1 px wide. At size 64: the square
    [16 + i : 40 + i, 20:44] and a 5 px stroke over rows 10..53.
    """
    if size < 8:
        raise ValueError(f"hole_masks: size must be at least 8, got {size}")
    side, margin, half = -(-3 * size // 8), 10 * size // 64, max(1, size // 32)
    out = []
    for i in range(n):
        mask = np.zeros((size, size), np.float32)
        if i % 2 == 0:
            top, left = size // 4 + i, 5 * size // 16
            mask[top : top + side, left : left + side] = 1
        else:
            for t in range(margin, size - margin):
                mask[t, max(0, t - half) : t + half + 1] = 1
        out.append(mask)
    return out


def check_contract(inpainter: Inpainter, size: int, *, stochastic: bool, atol: float = 1e-5) -> list[Prediction]:
    """Run the inpainter contract through `inpaint_arrays` on photo_crops(size) and hole_masks(3, size).

    Checks, for each of the three samples:
    - the output is float32 (size, size, 3) in [0, 1];
    - composited with `composite_uint8`, the known pixels (mask 0) equal the input exactly;
    - alone (batch 1) it matches its output in the batch of 3 within `atol` (absolute, rtol 0);
    - run again with the same seed, the output is identical;
    - with another seed, the output is identical when `stochastic` is False, and differs somewhere in the
      hole by more than 1e-3 when it is True.

    Returns the batch-of-3 predictions (seeds CONTRACT_SEEDS), in the order of photo_crops(size), for the
    checks a test adds on top.
    """
    images, masks = photo_crops(size), hole_masks(3, size)
    preds = inpaint_arrays(inpainter, images, masks, CONTRACT_SEEDS, batch_size=3)
    assert len(preds) == 3
    for image, mask, pred in zip(images, masks, preds):
        assert pred.raw.shape == (size, size, 3) and pred.raw.dtype == np.float32
        assert pred.raw.min() >= 0 and pred.raw.max() <= 1
        composite = composite_uint8(to_uint8(pred.raw), image, mask)
        np.testing.assert_array_equal(composite[mask == 0], image[mask == 0])
    for image, mask, seed, pred in zip(images, masks, CONTRACT_SEEDS, preds):
        (alone,) = inpaint_arrays(inpainter, [image], [mask], [seed])
        np.testing.assert_allclose(alone.raw, pred.raw, rtol=0, atol=atol)
        (again,) = inpaint_arrays(inpainter, [image], [mask], [seed])
        np.testing.assert_array_equal(again.raw, alone.raw)
        (other,) = inpaint_arrays(inpainter, [image], [mask], [OTHER_SEED])
        if stochastic:
            hole = mask == 1
            assert np.abs(other.raw[hole] - alone.raw[hole]).max() > 1e-3, f"seed {OTHER_SEED} vs {seed}: same hole"
        else:
            np.testing.assert_array_equal(other.raw, alone.raw)
    return preds
