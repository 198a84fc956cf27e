"""On-disk caches, keyed so one protocol's cache can never serve another.

Ground-truth features: key = dataset content hash + protocol name/version + extractor key + weight sha256
(clean-fid style). Scoring passes (`evaluators.scoring`): every array one pass over a shard produced, keyed by the
sha256 of everything that decides them (shard content, prediction files, protocol, metrics, weights), so a finished
shard is never redone. Files live in `misato.defaults.features_dir()` ($MISATO_CACHE_DIR/features), never inside
site-packages; writes are atomic.

Integrity: each file stores the sha256 of its arrays (`HASH_ARRAY`: names, dtypes, shapes and bytes). A file that
does not load (truncated, not a zip, a damaged member) or whose arrays do not match its hash (or that has none) is
removed with a warning naming it, and the caller recomputes what it held. A cache file that cannot be written (a
full disk, no permission) is a warning too: the cache only saves time, the result never depends on it.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from misato.defaults import features_dir
from misato.io import atomic_write_bytes

log = logging.getLogger(__name__)

HASH_ARRAY = "_sha256"  # the name of the stored hash inside each .npz


def cache_key(dataset_hash: str, protocol: str, version: int, extractor: str, weight_sha256: str) -> str:
    return f"{dataset_hash[:20]}_{protocol}-v{version}_{extractor}-{weight_sha256[:16]}"


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Hex sha256 of named arrays: every name, dtype, shape and the C-order bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(memoryview(array).cast("B") if array.size else b"")
    return digest.hexdigest()


class CorruptCacheFile(ValueError):
    """A cache file whose arrays are not what was written."""


class FeatureCache:
    """Stores (stems, features) arrays per key as .npz."""

    def __init__(self, folder: Path | None = None, enabled: bool = True):
        self.folder = folder or features_dir()
        self.enabled = enabled

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str, stems: list[str]) -> np.ndarray | None:
        """Features float32 (N, D) in the order of `stems`, or None when absent, disabled, corrupt (removed) or
        not matching."""
        data = self.load_arrays(key)
        if data is None or list(data["stems"]) != stems:
            return None
        return data["features"]

    def save(self, key: str, stems: list[str], features: np.ndarray) -> None:
        self.save_arrays(key, {"stems": np.array(stems), "features": features.astype(np.float32)})

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """Every array saved under `key` by `save_arrays`, or None when absent, disabled or corrupt (then the file
        is removed, with a warning naming it, so the caller recomputes and saves it again)."""
        path = self.path(key)
        if not self.enabled or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            stored = arrays.pop(HASH_ARRAY, None)
            if stored is None:
                raise CorruptCacheFile("no stored hash (written by an older version, or not by misato)")
            if str(stored) != arrays_sha256(arrays):
                raise CorruptCacheFile("its arrays do not match their stored sha256")
        except FileNotFoundError:  # removed by another process since the check above
            return None
        # A damaged .npz surfaces as one of several types (zipfile.BadZipFile, ValueError, EOFError, OSError,
        # struct.error, zlib.error, ...); whatever it is, the entry is unusable and only a recomputation is right.
        except Exception as error:  # noqa: BLE001
            self._discard(path, error)
            return None
        return arrays

    def save_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write `arrays` and their sha256 atomically; a failed write is a warning naming the file."""
        if not self.enabled:
            return
        if HASH_ARRAY in arrays:
            raise ValueError(f"{HASH_ARRAY!r} is the cache's own array name")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{HASH_ARRAY: np.array(arrays_sha256(arrays))})
        try:
            atomic_write_bytes(self.path(key), buffer.getvalue())
        except OSError as error:
            log.warning("%s: feature-cache file not written (%s); the result is complete without it, the next "
                        "run recomputes it", self.path(key), error.strerror or error)

    @staticmethod
    def _discard(path: Path, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        try:
            path.unlink(missing_ok=True)
            done = "removed"
        except OSError as unlink_error:
            done = f"could not be removed ({unlink_error.strerror})"
        log.warning("%s: corrupt or outdated feature-cache file (%s); %s, recomputing", path, reason, done)
