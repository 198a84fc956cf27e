"""Evaluation datasets on disk: the released MISATO layout and any image/mask folder pair.

A dataset is an ordered list of `Sample`s (image file, mask file, id, domain). Files are read lazily by
the stages that need them; nothing here decodes pixels except `Dataset.content_hash`, which hashes bytes.

MISATO layout (as released, `yikaiwang/MISATO`)::

    ROOT/{512,1024}/image/0000.png ...   (or .jpg)
    ROOT/{512,1024}/mask/0000.png  ...   (1024: mask/000000.png, i.e. "00" + stem)

Domain by index: 0000-0499 landscape, 0500-0999 indoor, 1000-1499 building, 1500-1999 background.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from misato.io import IMAGE_SUFFIXES, sha256_file

DOMAINS: tuple[str, ...] = ("landscape", "indoor", "building", "background")
DOMAIN_SIZE = 500


class DatasetError(ValueError):
    """A dataset folder that does not have the expected layout; the message names the path."""


def domain_of_index(index: int) -> str:
    """MISATO domain of a sample index (0-1999)."""
    if not 0 <= index < DOMAIN_SIZE * len(DOMAINS):
        raise ValueError(f"MISATO index must be in [0, 1999], got {index}")
    return DOMAINS[index // DOMAIN_SIZE]


@dataclass(frozen=True)
class Sample:
    """One evaluation pair. `stem` is the id used to match predictions (file name without suffix)."""

    stem: str
    image_path: Path
    mask_path: Path
    domain: str | None = None


@dataclass
class Dataset:
    """An ordered, named list of samples; `mask_hole_is_white` records the mask convention used;
    `resolution` the MISATO sub-folder opened (None for a plain image/ + mask/ folder)."""

    name: str
    root: Path
    samples: list[Sample]
    mask_hole_is_white: bool = True
    resolution: int | None = None
    _hash: str | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def domains(self) -> list[str]:
        """Domains present, in MISATO order; empty when the dataset has none."""
        present = {s.domain for s in self.samples if s.domain is not None}
        return [d for d in DOMAINS if d in present] + sorted(present - set(DOMAINS))

    def content_hash(self) -> str:
        """sha256 over every (stem, image sha256, mask sha256) in order, plus the mask convention.

        Keys on-disk caches of ground-truth features: a changed, added or removed file changes it.
        """
        if self._hash is None:
            digest = hashlib.sha256(f"hole_is_white={self.mask_hole_is_white}\n".encode())
            for s in self.samples:
                line = f"{s.stem}\t{sha256_file(s.image_path)}\t{sha256_file(s.mask_path)}\n"
                digest.update(line.encode())
            self._hash = digest.hexdigest()
        return self._hash

    def subset(self, stems: list[str]) -> "Dataset":
        """A new dataset with the given stems, in the given order."""
        by_stem = {s.stem: s for s in self.samples}
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DatasetError(f"{self.root}: no samples named {missing[:5]}")
        return Dataset(self.name, self.root, [by_stem[s] for s in stems], self.mask_hole_is_white, self.resolution)


def list_images(folder: Path) -> dict[str, Path]:
    """Map stem -> path for the image files of a folder (png/jpg/jpeg), refusing duplicate stems."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            raise DatasetError(f"{folder}: two files share the stem {path.stem!r}: {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


def _misato_domain(stem: str) -> str | None:
    if len(stem) == 4 and stem.isdigit() and int(stem) < DOMAIN_SIZE * len(DOMAINS):
        return domain_of_index(int(stem))
    return None


def load_pair_folders(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    name: str | None = None,
    mask_hole_is_white: bool = True,
) -> Dataset:
    """Pair `image_dir` and `mask_dir` by file stem.

    Masks may also carry the released MISATO-1024 prefix ("00" + image stem). Every image needs a mask
    and every mask an image: an unmatched file raises `DatasetError` listing the names.
    Domains are assigned from the stem when stems are MISATO indices (0000-1999).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: not a folder")
    images, masks = list_images(image_dir), list_images(mask_dir)
    if not images:
        raise DatasetError(f"{image_dir}: no .png/.jpg images")
    samples, used = [], set()
    unmatched = []
    for stem, image_path in images.items():
        mask_stem = stem if stem in masks else ("00" + stem if "00" + stem in masks else None)
        if mask_stem is None:
            unmatched.append(stem)
            continue
        used.add(mask_stem)
        samples.append(Sample(stem, image_path, masks[mask_stem], _misato_domain(stem)))
    if unmatched:
        raise DatasetError(f"{mask_dir}: no mask for {len(unmatched)} image(s), e.g. {unmatched[:5]}")
    extra = sorted(set(masks) - used)
    if extra:
        raise DatasetError(f"{mask_dir}: {len(extra)} mask(s) without an image, e.g. {extra[:5]}")
    return Dataset(name or image_dir.parent.name, image_dir.parent, samples, mask_hole_is_white)


def load_dataset(
    root: str | os.PathLike, resolution: int | None = None, mask_hole_is_white: bool = True
) -> Dataset:
    """Open a dataset folder: `ROOT/image + ROOT/mask`, or the MISATO `ROOT/{512,1024}/...` layout.

    With the MISATO layout, `resolution` picks the sub-folder (default 512).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    base = root
    if not (root / "image").is_dir():
        resolution = resolution or 512
        base = root / str(resolution)
        if not (base / "image").is_dir():
            raise DatasetError(
                f"{root}: expected image/ and mask/ folders, or the MISATO layout {resolution}/image and {resolution}/mask"
            )
    dataset = load_pair_folders(base / "image", base / "mask", mask_hole_is_white=mask_hole_is_white)
    dataset.name = root.name if base == root else f"{root.name}-{resolution}"
    dataset.root = root
    dataset.resolution = None if base == root else resolution
    return dataset
