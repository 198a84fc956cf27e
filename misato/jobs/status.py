"""What an output folder of `misato run` / `misato reproduce table1` holds: per (dataset, method), its state and
how many samples are on disk. Read from the files only: the job's record (OUT/run.json or OUT/reproduce.json: the
planned pairs and each pair's outcome), the result records (OUT/results), the inpainting folders (their manifest
and per-sample files) and the folder's lock (`misato.lock`: is a job running there now?).

States, first match wins:
  "failed"      the job's record says the pair failed (its error shown); samples on disk counted;
  "scored"      a result file exists;
  "inpainted"   every sample inpainted (manifest complete), not scored yet;
  "running"     samples being written now: the folder's lock is held by a live job;
  "partial"     some samples on disk, no job running (interrupted or crashed: rerun to resume);
  "waiting"     planned by the running job, not started yet;
  "missing"     planned by the job's record, not started, and no job running (e.g. after Ctrl-C).
Counts "N/M": N samples finished on disk (raw, record and composite files all present), M selected (from the
manifest; "?" before the pair started).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misato.outputs import OutputFolder, RunFolder

STATES = ("failed", "scored", "inpainted", "running", "partial", "waiting", "missing")


@dataclass
class PairStatus:
    dataset: str
    method: str
    state: str
    finished: int
    total: int | None
    updated: str | None = None
    error: str | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _job_record(out: Path) -> tuple[list[tuple[str, str]], dict[tuple[str, str], dict[str, Any]]]:
    """(planned pairs, latest outcome per pair) from the folder's run.json / reproduce.json (empty when none)."""
    planned: list[tuple[str, str]] = []
    outcomes: dict[tuple[str, str], dict[str, Any]] = {}
    for path in RunFolder(out).job_records:
        if not path.is_file():
            continue
        record = _read_json(path)
        if "planned" in record:
            planned += [(p["dataset"], p["method"]) for p in record["planned"]]
        else:  # a reproduce.json written before the plan was recorded: the preset's datasets x methods
            from misato.jobs.reproduce.table1 import dataset_label

            preset = record.get("preset", {})
            planned += [(dataset_label(key, preset.get("name", "")), method)
                        for key in preset.get("datasets", {}) for method in preset.get("methods", {})]
        for outcome in record.get("outcomes", []):
            outcomes[(outcome["dataset"], outcome["method"])] = outcome
    return planned, outcomes


def finished_samples(folder: OutputFolder) -> int:
    """Samples whose raw, record and composite files are all present (presence only: no hashing)."""
    if not folder.records.is_dir():
        return 0
    return sum(1 for record in folder.records.glob("*.json")
               if (folder.raw / f"{record.stem}.png").is_file() and (folder.composite / f"{record.stem}.png").is_file())


def folder_status(out: str | Path) -> list[PairStatus]:
    """Every (dataset, method) of `out` (planned by its job record or found on disk), in name order."""
    from evaluators.record import ResultRecord
    from misato.lock import is_locked

    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"{out}: not a folder")
    running = is_locked(out)
    planned, outcomes = _job_record(out)
    scored = set()
    run = RunFolder(out)
    for path in run.result_files():
        record = ResultRecord.read(path)
        scored.add((record.dataset.name, record.method))
    on_disk: dict[tuple[str, str], tuple[int, int | None, str | None, str | None]] = {}
    for folder in run.prediction_folders():
        manifest_path = OutputFolder(folder).manifest
        manifest = _read_json(manifest_path) if manifest_path.is_file() else {}
        dataset = manifest.get("dataset", {}).get("name", folder.parent.name)
        on_disk[(dataset, folder.name)] = (finished_samples(OutputFolder(folder)),
                                           manifest.get("dataset", {}).get("num_selected"), manifest.get("status"),
                                           manifest.get("updated"))
    rows = []
    for pair in sorted({*planned, *outcomes, *scored, *on_disk}):
        finished, total, status, updated = on_disk.get(pair, (0, None, None, None))
        outcome = outcomes.get(pair, {})
        error = None
        if outcome.get("status") == "failed":  # the latest job's word on the pair (a rerun rewrites the record)
            state = "failed"
            error = f"{outcome.get('stage')}: {(outcome.get('error') or '').splitlines()[0] if outcome.get('error') else '?'}"
        elif pair in scored:
            state = "scored"
        elif status == "complete":
            state = "inpainted"
        elif pair in on_disk:
            state = "running" if running else "partial"
        else:
            state = "waiting" if running else "missing"
        rows.append(PairStatus(pair[0], pair[1], state, finished, total, updated, error))
    return rows


def format_status(rows: list[PairStatus]) -> str:
    """A plain-text table (failed pairs with their error), then the count per state."""
    if not rows:
        return "nothing started yet"
    width = max(len(r.method) for r in rows)
    lines = [f"{r.dataset:<20} {r.method:<{width}}  {r.state:<9} {r.finished}/{r.total if r.total is not None else '?'}"
             + (f"  ({r.error})" if r.error else "")
             + (f"  (updated {r.updated})" if r.updated and r.state in ("running", "partial") else "") for r in rows]
    counts = {state: sum(r.state == state for r in rows) for state in STATES}
    return "\n".join([*lines, ", ".join(f"{n} {state}" for state, n in counts.items() if n)])
