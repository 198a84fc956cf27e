"""Small images of a few samples, written by the scorer beside its result (it decodes them anyway), so the
report's qualitative grid reads result folders only and never reopens a dataset or a prediction.

Per chosen sample, three JPEGs fitting THUMBNAIL_SIZE: the masked input (hole blended towards white), what was
scored (the composite with paste-back), and the ground truth.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

THUMBNAIL_SIZE = 256
HOLE_OVERLAY = 0.65  # share of white blended into hole pixels of the masked input


def default_stems(stems: list[str], domains: list[str | None], count: int = 4) -> list[str]:
    """First sample of each domain when the dataset has domains (like the paper's Fig. 8 rows), else the first few."""
    if any(d is not None for d in domains):
        firsts: dict[str | None, str] = {}
        for stem, domain in zip(stems, domains):
            firsts.setdefault(domain, stem)
        return [s for d, s in firsts.items() if d is not None]
    return stems[:count]


def masked_input(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image, float (H, W) hole in [0, 1] (1 = hole) -> the image with the hole whitened."""
    alpha = HOLE_OVERLAY * hole[..., None]
    return np.round(image * (1 - alpha) + 255.0 * alpha).astype(np.uint8)


def jpeg_thumbnail(array: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """uint8 (H, W, 3) RGB -> JPEG bytes of a copy resized to fit size x size (aspect kept, Lanczos)."""
    image = Image.fromarray(array)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def thumbnails(gt: np.ndarray, hole: np.ndarray, scored: np.ndarray) -> dict[str, bytes]:
    """The three JPEGs of one sample by role (`evaluators.record.THUMBNAIL_ROLES`)."""
    return {"input": jpeg_thumbnail(masked_input(gt, hole)), "scored": jpeg_thumbnail(scored),
            "truth": jpeg_thumbnail(gt)}
