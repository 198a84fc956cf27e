"""Result files -> pandas tables laid out like the paper (Table 1, per-domain, paper Tables 1 and 2).

Column groups. A column group is one (dataset kind, dataset name, protocol, paste-back) combination. The
group is labelled by the kind ("MISATO", "Places2"; a custom dataset by its own name); when one kind holds
results of several datasets, protocols or paste-back settings, each combination becomes its own group and
the label names what differs, e.g. "MISATO (comod v1)" and "MISATO (asuka v1)". Numbers from different
protocols are therefore never ranked against each other in one column. Two results for the same method in
the same group are an error naming both files.

Failed runs. A (method, dataset) pair that a job could not score (`FailedRun`, from `misato run` / `misato
reproduce`) is never left out: its row is kept and each of its cells in that pair's column group reads "failed"
(`Table.failed`), with the stage and error in the notes. A failure supersedes an older result of the same pair
found in the results folder (which is then named in the notes, not shown).

Rows. Every table keeps measured numbers, the paper's figures and their differences apart: Table 1 rows are
indexed by (method, source) with source "measured", "paper" or "diff" (= measured - paper), and only
measured rows are ranked. The best measured value per column is marked in `Table.best` (compared at the
displayed precision, so displayed ties are all marked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from leaderboard import paper as paper_data
from evaluators.metrics import METRICS, PER_IMAGE, SCORED, TABLE1, spec
from leaderboard.results import Result, ResultFileError
from misato.data import KINDS

MEASURED, PAPER, DIFF = "measured", "paper", "diff"
FAILED = "failed"  # the text of a cell whose measurement failed, in every format
KIND_ORDER: tuple[str, ...] = KINDS  # column groups in this order
TABLE2_LABELS: dict[str, str] = {"2a_mae": "(a) MAE", "2b_alignment": "(b) alignment", "2d_decoder": "(d) decoder"}


@dataclass
class Table:
    """A rendered-agnostic table.

    frame: float values; index = row labels (`frame.index.names` name them), columns = MultiIndex
        (group, metric key). NaN = not measured / not available.
    best: bool frame of the same shape; True marks the best measured value of its column (or block).
    row_kind: per row, "measured", "paper" or "diff" (diff rows are shown signed, paper rows apart).
    higher_is_better: metric key -> direction used for ranking and the arrows in headers.
    notes: extra lines shown under the table (unavailable metrics, name matches).
    half_width: float frame of the same shape: half the width of the 95% bootstrap interval of a measured
        value (shown as "value ± half-width"); NaN where the result has no interval. None: no intervals at all.
    value_format: "metric" (each metric's decimals) or "probability" (cells are probabilities, 2 decimals).
    failed: bool frame of the same shape: True where the cell's measurement failed (shown as "failed", never as a
        number or a blank). None: nothing failed.
    """

    key: str
    title: str
    caption: str
    frame: pd.DataFrame
    best: pd.DataFrame
    row_kind: list[str]
    higher_is_better: dict[str, bool]
    notes: list[str] = field(default_factory=list)
    half_width: pd.DataFrame | None = None
    value_format: str = "metric"  # "metric": the metric's decimals; "probability": 2 decimals
    failed: pd.DataFrame | None = None

    def failed_cells(self) -> np.ndarray:
        """bool (rows, columns): True where the measurement failed."""
        if self.failed is None:
            return np.zeros(self.frame.shape, dtype=bool)
        return self.failed.to_numpy(dtype=bool)

    def groups(self) -> list[tuple[str, list[str]]]:
        """Column groups in order: [(group label, [metric keys])]."""
        out: list[tuple[str, list[str]]] = []
        for group, metric in self.frame.columns:
            if not out or out[-1][0] != group:
                out.append((group, []))
            out[-1][1].append(metric)
        return out


@dataclass(frozen=True)
class GroupKey:
    kind: str
    dataset: str
    protocol: str
    paste_back: bool | None

    @classmethod
    def of(cls, result: Result) -> "GroupKey":
        """The column group of a result."""
        return cls(result.dataset_kind, result.dataset_name, result.protocol_label, result.paste_back)


@dataclass(frozen=True)
class FailedRun:
    """A (method, dataset) pair a job could not score. kind, dataset, protocol (its label, "comod v1") and
    paste_back place it in the column group its result would have had; stage ("inpaint", "score", "dataset", ...)
    and error (one line) go to the notes."""

    method: str
    dataset: str
    kind: str
    protocol: str
    paste_back: bool | None
    stage: str
    error: str

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.kind, self.dataset, self.protocol, self.paste_back)


def current_results(results: list[Result], failures: list[FailedRun] | tuple[FailedRun, ...]) -> list[Result]:
    """`results` without those a failed run supersedes (same method and column group): what comparisons and the
    report's grid may show."""
    replaced = {(f.key, f.method) for f in failures}
    return [r for r in results if (GroupKey.of(r), r.method) not in replaced]


@dataclass
class _Group:
    key: GroupKey
    label: str
    results: dict[str, Result]  # method -> result
    failed: dict[str, FailedRun] = field(default_factory=dict)  # method -> its failure
    superseded: dict[str, Result] = field(default_factory=dict)  # method -> an older result its failure replaces

    def methods(self) -> list[str]:
        return list(dict.fromkeys([*self.results, *self.failed]))


def group_results(results: list[Result], failures: list[FailedRun] | tuple[FailedRun, ...] = ()) -> list[_Group]:
    """Split results (and failed runs) into column groups (see module docstring), in kind order then first
    appearance."""
    keys: dict[GroupKey, dict[str, Result]] = {}
    failed: dict[GroupKey, dict[str, FailedRun]] = {}
    superseded: dict[GroupKey, dict[str, Result]] = {}
    for r in results:
        key = GroupKey.of(r)
        methods = keys.setdefault(key, {})
        if r.method in methods:
            raise ResultFileError(
                f"two results for method {r.method!r} in one column group ({r.dataset_name}, {r.protocol_label}): "
                f"{methods[r.method].path} and {r.path}; pass only one of them"
            )
        methods[r.method] = r
    for failure in failures:
        if failure.kind not in KIND_ORDER:
            raise ValueError(f"failed run of {failure.method}: kind must be one of {KIND_ORDER}, got {failure.kind!r}")
        methods = keys.setdefault(failure.key, {})
        if failure.method in methods:
            superseded.setdefault(failure.key, {})[failure.method] = methods.pop(failure.method)
        failed.setdefault(failure.key, {})[failure.method] = failure
    ordered = sorted(keys, key=lambda k: KIND_ORDER.index(k.kind))  # stable: appearance order within a kind
    groups = []
    for key in ordered:
        base = key.dataset if key.kind == "custom" else key.kind
        siblings = [k for k in ordered if (k.dataset if k.kind == "custom" else k.kind) == base]
        parts = []
        if key.kind != "custom" and len({k.dataset for k in siblings}) > 1:
            parts.append(key.dataset)
        if len({k.protocol for k in siblings}) > 1:
            parts.append(key.protocol)
        if len({k.paste_back for k in siblings}) > 1:
            parts.append({True: "pasted back", False: "raw", None: "paste-back unknown"}[key.paste_back])
        label = f"{base} ({', '.join(parts)})" if parts else base
        groups.append(_Group(key, label, keys[key], failed.get(key, {}), superseded.get(key, {})))
    return groups


def directions(results: list[Result], metrics: list[str]) -> dict[str, bool]:
    """metric -> higher_is_better, from the files (they must agree) or the metric registry."""
    out: dict[str, bool] = {}
    source: dict[str, Result] = {}
    for r in results:
        for metric, higher in r.higher_is_better.items():
            if metric in out and out[metric] != higher:
                raise ResultFileError(
                    f"{r.path}: higher_is_better[{metric!r}] = {higher} disagrees with {source[metric].path}"
                )
            out.setdefault(metric, higher)
            source.setdefault(metric, r)
    return {m: out.get(m, spec(m).higher_is_better) for m in metrics}


def best_mask(frame: pd.DataFrame, higher: dict[str, bool], rankable: np.ndarray,
              blocks: list[np.ndarray] | None = None) -> pd.DataFrame:
    """True where a rankable row holds its column's best value (within each block of rows).

    Values are compared rounded to the displayed decimals, so values that print the same tie.
    rankable: bool (n_rows,); blocks: list of bool (n_rows,) row masks (default: all rows one block).
    """
    mask = np.zeros(frame.shape, dtype=bool)
    blocks = blocks if blocks is not None else [np.ones(len(frame), dtype=bool)]
    for j, (_, metric) in enumerate(frame.columns):
        column = frame.iloc[:, j].to_numpy(dtype=float).round(spec(metric).decimals)
        for block in blocks:
            rows = block & rankable & np.isfinite(column)
            if not rows.any():
                continue
            target = column[rows].max() if higher[metric] else column[rows].min()
            mask[:, j] |= rows & (column == target)
    return pd.DataFrame(mask, index=frame.index, columns=frame.columns)


def _n_text(counts: list[int | None]) -> str:
    known = sorted({c for c in counts if c is not None})
    if not known:
        return "n unknown"
    text = f"n = {known[0]}" if len(known) == 1 else f"n = {known[0]}-{known[-1]} (differs between methods)"
    return text + (" (some unknown)" if None in counts else "")


def _group_caption(group: _Group) -> str:
    counts = [r.n for r in group.results.values()]
    paste = {True: "composited (pasted back)", False: "raw (not pasted back)", None: "paste-back not recorded"}
    return (f"{group.label}: dataset {group.key.dataset}, protocol {group.key.protocol}, "
            f"{paste[group.key.paste_back]}, {_n_text(counts)}")


def _failure_notes(groups: list[_Group]) -> list[str]:
    """One line per failed run (stage and error), and per older result a failure supersedes."""
    lines = [f"{method} [{group.label}]: {FAILED} while {failure.stage}: {failure.error}"
             for group in groups for method, failure in group.failed.items()]
    lines += [f"{method} [{group.label}]: the older result {r.path} is not shown (this run failed)"
              for group in groups for method, r in group.superseded.items()]
    return lines


def _failed_frame(frame: pd.DataFrame, cells: list[list[bool]]) -> pd.DataFrame | None:
    """The failed-cell mask of a table (rows as `frame`), None when nothing failed."""
    mask = pd.DataFrame(np.array(cells, dtype=bool).reshape(frame.shape), index=frame.index, columns=frame.columns)
    return mask if mask.to_numpy().any() else None


def _notes(groups: list[_Group], metrics: list[str]) -> list[str]:
    """Failed runs first (`_failure_notes`); then one line per reason (a missing file): which metrics and
    methods/groups lack it and how to fix it; then the scorer's notes on overall values (e.g. infinite PSNRs left
    out of the mean), one line per method and metric."""
    reasons: dict[str, tuple[dict[str, None], dict[str, None]]] = {}  # why -> (metrics, who), ordered sets
    for group in groups:
        for method, r in group.results.items():
            for metric, why in r.unavailable.items():
                if metric in metrics:
                    labels, who = reasons.setdefault(why, ({}, {}))
                    labels[spec(metric).label] = None
                    who[f"{method} [{group.label}]"] = None
    lines = _failure_notes(groups)
    lines += [f"{', '.join(labels)} unavailable for {', '.join(who)}: {why}" for why, (labels, who) in reasons.items()]
    for group in groups:
        for method, r in group.results.items():
            for key, text in r.record.notes.items():
                scope, _, metric = key.partition(".")
                if scope == "overall":  # shown even when the value is null (no column for it then)
                    lines.append(f"{spec(metric).label} of {method} [{group.label}]: {text}")
    return lines


def _methods(groups: list[_Group]) -> list[str]:
    return list(dict.fromkeys(m for g in groups for m in g.methods()))


def build_table1(results: list[Result], paper: bool = True, metrics: tuple[str, ...] = TABLE1,
                 failures: list[FailedRun] | tuple[FailedRun, ...] = ()) -> Table:
    """Paper Table 1 layout: rows = methods (measured, then paper and diff rows where the paper has the
    method), columns = column group x {LPIPS, FID, U-IDS, P-IDS}; failed runs as "failed" cells."""
    groups = group_results(results, failures)
    higher = directions(results, list(metrics))
    frame, kinds, widths, matched, failed = _measured_and_paper(
        groups, metrics, (lambda name, group, metric: paper_data.table1_value(name, group.key.kind, metric))
        if paper else None)
    best = best_mask(frame, higher, np.array([k == MEASURED for k in kinds]))
    caption = ["Quantitative comparison (layout of the paper's Table 1). "
               "Arrows: lower (↓) or higher (↑) is better. Bold: best measured value per column."]
    caption += [_group_caption(g) + "." for g in groups]
    if matched:
        sizes = ", ".join(f"{k} n = {v}" for k, v in paper_data.table1_samples().items())
        caption.append(f"Paper rows: figures reported in the ASUKA paper's Table 1 ({sizes}; the paper's own "
                       f"evaluation code), never ranked; diff rows = measured - paper.")
    notes = ([f"Paper rows matched by name: {', '.join(matched)}."] if matched else []) + _notes(
        groups, list(metrics))
    if any(r.record.intervals for g in groups for r in g.results.values()):
        caption.append("± = half-width of the 95% bootstrap interval (images resampled; see each result's "
                       "bootstrap settings).")
    return Table("table1", "Table 1: overall results", " ".join(caption), frame, best, kinds, higher, notes,
                 _half_width_frame(frame, widths), failed=_failed_frame(frame, failed))


def _measured_and_paper(groups: list[_Group], metrics: tuple[str, ...] | list[str],
                        reported: Callable[[str, _Group, str], float | None] | None
                        ) -> tuple[pd.DataFrame, list[str], list[list[float]], list[str], list[list[bool]]]:
    """Rows = methods (measured, then paper and diff rows where `reported(paper name, group, metric)` has a figure
    for the method), columns = group x metric: (frame, row kinds, half-widths, "method = paper name" matches,
    failed cells: a measured row's cells in the groups where the method failed). reported None: measured rows
    only."""
    columns = pd.MultiIndex.from_tuples([(g.label, m) for g in groups for m in metrics], names=["group", "metric"])
    rows, kinds, values, widths, failed = [], [], [], [], []
    matched: list[str] = []
    for method in _methods(groups):
        measured = [g.results[method].overall.get(m, math.nan) if method in g.results else math.nan
                    for g in groups for m in metrics]
        rows.append((method, MEASURED))
        kinds.append(MEASURED)
        values.append(measured)
        widths.append([half_width(g.results[method], m) if method in g.results else math.nan
                       for g in groups for m in metrics])
        failed.append([method in g.failed for g in groups for _ in metrics])
        name = paper_data.paper_name(method) if reported else None
        if name is None:
            continue
        figures = [reported(name, g, m) for g in groups for m in metrics]
        figures = [math.nan if value is None else value for value in figures]
        if all(math.isnan(v) for v in figures):
            continue
        matched.append(f"{method} = {name}")
        rows += [(method, PAPER), (method, DIFF)]
        kinds += [PAPER, DIFF]
        values += [figures, [a - b for a, b in zip(measured, figures)]]
        widths += [[math.nan] * len(figures), widths[-1]]  # a diff's uncertainty is the measured value's
        failed += [[False] * len(figures), [False] * len(figures)]
    frame = pd.DataFrame(values, index=pd.MultiIndex.from_tuples(rows, names=["method", "source"]),
                         columns=columns, dtype=float)
    return frame, kinds, widths, matched, failed


def half_width(result: Result, metric: str, scope: str = "overall") -> float:
    """Half the width of the result's 95% interval of `metric` in `scope` (NaN when it has none)."""
    interval = result.record.intervals.get(scope, {}).get(metric)
    return (interval[1] - interval[0]) / 2.0 if interval else math.nan


def _half_width_frame(frame: pd.DataFrame, widths: list[list[float]]) -> pd.DataFrame | None:
    """The half-width frame of a table (rows as `frame`), None when no value has an interval."""
    out = pd.DataFrame(widths, index=frame.index, columns=frame.columns, dtype=float)
    return None if out.isna().all().all() else out


def _present(results: list[Result], blocks: str) -> list[str]:
    """Metrics (in SCORED order) with a value or an 'unavailable' entry in any result."""
    seen: set[str] = set()
    for r in results:
        seen |= set(r.unavailable)
        if blocks == "overall":
            seen |= {m for m, v in r.overall.items() if not math.isnan(v)}
        else:
            seen |= {m for d in r.per_domain.values() for m, v in d.items() if not math.isnan(v)}
    return [m for m in SCORED if m in seen]


def build_metrics_table(results: list[Result], failures: list[FailedRun] | tuple[FailedRun, ...] = ()) -> Table:
    """Every metric present, overall: rows = methods, columns = column group x metric (a group of failed runs
    only: the metrics of the other groups, else Table 1's); failed runs as "failed" cells."""
    groups = group_results(results, failures)
    methods = _methods(groups)
    fallback = _present(results, "overall") or list(TABLE1)
    present = {g.label: _present(list(g.results.values()), "overall") or fallback for g in groups}
    cols = [(g.label, m) for g in groups for m in present[g.label]]
    metrics = list(dict.fromkeys(m for _, m in cols))
    higher = directions(results, metrics)
    data = [[g.results[method].overall.get(m, math.nan) if method in g.results else math.nan
             for g in groups for m in present[g.label]] for method in methods]
    failed = [[method in g.failed for g in groups for _ in present[g.label]] for method in methods]
    frame = pd.DataFrame(data, index=pd.MultiIndex.from_tuples([(m, MEASURED) for m in methods],
                                                                names=["method", "source"]),
                         columns=pd.MultiIndex.from_tuples(cols, names=["group", "metric"]), dtype=float)
    best = best_mask(frame, higher, np.ones(len(frame), dtype=bool))
    widths = [[half_width(g.results[method], m) if method in g.results else math.nan
               for g in groups for m in present[g.label]] for method in methods]
    caption = " ".join(["All metrics, overall. Bold: best measured value per column. ± = half-width of the 95% "
                        "bootstrap interval where the result has one."] + [_group_caption(g) + "." for g in groups])
    return Table("metrics", "All metrics (overall)", caption, frame, best, [MEASURED] * len(methods), higher,
                 _notes(groups, metrics), _half_width_frame(frame, widths), failed=_failed_frame(frame, failed))


def build_domain_tables(results: list[Result], failures: list[FailedRun] | tuple[FailedRun, ...] = ()) -> list[Table]:
    """Per-domain tables, one per MISATO-kind column group that has per-domain figures:
    rows = methods, columns = domain (landscape/indoor/building/background, then any others) x metric; the
    group's failed runs as rows of "failed" cells."""
    from misato.data import DOMAINS

    tables = []
    eligible = [g for g in group_results(results, failures)
                if g.key.kind == "MISATO" and any(r.per_domain for r in g.results.values())]
    for group in eligible:
        members = [r for r in group.results.values() if r.per_domain]
        found = list(dict.fromkeys(d for r in members for d in r.per_domain))
        domains = [d for d in DOMAINS if d in found] + [d for d in found if d not in DOMAINS]
        metrics = [m for m in _present(members, "domains") if m in SCORED]
        higher = directions(members, metrics)
        methods = [r.method for r in members] + list(group.failed)
        data = [[r.per_domain.get(d, {}).get(m, math.nan) for d in domains for m in metrics] for r in members]
        data += [[math.nan] * (len(domains) * len(metrics)) for _ in group.failed]
        widths = [[half_width(r, m, d) for d in domains for m in metrics] for r in members]
        widths += [[math.nan] * (len(domains) * len(metrics)) for _ in group.failed]
        failed = [[method in group.failed] * (len(domains) * len(metrics)) for method in methods]
        frame = pd.DataFrame(data, index=pd.MultiIndex.from_tuples([(m, MEASURED) for m in methods],
                                                                    names=["method", "source"]),
                             columns=pd.MultiIndex.from_tuples([(d, m) for d in domains for m in metrics],
                                                               names=["group", "metric"]), dtype=float)
        best = best_mask(frame, higher, np.ones(len(frame), dtype=bool))
        counts = "; ".join(f"{d} {_n_text([r.per_domain_n.get(d) for r in members])}" for d in domains)
        caption = (f"Per-domain results on {group.label} (dataset {group.key.dataset}, protocol "
                   f"{group.key.protocol}); {counts}. Bold: best measured value per column.")
        key = "per_domain" if len(eligible) == 1 else f"per_domain_{len(tables) + 1}"
        tables.append(Table(key, f"Per-domain results: {group.label}", caption, frame, best,
                            [MEASURED] * len(methods), higher, _notes([group], metrics),
                            _half_width_frame(frame, widths), failed=_failed_frame(frame, failed)))
    return tables


def paper_table1() -> Table:
    """The paper's Table 1 as reported (all rows are paper figures; bold = the paper's best per column)."""
    reported = paper_data.table1()
    kinds = list(dict.fromkeys(reported["dataset"]))
    methods = list(dict.fromkeys(reported["method"]))
    wide = reported.set_index(["method", "dataset"])
    data = [[float(wide.loc[(m, k), metric]) if (m, k) in wide.index else math.nan
             for k in kinds for metric in TABLE1] for m in methods]
    frame = pd.DataFrame(data, index=pd.MultiIndex.from_tuples([(m, PAPER) for m in methods],
                                                                names=["method", "source"]),
                         columns=pd.MultiIndex.from_tuples([(k, m) for k in kinds for m in TABLE1],
                                                           names=["group", "metric"]), dtype=float)
    higher = {m: spec(m).higher_is_better for m in TABLE1}
    best = best_mask(frame, higher, np.ones(len(frame), dtype=bool))
    sizes = ", ".join(f"{k} n = {v}" for k, v in paper_data.table1_samples().items())
    caption = (f"Paper Table 1 as reported in the ASUKA paper (512x512; {sizes}). These are the paper's "
               f"figures, not measurements of this run. Bold: the paper's best per column.")
    return Table("paper_table1", "Paper Table 1 (reported figures)", caption, frame, best, [PAPER] * len(methods),
                 higher)


def paper_table2() -> Table:
    """The paper's Table 2 (a), (b), (d) ablations on MISATO; bold = best within each sub-table."""
    reported = paper_data.table2()
    labels = [TABLE2_LABELS.get(t, t) for t in reported["table"]]
    index = pd.MultiIndex.from_arrays([labels, reported["variant"]], names=["table", "variant"])
    frame = pd.DataFrame(reported[list(TABLE1)].to_numpy(dtype=float), index=index,
                         columns=pd.MultiIndex.from_tuples([("MISATO", m) for m in TABLE1],
                                                           names=["group", "metric"]))
    higher = {m: spec(m).higher_is_better for m in TABLE1}
    blocks = [np.asarray(reported["table"] == t) for t in dict.fromkeys(reported["table"])]
    best = best_mask(frame, higher, np.ones(len(frame), dtype=bool), blocks)
    caption = ("Paper Table 2 (a) MAE pre-trained vs fine-tuned, (b) alignment module, (d) decoder: ablations "
               "on MISATO as reported in the ASUKA paper (not measured here). Bold: best within each sub-table.")
    return Table("paper_table2", "Paper Table 2 (reported ablations)", caption, frame, best,
                 [PAPER] * len(frame), higher)


TABLE2_METRICS: tuple[str, ...] = (*TABLE1, "psnr", "ssim")


def build_table2(rows: list[tuple[str, str, Result | FailedRun]]) -> list[Table]:
    """Measured Table 2 (a), (b), (d) beside the paper's figures: one Table per sub-table.

    rows: (sub-table key of paper_table2.csv, the paper's variant name, the row's result, or its `FailedRun`:
    a measured row of "failed" cells). Each variant gets a measured row, a paper row and a diff row (measured -
    paper); only measured rows are ranked (bold = best measured value of the sub-table). PSNR and SSIM are
    measured only (the paper reports neither).
    """
    reported = paper_data.table2().set_index(["table", "variant"])
    tables = []
    for key in dict.fromkeys(table for table, _, _ in rows):
        chosen = [(variant, result) for table, variant, result in rows if table == key]
        index, values, kinds, failed = [], [], [], []
        for variant, result in chosen:
            ok = isinstance(result, Result)
            measured = [result.overall.get(m, math.nan) if ok else math.nan for m in TABLE2_METRICS]
            paper = [float(reported.loc[(key, variant), m]) if (key, variant) in reported.index and m in reported
                     else math.nan for m in TABLE2_METRICS]
            for source, row in ((MEASURED, measured), (PAPER, paper),
                                (DIFF, [a - b for a, b in zip(measured, paper)])):
                index.append((variant, source))
                values.append(row)
                kinds.append(source)
                failed.append([source == MEASURED and not ok] * len(TABLE2_METRICS))
        measured_results = [r for _, r in chosen if isinstance(r, Result)]
        first = chosen[0][1]
        key_of = first.key if isinstance(first, FailedRun) else GroupKey.of(first)
        kind = key_of.kind if key_of.kind != "custom" else key_of.dataset
        frame = pd.DataFrame(values, index=pd.MultiIndex.from_tuples(index, names=["variant", "source"]),
                             columns=pd.MultiIndex.from_tuples([(kind, m) for m in TABLE2_METRICS],
                                                               names=["group", "metric"]), dtype=float)
        higher = directions(measured_results, list(TABLE2_METRICS))
        best = best_mask(frame, higher, np.array([k == MEASURED for k in kinds]))
        group = _Group(key_of, kind, {v: r for v, r in chosen if isinstance(r, Result)},
                       {v: r for v, r in chosen if isinstance(r, FailedRun)})
        notes = _notes([group], list(TABLE2_METRICS))
        label = TABLE2_LABELS.get(key, key)
        caption = (f"Table 2 {label}: measured on {key_of.dataset} ({key_of.protocol}), "
                   "with the paper's figures and the difference. Bold: best measured value.")
        tables.append(Table(f"table2_{key}", f"Table 2 {label}", caption, frame, best, kinds, higher, notes,
                            failed=_failed_frame(frame, failed)))
    return tables


def paper_table2c() -> Table:
    """The paper's Table 2 (c) user study: top-1 selection ratio (%), 40 images, 100 answers."""
    reported = paper_data.table2c_user_study()
    metrics = [c for c in reported.columns if c != "method"]
    frame = pd.DataFrame(reported[metrics].to_numpy(dtype=float),
                         index=pd.MultiIndex.from_arrays([reported["method"], [PAPER] * len(reported)],
                                                         names=["method", "source"]),
                         columns=pd.MultiIndex.from_tuples([("User study", m) for m in metrics],
                                                           names=["group", "metric"]))
    higher = {m: spec(m).higher_is_better for m in metrics}
    best = best_mask(frame, higher, np.ones(len(frame), dtype=bool))
    caption = ("Paper Table 2 (c): user study as reported in the ASUKA paper, top-1 selection ratio in % "
               "(40 images, 100 answers). Bold: the paper's best per column.")
    return Table("paper_table2c", "Paper Table 2 (c): user study (reported)", caption, frame, best,
                 [PAPER] * len(frame), higher)


STUDY_METRICS: tuple[str, ...] = tuple(name for name, s in METRICS.items() if s.aggregate == "study")


def build_table2c(results: list[Result], paper: bool = True) -> Table:
    """Measured Table 2 (c) from user-study results (`misato study tally`): rows = methods (measured, then the
    paper's figures and measured - paper where the paper has the method), columns = group x the study metrics.
    The results of one column group must come from one study (their `config.study.study_id`)."""
    groups = group_results(results)
    for group in groups:
        studies = {r.record.config.get("study", {}).get("study_id"): r.path for r in group.results.values()}
        if len(studies) > 1:
            raise ResultFileError(f"user-study results of different studies in one column group ({group.label}): "
                                  f"{', '.join(str(p) for p in studies.values())}; tabulate one study at a time")
    reported = paper_data.table2c_user_study().set_index("method")
    same_methods = all({paper_data.paper_name(m) for m in g.results} == set(reported.index) for g in groups)
    paper = paper and same_methods  # top-1 shares depend on which methods compete: the paper's set only
    frame, kinds, widths, matched, _ = _measured_and_paper(
        groups, STUDY_METRICS, (lambda name, group, metric: float(reported.loc[name, metric])
                                if name in reported.index else None) if paper else None)
    higher = directions(results, list(STUDY_METRICS))
    best = best_mask(frame, higher, np.array([k == MEASURED for k in kinds]))
    caption = ["User study (layout of the paper's Table 2 (c)): top-1 selection ratio in %, the share of answers "
               "picking each method, per question. Bold: best measured value per column."]
    for group in groups:
        counts = next(iter(group.results.values())).record.config.get("study", {})
        rate = counts.get("attention_failure_rate")
        caption.append(
            f"{group.label}: dataset {group.key.dataset}, {len(group.results)} methods, "
            f"{counts.get('tallied', '?')} participants tallied ({counts.get('answers', '?')} answers), "
            f"{counts.get('partial', '?')} partial left out, {counts.get('excluded_attention', '?')} excluded by the "
            f"attention checks" + (f" (failure rate {100 * rate:.1f}%)." if rate is not None else "."))
    if any(r.record.intervals for g in groups for r in g.results.values()):
        caption.append("± = half-width of the 95% bootstrap interval (participants resampled).")
    if not same_methods:
        caption.append(f"No paper rows: top-1 shares depend on which methods compete, and these methods are not "
                       f"the paper's {len(reported)} ({', '.join(reported.index)}).")
    if matched:
        caption.append(f"Paper rows: the ASUKA paper's Table 2 (c) ({len(reported)} methods, 40 images, 100 "
                       "answers), never ranked; diff = measured - paper. Shares depend on which methods compete: "
                       "compare with the paper only when the same methods do.")
    notes = ([f"Paper rows matched by name: {', '.join(matched)}."] if matched else []) + _notes(
        groups, list(STUDY_METRICS))
    return Table("table2c", "Table 2 (c): user study", " ".join(caption), frame, best, kinds, higher, notes,
                 _half_width_frame(frame, widths))


def build_paired_table(results: list[Result]) -> Table | None:
    """Paired comparison with the best method of each column: P(method beats the best) under the paired bootstrap
    (`evaluators.bootstrap.win_probability`: both methods' per-image values on the same images, resampled
    together), for the per-image metrics. The best row's own cell is empty. None when no group has two methods
    with per-image scores. Set metrics (FID, U/P-IDS, KID) need both methods' features, which results do not
    keep: they are not compared here."""
    from evaluators.bootstrap import win_probability
    from leaderboard.results import per_image_scores

    cells: dict[tuple[str, str], dict[str, float]] = {}
    higher_all: dict[str, bool] = {}
    notes: list[str] = []
    for group in group_results(results):
        scores = {m: per_image_scores(r)[0] for m, r in group.results.items()}
        scores = {m: s for m, s in scores.items() if s is not None}
        if len(scores) < 2:
            continue
        metrics = [m for m in PER_IMAGE if all(m in s.columns for s in scores.values())]
        higher = directions(list(group.results.values()), metrics)
        higher_all.update(higher)
        for metric in metrics:
            means = {m: group.results[m].overall.get(metric, math.nan) for m in scores}
            ranked = [m for m in means if not math.isnan(means[m])]
            if not ranked:
                continue
            best = (max if higher[metric] else min)(ranked, key=lambda m: means[m])
            settings = group.results[best].record.bootstrap
            for method, frame in scores.items():
                if method == best:
                    continue
                common = frame.index.intersection(scores[best].index)
                if len(common) < len(frame.index) or len(common) < len(scores[best].index):
                    notes.append(f"{method} vs {best} ({group.label}): compared on the {len(common)} shared images")
                p = win_probability(frame.loc[common, metric].to_numpy(float),
                                    scores[best].loc[common, metric].to_numpy(float), higher[metric],
                                    int(settings.get("resamples") or 1000), int(settings.get("seed") or 0))
                cells.setdefault((group.label, metric), {})[method] = math.nan if p is None else p
    if not cells:
        return None
    methods = list(dict.fromkeys(m for column in cells.values() for m in column))
    frame = pd.DataFrame([[cells[c].get(m, math.nan) for c in cells] for m in methods],
                         index=pd.MultiIndex.from_tuples([(m, MEASURED) for m in methods], names=["method", "source"]),
                         columns=pd.MultiIndex.from_tuples(list(cells), names=["group", "metric"]), dtype=float)
    caption = ("Paired comparison with the best method of each column (by its mean): the probability that the "
               "row's method beats it, over bootstrap resamples of the same images for both (each best result's "
               "resample count and seed). Near 0: the best is reliably better; near 0.5: no reliable difference.")
    return Table("paired", "Paired comparison with the best method", caption, frame,
                 pd.DataFrame(False, index=frame.index, columns=frame.columns), [MEASURED] * len(methods),
                 higher_all, list(dict.fromkeys(notes)), value_format="probability")


def build_tables(results: list[Result], paper: bool = True,
                 failures: list[FailedRun] | tuple[FailedRun, ...] = ()) -> list[Table]:
    """Every table a report shows, in order: Table 1, all metrics, per-domain, paired comparison (of the scored
    results; the first three with the failed runs as "failed" rows), the measured Table 2 (c) (of the user-study
    results), then the paper's tables."""
    scored = [r for r in results if not r.is_study]
    study = [r for r in results if r.is_study]
    tables = []
    if scored or failures:
        tables += [build_table1(scored, paper=paper, failures=failures), build_metrics_table(scored, failures),
                   *build_domain_tables(scored, failures)]
        paired = build_paired_table(current_results(scored, failures))
        if paired is not None:
            tables.append(paired)
    if study:
        tables.append(build_table2c(study, paper=paper))
    if paper:
        tables += [paper_table1(), paper_table2(), paper_table2c()]
    return tables
