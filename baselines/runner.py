"""Run an inpainter over a dataset: predictions on disk plus a manifest, resumable and data-parallel.

Layout of an output folder::

    OUT/raw/<stem>.png         the inpainter's output in [0, 1] (outside it: refused, or clipped with
                               `clip_outputs`), rounded to uint8
    OUT/composite/<stem>.png   raw inside the hole, the ground truth outside (what is scored)
    OUT/records/<stem>.json    per-sample provenance (seed, timing, clipped fraction, rank)
    OUT/manifest.json          method config, arguments, package versions, git commit, all records

Every file is written atomically (temporary file + rename), in the order raw, record, composite, so a
sample is finished exactly when its raw and composite files both exist. A run that is interrupted, even
by SIGKILL, is resumed by running it again: finished samples are skipped, the others are recomputed.
Resuming with another method, options, weights or seed is refused (it would mix two runs).

Before any work the selected samples' masks are checked (`Dataset.mask_report`, the rule `misato score` applies
too): unusable masks (0/1 masks without `mask_binary_01`, unreadable files) are refused, and empty or full ones
unless `allow_degenerate_masks` -- an empty mask would make the ground truth the "output".

Seeds: sample `stem` gets `misato.seeds.sample_seed(stem, seed)`, independent of batch position,
batch size and process rank. Under `accelerate launch` each process takes the samples whose index in
the sorted stem list is congruent to its rank modulo the number of processes; outputs are identical
to a single-process run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from baselines.base import Inpainter
from baselines.harness import inpaint_arrays, value_policy
from misato.data import Dataset, Sample, load_dataset
from misato.devices import Workers, choose_device, current_workers, device_record
from misato.composite import composite_uint8
from misato.environment import git_state, package_versions
from misato.io import MASK_THRESHOLD, atomic_write_bytes, atomic_write_json, png_bytes, read_rgb
from misato.masks.files import MaskError, MaskReport, format_problems
from misato.outputs import MANIFEST_SCHEMA, OutputFolder
from misato.seeds import sample_seed

log = logging.getLogger(__name__)

MANIFEST_WRITE_INTERVAL_S = 10.0  # rank 0 rewrites the manifest at most this often during a run


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> uint8, rounded to nearest."""
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def fingerprint(inpainter: Inpainter, seed: int) -> dict[str, Any]:
    """What must not change between a run and its resumption: method, version, options, weights, seed."""
    config = inpainter.config()
    return {
        "class": config.get("class"),
        "version": config.get("version"),
        "options": {k: v for k, v in (config.get("options") or {}).items() if k != "allow_download"},
        "weights_sha256": sorted(w.get("sha256") for w in config.get("weights", [])),
        "seed": seed,
    }


def _check_resumable(folder: OutputFolder, expected: dict[str, Any], content_sha256: str) -> None:
    """Refuse to resume a run of another method, options, weights or seed, or of another dataset (other files or
    mask convention: `Dataset.content_hash`), so finished samples of one never count as samples of the other."""
    if not folder.manifest.is_file():
        return
    try:
        manifest = json.loads(folder.manifest.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{folder.manifest}: unreadable manifest ({error}); remove it or use another --out") from error
    previous = manifest.get("fingerprint")
    if previous != expected:
        raise ValueError(
            f"{folder.root} holds a run with another method, options, weights or seed "
            f"({previous} != {expected}); use another output folder"
        )
    before = (manifest.get("dataset") or {}).get("content_sha256")
    if before is not None and before != content_sha256:
        raise ValueError(
            f"{folder.root} holds a run on another dataset or mask convention (it ran on "
            f"{manifest['dataset'].get('root')!r}, content sha256 {before[:12]}..., not {content_sha256[:12]}...); "
            "use another output folder"
        )


def _check_image_sizes(dataset: Dataset, masks: MaskReport) -> None:
    """Refuse, before any output is written, images whose header cannot be read or whose size differs from
    their mask's (headers only: no pixel is decoded); `MaskError` lists every file."""
    from PIL import Image

    problems = []
    for sample in dataset.samples:
        try:
            with Image.open(sample.image_path) as image:
                size = image.size
        except Exception as error:  # PIL raises several types for broken files
            problems.append(f"{sample.image_path}: unreadable image ({error})")
            continue
        mask = masks.info.get(sample.stem)
        if mask is not None and mask.size != size:
            problems.append(f"{sample.image_path}: image {size[0]}x{size[1]} but mask {mask.size[0]}x{mask.size[1]} "
                            f"({mask.path})")
    if problems:
        raise MaskError(format_problems(problems, 20, "image problem(s)"))


def _manifest(
    base: dict[str, Any], records: dict[str, dict[str, Any]], stems: list[str], status: str
) -> dict[str, Any]:
    return {
        **base,
        "status": status,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "num_finished": sum(1 for s in stems if s in records),
        "samples": {s: records[s] for s in stems if s in records},
    }


def _process_batch(
    inpainter: Inpainter, dataset: Dataset, samples: list[Sample], seed: int, folder: OutputFolder,
    batch_size: int, workers: Workers, clip_outputs: bool = False,
) -> dict[str, dict[str, Any]]:
    images = [read_rgb(s.image_path) for s in samples]
    masks = [dataset.read_mask(s) for s in samples]
    seeds = [sample_seed(s.stem, seed) for s in samples]
    start = time.perf_counter()
    preds = inpaint_arrays(inpainter, images, masks, seeds, [s.stem for s in samples], batch_size=batch_size,
                           clip_outputs=clip_outputs)
    seconds = time.perf_counter() - start
    records = {}
    for sample, image, mask, sample_seed_, pred in zip(samples, images, masks, seeds, preds):
        raw = to_uint8(pred.raw)
        record = {
            "seed": sample_seed_,
            "seconds": seconds / len(samples),
            "batch_seconds": seconds,
            "batch_size": len(samples),
            "out_of_range": pred.out_of_range,
            "rank": workers.rank,
        }
        raw_bytes = png_bytes(raw)
        composite_bytes = png_bytes(composite_uint8(raw, image, mask))
        record["files"] = {role: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                           for role, data in (("raw", raw_bytes), ("composite", composite_bytes))}
        atomic_write_bytes(folder.raw / f"{sample.stem}.png", raw_bytes)
        atomic_write_json(folder.records / f"{sample.stem}.json", record)
        atomic_write_bytes(folder.composite / f"{sample.stem}.png", composite_bytes)
        records[sample.stem] = record
    return records


def inpaint_dataset(
    dataset: Dataset | str | os.PathLike,
    inpainter: Inpainter | str,
    out_dir: str | os.PathLike,
    seed: int = 0,
    batch_size: int = 1,
    limit: int | None = None,
    device: str | None = None,
    weight_paths: dict[str, str] | None = None,
    allow_download: bool = False,
    options: dict[str, Any] | None = None,
    progress: bool = True,
    allow_degenerate_masks: bool = False,
    clip_outputs: bool = False,
) -> Path:
    """Inpaint `dataset` with `inpainter` into `out_dir`; returns the manifest path.

    dataset: a `Dataset` or a folder for `misato.data.load_dataset`. inpainter: a method spec for
    `baselines.registry`, built here with `device`, `weight_paths`, `allow_download` and `options`; or
    an instance, already built (those four arguments are then only recorded). limit: only the first `limit` samples in sorted stem order. The manifest's `status` is
    "complete" once every selected sample is finished. allow_degenerate_masks: inpaint samples whose mask is
    empty or full instead of refusing the run (`misato.masks.files`). clip_outputs: clip output values outside
    [0, 1] instead of refusing them (`baselines.harness`); both are recorded in the manifest. See the module
    docstring for files, seeds, masks, resumption and data parallelism (run under `accelerate launch` to shard
    across processes).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    from misato.devices import check_device

    check_device(device)
    workers = current_workers(device)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    by_stem = {s.stem: s for s in dataset.samples}
    stems = sorted(by_stem)[:limit]
    selected = dataset if len(stems) == len(dataset) else dataset.subset(stems)
    masks = selected.mask_report()
    masks.require_usable(allow_degenerate_masks)  # before building the inpainter (weights can take minutes)
    _check_image_sizes(selected, masks)
    method_spec = inpainter if isinstance(inpainter, str) else None
    if isinstance(inpainter, str):
        from baselines.registry import REGISTRY

        cls = REGISTRY.get(inpainter)
        chosen = choose_device(device, workers, cls.devices)
        extra = {"weight_paths": dict(weight_paths or {}), "allow_download": allow_download} if cls.weights else {}
        if allow_download:  # hub models (the SD and FLUX pipelines) are downloaded only when this reaches them
            extra["allow_download"] = True
        inpainter = REGISTRY.create(method_spec, chosen, **extra, **(options or {}))
    folder = OutputFolder(out_dir)
    expected = fingerprint(inpainter, seed)
    _check_resumable(folder, expected, dataset.content_hash())
    inpainter.prepare(stems)
    base = {
        "schema": MANIFEST_SCHEMA,
        "fingerprint": expected,
        "method": {
            "spec": method_spec or inpainter.config()["class"],
            **inpainter.config(),
            "policy": asdict(inpainter.policy),
            "batched": inpainter.batched,
            "deterministic": inpainter.deterministic,
        },
        "arguments": {
            "dataset": str(dataset.root), "seed": seed, "batch_size": batch_size, "limit": limit,
            "device": device, "weight_paths": dict(weight_paths or {}), "allow_download": allow_download,
            "options": dict(options or {}), "allow_degenerate_masks": allow_degenerate_masks,
            "clip_outputs": clip_outputs,
        },
        "dataset": {"name": dataset.name, "kind": dataset.kind, "root": str(dataset.root),
                    "num_samples": len(dataset), "num_selected": len(stems),
                    "mask_hole_is_white": dataset.mask_hole_is_white, "mask_binary_01": dataset.mask_binary_01,
                    "empty_masks": masks.empty, "full_masks": masks.full,
                    "content_sha256": dataset.content_hash()},
        "compositing": f"rint(raw_uint8 * hole + gt_uint8 * (1 - hole)), hole = mask file >= {MASK_THRESHOLD}",
        "value_policy": value_policy(clip_outputs),
        "device": device_record(inpainter.device),
        "world_size": workers.world_size,
        "misato_version": _version(),
        "packages": package_versions(),
        "git": git_state(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    records: dict[str, dict[str, Any]] = {}
    if workers.rank == 0:
        folder.make()
        removed = folder.remove_partial_files()
        if removed:
            log.info("%s: removed %d partial file(s) of an interrupted run", folder.root, removed)
        records = {s: r for s in stems if folder.finished(s) and (r := folder.read_record(s)) is not None}
        atomic_write_json(folder.manifest, _manifest(base, records, stems, "running"))
    workers.barrier()
    pending = [s for s in workers.shard(stems) if not folder.finished(s)]
    done_before = len(workers.shard(stems)) - len(pending)
    if done_before:
        log.info("resuming: %d sample(s) already finished, %d to go", done_before, len(pending))

    from tqdm.auto import tqdm

    last_write = time.monotonic()
    bar = tqdm(total=len(pending), desc=f"inpaint {inpainter.name or 'method'}", unit="img",
               disable=not progress or workers.rank != 0)
    for start in range(0, len(pending), batch_size):
        chunk = [by_stem[s] for s in pending[start : start + batch_size]]
        records.update(_process_batch(inpainter, dataset, chunk, seed, folder, batch_size, workers, clip_outputs))
        bar.update(len(chunk))
        if workers.rank == 0 and time.monotonic() - last_write > MANIFEST_WRITE_INTERVAL_S:
            atomic_write_json(folder.manifest, _manifest(base, records, stems, "running"))
            last_write = time.monotonic()
    bar.close()
    workers.barrier()
    if workers.rank == 0:
        records = {s: r for s in stems if folder.finished(s) and (r := folder.read_record(s)) is not None}
        complete = all(folder.finished(s) for s in stems)
        atomic_write_json(folder.manifest, _manifest(base, records, stems, "complete" if complete else "incomplete"))
    workers.barrier()
    return folder.manifest


def _version() -> str:
    import misato

    return misato.__version__
