"""Reading checkpoints safely, and the one-time conversion of a trusted pickle into safetensors.

`load_checkpoint` never unpickles: `.safetensors` by suffix, anything else with `torch.load(weights_only=True)`
(plus the plain attribute bags training scripts store beside weights). A file that needs the full unpickler
(a Lightning checkpoint with config objects, a TensorFlow-era pickle re-saved with classes) is refused with
the command that converts it: `misato weights convert SRC DEST`, which the user runs once on a file they
trust (`convert_to_safetensors`).
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Plain attribute bags that training scripts pickle beside the weights (MAE's `misc.save_model` stores `args`).
_SAFE_GLOBALS: list[Any] = [argparse.Namespace]


class CheckpointNeedsConversionError(ValueError):
    """A checkpoint that `torch.load(weights_only=True)` refuses; the message holds the converting command."""


def convert_command(path: str | os.PathLike, state_key: str | None = None) -> str:
    """The command that turns a trusted pickle checkpoint into a safetensors file beside it."""
    path = Path(path)
    option = f" --state-key {state_key}" if state_key else ""
    return f"misato weights convert {path} {path.with_suffix('.safetensors')}{option}"


def load_checkpoint(path: str | os.PathLike, state_key: str | None = None) -> Any:
    """Read a checkpoint on CPU without unpickling code.

    path: `.safetensors` (a flat dict of tensors) or a torch file read with `weights_only=True`.
    state_key: the entry holding the state dict in the publisher's layout (e.g. "state_dict" for Lightning);
      only used in the conversion hint of the error.
    Raises FileNotFoundError, or CheckpointNeedsConversionError naming the `misato weights convert` command.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointNeedsConversionError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({reason}); checkpoints are never unpickled "
            f"here. If you trust this file, convert it once: {convert_command(path, state_key)}"
        ) from error


def _tensors(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """A mapping of name -> tensor, nested mappings flattened with dots (non-tensor leaves are an error)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a mapping of tensors, got {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        name = f"{where}.{key}" if where else str(key)
        if isinstance(value, torch.Tensor):
            out[str(key)] = value.detach().cpu().contiguous()
        elif isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in _tensors(value, name).items()})
        else:
            raise ValueError(f"{name}: not a tensor ({type(value).__name__}); pick the state dict with --state-key")
    return out


def convert_to_safetensors(src: str | os.PathLike, dest: str | os.PathLike, state_key: str | None = None) -> Path:
    """Unpickle `src` (a file the caller trusts: this runs arbitrary code from it) and save its tensors as `dest`.

    state_key: dotted path to the state dict inside the loaded object ("state_dict", "model", "g_ema");
      None = the object itself. Tensors shared between keys are copied (safetensors stores no aliases).
    Returns `dest`; written atomically.
    """
    from safetensors.torch import save_file

    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    if dest.suffix != ".safetensors":
        raise ValueError(f"{dest}: the converted file must end in .safetensors")
    obj = torch.load(src, map_location="cpu", weights_only=False)  # trusted by the caller, see docstring
    for part in (state_key.split(".") if state_key else []):
        if not isinstance(obj, Mapping) or part not in obj:
            keys = list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(f"{src}: no entry {part!r} on the way to --state-key {state_key} (found: {keys})")
        obj = obj[part]
    tensors = {key: value.clone() for key, value in _tensors(obj, "").items()}
    if not tensors:
        raise ValueError(f"{src}: no tensors found" + (f" under {state_key}" if state_key else ""))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    save_file(tensors, str(tmp), metadata={"converted_from": src.name, "state_key": state_key or ""})
    os.replace(tmp, dest)
    return dest


def sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `state` under `prefix` (e.g. "generator." of a training module), with the prefix removed;
    every other entry is left out."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
                      what: str, allow_missing: tuple[str, ...] = (), assign: bool = False) -> torch.nn.Module:
    """Load `state` into `module` strictly, or raise ValueError naming `source` (the file), `what` (the
    architecture expected) and the first missing / unexpected keys and wrong shapes. `allow_missing`: keys the
    publisher's file may lack (the module keeps its own values for them). `assign`: take the file's tensors
    instead of copying into the module's (for a module built on the meta device, `misato.devices.build_empty`)."""
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
