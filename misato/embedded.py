"""The embedded default dataset: real photos that installed packages ship, with MISATO-style masks.

Built offline and deterministically from files inside the scikit-image and scikit-learn wheels (no pooch
downloads): each photo is centre-cropped to a square, resized to `size` with PIL's Lanczos filter and paired
with a mask from `misato.masks.misato_mask` seeded by the photo's index (drawn at 512 px and resized, so
every size shows the same holes). Layout::

    DIR/image/0000_astronaut.png ...   8-bit RGB, size x size
    DIR/mask/0000_astronaut.png  ...   8-bit L, 255 = hole
    DIR/manifest.json                  source, crop box, resize filter, mask kind, hole ratio, seed, sha256

Stems are `NNNN_<source>`, not bare `NNNN`: `misato.data` reads a four-digit stem below 2000 as a MISATO
index and would file every photo under "landscape". These photos (an astronaut, a cat, microscopy, a
retina, ...) do not fit MISATO's four domains, so samples carry no domain and the set is scored as a
`custom` dataset (its own column group in the leaderboard, never the MISATO column).

Masks: MISATO's sampler (Sec. 4: hole ratio in [0.2, 0.8], no rectangles) without its object basis, since
the COCO object shapes it draws from are not shipped with any package; every mask is therefore a Co-Mod or
LaMa irregular mask. Building twice gives byte-identical files (same packages, same PIL/zlib).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from misato.data import Dataset, load_pair_folders
from misato.defaults import EMBEDDED_SIZE
from misato.io import MASK_THRESHOLD, atomic_write_json, save_png, sha256_file

log = logging.getLogger(__name__)

SCHEMA = "misato.embedded/1"
DEFAULT_SIZE = EMBEDDED_SIZE
MIN_SIZE = 32  # the smallest side the embedded set is built at (`--embedded-size` is checked against it)
DEFAULT_SEED = 0
MASK_DOMAIN = "embedded"  # the stream name given to misato_mask (it only seeds the generator)
RESAMPLE = Image.Resampling.LANCZOS
RESAMPLE_NAME = "PIL.Image.Resampling.LANCZOS"
# Masks are drawn at MISATO's 512 px (the generators' stroke widths and box sizes are set for 512; at 64 px
# they rarely reach the ratio range) and resized to the dataset size: box-filter average, hole where >= 0.5
# (down), nearest neighbour (up). Every size thus shows the same hole geometry.
MASK_BASE_SIZE = 512
MASK_RESIZE = f"PIL BOX average of the 0/255 mask, hole where >= {MASK_THRESHOLD} (downscaling); NEAREST (upscaling)"


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _skimage_stereo(which: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return data.stereo_motorcycle()[which]  # (left, right, disparity); both views ship in the wheel

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


@dataclass(frozen=True)
class Source:
    """One shipped photo: a short name (used in the stem), where it comes from, and its loader."""

    name: str
    origin: str
    load: Callable[[], np.ndarray]


# Colour photos inside the scikit-image 0.26 and scikit-learn wheels. Left out: skimage's lily, skin,
# kidney and cells3d (pooch downloads), colorwheel (synthetic), cat (the same file as chelsea).
SOURCES: tuple[Source, ...] = (
    Source("astronaut", "skimage.data.astronaut", _skimage("astronaut")),
    Source("chelsea", "skimage.data.chelsea", _skimage("chelsea")),
    Source("coffee", "skimage.data.coffee", _skimage("coffee")),
    Source("rocket", "skimage.data.rocket", _skimage("rocket")),
    Source("hubble", "skimage.data.hubble_deep_field", _skimage("hubble_deep_field")),
    Source("ihc", "skimage.data.immunohistochemistry", _skimage("immunohistochemistry")),
    Source("retina", "skimage.data.retina", _skimage("retina")),
    Source("motorcycle-left", "skimage.data.stereo_motorcycle[0]", _skimage_stereo(0)),
    Source("motorcycle-right", "skimage.data.stereo_motorcycle[1]", _skimage_stereo(1)),
    Source("china", "sklearn.datasets.load_sample_image('china.jpg')", _sklearn("china.jpg")),
    Source("flower", "sklearn.datasets.load_sample_image('flower.jpg')", _sklearn("flower.jpg")),
)


def default_dir(size: int = DEFAULT_SIZE) -> Path:
    """The dataset folder for `size`: `misato.defaults.embedded_root() / str(size)` (the MISATO `ROOT/<res>/`
    layout)."""
    from misato.defaults import embedded_root

    return embedded_root() / str(size)


def center_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square; odd margins put the extra pixel right/bottom."""
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def prepare_photo(photo: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """uint8 (H, W, 3) -> (uint8 (size, size, 3) centre crop resized with Lanczos, crop box)."""
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) photo, got {photo.dtype} {photo.shape}")
    box = center_crop_box(*photo.shape[:2])
    image = Image.fromarray(np.ascontiguousarray(photo)).crop(box)
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8), box


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, N) in {0, 1}, 1 = hole -> uint8 (size, size) in {0, 1}; see MASK_RESIZE."""
    if mask.shape == (size, size):
        return mask.astype(np.uint8)
    image = Image.fromarray((mask * 255).astype(np.uint8))
    if size < mask.shape[0]:
        return (np.asarray(image.resize((size, size), Image.Resampling.BOX)) >= MASK_THRESHOLD).astype(np.uint8)
    return (np.asarray(image.resize((size, size), Image.Resampling.NEAREST)) >= MASK_THRESHOLD).astype(np.uint8)


def mask_sampler():
    """MISATO's sampler config without the object basis (COCO shapes are not available offline)."""
    from misato.masks import MISATO

    return replace(MISATO, name="misato-irregular", bases=(("irregular", 1.0),))


def _build_parameters(size: int, seed: int, sources: tuple[Source, ...]) -> dict:
    import PIL
    import skimage
    import sklearn

    sampler = mask_sampler()
    return {
        "schema": SCHEMA,
        "size": size,
        "seed": seed,
        "sources": [s.name for s in sources],
        "resize_filter": RESAMPLE_NAME,
        "crop": "centre square of side min(H, W), box (left, top, right, bottom) in source pixels",
        "mask_sampler": {
            "function": "misato.masks.misato_mask(seed, domain, index, 512, config=...)",
            "drawn_at": MASK_BASE_SIZE,
            "resize": MASK_RESIZE,
            "domain_stream": MASK_DOMAIN,
            "config": sampler.name,
            "bases": [list(b) for b in sampler.bases],
            "irregular": [list(b) for b in sampler.irregular],
            "ratio_range": list(sampler.ratio_range),
            "note": "MISATO mixture without the object basis (COCO object shapes are not shipped offline)",
        },
        "mask_convention": "white (255) = hole",
        "domains": None,
        "dataset_kind": "custom",
        "versions": {"scikit-image": skimage.__version__, "scikit-learn": sklearn.__version__, "pillow": PIL.__version__},
    }


def _is_current(folder: Path, parameters: dict) -> bool:
    """True when `folder` holds a finished build with these parameters whose files still hash as recorded."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if manifest.get("parameters") != parameters:
        return False
    for sample in manifest.get("samples", []):
        for kind in ("image", "mask"):
            path = folder / kind / f"{sample['stem']}.png"
            if not path.is_file() or sha256_file(path) != sample[f"{kind}_sha256"]:
                return False
    return bool(manifest.get("samples"))


def _clear_previous_build(folder: Path) -> None:
    """Remove the PNGs of an earlier embedded build (other sources would join the dataset); refuse a
    folder that holds images but no embedded manifest, so a wrong path never deletes someone's data."""
    pngs = [p for kind in ("image", "mask") if (folder / kind).is_dir() for p in (folder / kind).iterdir()]
    if not pngs:
        return
    try:
        schema = json.loads((folder / "manifest.json").read_text()).get("parameters", {}).get("schema")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        schema = None
    if schema != SCHEMA:
        raise ValueError(f"{folder}: holds image/ or mask/ files but no embedded-dataset manifest; choose an empty folder")
    (folder / "manifest.json").unlink()
    for path in pngs:
        if path.suffix == ".png" and path.is_file():
            path.unlink()


def build_embedded(
    out_dir: str | os.PathLike | None = None,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    sources: tuple[Source, ...] = SOURCES,
    force: bool = False,
) -> Path:
    """Write the embedded dataset into `out_dir` (default `default_dir(size)`) and return that folder.

    An existing build with the same parameters whose files match their recorded sha256 is reused unless
    `force`. Files are written atomically; the manifest last, so a folder with a manifest is complete.
    """
    from misato.masks import misato_mask

    if size < MIN_SIZE:
        raise ValueError(f"embedded dataset size must be at least {MIN_SIZE}, got {size}")
    folder = Path(out_dir) if out_dir is not None else default_dir(size)
    parameters = _build_parameters(size, seed, sources)
    if not force and _is_current(folder, parameters):
        log.info("embedded dataset up to date in %s", folder)
        return folder
    _clear_previous_build(folder)
    sampler = mask_sampler()
    samples = []
    for index, source in enumerate(sources):
        stem = f"{index:04d}_{source.name}"
        photo = source.load()
        image, box = prepare_photo(photo, size)
        drawn = misato_mask(seed, MASK_DOMAIN, index, MASK_BASE_SIZE, config=sampler)
        if drawn is None:  # only with a foreground, which is not passed; kept for the contract
            raise ValueError(f"embedded: no mask drawn for {stem}")
        image_path, mask_path = folder / "image" / f"{stem}.png", folder / "mask" / f"{stem}.png"
        save_png(image_path, image)
        mask = resize_mask(drawn.mask, size)
        save_png(mask_path, mask * 255)
        samples.append({
            "stem": stem,
            "index": index,
            "source": source.origin,
            "source_shape": list(photo.shape),
            "crop_box": list(box),
            "mask_kind": drawn.kind,
            "hole_ratio": round(float(mask.mean()), 6),
            "hole_ratio_at_512": round(drawn.hole_ratio, 6),
            "mask_attempts": drawn.attempts,
            "mask_seed": {"seed": seed, "domain": MASK_DOMAIN, "index": index},
            "domain": None,
            "image_sha256": sha256_file(image_path),
            "mask_sha256": sha256_file(mask_path),
        })
    atomic_write_json(folder / "manifest.json", {"parameters": parameters, "samples": samples})
    log.info("built the embedded dataset (%d photos, %d px) in %s", len(samples), size, folder)
    return folder


def load_embedded(
    out_dir: str | os.PathLike | None = None, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED
) -> Dataset:
    """Build (or reuse) the embedded dataset and open it, named `embedded-<size>`, without domains."""
    folder = build_embedded(out_dir, size, seed)
    return load_pair_folders(folder / "image", folder / "mask", name=f"embedded-{size}")
