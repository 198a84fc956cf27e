"""Preview of mask generators: a PNG grid of samples per generator and a histogram of hole ratios.

Drawn with numpy + PIL only (matplotlib is not a dependency). Files written to `out_dir`:
`<name>.png` (grid, white = hole), `hole_ratio_hist.png` (one panel per generator, 20 bins on [0, 1],
marks at 0.2 and 0.8) and `stats.json` (per generator: hole ratios, mean, share in [0.2, 0.8], kinds).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from misato.io import atomic_write_json, save_png
from misato.masks.coco import ObjectShapeBank
from misato.masks.registry import generate, get_preset
from misato.masks.samplers import SAMPLERS, MaskSkipped, sample_mask
from misato.masks.seeding import item_rng

log = logging.getLogger(__name__)

THUMB = 128
GUTTER = 4
LABEL_H = 18


@dataclass(frozen=True)
class PreviewResult:
    name: str
    masks: list[np.ndarray]
    ratios: list[float]
    kinds: list[str]


def draw_samples(
    name: str, n: int, seed: int = 0, size: int = 512, objects: ObjectShapeBank | None = None
) -> PreviewResult:
    """`n` masks of generator preset or sampler `name`; sample i uses item_rng(seed, "preview/" + name, i)."""
    if name not in SAMPLERS:
        get_preset(name)  # raises a ValueError with close matches for an unknown name
    masks, ratios, kinds = [], [], []
    for i in range(n):
        rng = item_rng(seed, f"preview/{name}", i)
        if name in SAMPLERS:
            result = sample_mask(rng, size, SAMPLERS[name], objects)
            if isinstance(result, MaskSkipped):  # cannot happen without a foreground
                raise ValueError(result.reason)
            mask, kind = result.mask, result.kind
        else:
            mask, kind = generate(name, rng, size, objects), name
        masks.append(mask)
        ratios.append(float(mask.mean()))
        kinds.append(kind)
    return PreviewResult(name, masks, ratios, kinds)


def grid_image(result: PreviewResult, thumb: int = THUMB) -> np.ndarray:
    """uint8 (H, W) gray grid of thumbnails (white = hole) on a mid-gray background, name on top."""
    n = len(result.masks)
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    height = LABEL_H + GUTTER + rows * (thumb + GUTTER)
    width = GUTTER + cols * (thumb + GUTTER)
    canvas = np.full((height, width), 96, np.uint8)
    for i, mask in enumerate(result.masks):
        r, c = divmod(i, cols)
        tile = cv2.resize(mask.astype(np.float32) * 255, (thumb, thumb), interpolation=cv2.INTER_AREA)
        y = LABEL_H + GUTTER + r * (thumb + GUTTER)
        x = GUTTER + c * (thumb + GUTTER)
        canvas[y : y + thumb, x : x + thumb] = np.clip(tile, 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    mean = float(np.mean(result.ratios)) if result.ratios else float("nan")
    ImageDraw.Draw(image).text((GUTTER, 3), f"{result.name}  n={n}  mean hole ratio {mean:.3f}", fill=255)
    return np.asarray(image)


def histogram_image(results: list[PreviewResult], bins: int = 20, panel: tuple[int, int] = (360, 120)) -> np.ndarray:
    """uint8 (H, W, 3) RGB: one histogram panel per generator of hole ratios on [0, 1]."""
    pw, ph = panel
    margin, label = 10, 16
    height = len(results) * (ph + label + margin) + margin
    width = pw + 2 * margin
    image = Image.new("RGB", (width, max(height, 1)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, result in enumerate(results):
        top = margin + k * (ph + label + margin)
        counts, _ = np.histogram(result.ratios, bins=bins, range=(0.0, 1.0))
        draw.text((margin, top), f"{result.name}: mean {np.mean(result.ratios):.3f}, n={len(result.ratios)}", fill=(0, 0, 0))
        y0, y1 = top + label, top + label + ph
        draw.rectangle((margin, y0, margin + pw, y1), outline=(0, 0, 0))
        scale = (ph - 4) / max(1, counts.max())
        bar = pw / bins
        for b, count in enumerate(counts):
            if count:
                x0 = margin + b * bar
                draw.rectangle((x0 + 1, y1 - count * scale, x0 + bar - 1, y1), fill=(60, 110, 200))
        for bound in (0.2, 0.8):
            x = margin + bound * pw
            draw.line((x, y0, x, y1), fill=(200, 40, 40))
    return np.asarray(image)


def write_preview(
    out_dir: str | os.PathLike,
    names: list[str],
    n: int = 16,
    seed: int = 0,
    size: int = 512,
    objects: ObjectShapeBank | None = None,
) -> list[Path]:
    """Write `<name>.png` grids, `hole_ratio_hist.png` and `stats.json` into `out_dir`; returns the paths."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    for name in names:  # fail on a bad name before drawing anything
        if name not in SAMPLERS:
            preset = get_preset(name)
            if preset.needs_objects and objects is None:
                raise ValueError(f"generator {name!r} needs COCO object shapes: pass --coco-annotations FILE")
    out = Path(out_dir)
    results, paths = [], []
    for name in names:
        result = draw_samples(name, n, seed, size, objects)
        results.append(result)
        path = out / f"{name}.png"
        save_png(path, grid_image(result))
        paths.append(path)
        log.info("%s: mean hole ratio %.3f over %d masks -> %s", name, np.mean(result.ratios), n, path)
    hist = out / "hole_ratio_hist.png"
    save_png(hist, histogram_image(results))
    stats = out / "stats.json"
    atomic_write_json(
        stats,
        {
            "seed": seed,
            "size": size,
            "n": n,
            "generators": {
                r.name: {
                    "mean_hole_ratio": float(np.mean(r.ratios)),
                    "share_in_0.2_0.8": float(np.mean([(0.2 <= x <= 0.8) for x in r.ratios])),
                    "kinds": dict(Counter(r.kinds)),
                    "hole_ratios": r.ratios,
                }
                for r in results
            },
        },
    )
    return [*paths, hist, stats]
