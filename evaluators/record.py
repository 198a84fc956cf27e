"""The result record: what the scorer writes and the leaderboard reads, one typed owner for both.

`ResultRecord.to_json()` gives the file's JSON object; `ResultRecord.from_json()` validates one (a
`ResultFileError` names the file and the key) and fills what older schema versions lack. Data only (stdlib),
so the leaderboard reads results without importing a model.

Schema version 2 (version 1 files are read too: no `resolution`, no `thumbnails`):

    schema_version: 2
    method: str                    display name, any characters (always escaped when rendered)
    dataset: {name, kind (MISATO | Places2 | custom), root, content_hash, n_images, domains,
              mask_hole_is_white, mask_binary_01 (masks stored 0/1), resolution (MISATO sub-folder, null for
              other layouts)}
    protocol: {name, version, ...}  `evaluators.protocols.Protocol.record()`
    paste_back: bool               the scorer composited predictions onto the ground truth before scoring
    metrics: {overall: {n, <metric>: number | null, ...}, per_domain: {domain: {n, ...}}}
    higher_is_better: {metric: bool}   from `evaluators.metrics`
    unavailable: {metric: "why + fix"}
    notes: {"<scope>.<metric>": why a value is null or leaves samples out}
    intervals: {scope: {metric: [low, high]}}   95% bootstrap intervals (`evaluators.bootstrap`)
    bootstrap: {resamples, set_resamples, seed, level, method, seconds}
    per_hole_ratio: {"0-10%": {n, <per-image metric>: mean}, ...}   hole-ratio bins of 10%
    predictions: str               the folder of prediction files the scorer read (raw outputs, or files already
                                   composited by their author); paste_back says what was scored
    per_image_csv: str             columns stem, domain, then the per-image metrics
    thumbnails: {stem: {input, scored, truth}}   small images of a few samples for the report's grid
    ... provenance: weights, versions, seeds, config, device, timing, git_commit, git_dirty, created
Relative paths (`dataset.root`, `predictions`, `per_image_csv`, thumbnails) are relative to the JSON's folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from misato.data import KINDS as DATASET_KINDS

SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)

# dataset.kind as written (case-insensitive) -> the kind used for grouping; "custom" groups by dataset name.
KINDS: dict[str, str] = {kind.lower(): kind for kind in DATASET_KINDS}
THUMBNAIL_ROLES: tuple[str, ...] = ("input", "scored", "truth")


def result_stem(method: str, dataset: str, protocol: str) -> str:
    """File stem `<method>__<dataset>__<protocol>` of a result, with unsafe characters replaced."""
    safe = lambda text: re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"  # noqa: E731
    return f"{safe(method)}__{safe(dataset)}__{safe(protocol)}"


class ResultFileError(ValueError):
    """A result file that cannot be used as it is; the message names the file."""


@dataclass
class DatasetInfo:
    """What was scored against. root: absolute or relative to the result file; resolution: MISATO sub-folder."""

    name: str
    kind: str
    root: str | None = None
    content_hash: str | None = None
    n_images: int | None = None
    domains: list[str] = field(default_factory=list)
    mask_hole_is_white: bool = True
    resolution: int | None = None
    mask_binary_01: bool = False


@dataclass
class ResultRecord:
    """One result file. `overall` / `per_domain` rows hold `n` (int) and metric values (float, or None = null)."""

    method: str
    dataset: DatasetInfo
    protocol: dict[str, Any]
    overall: dict[str, Any]
    per_domain: dict[str, dict[str, Any]] = field(default_factory=dict)
    paste_back: bool | None = None
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    per_hole_ratio: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: str | None = None
    per_image_csv: str | None = None
    thumbnails: dict[str, dict[str, str]] = field(default_factory=dict)
    degenerate_masks: dict[str, list[str]] = field(default_factory=dict)
    non_binary_masks: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, Any] = field(default_factory=dict)
    ids_pca_dim: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    timing: dict[str, float] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    created: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def protocol_name(self) -> str:
        return self.protocol["name"]

    @property
    def protocol_version(self) -> int:
        return self.protocol["version"]

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the file (metrics nested as `metrics.overall` / `metrics.per_domain`)."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for item in fields(self):
            if item.name in ("schema_version", "overall", "per_domain"):
                continue
            value = getattr(self, item.name)
            out[item.name] = asdict(value) if isinstance(value, DatasetInfo) else value
            if item.name == "paste_back":
                out["metrics"] = {"overall": self.overall, "per_domain": self.per_domain}
        _check_finite(out, "")
        return out

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ResultRecord":
        """Read and validate a result file; FileNotFoundError when absent, `ResultFileError` naming the file for
        anything else."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ResultFileError(f"{path}: not a readable JSON file ({error})") from error
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, source: str) -> "ResultRecord":
        """Validate a parsed result file; `source` (its path) names it in every error."""
        if not isinstance(data, dict):
            raise ResultFileError(f"{source}: a result file holds a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
            raise ResultFileError(
                f"{source}: unsupported schema_version {version!r}; this version of misato-bench reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))} (re-score with it)")
        check = _Checker(source)
        method = check.required(data, "method", str)
        if not method.strip():
            raise ResultFileError(f"{source}: method is empty")
        dataset = check.required(data, "dataset", dict)
        protocol = check.required(data, "protocol", dict)
        metrics = check.required(data, "metrics", dict)
        kind = check.required(dataset, "kind", str, "dataset.")
        if kind.lower() not in KINDS:
            raise ResultFileError(f"{source}: dataset.kind must be one of {', '.join(DATASET_KINDS)}; got {kind!r}")
        check.required(protocol, "name", str, "protocol.")
        check.required(protocol, "version", int, "protocol.")
        per_domain = check.optional(metrics, "per_domain", dict, "metrics.") or {}
        known = {f.name for f in fields(DatasetInfo)}
        info = DatasetInfo(**{k: v for k, v in dataset.items() if k in known})
        info.name = check.required(dataset, "name", str, "dataset.")
        info.kind = KINDS[kind.lower()]
        for key, kinds in (("root", str), ("resolution", int), ("mask_hole_is_white", bool), ("mask_binary_01", bool),
                           ("n_images", int)):
            check.optional(dataset, key, kinds, "dataset.")
        info.mask_hole_is_white = dataset.get("mask_hole_is_white", True)
        info.mask_binary_01 = dataset.get("mask_binary_01", False)
        return cls(
            method=method,
            dataset=info,
            protocol=protocol,
            overall=check.metric_row(check.required(metrics, "overall", dict, "metrics."), "metrics.overall"),
            per_domain={str(d): check.metric_row(row, f"metrics.per_domain.{d}") for d, row in per_domain.items()},
            paste_back=check.optional(data, "paste_back", bool),
            higher_is_better=check.mapping(data, "higher_is_better", bool),
            unavailable=check.mapping(data, "unavailable", str),
            notes=check.mapping(data, "notes", str),
            intervals=check.intervals(data),
            bootstrap=check.optional(data, "bootstrap", dict) or {},
            per_hole_ratio={str(b): check.metric_row(row, f"per_hole_ratio.{b}")
                            for b, row in (check.optional(data, "per_hole_ratio", dict) or {}).items()},
            predictions=check.optional(data, "predictions", str),
            per_image_csv=check.optional(data, "per_image_csv", str),
            thumbnails=check.thumbnails(data),
            **{k: data[k] for k in ("degenerate_masks", "non_binary_masks", "weights", "versions", "seeds",
                                    "ids_pca_dim", "config", "device", "timing", "git_commit", "git_dirty",
                                    "created") if data.get(k) is not None},
            schema_version=version,
        )


def _check_finite(value: Any, where: str) -> None:
    """Refuse NaN/inf anywhere (they would be written as invalid JSON): the scorer writes null with a note."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"result value {where.lstrip('.')} is {value}: write None with a note instead")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_finite(item, f"{where}[{index}]")


class _Checker:
    """Type checks that name the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _fail(self, where: str, expected: str, value: Any) -> None:
        raise ResultFileError(f"{self.source}: {where} must be {expected}, got {type(value).__name__}")

    def required(self, obj: dict, key: str, kind: type, where: str = "") -> Any:
        if key not in obj:
            raise ResultFileError(f"{self.source}: missing required key {where}{key!r}")
        return self.optional(obj, key, kind, where)

    def optional(self, obj: dict, key: str, kind: type, where: str = "") -> Any:
        value = obj.get(key)
        if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is int)):
            self._fail(f"{where}{key}", kind.__name__, value)  # JSON true is not a version
        return value

    def mapping(self, obj: dict, key: str, kind: type) -> dict:
        value = obj.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, kind) for v in value.values()):
            raise ResultFileError(f"{self.source}: {key} must map names to {kind.__name__} values")
        return dict(value)

    def metric_row(self, row: Any, where: str) -> dict[str, Any]:
        if not isinstance(row, dict):
            self._fail(where, "an object", row)
        n = row.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
            raise ResultFileError(f"{self.source}: {where}.n must be an integer, got {n!r}")
        for key, value in row.items():
            if key != "n" and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ResultFileError(f"{self.source}: {where}.{key} must be a number or null, got {value!r}")
        return dict(row)

    def intervals(self, data: dict) -> dict[str, dict[str, list[float]]]:
        value = data.get("intervals") or {}
        ok = isinstance(value, dict) and all(
            isinstance(rows, dict) and all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                   for x in pair) for pair in rows.values())
            for rows in value.values())
        if not ok:
            raise ResultFileError(f"{self.source}: intervals must map scopes to {{metric: [low, high]}}")
        return value

    def thumbnails(self, data: dict) -> dict[str, dict[str, str]]:
        value = data.get("thumbnails") or {}
        ok = isinstance(value, dict) and all(
            isinstance(v, dict) and set(v) <= set(THUMBNAIL_ROLES) and all(isinstance(p, str) for p in v.values())
            for v in value.values())
        if not ok:
            raise ResultFileError(f"{self.source}: thumbnails must map stems to {{{', '.join(THUMBNAIL_ROLES)}: path}}")
        return value
