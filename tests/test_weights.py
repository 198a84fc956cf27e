"""Weights registry: resolution order, hash rules, typed errors, and the `misato weights` commands."""

import hashlib

import pytest
import torch

from misato import weights
from misato.cli import main
from misato.weights import WeightSpec, WeightsHashError, WeightsNotFoundError, resolve


@pytest.fixture
def spec(tmp_path, monkeypatch):
    content = b"pretend weights"
    item = WeightSpec("test-net", "test-net.pth", "https://example.invalid/test-net.pth",
                      hashlib.sha256(content).hexdigest(), "a test file")
    monkeypatch.setattr(weights, "_REGISTRY", {"test-net": item})
    monkeypatch.setattr(weights, "ENTRY_POINT_GROUP", "misato.weights.none-in-tests")
    return item, content


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_order_explicit_env_weights_dir_hub(spec, tmp_path, monkeypatch):
    item, content = spec
    hub = _write(tmp_path / "torch-home" / "hub" / "checkpoints" / item.filename, content)
    assert resolve("test-net").source == "torch_hub" and resolve("test-net").path == hub
    folder = _write(tmp_path / "weights-dir" / item.filename, content)
    assert resolve("test-net").path == folder and resolve("test-net").source == "weights_dir"
    env_file = _write(tmp_path / "env.pth", content)
    monkeypatch.setenv(weights.env_var("test-net"), str(env_file))
    assert resolve("test-net").source == "env"
    explicit = _write(tmp_path / "explicit.pth", content)
    found = resolve("test-net", explicit)
    assert found.source == "explicit" and found.matches is True


def test_explicit_wrong_hash_is_used_and_recorded(spec, tmp_path):
    found = resolve("test-net", _write(tmp_path / "other.pth", b"other bytes"))
    assert found.matches is False and found.record()["expected_sha256"] == spec[0].sha256


def test_wrong_hash_in_weights_dir_is_an_error(spec, tmp_path):
    _write(tmp_path / "weights-dir" / spec[0].filename, b"corrupt")
    with pytest.raises(WeightsHashError, match="misato weights fetch test-net"):
        resolve("test-net")


def test_missing_names_file_url_and_fix(spec, tmp_path):
    with pytest.raises(WeightsNotFoundError) as error:
        resolve("test-net")
    text = str(error.value)
    for part in ("test-net.pth", "https://example.invalid/test-net.pth", "MISATO_WEIGHT_TEST_NET",
                 "misato weights fetch test-net", str(tmp_path / "weights-dir")):
        assert part in text
    with pytest.raises(WeightsNotFoundError):
        resolve("test-net", tmp_path / "does-not-exist.pth")


def test_unknown_key_suggests(spec):
    with pytest.raises(KeyError, match="did you mean test-net"):
        resolve("test-nett")


def test_unpublished_hash_is_record_only(tmp_path, monkeypatch):
    item = WeightSpec("free", "free.bin", "https://example.invalid/free.bin", "", "no published digest")
    monkeypatch.setattr(weights, "_REGISTRY", {"free": item})
    monkeypatch.setattr(weights, "ENTRY_POINT_GROUP", "misato.weights.none-in-tests")
    _write(tmp_path / "weights-dir" / "free.bin", b"anything")
    found = resolve("free")
    assert found.matches is None and len(found.sha256) == 64


def test_registry_has_real_specs():
    specs = weights.all_specs()
    for key in ("inception-tf", "inception-torchvision", "alexnet-torchvision", "lpips-alex-lin", "clip-vit-l-14-openai", "lama-big"):
        assert key in specs
        assert specs[key].url.startswith("https://") and len(specs[key].sha256) == 64
        assert specs[key].sha256.startswith(specs[key].filename.split("-")[-1].split(".")[0]) or key in (
            "lpips-alex-lin", "clip-vit-l-14-openai", "lama-big")
    assert resolve("lpips-alex-lin").matches is True  # shipped inside the lpips wheel


def test_cli_list_and_verify(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "inception-tf: weights-inception-2015-12-05-6726825d.pth  [missing]" in out
    inception = out.split("\ninception-tf:")[1].split("\n\n")[0]
    assert "from: https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" in inception
    assert "needed by: metrics fid (comod, clean)" in inception and "kid (comod, clean)" in inception
    lpips_heads = out.split("\nlpips-alex-lin:")[1].split("\n\n")[0]
    assert "[ok, 6.0 kB]" in lpips_heads and "[package]" in lpips_heads  # present: its size, where
    assert "needed by: methods lama" in out.split("\nlama-big:")[1].split("\n\n")[0]
    assert "offline (MISATO_OFFLINE=1)" in out.splitlines()[0]
    assert main(["weights", "verify", "lpips-alex-lin"]) == 0
    assert "lpips-alex-lin: ok" in capsys.readouterr().out



def test_cli_verify_names_an_env_path_that_is_not_a_file(monkeypatch, tmp_path, capsys):
    """MISATO_WEIGHT_<KEY> naming no file read "inception-tf: missing -" with exit 0, as a file not yet fetched."""
    monkeypatch.setenv("MISATO_WEIGHT_INCEPTION_TF", str(tmp_path / "nope.pth"))
    assert main(["weights", "verify", "inception-tf"]) == 1
    assert f"inception-tf: BAD PATH $MISATO_WEIGHT_INCEPTION_TF={tmp_path / 'nope.pth'}: no such file" in \
        capsys.readouterr().out

def test_cli_fetch_offline_names_the_reason(spec, capsys):
    """The test session is offline (conftest): fetch connects nowhere, says why, exits 1, writes nothing."""
    assert main(["weights", "fetch", "test-net"]) == 1
    out = capsys.readouterr().out
    assert "test-net (test-net.pth): to download, size unknown (offline: MISATO_OFFLINE=1)" in out
    assert "test-net: not downloaded: offline (MISATO_OFFLINE=1)" in out
    assert not weights.default_weights_dir().exists() or list(weights.default_weights_dir().iterdir()) == []
    assert main(["weights", "fetch", "test-nett"]) == 1  # an unknown key ends the command before any download
    assert "did you mean test-net" in capsys.readouterr().err
    assert main(["weights", "fetch"]) == 1 and "KEYS (or 'all') or --for JOB" in capsys.readouterr().err


def test_cli_fetch_for_jobs_lists_what_each_job_uses(capsys):
    assert main(["weights", "fetch", "--for", "demo", "--dry-run"]) == 0
    demo = capsys.readouterr().out
    for key in ("inception-tf", "alexnet-torchvision", "clip-vit-l-14-openai", "lama-big"):
        assert f"{key} (" in demo and "to download" in demo.split(f"{key} (")[1].splitlines()[0]
    assert "lpips-alex-lin (alex.pth; metrics lpips (comod)): ok, 6.0 kB" in demo
    assert main(["weights", "fetch", "--for", "score", "--protocol", "asuka", "--dry-run"]) == 0
    assert "inception-torchvision (" in capsys.readouterr().out
    assert main(["weights", "fetch", "--for", "table1", "--dry-run"]) == 1  # MAE-FAR and LaMa's release: manual steps
    table1 = capsys.readouterr().out
    assert "comod-places512 (" in table1 and "method Co-Mod" in table1 and "mae-far-places2 (" in table1
    assert "mae-far-places2 (mae_far_places2.safetensors; method MAE-FAR): not downloadable: download the" in table1
    assert main(["weights", "fetch", "--for", "table2", "--dry-run"]) == 0
    table2 = capsys.readouterr().out
    assert "vgg16-torchvision (vgg16-397923af.pth; decoder training loss" in table2 and "lpips-vgg-lin (" in table2
    assert main(["weights", "fetch", "--for", "demo", "inception-tf"]) == 1


def test_download_flags_default_on_offline_and_deprecated_alias():
    from misato.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).allow_download is True
    assert parser.parse_args(["demo", "--allow-download"]).allow_download is True
    assert parser.parse_args(["demo", "--offline"]).allow_download is False
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--offline", "--allow-download"])


def test_registry_core_knows_no_consumer():
    """Specs come from the `misato.weights` entry points of the installed packages, not from imports in the core."""
    import importlib.metadata
    import inspect

    source = inspect.getsource(weights)
    assert "evaluators" not in source and "baselines" not in source
    groups = {p.value for p in importlib.metadata.entry_points(group=weights.ENTRY_POINT_GROUP)}
    assert {"evaluators.weight_specs:WEIGHTS", "baselines.asuka.weight_specs:WEIGHTS"} <= groups
    assert {"inception-tf", "asuka-mae", "asuka-sd-alignment"} <= set(weights.all_specs())


def test_pickle_checkpoint_is_refused_with_the_convert_command_which_works(tmp_path, capsys):
    """A Lightning-style pickle is refused (never unpickled) with the command; that command's file loads."""
    from misato.checkpoints import CheckpointNeedsConversionError, load_checkpoint

    state = {"generator.conv.weight": torch.randn(2, 3), "generator.bn.running_mean": torch.zeros(2)}
    src = tmp_path / "best.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": _Config()}, src)
    with pytest.raises(CheckpointNeedsConversionError) as error:
        load_checkpoint(src, state_key="state_dict")
    command = str(error.value).split("convert it once: ")[1]
    assert command == f"misato weights convert {src} {tmp_path / 'best.safetensors'} --state-key state_dict"
    assert main(command.split()[1:]) == 0
    loaded = load_checkpoint(tmp_path / "best.safetensors")
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    assert main(["weights", "convert", str(src), str(tmp_path / "x.safetensors"), "--state-key", "model"]) == 1
    assert "no entry 'model'" in capsys.readouterr().err


class _Config:
    """Stands for the config objects a Lightning checkpoint pickles (weights_only refuses them)."""


def test_manual_files_are_never_downloaded(monkeypatch, capsys):
    """A file whose url is a page or an archive is never downloaded, even online: its steps are shown, `fetch`
    goes on with the other keys and exits 1. (Hub files: tests/test_download.py, against a loopback endpoint.)"""
    monkeypatch.delenv("MISATO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    manual = weights.register(WeightSpec("test-manual", "m.safetensors", "https://drive.example/page", "",
                                         "a drive file", manual="download it from the page and convert it"))
    with pytest.raises(WeightsNotFoundError, match="(?s)needs manual steps.*download it from the page and convert it"):
        resolve("test-manual", allow_download=True)
    assert main(["weights", "fetch", "test-manual", "lpips-alex-lin"]) == 1
    out = capsys.readouterr().out
    assert f"test-manual (m.safetensors): not downloadable: {manual.manual}" in out
    assert "lpips-alex-lin (alex.pth): ok" in out


def test_load_state_strict_names_the_file_and_the_keys():
    from misato.checkpoints import load_state_strict

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    state = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    assert torch.equal(load_state_strict(net, state, "f.pt", "test net")[0].weight, torch.zeros(3, 2))
    bad = dict(state, extra=torch.ones(1))
    del bad["1.bias"]
    bad["0.weight"] = torch.ones(4, 2)
    with pytest.raises(ValueError) as error:
        load_state_strict(net, bad, "f.pt", "test net")
    assert str(error.value) == ("f.pt: not a test net state dict: missing keys ['1.bias'] (1 in all); unexpected keys "
                                "['extra'] (1 in all); wrong shapes ['0.weight (4, 2) != (3, 2)'] (1 in all)")
    del state["1.bias"]
    load_state_strict(net, state, "f.pt", "test net", allow_missing=("1.bias",))
