"""Evaluation datasets on disk: the released MISATO layout and any image/mask folder pair.

A dataset is an ordered list of `Sample`s (image file, mask file, id, domain). Files are read lazily by
the stages that need them; nothing here decodes pixels (`Dataset.content_hash` hashes bytes,
`Dataset.mask_report` calls `misato.masks.files`).

MISATO layout (as released, `yikaiwang/MISATO`)::

    ROOT/{512,1024}/image/0000.png ...   (or .jpg)
    ROOT/{512,1024}/mask/0000.png  ...   (1024: mask/000000.png, i.e. "00" + stem)

Domain by index: 0000-0499 landscape, 0500-0999 indoor, 1000-1499 building, 1500-1999 background.

Kind (the leaderboard group, `KINDS`): a dataset is "MISATO" only when its layout says so (opened as
ROOT/{512,1024}/, or given as such a 512/ or 1024/ folder, every stem a MISATO index) or the `misato build`
manifest in ROOT (or beside the 512/ folder) says "misato"; "Places2" when that manifest says "places2"; else
"custom". Only MISATO datasets have domains: a user's own files named 0000.png... are "custom", never
grouped with the paper's MISATO figures.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from misato.io import IMAGE_SUFFIXES, read_mask, sha256_file

if TYPE_CHECKING:
    import numpy as np

    from misato.masks.files import MaskReport

DOMAINS: tuple[str, ...] = ("landscape", "indoor", "building", "background")
DOMAIN_SIZE = 500
MISATO, PLACES2, CUSTOM = "MISATO", "Places2", "custom"
KINDS: tuple[str, ...] = (MISATO, PLACES2, CUSTOM)  # leaderboard groups, as written in result files
RESOLUTIONS: tuple[int, ...] = (512, 1024)  # the MISATO layout's sub-folders


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
    """An ordered, named list of samples; `mask_hole_is_white` and `mask_binary_01` record how mask files are
    read (`misato.io.orient_mask`); `resolution` the MISATO sub-folder opened (None for a plain image/ + mask/
    folder); `kind` one of `KINDS` (see the module docstring)."""

    name: str
    root: Path
    samples: list[Sample]
    mask_hole_is_white: bool = True
    resolution: int | None = None
    kind: str = CUSTOM
    mask_binary_01: bool = False
    _hash: str | None = field(default=None, repr=False, compare=False)
    _masks: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(f"{self.root}: dataset kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

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
            if self.mask_binary_01:  # only when set: hashes (and caches) of 0/255 datasets stay as they were
                digest.update(b"binary_01=True\n")
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
        masks = self._masks.subset(stems) if self._masks is not None else None
        return replace(self, samples=[by_stem[s] for s in stems], _hash=None, _masks=masks)

    def mask_report(self) -> "MaskReport":
        """Every mask checked once (`misato.masks.files.check_masks`), remembered for later stages."""
        if self._masks is None:
            from misato.masks.files import check_masks

            self._masks = check_masks(self.samples, self.mask_hole_is_white, self.mask_binary_01)
        return self._masks

    def read_mask(self, sample: Sample) -> np.ndarray:
        """The mask of `sample` as float32 (H, W) in {0, 1}, 1 = hole, read with this dataset's convention."""
        return read_mask(sample.mask_path, self.mask_hole_is_white, self.mask_binary_01)


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


def is_misato_stem(stem: str) -> bool:
    """A MISATO sample id: four digits, 0000-1999."""
    return len(stem) == 4 and stem.isdigit() and int(stem) < DOMAIN_SIZE * len(DOMAINS)


def load_pair_folders(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    name: str | None = None,
    mask_hole_is_white: bool = True,
    kind: str = CUSTOM,
    mask_binary_01: bool = False,
) -> Dataset:
    """Pair `image_dir` and `mask_dir` by file stem.

    Masks may also carry the released MISATO-1024 prefix ("00" + image stem). Every image needs a mask
    and every mask an image: an unmatched file raises `DatasetError` listing the names.
    `kind="MISATO"` (the caller knows the folders are MISATO's) assigns domains from the stems, which must all
    be MISATO indices (0000-1999); other kinds have no domains, whatever the stems look like.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: not a folder")
    images, masks = list_images(image_dir), list_images(mask_dir)
    if not images:
        raise DatasetError(f"{image_dir}: no .png/.jpg images")
    if kind == MISATO:
        foreign = [stem for stem in images if not is_misato_stem(stem)]
        if foreign:
            raise DatasetError(f"{image_dir}: a MISATO dataset names its images 0000-1999; {len(foreign)} do not, "
                               f"e.g. {foreign[:5]}")
    samples, used = [], set()
    unmatched = []
    for stem, image_path in images.items():
        mask_stem = stem if stem in masks else ("00" + stem if "00" + stem in masks else None)
        if mask_stem is None:
            unmatched.append(stem)
            continue
        used.add(mask_stem)
        domain = domain_of_index(int(stem)) if kind == MISATO else None
        samples.append(Sample(stem, image_path, masks[mask_stem], domain))
    if unmatched:
        raise DatasetError(f"{mask_dir}: no mask for {len(unmatched)} image(s), e.g. {unmatched[:5]}")
    extra = sorted(set(masks) - used)
    if extra:
        raise DatasetError(f"{mask_dir}: {len(extra)} mask(s) without an image, e.g. {extra[:5]}")
    return Dataset(name or image_dir.parent.name, image_dir.parent, samples, mask_hole_is_white, kind=kind,
                   mask_binary_01=mask_binary_01)


def manifest_kind(folder: Path) -> str | None:
    """The kind a `misato build` manifest in `folder` states ("misato" -> MISATO, "places2" -> Places2), or None
    when `folder` holds no such manifest (a `manifest.json` of another format is not one)."""
    from misato.builder.export import MANIFEST_FORMAT, MANIFEST_NAME

    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: unreadable manifest ({error}); it decides the dataset's kind: repair or "
                           "remove it") from error
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    stated = {MISATO.lower(): MISATO, PLACES2.lower(): PLACES2}.get(str(manifest.get("dataset")).lower())
    if stated is None:
        raise DatasetError(f"{path}: a {MANIFEST_FORMAT} manifest for dataset {manifest.get('dataset')!r}; "
                           f"known: misato, places2")
    return stated


def load_dataset(
    root: str | os.PathLike, resolution: int | None = None, mask_hole_is_white: bool = True,
    mask_binary_01: bool = False,
) -> Dataset:
    """Open a dataset folder: `ROOT/image + ROOT/mask`, or the MISATO `ROOT/{512,1024}/...` layout.

    With the MISATO layout, `resolution` picks the sub-folder (default 512); a `ROOT/512` folder given itself
    opens as `ROOT` at 512 (same name, root and kind). The kind follows the module docstring's rule.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if (root / "image").is_dir():
        base = root
        sub_folder = root.name in {str(r) for r in RESOLUTIONS} and resolution in (None, int(root.name))
        if resolution is not None and not sub_folder:
            raise DatasetError(f"{root}: resolution {resolution} asked, but this folder holds image/ and mask/ itself "
                               f"(the MISATO layout has them in {' or '.join(map(str, RESOLUTIONS))}/)")
        layout_root, resolution = (root.parent, int(root.name)) if sub_folder else (root, None)
        stated = manifest_kind(root) or (manifest_kind(root.parent) if sub_folder else None)
    else:
        resolution = resolution or RESOLUTIONS[0]
        base, layout_root = root / str(resolution), root
        if not (base / "image").is_dir():
            raise DatasetError(
                f"{root}: expected image/ and mask/ folders, or the MISATO layout {resolution}/image and {resolution}/mask"
            )
        stated = manifest_kind(root)
    stems = list_images(base / "image")
    in_layout = resolution is not None and bool(stems) and all(is_misato_stem(stem) for stem in stems)
    kind = stated or (MISATO if in_layout else CUSTOM)
    if base == root and kind != MISATO:  # a plain folder (even one named 512): opened as itself
        layout_root, resolution = root, None
    dataset = load_pair_folders(base / "image", base / "mask", mask_hole_is_white=mask_hole_is_white, kind=kind,
                                mask_binary_01=mask_binary_01)
    dataset.name = layout_root.name if resolution is None else f"{layout_root.name}-{resolution}"
    dataset.root = layout_root
    dataset.resolution = resolution
    return dataset


def dataset_kind(dataset: Dataset, requested: str | None = None) -> str:
    """The leaderboard group of results on `dataset`: its own kind, or `requested` (`--kind`).

    A dataset that is not MISATO by its layout or manifest is never put in the MISATO group (its figures would
    stand beside the paper's), nor a MISATO dataset in the Places2 one: ValueError naming the folder.
    """
    if requested is None or requested == dataset.kind:
        return dataset.kind
    if requested not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {requested!r}")
    if requested == CUSTOM or (requested == PLACES2 and dataset.kind == CUSTOM):
        return requested
    raise ValueError(f"--kind {requested}: {dataset.root} is a {dataset.kind} dataset (MISATO only by its layout "
                     f"ROOT/{{512,1024}}/image + mask with ids 0000-1999, or a `misato build` manifest)")
