"""On-disk caches, keyed so one protocol's cache can never serve another.

Ground-truth features: key = dataset content hash + protocol name/version + extractor key + weight sha256
(clean-fid style). Scoring passes (`evaluators.scoring`): every array one pass over a shard produced, keyed by the
sha256 of everything that decides them (shard content, prediction files, protocol, metrics, weights), so a finished
shard is never redone. Files live in `misato.defaults.features_dir()` ($MISATO_CACHE_DIR/features), never inside
site-packages; writes are atomic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from misato.defaults import features_dir
from misato.io import atomic_write_bytes


def cache_key(dataset_hash: str, protocol: str, version: int, extractor: str, weight_sha256: str) -> str:
    return f"{dataset_hash[:20]}_{protocol}-v{version}_{extractor}-{weight_sha256[:16]}"


class FeatureCache:
    """Stores (stems, features) arrays per key as .npz."""

    def __init__(self, folder: Path | None = None, enabled: bool = True):
        self.folder = folder or features_dir()
        self.enabled = enabled

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str, stems: list[str]) -> np.ndarray | None:
        """Features (N, D) in the order of `stems`, or None when absent, disabled or not matching."""
        data = self.load_arrays(key)
        if data is None or list(data["stems"]) != stems:
            return None
        return data["features"]

    def save(self, key: str, stems: list[str], features: np.ndarray) -> None:
        self.save_arrays(key, {"stems": np.array(stems), "features": features.astype(np.float32)})

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """Every array saved under `key` by `save_arrays`, or None when absent or disabled."""
        path = self.path(key)
        if not self.enabled or not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def save_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self.path(key), buffer.getvalue())
