"""`misato study create`: pick the images, write the web-size composites and the study file.

Runs folder: the `--out` of `misato run` / `misato reproduce` (`RUNS/predictions/<dataset>/<method>/`) or a folder
of `misato inpaint` outputs (`RUNS/<method>/`); each method folder holds the runner's `manifest.json` and
`composite/<stem>.png` (the prediction inside the hole, the ground truth outside; composited here from `raw/` with
`misato.composite.composite_uint8` when a composite is absent). Every method must have run on the same dataset
(the manifests' content hash), which is opened from the root the manifests record (or `dataset_root`).

Selection (seeded): the samples every method finished, shuffled within each MISATO domain, taken round-robin over
the domains (in a shuffled order) until `images` items are chosen, then `attention_checks` more for the checks: the
study is stratified over the domains and the same seed picks the same images whatever the number of checks. An
attention check shows the untouched ground truth in place of one method's output (chosen by the seed).

Images: resized so the largest side is at most `max_side` (Lanczos, never enlarged), JPEG quality 92 without chroma
subsampling (the colours are what visual consistency is judged on), under random names; the masked input shows the
hole in flat grey. Everything is decoded and encoded in memory first; nothing is
written unless every input is valid.

Blinding (`misato.jobs.study.media`): every media file is padded to one byte size, written in a random order with one
fixed mtime; the items (attention checks included) and each item's options are stored in a random order, and the
study gets a fresh secret from which the server draws every participant's orders (`misato.jobs.study.design`).
"""

from __future__ import annotations

import io
import json
import logging
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from misato.composite import composite_uint8
from misato.data import Dataset, DatasetError, Sample, load_dataset
from misato.environment import utc_now
from misato.io import read_rgb
from misato.outputs import MANIFEST_NAME, MANIFEST_SCHEMA, OutputFolder, RunFolder
from misato.jobs.study.design import (MEDIA_DIR, QUESTIONS, STUDY_FILE, Item, Option, Study, new_secret, write_study)
from misato.jobs.study.media import pad_all, write_media

log = logging.getLogger(__name__)

HOLE_GREY = 128
JPEG_QUALITY = 92


@dataclass(frozen=True)
class CreateConfig:
    """The flags of `misato study create` (module docstring). dataset: the dataset name when the runs folder holds
    several; dataset_root: where the dataset is now, when it moved since the runs."""

    runs: Path
    methods: tuple[str, ...]
    images: int
    out: Path
    seed: int = 0
    attention_checks: int = 0
    attention_pass_fraction: float = 0.5
    dataset: str | None = None
    dataset_root: Path | None = None
    max_side: int = 512


@dataclass(frozen=True)
class MethodRun:
    """One method's output folder and its manifest."""

    method: str
    folder: Path
    manifest: dict

    @property
    def dataset_name(self) -> str:
        return str(self.manifest.get("dataset", {}).get("name") or self.folder.parent.name)

    def finished(self) -> set[str]:
        """Stems the manifest lists as finished whose composite (or raw output) is on disk."""
        folder = OutputFolder(self.folder)
        return {stem for stem in self.manifest.get("samples", {})
                if any((kind / f"{stem}.png").is_file() for kind in (folder.composite, folder.raw))}


def find_runs(runs: Path) -> list[MethodRun]:
    """Every method folder under `runs` (both layouts of the module docstring), in path order."""
    if not runs.is_dir():
        raise ValueError(f"--runs {runs}: no such folder")
    if OutputFolder(runs).manifest.is_file():
        raise ValueError(f"--runs {runs}: this is one method's folder; pass the folder holding the method folders")
    found = []
    layouts = (RunFolder(runs).predictions_root.glob(f"*/*/{MANIFEST_NAME}"), runs.glob(f"*/{MANIFEST_NAME}"))
    for path in sorted(path for layout in layouts for path in layout):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: unreadable manifest ({error})") from error
        schema = str(manifest.get("schema", "")) if isinstance(manifest, dict) else ""
        if schema.rpartition("/")[0] == MANIFEST_SCHEMA.rpartition("/")[0]:  # any version of the runner's manifest
            found.append(MethodRun(path.parent.name, path.parent, manifest))
    if not found:
        raise ValueError(f"--runs {runs}: no method folders (RUNS/predictions/<dataset>/<method>/manifest.json or "
                         "RUNS/<method>/manifest.json, as `misato run` and `misato inpaint` write them)")
    return found


def choose_runs(found: list[MethodRun], methods: tuple[str, ...], dataset: str | None) -> list[MethodRun]:
    """The run of each method (in `methods` order), all on one dataset."""
    if len(methods) < 2 or len(set(methods)) != len(methods):
        raise ValueError(f"--methods needs 2 or more distinct methods, got {','.join(methods)}")
    datasets = sorted({r.dataset_name for r in found})
    if dataset is not None and dataset not in datasets:
        raise ValueError(f"--dataset {dataset}: not in the runs folder; it holds {', '.join(datasets)}")
    holding = [d for d in ([dataset] if dataset else datasets)
               if all(any(r.method == m and r.dataset_name == d for r in found) for m in methods)]
    if not holding:
        known = sorted({r.method for r in found if dataset in (None, r.dataset_name)})
        missing = [m for m in methods if m not in known]
        raise ValueError(f"--methods: {', '.join(missing) or 'these methods'} not found together on one dataset in "
                         f"the runs folder; it holds {', '.join(known)}")
    if len(holding) > 1:
        raise ValueError(f"--methods were run on several datasets ({', '.join(holding)}): pick one with --dataset")
    chosen = [next(r for r in found if r.method == m and r.dataset_name == holding[0]) for m in methods]
    hashes = {r.manifest.get("dataset", {}).get("content_sha256") for r in chosen}
    if len(hashes) != 1 or None in hashes:
        raise ValueError(f"--methods: the runs of {', '.join(methods)} did not read the same dataset "
                         "(their manifests' content hashes differ)")
    return chosen


def open_dataset(run: MethodRun, root: Path | None) -> Dataset:
    """The dataset the runs read (their manifests' root, or `root`), checked against their content hash."""
    recorded = run.manifest.get("dataset", {})
    root = root or Path(str(recorded.get("root", "")))
    hole_is_white = bool(recorded.get("mask_hole_is_white", True))
    resolutions = [None] if (root / "image").is_dir() else [None, 1024]  # the MISATO layout: 512/ or 1024/
    for resolution in resolutions:
        try:
            dataset = load_dataset(root, resolution, hole_is_white, bool(recorded.get("mask_binary_01", False)))
        except DatasetError:
            continue
        if dataset.content_hash() == recorded.get("content_sha256"):
            dataset.name = run.dataset_name
            return dataset
    raise ValueError(f"{root}: not the dataset the runs read (missing, or its content hash differs); "
                     "pass its current folder with --dataset-root")


def choose_samples(samples: list[Sample], count: int, seed: int) -> list[Sample]:
    """`count` samples stratified over domains (module docstring); samples without a domain form one stratum."""
    rng = np.random.default_rng(seed)
    strata: dict[str | None, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.stem):
        strata.setdefault(sample.domain, []).append(sample)
    pools = {d: [members[i] for i in rng.permutation(len(members))] for d, members in strata.items()}
    order = [list(pools)[i] for i in rng.permutation(len(pools))]
    chosen: list[Sample] = []
    while len(chosen) < count:
        for domain in order:
            if pools[domain] and len(chosen) < count:
                chosen.append(pools[domain].pop(0))
    return chosen


def web_image(array: np.ndarray, max_side: int) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) image, the largest side at most `max_side` (never enlarged)."""
    image = Image.fromarray(array)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # full-resolution colour
    return buffer.getvalue()


class _Names:
    """Random 16-hex-digit ids, never repeated within a study."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def new(self) -> str:
        while (name := secrets.token_hex(8)) in self.used:
            pass
        self.used.add(name)
        return name


def _composite(run: MethodRun, sample: Sample, truth: np.ndarray, hole: np.ndarray) -> np.ndarray:
    folder = OutputFolder(run.folder)
    path = folder.composite / f"{sample.stem}.png"
    if path.is_file():
        image = read_rgb(path)
    else:
        image = composite_uint8(read_rgb(folder.raw / f"{sample.stem}.png"), truth, hole)
    if image.shape != truth.shape:
        raise ValueError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the ground truth's "
                         f"{truth.shape[1]}x{truth.shape[0]}")
    return image


def _item(sample: Sample, runs: list[MethodRun], dataset: Dataset, config: CreateConfig, names: _Names,
          media: dict[str, bytes], truth_in_place_of: int | None) -> Item:
    """One item; its images go into `media` (name -> bytes). truth_in_place_of: the index of the method whose
    output the ground truth replaces (an attention check), None for an ordinary item."""
    truth = read_rgb(sample.image_path)
    hole = dataset.read_mask(sample)
    if hole.shape != truth.shape[:2]:
        raise ValueError(f"{sample.mask_path}: mask size differs from {sample.image_path}")
    masked = np.where(hole[..., None] >= 0.5, np.uint8(HOLE_GREY), truth)
    options = []
    for index, run in enumerate(runs):
        check = index == truth_in_place_of
        name = f"{names.new()}.jpg"
        media[name] = web_image(truth if check else _composite(run, sample, truth, hole), config.max_side)
        options.append(Option(names.new(), name, None if check else run.method))
    input_name = f"{names.new()}.jpg"
    media[input_name] = web_image(masked, config.max_side)
    random.SystemRandom().shuffle(options)  # stored order: not --methods order
    return Item(names.new(), sample.stem, sample.domain, input_name, tuple(options), truth_in_place_of is not None)


def check_config(config: CreateConfig) -> None:
    """The flags that need no file: counts, fractions, sizes, the output folder."""
    if config.images < 1:
        raise ValueError(f"--images must be >= 1, got {config.images}")
    if config.attention_checks < 0:
        raise ValueError(f"--attention-checks must be >= 0, got {config.attention_checks}")
    if not 0.0 <= config.attention_pass_fraction <= 1.0:
        raise ValueError(f"--attention-pass must be in [0, 1], got {config.attention_pass_fraction}")
    if config.max_side < 64:
        raise ValueError(f"--max-side must be >= 64, got {config.max_side}")
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out}: exists and is not an empty folder (a study is never overwritten)")


def create_study(config: CreateConfig) -> Study:
    """Validate every input, build every image in memory, then write `out/media/*` and `out/study.json`."""
    check_config(config)
    runs = choose_runs(find_runs(Path(config.runs)), tuple(config.methods), config.dataset)
    dataset = open_dataset(runs[0], Path(config.dataset_root) if config.dataset_root else None)
    finished = set.intersection(*(r.finished() for r in runs))
    available = [s for s in dataset.samples if s.stem in finished]
    needed = config.images + config.attention_checks
    if len(available) < needed:
        raise ValueError(f"--images {config.images} + --attention-checks {config.attention_checks}: only "
                         f"{len(available)} sample(s) were finished by every method of --methods")
    chosen = choose_samples(available, needed, config.seed)
    rng = np.random.default_rng([config.seed, 1])
    names, media = _Names(), {}
    items = [_item(sample, runs, dataset, config, names, media,
                   int(rng.integers(len(runs))) if i >= config.images else None) for i, sample in enumerate(chosen)]
    random.SystemRandom().shuffle(items)  # the attention checks are not the last items of the file
    study = Study(
        study_id=secrets.token_hex(8), seed=config.seed, secret=new_secret(), questions=QUESTIONS, methods=tuple(config.methods),
        items=tuple(items), attention_pass_fraction=config.attention_pass_fraction, image_max_side=config.max_side,
        created=utc_now(),
        source={"runs": str(Path(config.runs).resolve()), "folders": {r.method: str(r.folder.resolve()) for r in runs},
                "dataset": {"name": dataset.name, "kind": dataset.kind,
                            "root": str(Path(dataset.root).resolve()), "content_sha256": dataset.content_hash(),
                            "n_images": len(dataset), "domains": dataset.domains,
                            "mask_hole_is_white": dataset.mask_hole_is_white, "resolution": dataset.resolution}},
    )
    out = Path(config.out)
    write_media(out / MEDIA_DIR, pad_all(media), random.SystemRandom())
    write_study(out, study)
    log.info("wrote %s: %d items (%d attention checks), %d images", out / STUDY_FILE, len(items),
             config.attention_checks, len(media))
    return study
