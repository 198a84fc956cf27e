"""Score a folder of predictions against a dataset: one decode pass feeds every metric of `evaluators.metrics`.

Data flow: data-loader workers read ground truth, mask and prediction once, composite them (evaluators.
composite), compute the pixel metrics and run every network's CPU preprocessing; the main process batches
the network forwards on the chosen device. Ground-truth features come from the on-disk cache when the same
dataset content, protocol and weights were scored before.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from evaluators.bootstrap import BootstrapConfig, Resamples, Stopwatch, count_for, mean_intervals
from evaluators.cache import FeatureCache
from evaluators.inputs import check_inputs
from evaluators.metrics import DEFAULT, METRICS, check_metrics
from evaluators.networks import SOURCES, Source, Timer
from evaluators.pixel_metrics import Decoded
from evaluators.protocols import Protocol, get_protocol
from evaluators.record import DatasetInfo, ResultRecord, result_stem
from evaluators.thumbnails import default_stems, thumbnails
from misato.composite import composite_uint8
from misato.data import Dataset
from misato.defaults import (
    BOOTSTRAP_RESAMPLES, KID_BOOTSTRAP_RESAMPLES, PROTOCOL, SCORE_BATCH_SIZE, SET_BOOTSTRAP_RESAMPLES,
)
from misato.devices import check_device, resolve_device
from misato.environment import git_state, package_versions, utc_now
from misato.io import (atomic_write_bytes, atomic_write_json, atomic_write_text, probe_write, read_mask_gray,
                       read_rgb)
from misato.weights import ResolvedWeight, WeightsNotFoundError, fix_text, resolve

log = logging.getLogger(__name__)


@dataclass
class ScoreConfig:
    """Options of one scoring run (the CLI flags of `misato score` map one to one).

    metrics: subset of `evaluators.metrics.SCORED`; None = `evaluators.metrics.DEFAULT` (all but the opt-in ones).
    device: "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    paste_back: score `pred*hole + gt*(1-hole)` (default) or the raw predictions.
    weights: explicit weight paths by key (highest priority in misato.weights.resolve).
    strict: missing weights raise instead of marking the metric unavailable.
    allow_degenerate_masks: score samples whose mask is empty or full (counted in the result) instead of refusing.
    thumbnail_samples: sample ids whose thumbnails the result keeps for the report; None = the first of each
      domain (or the first 4).
    progress: show a progress bar.
    bootstrap / set_bootstrap / kid_bootstrap / bootstrap_seed: resamples for the 95% intervals of per-image
      means and U/P-IDS, of FID, and of KID (see `evaluators.bootstrap.BootstrapConfig` for their costs); 0: none.
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
    thumbnail_samples: tuple[str, ...] | None = None
    progress: bool = True
    bootstrap: int = BOOTSTRAP_RESAMPLES
    set_bootstrap: int = SET_BOOTSTRAP_RESAMPLES
    kid_bootstrap: int = KID_BOOTSTRAP_RESAMPLES
    bootstrap_seed: int = 0

    def selected(self) -> tuple[str, ...]:
        """The metrics to compute, checked (with the other settings that would otherwise fail late)."""
        self.bootstrap_config()  # its counts checked, naming their flags
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"--score-batch-size (batch_size) must be an integer >= 1, got {self.batch_size!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"--num-workers (num_workers) must be an integer >= 0, got {self.num_workers!r}")
        return check_metrics(tuple(self.metrics or DEFAULT))

    def bootstrap_config(self) -> BootstrapConfig:
        """The interval settings (`BootstrapConfig` checks each count and names its flag)."""
        return BootstrapConfig(self.bootstrap, self.set_bootstrap, self.kid_bootstrap, self.bootstrap_seed)


@dataclass
class ScoreResult:
    record: ResultRecord
    json_path: Path
    csv_path: Path


def predictions_folder(path: str | Path) -> Path:
    """The folder holding the prediction files: `path` itself, or `path/raw` for a `misato inpaint` output
    folder (raw outputs; the scorer composites them itself, so paste-back and raw scoring both start there)."""
    from misato.outputs import OutputFolder

    return OutputFolder.prediction_images(path)


def _check_out_dir(out_dir: Path, n_images: int, n_metrics: int, n_thumbnails: int) -> None:
    """Fail before scoring when the result files cannot be written, without creating anything: the folder (or its
    nearest existing parent, on the same file system) must be a folder where a probe file of about the results'
    size (`_result_bytes`) can be written and synced (`misato.io.probe_write`: a full disk, a quota, a read-only
    file system or no permission end here, naming --out, instead of after the whole computation)."""
    existing = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out_dir}: {existing} is a file, not a folder")
    probe_write(existing, _result_bytes(n_images, n_metrics, n_thumbnails), named=out_dir)


def _result_bytes(n_images: int, n_metrics: int, n_thumbnails: int) -> int:
    """About the bytes of one result's files: the JSON (64 KiB), the per-image CSV (stem, domain, hole ratio and
    one value per metric, 12 bytes each) and the thumbnails (3 JPEGs of 16 KiB at most per sample kept)."""
    return (64 << 10) + n_images * 12 * (n_metrics + 3) + n_thumbnails * 3 * (16 << 10)


def metric_weight_keys(metric: str, protocol: Protocol) -> tuple[str, ...]:
    """Weight files a metric needs under a protocol: its source network's (none for pixel metrics)."""
    source = SOURCES.get(METRICS[metric].source)
    return source.weight_keys(protocol) if source else ()


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
    """Decodes one sample (ground truth, mask, prediction), computes its pixel metrics and every source's
    preprocessing (runs in the data-loader workers)."""

    def __init__(self, dataset: Dataset, predictions: list[Path], protocol: Protocol, paste_back: bool,
                 pixel_metrics: dict[str, Callable[[Decoded, Protocol], float]], sources: list[Source],
                 thumbnail_stems: set[str]):
        self.samples, self.predictions, self.thumbnail_stems = dataset.samples, predictions, thumbnail_stems
        self.mask_hole_is_white, self.mask_binary_01 = dataset.mask_hole_is_white, dataset.mask_binary_01
        self.protocol, self.paste_back, self.pixel_metrics, self.sources = protocol, paste_back, pixel_metrics, sources

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        gt = read_rgb(sample.image_path)
        pred = read_rgb(self.predictions[index])
        gray = read_mask_gray(sample.mask_path, self.mask_hole_is_white, self.mask_binary_01)
        hole = (gray >= round(self.protocol.mask_threshold * 255)).astype(np.float32)
        scored = composite_uint8(pred, gt, hole) if self.paste_back else pred
        decoded = Decoded(gt, pred, gray, hole, scored, self.paste_back)
        out: dict[str, Any] = {"index": index, "hole_ratio": float(hole.mean())}
        for name, function in self.pixel_metrics.items():
            out[name] = function(decoded, self.protocol)
        for source in self.sources:
            out.update(source.prepare(decoded))
        if sample.stem in self.thumbnail_stems:
            out["thumbnails"] = thumbnails(gt, hole, scored)
        return out


def _keep_list(batch: list) -> list:
    return batch


def _scopes(dataset: Dataset) -> dict[str, np.ndarray]:
    """Row indices of "overall" and of each domain present."""
    groups = {"overall": np.arange(len(dataset))}
    for domain in dataset.domains:
        groups[domain] = np.array([i for i, s in enumerate(dataset.samples) if s.domain == domain])
    return groups


def _set_metric_instances(active: tuple[str, ...], scopes: dict[str, np.ndarray], n: int, protocol: Protocol,
                          pca_dim: int | None) -> dict[str, dict[str, Any]]:
    """Per scope, one instance per set-metric implementation (U-IDS and P-IDS share one). A domain holding
    every sample gets none: it has the overall values (no second eigh/SVM/KID pass)."""
    implementations = {METRICS[m].implementation: METRICS[m] for m in active if METRICS[m].aggregate == "set"}
    return {scope: {impl: spec.load()(protocol, pca_dim) for impl, spec in sorted(implementations.items())}
            for scope, rows in scopes.items() if scope == "overall" or len(rows) < n}


@dataclass
class _PassResult:
    """What one pass over a (shard of a) dataset collects, rows in `stems` order: per_image: metric -> float64
    (N,); thumbnails: stem -> role -> JPEG bytes; hole_ratio: float64 (N,); features: by the source feeding the
    active set metrics (Inception, CLIP, DINOv2), its (real, fake) float32 (N, D) each; empty without set metrics."""

    stems: list[str]
    per_image: dict[str, np.ndarray]
    thumbnails: dict[str, dict[str, bytes]]
    hole_ratio: np.ndarray
    features: dict[str, tuple[np.ndarray, np.ndarray]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat named arrays for `FeatureCache.save_arrays` (no pickles): thumbnails by stem position and role."""
        arrays = {"stems": np.array(self.stems), "hole_ratio": self.hole_ratio,
                  **{f"per_image.{m}": v for m, v in self.per_image.items()},
                  **{f"thumb.{self.stems.index(stem)}.{role}": np.frombuffer(data, np.uint8)
                     for stem, roles in self.thumbnails.items() for role, data in roles.items()}}
        for source, (real, fake) in self.features.items():
            arrays[f"features.{source}.real"], arrays[f"features.{source}.fake"] = real, fake
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "_PassResult":
        stems = [str(stem) for stem in arrays["stems"]]
        thumbs: dict[str, dict[str, bytes]] = {}
        for name, data in arrays.items():
            if name.startswith("thumb."):
                _, position, role = name.split(".", 2)
                thumbs.setdefault(stems[int(position)], {})[role] = data.tobytes()
        features = {name.split(".")[1]: (arrays[name], arrays[name.removesuffix(".real") + ".fake"])
                    for name in arrays if name.startswith("features.") and name.endswith(".real")}
        return cls(stems, {name.removeprefix("per_image."): v for name, v in arrays.items()
                           if name.startswith("per_image.")}, thumbs, arrays["hole_ratio"], features)


def _scoring_pass(dataset: Dataset, predictions: list[Path], protocol: Protocol, config: ScoreConfig,
                  active: tuple[str, ...], sources: dict[str, Source], timer: Timer, method: str,
                  thumbnail_stems: set[str]) -> _PassResult:
    """The one decode pass over `dataset` (this process's shard): per-image values, hole ratios, thumbnails and
    the Inception features of both sides (for the set metrics, computed once every row is known)."""
    pixel = {m: METRICS[m].load() for m in active if METRICS[m].source == "pixels"}
    items = _Items(dataset, predictions, protocol, config.paste_back, pixel, list(sources.values()), thumbnail_stems)
    loader = torch.utils.data.DataLoader(items, batch_size=config.batch_size, num_workers=config.num_workers,
                                         collate_fn=_keep_list, shuffle=False)
    n = len(dataset)
    per_image: dict[str, np.ndarray] = {m: np.full(n, np.nan) for m in pixel}
    set_sources = {METRICS[m].source for m in active if METRICS[m].aggregate == "set"}
    thumbs: dict[str, dict[str, bytes]] = {}
    hole_ratio = np.zeros(n)
    for batch in tqdm(loader, desc=f"score {method}", unit="batch", leave=False, disable=not config.progress):
        index = np.array([item["index"] for item in batch])
        hole_ratio[index] = [item["hole_ratio"] for item in batch]
        thumbs.update({dataset.samples[item["index"]].stem: item["thumbnails"] for item in batch if "thumbnails" in item})
        for metric in pixel:
            per_image[metric][index] = [item[metric] for item in batch]
        for source in sources.values():
            source.update(timer, batch, index)
    for source in sources.values():
        source.finish()
        per_image.update({m: v for m, v in source.values().items() if m in active})
    features = {name: (source.real, source.fake) for name, source in sources.items() if name in set_sources}
    return _PassResult([s.stem for s in dataset.samples], {m: per_image[m] for m in active if m in per_image},
                       thumbs, hole_ratio, features)


def _pass_key(shard: Dataset, prediction_sha256: dict[str, str], protocol: Protocol, config: ScoreConfig,
              active: tuple[str, ...], resolved: dict[str, ResolvedWeight], thumbnail_stems: set[str]) -> str:
    """Cache key of one scoring pass over `shard`: sha256 of everything that decides its arrays (the shard's
    images and masks, every prediction file's bytes as `check_inputs` read them, the protocol, the metrics,
    paste-back, the weight files, the thumbnails kept, the package version)."""
    from misato import __version__

    described = {
        "format": 2, "version": __version__, "shard": shard.content_hash(),
        "predictions": [prediction_sha256[s.stem] for s in shard.samples], "protocol": protocol.record(),
        "metrics": sorted(active), "paste_back": config.paste_back,
        "weights": {key: weight.sha256 for key, weight in sorted(resolved.items())},
        "thumbnails": sorted(thumbnail_stems & {s.stem for s in shard.samples}),
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    return f"pass_{digest[:40]}"


def _gather(result: _PassResult, stems: list[str], workers: Any) -> _PassResult | None:
    """Every process's shard on rank 0, in dataset order (`stems`); None on the other ranks. Each sample is in
    exactly one shard (`Workers.shard`), so nothing is duplicated or dropped."""
    from accelerate.utils import gather_object

    shards = gather_object([result])
    if workers.rank != 0:
        return None
    position = {stem: i for i, stem in enumerate(stems)}
    order = np.array([position[stem] for shard in shards for stem in shard.stems])
    if sorted(order.tolist()) != list(range(len(stems))):
        raise RuntimeError(f"sharded scoring: gathered {len(order)} samples for {len(stems)}")
    inverse = np.argsort(order)
    join = lambda arrays: np.concatenate(arrays)[inverse]  # noqa: E731
    features = {name: (join([s.features[name][0] for s in shards]), join([s.features[name][1] for s in shards]))
                for name in result.features}
    return _PassResult(stems, {m: join([s.per_image[m] for s in shards]) for m in result.per_image},
                       {k: v for s in shards for k, v in s.thumbnails.items()},
                       join([s.hole_ratio for s in shards]), features)


def _set_source(implementation: str) -> str:
    """The source whose features feed a set-metric implementation (exactly one: an instance sees one source)."""
    sources = {spec.source for spec in METRICS.values() if spec.implementation == implementation}
    if len(sources) != 1:
        raise ValueError(f"evaluators.metrics: {implementation} is fed by {len(sources)} sources, not one")
    return sources.pop()


def _fill_set_metrics(set_metrics: dict[str, dict[str, Any]], scopes: dict[str, np.ndarray],
                      features: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Every set-metric instance gets its scope's paired rows of its source, in dataset order (KID subsets index
    rows)."""
    for scope, instances in set_metrics.items():
        for implementation, instance in instances.items():
            real, fake = features[_set_source(implementation)]
            instance.update(real[scopes[scope]], fake[scopes[scope]])


def _compute_set_metrics(set_metrics: dict[str, dict[str, Any]], active: tuple[str, ...],
                         notes: dict[str, str]) -> dict[str, dict[str, float | None]]:
    """Per scope, the active set metrics (and their extra values). A set too small for a metric gets None
    (null in JSON) and the reason in `notes` under "<scope>.<metric>"."""
    out: dict[str, dict[str, float | None]] = {}
    for scope, instances in set_metrics.items():
        values: dict[str, float | None] = {}
        for implementation, instance in instances.items():
            wanted = [m for m in active if METRICS[m].implementation == implementation]
            keys = [k for m in wanted for k in (m, *METRICS[m].extra_values)]
            try:
                computed = instance.compute()
            except ValueError as error:
                log.warning("%s not computed for %s: %s", ", ".join(wanted), scope, error)
                computed = {}
                notes.update({f"{scope}.{m}": str(error) for m in wanted})
            values.update({k: computed.get(k) for k in keys})
        out[scope] = values
    return out


def score(dataset: Dataset, predictions_dir: str | Path, method: str, out_dir: str | Path,
          config: ScoreConfig | None = None, dataset_kind: str = "custom") -> ScoreResult:
    """Score `predictions_dir` (files named by sample stem) against `dataset` and write the result files.

    Writes `<out_dir>/<method>__<dataset>__<protocol>.json` (overall and per-domain rows, provenance) and
    `.per_image.csv` beside it. Metrics whose weights are missing are listed under "unavailable" with the fix
    (or raise with `config.strict`). dataset_kind: "MISATO", "Places2" or "custom" (leaderboard grouping).
    """
    from misato.devices import current_workers

    config = config or ScoreConfig()
    protocol = get_protocol(config.protocol)
    metrics = config.selected()
    check_device(config.device)  # before any work
    workers = current_workers(config.device)
    device = resolve_device(config.device, workers.device)
    out_dir = Path(out_dir)
    thumbnail_stems = _thumbnail_stems(dataset, config)
    _check_out_dir(out_dir, len(dataset), len(metrics), len(thumbnail_stems))
    predictions_dir = predictions_folder(predictions_dir)
    checked = check_inputs(dataset, predictions_dir, config.allow_degenerate_masks)
    stems = [s.stem for s in dataset.samples]
    resolved, unavailable = resolve_metric_weights(metrics, protocol, config)
    active = tuple(m for m in metrics if m not in unavailable)
    seconds_start = time.perf_counter()
    timer = Timer(device)
    cache = FeatureCache(Path(config.cache_dir) if config.cache_dir else None, config.use_cache)
    needed = {METRICS[m].source for m in active}
    base = result_stem(method, dataset.name, protocol.name)
    # Under `accelerate launch` each process scores its shard (index i % world size); rank 0 gathers every row
    # and computes the rest, exactly as one process would.
    mine = dataset if workers.world_size == 1 else dataset.subset(workers.shard(stems))
    own = {s.stem: p for s, p in zip(dataset.samples, checked.predictions)}
    mine_predictions = [own[s.stem] for s in mine.samples]
    # A shard scored before with the same inputs and settings (an interrupted or repeated run) is not redone.
    pass_key = _pass_key(mine, checked.prediction_sha256, protocol, config, active, resolved, thumbnail_stems)
    cached = cache.load_arrays(pass_key)
    seconds_build = seconds_pass = 0.0
    if cached is not None:
        pass_result = _PassResult.from_arrays(cached)
    else:
        sources = {name: cls(mine, protocol, resolved, device, cache) for name, cls in SOURCES.items()
                   if name in needed}
        seconds_build = time.perf_counter() - seconds_start
        pass_result = _scoring_pass(mine, mine_predictions, protocol, config, active, sources, timer, method,
                                    thumbnail_stems)
        seconds_pass = time.perf_counter() - seconds_start - seconds_build
        cache.save_arrays(pass_key, pass_result.to_arrays())
    if workers.world_size > 1:
        pass_result = _gather(pass_result, stems, workers)
        if pass_result is None:  # not rank 0: wait for its files, return what it wrote
            workers.barrier()
            return read_result(out_dir / f"{base}.json")
    scopes = _scopes(dataset)
    pca_dim = _ids_pca_dim(protocol, dataset) if "inception" in needed else None
    set_metrics = _set_metric_instances(active, scopes, len(dataset), protocol, pca_dim)
    if set_metrics:
        _fill_set_metrics(set_metrics, scopes, pass_result.features)
    per_image = pass_result.per_image
    left_out = _degenerate_left_out(per_image, dataset, checked, config.paste_back)

    notes: dict[str, str] = {}
    set_values = _compute_set_metrics(set_metrics, active, notes)
    kept = {metric: np.where(left_out[metric], np.nan, values) for metric, values in per_image.items()}
    rows: dict[str, dict[str, Any]] = {}
    for name, rows_index in scopes.items():
        row: dict[str, Any] = {"n": int(len(rows_index))}
        for metric, values in kept.items():
            row[metric] = _finite_mean(values[rows_index], f"{name}.{metric}", notes)
        row.update(set_values.get(name, set_values.get("overall", {})))  # a domain of every sample: overall's
        rows[name] = row
    bootstrap = config.bootstrap_config()
    stopwatch = Stopwatch()
    intervals = _intervals(scopes, kept, set_metrics, pass_result.features, bootstrap)
    bootstrap_record = {**bootstrap.record(), "seconds": round(stopwatch.seconds(), 3)}
    by_hole_ratio = _by_hole_ratio(kept, pass_result.hole_ratio)
    seconds_total = time.perf_counter() - seconds_start

    thumbs_folder = out_dir / f"{base}.thumbs"
    thumbs = _thumbnail_paths(thumbs_folder, pass_result.thumbnails)
    git = git_state() or {}
    csv_path = out_dir / f"{base}.per_image.csv"
    record = ResultRecord(
        method=method,
        dataset=DatasetInfo(
            name=dataset.name, kind=dataset_kind, root=str(Path(dataset.root).resolve()),
            content_hash=dataset.content_hash(), n_images=len(dataset), domains=dataset.domains,
            mask_hole_is_white=dataset.mask_hole_is_white, mask_binary_01=dataset.mask_binary_01,
            resolution=dataset.resolution),
        protocol=protocol.record(),
        paste_back=config.paste_back,
        overall=rows["overall"],
        per_domain={k: v for k, v in rows.items() if k != "overall"},
        higher_is_better={m: METRICS[m].higher_is_better for m in metrics},
        unavailable=unavailable,
        notes=notes,
        intervals=intervals,
        bootstrap=bootstrap_record,
        per_hole_ratio=by_hole_ratio,
        predictions=str(Path(predictions_dir).resolve()),
        per_image_csv=csv_path.name,
        thumbnails=thumbs,
        degenerate_masks={"empty": checked.empty_masks, "full": checked.full_masks},
        non_binary_masks={"count": len(checked.non_binary_masks), "samples": checked.non_binary_masks[:100],
                          "threshold": 128},
        weights={key: weight.record() for key, weight in resolved.items()},
        versions=package_versions(),
        seeds={"kid": protocol.kid_seed, "ids_pca": protocol.ids_pca_seed if pca_dim else None},
        ids_pca_dim=pca_dim,
        config={k: v for k, v in asdict(config).items() if k != "weights"},
        device=str(device),
        # total_s: from the networks' builds to the intervals; build_s: networks built and caches opened; pass_s:
        # the decode pass (forward_s of it in forwards); the time before total_s is start-up (imports, checks, hashes)
        timing={"total_s": seconds_total, "build_s": seconds_build, "pass_s": seconds_pass, "forward_s": timer.seconds,
                "images_per_s": len(dataset) / seconds_total,
                "processes": workers.world_size, "pass_from_cache": cached is not None},
        git_commit=git.get("commit"),
        git_dirty=git.get("dirty"),
        created=utc_now(),
    )
    json_path = out_dir / f"{base}.json"
    _write_result_files(json_path, record.to_json(), csv_path,
                        _per_image_csv(stems, [s.domain for s in dataset.samples], pass_result.hole_ratio, per_image),
                        thumbs_folder, pass_result.thumbnails)
    if unavailable:  # recorded in the result; the CLIs print them once
        log.debug("unavailable metrics: %s", ", ".join(unavailable))
    workers.barrier()
    return ScoreResult(record, json_path, csv_path)


def read_result(json_path: Path) -> ScoreResult:
    """A result file as `score` returns it (rank 0 wrote it, or an earlier run did)."""
    record = ResultRecord.read(json_path)
    return ScoreResult(record, json_path, json_path.parent / (record.per_image_csv or ""))


def _thumbnail_stems(dataset: Dataset, config: ScoreConfig) -> set[str]:
    """The samples whose thumbnails the result keeps: `config.thumbnail_samples` (checked) or the default."""
    stems = [s.stem for s in dataset.samples]
    if config.thumbnail_samples is None:
        return set(default_stems(stems, [s.domain for s in dataset.samples]))
    absent = [s for s in config.thumbnail_samples if s not in set(stems)]
    if absent:
        raise ValueError(f"--thumbnail-samples: not in dataset {dataset.name}: {', '.join(absent[:10])}")
    return set(config.thumbnail_samples)


def _thumbnail_paths(folder: Path, images: dict[str, dict[str, bytes]]) -> dict[str, dict[str, str]]:
    """`<folder>/<stem>.<role>.jpg` of every thumbnail, relative to the result's folder (as the record holds)."""
    return {stem: {role: f"{folder.name}/{stem}.{role}.jpg" for role in roles} for stem, roles in sorted(images.items())}


def _write_result_files(json_path: Path, record: dict[str, Any], csv_path: Path, csv_text: str, thumbs_folder: Path,
                        images: dict[str, dict[str, bytes]]) -> None:
    """The result's files, each atomically (`misato.io`: a failed write names its file and leaves no temporary
    file): the thumbnails, the per-image CSV, then the JSON, which refers to them. When one fails, an older JSON of
    the same name is removed: it would refer to a CSV or thumbnails of this run (the pass is in the cache, so the
    same command after the fault is fixed recomputes only the set metrics and intervals)."""
    try:
        for stem, roles in images.items():
            for role, data in roles.items():
                atomic_write_bytes(thumbs_folder / f"{stem}.{role}.jpg", data)
        atomic_write_text(csv_path, csv_text)
        atomic_write_json(json_path, record)
    except BaseException:
        with contextlib.suppress(OSError):
            json_path.unlink(missing_ok=True)
        raise


def _degenerate_left_out(per_image: dict[str, np.ndarray], dataset: Dataset, checked: Any,
                         paste_back: bool) -> dict[str, np.ndarray]:
    """Per metric, bool (N,): samples whose degenerate mask (scored with --allow-degenerate-masks) would bias its
    mean. An empty hole composites to the ground truth (PSNR inf, SSIM 1, LPIPS 0, ...): every per-image metric
    under paste-back; a metric that needs the mask's boundary (`MetricSpec.needs_boundary`) on an empty or a full
    hole. The per-image CSV keeps their values; the means leave them out (see `_finite_mean`)."""
    position = {s.stem: i for i, s in enumerate(dataset.samples)}
    out = {metric: np.zeros(len(values), dtype=bool) for metric, values in per_image.items()}
    for metric in out:
        spec = METRICS[metric]
        for kind, stems in (("empty", checked.empty_masks), ("full", checked.full_masks)):
            if spec.needs_boundary or (kind == "empty" and paste_back):
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


def _ids_pca_dim(protocol: Protocol, dataset: Dataset) -> int | None:
    """The protocol's PCA dimension before the IDS SVM; the image side when it follows the resolution."""
    if not protocol.ids_pca_from_resolution:
        return protocol.ids_pca_dim
    from PIL import Image

    with Image.open(dataset.samples[0].image_path) as image:
        return max(image.size)


def _intervals(scopes: dict[str, np.ndarray], kept: dict[str, np.ndarray], set_metrics: dict[str, dict[str, Any]],
               features: dict[str, tuple[np.ndarray, np.ndarray]],
               bootstrap: BootstrapConfig) -> dict[str, dict[str, list[float]]]:
    """Per scope, [low, high] of every metric that has one (see `evaluators.bootstrap`). Resample r of a scope is
    the same for every metric and every method scored on the same images with the same seed (paired). A domain
    holding every sample has no set-metric instances of its own: it takes the overall intervals, as its values."""
    out: dict[str, dict[str, list[float]]] = {}
    for scope, rows in scopes.items():
        found: dict[str, tuple[float, float] | None] = {}
        if bootstrap.resamples:
            indices = Resamples(len(rows), bootstrap.resamples, bootstrap.seed)
            found.update(mean_intervals({m: values[rows] for m, values in kept.items()}, indices, bootstrap.level))
        for implementation, instance in set_metrics.get(scope, {}).items():
            count = count_for(bootstrap, instance.per_resample_cost)
            if count and instance.computed:
                indices = Resamples(len(rows), count, bootstrap.seed)
                real, fake = features[_set_source(implementation)]
                found.update(instance.intervals(real[rows], fake[rows], indices, bootstrap.level))
        out[scope] = {m: [low, high] for m, interval in found.items() if interval is not None
                      for low, high in [interval]}
    for scope, rows in scopes.items():
        if scope not in set_metrics and len(rows) == len(scopes["overall"]):
            out[scope] = {**{m: v for m, v in out["overall"].items() if m not in kept}, **out[scope]}
    return out


def _by_hole_ratio(kept: dict[str, np.ndarray], hole_ratio: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per-image metric means by hole ratio in 10% bins ("0-10%", ..., "90-100%"; a bin holds ratios in
    [lo, hi), the last one includes 100%), as the LaMa evaluator breaks results down; empty bins are left out."""
    bins = np.minimum((hole_ratio * 10).astype(int), 9)
    out: dict[str, dict[str, Any]] = {}
    for b in range(10):
        chosen = bins == b
        if not chosen.any():
            continue
        row: dict[str, Any] = {"n": int(chosen.sum())}
        for metric, values in kept.items():
            finite = values[chosen][np.isfinite(values[chosen])]
            row[metric] = float(finite.mean()) if len(finite) else None
        out[f"{10 * b}-{10 * b + 10}%"] = row
    return out


def _per_image_csv(stems: list[str], domains: list[str | None], hole_ratio: np.ndarray,
                   per_image: dict[str, np.ndarray]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = list(per_image)
    writer.writerow(["stem", "domain", "hole_ratio", *columns])
    for i, stem in enumerate(stems):
        writer.writerow([stem, domains[i] or "", f"{hole_ratio[i]:.6g}", *(f"{per_image[c][i]:.6g}" for c in columns)])
    return buffer.getvalue()
