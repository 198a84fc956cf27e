"""`misato table`: result JSON files -> leaderboard tables and the HTML report."""

from __future__ import annotations

import argparse

from misato.cli._common import parse_csv

HELP = "tabulate result JSON files: Markdown, LaTeX, CSV and a self-contained HTML report"

EPILOG = """Columns are grouped by dataset kind (MISATO, Places2; a custom dataset by its name). Results of
different protocols (or datasets, or paste-back settings) of one kind become separate column groups, never
one ranked column. Paper rows show the ASUKA paper's figures beside methods whose names match, with
diff = measured - paper; only measured rows are ranked (bold).

examples:
  misato table results/ --out leaderboard/
  misato table results/lama__misato-512__comod.json results/telea__misato-512__comod.json --out out --format md,html
  misato table results/ --out out --samples 0000,0500,1000,1500 --no-paper
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="result JSON files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    output = parser.add_argument_group("output")
    output.add_argument("--format", default="md,tex,csv,html", type=parse_csv,
                        help="comma-separated subset of md,tex,csv,html (default: all)")
    output.add_argument("--samples", action="append", type=parse_csv, default=None,
                        help="sample ids for the HTML grid, comma-separated or repeated, among those the scorer kept "
                        "thumbnails of (default: all of them; see `misato score --thumbnail-samples`)")
    output.add_argument("--paper", action=argparse.BooleanOptionalAction, default=True,
                        help="show the paper's figures beside measured rows, and the paper's tables (default: on)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from leaderboard import write_reports

    samples = [stem for group in args.samples for stem in group] if args.samples else None
    written = write_reports(args.results, args.out, formats=args.format, samples=samples, paper=args.paper)
    for name, path in written.items():
        print(f"{name:>20}  {path}")
    return 0
