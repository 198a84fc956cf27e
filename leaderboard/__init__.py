"""Leaderboard: result JSON files -> pandas tables -> Markdown / LaTeX / CSV / one HTML report.

Reads result files only (never imports a model or a metric). Entry points:
`write_reports(result_paths, out_dir, formats=..., samples=...)`, or `collect` + `build_tables` + the
renderers in `leaderboard.render` and `leaderboard.html` for custom layouts.
"""

from leaderboard.report import FORMATS, ReportOptions, write_reports
from leaderboard.results import Result, ResultFileError, collect, load_result, results_frame
from leaderboard.tables import Table, build_domain_tables, build_metrics_table, build_table1, build_tables

__all__ = [
    "FORMATS", "ReportOptions", "Result", "ResultFileError", "Table", "build_domain_tables", "build_metrics_table",
    "build_table1", "build_tables", "collect", "load_result", "results_frame", "write_reports",
]
