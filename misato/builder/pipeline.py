"""`build_misato`: source datasets -> features -> representatives -> crops + masks -> MISATO folder.

Steps per domain (paper Sec. 4, unstated choices recorded in the manifest):
  1. list the source (sorted keys, `sources.py`);
  2. image features for every source image, cached in resumable shards (`features.py`);
  3. BisectingKMeans(n_clusters, random_state=seed) and the member nearest each centre (`select.py`);
     the COCO domain can use the same rule ("cluster", default) or a seeded random draw ("random"): the
     paper clusters "the first three datasets" and does not say how COCO images were chosen;
  4. per selected image: centre square crop, resize to 512 (and 1024 for the first three domains), a MISATO
     mask from `misato.masks.sample_misato_mask(seed, domain, position)` (Sec. 3.1 mixture without
     rectangles, hole ratio in [0.2, 0.8]; its object shapes come from the COCO instances file, else only
     irregular masks are drawn and the manifest says so); for COCO the hole avoids the union of the
     instance masks; an image with too little background is skipped (recorded) and the next-nearest member
     of its cluster is used; the 1024 mask is the 512 mask upsampled (NEAREST);
  5. every file written atomically, one record per sample under OUT/.build/records, then manifest.json.

Each sample is made by a task that depends only on its own inputs (source key, position, seeds), so the
result does not depend on the number of worker processes; a rerun skips samples whose record and files
(sha256) are already in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from misato.builder import export
from misato.builder.sources import CocoSource, ImageSource, load_coco
from misato.data import DOMAIN_SIZE, DOMAINS
from misato.io import atomic_write_json, save_png, sha256_file

log = logging.getLogger(__name__)

BUILD_DIR = ".build"
COCO_SELECTIONS = ("cluster", "random")


class CocoShapeLoader:
    """Picklable loader of COCO object shapes: `annToMask` of an annotation id, the annotation file being
    read once per process (worker processes get the path, not a copy of the index)."""

    def __init__(self, annotations: str | os.PathLike) -> None:
        self.annotations = str(annotations)

    def __call__(self, ann_id: int) -> np.ndarray:
        coco = load_coco(self.annotations)
        return coco.annToMask(coco.anns[ann_id])


def object_bank(annotations: str | os.PathLike | None) -> Any:
    """The MISATO sampler's object shapes from a COCO instances file (None: no object-shape masks).

    Same shapes and order as `ObjectShapeBank.from_coco` (its key list is reused), with a loader that
    worker processes can receive.
    """
    if annotations is None:
        return None
    from misato.masks import ObjectShapeBank

    reference = ObjectShapeBank.from_coco(load_coco(annotations))
    keys = [reference.key(i) for i in range(len(reference))]
    return ObjectShapeBank(keys, CocoShapeLoader(annotations), source=f"{Path(annotations).name} ({len(keys)} shapes)")


_WORKER_OBJECTS: Any = None


def _init_worker(objects: Any) -> None:
    global _WORKER_OBJECTS
    _WORKER_OBJECTS = objects


@dataclass
class FeatureOptions:
    """How features are made: `kind` "clip" (the paper's) or "pixels" (weight-free, not the paper's)."""

    kind: str = "clip"
    clip_model: str = "ViT-L-14"
    clip_weights: str | None = None  # None: misato.weights key of the model's preset
    clip_quick_gelu: bool | None = None
    device: str = "cpu"
    batch_size: int = 32
    workers: int = 0  # DataLoader workers decoding images
    shard_size: int = 1024

    def extractor(self) -> Any:
        from misato.builder.features import make_extractor

        if self.kind == "clip":
            return make_extractor("clip", model=self.clip_model, weights=self.clip_weights, device=self.device,
                                  quick_gelu=self.clip_quick_gelu)
        return make_extractor(self.kind)


@dataclass
class BuildConfig:
    """Everything that decides the output; `sources` maps a MISATO domain to its source adapter."""

    out: Path
    sources: dict[str, ImageSource]
    clusters: int = DOMAIN_SIZE
    seed: int = 0
    size: int = 512
    size_1024: bool = False
    mask_naming_1024: str = "plain"
    resample: str = "lanczos"
    ratio_range: tuple[float, float] = (0.2, 0.8)
    max_tries: int = 100
    coco_selection: str = "cluster"
    coco_candidates: int = 20  # fallbacks per COCO slot when an image has too little background
    features: FeatureOptions = field(default_factory=FeatureOptions)
    cache_dir: Path | None = None  # default OUT/.build/features
    object_annotations: Path | None = None  # COCO instances file for object-shape masks; default: the COCO source's
    workers: int = 0  # processes writing samples (0 = in this process)
    progress: bool = True

    def check(self) -> None:
        unknown = sorted(set(self.sources) - set(DOMAINS))
        if unknown:
            raise ValueError(f"unknown MISATO domain(s) {unknown}; known: {', '.join(DOMAINS)}")
        if not self.sources:
            raise ValueError("no source given: pass at least one of --landscape/--indoor/--building/--coco-images")
        if not 1 <= self.clusters <= DOMAIN_SIZE:
            raise ValueError(f"clusters must be in [1, {DOMAIN_SIZE}] (domain offsets are {DOMAIN_SIZE} apart), got {self.clusters}")
        if self.coco_selection not in COCO_SELECTIONS:
            raise ValueError(f"coco_selection must be one of {COCO_SELECTIONS}, got {self.coco_selection!r}")
        if self.resample not in export.RESAMPLE:
            raise ValueError(f"unknown resample filter {self.resample!r}; known: {', '.join(export.RESAMPLE)}")
        if self.mask_naming_1024 not in export.MASK_NAMINGS:
            raise ValueError(f"mask naming must be one of {export.MASK_NAMINGS}, got {self.mask_naming_1024!r}")
        if "background" in self.sources and not isinstance(self.sources["background"], CocoSource):
            raise ValueError("the background domain needs a COCO source (images + instances_*.json)")

    def object_source(self) -> Path | None:
        """Annotation file of the object-shape masks: explicit, else the COCO source's, else none."""
        if self.object_annotations is not None:
            return Path(self.object_annotations)
        coco = self.sources.get("background")
        return Path(coco.annotations) if isinstance(coco, CocoSource) else None

    def record(self) -> dict[str, Any]:
        """The output-deciding settings, JSON-able (no paths of caches or worker counts)."""
        features = {k: v for k, v in asdict(self.features).items() if k not in ("workers", "batch_size", "shard_size")
                    and (self.features.kind == "clip" or not k.startswith("clip_"))}
        return {"clusters": self.clusters, "seed": self.seed, "size": self.size,
                "sizes": [self.size] + ([1024] if self.size_1024 else []),
                "mask_naming_1024": self.mask_naming_1024, "resample": self.resample,
                "crop": "centre square of the short side", "ratio_range": list(self.ratio_range),
                "max_tries": self.max_tries, "coco_selection": self.coco_selection,
                "coco_candidates": self.coco_candidates, "features": features,
                "mask_1024": "512 mask upsampled with NEAREST" if self.size_1024 else None,
                "mask_sampler": "misato.masks.sample_misato_mask(seed, domain, position)",
                "object_shapes": str(self.object_source()) if self.object_source() else None}


@dataclass
class SampleTask:
    """Everything one worker needs to write one sample; candidates are tried in order."""

    out: str
    domain: str
    position: int
    index: int
    seed: int
    size: int
    size_1024: bool
    mask_naming_1024: str
    resample: str
    ratio_range: tuple[float, float]
    max_tries: int
    source: ImageSource
    candidates: list[dict[str, Any]]  # {"key", "source_index", "cluster", "distance", "rank"}
    coco: dict[str, Any] | None = None  # a COCO-format subset holding only the candidates' images
    objects: str | None = None  # description of the object-shape bank (the bank reaches workers once)

    def fingerprint(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k not in ("out", "source", "coco")}
        data["source"] = self.source.record()
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _record_path(out: str | Path, index: int) -> Path:
    return Path(out) / BUILD_DIR / "records" / f"{export.stem(index)}.json"


def _reusable(task: SampleTask) -> dict[str, Any] | None:
    """The earlier record of this exact task if every file it lists is still intact."""
    path = _record_path(task.out, task.index)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    if record.get("fingerprint") != task.fingerprint():
        return None
    for relpath, digest in record.get("files", {}).items():
        file = Path(task.out) / relpath
        if not file.is_file() or sha256_file(file) != digest:
            return None
    return record


def _coco_index(subset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    index = COCO()
    index.dataset = subset
    index.createIndex()
    return index


def make_sample(task: SampleTask) -> dict[str, Any]:
    """Write one sample's files and record; returns the record (with "skipped" candidates, if any).

    A record without "files" means no candidate had enough background (COCO only).
    """
    from misato.builder.export import centre_square_box, crop_resize, image_relpath, mask_png, mask_relpath, upsample_mask
    from misato.masks import MaskSkipped, sample_misato_mask

    reused = _reusable(task)
    if reused is not None:
        return reused
    coco = _coco_index(task.coco) if task.coco is not None else None
    skipped = []
    record: dict[str, Any] = {"id": export.stem(task.index), "index": task.index, "domain": task.domain,
                              "position": task.position}
    for candidate in task.candidates:
        image = task.source.open(candidate["key"])
        box = centre_square_box(*image.size)
        foreground = None
        if coco is not None:
            from misato.masks.coco import coco_foreground

            foreground = coco_foreground(coco, int(candidate["key"]), box, task.size)
        sample = sample_misato_mask(task.seed, task.domain, task.position, size=task.size, foreground=foreground,
                                    ratio_range=tuple(task.ratio_range), max_tries=task.max_tries,
                                    objects=_WORKER_OBJECTS)
        if isinstance(sample, MaskSkipped):
            skipped.append({"key": candidate["key"], "path": task.source.locate(candidate["key"]),
                            "reason": sample.reason, "background_ratio": float(sample.background_ratio)})
            continue
        files: dict[str, str] = {}
        pixels = crop_resize(image, box, task.size, task.resample)
        writes = [(image_relpath(task.size, task.index), pixels),
                  (mask_relpath(task.size, task.index), mask_png(sample.mask))]
        if task.size_1024:
            writes += [(image_relpath(1024, task.index), crop_resize(image, box, 1024, task.resample)),
                       (mask_relpath(1024, task.index, task.mask_naming_1024), mask_png(upsample_mask(sample.mask, 1024)))]
        for relpath, array in writes:
            save_png(Path(task.out) / relpath, array)
            files[relpath] = sha256_file(Path(task.out) / relpath)
        record.update({
            "source": {"key": candidate["key"], "path": task.source.locate(candidate["key"]),
                       "index": candidate["source_index"], "size": list(image.size)},
            "crop_box": list(box), "resample": task.resample,
            "upscaled": {str(r): box[2] - box[0] < r for r in ([task.size, 1024] if task.size_1024 else [task.size])},
            "selection": {k: candidate[k] for k in ("cluster", "distance", "rank") if k in candidate},
            "mask": {"kind": sample.kind, "hole_ratio": float(sample.hole_ratio), "attempts": int(sample.attempts),
                     "seed": task.seed, "seed_domain": task.domain, "seed_index": task.position,
                     "foreground_ratio": float(foreground.mean()) if foreground is not None else None},
            "files": files,
        })
        break
    record["skipped"] = skipped
    record["fingerprint"] = task.fingerprint()
    atomic_write_json(_record_path(task.out, task.index), record)
    return record


def _coco_subset(source: CocoSource, keys: list[str]) -> dict[str, Any]:
    coco = source.coco()
    ids = [int(k) for k in keys]
    return {"images": [coco.imgs[i] for i in ids],
            "annotations": [a for i in ids for a in coco.imgToAnns.get(i, [])],
            "categories": list(coco.cats.values())}


def _domain_tasks(config: BuildConfig, domain: str, source: ImageSource) -> tuple[list[SampleTask], dict[str, Any]]:
    """Select the images of one domain and describe the tasks that write them."""
    from misato.builder.features import extract_features
    from misato.builder.select import select_representatives

    keys = source.keys()
    info: dict[str, Any] = {"offset": export.domain_offset(domain), "source": source.record(), "candidates": len(keys)}
    if len(keys) < config.clusters:
        raise ValueError(f"{domain}: {source.record()['root']} has {len(keys)} images, fewer than {config.clusters} clusters")
    is_coco = domain == "background"
    slots: list[list[dict[str, Any]]] = []
    if is_coco and config.coco_selection == "random":
        order = np.random.default_rng([config.seed, 1500]).permutation(len(keys))
        for position in range(config.clusters):
            picks = order[position::config.clusters][: config.coco_candidates]
            slots.append([{"key": keys[i], "source_index": int(i), "rank": r} for r, i in enumerate(picks)])
        info["selection"] = {"rule": "seeded permutation (numpy default_rng([seed, 1500])), slot p takes "
                             "order[p::clusters]", "note": "not the paper's clustering"}
    else:
        extractor = config.features.extractor()
        cache_root = config.cache_dir or (config.out / BUILD_DIR / "features")
        features, cache = extract_features(source, extractor, cache_root, domain,
                                           batch_size=config.features.batch_size, workers=config.features.workers,
                                           shard_size=config.features.shard_size, progress=config.progress)
        picks, clustering = select_representatives(features, config.clusters, config.seed)
        depth = config.coco_candidates if is_coco else 1
        for pick in picks:
            slots.append([{"key": keys[int(i)], "source_index": int(i), "cluster": pick.cluster,
                           "distance": float(d), "rank": r}
                          for r, (i, d) in enumerate(zip(pick.ranked[:depth], pick.distances[:depth]))])
        info["features"] = extractor.record()
        info["feature_cache"] = cache.folder.name
        info["selection"] = {"rule": "member nearest its BisectingKMeans centre (squared L2, ties to lowest "
                             "index); clusters ordered by that member's source index", **clustering.settings,
                             "clusters_found": clustering.n_clusters}
    tasks = []
    for position, candidates in enumerate(slots):
        coco = _coco_subset(source, [c["key"] for c in candidates]) if is_coco else None
        task_source = source.restricted([c["key"] for c in candidates]) if is_coco else source
        tasks.append(SampleTask(
            out=str(config.out), domain=domain, position=position, index=info["offset"] + position,
            seed=config.seed, size=config.size, size_1024=config.size_1024 and not is_coco,
            mask_naming_1024=config.mask_naming_1024, resample=config.resample,
            ratio_range=tuple(config.ratio_range), max_tries=config.max_tries, source=task_source,
            candidates=candidates, coco=coco))
    return tasks, info


def _run_tasks(tasks: list[SampleTask], workers: int, progress: bool, objects: Any) -> list[dict[str, Any]]:
    from tqdm import tqdm

    if workers <= 0:
        _init_worker(objects)
        try:
            return [make_sample(t) for t in tqdm(tasks, desc="samples", unit="img", disable=not progress)]
        finally:
            _init_worker(None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(objects,)) as pool:
        return list(tqdm(pool.map(make_sample, tasks, chunksize=4), total=len(tasks), desc="samples",
                         unit="img", disable=not progress))


def build_misato(config: BuildConfig) -> dict[str, Any]:
    """Build the MISATO folder at `config.out`; returns the manifest (also written to OUT/manifest.json)."""
    config.check()
    config.out = Path(config.out)
    config.out.mkdir(parents=True, exist_ok=True)
    domains: dict[str, Any] = {}
    tasks: list[SampleTask] = []
    for domain in DOMAINS:
        if domain not in config.sources:
            log.warning("no source for the %s domain: MISATO indices %d-%d are left out", domain,
                        export.domain_offset(domain), export.domain_offset(domain) + DOMAIN_SIZE - 1)
            continue
        domain_tasks, domains[domain] = _domain_tasks(config, domain, config.sources[domain])
        tasks += domain_tasks
    objects = object_bank(config.object_source())
    for task in tasks:
        task.objects = objects.source if objects is not None else None
    records = _run_tasks(tasks, config.workers, config.progress, objects)
    samples = []
    for record in records:
        domain_info = domains[record["domain"]]
        domain_info.setdefault("skipped", []).extend(dict(s, position=record["position"]) for s in record["skipped"])
        if record.get("files"):
            samples.append({k: v for k, v in record.items() if k not in ("fingerprint", "skipped")})
        else:
            domain_info.setdefault("unfilled_positions", []).append(record["position"])
    for domain, info in domains.items():
        info["selected"] = sum(1 for s in samples if s["domain"] == domain)
        if info.get("unfilled_positions"):
            log.warning("%s: %d position(s) without a usable image: %s", domain, len(info["unfilled_positions"]),
                        info["unfilled_positions"][:10])
    manifest = export.manifest_header("misato", config.record())
    manifest.update({"domains": domains, "samples": samples, "files": export.collect_files(samples)})
    atomic_write_json(config.out / export.MANIFEST_NAME, manifest)
    log.info("wrote %d samples to %s", len(samples), config.out)
    from misato.builder.verify import verify_folder

    stale = verify_folder(config.out, hash_files=False).unlisted
    if stale:  # left by an earlier build with other settings; load_dataset would read them
        log.warning("%s: %d image/mask file(s) not made by this build, e.g. %s; remove them or build into a "
                    "fresh folder (`misato verify` lists them)", config.out, len(stale), stale[:3])
    return manifest
