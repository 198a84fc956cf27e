"""One self-contained HTML report: the tables plus a qualitative grid like the paper's Fig. 8.

Self-contained: inline CSS, no scripts, images embedded as base64 `data:` URIs of resized thumbnails. A
Content-Security-Policy meta tag forbids scripts and remote loads, and every string that comes from a file
(method names, dataset names, stems, paths, captions) goes through `html.escape`.

Grid: rows = chosen samples; columns = masked input (hole as a translucent white overlay) | each method's
prediction (pasted back onto the ground truth when its result says paste_back, i.e. what was scored) |
ground truth; under each prediction, that image's scores from the method's per-image
CSV. Images come from `dataset.root` (opened with `misato.data.load_dataset`) and the `predictions` folder.
Anything missing (moved dataset, absent prediction) becomes a visible note in its cell, never an exception.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from leaderboard.metrics import info
from leaderboard.render import format_value, metric_header
from leaderboard.results import Result
from leaderboard.tables import DIFF, Table
from misato.composite import composite_uint8

logger = logging.getLogger(__name__)

PER_IMAGE_METRICS: tuple[str, ...] = ("lpips", "psnr", "ssim", "grad_error", "clip_score")
HOLE_OVERLAY = 0.65  # share of white blended into hole pixels of the masked input
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
    values = table.frame.to_numpy(dtype=float)
    best = table.best.to_numpy(dtype=bool)
    metrics = [m for _, m in table.frame.columns]
    for i, label in enumerate(table.frame.index):
        labels = label if isinstance(label, tuple) else (label,)
        kind = table.row_kind[i]
        cells = [f'<th scope="row">{_e(labels[0])}</th>'] + [f"<td>{_e(x)}</td>" for x in labels[1:]]
        for j, metric in enumerate(metrics):
            text = format_value(values[i, j], metric, signed=kind == DIFF)
            cls = ' class="best"' if best[i, j] else ""
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
def thumbnail_uri(array: np.ndarray, size: int) -> str:
    """uint8 (H, W, 3) RGB -> JPEG data URI of a copy resized to fit size x size (aspect kept)."""
    image = Image.fromarray(array)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def fit_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float (h, w) mask -> (H, W) of `shape`; MISATO masks are not always the image's size, and its loader
    resizes them with nearest neighbour, as here."""
    if mask.shape == tuple(shape[:2]):
        return mask
    resized = Image.fromarray((mask * 255).astype(np.uint8)).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.float32) / 255.0


def masked_input(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image, float (H, W) mask with 1 = hole -> image with the hole blended towards white."""
    mask = fit_mask(mask, image.shape)
    alpha = HOLE_OVERLAY * mask[..., None]
    return np.round(image * (1 - alpha) + 255.0 * alpha).astype(np.uint8)


def _find_image(folder: Path, stem: str) -> Path | None:
    from misato.io import IMAGE_SUFFIXES

    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


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


def _read_scores(result: Result) -> tuple[pd.DataFrame | None, str | None]:
    if result.per_image_csv is None:
        return None, None
    if not result.per_image_csv.is_file():
        return None, f"per-image scores not found: {result.per_image_csv}"
    scores = pd.read_csv(result.per_image_csv, dtype={"stem": str, "domain": str}, keep_default_na=False,
                         na_values={m: [""] for m in PER_IMAGE_METRICS})
    if "stem" not in scores.columns:
        return None, f"{result.per_image_csv}: no 'stem' column"
    return scores.drop_duplicates("stem").set_index("stem"), None


def _score_text(scores: pd.DataFrame | None, stem: str) -> str:
    if scores is None or stem not in scores.index:
        return ""
    row = scores.loc[stem]
    parts = []
    for metric in PER_IMAGE_METRICS:
        if metric in row.index:
            value = pd.to_numeric(row[metric], errors="coerce")
            text = format_value(float(value), metric) if pd.notna(value) else None
            if text is not None:
                parts.append(f"{info(metric).label} {text}")
    return " · ".join(parts)


def _figure(uri: str | None, alt: str, caption: str, missing: str | None = None) -> str:
    if uri is None:
        return (f'<td><figure><div class="missing">{_e(missing or "missing")}</div>'
                f"<figcaption>{_e(caption)}</figcaption></figure></td>")
    return (f'<td><figure><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption>'
            f"</figure></td>")


def default_samples(stems: list[str], domains: list[str | None], count: int = 4) -> list[str]:
    """First sample of each domain when the dataset has domains (like Fig. 8's rows), else the first few."""
    if any(d is not None for d in domains):
        firsts = {}
        for stem, domain in zip(stems, domains):
            firsts.setdefault(domain, stem)
        return [s for d, s in firsts.items() if d is not None]
    return stems[:count]


def _columns(members: list[Result], notes: list[str]) -> list[_Column]:
    """One column per (method, predictions folder); labelled with the protocol when a method repeats."""
    seen: dict[tuple[str, Path], _Column] = {}
    for r in members:
        if (r.method, r.predictions) not in seen:
            scores, problem = _read_scores(r)
            seen[(r.method, r.predictions)] = _Column(r.method, r, scores, problem)
    columns = list(seen.values())
    repeated = {c.label for c in columns if sum(o.label == c.label for o in columns) > 1}
    for c in columns:
        if c.label in repeated:
            c.label = f"{c.label} ({c.result.protocol_label})"
        if c.problem:
            notes.append(f"{c.label}: {c.problem}")
    return columns


def _sample_row(sample, hole_is_white: bool, columns: list[_Column], thumb: int) -> list[str]:
    """HTML cells of one grid row: masked input, each column's prediction with its scores, ground truth."""
    from misato.io import read_mask, read_rgb

    label = f"{sample.stem}" + (f" ({sample.domain})" if sample.domain else "")
    try:
        image = read_rgb(sample.image_path)
        mask = fit_mask(read_mask(sample.mask_path, hole_is_white=hole_is_white), image.shape)
        cells = [_figure(thumbnail_uri(masked_input(image, mask), thumb), f"masked input {label}",
                         f"{label} · hole {100 * float(mask.mean()):.1f}%")]
        truth = _figure(thumbnail_uri(image, thumb), f"ground truth {label}", "ground truth")
    except (ValueError, OSError) as error:
        image = mask = None
        cells = [_figure(None, "", label, f"input unreadable: {error}")]
        truth = _figure(None, "", "ground truth", f"unreadable: {error}")
    for column in columns:
        path = _find_image(column.result.predictions, sample.stem)
        score = _score_text(column.scores, sample.stem)
        if path is None:
            cells.append(_figure(None, "", score, f"no prediction {sample.stem} in {column.result.predictions}"))
            continue
        try:
            shown = read_rgb(path)
            if column.result.paste_back and image is not None and shown.shape == image.shape:
                shown = composite_uint8(shown, image, (mask >= 0.5).astype(np.float32))  # what was scored
            cells.append(_figure(thumbnail_uri(shown, thumb), f"{column.label} {label}", score))
        except (ValueError, OSError) as error:
            cells.append(_figure(None, "", score, f"unreadable prediction: {error}"))
    return cells + [truth]


def build_grids(results: list[Result], samples: list[str] | None = None, thumb: int = 256) -> list[Grid]:
    """One grid per dataset (root, name, resolution, mask convention) with predictions; see the module doc."""
    from misato.data import load_dataset

    by_dataset: dict[tuple, list[Result]] = {}
    for r in results:
        if r.predictions is not None:
            key = (r.dataset_root, r.dataset_name, r.dataset_resolution, r.mask_hole_is_white)
            by_dataset.setdefault(key, []).append(r)
    grids = []
    for (root, name, resolution, hole_is_white), members in by_dataset.items():
        notes: list[str] = []
        columns = _columns(members, notes)
        title = f"Qualitative comparison: {name}"
        try:
            if root is None:
                raise ValueError("the result files do not record dataset.root")
            dataset = load_dataset(root, resolution, mask_hole_is_white=hole_is_white)
        except (ValueError, OSError) as error:
            grids.append(Grid(title, [], [], notes + [f"dataset {name} not shown: {error}"]))
            continue
        stems = [s.stem for s in dataset.samples]
        wanted = list(samples) if samples else default_samples(stems, [s.domain for s in dataset.samples])
        absent = [s for s in wanted if s not in stems]
        if absent:
            notes.append(f"samples not in {name}: {', '.join(absent)}")
        chosen = dataset.subset([s for s in wanted if s in stems]).samples
        rows = [_sample_row(sample, hole_is_white, columns, thumb) for sample in chosen]
        grids.append(Grid(title, ["Masked input", *[c.label for c in columns], "Ground truth"], rows, notes))
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
    raw = result.raw
    parts = [result.method, result.dataset_name, result.protocol_label, f"created {raw.get('created', '?')}",
             f"git {raw.get('git_commit', '?')}"]
    return f"<li><code>{_e(result.path)}</code>: {_e(' · '.join(str(p) for p in parts))}</li>"


def render_html(tables: list[Table], grids: list[Grid], sources: list[Result],
                title: str = "MISATO-bench leaderboard") -> str:
    """The whole report as one HTML string (UTF-8, no external resources, no scripts)."""
    files = "".join(_provenance(r) for r in sources)
    body = "\n".join([*(table_html(t, n) for t, n in zip(tables, new_notes(tables))), *(grid_html(g) for g in grids)])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{_e(title)}</h1>\n"
        f'<details class="meta"><summary>{len(sources)} result file(s)</summary><ul>{files}</ul></details>\n'
        f"{body}\n</body></html>\n"
    )
