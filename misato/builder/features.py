"""Image features for the MISATO selection, cached per source in resumable shards.

Two extractors (`FEATURE_KINDS`):
    clip     open_clip image tower (default ViT-L-14 with OpenAI weights, the paper's "CLIP visual model";
             which CLIP the paper used is unstated), `encode_image`, L2-normalised.
    pixels   NOT the paper's features: a weight-free stand-in for offline use, a 16x16 thumbnail of the
             centre square (768 values) next to a joint 8x8x8 RGB histogram, each L2-normalised, then the
             concatenation L2-normalised.

Both map a PIL RGB image to float32 features of unit L2 norm: `transform` runs in DataLoader workers,
`encode` on batches of (B, C, H, W) float32 tensors returns a (B, D) float32 numpy array.

Cache (`FeatureCache`): ``CACHE/<name>/<extractor key>-<source fingerprint[:16]>/`` holds ``index.json``
and ``shard-00000.npy``...; a shard is rows ``[i*S, (i+1)*S)`` of the sorted key list. Shards and the index
are written atomically, each shard's sha256 is recorded, and a rerun computes only the shards that are
missing or damaged. The folder name carries the extractor (model + weight hash) and the exact key list,
so one cache can never serve another protocol or another listing (as in clean-fid's cached statistics).
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from misato.clip import CLIP_PRESETS, clip_weight_key, load_clip
from misato.io import atomic_write_bytes, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 1024


class FeatureExtractor(Protocol):
    """PIL RGB image -> unit-norm float32 feature; `key` names the protocol in cache folders."""

    key: str
    dim: int

    def transform(self, image: Image.Image) -> "torch.Tensor":  # noqa: F821
        """One image -> float32 (C, H, W) tensor (runs in DataLoader workers)."""

    def encode(self, batch: "torch.Tensor") -> np.ndarray:  # noqa: F821
        """(B, C, H, W) float32 -> (B, D) float32 numpy, each row of unit L2 norm."""

    def record(self) -> dict[str, Any]:
        """JSON-able provenance (model, weights and their hash, preprocessing)."""


def _l2_normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def centre_square(image: Image.Image) -> Image.Image:
    """The centred square of side min(W, H) (left/top rounded down)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


@dataclass
class PixelFeatures:
    """Weight-free features (NOT the paper's): thumbnail pixels + joint colour histogram, L2-normalised."""

    side: int = 16
    bins: int = 8
    key: str = field(init=False)
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.key = f"pixels-v1-s{self.side}-b{self.bins}"
        self.dim = 3 * self.side * self.side + self.bins**3

    def transform(self, image: Image.Image) -> "torch.Tensor":  # noqa: F821
        import torch

        square = centre_square(image.convert("RGB"))
        thumb = np.asarray(square.resize((self.side, self.side), Image.BOX), dtype=np.float32) / 255.0
        # Histogram on a 64x64 reduction: the colour distribution, cheap and independent of the source size.
        small = np.asarray(square.resize((64, 64), Image.BOX), dtype=np.int64) * self.bins // 256
        flat = (small[..., 0] * self.bins + small[..., 1]) * self.bins + small[..., 2]
        hist = np.bincount(flat.ravel(), minlength=self.bins**3).astype(np.float32)
        parts = [thumb.ravel() - thumb.mean(), np.sqrt(hist)]
        parts = [p / max(float(np.linalg.norm(p)), 1e-12) for p in parts]
        return torch.from_numpy(np.concatenate(parts).astype(np.float32))

    def encode(self, batch: "torch.Tensor") -> np.ndarray:  # noqa: F821
        return _l2_normalise(batch.reshape(batch.shape[0], -1).numpy().astype(np.float32))

    def record(self) -> dict[str, Any]:
        return {"kind": "pixels", "key": self.key, "dim": self.dim,
                "note": "weight-free stand-in, NOT the paper's CLIP features",
                "thumbnail": f"centre square, BOX to {self.side}x{self.side}, mean removed",
                "histogram": f"joint RGB {self.bins}^3 on a 64x64 BOX reduction, sqrt counts"}


class ClipFeatures:
    """open_clip image features, L2-normalised.

    `weights` is a checkpoint file passed to open_clip as `pretrained=`; None resolves the preset's
    registered key through `misato.weights.resolve` (default ViT-L-14 -> "clip-vit-l-14-openai").
    `quick_gelu` None takes the preset's value (False for models without a preset).
    """

    def __init__(self, model: str = "ViT-L-14", weights: str | os.PathLike | None = None,
                 device: str = "cpu", quick_gelu: bool | None = None, precision: str = "fp32") -> None:
        from misato.weights import file_sha256, resolve

        preset = CLIP_PRESETS.get(model)
        self.weights_record: dict[str, Any]
        if weights is None:
            resolved = resolve(clip_weight_key(model, "CLIP model"))
            path, self.weights_record = resolved.path, resolved.record()
        else:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: CLIP checkpoint not found")
            self.weights_record = {"key": None, "path": str(path), "sha256": file_sha256(path)}
        if quick_gelu is None:
            quick_gelu = preset.quick_gelu if preset else False
        self.model_name, self.quick_gelu, self.precision = model, bool(quick_gelu), precision
        self.device = device
        self.model, self.preprocess = load_clip(model, path, self.quick_gelu, device, precision)
        self.dim = int(self.model.visual.output_dim)
        gelu = "-quickgelu" if self.quick_gelu else ""
        self.key = f"clip-{model}{gelu}-{self.weights_record['sha256'][:12]}-{precision}"

    def transform(self, image: Image.Image) -> "torch.Tensor":  # noqa: F821
        return self.preprocess(image.convert("RGB"))

    def encode(self, batch: "torch.Tensor") -> np.ndarray:  # noqa: F821
        import torch

        with torch.inference_mode():
            features = self.model.encode_image(batch.to(self.device))
        return _l2_normalise(features.float().cpu().numpy())

    def record(self) -> dict[str, Any]:
        return {"kind": "clip", "key": self.key, "model": self.model_name, "quick_gelu": self.quick_gelu,
                "precision": self.precision, "dim": self.dim, "weights": self.weights_record,
                "preprocess": repr(self.preprocess)}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers only need `transform`; never pickle the network into them.
        state = dict(self.__dict__)
        state["model"] = None
        return state


FEATURE_KINDS: dict[str, Callable[..., FeatureExtractor]] = {"clip": ClipFeatures, "pixels": PixelFeatures}


class _SourceImages:
    """torch Dataset over `keys` of a source, applying the extractor's transform."""

    def __init__(self, source: Any, keys: list[str], transform: Callable[[Image.Image], Any]) -> None:
        self.source, self.keys, self.transform = source, keys, transform

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, item: int) -> Any:
        return self.transform(self.source.open(self.keys[item]))


@dataclass
class FeatureCache:
    """Resumable shard cache of one source's features under one extractor (see the module docstring)."""

    folder: Path
    keys: list[str]
    extractor_record: dict[str, Any]
    source_record: dict[str, Any]
    shard_size: int = DEFAULT_SHARD_SIZE

    @classmethod
    def for_source(cls, cache_root: str | os.PathLike, name: str, source: Any, extractor: FeatureExtractor,
                   shard_size: int = DEFAULT_SHARD_SIZE) -> "FeatureCache":
        folder = Path(cache_root) / name / f"{extractor.key}-{source.fingerprint()[:16]}"
        return cls(folder, source.keys(), extractor.record(), source.record(), shard_size)

    @property
    def n_shards(self) -> int:
        return (len(self.keys) + self.shard_size - 1) // self.shard_size

    def shard_path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.npy"

    def _read_index(self) -> dict[str, Any]:
        path = self.folder / "index.json"
        if not path.is_file():
            return {}
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
        if index.get("n") != len(self.keys) or index.get("shard_size") != self.shard_size:
            log.warning("%s: index written for another listing or shard size; recomputing", path)
            return {}
        return index

    def _write_index(self, shards: dict[str, Any]) -> None:
        atomic_write_json(self.folder / "index.json", {
            "n": len(self.keys), "shard_size": self.shard_size, "extractor": self.extractor_record,
            "source": self.source_record, "shards": dict(sorted(shards.items())),
        })

    def done_shards(self) -> dict[str, Any]:
        """Shards whose file exists and matches its recorded sha256."""
        shards = self._read_index().get("shards", {})
        return {name: entry for name, entry in shards.items()
                if self.shard_path(int(name)).is_file() and sha256_file(self.shard_path(int(name))) == entry["sha256"]}

    def compute(self, source: Any, extractor: FeatureExtractor, batch_size: int = 32, workers: int = 0,
                progress: bool = True) -> np.ndarray:
        """Fill the missing shards and return all features, float32 (N, D) in key order."""
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        shards = self.done_shards()
        todo = [s for s in range(self.n_shards) if f"{s:05d}" not in shards]
        if todo:
            log.info("%s: extracting %d of %d shards", self.folder, len(todo), self.n_shards)
        bar = tqdm(total=sum(min(self.shard_size, len(self.keys) - s * self.shard_size) for s in todo),
                   desc=f"features {self.folder.parent.name}", unit="img", disable=not progress or not todo)
        for shard in todo:
            keys = self.keys[shard * self.shard_size:(shard + 1) * self.shard_size]
            loader = DataLoader(_SourceImages(source, keys, extractor.transform), batch_size=batch_size,
                                num_workers=workers, shuffle=False)
            rows = []
            for batch in loader:
                rows.append(extractor.encode(batch))
                bar.update(len(batch))
            array = np.concatenate(rows).astype(np.float32)
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            atomic_write_bytes(self.shard_path(shard), buffer.getvalue())
            shards[f"{shard:05d}"] = {"rows": len(keys), "sha256": sha256_file(self.shard_path(shard))}
            self._write_index(shards)
        bar.close()
        if not todo and not (self.folder / "index.json").is_file():
            self._write_index(shards)
        return self.load()

    def load(self) -> np.ndarray:
        """All shards concatenated, float32 (N, D); raises if any shard is missing."""
        shards = self.done_shards()
        missing = [s for s in range(self.n_shards) if f"{s:05d}" not in shards]
        if missing:
            raise ValueError(f"{self.folder}: {len(missing)} feature shard(s) missing or damaged, e.g. {missing[:3]}")
        parts = [np.load(self.shard_path(s), allow_pickle=False) for s in range(self.n_shards)]
        features = np.concatenate(parts)
        if features.shape[0] != len(self.keys):
            raise ValueError(f"{self.folder}: {features.shape[0]} feature rows for {len(self.keys)} images")
        return features


def extract_features(source: Any, extractor: FeatureExtractor, cache_root: str | os.PathLike, name: str,
                     batch_size: int = 32, workers: int = 0, shard_size: int = DEFAULT_SHARD_SIZE,
                     progress: bool = True) -> tuple[np.ndarray, FeatureCache]:
    """Features of every image of `source`, float32 (N, D) unit rows in `source.keys()` order, cached."""
    cache = FeatureCache.for_source(cache_root, name, source, extractor, shard_size)
    return cache.compute(source, extractor, batch_size=batch_size, workers=workers, progress=progress), cache


def make_extractor(kind: str, **options: Any) -> FeatureExtractor:
    """Extractor by name from `FEATURE_KINDS` ("clip" options: model, weights, device, quick_gelu)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")
    if kind == "pixels":
        log.warning("pixel features are a weight-free stand-in, NOT the paper's CLIP selection")
    return FEATURE_KINDS[kind](**options)
