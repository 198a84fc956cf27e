"""Inpainter registry: built-ins, aliases, module:Class, file.py:Class, entry points, broken plug-ins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from baselines.base import Inpainter
from baselines.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    REGISTRY,
    InpainterLoadError,
    InpainterRegistry,
    UnknownInpainterError,
)

PLUGIN_SOURCE = textwrap.dedent(
    """
    import torch
    from baselines.base import Inpainter

    class {name}(Inpainter):
        name = "{label}"

        def inpaint(self, images, masks, seeds):
            return torch.full_like(images, {value})

    class NotAnInpainter:
        pass
    """
)


def write_plugin(folder: Path, module: str, cls: str, label: str, value: float) -> Path:
    path = folder / f"{module}.py"
    path.write_text(PLUGIN_SOURCE.format(name=cls, label=label, value=value))
    return path


def run_once(inpainter: Inpainter) -> torch.Tensor:
    images = torch.rand(1, 3, 8, 8)
    masks = torch.zeros(1, 1, 8, 8)
    return inpainter.inpaint(images, masks, [0])


def test_builtin_table_has_the_required_names():
    required = {
        "telea", "ns", "biharmonic", "lama", "dummy", "asuka-sd", "asuka-flux", "sd", "sd-text", "sd-prompt",
        "sd-repaint",
    }
    assert required <= set(REGISTRY.names())
    assert BUILTIN["asuka-flux"] == "baselines.asuka.flux:AsukaFluxInpainter"
    assert BUILTIN["sd-repaint"] == "baselines.sd.repaint:SDRepaintInpainter"


@pytest.mark.parametrize("name", ["telea", "ns", "biharmonic", "lama", "dummy"])
def test_own_builtins_resolve_to_inpainter_subclasses(name):
    cls = REGISTRY.get(name)
    assert issubclass(cls, Inpainter)
    assert cls.name == name


def test_aliases_resolve_to_the_same_class():
    assert REGISTRY.get("navier-stokes") is REGISTRY.get("ns")
    assert REGISTRY.get("big-lama") is REGISTRY.get("lama")


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownInpainterError, match="did you mean.*telea"):
        REGISTRY.get("tela")
    with pytest.raises(UnknownInpainterError, match="known: telea"):
        REGISTRY.get("zzzzzz")


def test_parse_does_not_import():
    parsed = REGISTRY.parse("asuka-flux")
    assert (parsed.origin, parsed.target) == ("builtin", BUILTIN["asuka-flux"])
    folder = REGISTRY.parse("folder:/some/where")
    assert folder.origin == "folder" and folder.options == {"root": "/some/where"}
    assert REGISTRY.parse("pkg.mod:Cls").origin == "module"
    assert REGISTRY.parse("plugins/method.py:Cls").origin == "file"


def test_module_class_spec(tmp_path, monkeypatch):
    write_plugin(tmp_path, "misato_test_plugin_mod", "ModPlugin", "mod-plugin", 0.25)
    monkeypatch.syspath_prepend(str(tmp_path))
    inpainter = REGISTRY.create("misato_test_plugin_mod:ModPlugin", device="cpu")
    assert type(inpainter).__name__ == "ModPlugin"
    assert torch.all(run_once(inpainter) == 0.25)


def test_file_class_spec_and_base_class_check(tmp_path):
    path = write_plugin(tmp_path, "method", "FilePlugin", "file-plugin", 0.75)
    inpainter = REGISTRY.create(f"{path}:FilePlugin", device="cpu")
    assert torch.all(run_once(inpainter) == 0.75)
    # a second file with the same name in another folder is a different module
    other = tmp_path / "other"
    other.mkdir()
    path2 = write_plugin(other, "method", "FilePlugin", "file-plugin", 0.5)
    assert torch.all(run_once(REGISTRY.create(f"{path2}:FilePlugin")) == 0.5)
    with pytest.raises(InpainterLoadError, match="not a subclass"):
        REGISTRY.get(f"{path}:NotAnInpainter")
    with pytest.raises(InpainterLoadError, match="no attribute"):
        REGISTRY.get(f"{path}:Missing")
    with pytest.raises(InpainterLoadError, match="no such file"):
        REGISTRY.get(f"{tmp_path}/absent.py:FilePlugin")


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A dist-info folder on sys.path declaring one working and one broken `misato.inpainters` plug-in."""
    write_plugin(tmp_path, "misato_test_ep_mod", "EntryPlugin", "entry-plugin", 0.125)
    (tmp_path / "misato_test_broken_mod.py").write_text("raise ImportError('needs a package that is not here')\n")
    dist = tmp_path / "misato_test_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: misato-test-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "entry-plugin = misato_test_ep_mod:EntryPlugin\n"
        "broken-plugin = misato_test_broken_mod:Whatever\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugins(fake_distribution):
    names = REGISTRY.names()  # listing imports nothing, so the broken plug-in does not fail here
    assert "entry-plugin" in names and "broken-plugin" in names
    assert REGISTRY.parse("entry-plugin").origin == "entry_point"
    inpainter = REGISTRY.create("entry-plugin", device="cpu")
    assert torch.all(run_once(inpainter) == 0.125)


def test_broken_plugin_fails_only_when_requested(fake_distribution):
    with pytest.raises(InpainterLoadError, match="broken-plugin.*misato-test-plugins.*not here"):
        REGISTRY.get("broken-plugin")
    # everything else still loads
    assert REGISTRY.get("entry-plugin").__name__ == "EntryPlugin"
    assert REGISTRY.get("telea").name == "telea"


def test_missing_optional_module_is_a_load_error_for_that_name_only():
    registry = InpainterRegistry({"gone": "misato_no_such_module_xyz:Cls", "dummy": BUILTIN["dummy"]}, {},
                                 entry_point_group=None)
    with pytest.raises(InpainterLoadError, match="misato_no_such_module_xyz"):
        registry.get("gone")
    assert registry.get("dummy").name == "dummy"


def test_registry_table_validation():
    with pytest.raises(ValueError, match="not built in"):
        InpainterRegistry({"a": "m:C"}, {"b": "missing"})
    with pytest.raises(ValueError, match="both built in and aliases"):
        InpainterRegistry({"a": "m:C"}, {"a": "a"})
