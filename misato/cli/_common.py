"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse


def parse_weight_overrides(values: list[str] | None) -> dict[str, str]:
    """`--weight KEY=PATH` pairs -> {key: path}."""
    overrides = {}
    for value in values or []:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            raise ValueError(f"--weight expects KEY=PATH, got {value!r}")
        overrides[key] = path
    return overrides


def add_weight_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("weights")
    group.add_argument("--weight", action="append", metavar="KEY=PATH",
                       help="explicit weight file for a registry key (repeatable); see `misato weights list`")
    group.add_argument("--allow-download", action="store_true", help="download missing weights (needs internet)")


def add_device_arguments(parser: argparse.ArgumentParser, batch_size: int = 16) -> None:
    group = parser.add_argument_group("compute")
    group.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    group.add_argument("--batch-size", type=int, default=batch_size)
    group.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")
