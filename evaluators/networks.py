"""The networks that feed metrics (metric sources "lpips", "clip", "clip336", "dinov2", "inception", "detector",
"dreamsim"), one class each, in `SOURCES`.

A source splits its work like the scorer's data flow: `prepare` runs in the data-loader workers on one
`Decoded` sample (CPU preprocessing, picklable), `update` runs the network on a batch in the main process,
`finish` saves what the on-disk cache should keep. Ground-truth outputs (Inception features, CLIP hole
embeddings) come from the cache when the same dataset content, protocol and weights were scored before.
Networks are built once per process and key, so `misato run` loads each once for all its methods.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from evaluators.cache import FeatureCache, cache_key
from evaluators.pixel_metrics import Decoded
from evaluators.protocols import Protocol
from misato.data import Dataset
from misato.weights import ResolvedWeight

_NETWORKS: dict[tuple, Any] = {}
_MAX_NETWORKS = 6


def shared_network(key: tuple, build: Callable[[], Any]) -> Any:
    """A network built once per process and key (weights sha256 + device + settings); oldest dropped past 6."""
    if key not in _NETWORKS:
        while len(_NETWORKS) >= _MAX_NETWORKS:
            _NETWORKS.pop(next(iter(_NETWORKS)))
        _NETWORKS[key] = build()
    return _NETWORKS[key]


class Timer:
    """Seconds spent in network forwards (the benchmark's denominator)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, 0.0

    def run(self, fn: Callable, *args: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return out


def grouped(timer: Timer, fn: Callable, items: list[dict], *keys: str) -> list[torch.Tensor]:
    """Run `fn` on `keys` of `items`, stacking items of equal shape together; outputs in item order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        groups[tuple(tuple(item[k].shape) for k in keys)].append(position)
    outputs: list[torch.Tensor | None] = [None] * len(items)
    for positions in groups.values():
        stacked = [torch.stack([items[p][k] for p in positions]) for k in keys]
        result = timer.run(fn, *stacked)
        for row, position in enumerate(positions):
            outputs[position] = result[row]
    return outputs  # type: ignore[return-value]


class Source:
    """One network feeding metrics. Subclasses set `name` and implement the hooks below.

    Items: `prepare` returns a dict whose keys are prefixed with the source name; `update` reads them from
    the batch. `values()` returns per-image metric arrays (N,) in dataset order (empty for set sources).
    """

    name: ClassVar[str]

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        raise NotImplementedError

    def __init__(self, dataset: Dataset, protocol: Protocol, resolved: dict[str, ResolvedWeight],
                 device: torch.device, cache: FeatureCache) -> None:
        self.protocol, self.n = protocol, len(dataset)

    def _resolved(self, resolved: dict[str, ResolvedWeight]) -> tuple[ResolvedWeight, ...]:
        """The resolved files of `weight_keys(protocol)`, in that order (the one list of what a source loads)."""
        return tuple(resolved[key] for key in self.weight_keys(self.protocol))

    def prepare(self, sample: Decoded) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, timer: Timer, batch: list[dict], index: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once after the last batch."""

    def values(self) -> dict[str, np.ndarray]:
        return {}


class _CachedEmbedding(Source):
    """A network whose ground-truth outputs are cached on disk. `real` and `fake` are float32 (N, D) in dataset
    order; `real` is complete from the start on a cache hit, else filled batch by batch and saved by `finish`."""

    network: Any

    def _open_cache(self, dataset: Dataset, cache: FeatureCache, key: str) -> None:
        self.cache, self.key, self.stems = cache, key, [s.stem for s in dataset.samples]
        self.real: np.ndarray | None = cache.load(key, self.stems)
        self.cached = self.real is not None
        self.fake: np.ndarray | None = None

    def prepare(self, sample: Decoded) -> dict[str, Any]:
        pre = self._pre
        out = {f"{self.name}_fake": self._apply(pre, sample.scored, sample)}
        if not self.cached:
            out[f"{self.name}_real"] = self._apply(pre, sample.gt, sample)
        return out

    @staticmethod
    def _apply(pre: Callable, image: np.ndarray, sample: Decoded) -> torch.Tensor:
        return pre(image)

    def update(self, timer: Timer, batch: list[dict], index: np.ndarray) -> None:
        self.fake = self._store(self.fake, timer, batch, index, f"{self.name}_fake")
        if not self.cached:
            self.real = self._store(self.real, timer, batch, index, f"{self.name}_real")

    def _store(self, array: np.ndarray | None, timer: Timer, batch: list[dict], index: np.ndarray, item: str) -> np.ndarray:
        rows = torch.stack(grouped(timer, self.network.forward, batch, item)).numpy()
        if array is None:
            array = np.zeros((len(self.stems), rows.shape[1]), np.float32)
        array[index] = rows
        return array

    def finish(self) -> None:
        if not self.cached:
            self.cache.save(self.key, self.stems, self.real)

    def __getstate__(self) -> dict:
        # Workers need only the preprocessing, never the network or the arrays.
        return {"name": self.name, "cached": self.cached, "_pre": self._pre}


class InceptionFeatures(_CachedEmbedding):
    """The protocol's Inception features (`evaluators.features.EXTRACTORS`), for the set metrics."""

    name = "inception"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from evaluators.features import EXTRACTORS

        return (EXTRACTORS[protocol.feature_net].weight_key,)

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from evaluators.features import EXTRACTORS

        super().__init__(dataset, protocol, resolved, device, cache)
        extractor = EXTRACTORS[protocol.feature_net]
        (weight,) = self._resolved(resolved)
        self.network = shared_network((extractor.key, weight.path, weight.sha256, str(device)),
                                      lambda: extractor(weight, device))
        self._pre = self.network.preprocess()
        self._open_cache(dataset, cache, cache_key(dataset.content_hash(), protocol.name, protocol.version,
                                                   extractor.key, weight.sha256))


class ClipHoleEmbeddings(_CachedEmbedding):
    """CLIP image embeddings of the hole region (`evaluators.clip_score`); per-image value `clip_score`."""

    name = "clip"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from misato.clip import clip_weight_key

        return (clip_weight_key(protocol.clip_model),)

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from evaluators.clip_score import ClipEmbedder

        super().__init__(dataset, protocol, resolved, device, cache)
        (weight,) = self._resolved(resolved)
        self.network = shared_network(
            ("clip", protocol.clip_model, protocol.clip_quick_gelu, weight.path, weight.sha256, str(device)),
            lambda: ClipEmbedder(protocol.clip_model, weight, device, protocol.clip_quick_gelu))
        self._pre = self.network.preprocess()
        self._open_cache(dataset, cache, cache_key(dataset.content_hash(), protocol.name, protocol.version,
                                                   "clip-hole-" + protocol.clip_model, weight.sha256))

    @staticmethod
    def _apply(pre: Callable, image: np.ndarray, sample: Decoded) -> torch.Tensor:
        return pre(image, sample.hole)

    def values(self) -> dict[str, np.ndarray]:
        return {"clip_score": np.sum(self.fake * self.real, axis=1).astype(np.float64)}


class ClipImageEmbeddings(_CachedEmbedding):
    """CLIP embeddings of the whole image for `cmmd` (`evaluators.cmmd`: the reference's model, ViT-L/14-336, and
    its resize); set-metric features, no per-image value."""

    name = "clip336"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from misato.clip import clip_weight_key

        return (clip_weight_key(protocol.cmmd_clip_model, "cmmd_clip_model"),)

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from evaluators.clip_score import ClipEmbedder
        from evaluators.cmmd import WholeImage

        super().__init__(dataset, protocol, resolved, device, cache)
        (weight,) = self._resolved(resolved)
        self.network = shared_network(
            ("clip", protocol.cmmd_clip_model, True, weight.path, weight.sha256, str(device)),
            lambda: ClipEmbedder(protocol.cmmd_clip_model, weight, device, True))
        self._pre = WholeImage(self.network.image_size, self.network.mean, self.network.std)
        self._open_cache(dataset, cache, cache_key(dataset.content_hash(), protocol.name, protocol.version,
                                                   "clip-image-" + protocol.cmmd_clip_model, weight.sha256))


class Dinov2Embeddings(_CachedEmbedding):
    """DINOv2 CLS features of the whole image for `fd_dinov2` (`evaluators.dinov2`)."""

    name = "dinov2"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from evaluators.dinov2 import CONFIG_KEY, MODEL_KEY

        return (CONFIG_KEY, MODEL_KEY)

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from evaluators.dinov2 import Dinov2Features

        super().__init__(dataset, protocol, resolved, device, cache)
        config, weight = self._resolved(resolved)
        self.network = shared_network(
            ("dinov2", config.path, config.sha256, weight.path, weight.sha256, protocol.dinov2_size, str(device)),
            lambda: Dinov2Features(config, weight, device, protocol.dinov2_size))
        self._pre = self.network.preprocess()
        self._open_cache(dataset, cache, cache_key(dataset.content_hash(), protocol.name, protocol.version,
                                                   f"dinov2-{config.sha256[:8]}-{protocol.dinov2_size}", weight.sha256))


class DreamSimPairs(Source):
    """DreamSim between the scored image and the ground truth (`evaluators.dreamsim_metric`), on the hole's bounding
    box and on the whole image; per-image `dreamsim` and `dreamsim_image`."""

    name = "dreamsim"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from evaluators.dreamsim_metric import ARCHIVE_KEY, DINO_KEY

        return (ARCHIVE_KEY, DINO_KEY)

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from evaluators.dreamsim_metric import DreamSimDistance, DreamSimInputs

        super().__init__(dataset, protocol, resolved, device, cache)
        archive, dino = self._resolved(resolved)
        self.network = shared_network(
            ("dreamsim", archive.path, archive.sha256, dino.path, dino.sha256, str(device)),
            lambda: DreamSimDistance(archive, dino, device))
        self._pre = DreamSimInputs(protocol.dreamsim_size)
        self.crop, self.image = np.full(self.n, np.nan), np.full(self.n, np.nan)

    def prepare(self, sample: Decoded) -> dict[str, Any]:
        from evaluators.dreamsim_metric import hole_box

        box = hole_box(sample.hole)
        return {"dreamsim_fake_crop": self._pre(sample.scored[box]), "dreamsim_real_crop": self._pre(sample.gt[box]),
                "dreamsim_fake_image": self._pre(sample.scored), "dreamsim_real_image": self._pre(sample.gt)}

    def update(self, timer: Timer, batch: list[dict], index: np.ndarray) -> None:
        fn = self.network.distance
        for values, kind in ((self.crop, "crop"), (self.image, "image")):
            values[index] = [float(v) for v in grouped(timer, fn, batch, f"dreamsim_fake_{kind}",
                                                       f"dreamsim_real_{kind}")]

    def values(self) -> dict[str, np.ndarray]:
        return {"dreamsim": self.crop, "dreamsim_image": self.image}

    def __getstate__(self) -> dict:
        return {"name": self.name, "_pre": self._pre}


class LpipsPairs(Source):
    """LPIPS between the scored image and the ground truth (`evaluators.lpips_metric`); per-image `lpips`."""

    name = "lpips"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from misato.lpips_network import lpips_weight_keys

        return lpips_weight_keys(protocol.lpips_net)

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from misato.lpips_network import build_lpips
        from misato.devices import to_inference_layout

        super().__init__(dataset, protocol, resolved, device, cache)
        backbone, lin = self._resolved(resolved)
        self.model = shared_network(
            ("lpips", protocol.lpips_net, backbone.path, backbone.sha256, lin.path, lin.sha256, str(device)),
            lambda: to_inference_layout(build_lpips(backbone, lin, protocol.lpips_net), device))
        self.distances = np.full(self.n, np.nan)

    def prepare(self, sample: Decoded) -> dict[str, Any]:
        # CHW views of the decoded arrays: `grouped` stacks them into the batch, their one copy
        chw = lambda image: torch.from_numpy(image).permute(2, 0, 1)  # noqa: E731
        return {"lpips_scored": chw(sample.scored), "lpips_gt": chw(sample.gt)}

    def update(self, timer: Timer, batch: list[dict], index: np.ndarray) -> None:
        from evaluators.lpips_metric import lpips_distance

        value_range = self.protocol.lpips_value_range
        fn = lambda a, b: lpips_distance(self.model, a, b, value_range)  # noqa: E731
        self.distances[index] = [float(v) for v in grouped(timer, fn, batch, "lpips_scored", "lpips_gt")]

    def values(self) -> dict[str, np.ndarray]:
        return {"lpips": self.distances}

    def __getstate__(self) -> dict:
        return {"name": self.name}


class HallucinationDetections(Source):
    """The protocol's detector (`evaluators.detection.DETECTORS`) on the scored image and on the ground truth, in
    one call per batch; per-image `hallucination` and `hallucination_area` (`evaluators.detection`)."""

    name = "detector"

    @classmethod
    def weight_keys(cls, protocol: Protocol) -> tuple[str, ...]:
        from evaluators.detection import get_detector

        return get_detector(protocol.detector).weight_keys

    def __init__(self, dataset, protocol, resolved, device, cache) -> None:
        from evaluators.detection import get_detector

        super().__init__(dataset, protocol, resolved, device, cache)
        detector = get_detector(protocol.detector)
        files = {key: resolved[key] for key in detector.weight_keys}
        self.detector = shared_network(
            ("detector", detector.key, protocol.detector_score, *((w.path, w.sha256) for w in files.values()),
             str(device)),
            lambda: detector(files, device, protocol.detector_score))
        self.counts, self.areas = np.full(self.n, np.nan), np.full(self.n, np.nan)

    def prepare(self, sample: Decoded) -> dict[str, Any]:
        chw = lambda image: torch.from_numpy(image).permute(2, 0, 1).contiguous()  # noqa: E731
        return {"detector_scored": chw(sample.scored), "detector_gt": chw(sample.gt), "detector_hole": sample.hole}

    def update(self, timer: Timer, batch: list[dict], index: np.ndarray) -> None:
        from evaluators.detection import hallucination_values

        images = [item["detector_scored"] for item in batch] + [item["detector_gt"] for item in batch]
        found = timer.run(self.detector.detect, images)
        for row, item in enumerate(batch):
            self.counts[index[row]], self.areas[index[row]] = hallucination_values(
                found[row], found[len(batch) + row], item["detector_hole"], self.protocol)

    def values(self) -> dict[str, np.ndarray]:
        return {"hallucination": self.counts, "hallucination_area": self.areas}

    def __getstate__(self) -> dict:
        return {"name": self.name}


SOURCES: dict[str, type[Source]] = {cls.name: cls for cls in (
    InceptionFeatures, ClipHoleEmbeddings, ClipImageEmbeddings, Dinov2Embeddings, LpipsPairs, HallucinationDetections,
    DreamSimPairs)}
