"""Run several methods on several datasets: inpaint, score, then write the leaderboard.

The Python API behind `misato run` and `misato demo`. Output layout (paths from `misato.outputs.RunFolder`)::

    OUT/predictions/<dataset>/<method>/   the runner's raw/, composite/, records/, manifest.json (resumable)
    OUT/results/<method>__<dataset>__<protocol>.json (+ .per_image.csv)   from evaluators.scoring.score
    OUT/leaderboard/                      leaderboard.md, leaderboard.tex, <table>.csv, report.html
    OUT/run.json                          this run: its plan, every (dataset, method) outcome, errors and fixes
    OUT/.misato.lock                      held while the run writes OUT (`misato.lock`): a second job refuses

A method that fails (a plug-in that does not import, missing weights, an exception while inpainting or
scoring) is recorded with its error and skipped; the other methods go on, the failed pair stays in the
leaderboard as a "failed" row, and the report (`RunReport.ok`, the commands' exit status) is a failure. Metrics
whose weights are missing are not failures (unless `ScoreConfig.strict`): the scorer lists them as unavailable
with the fix, and `RunReport.unavailable_weights` says which files would enable them.

run.json is written when the work starts (status "running", the planned pairs), after each pair, and at the
end ("finished"; "interrupted" after Ctrl-C), so `misato status` can tell failed, partial and missing pairs.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from evaluators.metrics import SCORED
from misato.data import CUSTOM, KINDS, Dataset, dataset_kind, load_dataset
from misato.defaults import EMBEDDED_SIZE
from misato.io import atomic_write_json
from misato.outputs import OutputFolder, RunFolder

if TYPE_CHECKING:
    from evaluators.scoring import ScoreConfig, ScoreResult
    from leaderboard.tables import FailedRun

log = logging.getLogger(__name__)

SCHEMA = "misato.run/1"
EMBEDDED = "embedded"  # the dataset name that means the embedded default (misato.embedded)


@dataclass(frozen=True)
class MethodEntry:
    """A method to run: `label` names its folders and leaderboard row; `spec` is for `baselines.registry`."""

    label: str
    spec: str


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset to run on: a folder, or `embedded`; `label` (optional) replaces the folder's name."""

    source: str
    label: str | None = None


def _default_score_config() -> "ScoreConfig":
    from evaluators.scoring import ScoreConfig

    return ScoreConfig()


@dataclass
class RunConfig:
    """Options of one `run_benchmark` call (the flags of `misato run` map one to one).

    methods / datasets: what to run (see `parse_method` / `parse_dataset` for the LABEL=SPEC forms).
    score: how every method is scored (`ScoreConfig`: protocol, metrics, paste-back, batch size, workers, cache,
    degenerate masks, strictness, device); its `weights` and `allow_download` also serve the inpainters; with
    `strict` a metric's missing weights fail that method's scoring (a failed method fails the run either way).
    device: inpainting device, None = the runner's default (accelerate's or cuda when available, else cpu).
    batch_size / seed / limit / options: inpainting settings (options: each method gets those it takes).
    kind: leaderboard group of folder datasets; None = the dataset's own (`misato.data.dataset_kind`: MISATO
    only by layout or manifest; the embedded set is always custom). mask_keep_is_white / mask_binary_01: how
    the folder datasets' mask files are read (`misato.data.load_dataset`). clip_outputs: clip inpainter outputs
    outside [0, 1] instead of failing the method (`baselines.harness`; recorded in each run manifest).
    embedded_size / embedded_dir: the embedded set's resolution and folder.
    grid_samples: stems for the HTML grid (None = the leaderboard's default choice).
    reuse_scores: a result file newer than its finished inpainting is reused instead of scoring again
      (`misato reproduce`: a finished score is never redone).
    """

    methods: list[MethodEntry]
    datasets: list[DatasetEntry]
    out_dir: Path
    score: "ScoreConfig" = field(default_factory=_default_score_config)
    device: str | None = None
    batch_size: int = 1
    seed: int = 0
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    mask_keep_is_white: bool = False
    mask_binary_01: bool = False
    clip_outputs: bool = False
    embedded_size: int = EMBEDDED_SIZE
    embedded_dir: Path | None = None
    grid_samples: tuple[str, ...] | None = None
    leaderboard_formats: tuple[str, ...] = ("md", "tex", "csv", "html")
    progress: bool = True
    reuse_scores: bool = False


@dataclass
class Outcome:
    """What happened to one (dataset, method) pair. status: "ok" or "failed"; stage: where it failed ("dataset",
    "inpaint", "score"); kind: the dataset's leaderboard group."""

    dataset: str
    method: str
    spec: str
    status: str
    stage: str | None = None
    error: str | None = None
    error_type: str | None = None
    kind: str | None = None
    predictions: str | None = None
    result_json: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    overall: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReport:
    """Everything `run_benchmark` did; `summary_path` is OUT/run.json."""

    out_dir: Path
    outcomes: list[Outcome]
    leaderboard: dict[str, Path]
    summary_path: Path
    leaderboard_error: str | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != "ok"]

    @property
    def ok(self) -> bool:
        """Every pair scored and the leaderboard written: the job succeeded (exit status 0)."""
        return not self.failed and self.leaderboard_error is None

    def unavailable_weights(self, protocol: str, weights: dict[str, str] | None = None) -> dict[str, list[str]]:
        """Missing weight key -> the metrics it keeps from being computed (over every result of this run).

        Keys are re-resolved with `weights` (explicit paths), so a key that was found is not listed.
        """
        from evaluators.protocols import get_protocol
        from evaluators.scoring import metric_weight_keys
        from misato.weights import WeightsHashError, WeightsNotFoundError, resolve

        chosen = get_protocol(protocol)
        missing: dict[str, list[str]] = {}
        for metric in sorted({m for o in self.outcomes for m in o.unavailable}):
            for key in metric_weight_keys(metric, chosen):
                try:
                    resolve(key, (weights or {}).get(key))
                except (WeightsNotFoundError, WeightsHashError):
                    missing.setdefault(key, []).append(metric)
        return missing


def _label_split(text: str) -> tuple[str | None, str]:
    """`LABEL=VALUE` -> (LABEL, VALUE) when LABEL is a plain name; else (None, text)."""
    label, sep, value = text.partition("=")
    if sep and value and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label):
        return label, value
    return None, text


def default_method_label(spec: str) -> str:
    """A short name for a method spec: the name itself, the class's `name` (else `Class`) of `module:Class` /
    `file.py:Class`, or the folder name of `folder:PATH`."""
    if spec.startswith("folder:"):
        return Path(spec[len("folder:"):].rstrip("/\\")).name or "folder"
    if ":" in spec:
        try:  # a plug-in's own `name` labels its row; its class name when it has none or cannot be imported
            from baselines.registry import REGISTRY

            name = REGISTRY.get(spec).name
        except Exception:  # noqa: BLE001 (the method's own run reports the import error)
            name = ""
        return name or spec.rpartition(":")[2].rpartition(".")[2]
    return spec


def parse_method(text: str) -> MethodEntry:
    """`telea`, `my_pkg.mod:MyInpainter`, `path/x.py:Cls`, `folder:PATH`, or `LABEL=<any of those>`."""
    text = text.strip()
    if not text:
        raise ValueError("empty method name in --methods")
    label, spec = _label_split(text)
    return MethodEntry(label or default_method_label(spec), spec)


def parse_methods(values: list[str]) -> list[MethodEntry]:
    """Comma-separated (and repeated) method specs; labels must be unique."""
    entries = [parse_method(part) for value in values for part in value.split(",") if part.strip()]
    if not entries:
        raise ValueError("no methods given")
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.label in seen and seen[entry.label] != entry.spec:
            raise ValueError(
                f"two methods would be labelled {entry.label!r} ({seen[entry.label]}, {entry.spec}); "
                "name them with LABEL=SPEC"
            )
        seen[entry.label] = entry.spec
    return list({e.label: e for e in entries}.values())


def parse_dataset(text: str) -> DatasetEntry:
    """`embedded`, a folder, or `LABEL=<folder>`."""
    label, source = _label_split(text.strip())
    if not source:
        raise ValueError("empty --dataset")
    return DatasetEntry(source, label)


def open_dataset(entry: DatasetEntry, config: RunConfig) -> tuple[Dataset, str]:
    """(dataset, leaderboard kind) for one entry; the embedded set is built on first use."""
    if entry.source == EMBEDDED:
        from misato.embedded import load_embedded

        dataset = load_embedded(config.embedded_dir, config.embedded_size)
        kind = CUSTOM
    else:
        dataset = load_dataset(entry.source, mask_hole_is_white=not config.mask_keep_is_white,
                               mask_binary_01=config.mask_binary_01)
        kind = dataset_kind(dataset, config.kind)
    if kind not in KINDS:
        raise ValueError(f"dataset kind must be one of {KINDS}, got {kind!r}")
    if entry.label:
        dataset.name = entry.label
    return dataset, kind


def error_text(error: BaseException) -> str:
    """The error's message (else its type's name), with its cause's when that adds something."""
    text = str(error) or type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f"\n  caused by {type(cause).__name__}: {cause}"
    return text


def method_options(spec: str, options: dict[str, Any]) -> dict[str, Any]:
    """The shared `--option`s a method takes: `misato run` passes each method those it accepts."""
    from baselines.registry import REGISTRY

    accepted = REGISTRY.accepted_options(spec)
    return dict(options) if accepted is None else {k: v for k, v in options.items() if k in accepted}


def check_shared_options(methods: list[MethodEntry], options: dict[str, Any]) -> None:
    """Every `--option` must be taken by at least one method (a typo is an error, not silently dropped), and its
    value must have the type each method taking it declares (`baselines.options`). A method that cannot be
    imported is left to fail on its own run."""
    from baselines.options import check_option_types
    from baselines.registry import REGISTRY

    accepted: set[str] = set()
    anything = False
    for method in methods:
        try:
            cls, names = REGISTRY.get(method.spec), REGISTRY.accepted_options(method.spec)
        except Exception:  # noqa: BLE001 (reported by its own run)
            continue
        check_option_types(cls, method_options(method.spec, options), f"--option (for {method.label}) ")
        if names is None:
            anything = True
            continue
        accepted |= names
    if anything:
        return
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"--option {', '.join(unknown)}: no method of this run takes it; "
                         f"valid: {', '.join(sorted(accepted))}")


def run_one(dataset: Dataset, kind: str, method: MethodEntry, config: RunConfig) -> Outcome:
    """Inpaint `dataset` with `method` (resuming earlier work) and score it; failures become an Outcome."""
    import json

    from evaluators.scoring import score
    from baselines.runner import inpaint_dataset

    run = RunFolder(config.out_dir)
    folder = run.predictions(dataset.name, method.label)
    outcome = Outcome(dataset.name, method.label, method.spec, "failed", predictions=str(folder), kind=kind)
    stage = "inpaint"
    try:
        manifest_path = inpaint_dataset(
            dataset, method.spec, folder, seed=config.seed, batch_size=config.batch_size, limit=config.limit,
            device=config.device, weight_paths=dict(config.score.weights), allow_download=config.score.allow_download,
            options=method_options(method.spec, config.options), progress=config.progress,
            allow_degenerate_masks=config.score.allow_degenerate_masks, clip_outputs=config.clip_outputs,
        )
        manifest = json.loads(Path(manifest_path).read_text())
        if manifest.get("status") != "complete":
            raise ValueError(f"{manifest_path}: inpainting is {manifest.get('status')}, not complete")
        stage = "score"
        scored = dataset if config.limit is None else dataset.subset(sorted(manifest["samples"]))
        result = _reused_result(run.results, method.label, scored, config, Path(manifest_path))
        if result is None:  # the raw outputs: the scorer composites them itself (paste_back)
            result = score(scored, OutputFolder(folder).raw, method.label, run.results, config.score,
                           dataset_kind=kind)
    except Exception as error:  # noqa: BLE001 (any plug-in error must only fail its own method)
        outcome.stage, outcome.error, outcome.error_type = stage, error_text(error), type(error).__name__
        log.error("%s on %s failed while %s: %s", method.label, dataset.name,
                  "inpainting" if stage == "inpaint" else "scoring", outcome.error.splitlines()[0])
        log.debug("%s", traceback.format_exc())
        return outcome
    outcome.status = "ok"
    outcome.result_json = str(result.json_path)
    outcome.unavailable = dict(result.record.unavailable)
    outcome.overall = dict(result.record.overall)
    return outcome


def _reused_result(folder: Path, method: str, dataset: Dataset, config: RunConfig,
                   manifest: Path) -> "ScoreResult | None":
    """With `config.reuse_scores`, the existing result of (method, dataset, protocol) when it is newer than every
    raw output of the inpainting (a resumed run that had nothing to do rewrites its manifest, not its outputs) and
    scored the same dataset content; else None (score again)."""
    from evaluators.record import result_stem
    from evaluators.scoring import read_result

    path = folder / f"{result_stem(method, dataset.name, config.score.protocol)}.json"
    if not config.reuse_scores or not path.is_file():
        return None
    newest = max((p.stat().st_mtime_ns for p in OutputFolder(manifest.parent).raw.iterdir()), default=0)
    if path.stat().st_mtime_ns < newest:
        return None
    result = read_result(path)
    if result.record.dataset.content_hash != dataset.content_hash():
        return None
    log.info("%s on %s: reusing %s", method, dataset.name, path)
    return result


def run_benchmark(config: RunConfig) -> RunReport:
    """Every dataset x method: inpaint, score; then the leaderboard from every result in OUT/results, failed pairs
    kept as "failed" rows. Holds OUT's lock (`misato.lock.folder_lock`) throughout: a second job on OUT is refused
    before any work."""
    from evaluators.protocols import get_protocol
    from misato.devices import check_device
    from misato.lock import folder_lock

    # settings that would otherwise fail only after inpainting: checked first
    get_protocol(config.score.protocol)
    config.score.selected()
    check_device(config.device)
    check_device(config.score.device)
    check_shared_options(config.methods, config.options)
    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    with folder_lock(out):
        return _run_locked(config, out)


def _run_locked(config: RunConfig, out: Path) -> RunReport:
    outcomes: list[Outcome] = []
    opened: list[tuple[Dataset, str]] = []
    names: dict[str, str] = {}
    for entry in config.datasets:  # open (and build) every dataset before any long work starts
        try:
            dataset, kind = open_dataset(entry, config)
        except Exception as error:  # noqa: BLE001 (a broken dataset fails its own runs only)
            label = entry.label or entry.source
            log.error("dataset %s: %s", label, error)
            outcomes += [Outcome(label, m.label, m.spec, "failed", "dataset", error_text(error), type(error).__name__,
                                 kind=config.kind or CUSTOM) for m in config.methods]
            continue
        if dataset.name in names and names[dataset.name] != entry.source:
            raise ValueError(
                f"two datasets are named {dataset.name!r} ({names[dataset.name]}, {entry.source}); "
                "name them with --dataset LABEL=PATH"
            )
        if dataset.name not in names:
            names[dataset.name] = entry.source
            opened.append((dataset, kind))
    wanted = config.score.thumbnail_samples
    if wanted is not None:
        known = {s.stem for dataset, _ in opened for s in dataset.samples}
        absent = [stem for stem in wanted if stem not in known]
        if absent:
            raise ValueError(f"--thumbnail-samples: not in any dataset of this run: {', '.join(absent[:10])}")
    run = RunFolder(out)
    summary = run.run_record
    planned = [(o.dataset, o.method) for o in outcomes] + [(d.name, m.label) for d, _ in opened for m in config.methods]
    journal = RunReport(out, outcomes, {}, summary)
    pairs = []
    for dataset, kind in opened:
        stems = {s.stem for s in dataset.samples}
        dataset_config = config if wanted is None else replace(
            config, score=replace(config.score, thumbnail_samples=tuple(s for s in wanted if s in stems)))
        pairs += [(dataset, kind, method, dataset_config) for method in config.methods]
    run_pairs(pairs, outcomes, lambda status: atomic_write_json(summary, _summary(config, journal, planned, status)))

    leaderboard: dict[str, Path] = {}
    leaderboard_error = None
    if run.result_files():  # earlier results count too; failed pairs supersede theirs
        from leaderboard import write_reports

        try:
            leaderboard = write_reports([run.results], run.leaderboard, formats=config.leaderboard_formats,
                                        samples=config.grid_samples, failures=failed_runs(outcomes, config.score))
        except Exception as error:  # noqa: BLE001 (results stay valid; report the leaderboard problem)
            leaderboard_error = error_text(error)
            log.error("leaderboard not written: %s", leaderboard_error)
    report = RunReport(out, outcomes, leaderboard, summary, leaderboard_error)
    atomic_write_json(summary, _summary(config, report, planned, "finished"))
    return report


def run_pairs(pairs: list[tuple[Dataset, str, MethodEntry, RunConfig]], outcomes: list[Outcome],
              save: Callable[[str], None]) -> None:
    """`run_one` on each (dataset, kind, method, config), its Outcome appended to `outcomes`; the job's record is
    written through `save(status)`: "running" before the first pair and after each, "interrupted" when the loop is
    left by any exception (Ctrl-C, SIGTERM; re-raised, the lock is released by the caller)."""
    save("running")
    try:
        for dataset, kind, method, config in pairs:
            outcomes.append(run_one(dataset, kind, method, config))
            save("running")
    except BaseException:
        save("interrupted")
        raise


def failed_runs(outcomes: list[Outcome], score: "ScoreConfig") -> list["FailedRun"]:
    """The failed outcomes as leaderboard rows (`leaderboard.tables.FailedRun`), in the column group that their
    results would have had (dataset, kind, the run's protocol and paste-back)."""
    from evaluators.protocols import get_protocol
    from leaderboard.tables import FailedRun

    protocol = get_protocol(score.protocol)
    return [FailedRun(o.method, o.dataset, o.kind or CUSTOM, f"{protocol.name} v{protocol.version}",
                      score.paste_back, o.stage or "?", (o.error or "").splitlines()[0] if o.error else "")
            for o in outcomes if o.status != "ok"]


def _summary(config: RunConfig, report: RunReport, planned: list[tuple[str, str]], status: str) -> dict[str, Any]:
    """run.json: status ("running", "interrupted", "finished"), the planned (dataset, method) pairs, the outcomes
    so far, the leaderboard files."""
    settings = asdict(config)
    settings["out_dir"] = str(config.out_dir)
    settings["embedded_dir"] = str(config.embedded_dir) if config.embedded_dir else None
    return {
        "schema": SCHEMA,
        "status": status,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pid": os.getpid(),
        "config": settings,
        "planned": [{"dataset": d, "method": m} for d, m in planned],
        "outcomes": [asdict(o) for o in report.outcomes],
        "leaderboard": {k: str(v) for k, v in report.leaderboard.items()},
        "leaderboard_error": report.leaderboard_error,
        "failed": len(report.failed),
        "cwd": os.getcwd(),
    }


def fix_hint(key: str, metrics: list[str]) -> str:
    """One line: which metrics a missing weight file blocks, and how to get it."""
    from misato.weights import fix_text, get_spec

    spec = get_spec(key)
    return f"{', '.join(metrics)}: need {key} ({spec.filename}); fix: {fix_text(spec)}"


def format_report(report: RunReport, protocol: str, weights: dict[str, str] | None = None) -> str:
    """A plain-text account for the terminal: outcomes, metrics lacking weights, files, then (last, where they are
    seen) the failures with their errors and fixes."""
    lines = []
    width = max([len(o.method) for o in report.outcomes] + [6])
    metrics = [m for m in SCORED if any(m in o.overall for o in report.outcomes)]
    by_dataset: dict[str, list[Outcome]] = {}
    for outcome in report.outcomes:
        by_dataset.setdefault(outcome.dataset, []).append(outcome)
    for dataset, outcomes in by_dataset.items():
        lines.append(f"dataset {dataset}:")
        lines.append("  " + "method".ljust(width) + "".join(f"{m:>12}" for m in metrics))
        for o in outcomes:
            if o.status == "ok":
                cells = "".join(f"{_fmt(o.overall.get(m)):>12}" for m in metrics)
                lines.append("  " + o.method.ljust(width) + cells)
            else:
                lines.append("  " + o.method.ljust(width) + f"  FAILED ({o.stage}): {o.error.splitlines()[0]}")
    needed = report.unavailable_weights(protocol, weights)
    if needed:
        lines.append("\nnot computed, weights missing (the numbers above need no weights):")
        lines.extend("- " + fix_hint(key, metrics) for key, metrics in needed.items())
    results = sorted({o.result_json for o in report.outcomes if o.result_json})
    run = RunFolder(report.out_dir)
    files = [("predictions", str(run.predictions_root)),
             ("results", f"{run.results} ({len(results)} from this run)"),
             *((name, str(path)) for name, path in report.leaderboard.items())]
    if report.leaderboard_error:
        files.append(("leaderboard", f"NOT written: {report.leaderboard_error.splitlines()[0]}"))
    files.append(("run summary", str(report.summary_path)))
    column = max(len(name) for name, _ in files)
    lines.append("\nfiles:")
    lines.extend(f"  {name:<{column}}  {where}" for name, where in files)
    lines += failure_lines(report.outcomes, report.leaderboard_error)
    return "\n".join(lines)


def failure_lines(outcomes: list[Outcome], *other: str | None) -> list[str]:
    """The end of a job's report: each failed pair with its full error, other failed stages (`other`, e.g. the
    leaderboard's error), and the count; [] when nothing failed."""
    failed = [o for o in outcomes if o.status != "ok"]
    stages = [text for text in other if text]
    if not failed and not stages:
        return []
    lines = [f"\nFAILED: {len(failed)} of {len(outcomes)} runs" + (f", {len(stages)} other stage(s)" if stages else "")
             + " (the others went on; failed rows read 'failed' in the tables; exit status 1):"]
    for o in failed:
        lines.append(f"- {o.method} on {o.dataset}, while {o.stage} [{o.error_type}]:")
        lines.extend("    " + line for line in (o.error or "").splitlines())
    lines.extend(f"- {text.splitlines()[0]}" for text in stages)
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
