"""Read and validate the result JSON files written by the scoring core.

A result file is `<method>__<dataset>__<protocol>.json` (schema below); the leaderboard reads these files
only and never imports a model or a metric. Relative paths inside a file (`dataset.root`, `per_image_csv`,
`predictions`) are resolved against the folder holding the JSON file, so a results folder can be moved
together with its per-image CSVs; when nothing exists there but the path exists relative to the current
directory (the scorer was given a relative path), that one is used.

Schema version 1 (required keys marked *)::

    schema_version*: 1
    method*: str                       display name, any characters (always escaped when rendered)
    dataset*: {name*, kind* (MISATO | Places2 | custom), root, content_hash, n_images, domains,
               mask_hole_is_white, resolution}
    protocol*: {name*, version*, ...}
    paste_back: bool
    metrics*: {overall*: {n, lpips, fid, ...}, per_domain: {domain: {n, ...}}}
    higher_is_better: {metric: bool}
    unavailable: {metric: "why + fix"}
    per_image_csv: str                 columns stem, domain, lpips, psnr, ssim, grad_error, clip_score
    predictions: str                   folder of composited predictions, PNG by stem
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger(__name__)

SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
RESULT_NAME = re.compile(r"^[^/]+__[^/]+__[^/]+\.json$")

# dataset.kind as written (case-insensitive) -> the kind used for grouping; "custom" groups by dataset name.
KINDS: dict[str, str] = {"misato": "MISATO", "places2": "Places2", "custom": "custom"}


class ResultFileError(ValueError):
    """A result file that cannot be used as it is; the message names the file."""


@dataclass(frozen=True)
class Result:
    """One validated result file.

    `overall` and `per_domain` map metric name -> float (NaN where the file has null); `n` counts are ints.
    Paths are absolute (relative ones resolved against the JSON's folder); None when the file has none.
    """

    path: Path
    method: str
    dataset_name: str
    dataset_kind: str
    protocol_name: str
    protocol_version: int
    paste_back: bool | None
    overall: dict[str, float]
    n: int | None
    per_domain: dict[str, dict[str, float]]
    per_domain_n: dict[str, int | None]
    higher_is_better: dict[str, bool]
    unavailable: dict[str, str]
    dataset_root: Path | None
    dataset_resolution: int | None
    mask_hole_is_white: bool
    per_image_csv: Path | None
    predictions: Path | None
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False, default_factory=dict)

    @property
    def protocol_label(self) -> str:
        return f"{self.protocol_name} v{self.protocol_version}"


def _require(obj: dict, key: str, kind: type | tuple[type, ...], path: Path, where: str = "") -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ResultFileError(f"{path}: missing required key {where}{key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):  # JSON true is not a version
        raise ResultFileError(f"{path}: {where}{key} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _metric_values(block: Any, path: Path, where: str) -> tuple[dict[str, float], int | None]:
    """Split a metrics block into float metric values and the sample count `n`."""
    if not isinstance(block, dict):
        raise ResultFileError(f"{path}: {where} must be an object, got {type(block).__name__}")
    values: dict[str, float] = {}
    n = block.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise ResultFileError(f"{path}: {where}.n must be an integer, got {n!r}")
    for key, value in block.items():
        if key == "n":
            continue
        if value is None:
            values[key] = math.nan
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = float(value)
        else:
            raise ResultFileError(f"{path}: {where}.{key} must be a number or null, got {value!r}")
    return values, n


def _local_path(value: Any, base: Path, path: Path, key: str) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ResultFileError(f"{path}: {key} must be a string path, got {type(value).__name__}")
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return candidate
    beside = (base / candidate).resolve()
    if not beside.exists() and candidate.exists():  # written relative to the scorer's working directory
        return candidate.resolve()
    return beside


def _resolution(dataset: dict, root: Path | None) -> int | None:
    """MISATO sub-folder: `dataset.resolution` if recorded, else read back from the name that
    `misato.data.load_dataset` gives a release root ("<root name>-<resolution>")."""
    value = dataset.get("resolution")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    name = dataset.get("name")
    if root is not None and isinstance(name, str):
        match = re.fullmatch(re.escape(root.name) + r"-(\d+)", name)
        if match:
            return int(match.group(1))
    return None


def load_result(path: str | os.PathLike) -> Result:
    """Read and validate one result file; raises `ResultFileError` naming the file and the key."""
    path = Path(path).resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultFileError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: a result file holds a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        raise ResultFileError(
            f"{path}: unsupported schema_version {version!r}; this leaderboard reads "
            f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))} (re-score with this version of misato-bench)"
        )
    method = _require(data, "method", str, path)
    if not method.strip():
        raise ResultFileError(f"{path}: method is empty")
    dataset = _require(data, "dataset", dict, path)
    protocol = _require(data, "protocol", dict, path)
    metrics = _require(data, "metrics", dict, path)
    kind_raw = _require(dataset, "kind", str, path, "dataset.")
    if kind_raw.lower() not in KINDS:
        raise ResultFileError(f"{path}: dataset.kind must be one of MISATO, Places2, custom; got {kind_raw!r}")
    overall, n = _metric_values(_require(metrics, "overall", dict, path, "metrics."), path, "metrics.overall")
    per_domain: dict[str, dict[str, float]] = {}
    per_domain_n: dict[str, int | None] = {}
    for domain, block in (metrics.get("per_domain") or {}).items():
        per_domain[domain], per_domain_n[domain] = _metric_values(block, path, f"metrics.per_domain.{domain}")
    higher = data.get("higher_is_better") or {}
    if not isinstance(higher, dict) or not all(isinstance(v, bool) for v in higher.values()):
        raise ResultFileError(f"{path}: higher_is_better must map metric names to true/false")
    unavailable = data.get("unavailable") or {}
    if not isinstance(unavailable, dict):
        raise ResultFileError(f"{path}: unavailable must map metric names to reasons")
    paste_back = data.get("paste_back")
    base = path.parent
    root = _local_path(dataset.get("root"), base, path, "dataset.root")
    hole_is_white = dataset.get("mask_hole_is_white", True)
    return Result(
        path=path,
        method=method,
        dataset_name=_require(dataset, "name", str, path, "dataset."),
        dataset_kind=KINDS[kind_raw.lower()],
        protocol_name=_require(protocol, "name", str, path, "protocol."),
        protocol_version=_require(protocol, "version", int, path, "protocol."),
        paste_back=paste_back if isinstance(paste_back, bool) else None,
        overall=overall,
        n=n,
        per_domain=per_domain,
        per_domain_n=per_domain_n,
        higher_is_better=dict(higher),
        unavailable={str(k): str(v) for k, v in unavailable.items()},
        dataset_root=root,
        dataset_resolution=_resolution(dataset, root),
        mask_hole_is_white=hole_is_white if isinstance(hole_is_white, bool) else True,
        per_image_csv=_local_path(data.get("per_image_csv"), base, path, "per_image_csv"),
        predictions=_local_path(data.get("predictions"), base, path, "predictions"),
        raw=data,
    )


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
