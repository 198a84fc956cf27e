"""Which inpainter a method name means: built-in names, aliases, plug-ins and precomputed folders.

One registry (in the manner of lm-evaluation-harness's `api/registry.py`) maps a *method spec* to an
`Inpainter` subclass. Specs, tried in this order:

- ``folder:PATH``: precomputed predictions in PATH, matched by sample stem (`baselines.folder`);
- ``path/to/file.py:Class``: a class in a Python file outside any package;
- ``package.module:Class``: a class in an importable module;
- a name: a built-in (`BUILTIN`, imported lazily from its ``"module:Class"`` target), an alias
  (`ALIASES`), or a Python entry point in the group ``misato.inpainters`` declared by any installed
  package (``[project.entry-points."misato.inpainters"] my-method = "my_pkg.mod:MyInpainter"``).

Nothing is imported until a spec is asked for, so a broken plug-in (or a built-in whose optional
dependencies are missing) breaks only the runs that request it, with an `InpainterLoadError` naming it.
Every resolved target must be a subclass of `baselines.base.Inpainter`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.base import Inpainter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "misato.inpainters"
FOLDER_PREFIX = "folder:"

# One source of truth per name: built-in name -> lazy "module:Class" target.
BUILTIN: dict[str, str] = {
    "telea": "baselines.classical:TeleaInpainter",
    "ns": "baselines.classical:NavierStokesInpainter",
    "biharmonic": "baselines.classical:BiharmonicInpainter",
    "lama": "baselines.lama:LamaInpainter",
    "mat": "baselines.mat.inpainter:MatInpainter",
    "comod": "baselines.comod.inpainter:CoModGanInpainter",
    "mae-far": "baselines.maefar.inpainter:MaeFarInpainter",
    "dummy": "baselines.dummy:MeanColourInpainter",
    "asuka-sd": "baselines.asuka.inpainter:AsukaSDInpainter",
    "asuka-flux": "baselines.asuka.flux:AsukaFluxInpainter",
    "sd": "baselines.sd.inpainters:SDInpainter",
    "sd-text": "baselines.sd.inpainters:SDTextInpainter",
    "sd-prompt": "baselines.sd.inpainters:SDPromptInpainter",
    "sd-repaint": "baselines.sd.repaint:SDRepaintInpainter",
}

# Alternative spellings -> built-in name.
ALIASES: dict[str, str] = {
    "opencv-telea": "telea",
    "navier-stokes": "ns",
    "opencv-ns": "ns",
    "big-lama": "lama",
    "co-mod-gan": "comod",
    "maefar": "mae-far",
    "asuka": "asuka-sd",
    "mean": "dummy",
}


class InpainterLoadError(ValueError):
    """A method spec that cannot be turned into an inpainter class; the message names the spec."""


class UnknownInpainterError(InpainterLoadError):
    """A method name that is neither built in, an alias, nor an entry point."""


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: what to import (`target`) and options it implies (e.g. a folder root)."""

    spec: str
    origin: str  # "builtin", "entry_point", "module", "file", "folder"
    target: str
    options: dict[str, Any] = field(default_factory=dict)


def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of `group` by name (first one wins on duplicate names, with a warning)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for point in importlib.metadata.entry_points(group=group):
        if point.name in found and found[point.name].value != point.value:
            log.warning("entry point %r in %s declared twice (%s, %s); using the first",
                        point.name, group, found[point.name].value, point.value)
            continue
        found.setdefault(point.name, point)
    return found


def _import_module_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise InpainterLoadError(f"cannot import module {module_name!r} for {target!r}: {error}") from error
    return _getattr_path(module, attr, target)


def _getattr_path(module: Any, attr: str, target: str) -> Any:
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as error:
            raise InpainterLoadError(f"{target!r}: {module.__name__} has no attribute {attr!r}") from error
    return obj


def _import_file_target(target: str) -> Any:
    """Import `path/to/file.py:Class` as a module named after the file's absolute path."""
    path_text, _, attr = target.rpartition(":")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise InpainterLoadError(f"{target!r}: no such file {path}")
    # A name unique per path, so two plug-in files called `method.py` never replace each other.
    module_name = f"misato_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise InpainterLoadError(f"{target!r}: {path} is not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up here
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise InpainterLoadError(f"cannot import {path} for {target!r}: {error}") from error
    return _getattr_path(module, attr, target)


class InpainterRegistry:
    """Method specs -> `Inpainter` subclasses; see the module docstring for the accepted forms."""

    def __init__(
        self,
        builtin: dict[str, str],
        aliases: dict[str, str],
        entry_point_group: str | None = ENTRY_POINT_GROUP,
        base: type = Inpainter,
    ) -> None:
        unknown = {a: n for a, n in aliases.items() if n not in builtin}
        if unknown:
            raise ValueError(f"aliases point to names that are not built in: {unknown}")
        clash = set(aliases) & set(builtin)
        if clash:
            raise ValueError(f"names are both built in and aliases: {sorted(clash)}")
        self.builtin = dict(builtin)
        self.aliases = dict(aliases)
        self.entry_point_group = entry_point_group
        self.base = base

    def entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        """Plug-ins declared by installed packages (read fresh each call; nothing is imported)."""
        return _entry_points(self.entry_point_group) if self.entry_point_group else {}

    def names(self) -> list[str]:
        """Built-in names, then entry-point names (aliases and spec forms not included)."""
        plugins = [name for name in self.entry_points() if name not in self.builtin]
        return list(self.builtin) + sorted(plugins)

    def parse(self, spec: str) -> MethodSpec:
        """Classify `spec` without importing anything; unknown names raise `UnknownInpainterError`."""
        if not isinstance(spec, str) or not spec.strip():
            raise InpainterLoadError(f"a method spec must be a non-empty string, got {spec!r}")
        spec = spec.strip()
        if spec.startswith(FOLDER_PREFIX):
            root = spec[len(FOLDER_PREFIX):]
            if not root:
                raise InpainterLoadError(f"{spec!r}: expected folder:PATH")
            return MethodSpec(spec, "folder", "baselines.folder:FolderInpainter", {"root": root})
        if ":" in spec:
            left, _, attr = spec.rpartition(":")
            if not left or not attr:
                raise InpainterLoadError(f"{spec!r}: expected module:Class or path/to/file.py:Class")
            is_file = left.endswith(".py") or "/" in left or "\\" in left
            return MethodSpec(spec, "file" if is_file else "module", spec)
        name = self.aliases.get(spec, spec)
        if name in self.builtin:
            return MethodSpec(spec, "builtin", self.builtin[name])
        points = self.entry_points()
        if name in points:
            return MethodSpec(spec, "entry_point", points[name].value)
        choices = list(self.builtin) + list(self.aliases) + list(points)
        close = difflib.get_close_matches(spec, choices, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownInpainterError(
            f"unknown inpainter {spec!r}; {hint}known: {', '.join(self.names())}; "
            f"or give module:Class, path/to/file.py:Class or folder:PATH"
        )

    def get(self, spec: str) -> type[Inpainter]:
        """The inpainter class for `spec`, imported now; errors name the spec and the cause."""
        parsed = self.parse(spec)
        if parsed.origin == "file":
            cls = _import_file_target(parsed.target)
        elif parsed.origin == "entry_point":
            point = self.entry_points()[self.aliases.get(parsed.spec, parsed.spec)]
            try:
                cls = point.load()
            except Exception as error:
                dist = getattr(getattr(point, "dist", None), "name", None) or "an installed package"
                raise InpainterLoadError(
                    f"plug-in {point.name!r} ({point.value}, from {dist}) failed to load: {error}"
                ) from error
        else:
            cls = _import_module_target(parsed.target)
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise InpainterLoadError(
                f"{spec!r} resolves to {cls!r}, which is not a subclass of {self.base.__module__}.{self.base.__name__}"
            )
        return cls

    def accepted_options(self, spec: str) -> set[str] | None:
        """Option names the method of `spec` takes; None = any. Built-ins (and folders) are held to their
        constructor's parameters; a plug-in whose constructor takes **options may read options of its own."""
        return self.get(spec).accepted_options(strict=self.parse(spec).origin in ("builtin", "folder"))

    def create(self, spec: str, device: str = "cpu", **options: Any) -> Inpainter:
        """Instantiate the inpainter for `spec` on `device`; spec-implied options (folder root) are added.
        Options it does not take are refused, naming the valid ones (a typo would otherwise be ignored), and so are
        values not of the type its constructor declares (`baselines.options`)."""
        options = {**self.parse(spec).options, **options}
        accepted = self.accepted_options(spec)
        unknown = sorted(set(options) - accepted) if accepted is not None else []
        if unknown:
            hints = [f"{close[0]} for {name}" for name in unknown
                     if (close := difflib.get_close_matches(name, sorted(accepted), n=1, cutoff=0.6))]
            raise InpainterLoadError(
                f"{spec}: unknown option(s) {', '.join(unknown)}"
                f"{' (did you mean ' + ', '.join(hints) + '?)' if hints else ''}; valid: {', '.join(sorted(accepted))}")
        from baselines.options import check_option_types

        cls = self.get(spec)
        check_option_types(cls, options, f"{spec}: option ")  # 10.7 for an int: one line, no traceback
        return cls(device=device, **options)


REGISTRY = InpainterRegistry(BUILTIN, ALIASES)


def create_inpainter(spec: str, device: str = "cpu", **options: Any) -> Inpainter:
    """`REGISTRY.create(spec, device, **options)`."""
    return REGISTRY.create(spec, device, **options)


def list_inpainters() -> list[str]:
    """Every name `create_inpainter` accepts without a `:` (built-ins and entry points)."""
    return REGISTRY.names()
