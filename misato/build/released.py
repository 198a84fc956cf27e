"""The MISATO release (`yikaiwang/MISATO` on the Hugging Face hub) from its zip archive(s) or a folder.

Accepted inputs:
  * a folder already in the layout (ROOT/512/{image,mask}, ROOT/1024/...), or holding it one or two levels
    down (e.g. an archive unpacked into MISATO/);
  * a .zip file, or a folder of .zip files (the hub snapshot): archives are unpacked into `extract_to`
    (default: a folder named after the archive beside it) and searched as above.
Both mask namings (mask/0000.png and the 1024 release's mask/000000.png) are handled by
`misato.data.load_pair_folders`; .jpg files are accepted as well as .png.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from misato.data import Dataset, DatasetError, load_dataset

log = logging.getLogger(__name__)


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack `archive` into `target` atomically (temp folder + rename); refuses absolute or ../ names.

    An existing `target` is taken as already unpacked.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as handle:
            for name in handle.namelist():
                parts = Path(name).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise ValueError(f"{archive}: unsafe member name {name!r}")
            handle.extractall(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def find_layout(root: Path, resolution: int, depth: int = 3) -> Path | None:
    """The folder F at most `depth` levels under `root` with F/<resolution>/image and F/<resolution>/mask."""
    frontier = [root]
    for _ in range(depth + 1):
        nxt = []
        for folder in frontier:
            if (folder / str(resolution) / "image").is_dir() and (folder / str(resolution) / "mask").is_dir():
                return folder
            nxt += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("." , "__MACOSX")))
        frontier = nxt
    return None


def _unpack_all(path: Path, extract_to: Path | None) -> Path:
    """Unpack one archive, or every archive of a folder, and return the folder to search."""
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise DatasetError(f"{path}: expected a .zip archive or a folder")
        return safe_extract(path, (extract_to or path.parent) / path.stem)
    archives = sorted(path.glob("*.zip"))
    base = extract_to or path / "extracted"
    for archive in archives:
        safe_extract(archive, base / archive.stem)
    return base if archives else path


def open_released(path: str | os.PathLike, resolution: int = 512, extract_to: str | os.PathLike | None = None) -> Dataset:
    """The released MISATO (or any folder in its layout) at `resolution` as a `misato.data.Dataset`."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir() and ((path / "image").is_dir() or find_layout(path, resolution, depth=0)):
        return load_dataset(path, resolution=resolution)
    found = find_layout(path, resolution) if path.is_dir() else None
    if found is None:
        searched = _unpack_all(path, Path(extract_to) if extract_to else None)
        found = find_layout(searched, resolution)
    if found is None:
        raise DatasetError(f"{path}: no {resolution}/image and {resolution}/mask folders found (unpacked archives included)")
    log.info("MISATO-%d found at %s", resolution, found)
    return load_dataset(found, resolution=resolution)
