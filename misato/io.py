"""File helpers shared by every stage: atomic writes, hashing and strict image reading."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from misato.defaults import MASK_HOLE_FRACTION

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFileError(ValueError):
    """An image or mask file that cannot be used as it is; the message names the file."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`.

    A reader never sees a half-written file, even when the writer is killed. A failed write (a full disk, a quota,
    a read-only folder) removes the temporary file and raises an OSError that names `path` (`named_write_error`).
    """
    path = Path(path)
    with write_errors_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with write_errors_named(path, temporary=tmp):
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)


def probe_write(folder: str | os.PathLike, size: int, named: str | os.PathLike | None = None) -> None:
    """Write `size` bytes to a temporary file in `folder`, fsync it and remove it: fails as a real write of that
    size there would (a full disk, a quota, a read-only file system, no permission), before any work is done, with
    an OSError naming `named` (default `folder`). Incompressible bytes, so a compressing file system counts them."""
    named = named if named is not None else folder
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".misato-probe.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            block = os.urandom(min(max(size, 1), 1 << 20))
            for start in range(0, max(size, 1), len(block)):
                handle.write(block[: size - start] if size - start < len(block) else block)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        if error.errno is None:
            raise OSError(f"{named}: {error}") from error
        raise OSError(error.errno, error.strerror or os.strerror(error.errno), str(named)) from error
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def write_errors_named(path: str | os.PathLike, temporary: str | os.PathLike | None = None) -> Iterator[None]:
    """Around a write of `path` by any writer (torch, safetensors, accelerate, a plain `open`): an error is raised
    again as an OSError naming `path` when it is a write failure (`named_write_error`; others unchanged), after
    `temporary` (the writer's temporary file or folder), when given, is removed."""
    try:
        yield
    except BaseException as error:
        if temporary is not None:
            if os.path.isdir(temporary):
                shutil.rmtree(temporary, ignore_errors=True)
            elif os.path.lexists(temporary):
                os.unlink(temporary)
        named = named_write_error(error, path, temporary)
        if named is None or named is error:
            raise
        raise named from error


# Rust's io::Error text (safetensors: "I/O error: No space left on device (os error 28)")
_OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")
# torch.save's zip writer reports a failed write as a RuntimeError from these
_TORCH_WRITER_TEXT = ("PytorchStreamWriter", "inline_container.cc")


def named_write_error(error: BaseException, path: str | os.PathLike,
                      temporary: str | os.PathLike | None = None) -> OSError | None:
    """`error`, raised while writing `path`, as an OSError that names `path`; None when it is not an I/O error.

    A write or fsync on a full disk raises OSError(ENOSPC) naming no file, so the message would not say where:
    the same errno is returned naming `path` (also in place of `temporary`, the writer's own temporary file or
    folder, or a file inside it: it is removed by then). An OSError naming another file (a folder that could not be
    created) is returned as it is. Libraries that wrap
    the OS error are recognised by their text: safetensors' "(os error N)" gives errno N; torch's zip writer
    gives an OSError naming `path` and the free space of its disk (its message has no errno).
    """
    if isinstance(error, OSError):
        if error.filename is not None and not _inside(error.filename, temporary):
            return error
        if error.errno is None:
            return OSError(f"{path}: {error}")
        return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))
    if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
        return None
    text = str(error)
    found = _OS_ERROR_TEXT.search(text)
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(path))
    if isinstance(error, RuntimeError) and any(mark in text for mark in _TORCH_WRITER_TEXT):
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return OSError(f"{path}: write failed ({first}); {_free_space(path)} free on its disk")
    return None


def _inside(filename: Any, temporary: str | os.PathLike | None) -> bool:
    """Whether `filename` is `temporary` or a path inside it."""
    if temporary is None or not isinstance(filename, (str, os.PathLike)):
        return False
    name, temporary = Path(filename).absolute(), Path(temporary).absolute()
    return name == temporary or temporary in name.parents


def _free_space(path: str | os.PathLike) -> str:
    """Free bytes on the disk of `path` (its nearest existing folder), e.g. "0 B" or "1.2 GiB"; "unknown"."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 (H, W, 3) RGB or (H, W) L array."""
    import io

    if array.dtype != np.uint8:
        raise ValueError(f"PNG arrays must be uint8, got {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Atomically save a uint8 (H, W, 3) RGB or (H, W) L array as PNG."""
    atomic_write_bytes(path, png_bytes(array))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit RGB image as uint8 (H, W, 3).

    Only 8-bit RGB files are accepted (PIL modes "RGB", or "P" palettes without transparency, which
    decode losslessly to RGB). RGBA, gray, 16-bit and CMYK files raise `ImageFileError` naming the
    file: converting them silently would change what is scored.
    """
    image = _open(path)
    if image.mode == "P" and "transparency" not in image.info:
        image = image.convert("RGB")
    if image.mode != "RGB":
        raise ImageFileError(
            f"{path}: expected an 8-bit RGB image, got PIL mode {image.mode!r}; convert it to RGB first"
        )
    return np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)


def read_mask(path: str | os.PathLike, mask_hole_is_white: bool = True, binary_01: bool = False) -> np.ndarray:
    """Read a mask file as float32 (H, W) in {0, 1} with 1 = hole.

    The file is converted to 8-bit gray (RGB masks via PIL's "L" conversion) and binarised at 0.5 after
    /255 (>= 128 is white). `mask_hole_is_white=False` reads the MAT convention (white = keep) and inverts it;
    `binary_01=True` reads masks stored as 0/1 (the LaMa convention). See `read_mask_gray` for the checks.
    """
    return (read_mask_gray(path, mask_hole_is_white, binary_01) >= MASK_THRESHOLD).astype(np.float32)


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise
    except Exception as error:  # PIL raises several types for broken files
        raise ImageFileError(f"{path}: unreadable image file ({error})") from error
    return image


# A mask pixel is a hole when its gray level (oriented so that 255 = hole) is at least this: 128.
MASK_THRESHOLD = round(MASK_HOLE_FRACTION * 255)


def read_mask_stored(path: str | os.PathLike) -> np.ndarray:
    """The gray levels of a mask file as stored: uint8 (H, W), RGB converted by PIL's "L" conversion.

    16-bit and float masks raise `ImageFileError` naming the file.
    """
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise ImageFileError(f"{path}: mask mode {image.mode!r} (16-bit or float) is not supported; save it as 8-bit L")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def looks_binary_01(stored: np.ndarray) -> bool:
    """True for stored levels 0 and 1 only, with at least one 1: a 0/1 mask (the LaMa convention), which
    binarised at 128 has no white pixel at all."""
    return bool(stored.max(initial=0) == 1)


def orient_mask(stored: np.ndarray, path: str | os.PathLike, mask_hole_is_white: bool = True,
                binary_01: bool = False) -> np.ndarray:
    """Stored levels -> uint8 (H, W) with 255 = hole (the one rule every mask reader applies).

    A 0/1 mask read without `binary_01` raises `ImageFileError` ("looks like a 0/1 mask"), never read as a mask
    without a hole; with `binary_01` a level above 1 raises it (that file is not a 0/1 mask).
    """
    if binary_01:
        if stored.max(initial=0) > 1:
            raise ImageFileError(f"{path}: read as a 0/1 mask (--mask-binary-01) but it has gray levels up to "
                                 f"{int(stored.max())}; 0/1 masks hold only 0 and 1")
        stored = stored * np.uint8(255)
    elif looks_binary_01(stored):
        raise ImageFileError(f"{path}: looks like a 0/1 mask (gray levels 0 and 1 only, so no pixel reaches the "
                             f"hole threshold {MASK_THRESHOLD}): pass --mask-binary-01 (Python: mask_binary_01=True) "
                             "or convert it to 0/255")
    return stored if mask_hole_is_white else 255 - stored


def read_mask_gray(path: str | os.PathLike, mask_hole_is_white: bool = True, binary_01: bool = False) -> np.ndarray:
    """Read a mask file as uint8 (H, W) gray levels oriented so that 255 = hole (`orient_mask`'s checks).

    `read_mask` binarises this at >= 128 (0.5 after /255). The gray levels are kept for metrics that use the
    soft mask (the asuka boundary gradient).
    """
    return orient_mask(read_mask_stored(path), path, mask_hole_is_white, binary_01)
