"""One self-contained HTML report: the tables plus a qualitative grid like the paper's Fig. 8.

Self-contained: inline CSS, no scripts, images embedded as base64 `data:` URIs of resized thumbnails. A
Content-Security-Policy meta tag forbids scripts and remote loads, and every string that comes from a file
(method names, dataset names, stems, paths, captions) goes through `html.escape`.

Grid: rows = chosen samples; columns = masked input (hole as a translucent white overlay) | each method's
scored image (the composite when its result says paste_back) | ground truth; under each, that image's scores
from the method's per-image CSV. Images are the thumbnails the scorer wrote beside each result
(`evaluators.thumbnails`): the report reads result folders only. Anything missing (a thumbnail not written, a
moved file) becomes a visible note in its cell, never an exception.

Worst images: per result, the 5 images with the worst per-image value of each context-stability and
visual-consistency metric (`evaluators.metrics.CONSISTENCY`), from its per-image CSV, with the scored thumbnail
where the result kept one.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evaluators.metrics import CONSISTENCY, PER_IMAGE, spec
from leaderboard.render import cell_texts, format_value, metric_header
from leaderboard.results import Result, per_image_scores
from leaderboard.tables import Table

logger = logging.getLogger(__name__)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .85rem; }
caption { caption-side: top; text-align: left; color: #444; padding-bottom: .4rem; max-width: 70rem; }
th, td { padding: .2rem .5rem; border-bottom: 1px solid #ddd; }
th[scope=row] { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
table.results td { text-align: right; font-variant-numeric: tabular-nums; }
table.results thead th { border-bottom: 1px solid #888; }
table.results thead tr.groups th { text-align: center; }
tr.paper td, tr.paper th { color: #555; font-style: italic; background: #f6f6f6; }
tr.diff td, tr.diff th { color: #666; font-size: .78rem; background: #f6f6f6; }
tr.measured th[scope=row] { font-weight: 600; }
td.best { font-weight: 700; }
td.failed { color: #a00; font-style: italic; }
ul.notes { font-size: .8rem; color: #555; max-width: 70rem; white-space: pre-line; }
table.grid td, table.grid th { vertical-align: top; text-align: center; border: none; }
table.grid figure { margin: 0; }
table.grid img { display: block; margin: 0 auto; max-width: 100%; }
table.grid figcaption { font-size: .72rem; color: #333; max-width: 16rem; margin: .2rem auto; }
.missing { font-size: .75rem; color: #a00; max-width: 14rem; }
.meta { font-size: .8rem; color: #555; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------- tables
def table_html(table: Table, notes: list[str] | None = None) -> str:
    """One table as an HTML section; notes: the lines under it (default: all of the table's)."""
    groups = table.groups()
    names = [str(n or "").capitalize() for n in table.frame.index.names]
    n_labels = len(names)
    head_groups = "".join(f'<th colspan="{len(ms)}" scope="colgroup">{_e(g)}</th>' for g, ms in groups)
    head_metrics = "".join(
        f'<th scope="col">{_e(label)} {arrow}</th>' for _, ms in groups for label, arrow in
        (metric_header(m, table.higher_is_better, ("↑", "↓")) for m in ms))
    parts = [f'<section id="{_e(table.key)}"><h2>{_e(table.title)}</h2>',
             f'<div class="scroll"><table class="results"><caption>{_e(table.caption)}</caption><thead>',
             f'<tr class="groups"><th colspan="{n_labels}"></th>{head_groups}</tr>',
             "<tr>" + "".join(f'<th scope="col">{_e(n)}</th>' for n in names) + head_metrics + "</tr>",
             "</thead><tbody>"]
    best = table.best.to_numpy(dtype=bool)
    failed = table.failed_cells()
    texts = cell_texts(table)
    for i, label in enumerate(table.frame.index):
        labels = label if isinstance(label, tuple) else (label,)
        kind = table.row_kind[i]
        cells = [f'<th scope="row">{_e(labels[0])}</th>'] + [f"<td>{_e(x)}</td>" for x in labels[1:]]
        for j in range(table.frame.shape[1]):
            text = texts[i][j]
            cls = ' class="best"' if best[i, j] else ' class="failed"' if failed[i, j] else ""
            cells.append(f"<td{cls}>{_e(text) if text is not None else '&ndash;'}</td>")
        parts.append(f'<tr class="{_e(kind)}">' + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if notes is None:
        notes = table.notes
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{note_html(n)}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def note_html(text: str) -> str:
    """A note escaped for HTML, with `code` spans (the fixes' commands) rendered as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def new_notes(tables: list[Table]) -> list[list[str]]:
    """Per table, its notes with each reason given once in the page: a note "WHAT: WHY" whose WHY (e.g. a missing
    file and its fix) was shown under an earlier table becomes "WHAT: as above"; an identical note is dropped."""
    seen_notes: set[str] = set()
    seen_reasons: set[str] = set()
    out = []
    for table in tables:
        lines = []
        for note in table.notes:
            if note in seen_notes:
                continue
            seen_notes.add(note)
            what, sep, why = note.partition(": ")
            if sep and why in seen_reasons:
                note = f"{what}: as above"
            seen_reasons.add(why)
            lines.append(note)
        out.append(lines)
    return out


# ---------------------------------------------------------------- images
def _image_uri(path: Path | None) -> tuple[str | None, str | None]:
    """(data URI of a JPEG thumbnail file, None) or (None, why it cannot be shown)."""
    if path is None:
        return None, "no thumbnail"
    try:
        return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii"), None
    except OSError as error:
        return None, f"thumbnail unreadable: {error.strerror or error}"


# ---------------------------------------------------------------- grid
@dataclass
class _Column:
    label: str
    result: Result
    scores: pd.DataFrame | None  # per-image CSV indexed by stem
    problem: str | None = None


@dataclass
class Grid:
    """A qualitative grid for one dataset: rendered rows plus notes."""

    title: str
    columns: list[str]
    rows: list[list[str]]  # HTML cells (already escaped)
    notes: list[str] = field(default_factory=list)


def _score_text(scores: pd.DataFrame | None, stem: str) -> str:
    if scores is None or stem not in scores.index:
        return ""
    row = scores.loc[stem]
    parts = []
    for metric in PER_IMAGE:
        if metric in row.index:
            value = pd.to_numeric(row[metric], errors="coerce")
            text = format_value(float(value), metric) if pd.notna(value) else None
            if text is not None:
                parts.append(f"{spec(metric).label} {text}")
    return " · ".join(parts)


def _figure(uri: str | None, alt: str, caption: str, missing: str | None = None) -> str:
    if uri is None:
        return (f'<td><figure><div class="missing">{_e(missing or "missing")}</div>'
                f"<figcaption>{_e(caption)}</figcaption></figure></td>")
    return (f'<td><figure><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption>'
            f"</figure></td>")


def _columns(members: list[Result], notes: list[str]) -> list[_Column]:
    """One column per (method, predictions folder); labelled with the protocol when a method repeats."""
    seen: dict[tuple[str, str | None], _Column] = {}
    for r in members:
        if (r.method, r.record.predictions) not in seen:
            scores, problem = per_image_scores(r)
            seen[(r.method, r.record.predictions)] = _Column(r.method, r, scores, problem)
    columns = list(seen.values())
    repeated = {c.label for c in columns if sum(o.label == c.label for o in columns) > 1}
    for c in columns:
        if c.label in repeated:
            c.label = f"{c.label} ({c.result.protocol_label})"
        if c.problem:
            notes.append(f"{c.label}: {c.problem}")
    return columns


def _sample_row(stem: str, domain: str | None, columns: list[_Column]) -> list[str]:
    """HTML cells of one grid row: masked input, each column's scored image with its scores, ground truth."""
    label = stem + (f" ({domain})" if domain else "")
    shared = next((c.result.thumbnails[stem] for c in columns if stem in c.result.thumbnails), {})
    uri, why = _image_uri(shared.get("input"))
    cells = [_figure(uri, f"masked input {label}", label, why)]
    for column in columns:
        score = _score_text(column.scores, stem)
        uri, why = _image_uri(column.result.thumbnails.get(stem, {}).get("scored"))
        cells.append(_figure(uri, f"{column.label} {label}", score, why and f"{why} for {stem}"))
    uri, why = _image_uri(shared.get("truth"))
    return cells + [_figure(uri, f"ground truth {label}", "ground truth", why)]


def _domains(columns: list[_Column]) -> dict[str, str | None]:
    """Sample id -> domain, from the columns' per-image scores (already read) where they have a domain column."""
    out: dict[str, str | None] = {}
    for column in columns:
        scores = column.scores
        if scores is not None and "domain" in scores.columns:
            out.update({stem: (d or None) for stem, d in scores["domain"].items()})
    return out


def build_grids(results: list[Result], samples: list[str] | None = None) -> list[Grid]:
    """One grid per dataset (name and content) whose results carry thumbnails; see the module doc.

    samples: sample ids to show (default: every sample with a thumbnail, in the first result's order); one
    without a thumbnail is listed in the notes (the scorer keeps those of `--thumbnail-samples`)."""
    by_dataset: dict[tuple, list[Result]] = {}
    for r in results:
        if r.thumbnails:
            by_dataset.setdefault((r.dataset_name, r.record.dataset.content_hash), []).append(r)
    grids = []
    for (name, _), members in by_dataset.items():
        notes: list[str] = []
        columns = _columns(members, notes)
        available = list(dict.fromkeys(stem for r in members for stem in r.thumbnails))
        wanted = list(samples) if samples else available
        absent = [s for s in wanted if s not in available]
        if absent:
            notes.append(f"no thumbnails of {', '.join(absent)} in the {name} results (re-score with "
                         "`--thumbnail-samples`)")
        domains = _domains(columns)
        rows = [_sample_row(stem, domains.get(stem), columns) for stem in wanted if stem in available]
        grids.append(Grid(f"Qualitative comparison: {name}", ["Masked input", *[c.label for c in columns],
                                                                "Ground truth"], rows, notes))
    for grid in grids:
        for note in grid.notes:
            logger.warning("%s: %s", grid.title, note)
    return grids


def grid_html(grid: Grid) -> str:
    parts = [f'<section class="qualitative"><h2>{_e(grid.title)}</h2>']
    if grid.rows:
        parts.append('<div class="scroll"><table class="grid"><thead><tr>' + "".join(f'<th scope="col">{_e(c)}</th>' for c in grid.columns)
                     + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(row) + "</tr>" for row in grid.rows]
        parts.append("</tbody></table></div>")
    if grid.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{note_html(n)}</li>" for n in grid.notes) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _provenance(result: Result) -> str:
    record = result.record
    parts = [result.method, result.dataset_name, result.protocol_label, f"created {record.created or '?'}",
             f"git {record.git_commit or '?'}"]
    return f"<li><code>{_e(result.path)}</code>: {_e(' · '.join(str(p) for p in parts))}</li>"


def hole_ratio_html(results: list[Result]) -> str:
    """Per column group, each per-image metric against the hole ratio (10% bins), one line per method, from the
    results' `per_hole_ratio` (as the LaMa evaluator breaks results down)."""
    from leaderboard.plots import line_chart_svg
    from leaderboard.tables import group_results

    sections = []
    for group in group_results(results):
        members = {m: r for m, r in group.results.items() if r.record.per_hole_ratio}
        if not members:
            continue
        bins = sorted({b for r in members.values() for b in r.record.per_hole_ratio}, key=lambda b: int(b.split("-")[0]))
        charts = []
        for metric in PER_IMAGE:
            series = {m: [r.record.per_hole_ratio.get(b, {}).get(metric) for b in bins] for m, r in members.items()}
            if any(v is not None for ys in series.values() for v in ys):
                charts.append(line_chart_svg(f"{spec(metric).label} vs hole ratio", bins, series, spec(metric).label))
        counts = ", ".join(f"{b}: {max(r.record.per_hole_ratio.get(b, {}).get('n', 0) for r in members.values())}"
                           for b in bins)
        sections.append(f'<section class="hole-ratio"><h2>{_e(group.label)}: metrics by hole ratio</h2>'
                        f'<p class="meta">Images per bin: {_e(counts)}.</p>{"".join(charts)}</section>')
    return "\n".join(sections)


# ---------------------------------------------------------------- worst images
WORST_COUNT = 5


def worst_images(scores: pd.DataFrame, metric: str, count: int = WORST_COUNT) -> list[tuple[str, str | None, float]]:
    """The `count` worst images of one method for `metric`: [(stem, domain or None, value)], worst first (highest
    values when lower is better, lowest otherwise; ties in CSV order); images without a finite value are skipped.
    scores: a per-image CSV indexed by stem (`leaderboard.results.per_image_scores`)."""
    if metric not in scores.columns:
        return []
    values = pd.to_numeric(scores[metric], errors="coerce")
    values = values[values.abs() < float("inf")]  # NaN and infinities compare False
    ordered = values.sort_values(ascending=spec(metric).higher_is_better, kind="stable").head(count)
    domains = scores["domain"] if "domain" in scores.columns else pd.Series(dtype=str)
    return [(str(stem), (domains.get(stem) or None), float(value)) for stem, value in ordered.items()]


def worst_images_html(results: list[Result], count: int = WORST_COUNT) -> str:
    """Per result with per-image scores of the consistency metrics (`evaluators.metrics.CONSISTENCY`): a table,
    one row per metric, of its `count` worst images (stem, domain, value; the scored thumbnail when the result
    kept one for that stem). Unreadable per-image files become notes."""
    sections = []
    for result in results:
        scores, problem = per_image_scores(result)
        title = f"Worst {count} images: {result.method} on {result.dataset_name} ({result.protocol_label})"
        if problem:
            if any(m in result.overall for m in CONSISTENCY):
                sections.append(f'<section class="worst"><h2>{_e(title)}</h2><ul class="notes"><li>{_e(problem)}'
                                "</li></ul></section>")
            continue
        rows = []
        for metric in CONSISTENCY:
            worst = worst_images(scores, metric, count) if scores is not None else []
            if not worst:
                continue
            label, arrow = metric_header(metric, result.record.higher_is_better, ("↑", "↓"))
            cells = [f'<th scope="row">{_e(label)} {arrow}</th>']
            for stem, domain, value in worst:
                caption = f"{stem}" + (f" ({domain})" if domain else "") + f": {format_value(value, metric)}"
                path = result.thumbnails.get(stem, {}).get("scored")
                if path is None:  # thumbnails are kept for a few samples only: the caption alone
                    cells.append(f"<td><figure><figcaption>{_e(caption)}</figcaption></figure></td>")
                    continue
                uri, why = _image_uri(path)
                cells.append(_figure(uri, f"{result.method} {stem}", caption, why))
            rows.append("<tr>" + "".join(cells) + "</tr>")
        if rows:
            sections.append(f'<section class="worst"><h2>{_e(title)}</h2><div class="scroll"><table class="grid">'
                            f'<tbody>{"".join(rows)}</tbody></table></div></section>')
    return "\n".join(sections)


def render_html(tables: list[Table], grids: list[Grid], sources: list[Result],
                title: str = "MISATO-bench leaderboard") -> str:
    """The whole report as one HTML string (UTF-8, no external resources, no scripts)."""
    files = "".join(_provenance(r) for r in sources)
    body = "\n".join([*(table_html(t, n) for t, n in zip(tables, new_notes(tables))), hole_ratio_html(sources),
                      *(grid_html(g) for g in grids), worst_images_html(sources)])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{_e(title)}</h1>\n"
        f'<details class="meta"><summary>{len(sources)} result file(s)</summary><ul>{files}</ul></details>\n'
        f"{body}\n</body></html>\n"
    )
