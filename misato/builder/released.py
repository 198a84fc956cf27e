"""The MISATO release (`yikaiwang/MISATO` on the Hugging Face hub) from its zip archive(s) or a folder.

Accepted inputs:
  * a folder already in the layout (ROOT/512/{image,mask}, ROOT/1024/...), or holding it up to three levels
    down (e.g. an archive unpacked into MISATO/), or image/ + mask/ of the right image size;
  * a .zip file, or a folder holding .zip files (the hub snapshot, searched recursively): archives with
    image files are unpacked (others, such as asuka_training_mask.zip, are left alone) into `extract_to`
    (default: beside the archive, or FOLDER/extracted) and searched as above.
Both mask namings (mask/0000.png and the 1024 release's mask/000000.png) are handled by
`misato.data.load_pair_folders`; .jpg files are accepted as well as .png.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from misato.data import MISATO, Dataset, DatasetError, load_pair_folders
from misato.io import IMAGE_SUFFIXES, write_errors_named

log = logging.getLogger(__name__)


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack `archive` into `target` atomically (temp folder + rename); refuses absolute or ../ names.

    An existing `target` is taken as already unpacked.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    with write_errors_named(target, temporary=tmp):  # removed on any error; a full disk names `target`
        with zipfile.ZipFile(archive) as handle:
            for name in handle.namelist():
                parts = Path(name).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise ValueError(f"{archive}: unsafe member name {name!r}")
            handle.extractall(tmp)
        os.replace(tmp, target)
    return target


def _first_image_size(folder: Path) -> tuple[int, int] | None:
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            with Image.open(path) as image:
                return image.size
    return None


def find_pairs(root: Path, resolution: int, depth: int = 3) -> Path | None:
    """The folder holding image/ and mask/ of `resolution`, at most `depth` levels under `root`.

    Either F/<resolution>/{image,mask} (the release's layout) or, for archives unpacked without the
    resolution folder, F/{image,mask} whose first image is resolution x resolution. Breadth-first, sorted.
    """
    frontier = [root]
    for _ in range(depth + 1):
        nxt = []
        for folder in frontier:
            nested = folder / str(resolution)
            if (nested / "image").is_dir() and (nested / "mask").is_dir():
                return nested
            if (folder / "image").is_dir() and (folder / "mask").is_dir() \
                    and _first_image_size(folder / "image") == (resolution, resolution):
                return folder
            nxt += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
        frontier = nxt
    return None


_PAIR_MEMBER = re.compile(r"(^|/)image/[^/]+\.(png|jpe?g)$", re.IGNORECASE)


def _holds_pairs(archive: Path) -> bool:
    """True when the archive has image/ files (so e.g. asuka_training_mask.zip is left packed)."""
    with zipfile.ZipFile(archive) as handle:
        return any(_PAIR_MEMBER.search(name) for name in handle.namelist())


def _unpack_all(path: Path, extract_to: Path | None) -> Path:
    """Unpack one archive, or every archive under a folder that holds image files; the folder to search."""
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise DatasetError(f"{path}: expected a .zip archive or a folder")
        return safe_extract(path, (extract_to or path.parent) / path.stem)
    archives = [a for a in sorted(path.rglob("*.zip")) if _holds_pairs(a)]
    base = extract_to or path / "extracted"
    for archive in archives:
        safe_extract(archive, base / archive.relative_to(path).with_suffix("").as_posix().replace("/", "_"))
    return base if archives else path


def open_released(path: str | os.PathLike, resolution: int = 512, extract_to: str | os.PathLike | None = None) -> Dataset:
    """The released MISATO (or any folder in its layout) at `resolution` as a `misato.data.Dataset`."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    found = find_pairs(path, resolution) if path.is_dir() else None
    if found is None:
        searched = _unpack_all(path, Path(extract_to) if extract_to else None)
        found = find_pairs(searched, resolution)
    if found is None:
        raise DatasetError(f"{path}: no image/ and mask/ folders of {resolution}x{resolution} images found "
                           "(unpacked archives included)")
    log.info("MISATO-%d found at %s", resolution, found)
    dataset = load_pair_folders(found / "image", found / "mask", name=f"MISATO-{resolution}", kind=MISATO)
    dataset.root = found
    return dataset
