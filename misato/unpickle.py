"""Reading the authors' pickled release formats without their code: a restricted unpickler.

The formats (none of them loads with `torch.load(weights_only=True)`):
- pytorch-lightning 1.x checkpoints (big-lama `models/best.ckpt`, MAE-FAR): a `torch.save` zip whose pickle
  holds callbacks keyed by their class, OmegaConf configs and optimizer states beside the 'state_dict';
- StyleGAN-style network pickles (MAT's `Places_512_FullData.pkl`): a plain `pickle.dump` of a dict whose modules
  ('G', 'D', 'G_ema') are `torch_utils.persistence` objects, i.e. calls of
  `torch_utils.persistence._reconstruct_persistent_obj(meta)` with the module's `__dict__` in `meta['state']`;
  their tensors are pickled in-line (`torch._utils._rebuild_tensor_v2` over storages pickled with
  `torch.storage._load_from_bytes`, i.e. a legacy `torch.save` of the storage);
- legacy (pre-zip) `torch.save` files.

`RestrictedUnpickler` builds only what torch itself builds under `weights_only=True` (its own allow-list of
tensor rebuild functions, storages, dtypes, `collections.OrderedDict`...), plain containers and numpy arrays.
Any other global (a class, a function: `posix.system`, `builtins.eval`, `pytorch_lightning...`) becomes a
`StandIn`: an inert record of the name, the call's arguments and the state, never imported and never run.
Setting state (the BUILD opcode) is allowed only on stand-ins, OrderedDicts and numpy arrays/dtypes.
Storages pickled in-line are read by `torch.load(weights_only=True)` on their bytes.
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import io
import os
import pickle
import sys
import types
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch._weights_only_unpickler import _get_allowed_globals  # torch's own weights_only allow-list (cached)

# The call that rebuilds a `torch_utils.persistence` object (StyleGAN2-ADA, StyleGAN3, MAT, CoModGAN-pytorch).
PERSISTENT_OBJECT = "torch_utils.persistence._reconstruct_persistent_obj"
# The in-line storage format of tensors pickled outside torch.save (replaced by `_storage_from_bytes`).
STORAGE_FROM_BYTES = "torch.storage._load_from_bytes"
# Containers whose constructors take only data.
_BUILTIN_CONTAINERS: dict[str, type] = {f"builtins.{t.__name__}": t for t in (
    dict, list, tuple, set, frozenset, bytes, bytearray, complex, slice, range)}
# numpy's array pickling: global (numpy 1 spelling) -> attribute inside numpy, or its `core` / numpy 2 `_core`.
_NUMPY_GLOBALS: dict[str, str] = {
    "numpy.ndarray": "ndarray", "numpy.dtype": "dtype",
    "numpy.core.multiarray._reconstruct": "multiarray._reconstruct",
    "numpy.core.multiarray.scalar": "multiarray.scalar",
    "numpy.core.numeric._frombuffer": "numeric._frombuffer",
}
# torch.save's marker at the start of a legacy (non-zip) file.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ZIP_MAGIC = b"PK\x03\x04"


class StandIn:
    """An inert record of an object whose class the restricted unpickler does not build.

    `stand_in_for`: "module.name" as written in the pickle (set on the subclass `stand_in_class` makes);
    `args` / `kwargs`: the arguments of the call that would have created it; `state`: what BUILD would have set;
    `items` / `list_items`: entries a dict or list subclass would have held. Nothing is imported or called.
    """

    stand_in_for: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:  # NEWOBJ calls cls.__new__(cls, *args)
        self = object.__new__(cls)
        self.args, self.kwargs = args, kwargs
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.list_items: list[Any] = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): recorded by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEM(S) on a dict subclass (dnnlib.EasyDict)
        self.items[key] = value

    def append(self, value: Any) -> None:  # APPEND(S) on a list subclass
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def __repr__(self) -> str:
        return f"<stand-in for {self.stand_in_for}>"

    @property
    def label(self) -> str:
        """The class name for reports: for a persistence object its pickled class name, else `stand_in_for`."""
        meta = self.persistent_meta
        if meta is not None and isinstance(meta.get("class_name"), str):
            return f"{meta['class_name']} ({PERSISTENT_OBJECT.rsplit('.', 1)[0]})"
        return self.stand_in_for

    @property
    def persistent_meta(self) -> Mapping[str, Any] | None:
        """`meta` of a `torch_utils.persistence` object (keys type, version, module_src, class_name, state)."""
        if self.stand_in_for == PERSISTENT_OBJECT and self.args and isinstance(self.args[0], Mapping):
            return self.args[0]
        return None


def stand_in_class(qualified_name: str) -> type[StandIn]:
    """A new `StandIn` subclass recording `qualified_name` ("module.name"). Its `__module__` stays this module's,
    so nothing (inspect, pickle, torch) looks the pickled module up."""
    return type(f"StandIn[{qualified_name}]", (StandIn,), {"stand_in_for": qualified_name, "__module__": __name__})


def module_state(obj: Any) -> Mapping[str, Any] | None:
    """The `__dict__` of a pickled `torch.nn.Module` (a stand-in whose state holds `_parameters`, `_buffers` and
    `_modules`; for a persistence object its `meta['state']`), or None when `obj` is not one."""
    if not isinstance(obj, StandIn):
        return None
    meta = obj.persistent_meta
    state = meta.get("state") if meta is not None else obj.state
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
        state = state[0]
    if isinstance(state, Mapping) and all(key in state for key in ("_parameters", "_buffers", "_modules")):
        return state
    return None


def module_tensors(state: Mapping[str, Any], prefix: str = "", _parents: frozenset[int] = frozenset()
                   ) -> dict[str, torch.Tensor]:
    """What `torch.nn.Module.state_dict()` returns for the module whose `__dict__` is `state`, from the pickle:
    parameters, then persistent buffers, then each child's with "child." prefixed; None entries left out.
    Raises ValueError (naming the entry) for a part that is not a tensor, a mapping or a pickled module, and for
    a module that contains itself."""
    where = prefix.rstrip(".") or "the module"
    if id(state) in _parents:
        raise ValueError(f"{where}: a module that contains itself")
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, (set, frozenset)):
        raise ValueError(f"{where}: its _non_persistent_buffers_set is a {type(non_persistent).__name__}, not a set")
    for kind in ("_parameters", "_buffers", "_modules"):
        if not isinstance(state[kind] or {}, Mapping):
            raise ValueError(f"{where}: its {kind} is a {type(state[kind]).__name__}, not a mapping")
    out: dict[str, torch.Tensor] = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in (state[kind] or {}).items():
            if value is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{prefix}{name}: a module {kind[1:-1]} that is not a tensor ({type(value).__name__})")
            out[f"{prefix}{name}"] = value
    for name, child in (state["_modules"] or {}).items():
        if child is None:
            continue
        child_state = module_state(child)
        if child_state is None:
            raise ValueError(f"{prefix}{name}: a sub-module that is not a pickled module ({child!r})")
        out.update(module_tensors(child_state, f"{prefix}{name}.", _parents | {id(state)}))
    return out


def _storage_from_bytes(data: bytes) -> Any:
    """The storage of a tensor pickled in-line (a legacy `torch.save` of the storage), read weights-only."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"{STORAGE_FROM_BYTES}: expected bytes, got {type(data).__name__}")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"{STORAGE_FROM_BYTES}: the bytes hold a {type(storage).__name__}, not a storage")
    return storage


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """`copyreg._reconstructor` (protocols 0 and 1): only stand-ins and allowed containers are created."""
    if isinstance(cls, type) and issubclass(cls, StandIn):
        return cls()
    if cls in _BUILTIN_CONTAINERS.values() or cls is collections.OrderedDict:
        return cls() if state is None else cls(state)
    return stand_in_class("copyreg._reconstructor")(cls, base, state)


def _numpy_global(qualified_name: str) -> Any:
    """numpy's array and dtype rebuilders (numpy 1 `numpy.core`, numpy 2 `numpy._core`), or None."""
    key = qualified_name.replace("numpy._core.", "numpy.core.")
    if key not in _NUMPY_GLOBALS:
        return None
    import numpy

    owner, _, attr = _NUMPY_GLOBALS[key].rpartition(".")
    core = getattr(numpy, "_core", None) or numpy.core
    return getattr(getattr(core, owner) if owner else numpy, attr)


class RestrictedUnpickler(pickle._Unpickler):  # the Python implementation: its BUILD opcode can be overridden
    """`pickle.Unpickler` that builds only tensors, storages, plain containers and numpy arrays; any other global
    becomes a `StandIn` type (see the module docstring). `torch.load(pickle_module=...)` subclasses it for its
    storage lookup (`torch_pickle_module`)."""

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names (torch.save writes protocol 2)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        allowed = _get_allowed_globals()
        if qualified in allowed:
            return allowed[qualified]
        if qualified == STORAGE_FROM_BYTES:
            return _storage_from_bytes
        if qualified == "copyreg._reconstructor":
            return _reconstructor
        if qualified in _BUILTIN_CONTAINERS:
            return _BUILTIN_CONTAINERS[qualified]
        numpy_global = _numpy_global(qualified)
        if numpy_global is not None:
            return numpy_global
        cache = self.__dict__.setdefault("_stand_ins", {})
        if qualified not in cache:
            cache[qualified] = stand_in_class(qualified)
        return cache[qualified]

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        numpy = sys.modules.get("numpy")
        if isinstance(inst, StandIn):
            inst.__setstate__(state)
        elif type(inst) is collections.OrderedDict and isinstance(state, dict):  # a state dict's `_metadata`
            inst.__dict__.update(state)
        elif numpy is not None and isinstance(inst, (numpy.ndarray, numpy.dtype)):
            inst.__setstate__(state)
        else:
            raise pickle.UnpicklingError(f"refused to set the state of a {type(inst).__name__} object")

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def torch_pickle_module() -> types.ModuleType:
    """A module for `torch.load(pickle_module=...)`: its `Unpickler` and `load` are the restricted ones."""
    module = types.ModuleType(f"{__name__}.torch_pickle_module")
    module.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    return module


@dataclasses.dataclass(frozen=True)
class ReleaseFile:
    """A file read by `read_release`: `obj` the unpickled object (stand-ins for foreign classes), `format` one of
    "torch zip", "torch legacy", "pickle"."""

    obj: Any
    format: str


def file_format(path: Path) -> str:
    """"safetensors", "torchscript", "torch zip", "zip archive" (no torch pickle inside), "pickle" (plain or legacy
    torch.save) or "unknown", from the first bytes (and, for a zip, its entries)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "torch zip"  # a damaged zip: torch's reader names the damage
        if any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in names):
            return "torchscript"
        if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
            return "zip archive"
        return "torch zip"
    if len(head) >= 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 little-endian header length, then JSON
        return "safetensors"
    return "unknown"


def read_release(path: str | os.PathLike) -> ReleaseFile:
    """Read a pickled release file (Lightning `.ckpt`, network `.pkl`, legacy `.pth`) with `RestrictedUnpickler`.

    Tensors land on the CPU. Raises pickle.UnpicklingError / ValueError / EOFError / RuntimeError from a damaged
    file (the caller names the file), ValueError for a file that is not a pickle or torch zip.
    """
    path = Path(path)
    kind = file_format(path)
    if kind == "torch zip":
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=torch_pickle_module())
        return ReleaseFile(obj, kind)
    if kind != "pickle":
        raise ValueError(f"not a pickle or torch.save file (looks like: {kind})")
    with open(path, "rb") as handle:
        first = RestrictedUnpickler(handle).load()
        if isinstance(first, int) and first == _TORCH_LEGACY_MAGIC:
            handle.seek(0)
            obj = torch.load(handle, map_location="cpu", weights_only=False, pickle_module=torch_pickle_module())
            return ReleaseFile(obj, "torch legacy")
    return ReleaseFile(first, "pickle")


def walk(obj: Any) -> Iterator[Any]:
    """Every object reachable from `obj` through containers and stand-ins (args, state, items), once each."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, Mapping):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)
        elif isinstance(item, StandIn):
            todo.extend((item.args, item.kwargs, item.state, item.items, item.list_items))

