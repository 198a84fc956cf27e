"""Training data: images, random crops, training masks, and the order they are read in.

Determinism: every random choice for an item (crop, flip, mask, and the stage's own noise) comes from the item's
seed, `misato.seeds.sample_seed("{epoch}/{relative path}", run seed)`, never from a shared stream, a batch
position or a process rank. The order is a permutation per epoch seeded by (run seed, epoch); micro-batch m of the
run is a fixed slice of that stream, and process r of N takes its own sub-slice. So the batch of any step can be
rebuilt from the step number alone: a resumed run reads exactly what the uninterrupted run read.

Bad files: an item that cannot be decoded is replaced by the next readable file in the listing (at most
`MAX_SUBSTITUTES` tries) and counted; the run never stops for one bad image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from misato.io import MASK_THRESHOLD, ImageFileError
from misato.seeds import sample_seed

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_SUBSTITUTES = 16
MASK_DRAW_MIN = 256  # masks are drawn at least at this size (the generators' strokes are sized for 256-512)


def list_training_images(source: str | os.PathLike) -> tuple[Path, list[str]]:
    """(root, sorted relative paths) of the training images in a folder (recursive) or a file list.

    A file list is a text file with one image path per line (relative to the list's folder, or absolute);
    blank lines and lines starting with '#' are ignored. Raises FileNotFoundError / ValueError naming the source.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        root = source.resolve()
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"--data {source}: no images ({', '.join(IMAGE_SUFFIXES)}) found in it or below it")
        return root, files
    if source.is_file():
        root = source.resolve().parent
        lines = [line.strip() for line in source.read_text().splitlines()]
        files = [line for line in lines if line and not line.startswith("#")]
        if not files:
            raise ValueError(f"--data {source}: the file list is empty")
        return root, files
    raise FileNotFoundError(f"--data {source}: no such folder or file list")


def data_fingerprint(root: Path, files: list[str]) -> dict[str, Any]:
    """Identity of the training set for the run record: count and sha256 over (relative path, size) pairs."""
    digest = hashlib.sha256()
    for name in files:
        path = Path(name) if os.path.isabs(name) else root / name
        size = path.stat().st_size if path.exists() else -1
        digest.update(f"{name}\0{size}\n".encode())
    return {"root": str(root), "count": len(files), "sha256": digest.hexdigest()}


def read_training_rgb(path: Path) -> np.ndarray:
    """Any decodable image as uint8 (H, W, 3) RGB (gray and palette images converted: fine for training)."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as error:
        raise ImageFileError(f"{path}: missing") from error
    except Exception as error:  # PIL raises many types for broken files
        raise ImageFileError(f"{path}: unreadable image ({error})") from error


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, scale: tuple[float, float],
                hflip: bool) -> np.ndarray:
    """Resize the shorter side to size * U(scale) (INTER_AREA when shrinking, else INTER_CUBIC), crop a random
    size x size square, flip horizontally with probability 0.5 when `hflip`. uint8 (size, size, 3)."""
    h, w = image.shape[:2]
    short = max(size, int(round(size * rng.uniform(*scale))))
    factor = short / min(h, w)
    new_w, new_h = max(size, int(round(w * factor))), max(size, int(round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    y = int(rng.integers(0, new_h - size + 1))
    x = int(rng.integers(0, new_w - size + 1))
    crop = resized[y:y + size, x:x + size]
    if hflip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


class MaskFolder:
    """Masks read from a folder (recursive) or a .zip archive (e.g. the released ASUKA training masks): white
    (>= 128) = hole. `draw(rng, size)` picks one uniformly and resizes it (nearest) to size x size."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.source = Path(source).expanduser()
        if self.source.is_dir():
            self.names = sorted(str(p.relative_to(self.source)) for p in self.source.rglob("*")
                                if p.suffix.lower() in IMAGE_SUFFIXES)
        elif self.source.is_file() and zipfile.is_zipfile(self.source):
            with zipfile.ZipFile(self.source) as archive:
                self.names = sorted(n for n in archive.namelist() if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise FileNotFoundError(f"--masks {self.source}: not a folder or a .zip archive")
        if not self.names:
            raise ValueError(f"--masks {self.source}: no mask images in it")

    def _read(self, name: str) -> np.ndarray:
        if self.source.is_dir():
            with Image.open(self.source / name) as image:
                return np.asarray(image.convert("L"))
        with zipfile.ZipFile(self.source) as archive, archive.open(name) as handle:
            with Image.open(handle) as image:
                return np.asarray(image.convert("L"))

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        gray = self._read(self.names[int(rng.integers(len(self.names)))])
        return (cv2.resize(gray, (size, size), interpolation=cv2.INTER_NEAREST) >= MASK_THRESHOLD).astype(np.uint8)


@dataclass
class MaskSource:
    """Where training masks come from: the Sec. 3.1 sampler (with an object-shape bank: COCO or synthetic), or a
    `MaskFolder`. `draw(rng, size)` -> uint8 (size, size), 1 = hole."""

    folder: MaskFolder | None = None
    objects: Any = None  # ObjectShapeBank | None

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.folder is not None:
            return self.folder.draw(rng, size)
        from misato.masks.samplers import asuka_training_mask

        draw_size = max(size, MASK_DRAW_MIN)
        mask = asuka_training_mask(rng, draw_size, self.objects).mask
        if draw_size != size:
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        return mask

    def describe(self) -> dict[str, Any]:
        if self.folder is not None:
            return {"kind": "folder", "source": str(self.folder.source), "count": len(self.folder.names)}
        return {"kind": "sampler", "sampler": "asuka-train",
                "objects": None if self.objects is None else self.objects.source}


class TrainingImages(torch.utils.data.Dataset):
    """Map-style dataset indexed by (index, seed) pairs from `StepBatchSampler`.

    An item: image float32 (3, S, S) RGB in [0, 1]; mask float32 (1, S, S) in {0, 1}, 1 = hole; seed (int, the
    item's seed, for the stage's own noise); substituted (int, bad files skipped for this item); plus whatever
    `extra(mask, rng)` returns (the MAE stage adds its token mask).
    """

    def __init__(self, root: Path, files: list[str], size: int, masks: MaskSource, scale: tuple[float, float],
                 hflip: bool, extra: Callable[[np.ndarray, np.random.Generator], dict[str, Any]] | None = None,
                 canonical_seed: int | None = None) -> None:
        self.root, self.files, self.size = root, files, int(size)
        self.masks, self.scale, self.hflip, self.extra = masks, scale, hflip, extra
        self.canonical_seed = canonical_seed

    def crop_rng(self, index: int, item_rng: np.random.Generator | None) -> np.random.Generator:
        """The crop's random stream: the item's, or (canonical crops) one per file: `canonical_crop_seed`."""
        if self.canonical_seed is None:
            if item_rng is None:
                raise ValueError("crops that are not canonical need the item's random stream")
            return item_rng
        return np.random.default_rng(canonical_crop_seed(self.files[index], self.canonical_seed))

    def read_crop(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """uint8 (S, S, 3) crop of file `index` (no substitution: ImageFileError when unreadable); `rng` is the
        item's stream, not needed for canonical crops."""
        return random_crop(read_training_rgb(self.path(index)), self.size, self.crop_rng(index, rng), self.scale,
                           self.hflip)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        name = self.files[index]
        return Path(name) if os.path.isabs(name) else self.root / name

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        rng = np.random.default_rng(seed)
        bad: list[str] = []
        for offset in range(MAX_SUBSTITUTES + 1):
            used = (index + offset) % len(self.files)
            try:
                crop = self.read_crop(used, rng)
                break
            except ImageFileError as error:
                bad.append(str(error))
        else:
            raise RuntimeError(f"{MAX_SUBSTITUTES + 1} consecutive unreadable training images from "
                               f"{self.path(index)}: {bad[-1]}")
        mask = self.masks.draw(rng, self.size)
        item = {
            "image": torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0,
            "mask": torch.from_numpy(mask.astype(np.float32))[None],
            "seed": int(seed),
            "file": self.files[used],
            "bad": bad,
        }
        if self.extra is not None:
            item.update(self.extra(mask, rng))
        return item


def canonical_crop_seed(name: str, run_seed: int) -> int:
    """Seed of a file's one crop for runs with canonical crops (the decoder stage and its latent cache)."""
    return sample_seed(f"crop/{name}", run_seed)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; seeds and files as lists; `bad` as one list of messages."""
    batch: dict[str, Any] = {"seed": [item["seed"] for item in items], "file": [item["file"] for item in items],
                             "bad": [m for item in items for m in item["bad"]]}
    for key in items[0]:
        if key not in batch:
            batch[key] = torch.stack([item[key] for item in items])
    return batch


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for micro-steps start, start+1, ..., end-1, this process's list of (index, seed) keys.

    Micro-step m covers positions [m*G, (m+1)*G) of the run's stream (G = micro_batch_size * num_processes), the
    stream being epoch-wise permutations of the dataset; process r takes [m*G + r*b, m*G + (r+1)*b).
    """

    def __init__(self, files: list[str], micro_batch_size: int, num_processes: int, process_index: int,
                 seed: int, start: int, end: int) -> None:
        self.files, self.b = files, int(micro_batch_size)
        self.world, self.rank, self.seed = int(num_processes), int(process_index), int(seed)
        self.start, self.end = int(start), int(end)
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.files)))
        return self._perm[1]

    def keys(self, micro_step: int) -> list[tuple[int, int]]:
        n = len(self.files)
        first = micro_step * self.b * self.world + self.rank * self.b
        out = []
        for position in range(first, first + self.b):
            epoch, offset = divmod(position, n)
            index = int(self._permutation(epoch)[offset])
            out.append((index, sample_seed(f"{epoch}/{self.files[index]}", self.seed)))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for micro_step in range(self.start, self.end):
            yield self.keys(micro_step)

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU torch generator per item, seeded with its seed (noise independent of batch, rank and device)."""
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
