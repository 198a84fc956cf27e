"""MISATO folder layout, crops and the manifest.

Layout (as released)::

    OUT/512/image/0000.png ... OUT/512/mask/0000.png       (2,000 pairs; masks L-mode 0/255, white = hole)
    OUT/1024/image/0000.png ... OUT/1024/mask/0000.png     (1,500 pairs, no COCO; "released" naming: mask/000000.png)
    OUT/manifest.json

Index = domain offset (landscape 0, indoor 500, building 1000, background 1500) + position in the domain.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from misato.data import DOMAIN_SIZE, DOMAINS
from misato.environment import package_versions
from misato.io import MASK_THRESHOLD

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "misato-build"
MANIFEST_VERSION = 1

# Recorded by name in the manifest; LANCZOS is what MAE-FAR and InfinityGAN use for their crops.
RESAMPLE: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}

MASK_NAMINGS = ("plain", "released")  # released MISATO-1024: "00" + image stem



def domain_offset(domain: str) -> int:
    """First MISATO index of `domain`."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown MISATO domain {domain!r}; known: {', '.join(DOMAINS)}")
    return DOMAINS.index(domain) * DOMAIN_SIZE


def centre_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred square of side min(W, H); right/bottom exclusive."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_resize(image: Image.Image, box: tuple[int, int, int, int], size: int, resample: str) -> np.ndarray:
    """Crop `box` and resize to (size, size) with the named filter; uint8 (size, size, 3) RGB."""
    if resample not in RESAMPLE:
        raise ValueError(f"unknown resample filter {resample!r}; known: {', '.join(RESAMPLE)}")
    crop = image.convert("RGB").crop(box)
    if crop.size != (size, size):
        crop = crop.resize((size, size), RESAMPLE[resample])
    return np.asarray(crop, dtype=np.uint8)


def mask_png(mask: np.ndarray) -> np.ndarray:
    """{0,1} hole mask (any dtype) -> uint8 L image, 255 = hole."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def upsample_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a {0,1} (H, W) mask to (size, size); uint8 {0,1}."""
    image = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    return (np.asarray(image.resize((size, size), Image.Resampling.NEAREST)) >= MASK_THRESHOLD).astype(np.uint8)


def stem(index: int) -> str:
    return f"{index:04d}"


def image_relpath(resolution: int, index: int) -> str:
    return f"{resolution}/image/{stem(index)}.png"


def mask_relpath(resolution: int, index: int, naming: str = "plain") -> str:
    """Mask file of `index`; "released" naming puts "00" before the stem (MISATO-1024 as published)."""
    if naming not in MASK_NAMINGS:
        raise ValueError(f"unknown mask naming {naming!r}; known: {', '.join(MASK_NAMINGS)}")
    prefix = "00" if naming == "released" else ""
    return f"{resolution}/mask/{prefix}{stem(index)}.png"


def manifest_header(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The common head of a build manifest (no timestamps: the same inputs give the same bytes)."""
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "dataset": kind, "config": config,
            "packages": package_versions(), "platform": sys.platform}


def collect_files(samples: list[dict[str, Any]]) -> dict[str, str]:
    """relpath -> sha256 for every file of every sample record, sorted by path."""
    files: dict[str, str] = {}
    for sample in samples:
        for relpath, digest in sample["files"].items():
            if relpath in files:
                raise ValueError(f"two samples write {relpath}")
            files[relpath] = digest
    return dict(sorted(files.items()))


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Load ROOT/manifest.json and check its format; raises ValueError naming the file."""
    import json

    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest (was this folder built by `misato build`?)")
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{path}: not a misato-build manifest")
    return manifest
