"""Score a folder of predictions against a dataset: one decode pass feeds every metric.

Data flow: data-loader workers read ground truth, mask and prediction once, composite them (evaluators.
composite), compute the pixel metrics and run every network's CPU preprocessing; the main process batches
the network forwards on the chosen device. Ground-truth features come from the on-disk cache when the same
dataset content, protocol and weights were scored before.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from evaluators.cache import FeatureCache, cache_key
from evaluators.clip_score import ClipEmbedder
from misato.composite import composite_uint8
from evaluators.features import EXTRACTORS
from evaluators.functional.frechet import GaussianStats, fid_from_stats
from evaluators.functional.ids import inception_discriminative_scores
from evaluators.functional.kid import kernel_inception_distance
from evaluators.functional.pixel import PSNR_VARIANTS, SSIM_VARIANTS, boundary_gradient_error
from evaluators.inputs import check_inputs
from evaluators.lpips_metric import build_lpips, lpips_distance
from evaluators.protocols import Protocol, get_protocol
from misato.data import Dataset
from misato.defaults import PROTOCOL, SCORE_BATCH_SIZE
from misato.environment import git_state, package_versions, utc_now
from misato.io import atomic_write_json, atomic_write_text, read_mask_gray, read_rgb
from misato.weights import ResolvedWeight, WeightsNotFoundError, fix_text, resolve

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
METRICS: tuple[str, ...] = ("lpips", "fid", "u_ids", "p_ids", "kid", "psnr", "ssim", "grad_error", "clip_score")
PER_IMAGE: tuple[str, ...] = ("lpips", "psnr", "ssim", "grad_error", "clip_score")
HIGHER_IS_BETTER: dict[str, bool] = {
    "lpips": False, "fid": False, "u_ids": True, "p_ids": True, "kid": False,
    "psnr": True, "ssim": True, "grad_error": False, "clip_score": True,
}
INCEPTION_METRICS = ("fid", "u_ids", "p_ids", "kid")


@dataclass
class ScoreConfig:
    """Options of one scoring run (the CLI flags of `misato score` map one to one).

    metrics: subset of METRICS; None = all.
    device: "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    paste_back: score `pred*hole + gt*(1-hole)` (default) or the raw predictions.
    weights: explicit weight paths by key (highest priority in misato.weights.resolve).
    strict: missing weights raise instead of marking the metric unavailable.
    allow_degenerate_masks: score samples whose mask is empty or full (counted in the result) instead of refusing.
    """

    protocol: str = PROTOCOL
    metrics: tuple[str, ...] | None = None
    device: str = "auto"
    batch_size: int = SCORE_BATCH_SIZE
    num_workers: int = 0
    paste_back: bool = True
    weights: dict[str, str] = field(default_factory=dict)
    allow_download: bool = False
    cache_dir: str | None = None
    use_cache: bool = True
    strict: bool = False
    allow_degenerate_masks: bool = False

    def selected(self) -> tuple[str, ...]:
        chosen = tuple(self.metrics or METRICS)
        unknown = [m for m in chosen if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        return chosen


@dataclass
class ScoreResult:
    record: dict[str, Any]
    json_path: Path
    csv_path: Path


def result_stem(method: str, dataset: str, protocol: str) -> str:
    """File stem `<method>__<dataset>__<protocol>` with unsafe characters replaced."""
    safe = lambda text: re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"  # noqa: E731
    return f"{safe(method)}__{safe(dataset)}__{safe(protocol)}"


def predictions_folder(path: str | Path) -> Path:
    """The folder holding the prediction files: `path` itself, or `path/raw` for a `misato inpaint` output
    folder (raw outputs; the scorer composites them itself, so paste-back and raw scoring both start there)."""
    path = Path(path)
    if (path / "manifest.json").is_file() and (path / "raw").is_dir():
        return path / "raw"
    return path


def _check_out_dir(out_dir: Path) -> None:
    """Fail before scoring when the result folder cannot be written (a file, or no write permission), without
    creating anything: the folder (or its nearest existing parent) must be a writable folder."""
    existing = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out_dir}: this user cannot write in {existing}")


def resolve_device(device: str) -> torch.device:
    """The device to score on: "auto" = CUDA when available, else the named device, checked (no fallback)."""
    from misato.devices import check_device

    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def metric_weight_keys(metric: str, protocol: Protocol) -> tuple[str, ...]:
    """Weight files a metric needs under a protocol (empty for the weight-free pixel metrics)."""
    if metric in INCEPTION_METRICS:
        return (EXTRACTORS[protocol.feature_net].weight_key,)
    if metric == "lpips":
        return ("alexnet-torchvision", "lpips-alex-lin")
    if metric == "clip_score":
        return ("clip-vit-l-14-openai",)
    return ()


def resolve_metric_weights(
    metrics: tuple[str, ...], protocol: Protocol, config: ScoreConfig
) -> tuple[dict[str, ResolvedWeight], dict[str, str]]:
    """Resolve every needed file; returns (resolved by key, reason by unavailable metric)."""
    resolved: dict[str, ResolvedWeight] = {}
    missing: dict[str, str] = {}
    for key in sorted({k for m in metrics for k in metric_weight_keys(m, protocol)}):
        try:
            resolved[key] = resolve(key, config.weights.get(key), config.allow_download)
        except WeightsNotFoundError as error:
            if config.strict:
                raise
            spec = error.spec
            missing[key] = f"needs {key} ({spec.filename}): {fix_text(spec)}"
    unavailable = {}
    for metric in metrics:
        lacking = [k for k in metric_weight_keys(metric, protocol) if k in missing]
        if lacking:
            unavailable[metric] = "; ".join(missing[k] for k in lacking)
    return resolved, unavailable


class _Items(torch.utils.data.Dataset):
    """Decodes one sample (ground truth, mask, prediction) and prepares every metric's input from it."""

    def __init__(self, dataset: Dataset, predictions: list[Path], protocol: Protocol, paste_back: bool,
                 pixel_metrics: tuple[str, ...], want_pair: bool,
                 feature_pre: Callable | None, feature_real: bool, clip_pre: Callable | None, clip_real: bool):
        self.samples, self.predictions = dataset.samples, predictions
        self.hole_is_white = dataset.mask_hole_is_white
        self.protocol, self.paste_back, self.pixel_metrics, self.want_pair = protocol, paste_back, pixel_metrics, want_pair
        self.feature_pre, self.feature_real, self.clip_pre, self.clip_real = feature_pre, feature_real, clip_pre, clip_real

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        gt = read_rgb(sample.image_path)
        pred = read_rgb(self.predictions[index])
        gray = read_mask_gray(sample.mask_path, self.hole_is_white)
        hole = (gray >= round(self.protocol.mask_threshold * 255)).astype(np.float32)
        scored = composite_uint8(pred, gt, hole) if self.paste_back else pred
        out: dict[str, Any] = {"index": index}
        if "psnr" in self.pixel_metrics:
            out["psnr"] = PSNR_VARIANTS[self.protocol.psnr](scored, gt)
        if "ssim" in self.pixel_metrics:
            out["ssim"] = SSIM_VARIANTS[self.protocol.ssim](scored, gt)
        if "grad_error" in self.pixel_metrics:
            if self.protocol.grad_soft_mask and self.paste_back:
                soft = gray.astype(np.float64)[..., None] / 255.0
                result = pred * soft + gt * (1.0 - soft)  # float64, unrounded, as cal_grad.py
            else:
                result = scored
            out["grad_error"] = boundary_gradient_error(result, gt, gray)
        if self.want_pair:
            out["scored"] = torch.from_numpy(scored).permute(2, 0, 1).contiguous()
            out["gt"] = torch.from_numpy(gt).permute(2, 0, 1).contiguous()
        if self.feature_pre is not None:
            out["feat_fake"] = self.feature_pre(scored)
            if self.feature_real:
                out["feat_real"] = self.feature_pre(gt)
        if self.clip_pre is not None:
            out["clip_fake"] = self.clip_pre(scored, hole)
            if self.clip_real:
                out["clip_real"] = self.clip_pre(gt, hole)
        return out


_NETWORKS: dict[tuple, Any] = {}
_MAX_NETWORKS = 6


def _network(key: tuple, build: Callable[[], Any]) -> Any:
    """Networks built once per process and key (weights sha256 + device + settings), so scoring several
    methods in one process (`misato run`) loads each network once. Oldest entries are dropped past 6."""
    if key not in _NETWORKS:
        while len(_NETWORKS) >= _MAX_NETWORKS:
            _NETWORKS.pop(next(iter(_NETWORKS)))
        _NETWORKS[key] = build()
    return _NETWORKS[key]


def _keep_list(batch: list) -> list:
    return batch


class _Timer:
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


def _grouped(timer: _Timer, fn: Callable, items: list[dict], *keys: str) -> list[torch.Tensor]:
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


class _CachedEmbedding:
    """A network whose ground-truth outputs are cached on disk (Inception features, CLIP hole embeddings).

    Each batch adds the predictions' rows; the ground truth's rows are computed only on a cache miss and
    saved by `finish`. Arrays are float32 (N, D) in dataset order.
    """

    def __init__(self, network: Any, key: str, cache: FeatureCache, stems: list[str], fake_item: str, real_item: str):
        self.network, self.key, self.cache, self.stems = network, key, cache, stems
        self.fake_item, self.real_item = fake_item, real_item
        self.real: np.ndarray | None = cache.load(key, stems)
        self.cached = self.real is not None
        self.fake: np.ndarray | None = None

    def update(self, timer: _Timer, batch: list[dict], index: np.ndarray) -> None:
        self.fake = self._store(self.fake, timer, batch, index, self.fake_item)
        if not self.cached:
            self.real = self._store(self.real, timer, batch, index, self.real_item)

    def _store(self, array: np.ndarray | None, timer: _Timer, batch: list[dict], index: np.ndarray, item: str) -> np.ndarray:
        rows = torch.stack(_grouped(timer, self.network.forward, batch, item)).numpy()
        if array is None:
            array = np.zeros((len(self.stems), rows.shape[1]), np.float32)
        array[index] = rows
        return array

    def finish(self) -> None:
        if not self.cached:
            self.cache.save(self.key, self.stems, self.real)


@dataclass
class _Networks:
    """The networks one scoring run needs (None where the metric is not active)."""

    inception: _CachedEmbedding | None
    clip: _CachedEmbedding | None
    lpips: torch.nn.Module | None


def _open_networks(dataset: Dataset, protocol: Protocol, active: tuple[str, ...], resolved: dict[str, ResolvedWeight],
                   device: torch.device, cache: FeatureCache) -> _Networks:
    stems = [s.stem for s in dataset.samples]
    inception = clip = lpips_model = None
    if any(m in active for m in INCEPTION_METRICS):
        extractor_cls = EXTRACTORS[protocol.feature_net]
        weight = resolved[extractor_cls.weight_key]
        network = _network((extractor_cls.key, weight.path, weight.sha256, str(device)),
                           lambda: extractor_cls(weight, device))
        key = cache_key(dataset.content_hash(), protocol.name, protocol.version, extractor_cls.key, weight.sha256)
        inception = _CachedEmbedding(network, key, cache, stems, "feat_fake", "feat_real")
    if "clip_score" in active:
        weight = resolved["clip-vit-l-14-openai"]
        network = _network(("clip", protocol.clip_model, protocol.clip_quick_gelu, weight.path, weight.sha256, str(device)),
                           lambda: ClipEmbedder(protocol.clip_model, weight, device, protocol.clip_quick_gelu))
        key = cache_key(dataset.content_hash(), protocol.name, protocol.version, "clip-hole-" + protocol.clip_model,
                        weight.sha256)
        clip = _CachedEmbedding(network, key, cache, stems, "clip_fake", "clip_real")
    if "lpips" in active:
        backbone, lin = resolved["alexnet-torchvision"], resolved["lpips-alex-lin"]
        lpips_model = _network(
            ("lpips", protocol.lpips_net, backbone.path, backbone.sha256, lin.path, lin.sha256, str(device)),
            lambda: build_lpips(backbone, lin, protocol.lpips_net).to(device),
        )
    return _Networks(inception, clip, lpips_model)


def _scopes(dataset: Dataset) -> dict[str, np.ndarray]:
    """Row indices of "overall" and of each domain present."""
    groups = {"overall": np.arange(len(dataset))}
    for domain in dataset.domains:
        groups[domain] = np.array([i for i, s in enumerate(dataset.samples) if s.domain == domain])
    return groups


def _scoring_pass(dataset: Dataset, predictions: list[Path], protocol: Protocol, config: ScoreConfig,
                  active: tuple[str, ...], networks: _Networks, timer: _Timer, method: str,
                  ) -> tuple[dict[str, np.ndarray], dict[str, tuple[GaussianStats, GaussianStats]]]:
    """The one decode pass: per-image metric arrays (N,) and streamed FID statistics per scope (real, fake)."""
    inception, clip = networks.inception, networks.clip
    items = _Items(
        dataset, predictions, protocol, config.paste_back,
        pixel_metrics=tuple(m for m in ("psnr", "ssim", "grad_error") if m in active),
        want_pair=networks.lpips is not None,
        feature_pre=inception.network.preprocess() if inception else None,
        feature_real=inception is not None and not inception.cached,
        clip_pre=clip.network.preprocess() if clip else None, clip_real=clip is not None and not clip.cached,
    )
    loader = torch.utils.data.DataLoader(items, batch_size=config.batch_size, num_workers=config.num_workers,
                                         collate_fn=_keep_list, shuffle=False)
    n = len(dataset)
    scopes_of = [["overall"] + ([s.domain] if s.domain is not None else []) for s in dataset.samples]
    per_image: dict[str, np.ndarray] = {m: np.full(n, np.nan) for m in PER_IMAGE if m in active}
    # FID statistics stream in float64 per scope (O(D^2) each); the features themselves are kept only
    # because U/P-IDS fit an SVM on every paired row.
    dim = inception.network.dim if inception else 0
    stats = {scope: (GaussianStats(dim), GaussianStats(dim)) for scope in _scopes(dataset)} if inception else {}
    for batch in tqdm(loader, desc=f"score {method}", unit="batch", leave=False):
        index = np.array([item["index"] for item in batch])
        for metric in ("psnr", "ssim", "grad_error"):
            if metric in per_image:
                per_image[metric][index] = [item[metric] for item in batch]
        if networks.lpips is not None:
            fn = lambda a, b: lpips_distance(networks.lpips, a, b, protocol.lpips_value_range)  # noqa: E731
            per_image["lpips"][index] = [float(v) for v in _grouped(timer, fn, batch, "scored", "gt")]
        if inception is not None:
            inception.update(timer, batch, index)
            _update_stats(stats, 1, inception.fake, index, scopes_of)
            if not inception.cached:
                _update_stats(stats, 0, inception.real, index, scopes_of)
        if clip is not None:
            clip.update(timer, batch, index)
    for embedding in (inception, clip):
        if embedding is not None:
            embedding.finish()
    if inception is not None and inception.cached:
        _update_stats(stats, 0, inception.real, np.arange(n), scopes_of)
    if clip is not None:
        per_image["clip_score"] = np.sum(clip.fake * clip.real, axis=1).astype(np.float64)
    return per_image, stats


def score(dataset: Dataset, predictions_dir: str | Path, method: str, out_dir: str | Path,
          config: ScoreConfig | None = None, dataset_kind: str = "custom") -> ScoreResult:
    """Score `predictions_dir` (files named by sample stem) against `dataset` and write the result files.

    Writes `<out_dir>/<method>__<dataset>__<protocol>.json` (overall and per-domain rows, provenance) and
    `.per_image.csv` beside it. Metrics whose weights are missing are listed under "unavailable" with the fix
    (or raise with `config.strict`). dataset_kind: "MISATO", "Places2" or "custom" (leaderboard grouping).
    """
    config = config or ScoreConfig()
    protocol = get_protocol(config.protocol)
    metrics = config.selected()
    device = resolve_device(config.device)
    _check_out_dir(Path(out_dir))
    predictions_dir = predictions_folder(predictions_dir)
    checked = check_inputs(dataset, predictions_dir, config.allow_degenerate_masks)
    resolved, unavailable = resolve_metric_weights(metrics, protocol, config)
    active = tuple(m for m in metrics if m not in unavailable)
    seconds_start = time.perf_counter()
    timer = _Timer(device)
    cache = FeatureCache(Path(config.cache_dir) if config.cache_dir else None, config.use_cache)
    networks = _open_networks(dataset, protocol, active, resolved, device, cache)
    per_image, stats = _scoring_pass(dataset, checked.predictions, protocol, config, active, networks, timer, method)
    left_out = _degenerate_left_out(per_image, dataset, checked, config.paste_back)

    n = len(dataset)
    pca_dim = _ids_pca_dim(protocol, dataset)
    notes: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    inception = networks.inception
    kept = {metric: np.where(left_out[metric], np.nan, values) for metric, values in per_image.items()}
    for name, rows_index in _scopes(dataset).items():
        row: dict[str, Any] = {"n": int(len(rows_index))}
        for metric, values in kept.items():
            row[metric] = _finite_mean(values[rows_index], f"{name}.{metric}", notes)
        if inception is not None and name != "overall" and len(rows_index) == n:
            # A domain holding every sample has the overall set metrics: no second eigh/SVM/KID pass.
            row.update({k: v for k, v in rows["overall"].items() if k not in row})
        elif inception is not None:
            row.update(_set_metrics(inception.real[rows_index], inception.fake[rows_index], stats[name], protocol,
                                    pca_dim, active, name, notes))
        rows[name] = row
    seconds_total = time.perf_counter() - seconds_start

    git = git_state() or {}
    record = {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "dataset": {
            "name": dataset.name, "kind": dataset_kind, "root": str(Path(dataset.root).resolve()),
            "content_hash": dataset.content_hash(), "n_images": n, "domains": dataset.domains,
            "mask_hole_is_white": dataset.mask_hole_is_white,
        },
        "protocol": protocol.record(),
        "paste_back": config.paste_back,
        "metrics": {"overall": rows["overall"], "per_domain": {k: v for k, v in rows.items() if k != "overall"}},
        "higher_is_better": {m: HIGHER_IS_BETTER[m] for m in metrics},
        "unavailable": unavailable,
        "degenerate_masks": {"empty": checked.empty_masks, "full": checked.full_masks},
        "non_binary_masks": {"count": len(checked.non_binary_masks), "samples": checked.non_binary_masks[:100],
                             "threshold": 128},
        "weights": {key: weight.record() for key, weight in resolved.items()},
        "versions": package_versions(),
        "seeds": {"kid": protocol.kid_seed, "ids_pca": protocol.ids_pca_seed if pca_dim else None},
        "ids_pca_dim": pca_dim,
        "notes": notes,
        "config": {k: v for k, v in asdict(config).items() if k != "weights"},
        "device": str(device),
        "timing": {"total_s": seconds_total, "forward_s": timer.seconds, "images_per_s": n / seconds_total},
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "created": utc_now(),
        "predictions": str(Path(predictions_dir).resolve()),
    }
    out_dir = Path(out_dir)
    base = result_stem(method, dataset.name, protocol.name)
    csv_path = out_dir / f"{base}.per_image.csv"
    record["per_image_csv"] = csv_path.name
    atomic_write_text(csv_path, _per_image_csv([s.stem for s in dataset.samples], [s.domain for s in dataset.samples], per_image))
    json_path = out_dir / f"{base}.json"
    atomic_write_json(json_path, record)
    if unavailable:  # recorded in the result; the CLIs print them once
        log.debug("unavailable metrics: %s", ", ".join(unavailable))
    return ScoreResult(record, json_path, csv_path)


# Per-image metrics a degenerate mask makes meaningless (scored with --allow-degenerate-masks): an empty hole
# composites to the ground truth (PSNR inf, SSIM 1, LPIPS 0, ...); a full hole has no boundary to measure.
DEGENERATE_LEFT_OUT: dict[str, tuple[str, ...]] = {"empty": PER_IMAGE, "full": ("grad_error",)}


def _degenerate_left_out(per_image: dict[str, np.ndarray], dataset: Dataset, checked: Any,
                         paste_back: bool) -> dict[str, np.ndarray]:
    """Per metric, bool (N,): samples whose degenerate mask would bias its mean (the per-image CSV keeps their
    values; the means leave them out, see `_finite_mean`). Without paste-back an empty mask still scores the raw
    output, so only its boundary gradient is left out."""
    position = {s.stem: i for i, s in enumerate(dataset.samples)}
    out = {metric: np.zeros(len(values), dtype=bool) for metric, values in per_image.items()}
    for kind, stems in (("empty", checked.empty_masks), ("full", checked.full_masks)):
        metrics = DEGENERATE_LEFT_OUT[kind] if paste_back or kind == "full" else ("grad_error",)
        for metric in metrics:
            if metric in out:
                out[metric][[position[s] for s in stems]] = True
    return out


def _finite_mean(values: np.ndarray, key: str, notes: dict[str, str]) -> float | None:
    """Mean of the finite per-image values. Left out, and counted in `notes[key]`: infinite values (PSNR of a
    prediction identical to the ground truth) and NaN (samples with a degenerate mask, `_degenerate_left_out`),
    so the result stays valid JSON and the mean is not biased by them. None (with a note) when none is left."""
    finite = np.isfinite(values)
    if finite.all():
        return float(np.mean(values))
    parts = [f"{int(count)} {why}" for count, why in (
        (np.isinf(values).sum(), "infinite (prediction identical to the ground truth)"),
        (np.isnan(values).sum(), "from samples with an empty or full mask")) if count]
    left_out = f"{' and '.join(parts)} of {len(values)} per-image values left out"
    if not finite.any():
        notes[key] = f"{left_out}: no mean"
        return None
    notes[key] = f"{left_out}; the mean is over the other {int(finite.sum())}"
    return float(np.mean(values[finite]))


def _update_stats(stats: dict, side: int, features: np.ndarray, index: np.ndarray, scopes_of: list[list[str]]) -> None:
    """Add rows `index` of `features` to the real (side 0) or fake (side 1) statistics of each row's scopes."""
    by_scope: dict[str, list[int]] = defaultdict(list)
    for i in index:
        for scope in scopes_of[i]:
            by_scope[scope].append(int(i))
    for scope, rows in by_scope.items():
        stats[scope][side].update(features[rows])


def _ids_pca_dim(protocol: Protocol, dataset: Dataset) -> int | None:
    """The protocol's PCA dimension before the IDS SVM; the image side when it follows the resolution."""
    if not protocol.ids_pca_from_resolution:
        return protocol.ids_pca_dim
    from PIL import Image

    with Image.open(dataset.samples[0].image_path) as image:
        return max(image.size)


def _set_metrics(real: np.ndarray, fake: np.ndarray, scope_stats: tuple[GaussianStats, GaussianStats],
                 protocol: Protocol, pca_dim: int | None, active: tuple[str, ...], scope: str,
                 notes: dict[str, str]) -> dict:
    """FID, U/P-IDS and KID of one group of paired rows. A group too small for a metric gets None (null in
    JSON) and the reason in `notes` under "<scope>.<metric>"."""
    out: dict[str, float | None] = {}
    if "fid" in active:
        if len(real) >= 2:
            out["fid"] = fid_from_stats(*scope_stats)
        else:
            out["fid"] = None
            notes[f"{scope}.fid"] = f"FID needs at least 2 images, got {len(real)}"
    if "u_ids" in active or "p_ids" in active:
        try:
            u_ids, p_ids = inception_discriminative_scores(real, fake, pca_dim, protocol.ids_pca_seed)
        except ValueError as error:
            log.warning("IDS not computed for %s: %s", scope, error)
            notes[f"{scope}.u_ids"] = notes[f"{scope}.p_ids"] = str(error)
            u_ids = p_ids = None
        out.update({k: v for k, v in (("u_ids", u_ids), ("p_ids", p_ids)) if k in active})
    if "kid" in active:
        if len(real) >= 2:
            out["kid"], out["kid_std"] = kernel_inception_distance(
                real, fake, protocol.kid_subsets, protocol.kid_subset_size, protocol.kid_seed
            )
        else:
            out["kid"] = out["kid_std"] = None
            notes[f"{scope}.kid"] = f"KID needs at least 2 images, got {len(real)}"
    return out


def _per_image_csv(stems: list[str], domains: list[str | None], per_image: dict[str, np.ndarray]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = list(per_image)
    writer.writerow(["stem", "domain", *columns])
    for i, stem in enumerate(stems):
        writer.writerow([stem, domains[i] or "", *(f"{per_image[c][i]:.6g}" for c in columns)])
    return buffer.getvalue()
