"""misato.lpips_network.LPIPS equals lpips.LPIPS(net, version="0.1") bit for bit (forward and input gradients) on
the same weights, loads the same files, and is built without importing lpips, torchvision or torch._dynamo."""

import json
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from misato.lpips_network import BACKBONES, LPIPS, LPIPS_WEIGHTS, build_lpips
from misato.weights import resolve

REPO = Path(__file__).resolve().parents[1]
SIZE = {"alex": 64, "vgg": 32}  # inputs just large enough for every slice of the backbone


@dataclass
class Built:
    net: str
    reference: torch.nn.Module  # lpips.LPIPS with random torchvision backbone and random heads
    ours: LPIPS  # build_lpips from files holding the same tensors
    backbone: Path
    heads: Path


@pytest.fixture(scope="module", params=["alex", "vgg"])
def built(request, tmp_path_factory) -> Built:
    """The package's network with its torchvision backbone at torchvision's (seeded) random initialisation and
    random positive heads, and ours built from a backbone file in torchvision's keys (`features.<i>.*`, plus a
    classifier entry the builder must ignore) and a heads file in lpips' keys (`lin<k>.model.1.weight`)."""
    import lpips

    net = request.param
    folder = tmp_path_factory.mktemp(f"lpips-{net}")
    torch.manual_seed(0)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    backbone = {"features." + name.split(".", 1)[1]: tensor for name, tensor in reference.net.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, channels, 1, 1) for k, channels in enumerate(reference.chns)}
    assert set(heads) == {k for k in reference.state_dict() if k.startswith("lin") and not k.startswith("lins")}
    reference.load_state_dict(heads, strict=False)
    torch.save(backbone, folder / "backbone.pth")
    torch.save(heads, folder / "heads.pth")
    backbone_key, heads_key = LPIPS_WEIGHTS[net]
    ours = build_lpips(resolve(backbone_key, folder / "backbone.pth"), resolve(heads_key, folder / "heads.pth"), net)
    return Built(net, reference.eval().requires_grad_(False), ours, folder / "backbone.pth", folder / "heads.pth")


def _inputs(net: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (2, 3, S, S) float32 batches in [-1, 1], the second a noisy copy of the first."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(2, 3, SIZE[net], SIZE[net], generator=generator) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=generator)).clamp(-1, 1)
    return a, b


def test_state_dict_keys_shapes_and_values_equal_the_package(built):
    expected, got = built.reference.state_dict(), built.ours.state_dict()
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
    assert list(got) == list(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == torch.float32 and torch.equal(got[key], tensor), key


def test_forward_equals_the_package_bit_for_bit(built):
    a, b = _inputs(built.net, seed=1)
    with torch.no_grad():
        expected = built.reference(a, b)
        got = built.ours(a, b)
        assert got.shape == (2, 1, 1, 1) and torch.equal(got, expected), got - expected
        assert float(got.min()) > 0 and not torch.equal(got[0], got[1])  # a real, per-image distance
        a01, b01 = (a + 1) / 2, (b + 1) / 2
        assert torch.equal(built.ours(a01, b01, normalize=True), built.reference(a01, b01, normalize=True))
        assert torch.equal(built.ours(a, a), torch.zeros(2, 1, 1, 1))


def test_input_gradients_equal_the_package(built):
    """The decoder's training loss: gradients reach both inputs, equal to the package's bit for bit."""
    a, b = _inputs(built.net, seed=2)
    grads = []
    for model in (built.reference, built.ours):
        x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
        model(x, y).sum().backward()
        grads.append((x.grad, y.grad))
    (expected_x, expected_y), (got_x, got_y) = grads
    assert torch.equal(got_x, expected_x) and torch.equal(got_y, expected_y)
    assert float(got_x.abs().sum()) > 0 and float(got_y.abs().sum()) > 0


def test_built_network_is_frozen_and_in_eval_mode(built):
    model = built.ours
    assert (model.version, model.lpips, model.spatial) == ("0.1", True, False)
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert [model.lins[k] is getattr(model, f"lin{k}") for k in range(len(model.lins))] == [True] * 5


def test_every_registered_network_has_a_backbone():
    assert set(BACKBONES) == set(LPIPS_WEIGHTS)
    with pytest.raises(ValueError, match="'squeeze': not an LPIPS backbone"):
        LPIPS("squeeze")


def test_files_of_the_wrong_network_or_kind_are_one_line_errors(built, tmp_path):
    """Heads of the other network (same keys, other widths) and a file that is no state dict name the file."""
    other = "vgg" if built.net == "alex" else "alex"
    backbone_key, heads_key = LPIPS_WEIGHTS[built.net]
    backbone = resolve(backbone_key, built.backbone)
    widths = [layers[-1].out for layers in BACKBONES[other]]
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(widths)}, tmp_path / "h.pth")
    with pytest.raises(ValueError, match=r"h\.pth: size mismatch for lin1\.model\.1\.weight"):
        build_lpips(backbone, resolve(heads_key, tmp_path / "h.pth"), built.net)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: not LPIPS linear heads .*found list"):
        build_lpips(backbone, resolve(heads_key, tmp_path / "list.pth"), built.net)
    with pytest.raises(ValueError, match=r"list\.pth: not a torchvision .* state dict"):
        build_lpips(resolve(backbone_key, tmp_path / "list.pth"), resolve(heads_key, built.heads), built.net)


# Imports misato.lpips_network, builds the network from the two files, runs it, and prints which of the packages
# named in argv[1] are in sys.modules.
PROBE = """
import json, sys
import torch
from misato.lpips_network import build_lpips
from misato.weights import resolve
model = build_lpips(resolve("alexnet-torchvision", sys.argv[2]), resolve("lpips-alex-lin", sys.argv[3]))
assert float(model(torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)).flatten()[0]) > 0
print("LOADED=" + json.dumps(sorted(name for name in json.loads(sys.argv[1]) if name in sys.modules)))
"""


@pytest.mark.parametrize("built", ["alex"], indirect=True)
def test_import_and_build_load_neither_lpips_nor_torchvision(built):
    heavy = ["lpips", "torchvision", "torch._dynamo"]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(heavy), str(built.backbone), str(built.heads)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED="))
    assert json.loads(line.removeprefix("LOADED=")) == []
