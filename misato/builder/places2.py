"""Places2 evaluation set: Places365-Standard val_large (36,500 images) with one seeded mask per image.

Protocols differ (see the notes): Co-Mod takes the centre square and resizes it to 512 with BILINEAR
(mode "resize", default); MAT crops the centre 512x512 without resizing, reflect-padding smaller images
(mode "crop"). ASUKA's Places2 masks are unstated: masks here come from the MISATO sampler,
`misato.masks.misato_mask(seed, "places2", index)`, `index` = position of the file in sorted order, so a
mask depends only on the seed and the image's index.

Output: OUT/image/<stem>.png, OUT/mask/<stem>.png (L 0/255, white = hole), OUT/manifest.json; loadable
with `misato.data.load_dataset(OUT)`.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from misato.builder import export, pipeline
from misato.builder.sources import FolderSource
from misato.io import atomic_write_json, save_png, sha256_file

MASK_DOMAIN = "places2"
MODES = ("resize", "crop")


@dataclass
class Places2Config:
    val_dir: Path
    out: Path
    seed: int = 0
    size: int = 512
    mode: str = "resize"
    resample: str = "bilinear"
    limit: int | None = None
    ratio_range: tuple[float, float] = (0.2, 0.8)
    max_tries: int = 100
    object_annotations: Path | None = None  # COCO instances file for object-shape masks (None: irregular only)
    workers: int = 0
    progress: bool = True

    def record(self) -> dict[str, Any]:
        return {"val_dir": str(self.val_dir), "seed": self.seed, "size": self.size, "mode": self.mode,
                "resample": self.resample if self.mode == "resize" else None, "limit": self.limit,
                "ratio_range": list(self.ratio_range), "max_tries": self.max_tries,
                "mask_sampler": f"misato.masks.misato_mask(seed, {MASK_DOMAIN!r}, sorted index)",
                "object_shapes": str(self.object_annotations) if self.object_annotations else None}


def centre_crop_reflect(image: Image.Image, size: int) -> tuple[np.ndarray, list[int]]:
    """Centre size x size crop without resizing (reflect padding where the image is smaller), as MAT.

    Returns uint8 (size, size, 3) and the crop box in source pixels (may extend past the borders).
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    height, width = pixels.shape[:2]
    pad_y, pad_x = max(0, size - height), max(0, size - width)
    if pad_y or pad_x:
        pixels = np.pad(pixels, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), mode="reflect")
    top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
    box = [left - pad_x // 2, top - pad_y // 2, left - pad_x // 2 + size, top - pad_y // 2 + size]
    return np.ascontiguousarray(pixels[top:top + size, left:left + size]), box


def _make(args: tuple[Places2Config, FolderSource, int, str]) -> dict[str, Any]:
    from misato.masks import misato_mask

    config, source, index, key = args
    stem = Path(key).stem
    image = source.open(key)
    if config.mode == "resize":
        box = list(export.centre_square_box(*image.size))
        pixels = export.crop_resize(image, tuple(box), config.size, config.resample)
    else:
        pixels, box = centre_crop_reflect(image, config.size)
    sample = misato_mask(config.seed, MASK_DOMAIN, index, size=config.size, ratio_range=tuple(config.ratio_range),
                         max_tries=config.max_tries, objects=pipeline._WORKER_OBJECTS)
    if sample is None:  # no foreground is given, so the sampler should always succeed
        raise ValueError(f"{key}: the mask sampler returned no mask for index {index}")
    files = {}
    for relpath, array in ((f"image/{stem}.png", pixels), (f"mask/{stem}.png", export.mask_png(sample.mask))):
        save_png(Path(config.out) / relpath, array)
        files[relpath] = sha256_file(Path(config.out) / relpath)
    return {"id": stem, "index": index, "source": {"key": key, "size": list(image.size)}, "crop_box": box,
            "mask": {"kind": sample.kind, "hole_ratio": float(sample.hole_ratio), "attempts": int(sample.attempts),
                     "seed": config.seed, "seed_domain": MASK_DOMAIN, "seed_index": index}, "files": files}


def _existing(config: Places2Config) -> dict[str, dict[str, Any]]:
    """Samples of an earlier manifest built with the same settings whose files are intact (resume)."""
    path = Path(config.out) / export.MANIFEST_NAME
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if {k: v for k, v in manifest.get("config", {}).items() if k != "limit"} != \
            {k: v for k, v in config.record().items() if k != "limit"}:
        return {}
    kept = {}
    for sample in manifest.get("samples", []):
        if all((Path(config.out) / p).is_file() and sha256_file(Path(config.out) / p) == d
               for p, d in sample["files"].items()):
            kept[sample["source"]["key"]] = sample
    return kept


def build_places2(config: Places2Config) -> dict[str, Any]:
    """Write the Places2 set and its manifest; returns the manifest."""
    from tqdm import tqdm

    if config.mode not in MODES:
        raise ValueError(f"places2 mode must be one of {MODES}, got {config.mode!r}")
    if config.mode == "resize" and config.resample not in export.RESAMPLE:
        raise ValueError(f"unknown resample filter {config.resample!r}; known: {', '.join(export.RESAMPLE)}")
    if config.limit is not None and config.limit < 1:
        raise ValueError(f"limit must be >= 1 or None (every image), got {config.limit}")
    source = FolderSource(Path(config.val_dir), ("*",))
    keys = source.keys()[: config.limit] if config.limit else source.keys()
    stems = [Path(k).stem for k in keys]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{config.val_dir}: two images share a file stem")
    done = _existing(config)
    todo = [(config, source, index, key) for index, key in enumerate(keys) if key not in done]
    objects = pipeline.object_bank(config.object_annotations)
    if config.workers > 0:
        with ProcessPoolExecutor(config.workers, mp_context=get_context("spawn"), initializer=pipeline._init_worker,
                                 initargs=(objects,)) as pool:
            made = list(tqdm(pool.map(_make, todo, chunksize=16), total=len(todo), desc="places2", disable=not config.progress))
    else:
        pipeline._init_worker(objects)
        try:
            made = [_make(t) for t in tqdm(todo, desc="places2", disable=not config.progress)]
        finally:
            pipeline._init_worker(None)
    by_key = {**done, **{m["source"]["key"]: m for m in made}}
    samples = [by_key[k] for k in keys]
    manifest = export.manifest_header("places2", config.record())
    manifest.update({"source": source.record(), "samples": samples, "files": export.collect_files(samples)})
    atomic_write_json(Path(config.out) / export.MANIFEST_NAME, manifest)
    return manifest
