"""`misato status OUT`: what an output folder of `misato run` or `misato reproduce` holds."""

from __future__ import annotations

import argparse

HELP = "show what a run folder holds: scored, inpainted, running, stopped or missing, per dataset and method"

EPILOG = """examples:
  misato status runs/table1          (a `misato reproduce table1` folder: also lists pairs not started)
  misato status runs/                (a `misato run` folder)"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("out", help="the --out folder of `misato run` or `misato reproduce`")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from misato.status import folder_status, format_status

    print(format_status(folder_status(args.out)))
    return 0
