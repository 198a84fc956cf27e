"""`misato reproduce table2`: the paper's Table 2 (a), (b), (d) from training data to the tables, resumable.

A preset is data (`table2_<name>.json` in this package): `stages` (named training runs: stage, presets, --set
pairs, inputs by reference: "pretrained" = the pre-trained MAE, "stage:NAME" = another stage's folder), `runs`
(an alignment stage + a decoder stage or "vae": one ASUKA-SD model each) and `rows` (Table 2 sub-table, the
paper's variant name, run). Shared stages are trained once and reused (one fine-tuned MAE for every alignment,
one latent cache, one ASUKA run for the three rows it appears in).

Folder layout under --out: `stages/<stage>/` (training runs), `models/<run>/` (ASUKA-SD manifests naming the
alignment, MAE and decoders), `inpaint/<run>/` (`misato inpaint` output), `results/` (score files),
`table2.md`, `table2_<sub-table>.csv`, `reproduce.json` (preset, inputs, versions, what was done or reused).
Every level is resumable: a finished stage, latent shard, inpainted sample or score is never redone, so rerunning
the same command after a kill continues; under `accelerate launch` training and inpainting use every process.

A stage or run that fails does not end the job: what builds on it is skipped (and says why), everything else goes
on, the failed runs' rows read "failed" in table2.md and the CSVs, reproduce.json lists the failures, and
`misato reproduce table2` exits 1. One job at a time per --out (`misato.lock`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from misato.io import atomic_write_json, atomic_write_text
from misato.data import CUSTOM, MISATO
from misato.outputs import RunFolder

log = logging.getLogger(__name__)

PRESET_PREFIX = "table2_"


def preset_names() -> list[str]:
    return sorted(p.name[len(PRESET_PREFIX):-5] for p in resources.files("misato.jobs.reproduce").iterdir()
                  if p.name.startswith(PRESET_PREFIX) and p.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset `name`, checked: every reference names a stage, every row a run, every stage a known stage."""
    from baselines.asuka.training import COMMANDS, config_stage
    from baselines.asuka.training.config import build_config

    if name not in preset_names():
        raise ValueError(f"unknown table2 preset {name!r}; known: {', '.join(preset_names())}")
    preset = json.loads(resources.files("misato.jobs.reproduce").joinpath(f"{PRESET_PREFIX}{name}.json").read_text())
    stages = preset["stages"]
    for stage_name, spec in stages.items():
        kind = spec["stage"]
        if kind not in COMMANDS:
            raise ValueError(f"preset {name}: stage {stage_name} has unknown kind {kind!r}")
        build_config(config_stage(kind), spec.get("presets", []), sets=spec.get("sets", []))
        for key in ("mae", "latents"):
            ref = spec.get(key)
            if ref and ref != "pretrained" and ref.removeprefix("stage:") not in stages:
                raise ValueError(f"preset {name}: stage {stage_name} refers to unknown {ref!r}")
    for run, spec in preset["runs"].items():
        for key in ("alignment", "decoder"):
            if spec[key] != "vae" and spec[key] not in stages:
                raise ValueError(f"preset {name}: run {run} refers to unknown stage {spec[key]!r}")
    for row in preset["rows"]:
        if row["run"] not in preset["runs"]:
            raise ValueError(f"preset {name}: row {row['variant']} refers to unknown run {row['run']!r}")
    return preset


@dataclass
class Table2Inputs:
    """data: training images; misato: the evaluation dataset (None: the preset's embedded set); mae_pretrained:
    the MAE-FAR pre-trained MAE (None: the preset's random stand-in); weights: explicit registry files."""

    preset: str
    out: str
    data: str | None = None
    misato: str | None = None
    mae_pretrained: str | None = None
    coco_annotations: str | None = None
    weights: dict[str, str] = field(default_factory=dict)
    allow_download: bool = False
    device: str = "auto"
    progress: bool = True


def _evaluation_set(preset: dict[str, Any], inputs: Table2Inputs) -> tuple[Any, str | None]:
    """(the evaluation Dataset, the training-image folder it implies for smoke runs)."""
    from misato.data import load_dataset
    from misato.embedded import load_embedded

    evaluation = preset["evaluation"]
    if inputs.misato:
        return load_dataset(inputs.misato), None
    if "embedded_size" in evaluation:
        dataset = load_embedded(size=int(evaluation["embedded_size"]))  # built (and hash-checked) once
        return dataset, str(Path(dataset.root) / "image")
    raise ValueError(f"preset {preset['name']} evaluates on MISATO: pass --misato MISATO/512")


def _pretrained_mae(preset: dict[str, Any], inputs: Table2Inputs, out: Path) -> str:
    """The pre-trained MAE file: --mae-pretrained, or (smoke) a random MAE of the named size saved without the
    fine-tune parameters, as a pre-trained MAE-FAR file is. (--mae-pretrained was checked by `run_table2`.)"""
    if inputs.mae_pretrained:
        return inputs.mae_pretrained
    spec = preset["pretrained_mae"]
    if not isinstance(spec, dict) or "random" not in spec:
        raise ValueError(f"preset {preset['name']} needs --mae-pretrained FILE (the MAE-FAR pre-trained MAE)")
    path = out / "stages" / "pretrained-mae" / "mae_pretrained.safetensors"
    if not path.is_file():
        import torch

        from baselines.asuka.mae import AsukaMAE
        from baselines.asuka.trained import save_safetensors

        torch.manual_seed(preset["seed"])
        state = {k: v for k, v in AsukaMAE(spec["random"]).state_dict().items()
                 if not k.startswith(("decoder_patch_embed", "alpha"))}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(state, path)
    return str(path)


def _ref(value: str | None, pretrained: str, out: Path) -> str | None:
    if value is None:
        return None
    return pretrained if value == "pretrained" else str(out / "stages" / value.removeprefix("stage:"))


def _needs(spec: dict[str, Any]) -> list[str]:
    """The stages a stage (its "mae" / "latents" references) or a run (its "alignment" / "decoder") builds on."""
    refs = [spec.get("mae"), spec.get("latents"), spec.get("alignment"), spec.get("decoder")]
    return [ref.removeprefix("stage:") for ref in refs if ref and ref not in ("pretrained", "vae")]


def _agree(state: Any, value: Any) -> Any:
    """Rank 0's `value` on every process (one process: `value` itself)."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def run_table2(inputs: Table2Inputs) -> dict[str, Any]:
    """Everything of the module docstring; returns the summary written to `reproduce.json`. A stage or run that
    fails is recorded (summary["failures"]) and the work that does not build on it goes on: its rows read "failed"
    in the tables and the caller exits 1. Holds OUT's lock (`misato.lock`) while it works."""
    from baselines.asuka.training.data import list_training_images
    from misato.lock import folder_lock

    preset = load_preset(inputs.preset)
    out = Path(inputs.out).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    dataset, embedded_images = _evaluation_set(preset, inputs)
    data = inputs.data or embedded_images
    if data is None:
        raise ValueError(f"preset {preset['name']} trains on --data (Places2 training images)")
    list_training_images(data)  # fails now, naming the folder, rather than after the first stage
    if inputs.mae_pretrained and not Path(inputs.mae_pretrained).is_file():
        raise FileNotFoundError(f"--mae-pretrained {inputs.mae_pretrained}: no such file")
    with folder_lock(out):
        return _run_locked(preset, inputs, out, dataset, data)


def _run_locked(preset: dict[str, Any], inputs: Table2Inputs, out: Path, dataset: Any, data: str) -> dict[str, Any]:
    from accelerate.state import PartialState

    from baselines.asuka.training import LATENTS, config_stage, stage_builder
    from baselines.asuka.training.config import build_config
    from baselines.asuka.training.latents import build_latent_cache
    from baselines.asuka.training.loop import TrainInputs, train
    from misato.environment import git_state, package_versions, utc_now
    from misato.jobs.pipeline import error_text

    pretrained = _pretrained_mae(preset, inputs, out)
    state = PartialState(cpu=inputs.device == "cpu")
    summary: dict[str, Any] = {"preset": preset, "inputs": {**vars(inputs), "data": data, "pretrained_mae": pretrained},
                               "dataset": {"name": dataset.name, "root": str(dataset.root), "samples": len(dataset)},
                               "versions": package_versions(), "git": git_state(), "started": utc_now(),
                               "status": "running", "stages": {}, "runs": {}, "failures": []}

    def fail(what: str, name: str, error: str) -> None:
        summary["failures"].append({"kind": what, "name": name, "error": error})
        summary[f"{what}s"][name] = {"status": "failed", "error": error}
        log.error("%s %s failed: %s", what, name, error.splitlines()[0])

    failed: set[str] = set()
    try:
        for name, spec in preset["stages"].items():
            blocked = [stage for stage in _needs(spec) if stage in failed]
            if blocked:
                failed.add(name)
                fail("stage", name, f"not trained: it builds on stage {blocked[0]}, which failed")
                continue
            folder = out / "stages" / name
            kind = spec["stage"]
            config = build_config(config_stage(kind), spec.get("presets", []), sets=spec.get("sets", []))
            error = None
            try:
                if kind == LATENTS:
                    if state.is_main_process:
                        index = build_latent_cache(config, data, str(folder), progress=inputs.progress,
                                                   device=inputs.device, allow_download=inputs.allow_download)
                        summary["stages"][name] = {"latents": len(index["entries"])}
                else:
                    train_inputs = TrainInputs(data=data, out=str(folder), mae=_ref(spec.get("mae"), pretrained, out),
                                               latents=_ref(spec.get("latents"), pretrained, out),
                                               coco_annotations=inputs.coco_annotations, weights=inputs.weights,
                                               allow_download=inputs.allow_download)
                    record = train(config, stage_builder(kind), train_inputs, max_steps=spec.get("max_steps"),
                                   progress=inputs.progress, cpu=inputs.device == "cpu")
                    summary["stages"][name] = {"status": record["status"], "step": record["step"]}
            except Exception as exc:  # noqa: BLE001 (a failed stage fails what builds on it, not the others)
                error = error_text(exc)
            if kind == LATENTS:
                state.wait_for_everyone()
                error = _agree(state, error)
            if error is not None:
                failed.add(name)
                fail("stage", name, error)

        results = _inpaint_and_score(preset, inputs, out, dataset, state, summary, failed, fail)
    except BaseException:  # Ctrl-C, SIGTERM: recorded; the lock is released by the caller
        if state.is_main_process:
            summary["status"] = "interrupted"
            atomic_write_json(RunFolder(out).reproduce_record, summary)
        raise
    if state.is_main_process:
        _write_tables(preset, results, out, _failed_rows(preset, dataset, summary, inputs))
        summary["finished"] = utc_now()
        summary["status"] = "finished"
        atomic_write_json(RunFolder(out).reproduce_record, summary)
    state.wait_for_everyone()
    return summary


def _failed_rows(preset: dict[str, Any], dataset: Any, summary: dict[str, Any],
                 inputs: Table2Inputs) -> dict[str, Any]:
    """{run: FailedRun} of the runs that failed (a stage they build on, or their inpainting or scoring)."""
    from evaluators.protocols import get_protocol
    from evaluators.scoring import ScoreConfig
    from leaderboard.tables import FailedRun

    protocol = get_protocol(preset["protocol"])
    return {run: FailedRun(f"asuka-sd[{run}]", dataset.name, MISATO if inputs.misato else CUSTOM,
                           f"{protocol.name} v{protocol.version}", ScoreConfig().paste_back, "run",
                           record["error"].splitlines()[0])
            for run, record in summary["runs"].items() if record.get("status") == "failed"}


def _inpaint_and_score(preset: dict[str, Any], inputs: Table2Inputs, out: Path, dataset: Any, state: Any,
                       summary: dict[str, Any], failed: set[str], fail: Any) -> dict[str, Any]:
    """Inpaint and score every run whose stages were trained (each once); returns {run: Result}. A run that
    fails, or builds on a failed stage, is recorded with `fail("run", name, error)`."""
    from baselines.asuka.trained import compose_asuka_sd
    from evaluators.record import result_stem
    from evaluators.scoring import ScoreConfig, score
    from leaderboard.results import load_result
    from misato.jobs.pipeline import error_text
    from baselines.runner import inpaint_dataset

    settings = preset["inpaint"]
    results = {}
    for run, spec in preset["runs"].items():
        blocked = [stage for stage in _needs(spec) if stage in failed]
        if blocked:
            fail("run", run, f"not inpainted: it builds on stage {blocked[0]}, which failed")
            continue
        model = out / "models" / run
        method = f"asuka-sd[{run}]"
        path = RunFolder(out).results / f"{result_stem(method, dataset.name, preset['protocol'])}.json"
        predictions = out / "inpaint" / run
        try:
            if state.is_main_process:
                decoders = {} if spec["decoder"] == "vae" else {spec["decoder"]: out / "stages" / spec["decoder"]}
                compose_asuka_sd(out / "stages" / spec["alignment"], model, decoders)
            state.wait_for_everyone()
            options = {**settings.get("options", {}), "model": str(model), "decoder": spec["decoder"]}
            inpaint_dataset(dataset, "asuka-sd", predictions, seed=preset["seed"], batch_size=settings["batch_size"],
                            device=inputs.device, weight_paths=inputs.weights,
                            allow_download=inputs.allow_download, options=options, progress=inputs.progress)
            if state.is_main_process and not path.is_file():
                score(dataset, predictions, method, RunFolder(out).results,
                      ScoreConfig(protocol=preset["protocol"], device=inputs.device, weights=dict(inputs.weights),
                                  allow_download=inputs.allow_download),
                      dataset_kind=MISATO if inputs.misato else CUSTOM)
            state.wait_for_everyone()
            if state.is_main_process:
                results[run] = load_result(path)
                summary["runs"][run] = {"model": str(model), "predictions": str(predictions), "result": str(path)}
        except Exception as exc:  # noqa: BLE001 (a failed run fails its rows only)
            fail("run", run, error_text(exc))
    return results


def _write_tables(preset: dict[str, Any], results: dict[str, Any], out: Path, failed: dict[str, Any]) -> None:
    """table2.md (measured, paper and diff rows; a failed run's rows read "failed") and one CSV per sub-table."""
    from leaderboard.render import render_markdown, table_csv
    from leaderboard.tables import build_table2, paper_table2

    tables = build_table2([(row["table"], row["variant"], results.get(row["run"]) or failed[row["run"]])
                           for row in preset["rows"]])
    atomic_write_text(out / "table2.md", render_markdown([*tables, paper_table2()],
                                                         title=f"Table 2 ({preset['name']} preset)"))
    for table in tables:
        atomic_write_text(out / f"{table.key}.csv", table_csv(table))
