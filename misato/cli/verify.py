"""`misato verify DIR`: check a built dataset against its manifest.json (exit 1 on any problem)."""

from __future__ import annotations

import argparse

from misato.cli._common import add_deprecated_alias, int_at_least

HELP = "check a MISATO/Places2/embedded folder: manifest (missing, changed, unlisted files) and structure"

EPILOG = """examples:
  misato verify out/misato
  misato verify out/places2 --max-listed 100
  misato verify downloads/MISATO          (no manifest: structure, binary masks, MISATO indices and domain counts)
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("root", help="dataset folder (with or without manifest.json)")
    listed = parser.add_argument("--max-listed", dest="limit", type=int_at_least(0, "must be 0 or more, got {value}"), default=20, metavar="N",
                                 help="names listed per problem kind (default %(default)s)")
    add_deprecated_alias(parser, "--limit", listed)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from misato.builder.verify import verify_folder

    report = verify_folder(args.root)
    for line in report.lines(args.limit):
        print(line)
    return 0 if report.ok else 1
