"""COCO object shapes as masks, and COCO foregrounds for background-only masks.

* `ObjectShapeBank`: binary object shapes (pycocotools `annToMask`, cropped to the shape's box), in a fixed
  order (sorted annotation ids), decoded on demand.
* `object_shape_mask`: one bank shape placed at a random scale and position (ASUKA's "object-shape" basis).
* `coco_foreground`: union of every instance mask of one image, crowd regions included
  (`getAnnIds(iscrowd=None)`), after the same crop box and resize as the image.
* `carve_background`: `hole & ~foreground`, so a MISATO background mask never covers an object.

pycocotools is imported lazily (it is in the `data` extra).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


def _tight_crop(mask: np.ndarray) -> np.ndarray:
    """Crop a 2-D array to the bounding box of its non-zero pixels; bool."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty object shape (no foreground pixel)")
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(bool)


class ObjectShapeBank:
    """An ordered collection of binary object shapes, each cropped to its bounding box.

    Build it with `from_coco` (annotation ids sorted, so index i is the same shape on every machine) or
    `from_arrays` (tests, custom shapes). `shape(i)` returns a bool (h, w) array.
    """

    def __init__(self, keys: Sequence[Any], loader: Callable[[Any], np.ndarray], source: str) -> None:
        if len(keys) == 0:
            raise ValueError(f"object shape bank from {source} is empty")
        self._keys = list(keys)
        self._loader = loader
        self.source = source

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, index: int) -> Any:
        """The identifier of shape `index` (a COCO annotation id, or an array position)."""
        return self._keys[index]

    def shape(self, index: int) -> np.ndarray:
        """Shape `index` as bool (h, w), cropped to its bounding box."""
        return _tight_crop(self._loader(self._keys[index]))

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], source: str = "arrays") -> ObjectShapeBank:
        """A bank of given 2-D masks (non-zero = object); empty arrays are refused."""
        shapes = []
        for i, array in enumerate(arrays):
            array = np.asarray(array)
            if array.ndim != 2 or not array.any():
                raise ValueError(f"object shape {i} must be a non-empty 2-D mask, got shape {array.shape}")
            shapes.append(_tight_crop(array))
        return cls(list(range(len(shapes))), shapes.__getitem__, source)

    @classmethod
    def synthetic(cls, count: int = 256, seed: int = 0, size: int = 128) -> ObjectShapeBank:
        """`count` object-like blobs, for training without COCO annotations (our stand-in, not the paper's).

        Each shape is a star-convex polygon: radius r(theta) = 1 + sum of 2-5 random harmonics (amplitudes
        decaying with frequency), filled at `size` x `size`; shape i depends only on (seed, i).
        """
        if count < 1:
            raise ValueError(f"synthetic object bank needs count >= 1, got {count}")
        return cls(list(range(int(count))), SyntheticBlob(int(seed), int(size)),
                   source=f"synthetic blobs (count {count}, seed {seed})")

    @classmethod
    def from_coco(
        cls,
        coco: Any,
        min_area: float = 32 * 32,
        include_crowd: bool = True,
        image_ids: Sequence[int] | None = None,
    ) -> ObjectShapeBank:
        """Object shapes of a `pycocotools.coco.COCO` index.

        `min_area` (COCO `area`, pixels of the source image) drops tiny segments, which become blocky
        blobs once scaled up. Crowd regions are included (as the issue's spec asks: the mask shapes cover
        every annotated region); `include_crowd=False` keeps single-instance shapes only.
        """
        ann_ids = coco.getAnnIds(imgIds=list(image_ids) if image_ids is not None else [], iscrowd=None)
        keep = sorted(
            aid
            for aid in ann_ids
            if coco.anns[aid].get("area", 0) >= min_area and (include_crowd or not coco.anns[aid].get("iscrowd", 0))
        )
        return cls(keep, functools.partial(_coco_shape, coco), source=f"COCO ({len(keep)} annotations)")


def _coco_shape(coco: Any, ann_id: int) -> np.ndarray:
    return coco.annToMask(coco.anns[ann_id])


@dataclass(frozen=True)
class SyntheticBlob:
    """Shape loader of `ObjectShapeBank.synthetic` (a class, not a closure: banks travel to data-loader workers)."""

    seed: int
    size: int

    def __call__(self, index: int) -> np.ndarray:
        size = self.size
        rng = np.random.default_rng([self.seed, int(index)])
        theta = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
        radius = np.ones_like(theta)
        for k in range(1, int(rng.integers(2, 6)) + 1):
            radius += rng.uniform(0.0, 0.5 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        radius = np.clip(radius, 0.2, None) * (0.45 * size / radius.max())
        aspect = rng.uniform(0.5, 1.0)
        points = np.stack([size / 2 + radius * np.cos(theta), size / 2 + aspect * radius * np.sin(theta)], 1)
        canvas = np.zeros((size, size), np.uint8)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
        return canvas


@dataclass(frozen=True)
class ObjectShapeParams:
    """Placement of an object shape: longer side = U(scale_range) * size, random horizontal flip,
    uniform position with the whole shape inside the frame. The paper gives no placement rule; this is ours."""

    scale_range: tuple[float, float] = (0.25, 1.0)
    hflip: bool = True


def object_shape_mask(
    rng: np.random.Generator, size: int, bank: ObjectShapeBank, params: ObjectShapeParams = ObjectShapeParams()
) -> np.ndarray:
    """A randomly chosen, scaled and placed object shape: uint8 (size, size) in {0, 1}, 1 = hole."""
    s = int(size)
    shape = bank.shape(int(rng.integers(len(bank))))
    h, w = shape.shape
    factor = rng.uniform(*params.scale_range) * s / max(h, w)
    new_h, new_w = (min(s, max(1, int(round(v * factor)))) for v in (h, w))
    # Linear interpolation then 0.5 threshold: smoother edges than nearest when small shapes are enlarged.
    resized = cv2.resize(shape.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR) >= 0.5
    if params.hflip and rng.random() < 0.5:
        resized = resized[:, ::-1]
    y = int(rng.integers(0, s - new_h + 1))
    x = int(rng.integers(0, s - new_w + 1))
    mask = np.zeros((s, s), np.uint8)
    mask[y : y + new_h, x : x + new_w] = resized
    return mask


def coco_foreground(
    coco: Any,
    image_id: int,
    crop_box: tuple[int, int, int, int],
    out_size: int | tuple[int, int],
    dilate: int = 0,
) -> np.ndarray:
    """Union of all instance masks of `image_id` (crowd included) after cropping and resizing.

    crop_box: (left, top, right, bottom) in source pixels, right/bottom exclusive (PIL's `crop` box).
    out_size: output side, or (height, width). Returns bool (H, W), True = foreground.
    The resize is conservative: an output pixel is foreground if any source foreground pixel falls in
    it (area interpolation > 0), so a hole carved with it never covers resampled object pixels.
    `dilate` adds a margin of that many pixels (square structuring element).
    """
    if image_id not in coco.imgs:
        raise ValueError(f"image id {image_id} is not in the COCO annotations")
    info = coco.imgs[image_id]
    height, width = int(info["height"]), int(info["width"])
    left, top, right, bottom = (int(v) for v in crop_box)
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"crop box {crop_box} is outside image {image_id} of size {width}x{height}")
    out_h, out_w = (out_size, out_size) if isinstance(out_size, (int, np.integer)) else out_size
    union = np.zeros((height, width), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None)):
        union |= coco.annToMask(ann).astype(np.uint8)
    crop = union[top:bottom, left:right].astype(np.float32)
    foreground = cv2.resize(crop, (int(out_w), int(out_h)), interpolation=cv2.INTER_AREA) > 0
    if dilate > 0:
        kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
        foreground = cv2.dilate(foreground.astype(np.uint8), kernel) > 0
    return foreground


def carve_background(hole: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """`hole & ~foreground` as uint8 {0, 1}; both (H, W), hole 1 = hole, foreground True = object."""
    if hole.shape != foreground.shape:
        raise ValueError(f"foreground shape {foreground.shape} does not match mask shape {hole.shape}")
    return (hole.astype(bool) & ~foreground.astype(bool)).astype(np.uint8)
