"""Reading checkpoints safely, and the one-time conversion of an authors' pickled release into safetensors.

`load_checkpoint` never unpickles: `.safetensors` (by suffix or content), anything else with
`torch.load(weights_only=True)` (plus the plain attribute bags training scripts store beside weights). A file
that holds other objects (a Lightning checkpoint with config objects and callbacks, a StyleGAN-style network
pickle) is refused with the command that converts it, `misato weights convert SRC DEST --state-key KEY`
(`convert_checkpoint`), which reads it with `misato.unpickle.RestrictedUnpickler`: the pickled classes are
replaced by inert stand-ins, never imported or run. A file that is not a readable checkpoint at all (truncated,
garbage) is a one-line `CorruptCheckpointError` naming the file and what was expected.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from itertools import chain
from typing import Any, Callable

import torch

from misato.io import write_errors_named
from misato.unpickle import StandIn, file_format, module_state, module_tensors, read_release, walk

# Plain attribute bags that training scripts pickle beside the weights (MAE's `misc.save_model` stores `args`).
_SAFE_GLOBALS: list[Any] = [argparse.Namespace]
EXPECTED = "a .safetensors file or a torch.save / pickle checkpoint"
RECOVERY = "download it (or convert it) again"


class CheckpointNeedsConversionError(ValueError):
    """A checkpoint that `torch.load(weights_only=True)` refuses; the message holds the converting command."""


class CorruptCheckpointError(ValueError):
    """A file that is not a readable checkpoint (truncated, damaged, another kind of file); the message names the
    file, what was expected and what was found."""


def convert_command(path: str | os.PathLike, state_key: str | None = None) -> str:
    """The command that turns a pickled checkpoint into a safetensors file beside it."""
    path = Path(path)
    option = f" --state-key {state_key}" if state_key else ""
    return f"misato weights convert {path} {path.with_suffix('.safetensors')}{option}"


def _reason(error: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _load_safetensors(path: Path, kind: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as error:
        found = "" if kind in ("safetensors", "unknown") else f"; its content is a {kind} file"
        raise CorruptCheckpointError(f"{path}: not a readable .safetensors file ({_reason(error)}{found}): expected "
                                     f"a complete safetensors file; it may be truncated; {RECOVERY}") from None


def load_checkpoint(path: str | os.PathLike, state_key: str | None = None) -> Any:
    """Read a checkpoint on CPU without unpickling code.

    path: a safetensors file (a flat dict of tensors; by suffix or content) or a torch file read with
      `weights_only=True`.
    state_key: the entry holding the state dict in the publisher's layout ("state_dict" for Lightning, "G_ema"
      for a network pickle); only used in the conversion command of the error.
    Raises FileNotFoundError; CheckpointNeedsConversionError naming the `misato weights convert` command for a
    readable pickle with other objects; CorruptCheckpointError for a truncated, damaged or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    kind = file_format(path)
    if path.suffix == ".safetensors" or kind == "safetensors":
        return _load_safetensors(path, kind)
    if kind == "unknown":
        raise CorruptCheckpointError(f"{path}: not a checkpoint: expected {EXPECTED}, found neither (first bytes "
                                     f"{path.read_bytes()[:8]!r}); {RECOVERY}")
    if kind in ("torchscript", "zip archive"):
        what = "a TorchScript archive" if kind == "torchscript" else "a zip archive without a torch.save pickle inside"
        raise CorruptCheckpointError(f"{path}: {what}, not a checkpoint of weights: expected {EXPECTED}")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # refused below with the reason
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _refusal(path, state_key) from None
    except Exception as error:  # torch's readers fail on damaged files with OSError, KeyError, RuntimeError...
        raise CorruptCheckpointError(f"{path}: a damaged {kind} file ({_reason(error)}): expected {EXPECTED}; "
                                     f"it may be truncated; {RECOVERY}") from None


def _refusal(path: Path, state_key: str | None) -> ValueError:
    """Why `torch.load(weights_only=True)` refused `path`: a complete pickle of other objects (the conversion
    command, with `state_key` when the file has that entry) or a damaged one (CorruptCheckpointError)."""
    try:
        release = read_release(path)
    except Exception as damage:
        return CorruptCheckpointError(f"{path}: a damaged {file_format(path)} file ({_reason(damage)}): expected "
                                      f"{EXPECTED}; it may be truncated; {RECOVERY}")
    try:
        _select(release.obj, state_key, path)
    except ValueError:
        state_key = None
    counts = stand_in_counts(release.obj)
    packages = sorted({item.stand_in_for.split(".")[0] for item in walk(release.obj)
                       if isinstance(item, StandIn) or (isinstance(item, type) and issubclass(item, StandIn))})
    held = (f"objects of {len(counts)} other classes (from {', '.join(packages)})" if counts
            else "objects outside torch's allow-list (numpy arrays or containers)")
    return CheckpointNeedsConversionError(
        f"{path}: torch.load(weights_only=True) refuses it: besides tensors it holds {held}, and checkpoints are "
        f"never unpickled here. "
        f"Converting reads its tensors only, running none of its code; convert it once: "
        f"{convert_command(path, state_key)}")


def stand_in_counts(obj: Any) -> collections.Counter[str]:
    """Objects (and class references) in `obj` that the restricted unpickler replaced by stand-ins, by class."""
    counts: collections.Counter[str] = collections.Counter()
    for item in walk(obj):
        if isinstance(item, StandIn):
            counts[item.label] += 1
        elif isinstance(item, type) and issubclass(item, StandIn):
            counts[f"{item.stand_in_for} (class)"] += 1
    return counts


def _describe(value: Any) -> str:
    if module_state(value) is not None:
        return f"a pickled module {value.label}"
    return f"a stand-in for {value.stand_in_for}" if isinstance(value, StandIn) else type(value).__name__


def _entries(obj: Any) -> list[str]:
    """The names one level below `obj` (mapping keys or sub-modules), for error messages."""
    state = module_state(obj)
    names = state["_modules"] if state is not None else obj if isinstance(obj, Mapping) else {}
    return [str(name) for name in list(names)[:10]]


def _select(obj: Any, state_key: str | None, src: Path) -> Any:
    """The part of a checkpoint at the dotted `state_key`: mapping entries, or sub-modules of a pickled module."""
    for index, part in enumerate(state_key.split(".") if state_key else []):
        state = module_state(obj)
        children = state["_modules"] if state is not None else obj if isinstance(obj, Mapping) else {}
        if part not in children:
            where = ".".join(state_key.split(".")[:index]) or "the top level"
            raise ValueError(f"{src}: no entry {part!r} on the way to --state-key {state_key} (found at {where}: "
                             f"{_entries(obj) or _describe(obj)})")
        obj = children[part]
    return obj


def _tensors(obj: Any, where: str, src: Path, state_key: str | None) -> dict[str, torch.Tensor]:
    """Name -> tensor of a mapping (nested mappings and pickled modules flattened with dots) or of a pickled
    module (its `state_dict()`); any other leaf is an error naming the entries to choose from."""
    state = module_state(obj)
    if state is not None:
        try:
            return module_tensors(state, f"{where}." if where else "")
        except ValueError as error:
            raise ValueError(f"{src}: {error}") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{src}: {where or 'the file'} is {_describe(obj)}, not a mapping of tensors or a module")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        name = f"{where}.{key}" if where else str(key)
        if isinstance(value, torch.Tensor):
            out[name] = value
        elif isinstance(value, Mapping) or module_state(value) is not None:
            out.update(_tensors(value, name, src, state_key))
        else:
            raise ValueError(f"{src}: {name} is {_describe(value)}, not a tensor; pick the weights with --state-key "
                             f"(entries of {where or state_key or 'the file'}: {_entries(obj)})")
    return out


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What `convert_checkpoint` wrote and left out.

    format: "torch zip", "torch legacy" or "pickle"; tensors: written; skipped_tensors: tensors of the file outside
    `state_key`; stand_ins: objects (and class references) of other classes in the whole file, by class, which
    were recorded inertly and not converted.
    """

    src: Path
    dest: Path
    format: str
    state_key: str | None
    tensors: int
    skipped_tensors: int
    stand_ins: dict[str, int]

    def summary(self) -> str:
        """Lines for the command line: what was written, then what was skipped."""
        under = f" under {self.state_key}" if self.state_key else ""
        lines = [f"read {self.src} ({self.format}): wrote {self.tensors} tensors{under} to {self.dest}",
                 f"skipped {self.skipped_tensors} tensors outside {self.state_key or 'the selection'}"]
        if self.stand_ins:
            total = sum(self.stand_ins.values())
            lines.append(f"not built: {total} objects of {len(self.stand_ins)} other classes (recorded as stand-ins, "
                         f"never imported or run):")
            by_count = sorted(self.stand_ins.items(), key=lambda item: (-item[1], item[0]))
            lines += [f"  {count} x {name}" for name, count in by_count]
        return "\n".join(lines)


def convert_checkpoint(src: str | os.PathLike, dest: str | os.PathLike, state_key: str | None = None) -> Conversion:
    """Save the tensors of a pickled checkpoint (`src`) as the safetensors file `dest`, running none of its code.

    src: a Lightning `.ckpt`, a StyleGAN-style network `.pkl`, a (legacy or zip) `torch.save` file; read with
      `misato.unpickle.read_release` (other classes become inert stand-ins).
    state_key: dotted path to the weights inside the file: mapping entries ("state_dict", "model") or modules of a
      network pickle ("G_ema", whose parameters and persistent buffers are taken as its `state_dict()` would);
      None = the whole file. The keys written are those below `state_key`.
    Tensors shared between keys are copied (safetensors stores no aliases). `dest` is written atomically.
    Raises FileNotFoundError, CorruptCheckpointError (unreadable `src`), ValueError (no such `state_key`, a
    non-tensor entry, no tensors, `dest` not ending in .safetensors).
    """
    from safetensors.torch import save_file

    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    if dest.suffix != ".safetensors":
        raise ValueError(f"{dest}: the converted file must end in .safetensors")
    kind = file_format(src)
    if kind not in ("torch zip", "pickle"):
        done = "it is read as is" if kind in ("safetensors", "torchscript") else RECOVERY
        raise CorruptCheckpointError(f"{src}: expected a pickled checkpoint (torch.save zip or pickle), found "
                                     f"{kind if kind != 'unknown' else 'neither'}: {done}")
    try:
        release = read_release(src)
    except Exception as error:
        raise CorruptCheckpointError(f"{src}: a damaged {kind} file ({_reason(error)}); it may be truncated; "
                                     f"{RECOVERY}") from None
    selected = _select(release.obj, state_key, src)
    tensors = _tensors(selected, "", src, state_key)
    if not tensors:
        raise ValueError(f"{src}: no tensors found" + (f" under {state_key}" if state_key else ""))
    everything = {id(item) for item in walk(release.obj) if isinstance(item, torch.Tensor)}
    kept = {id(value) for value in tensors.values()}
    out = {key: value.detach().cpu().contiguous().clone() for key, value in tensors.items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with write_errors_named(dest, temporary=tmp):  # a full disk: removed, and an OSError naming dest
        save_file(out, str(tmp), metadata={"converted_from": src.name, "state_key": state_key or ""})
        os.replace(tmp, dest)
    return Conversion(src, dest, release.format, state_key, len(out), len(everything - kept),
                      dict(stand_in_counts(release.obj)))


def convert_to_safetensors(src: str | os.PathLike, dest: str | os.PathLike, state_key: str | None = None) -> Path:
    """`convert_checkpoint`, returning only the written path."""
    return convert_checkpoint(src, dest, state_key).dest


def sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `state` under `prefix` (e.g. "generator." of a training module), with the prefix removed;
    every other entry is left out."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def load_state_dict_file(path: str | os.PathLike, what: str = "a state dict") -> dict:
    """`load_checkpoint(path)` when it holds a dict (a state dict); else ValueError naming `path` and `what` it
    should be."""
    loaded = load_checkpoint(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not {what} (a dict of tensors), found {type(loaded).__name__}")
    return loaded


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
                      what: str, allow_missing: tuple[str, ...] = (), assign: bool = False) -> torch.nn.Module:
    """Load `state` into `module` strictly, or raise ValueError naming `source` (the file), `what` (the
    architecture expected) and the first missing / unexpected keys and wrong shapes. `allow_missing`: keys the
    publisher's file may lack (the module keeps its own values for them). `assign`: take the file's tensors
    instead of copying into the module's (for a module built on the meta device, ``build_empty``)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and k not in allow_missing]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {items[:5]} ({len(items)} in all)" for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if items]
        raise ValueError(f"{source}: not a {what} state dict: {'; '.join(parts)}")
    module.load_state_dict(dict(state), strict=not allow_missing, assign=assign)
    return module


def build_empty(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """`build()` with every parameter and buffer on the meta device: no memory and no random initialisation
    (drawing it costs 0.4-0.6 s for Inception or AlexNet on 2 CPU cores, only to be overwritten). Fill it with
    `module.load_state_dict(state, assign=True)`, then call `check_loaded`."""
    with torch.device("meta"):
        return build()


def check_loaded(module: torch.nn.Module, source: str) -> torch.nn.Module:
    """`module` in float32 (as loading into an initialised float32 module gives) once no tensor is left on the meta
    device; else ValueError naming `source` and the first names without values."""
    empty = [name for name, tensor in chain(module.named_parameters(), module.named_buffers()) if tensor.is_meta]
    if empty:
        raise ValueError(f"{source}: no values for {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    return module.float()
