"""`misato status OUT`: what an output folder of `misato run` or `misato reproduce` holds."""

from __future__ import annotations

import argparse

HELP = ("show what a run folder holds per dataset and method: failed, scored, inpainted, running, partial N/M, "
        "waiting or missing")

EPILOG = """States come from the job's record (run.json / reproduce.json: planned pairs, failures), the result
files, the samples on disk and the folder's lock (a live job); see misato/jobs/status.py.

examples:
  misato status runs/table1          (a `misato reproduce table1` folder: also lists pairs not started)
  misato status runs/                (a `misato run` folder)"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("out", help="the --out folder of `misato run` or `misato reproduce`")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from misato.jobs.status import folder_status, format_status

    print(format_status(folder_status(args.out)))
    return 0
