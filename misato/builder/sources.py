"""Source datasets of the MISATO build: adapters that list images reproducibly and open them.

Every adapter lists its images once, as a sorted list of string keys (a relative path, an LMDB key or a
zero-padded COCO image id), and opens one key as a PIL RGB image. The sorted key list is the only order
the build ever uses, so the same files give the same selection on every machine.

Adapters are small picklable objects (handles such as an LMDB environment are opened lazily, per
process), so worker processes can open images themselves.

Kinds (`SOURCE_KINDS`):
    folder          every .png/.jpg/.jpeg under ROOT (recursive)
    matterport3d    ROOT/*/undistorted_color_images/*.jpg   (one folder per house/scan)
    megadepth       ROOT/*/dense*/imgs/*.jpg                 (MegaDepth_v1/<scene>/dense0/imgs)
    flickr-lmdb     InfinityGAN's Flickr-Landscape LMDB: keys f"{size}-{idx:08d}" and "length"
    coco            COCO 2014 images folder + instances_*.json (image ids that have instance annotations)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from misato.io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A source folder/file that cannot be listed or read; the message names it."""


def _open_rgb(data: str | os.PathLike | io.BytesIO, name: str) -> Image.Image:
    """Open an image file as RGB (source photos may be gray or CMYK; the benchmark is RGB)."""
    try:
        image = Image.open(data)
        image.load()
    except Exception as error:  # PIL raises several types for broken files
        raise SourceError(f"{name}: unreadable image ({error})") from error
    return image if image.mode == "RGB" else image.convert("RGB")


class ImageSource(ABC):
    """A sorted, keyed collection of source images."""

    kind: ClassVar[str]

    @abstractmethod
    def _list_keys(self) -> list[str]:
        """All keys, in any order (`keys` sorts them)."""

    @abstractmethod
    def open(self, key: str) -> Image.Image:
        """The image for `key`, as a PIL RGB image at its stored size."""

    @abstractmethod
    def locate(self, key: str) -> str:
        """Human-readable location of `key` recorded in manifests (a path, an LMDB key...)."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """JSON-able description of the source (kind, root, pattern...), without the key list."""

    def keys(self) -> list[str]:
        """Sorted keys (computed once per object)."""
        cached = getattr(self, "_keys", None)
        if cached is None:
            cached = sorted(self._list_keys())
            if not cached:
                raise SourceError(f"{self.record()}: no images found")
            self._keys = cached
        return cached

    def fingerprint(self) -> str:
        """sha256 over the kind and the sorted key list: names a feature cache for this exact listing."""
        digest = hashlib.sha256(f"{self.kind}\n".encode())
        for key in self.keys():
            digest.update(key.encode("utf-8") + b"\n")
        return digest.hexdigest()

    def __getstate__(self) -> dict[str, Any]:
        # Handles (LMDB environments, COCO indices) are reopened per process.
        # The sorted key list is dropped too: workers only open keys they are given.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_h_") and k != "_keys"}


@dataclass(eq=False)
class FolderSource(ImageSource):
    """Images matched by glob `patterns` under `root`; keys are POSIX paths relative to `root`."""

    root: Path
    patterns: tuple[str, ...] = ("**/*",)
    kind: ClassVar[str] = "folder"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if isinstance(self.patterns, str):
            self.patterns = (self.patterns,)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a folder")

    def _list_keys(self) -> list[str]:
        found: set[str] = set()
        for pattern in self.patterns:
            for path in self.root.glob(pattern):
                if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file():
                    found.add(path.relative_to(self.root).as_posix())
        if not found:
            raise SourceError(f"{self.root}: no .png/.jpg images match {list(self.patterns)}")
        return list(found)

    def open(self, key: str) -> Image.Image:
        return _open_rgb(self.root / key, str(self.root / key))

    def locate(self, key: str) -> str:
        return key

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "patterns": list(self.patterns)}


@dataclass(eq=False)
class Matterport3DSource(FolderSource):
    """Matterport3D scans: ROOT/<house>/undistorted_color_images/*.jpg by default."""

    patterns: tuple[str, ...] = ("*/undistorted_color_images/*.jpg",)
    kind: ClassVar[str] = "matterport3d"


@dataclass(eq=False)
class MegaDepthSource(FolderSource):
    """MegaDepth v1: ROOT/<scene>/dense*/imgs/*.jpg by default."""

    patterns: tuple[str, ...] = ("*/dense*/imgs/*.jpg",)
    kind: ClassVar[str] = "megadepth"


_LMDB_KEY = re.compile(r"^(\d+)-(\d{8})$")


@dataclass(eq=False)
class FlickrLMDBSource(ImageSource):
    """InfinityGAN's Flickr-Landscape LMDB: encoded images under f"{size}-{idx:08d}", count under "length".

    `size` is the resolution the LMDB was prepared at; None detects it from the first image key.
    The `lmdb` package is imported when the database is first opened.
    """

    path: Path
    size: int | None = None
    kind: ClassVar[str] = "flickr-lmdb"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such LMDB")

    def _env(self) -> Any:
        # An LMDB environment must not cross a fork (DataLoader workers): reopen it in every process.
        env = self.__dict__.get("_h_env") if self.__dict__.get("_h_pid") == os.getpid() else None
        if env is None:
            try:
                import lmdb
            except ImportError as error:
                raise SourceError(
                    f"{self.path}: reading InfinityGAN's LMDB needs the `lmdb` package (pip install lmdb), "
                    "or export the images to a folder and pass it instead"
                ) from error
            env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False,
                            subdir=self.path.is_dir())
            self.__dict__["_h_env"], self.__dict__["_h_pid"] = env, os.getpid()
        return env

    def _get(self, key: str) -> bytes | None:
        with self._env().begin(write=False) as txn:
            value = txn.get(key.encode("utf-8"))
        return None if value is None else bytes(value)

    def _detect_size(self) -> int:
        with self._env().begin(write=False) as txn:
            for raw_key, _ in txn.cursor():
                match = _LMDB_KEY.match(bytes(raw_key).decode("utf-8", "replace"))
                if match:
                    return int(match.group(1))
        raise SourceError(f"{self.path}: no keys of the form '<size>-<idx:08d>'")

    def _list_keys(self) -> list[str]:
        raw = self._get("length")
        if raw is None:
            raise SourceError(f"{self.path}: LMDB has no 'length' key (not an InfinityGAN dataset?)")
        length = int(raw.decode("utf-8"))
        if self.size is None:
            self.size = self._detect_size()
        return [f"{self.size}-{idx:08d}" for idx in range(length)]

    def open(self, key: str) -> Image.Image:
        raw = self._get(key)
        if raw is None:
            raise SourceError(f"{self.path}: LMDB has no key {key!r}")
        return _open_rgb(io.BytesIO(raw), f"{self.path}[{key}]")

    def locate(self, key: str) -> str:
        return key

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.path), "size": self.size}


@dataclass(eq=False)
class CocoSource(ImageSource):
    """COCO 2014: images in `images` (e.g. train2014/) described by `annotations` (instances_*.json).

    Keys are image ids zero-padded to 12 digits (the COCO file-name convention), so they sort numerically.
    With `require_objects` (default) only images with at least one instance annotation (crowd included)
    are listed: MISATO's COCO domain is about inpainting the background around objects.
    """

    images: Path
    annotations: Path
    require_objects: bool = True
    kind: ClassVar[str] = "coco"
    _files: dict[str, str] = field(default_factory=dict, repr=False, init=False)

    def __post_init__(self) -> None:
        self.images, self.annotations = Path(self.images), Path(self.annotations)
        if not self.images.is_dir():
            raise SourceError(f"{self.images}: not a folder")
        if not self.annotations.is_file():
            raise SourceError(f"{self.annotations}: no such annotation file")

    def coco(self) -> Any:
        """The pycocotools COCO index (loaded once per process)."""
        return load_coco(self.annotations)

    @staticmethod
    def key_of(image_id: int) -> str:
        return f"{int(image_id):012d}"

    def _list_keys(self) -> list[str]:
        coco = self.coco()
        keys = []
        for image_id, info in coco.imgs.items():
            if self.require_objects and not coco.imgToAnns.get(image_id):
                continue
            keys.append(self.key_of(image_id))
            self._files[self.key_of(image_id)] = info["file_name"]
        missing = [self._files[k] for k in keys[:1000] if not (self.images / self._files[k]).is_file()]
        if missing:
            raise SourceError(
                f"{self.images}: {len(missing)} of the first {min(len(keys), 1000)} images listed in "
                f"{self.annotations.name} are missing, e.g. {missing[:3]} (wrong split folder?)"
            )
        return keys

    def file_name(self, key: str) -> str:
        if not self._files:
            self.keys()
        if key not in self._files:
            raise SourceError(f"{self.annotations}: no image with id {key}")
        return self._files[key]

    def restricted(self, keys: list[str]) -> "CocoSource":
        """A light copy that can open only `keys` (no annotation index): what a worker process needs."""
        copy = CocoSource(self.images, self.annotations, self.require_objects)
        copy._files = {k: self.file_name(k) for k in keys}
        return copy

    def open(self, key: str) -> Image.Image:
        path = self.images / self.file_name(key)
        return _open_rgb(path, str(path))

    def image_id(self, key: str) -> int:
        return int(key)

    def locate(self, key: str) -> str:
        return self.file_name(key)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.images), "annotations": str(self.annotations),
                "require_objects": self.require_objects}


_COCO_INDICES: dict[str, Any] = {}


def load_coco(annotations: str | os.PathLike) -> Any:
    """A pycocotools COCO index of an instances_*.json, loaded once per process and path."""
    key = str(Path(annotations).resolve())
    if key not in _COCO_INDICES:
        from pycocotools.coco import COCO

        try:
            with open(key, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise SourceError(f"{annotations}: unreadable COCO annotation file ({error})") from error
        index = COCO()
        index.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            index.createIndex()
        _COCO_INDICES[key] = index
    return _COCO_INDICES[key]


SOURCE_KINDS: dict[str, type[ImageSource]] = {
    cls.kind: cls for cls in (FolderSource, Matterport3DSource, MegaDepthSource, FlickrLMDBSource, CocoSource)
}


def is_lmdb(path: str | os.PathLike) -> bool:
    """True for an LMDB folder (data.mdb inside) or an .mdb file."""
    path = Path(path)
    return (path.is_dir() and (path / "data.mdb").is_file()) or (path.is_file() and path.suffix == ".mdb")


def landscape_source(path: str | os.PathLike, pattern: str | None = None, lmdb_size: int | None = None) -> ImageSource:
    """Flickr-Landscape as InfinityGAN's LMDB (detected by data.mdb) or as an image folder."""
    if is_lmdb(path):
        return FlickrLMDBSource(Path(path), size=lmdb_size)
    return FolderSource(Path(path), (pattern,) if pattern else FolderSource.patterns)


def folder_source(kind: str, root: str | os.PathLike, pattern: str | None = None) -> FolderSource:
    """A folder-based source of `kind` ("folder", "matterport3d", "megadepth"), default pattern unless given."""
    cls = SOURCE_KINDS.get(kind)
    if cls is None or not issubclass(cls, FolderSource):
        raise ValueError(f"unknown folder source kind {kind!r}; known: folder, matterport3d, megadepth")
    return cls(Path(root), (pattern,)) if pattern else cls(Path(root))
