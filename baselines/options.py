"""Type checks of inpainter constructor options against the constructor's annotations: one rule for every option
given as text (`misato run --option`, `misato reproduce table1 --set` and its presets), applied before any work.

Options typed on the command line arrive parsed as JSON (`misato.cli._common.parse_option`): 3 -> int, 2.5 -> float,
true -> bool, null -> None, anything else a string. A value is accepted when it is an instance of the annotation:
bool only for bool (never 0/1 or "no"), int for int (not 10.7, not true), float for int or float (finite), str for
a string (or a path object, in Python), `X | None`, `Literal[...]`, `list[X]` / `tuple[X, ...]` and `dict` by their
parts; any other class by isinstance (a config dataclass cannot be given as text). Options without an annotation
(a plug-in's `**options`) are not checked here; the plug-in checks its own.
"""

from __future__ import annotations

import collections.abc
import json
import math
import numbers
import os
import types
import typing
from typing import Any


def _union_args(kind: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(kind) is typing.Union or isinstance(kind, types.UnionType):
        return typing.get_args(kind)
    return None


def matches(value: Any, kind: Any) -> bool:
    """Whether `value` is acceptable for an option annotated `kind` (see the module docstring)."""
    if kind is Any or kind is object:
        return True
    if (parts := _union_args(kind)) is not None:
        return any(matches(value, part) for part in parts)
    if kind is type(None) or kind is None:
        return value is None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        return value in args
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(float(value)))
    if kind is str:
        return isinstance(value, (str, os.PathLike))
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return not args or all(matches(v, args[0]) for v in value)
    if origin is dict or kind is dict:
        return isinstance(value, dict)
    if isinstance(kind, type):
        if issubclass(kind, os.PathLike):
            return isinstance(value, (str, os.PathLike))
        return isinstance(value, kind)
    return True  # an annotation this check does not understand: left to the constructor


def describe(kind: Any) -> str:
    """A reader's name for an annotation: "an integer", "a number or null", ..."""
    if (parts := _union_args(kind)) is not None:
        return " or ".join(dict.fromkeys(describe(p) for p in parts))
    if kind is type(None) or kind is None:
        return "null"
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in typing.get_args(kind))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a JSON object"}
    if kind in names:
        return names[kind]
    if typing.get_origin(kind) in (list, tuple):
        return "a JSON list"
    return getattr(kind, "__name__", str(kind))


def option_types(cls: type) -> dict[str, Any]:
    """{option name: annotation} of a constructor's named parameters; {} when they cannot be resolved."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 (a plug-in's unresolvable annotations: its constructor checks its values)
        return {}


def _shown(value: Any) -> str:
    """`value` as typed on the command line (JSON) when it is JSON, else its repr (a Python caller's object)."""
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):  # a list or dict holding objects JSON cannot write
            pass
    return repr(value)


def check_option_types(cls: type, options: dict[str, Any], where: str) -> None:
    """Raise ValueError for the first option whose value does not match its annotation, e.g.
    "--set sd-tiny.steps=10.7: steps takes an integer, got 10.7 (float)". `where` prefixes the message."""
    hints = option_types(cls)
    for name, value in options.items():
        kind = hints.get(name)
        if kind is not None and not matches(value, kind):
            shown = _shown(value)
            raise ValueError(f"{where}{name}={shown}: {name} takes {describe(kind)}, got {shown} "
                             f"({type(value).__name__})")
