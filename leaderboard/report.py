"""Write the leaderboard files: the Python API behind `misato table`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from misato.io import atomic_write_text

from leaderboard.html import build_grids, render_html
from leaderboard.render import render_latex, render_markdown, table_csv
from leaderboard.results import collect
from leaderboard.tables import FailedRun, build_tables, current_results

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("md", "tex", "csv", "html")


@dataclass(frozen=True)
class ReportOptions:
    """formats: subset of FORMATS; samples: sample ids for the HTML grid (None = every one with thumbnails);
    paper: show the paper's figures (paper/diff rows and the paper's tables)."""

    formats: tuple[str, ...] = FORMATS
    samples: tuple[str, ...] | None = None
    paper: bool = True

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"unknown format(s) {unknown or self.formats}; choose from {', '.join(FORMATS)}")


def write_reports(
    result_paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    formats: Iterable[str] = FORMATS,
    samples: Iterable[str] | None = None,
    paper: bool = True,
    failures: Iterable[FailedRun] = (),
) -> dict[str, Path]:
    """Collect result JSONs (files or folders) and write the leaderboard into `out_dir`, atomically.

    failures: runs that could not be scored, kept in the tables as "failed" rows (`leaderboard.tables.FailedRun`).
    Returns {name: path}: "md" -> leaderboard.md, "tex" -> leaderboard.tex, "html" -> report.html, and one
    "csv:<table key>" -> <table key>.csv per table (tidy CSV, see `leaderboard.render.table_csv`).
    """
    options = ReportOptions(tuple(formats), tuple(samples) if samples else None, paper)
    results = collect(result_paths)
    failures = tuple(failures)
    tables = build_tables(results, paper=options.paper, failures=failures)
    out = Path(out_dir)
    written: dict[str, Path] = {}
    if "md" in options.formats:
        written["md"] = out / "leaderboard.md"
        atomic_write_text(written["md"], render_markdown(tables))
    if "tex" in options.formats:
        written["tex"] = out / "leaderboard.tex"
        atomic_write_text(written["tex"], render_latex(tables))
    if "csv" in options.formats:
        for table in tables:
            written[f"csv:{table.key}"] = out / f"{table.key}.csv"
            atomic_write_text(written[f"csv:{table.key}"], table_csv(table))
    if "html" in options.formats:
        current = current_results(results, failures)  # without the results that failed runs supersede
        grids = build_grids(current, list(options.samples) if options.samples else None)
        written["html"] = out / "report.html"
        atomic_write_text(written["html"], render_html(tables, grids, current))
    logger.info("wrote %d leaderboard file(s) to %s", len(written), out)
    return written
