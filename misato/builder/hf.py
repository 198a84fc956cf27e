"""MISATO as a Hugging Face `datasets.Dataset`: columns image, mask (`datasets.Image`), domain, id.

Built from a dict of file paths and cast to `Image()`; `load_dataset(..., "imagefolder")` is not used
because it would read image/ and mask/ as class labels. `embed=True` stores the file bytes in the table
(`save_to_disk` keeps only paths otherwise), so a saved copy is self-contained.
Masks keep the file convention: L mode, 255 = hole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from misato.data import Dataset, load_dataset
from misato.io import MASK_THRESHOLD, save_png

COLUMNS = ("image", "mask", "domain", "id")


def to_hf(dataset: Dataset, embed: bool = True) -> Any:
    """`datasets.Dataset` with one row per sample, in dataset order."""
    import datasets

    def column(paths: list[Path]) -> list[Any]:
        if embed:
            return [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in paths]
        return [str(p) for p in paths]

    table = datasets.Dataset.from_dict({
        "image": column([s.image_path for s in dataset.samples]),
        "mask": column([s.mask_path for s in dataset.samples]),
        "domain": [s.domain or "" for s in dataset.samples],
        "id": [s.stem for s in dataset.samples],
    })
    return table.cast_column("image", datasets.Image()).cast_column("mask", datasets.Image())


def save_hf(dataset: Dataset, out: str | os.PathLike) -> Any:
    """`to_hf(dataset, embed=True).save_to_disk(out)`; returns the table."""
    table = to_hf(dataset, embed=True)
    table.save_to_disk(str(out))
    return table


def load_hf(path: str | os.PathLike) -> Any:
    """A table saved by `save_hf` (`datasets.load_from_disk`), checking its columns."""
    import datasets

    table = datasets.load_from_disk(str(path))
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: datasets copy lacks column(s) {missing}; has {table.column_names}")
    return table


def from_hf(table: Any, out: str | os.PathLike, resolution: int | None = 512) -> Dataset:
    """Write a table with image/mask/id columns to a folder and open it with `misato.data.load_dataset`.

    Files go to OUT/<resolution>/{image,mask}/<id>.png (OUT/{image,mask} when `resolution` is None);
    images are saved as 8-bit RGB PNG, masks as L 0/255 binarised at 128 (white = hole).
    """
    missing = [c for c in ("image", "mask", "id") if c not in table.column_names]
    if missing:
        raise ValueError(f"datasets table lacks column(s) {missing}; has {table.column_names}")
    base = Path(out) / str(resolution) if resolution else Path(out)
    for row in table:
        stem = str(row["id"])
        if not stem or "/" in stem or stem.startswith("."):
            raise ValueError(f"unusable id {stem!r} for a file name")
        save_png(base / "image" / f"{stem}.png", np.asarray(row["image"].convert("RGB"), dtype=np.uint8))
        mask = np.asarray(row["mask"].convert("L"), dtype=np.uint8)
        save_png(base / "mask" / f"{stem}.png", ((mask >= MASK_THRESHOLD) * 255).astype(np.uint8))
    return load_dataset(out, resolution=resolution)
