"""Read result files (`evaluators.record.ResultRecord`) for the tables and the report.

The leaderboard reads result folders only: the record, its per-image CSV and the thumbnails the scorer wrote;
it never opens a dataset or imports a model. Relative paths in a file (`per_image_csv`, thumbnails) are
resolved against the folder holding the JSON file, so a results folder can be moved as a whole.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from evaluators.metrics import spec
from evaluators.record import ResultFileError, ResultRecord

logger = logging.getLogger(__name__)

RESULT_NAME = re.compile(r"^[^/]+__[^/]+__[^/]+\.json$")

__all__ = ["Result", "ResultFileError", "collect", "find_result_files", "load_result", "results_frame"]


def _values(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row without `n`, null as NaN (the tables' missing value)."""
    return {k: math.nan if v is None else float(v) for k, v in row.items() if k != "n"}


@dataclass(frozen=True)
class Result:
    """One result file as the tables use it: its record, metric values as floats (NaN where the file has null)
    and its files resolved to absolute paths (None when the file has none)."""

    path: Path
    record: ResultRecord
    per_image_csv: Path | None
    thumbnails: dict[str, dict[str, Path]]

    @property
    def method(self) -> str:
        return self.record.method

    @property
    def dataset_name(self) -> str:
        return self.record.dataset.name

    @property
    def dataset_kind(self) -> str:
        return self.record.dataset.kind

    @property
    def protocol_name(self) -> str:
        return self.record.protocol_name

    @property
    def protocol_label(self) -> str:
        return f"{self.record.protocol_name} v{self.record.protocol_version}"

    @property
    def paste_back(self) -> bool | None:
        return self.record.paste_back

    @property
    def overall(self) -> dict[str, float]:
        return _values(self.record.overall)

    @property
    def n(self) -> int | None:
        return self.record.overall.get("n")

    @property
    def per_domain(self) -> dict[str, dict[str, float]]:
        return {domain: _values(row) for domain, row in self.record.per_domain.items()}

    @property
    def per_domain_n(self) -> dict[str, int | None]:
        return {domain: row.get("n") for domain, row in self.record.per_domain.items()}

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return self.record.higher_is_better

    @property
    def unavailable(self) -> dict[str, str]:
        return self.record.unavailable

    @property
    def is_study(self) -> bool:
        """A user-study result (`misato study tally`): every metric of its overall row is a study metric."""
        names = [key for key in self.record.overall if key != "n"]
        return bool(names) and all(spec(name).aggregate == "study" for name in names)


def _beside(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def load_result(path: str | os.PathLike) -> Result:
    """Read and validate one result file; raises `ResultFileError` naming the file and the key."""
    path = Path(path).resolve()
    record = ResultRecord.read(path)
    base = path.parent
    thumbnails = {stem: {role: _beside(p, base) for role, p in roles.items()} for stem, roles in record.thumbnails.items()}
    return Result(path, record, _beside(record.per_image_csv, base), thumbnails)


def per_image_scores(result: Result) -> tuple["pandas.DataFrame | None", str | None]:  # noqa: F821
    """(the per-image CSV indexed by sample id, None) or (None, why it cannot be read); (None, None) when the
    result has no per-image CSV. Empty cells are NaN."""
    import pandas as pd

    from evaluators.metrics import PER_IMAGE

    if result.per_image_csv is None:
        return None, None
    if not result.per_image_csv.is_file():
        return None, f"per-image scores not found: {result.per_image_csv}"
    scores = pd.read_csv(result.per_image_csv, dtype={"stem": str, "domain": str}, keep_default_na=False,
                         na_values={m: [""] for m in (*PER_IMAGE, "hole_ratio")})
    if "stem" not in scores.columns:
        return None, f"{result.per_image_csv}: no 'stem' column"
    return scores.drop_duplicates("stem").set_index("stem"), None


def _looks_like_result(path: Path) -> bool:
    """Inside folders, a JSON is a result file if it has the result name or a top-level "metrics" key.

    Other JSON files (run manifests, caches) are skipped; a file that looks like a result but does not
    validate is an error, not a silent skip.
    """
    if RESULT_NAME.match(path.name):
        return True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "metrics" in data and "schema_version" in data


def find_result_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into result-file paths, without duplicates."""
    found: list[Path] = []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            for candidate in sorted(item.rglob("*.json")):
                if not any(part.startswith(".") for part in candidate.relative_to(item).parts) and _looks_like_result(candidate):
                    found.append(candidate.resolve())
        elif item.is_file():
            found.append(item.resolve())
        else:
            raise FileNotFoundError(f"{item}: no such result file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ResultFileError(f"no result JSON files found in {', '.join(str(p) for p in paths)}")
    return unique


def collect(paths: Iterable[str | os.PathLike]) -> list[Result]:
    """Load every result file under `paths` (files or folders), in path order."""
    paths = list(paths)
    results = [load_result(p) for p in find_result_files(paths)]
    logger.debug("collected %d result files", len(results))
    return results


def results_frame(results: list[Result]) -> "pandas.DataFrame":  # noqa: F821 (pandas imported lazily)
    """One tidy row per (result, domain, metric): columns method, dataset, kind, protocol, paste_back,
    domain ("overall" or a domain name), metric, value, n, file. Handy for ad-hoc pandas analysis."""
    import pandas as pd

    rows = []
    for r in results:
        blocks = [("overall", r.overall, r.n)] + [(d, v, r.per_domain_n.get(d)) for d, v in r.per_domain.items()]
        for domain, values, n in blocks:
            for metric, value in values.items():
                rows.append(
                    dict(method=r.method, dataset=r.dataset_name, kind=r.dataset_kind, protocol=r.protocol_label,
                         paste_back=r.paste_back, domain=domain, metric=metric, value=value, n=n, file=str(r.path))
                )
    return pd.DataFrame(rows, columns=["method", "dataset", "kind", "protocol", "paste_back", "domain", "metric",
                                       "value", "n", "file"])
