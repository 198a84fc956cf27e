"""The `misato` command line: a thin layer over the Python API.

Each subcommand is a module in this package exposing `HELP: str` and `register(parser)` which adds its
arguments and `parser.set_defaults(handler=...)`; heavy imports stay inside handlers so `--help` is fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="misato", description="MISATO-bench: build, inpaint, score, tabulate.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = sub.add_parser(
            info.name, help=module.HELP, description=module.HELP, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.register(command)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("misato-bench")
    except metadata.PackageNotFoundError:
        from misato import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError) as error:
        if args.verbose:
            raise
        text = os_error_text(error) if isinstance(error, OSError) else error_text(error)
        print(f"misato {args.command}: error: {text}", file=sys.stderr)
        return 1


def error_text(error: Exception) -> str:
    """The message of a ValueError / KeyError (a KeyError's str() is the repr of its message, quotes included)."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


# Errors of a write that the user fixes outside misato, each with its hint (None: the message says it all).
DISK_ERRNOS: dict[int, str | None] = {
    errno.ENOSPC: "free some space and run the same command again",
    errno.EDQUOT: "free some of the quota and run the same command again",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: None,
}


def os_error_text(error: OSError) -> str:
    """One line for an OSError: "<file>: <reason> (<hint>)" for a full disk, a quota, a read-only file system or
    a permission denied (`DISK_ERRNOS`), which Python prints as "[Errno 28] ..." naming no file when a write
    fails; the writers (`misato.io.atomic_write_bytes`, ...) set the file. A file where a folder was to be made
    or read says so; any other OSError naming a file is "<file>: <reason>", the rest as Python words it."""
    if error.errno in (errno.EEXIST, errno.ENOTDIR) and error.filename is not None and os.path.isfile(error.filename):
        return f"{error.filename} is a file, not a folder (a folder is expected there)"
    if error.errno not in DISK_ERRNOS:
        if error.filename is not None and error.strerror:  # "[Errno 2] No such file or directory: 'x'" -> "x: ..."
            return f"{error.filename}: {error.strerror}"
        return str(error)
    where = error.filename if error.filename is not None else "(file not named by the writer; -v shows where)"
    hint = DISK_ERRNOS[error.errno]
    return f"{where}: {error.strerror or os.strerror(error.errno)}" + (f" ({hint})" if hint else "")


if __name__ == "__main__":
    sys.exit(main())
