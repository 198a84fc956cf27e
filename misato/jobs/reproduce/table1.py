"""`misato reproduce table1`: both halves of the paper's Table 1 (MISATO and Places2) from one preset.

A preset (`table1_<name>.json` beside this module) is data: the protocol, the seed, the bootstrap settings,
the datasets (`misato`, `places2` or `embedded`) and, per method, its spec, its exact generation options and
batch size, and `chosen`: what of these the paper does not state and was chosen once (shown under the table).
`--set LABEL.KEY=VALUE` changes one option (e.g. the learned prompt file, the trained ASUKA run).

Everything is checked before any work (preset, methods, option names and value types, dataset folders and
their contents, files named by options); then, holding OUT's lock (`misato.lock`), each (dataset, method) is
inpainted (resumed, sharded by sample id under `accelerate launch`) and scored (a finished score is reused).
A failure stays with its method: the others go on, its row reads "failed" in table1.md and the leaderboard, and
the summary lists it (the command exits 1). OUT/reproduce.json (settings, planned pairs, outcomes, status
"running" / "interrupted" / "finished") is written when the work starts and after each pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from misato.defaults import (
    BOOTSTRAP_RESAMPLES, EMBEDDED_SIZE, KID_BOOTSTRAP_RESAMPLES, SET_BOOTSTRAP_RESAMPLES,
)
from misato.io import atomic_write_json, atomic_write_text
from misato.outputs import RunFolder

PRESET_DIR = Path(__file__).parent
SOURCES = ("misato", "places2", "embedded")


def dataset_label(key: str, preset: str) -> str:
    """The name a preset's dataset gets in the run folder (predictions/<name>/, results): e.g. misato-paper."""
    return f"{key.lower()}-{preset}"


def preset_names() -> list[str]:
    return sorted(p.stem.removeprefix("table1_") for p in PRESET_DIR.glob("table1_*.json"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's data, checked: every method's spec resolves and takes the options given, of their types."""
    from baselines.options import check_option_types
    from baselines.registry import REGISTRY

    path = PRESET_DIR / f"table1_{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown table1 preset {name!r}; known: {', '.join(preset_names())}")
    preset = json.loads(path.read_text())
    for key, dataset in preset["datasets"].items():
        if dataset["source"] not in SOURCES:
            raise ValueError(f"{path}: dataset {key}: source must be one of {SOURCES}, got {dataset['source']!r}")
    for label, method in preset["methods"].items():
        accepted = REGISTRY.accepted_options(method["spec"])
        unknown = sorted(set(method["options"]) - (accepted or set(method["options"])))
        if unknown:
            raise ValueError(f"{path}: {label} ({method['spec']}) takes no option {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(accepted or ()))}")
        check_option_types(REGISTRY.get(method["spec"]), method["options"], f"{path}: {label}: ")
    return preset


@dataclass
class Table1Inputs:
    """preset: a name of `preset_names()`; misato / places2: dataset folders for the presets that use them;
    methods: labels to run (None = all of the preset); sets: `LABEL.KEY=VALUE` option changes."""

    preset: str
    out: str
    misato: str | None = None
    places2: str | None = None
    methods: tuple[str, ...] | None = None
    sets: tuple[str, ...] = ()
    weights: dict[str, str] = field(default_factory=dict)
    allow_download: bool = False
    device: str = "auto"
    progress: bool = True

    def folder(self, source: str) -> str | None:
        """The folder given for a preset dataset's `source` ("misato": --misato, "places2": --places2; None for
        "embedded", which needs none)."""
        return {"misato": self.misato, "places2": self.places2}.get(source)


def apply_sets(preset: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    """`LABEL.KEY=VALUE` (VALUE parsed as JSON when it parses) into the methods' options. An unknown label, an
    option the method does not take, or a value not of the option's type (`baselines.options`) is a ValueError
    naming the --set."""
    from baselines.options import check_option_types
    from baselines.registry import REGISTRY
    from misato.cli._common import parse_option

    for item in sets:
        target, sep, _ = item.partition("=")
        label, dot, key = target.rpartition(".")
        if not sep or not dot or label not in preset["methods"]:
            raise ValueError(f"--set {item!r}: expected LABEL.KEY=VALUE with LABEL one of "
                             f"{', '.join(preset['methods'])}")
        method = preset["methods"][label]
        accepted = REGISTRY.accepted_options(method["spec"])
        if accepted is not None and key not in accepted:
            raise ValueError(f"--set {item!r}: {label} ({method['spec']}) takes no option {key!r}; "
                             f"valid: {', '.join(sorted(accepted))}")
        value = parse_option(f"{key}={item.split('=', 1)[1]}")[1]
        check_option_types(REGISTRY.get(method["spec"]), {key: value}, f"--set {label}.")
        method["options"][key] = value
        method["chosen"] += f"; {key} set on the command line"
    return preset


def _check_paths(preset: dict[str, Any], inputs: Table1Inputs) -> None:
    """Dataset folders the preset needs, and files named by path-like options, exist (before any work)."""
    for key, dataset in preset["datasets"].items():
        folder = inputs.folder(dataset["source"])
        if dataset["source"] != "embedded" and (folder is None or not Path(folder).is_dir()):
            raise ValueError(f"{key} needs --{dataset['source']} DIR (a folder), got {folder!r}")
    for label, method in preset["methods"].items():
        prompt_file = method["options"].get("prompt_file")
        if prompt_file is not None and not Path(prompt_file).is_file():
            raise ValueError(f"{label}: prompt_file {prompt_file} does not exist; train it (`misato train prompt`) "
                             f"and pass --set {label}.prompt_file=PATH")
        model = method["options"].get("model")
        if method["spec"] == "asuka-sd" and not Path(model or "").exists():
            raise ValueError(f"{label}: model {model} does not exist; train ASUKA-SD (`misato train`) and pass "
                             f"--set {label}.model=RUN")


def run_table1(inputs: Table1Inputs) -> dict[str, Any]:
    """Run the preset (see the module docstring); returns the summary written to OUT/reproduce.json. Failed pairs
    are in its "outcomes" (status "failed"); the caller decides the exit status."""
    from evaluators.scoring import ScoreConfig
    from misato.devices import check_device
    from misato.lock import folder_lock
    from misato.jobs.pipeline import EMBEDDED, DatasetEntry, RunConfig, open_dataset

    preset = apply_sets(load_preset(inputs.preset), inputs.sets)
    methods = preset["methods"]
    if inputs.methods:
        unknown = [m for m in inputs.methods if m not in methods]
        if unknown:
            raise ValueError(f"--methods {', '.join(unknown)}: not in preset {inputs.preset} "
                             f"({', '.join(methods)})")
        methods = {m: methods[m] for m in inputs.methods}
    check_device(inputs.device)
    _check_paths({**preset, "methods": methods}, inputs)
    out = Path(inputs.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    boot = preset.get("bootstrap", {})
    score = ScoreConfig(protocol=preset["protocol"], device=inputs.device, weights=dict(inputs.weights),
                        allow_download=inputs.allow_download, progress=inputs.progress,
                        bootstrap=boot.get("resamples", BOOTSTRAP_RESAMPLES),
                        set_bootstrap=boot.get("set_resamples", SET_BOOTSTRAP_RESAMPLES),
                        kid_bootstrap=boot.get("kid_resamples", KID_BOOTSTRAP_RESAMPLES))
    score.selected()
    datasets = []
    for key, spec in preset["datasets"].items():  # every dataset opened (built, checked) before any work
        source = inputs.folder(spec["source"]) or EMBEDDED  # a missing folder was refused by _check_paths
        base = RunConfig(methods=[], datasets=[], out_dir=out, score=score, device=inputs.device, seed=preset["seed"],
                         kind=spec["kind"], embedded_size=spec.get("embedded_size", EMBEDDED_SIZE), progress=inputs.progress,
                         reuse_scores=True)
        dataset, _ = open_dataset(DatasetEntry(source, label=dataset_label(key, inputs.preset)), base)
        datasets.append((dataset, spec["kind"], base))
    with folder_lock(out):
        return _run_pairs(inputs, preset, methods, datasets, score, out)


def _run_pairs(inputs: Table1Inputs, preset: dict[str, Any], methods: dict[str, Any], datasets: list[Any],
               score: Any, out: Path) -> dict[str, Any]:
    from leaderboard import write_reports
    from leaderboard.render import render_markdown
    from leaderboard.results import collect
    from leaderboard.tables import build_table1
    from misato.jobs.pipeline import MethodEntry, failed_runs, run_pairs

    run = RunFolder(out)
    outcomes: list[Any] = []
    summary: dict[str, Any] = {"table": "table1", "status": "running", "preset": preset,
                               "planned": [{"dataset": d.name, "method": m} for d, _, _ in datasets for m in methods],
                               "outcomes": []}

    def save(status: str) -> None:
        summary.update(status=status, outcomes=[vars(o) for o in outcomes])
        atomic_write_json(run.reproduce_record, summary)

    run_pairs([(dataset, kind, MethodEntry(label, method["spec"]),
                replace(base, batch_size=method["batch_size"], options=dict(method["options"])))
               for dataset, kind, base in datasets for label, method in methods.items()], outcomes, save)
    failures = failed_runs(outcomes, score)
    if run.result_files() or failures:
        results = collect([run.results]) if run.result_files() else []
        table = build_table1(results, failures=failures)
        table.notes += [f"{label} ({m['spec']}): {m['chosen']}; options "
                        + (", ".join(f"{k}={v}" for k, v in m["options"].items()) or "none") for label, m in methods.items()]
        atomic_write_text(out / "table1.md", render_markdown([table], title=f"Table 1 ({inputs.preset})"))
    if run.result_files():
        try:
            summary["leaderboard"] = {k: str(v) for k, v in write_reports([run.results], run.leaderboard,
                                                                          failures=failures).items()}
        except Exception as error:  # noqa: BLE001 (table1.md and the results stand; the failure is reported)
            summary["leaderboard_error"] = f"leaderboard not written: {error}"
    save("finished")
    return summary
