"""What an output folder of `misato run` / `misato reproduce` holds: per (dataset, method), the inpainting's
progress and whether it has been scored. Read from the files only (manifests and result records).

States: "scored" (a result file exists), "inpainted" (all samples, not scored yet), "running" (partial and its
manifest was updated in the last `RUNNING_WINDOW_S` seconds), "stopped" (partial, older), "missing" (a pair the
folder's reproduce.json asks for that has not started).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

RUNNING_WINDOW_S = 600


@dataclass
class PairStatus:
    dataset: str
    method: str
    state: str
    finished: int
    total: int | None
    updated: str | None = None


def folder_status(out: str | Path, now: datetime | None = None) -> list[PairStatus]:
    """Every (dataset, method) of `out`, in name order; see the module docstring."""
    from evaluators.record import ResultRecord

    out, now = Path(out), now or datetime.now(timezone.utc)
    if not out.is_dir():
        raise ValueError(f"{out}: not a folder")
    scored = set()
    for path in sorted((out / "results").glob("*.json")):
        record = ResultRecord.read(path)
        scored.add((record.dataset.name, record.method))
    found: dict[tuple[str, str], PairStatus] = {}
    for path in sorted((out / "predictions").glob("*/*/manifest.json")):
        manifest = json.loads(path.read_text())
        dataset = manifest.get("dataset", {}).get("name", path.parent.parent.name)
        method = path.parent.name
        finished, total = int(manifest.get("num_finished", 0)), manifest.get("dataset", {}).get("num_selected")
        updated = manifest.get("updated")
        if (dataset, method) in scored:
            state = "scored"
        elif manifest.get("status") == "complete":
            state = "inpainted"
        else:
            age = (now - datetime.fromisoformat(updated)).total_seconds() if updated else None
            state = "running" if age is not None and age < RUNNING_WINDOW_S else "stopped"
        found[(dataset, method)] = PairStatus(dataset, method, state, finished, total, updated)
    wanted = out / "reproduce.json"
    if wanted.is_file():
        from misato.reproduce.table1 import dataset_label

        summary = json.loads(wanted.read_text())
        preset = summary.get("preset", {})
        for key in preset.get("datasets", {}):
            for method in preset.get("methods", {}):
                name = dataset_label(key, preset.get("name", ""))
                found.setdefault((name, method), PairStatus(name, method, "missing", 0, None))
    return [found[k] for k in sorted(found)]


def format_status(rows: list[PairStatus]) -> str:
    """A plain-text table, then the count per state."""
    if not rows:
        return "nothing started yet"
    width = max(len(r.method) for r in rows)
    lines = [f"{r.dataset:<20} {r.method:<{width}}  {r.state:<9} {r.finished}/{r.total if r.total is not None else '?'}"
             + (f"  (updated {r.updated})" if r.updated and r.state in ("running", "stopped") else "") for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return "\n".join([*lines, ", ".join(f"{n} {state}" for state, n in counts.items())])
