"""Tables -> Markdown, LaTeX (booktabs) and tidy CSV text. Every string from a file is escaped.

The Markdown and LaTeX writers are small and hand-written rather than pandas' `to_markdown`/`Styler.to_latex`:
we need per-cell bold from a separate mask (only measured rows ranked), signed diff rows, a two-level
header with \\cmidrule under each group, and output that does not change with the pandas/jinja2/tabulate
versions installed (tabulate is not a dependency; Styler's LaTeX layout has changed between releases).
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from evaluators.metrics import spec
from leaderboard.tables import DIFF, FAILED, Table

CSV_TAIL: tuple[str, ...] = ("row_kind", "group", "metric", "higher_is_better", "value", "half_width", "best",
                             "failed")


def format_value(value: float, metric: str, signed: bool = False, half_width: float | None = None) -> str | None:
    """Fixed decimals per metric; None for NaN. Signed values (diff rows) always carry + or -. With a finite
    `half_width` (of a 95% interval): "value ± half_width" at the same decimals."""
    if value is None or not math.isfinite(value):
        return None
    decimals = spec(metric).decimals
    if round(value, decimals) == 0:
        value = 0.0  # no "-0.000"
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    if half_width is not None and math.isfinite(half_width):
        text += f" ± {half_width:.{decimals}f}"
    return text


def metric_header(metric: str, higher: dict[str, bool], arrows: tuple[str, str]) -> tuple[str, str]:
    """(label, arrow) for a metric column; arrows = (up, down)."""
    return spec(metric).label, arrows[0] if higher.get(metric, spec(metric).higher_is_better) else arrows[1]


def format_cell(table: Table, value: float, metric: str, kind: str, half_width: float) -> str | None:
    """A table cell's text: probabilities with 2 decimals, metric values by `format_value`."""
    if table.value_format == "probability":
        return None if not math.isfinite(value) else f"{value:.2f}"
    return format_value(value, metric, signed=kind == DIFF, half_width=half_width)


def half_widths(table: Table) -> np.ndarray:
    """float (rows, columns): the table's half-widths, NaN where none."""
    if table.half_width is None:
        return np.full(table.frame.shape, np.nan)
    return table.half_width.to_numpy(dtype=float)


def cell_texts(table: Table) -> list[list[str | None]]:
    """The text of every cell (rows x columns): "failed" where its measurement failed, else `format_cell` (None:
    no value)."""
    values, widths, failed = table.frame.to_numpy(dtype=float), half_widths(table), table.failed_cells()
    metrics = [m for _, m in table.frame.columns]
    return [[FAILED if failed[i, j] else format_cell(table, values[i, j], metric, table.row_kind[i], widths[i, j])
             for j, metric in enumerate(metrics)] for i in range(len(values))]


def _rows(table: Table):
    """Yield (labels tuple, row kind, [(text or None, best)]) per row."""
    best = table.best.to_numpy(dtype=bool)
    texts = cell_texts(table)
    for i, label in enumerate(table.frame.index):
        labels = label if isinstance(label, tuple) else (label,)
        yield tuple(str(x) for x in labels), table.row_kind[i], list(zip(texts[i], (bool(b) for b in best[i])))


def _index_names(table: Table) -> list[str]:
    return [str(n or "").capitalize() for n in table.frame.index.names]


# ---------------------------------------------------------------- Markdown
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|#~!])")


def escape_markdown(text: str) -> str:
    """Literal text in Markdown: HTML-significant characters as entities, Markdown punctuation escaped."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def table_markdown(table: Table) -> str:
    up_down = ("↑", "↓")
    header = _index_names(table) + [
        f"{escape_markdown(group)} · {escape_markdown(label)} {arrow}"
        for group, metrics in table.groups() for label, arrow in
        (metric_header(m, table.higher_is_better, up_down) for m in metrics)]
    n_labels = len(table.frame.index.names)
    lines = [f"### {escape_markdown(table.title)}", "", escape_markdown(table.caption), "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join([":--"] * n_labels + ["--:"] * (len(header) - n_labels)) + "|"]
    for labels, kind, cells in _rows(table):
        out = [escape_markdown(x) for x in labels]
        for text, is_best in cells:
            out.append("–" if text is None else f"**{text}**" if is_best else text)
        lines.append("| " + " | ".join(out) + " |")
    if table.notes:
        lines += [""] + [f"- {escape_markdown(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def render_markdown(tables: list[Table], title: str = "MISATO-bench leaderboard") -> str:
    return f"# {escape_markdown(title)}\n\n" + "\n".join(table_markdown(t) for t in tables)


# ---------------------------------------------------------------- LaTeX
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--", "−": "-",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def escape_latex(text: str) -> str:
    """Literal text in LaTeX (text mode); newlines become spaces."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], " ".join(str(text).split()))


def table_latex(table: Table) -> str:
    n_labels = len(table.frame.index.names)
    groups = table.groups()
    spec = "l" * n_labels + "".join("r" * len(metrics) for _, metrics in groups)
    top = ["" for _ in range(n_labels)]
    rules = []
    start = n_labels + 1
    for group, metrics in groups:
        top.append(rf"\multicolumn{{{len(metrics)}}}{{c}}{{{escape_latex(group)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(metrics) - 1}}}")
        start += len(metrics)
    header = [escape_latex(n) for n in _index_names(table)] + [
        f"{escape_latex(label)}{arrow}" for _, metrics in groups for label, arrow in
        (metric_header(m, table.higher_is_better, (r"$\uparrow$", r"$\downarrow$")) for m in metrics)]
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{escape_latex(table.title)}. {escape_latex(table.caption)}}}",
        rf"\label{{tab:{re.sub(r'[^A-Za-z0-9:_-]', '-', table.key)}}}",
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        " & ".join(top) + r" \\", " ".join(rules), " & ".join(header) + r" \\", r"\midrule",
    ]
    previous = None
    for labels, kind, cells in _rows(table):
        if previous is not None and labels[0] != previous:
            lines.append(r"\addlinespace")
        previous = labels[0]
        out = [escape_latex(x) for x in labels]
        for text, is_best in cells:
            out.append("--" if text is None else rf"\textbf{{{text}}}" if is_best else
                       rf"\textit{{{text}}}" if text == FAILED else text)
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(escape_latex(n) for n in table.notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render_latex(tables: list[Table]) -> str:
    """Table environments for \\input{} into a document with \\usepackage{booktabs}."""
    head = "% Generated by misato-bench (leaderboard). Needs \\usepackage{booktabs}.\n"
    return head + "\n".join(table_latex(t) for t in tables)


# ---------------------------------------------------------------- CSV
def table_csv(table: Table) -> str:
    """Tidy CSV: one line per cell, columns = index levels + row_kind, group, metric, higher_is_better,
    value (full precision, empty for NaN), half_width (of the 95% interval, empty where none), best, failed (True
    where the measurement failed: value empty). `read_table_csv` reads it back."""
    names = [str(n) for n in table.frame.index.names]
    records = []
    widths = half_widths(table)
    failed = table.failed_cells()
    for i, label in enumerate(table.frame.index):
        labels = label if isinstance(label, tuple) else (label,)
        for j, (group, metric) in enumerate(table.frame.columns):
            records.append([*labels, table.row_kind[i], group, metric,
                            table.higher_is_better.get(metric, spec(metric).higher_is_better),
                            table.frame.iat[i, j], widths[i, j], bool(table.best.iat[i, j]), bool(failed[i, j])])
    buffer = io.StringIO()
    pd.DataFrame(records, columns=[*names, *CSV_TAIL]).to_csv(buffer, index=False, na_rep="")
    return buffer.getvalue()


def read_table_csv(path: str | os.PathLike, key: str | None = None) -> Table:
    """Inverse of `table_csv` (title, caption and notes are not stored in the CSV)."""
    names = [c for c in pd.read_csv(path, nrows=0).columns if c not in CSV_TAIL]
    data = pd.read_csv(path, dtype={c: str for c in [*names, "row_kind", "group", "metric"]},
                       keep_default_na=False, na_values={"value": [""], "half_width": [""]})
    labels = [tuple(r) for r in data[names].itertuples(index=False)]
    rows = list(dict.fromkeys(labels))
    columns = list(dict.fromkeys(zip(data["group"], data["metric"])))
    index = pd.MultiIndex.from_tuples(rows, names=names) if len(names) > 1 else pd.Index(
        [r[0] for r in rows], name=names[0])
    col_index = pd.MultiIndex.from_tuples(columns, names=["group", "metric"])
    values = np.full((len(rows), len(columns)), np.nan)
    widths = np.full((len(rows), len(columns)), np.nan)
    best = np.zeros((len(rows), len(columns)), dtype=bool)
    failed = np.zeros((len(rows), len(columns)), dtype=bool)
    row_at = {r: i for i, r in enumerate(rows)}
    col_at = {c: j for j, c in enumerate(columns)}
    kinds: dict[tuple, str] = {}
    half = data["half_width"].astype(float) if "half_width" in data else [np.nan] * len(data)
    failures = data["failed"] if "failed" in data else ["False"] * len(data)  # CSVs written before the column
    for label, group, metric, value, width, is_best, kind, is_failed in zip(
            labels, data["group"], data["metric"], data["value"].astype(float), half, data["best"], data["row_kind"],
            failures):
        i, j = row_at[label], col_at[(group, metric)]
        values[i, j], widths[i, j], best[i, j] = value, width, str(is_best) == "True"
        failed[i, j] = str(is_failed) == "True"
        kinds[label] = kind
    higher = {m: str(h) == "True" for m, h in zip(data["metric"], data["higher_is_better"])}
    key = key or Path(path).stem
    half_width = None if np.isnan(widths).all() else pd.DataFrame(widths, index=index, columns=col_index)
    return Table(key, key, "", pd.DataFrame(values, index=index, columns=col_index),
                 pd.DataFrame(best, index=index, columns=col_index), [kinds[r] for r in rows], higher,
                 half_width=half_width,
                 failed=pd.DataFrame(failed, index=index, columns=col_index) if failed.any() else None)
