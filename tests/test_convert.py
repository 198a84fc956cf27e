"""`misato weights convert` on the authors' release formats, built here in those exact formats from stand-in
classes (their code is not installed, and the converter must not need it), and one-line errors for damaged
weight files (issue 21, case 5).

- pytorch-lightning 1.x checkpoints (big-lama `models/best.ckpt`, MAE-FAR): a `torch.save` zip holding callbacks
  keyed by class (`pytorch_lightning.callbacks...`), OmegaConf configs (`omegaconf.dictconfig.DictConfig`),
  optimizer states and the 'state_dict';
- StyleGAN-style network pickles (MAT's `Places_512_FullData.pkl`): `pickle.dump` of a dict whose modules are
  `torch_utils.persistence` objects (`_reconstruct_persistent_obj(meta)`, the module's `__dict__` in
  `meta['state']`), tensors pickled in-line.

The stand-in modules exist in `sys.modules` only while the fixture is written, so a converter that imported
them would fail; payloads whose reduce calls `os.system` or `exec` must leave no marker file.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import os
import pickle
import sys
import types
import typing
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from baselines.lama_ffc import authors_state_dict
from baselines.mat.inpainter import NETWORK_PICKLE_KEY, MatInpainter
from baselines.mat.network import Generator
from baselines.registry import create_inpainter
from misato.checkpoints import (
    CheckpointNeedsConversionError,
    CorruptCheckpointError,
    convert_checkpoint,
    load_checkpoint,
    load_state_dict_file,
)
from misato.cli import main
from misato.unpickle import RestrictedUnpickler, StandIn, read_release
from test_lama import TINY as LAMA_TINY
from test_lama import random_generator
from test_maefar import TINY as MAEFAR_TINY
from test_maefar import TINY_MAE, authors_state
from test_mat import TINY as MAT_TINY
from test_mat import random_state

# ------------------------------------------------------------------ stand-ins for the authors' classes


class ModelCheckpoint:
    """pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint: a key of the checkpoint's 'callbacks'."""


class EarlyStopping:
    """pytorch_lightning.callbacks.early_stopping.EarlyStopping."""


class ContainerMetadata:
    """omegaconf.base.ContainerMetadata (a dataclass in OmegaConf; typing.Any in its type fields)."""

    def __init__(self) -> None:
        self.ref_type, self.object_type, self.optional = typing.Any, dict, True
        self.key_type, self.element_type, self.flags = typing.Any, typing.Any, {}


class AnyNode:
    """omegaconf.nodes.AnyNode: one config value and its parent."""

    def __init__(self, value: Any, parent: Any) -> None:
        self._val, self._parent, self._metadata = value, parent, ContainerMetadata()


class DictConfig:
    """omegaconf.dictconfig.DictConfig: pickled through __getstate__ / __setstate__ (its __dict__), children
    pointing back at their parent (a cycle)."""

    def __init__(self, content: dict[str, Any], parent: Any = None) -> None:
        self._metadata, self._parent = ContainerMetadata(), parent
        self._content = {key: DictConfig(value, self) if isinstance(value, dict) else AnyNode(value, self)
                         for key, value in content.items()}

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class EasyDict(dict):
    """dnnlib.util.EasyDict: the network pickle's training_set_kwargs (a dict subclass)."""


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:
    """torch_utils.persistence._reconstruct_persistent_obj: never called by a correct converter."""
    raise AssertionError("the authors' persistence code ran")


class SystemCall:
    """A payload: unpickling it runs `os.system(command)`."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (self.command,)


class ExecCall:
    """A payload: unpickling it runs `exec(code)` (a marker-file writer)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (self.code,)


STAND_INS: dict[str, list[Any]] = {
    "pytorch_lightning.callbacks.model_checkpoint": [ModelCheckpoint],
    "pytorch_lightning.callbacks.early_stopping": [EarlyStopping],
    "omegaconf.base": [ContainerMetadata],
    "omegaconf.nodes": [AnyNode],
    "omegaconf.dictconfig": [DictConfig],
    "dnnlib.util": [EasyDict],
    "torch_utils.persistence": [_reconstruct_persistent_obj],
}


@contextlib.contextmanager
def authors_modules() -> Iterator[None]:
    """The stand-ins under the authors' module paths (with parent packages) in sys.modules, for pickling only;
    afterwards nothing of them is importable."""
    saved = {obj: obj.__module__ for objects in STAND_INS.values() for obj in objects}
    added: list[str] = []
    for module_name, objects in STAND_INS.items():
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        for obj in objects:
            obj.__module__ = module_name
            setattr(sys.modules[module_name], obj.__name__, obj)
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]
        for obj, module_name in saved.items():
            obj.__module__ = module_name
    for module_name in STAND_INS:
        with pytest.raises(ImportError):
            __import__(module_name)


def payloads(marker: Path) -> list[Any]:
    """Objects whose unpickling would create `marker` (by a shell command, by exec)."""
    return [SystemCall(f"touch {marker}"), ExecCall(f"open({str(marker)!r}, 'w').close()")]


# ------------------------------------------------------------------ the two formats


def lightning_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], extra: Any = None) -> Path:
    """A pytorch-lightning 1.2.9 checkpoint (`dump_checkpoint`'s layout), written as Lightning does: torch.save."""
    state = collections.OrderedDict(state_dict)
    state._metadata = collections.OrderedDict({"": {"version": 1}})  # what Module.state_dict() attaches
    config = DictConfig({"generator": {"kind": "ffc_resnet", "ngf": 64}, "optimizers": {"lr": 0.001}})
    checkpoint = {
        "epoch": 39, "global_step": 123, "pytorch-lightning_version": "1.2.9",
        "state_dict": state,
        "callbacks": {ModelCheckpoint: {"monitor": "val_ssim_fid100_f1_total_mean", "best_model_score":
                                        torch.tensor(0.91), "best_model_path": "/experiments/best.ckpt"},
                      EarlyStopping: {"wait_count": 0, "patience": 3, "best_score": torch.tensor(0.9)}},
        "optimizer_states": [{"state": {0: {"step": 3, "exp_avg": torch.ones(4), "exp_avg_sq": torch.ones(4)}},
                              "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0]}]}],
        "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {"config": config, "extra": extra},
    }
    with authors_modules():
        torch.save(checkpoint, path)
    return path


def persistent_pickler(handle: Any, protocol: int) -> pickle.Pickler:
    """A pickler that stores our MAT modules as `torch_utils.persistence` objects (the authors' decorator's
    `__reduce__`: `_reconstruct_persistent_obj(meta)`, the module's `__dict__` as `meta['state']`); torch.nn
    containers and layers pickle as themselves, tensors in-line."""

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, torch.nn.Module) and type(obj).__module__.startswith("baselines."):
                meta = {"type": "class", "version": 6, "module_src": "# the authors' source (not stored here)",
                        "class_name": type(obj).__name__, "state": dict(obj.__dict__)}
                return _reconstruct_persistent_obj, (meta,)
            return NotImplemented

    return Pickler(handle, protocol=protocol)


def network_pickle(path: Path, g_ema: torch.nn.Module, protocol: int = pickle.DEFAULT_PROTOCOL,
                   extra: Any = None) -> Path:
    """A MAT network pickle: {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}, written by pickle.dump."""
    g = copy.deepcopy(g_ema)  # the training copy: other weights, so G_ema's selection shows
    with torch.no_grad():
        for param in g.parameters():
            param.add_(1)
    snapshot = {"training_set_kwargs": EasyDict(path="/data/places365", resolution=512, use_labels=False),
                "G": g, "D": torch.nn.Conv2d(3, 4, 3), "G_ema": g_ema, "augment_pipe": None, "extra": extra}
    with authors_modules(), open(path, "wb") as handle:
        persistent_pickler(handle, protocol).dump(snapshot)
    return path


@functools.cache
def mat_generator() -> Generator:
    """A tiny random MAT generator in eval mode (built once; the tests only read it)."""
    net = Generator(MAT_TINY)
    net.load_state_dict(random_state(MAT_TINY))
    return net.eval()


def assert_same_tensors(converted: dict[str, torch.Tensor], originals: dict[str, torch.Tensor]) -> None:
    assert list(converted) == list(originals) or set(converted) == set(originals)
    for key, value in originals.items():
        assert converted[key].dtype == value.dtype and torch.equal(converted[key], value), key


# ------------------------------------------------------------------ Lightning checkpoints


def test_big_lama_lightning_checkpoint_converts_and_loads_strictly(tmp_path, capsys):
    generator = random_generator(LAMA_TINY)
    state = {**authors_state_dict(generator), "discriminator.model0.0.weight": torch.randn(8, 3, 4, 4)}
    ckpt = lightning_checkpoint(tmp_path / "best.ckpt", state)
    with pytest.raises(CheckpointNeedsConversionError) as refusal:  # what `--weight lama-big-authors=best.ckpt` says
        create_inpainter("lama", checkpoint="authors", generator_config=LAMA_TINY,
                         weight_paths={"lama-big-authors": str(ckpt)})
    command = str(refusal.value).split("convert it once: ")[1]
    assert command == f"misato weights convert {ckpt} {tmp_path / 'best.safetensors'} --state-key state_dict"
    assert "other classes (from omegaconf, pytorch_lightning, typing)" in str(refusal.value)
    assert main(command.split()[1:]) == 0
    out = capsys.readouterr().out
    assert f"wrote {len(state)} tensors under state_dict" in out
    assert "skipped 4 tensors outside state_dict" in out  # 2 callback scores, 2 optimizer moments
    assert "omegaconf.dictconfig.DictConfig" in out and "pytorch_lightning.callbacks.model_checkpoint" in out
    assert_same_tensors(load_file(str(tmp_path / "best.safetensors")), state)
    lama = create_inpainter("lama", checkpoint="authors", generator_config=LAMA_TINY,
                            weight_paths={"lama-big-authors": str(tmp_path / "best.safetensors")})
    assert_same_tensors(lama.model.state_dict(), generator.state_dict())


def test_mae_far_lightning_checkpoint_converts_and_loads_strictly(tmp_path):
    from baselines.maefar.inpainter import load_mae_far

    state = authors_state()
    ckpt = lightning_checkpoint(tmp_path / "mae_far.ckpt", state)
    report = convert_checkpoint(ckpt, tmp_path / "mae_far.safetensors", "state_dict")
    assert (report.format, report.tensors, report.skipped_tensors) == ("torch zip", len(state), 4)
    assert report.stand_ins["omegaconf.dictconfig.DictConfig"] == 3  # the config and its two sections
    assert_same_tensors(load_file(str(report.dest)), state)
    mae, acr = load_mae_far(report.dest, MAEFAR_TINY, TINY_MAE)
    assert_same_tensors(acr.state_dict(), {k[4:]: v for k, v in state.items() if k.startswith("acr.")})


def test_legacy_torch_save_converts(tmp_path):
    state = {"generator.w": torch.randn(3, 2), "generator.b": torch.arange(3)}
    with authors_modules():
        torch.save({"state_dict": state, "hyper_parameters": DictConfig({"a": 1})}, tmp_path / "old.pth",
                   _use_new_zipfile_serialization=False)
    report = convert_checkpoint(tmp_path / "old.pth", tmp_path / "old.safetensors", "state_dict")
    assert report.format == "torch legacy"
    assert_same_tensors(load_file(str(report.dest)), state)


# ------------------------------------------------------------------ network pickles


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_mat_network_pickle_converts_g_ema_and_loads_strictly(tmp_path, capsys, protocol):
    g_ema = mat_generator()
    pkl = network_pickle(tmp_path / "Places_512_FullData.pkl", g_ema, protocol)
    with pytest.raises(CheckpointNeedsConversionError) as refusal:  # what `--weight mat-places512=X.pkl` says
        MatInpainter(weight_paths={"mat-places512": str(pkl)}, network_config=MAT_TINY)
    command = str(refusal.value).split("convert it once: ")[1]
    dest = tmp_path / "Places_512_FullData.safetensors"
    assert command == f"misato weights convert {pkl} {dest} --state-key {NETWORK_PICKLE_KEY}"
    assert main(command.split()[1:]) == 0
    out = capsys.readouterr().out
    expected = g_ema.state_dict()
    assert f"wrote {len(expected)} tensors under G_ema" in out
    assert "Generator (torch_utils.persistence)" in out and "dnnlib.util.EasyDict" in out
    assert_same_tensors(load_file(str(dest)), expected)
    mat = MatInpainter(weight_paths={"mat-places512": str(dest)}, network_config=MAT_TINY)
    assert mat.noise_mode == "const"  # the authors' G_ema keeps its noise maps
    assert_same_tensors(mat.net.state_dict(), expected)
    # the same output as the state dict itself
    torch.save(expected, tmp_path / "state.pth")
    direct = MatInpainter(weight_paths={"mat-places512": str(tmp_path / "state.pth")}, network_config=MAT_TINY)
    images, masks = torch.rand(1, 3, 128, 128), torch.zeros(1, 1, 128, 128)
    masks[..., 32:96, 32:96] = 1
    assert torch.equal(mat.inpaint(images, masks, [3]), direct.inpaint(images, masks, [3]))


def test_state_key_walks_into_modules_and_names_what_is_there(tmp_path):
    g_ema = mat_generator()
    pkl = network_pickle(tmp_path / "net.pkl", g_ema)
    report = convert_checkpoint(pkl, tmp_path / "mapping.safetensors", "G_ema.mapping")
    assert_same_tensors(load_file(str(report.dest)), g_ema.mapping.state_dict())
    with pytest.raises(ValueError, match=r"no entry 'mapp' on the way to --state-key G_ema.mapp \(found at G_ema: "
                                         r"\['synthesis', 'mapping'\]\)"):
        convert_checkpoint(pkl, tmp_path / "x.safetensors", "G_ema.mapp")
    with pytest.raises(ValueError, match=r"training_set_kwargs is a stand-in for dnnlib.util.EasyDict, not a tensor; "
                                         r"pick the weights with --state-key \(entries of the file: .*'G_ema'"):
        convert_checkpoint(pkl, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------ nothing of the pickle runs


def test_reduce_payloads_convert_without_running(tmp_path, capsys):
    marker = tmp_path / "ran"
    lightning = lightning_checkpoint(tmp_path / "best.ckpt", {"w": torch.ones(2)}, extra=payloads(marker))
    network = network_pickle(tmp_path / "net.pkl", mat_generator(), extra=payloads(marker))
    for src, key in ((lightning, "state_dict"), (network, "G_ema")):
        with pytest.raises(CheckpointNeedsConversionError):
            load_checkpoint(src, key)
        assert main(["weights", "convert", str(src), str(tmp_path / "out.safetensors"), "--state-key", key]) == 0
        out = capsys.readouterr().out
        assert "1 x posix.system" in out and "1 x builtins.exec" in out
        assert not marker.exists()
    calls = [item for item in read_release(network).obj["extra"]]
    assert [(c.stand_in_for, c.args) for c in calls] == [("posix.system", (f"touch {marker}",)),
                                                         ("builtins.exec", (payloads(marker)[1].code,))]


def test_pickled_modules_are_never_imported(tmp_path, monkeypatch):
    """A class from a module whose import has a side effect: the file is read, the module never imported."""
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Thing: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    thing = type("Thing", (), {"__module__": "side_effect_module"})
    fake = types.ModuleType("side_effect_module")
    fake.Thing = thing
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "side_effect_module", fake)
        torch.save({"state_dict": {"w": torch.ones(1)}, "thing": thing()}, tmp_path / "x.ckpt")
    assert "side_effect_module" not in sys.modules
    report = convert_checkpoint(tmp_path / "x.ckpt", tmp_path / "x.safetensors", "state_dict")
    assert report.stand_ins == {"side_effect_module.Thing": 1}
    assert not marker.exists() and "side_effect_module" not in sys.modules


def test_restricted_unpickler_builds_only_data():
    """Tensors, containers and numpy arrays are built; setting state on anything else is refused."""
    import io

    import numpy as np

    data = {"t": torch.arange(4.0)[1:], "a": np.arange(6, dtype=np.int16).reshape(2, 3), "s": {1, 2},
            "o": collections.OrderedDict(x=1), "n": np.float32(2.5)}
    for protocol in (2, 4, 5):
        loaded = RestrictedUnpickler(io.BytesIO(pickle.dumps(data, protocol=protocol))).load()
        assert torch.equal(loaded["t"], data["t"]) and np.array_equal(loaded["a"], data["a"])
        assert loaded["a"].dtype == np.int16 and loaded["s"] == {1, 2} and loaded["n"] == np.float32(2.5)
    stand_in = RestrictedUnpickler(io.BytesIO(pickle.dumps(SystemCall("true")))).load()
    assert isinstance(stand_in, StandIn) and stand_in.stand_in_for == "posix.system"
    # BUILD on a function torch allows (it would set attributes on torch's own function): refused
    build_on_function = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x01\x00\x00\x00aK\x01sb."
    with pytest.raises(pickle.UnpicklingError, match="refused to set the state of a function"):
        RestrictedUnpickler(io.BytesIO(build_on_function)).load()


# ------------------------------------------------------------------ damaged weight files (issue 21, case 5)


def damaged(tmp_path: Path, kind: str) -> Path:
    """A truncated torch zip, garbage bytes, a truncated safetensors file, a truncated network pickle, a zip that
    holds no torch pickle."""
    if kind == "truncated-zip":
        torch.save({"w": torch.randn(64, 64)}, tmp_path / "full.pth")
        data, path = (tmp_path / "full.pth").read_bytes(), tmp_path / "truncated.pth"
    elif kind == "garbage":
        data, path = b"<html>404 Not Found</html>" * 20, tmp_path / "garbage.pth"
    elif kind == "zip-archive":  # e.g. a release archive passed before unpacking
        with zipfile.ZipFile(tmp_path / "release.zip", "w") as archive:
            archive.writestr("models/config.yaml", "generator: {}")
        return tmp_path / "release.zip"
    elif kind == "truncated-safetensors":
        save_file({"w": torch.randn(64, 64)}, str(tmp_path / "full.safetensors"))
        data, path = (tmp_path / "full.safetensors").read_bytes(), tmp_path / "truncated.safetensors"
    else:
        network_pickle(tmp_path / "full.pkl", mat_generator())
        data, path = (tmp_path / "full.pkl").read_bytes(), tmp_path / "truncated.pkl"
    path.write_bytes(data if kind == "garbage" else data[: len(data) // 2])
    return path


KINDS = ["truncated-zip", "garbage", "truncated-safetensors", "truncated-pickle", "zip-archive"]


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_files_are_one_line_errors_naming_the_file(tmp_path, capsys, kind):
    path = damaged(tmp_path, kind)
    with pytest.raises(CorruptCheckpointError) as error:
        load_checkpoint(path, "G_ema")
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "expected" in message, message
    with pytest.raises(CorruptCheckpointError, match=f"^{path}: .*(truncated|found (neither|zip archive)|safetensors)"):
        convert_checkpoint(path, tmp_path / "out.safetensors", "G_ema")
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(CorruptCheckpointError, match=f"^{path}: "):  # the Inception files' reader: the same one
        load_state_dict_file(path)
    assert main(["weights", "convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"misato weights: error: {path}: "), err


@pytest.mark.parametrize("kind", KINDS[:3])
def test_score_with_a_damaged_weight_file_ends_in_one_line(tiny_dataset, tiny_predictions, tmp_path, capsys, kind):
    bad = damaged(tmp_path, kind)
    out = tmp_path / "results"
    code = main(["score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--label", "m",
                 "--out", str(out), "--metrics", "lpips", "--device", "cpu", "--no-progress",
                 "--weight", f"lpips-alex-lin={bad}", "--weight", f"alexnet-torchvision={bad}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"misato score: error: {bad}: ") and "expected" in err[0], err
