"""Co-Mod-GAN: our generator with random weights saved in the PyTorch port's key layout, through the contract.

A tiny architecture (16x16, few channels) for the fast tests; the released architecture for one real-size run.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from skimage import data

from baselines.comod.inpainter import WEIGHTS_KEY, CoModGanInpainter
from baselines.comod.layers import ModulatedConv2d, Upsample
from baselines.comod.network import CoModConfig, CoModGenerator
from baselines.harness import inpaint_arrays
from baselines.registry import create_inpainter
from baselines.stylegan_ops import fir_filter as fir_kernel
from baselines.stylegan_ops import upfirdn2d
from inpainter_contract import check_contract, hole_masks
from misato.composite import composite_uint8
from baselines.runner import to_uint8
from misato.weights import WeightsNotFoundError, get_spec

TINY = CoModConfig(resolution=16, latent_size=8, dlatent_size=8, mapping_layers=2, mapping_fmaps=8,
                   fmap_base=64, fmap_max=16)


def random_state(config: CoModConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the port's layout with non-trivial biases and noise strengths."""
    torch.manual_seed(seed)
    net = CoModGenerator(config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("noise.weight"):
                p.normal_(0, 0.3)
            elif name.endswith("modulation.bias"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0, 0.2)
    return net.state_dict()


@pytest.fixture(scope="module")
def tiny_state():
    return random_state(TINY)


@pytest.fixture(scope="module")
def tiny_file(tiny_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("comod") / "co-mod-gan-places2-050000_net_G_ema.pth"
    torch.save(tiny_state, path)  # the port's file: a plain torch.save of the state dict
    return path


def make_tiny(path, **options) -> CoModGanInpainter:
    return CoModGanInpainter(weight_paths={WEIGHTS_KEY: str(path)}, network_config=TINY, **options)


# ---------------------------------------------------------------- layout and ops


def test_state_dict_has_the_ports_key_layout(tiny_state):
    keys = set(tiny_state)
    for key in ("G_mapping.G_mapping.Dense0.weight", "G_mapping.G_mapping.Dense1.bias",
                "G_synthesis.E.16x16_0.FromRGB.0.weight", "G_synthesis.E.16x16_0.FromRGB.1.bias",
                "G_synthesis.E.16x16.Conv1_down.0.kernel", "G_synthesis.E.8x8.Conv1_down.1.weight",
                "G_synthesis.E.4x4.Dense0.weight", "G_synthesis.G_4x4.Dense.weight",
                "G_synthesis.G_4x4.Conv.conv.modulation.bias", "G_synthesis.G_4x4.Conv.noise.weight",
                "G_synthesis.G_8x8.Conv0_up.conv.blur.kernel", "G_synthesis.G_16x16.ToRGB.upsample.kernel",
                "G_synthesis.G_16x16.ToRGB.bias"):
        assert key in keys, key
    assert tiny_state["G_synthesis.G_8x8.Conv0_up.conv.weight"].shape == (1, 16, 16, 3, 3)
    assert tiny_state["G_synthesis.G_4x4.Conv.conv.modulation.weight"].shape == (16, 8 + 32)  # w ++ x_global
    assert "G_synthesis.G_4x4.ToRGB.upsample.kernel" not in keys


def test_weight_spec_is_registered():
    spec = get_spec(WEIGHTS_KEY)
    assert spec.filename == "co-mod-gan-places2-050000_net_G_ema.pth"
    assert spec.url.startswith("https://maildluteducn-my.sharepoint.com/") and spec.sha256 == ""
    assert "non-commercial" in spec.description


def test_fir_resampling_keeps_constants_and_shapes():
    x = torch.full((2, 3, 8, 8), 0.7)
    up = Upsample((1, 3, 3, 1))(x)
    assert up.shape == (2, 3, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    down = upfirdn2d(x, fir_kernel((1, 3, 3, 1)), down=2, pad=(1, 1))
    assert down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((2, 3, 2, 2), 0.7))


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_is_per_sample_and_demodulated(upsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 5, 3, style_dim=6, upsample=upsample)
    x, style = torch.randn(3, 4, 8, 8), torch.randn(3, 6)
    out = conv(x, style)
    assert out.shape == ((3, 5, 16, 16) if upsample else (3, 5, 8, 8))
    for i in range(3):  # the fused (grouped) batch equals one sample at a time
        torch.testing.assert_close(out[i : i + 1], conv(x[i : i + 1], style[i : i + 1]), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # demodulation: doubling the styles (the modulation's output) changes nothing
        conv.modulation.weight.mul_(2)
        conv.modulation.bias.mul_(2)
    torch.testing.assert_close(conv(x, style), out, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- the contract


def test_contract_shapes_known_pixels_batching_and_seeds(tiny_file):
    inpainter = make_tiny(tiny_file)
    assert inpainter.policy.pad_multiple == 16 and inpainter.policy.square
    preds = check_contract(inpainter, 14, stochastic=True)  # 14x14 crops: padded to 16x16 by the harness
    for mask, pred in zip(hole_masks(3, 14), preds):
        assert pred.raw[mask == 1].std() > 0


def test_mask_and_range_conventions(tiny_file):
    """The network sees image * 2 - 1 and keep = 1 - hole; hole pixels of the input are ignored."""
    inpainter = make_tiny(tiny_file, noise_mode="none", dropout=False)
    images = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, 4:12, 3:9] = 1
    out = inpainter.inpaint(images * (1 - masks), masks, [5, 6])
    noisy_holes = inpainter.inpaint(images * (1 - masks) + masks * torch.rand_like(images), masks, [5, 6])
    torch.testing.assert_close(out, noisy_holes)
    z = torch.stack([torch.randn(TINY.latent_size, generator=torch.Generator().manual_seed(s)) for s in (5, 6)])
    raw = inpainter.net(images * 2 - 1, 1 - masks, z)
    torch.testing.assert_close(out, ((raw + 1) / 2).clamp(0, 1))


def test_randomness_options_are_recorded_and_used(tiny_file):
    image, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., 5:11, 5:11] = 1
    outputs = {}
    for noise_mode in ("random", "none"):
        for dropout in (True, False):
            inpainter = make_tiny(tiny_file, noise_mode=noise_mode, dropout=dropout)
            record = inpainter.config()
            assert record["noise_mode"] == noise_mode and record["dropout"] is dropout
            assert record["truncation_psi"] == 1.0 and record["network"]["resolution"] == 16
            outputs[noise_mode, dropout] = inpainter.inpaint(image * (1 - mask), mask, [3])
    values = list(outputs.values())
    assert all((a - b).abs().max() > 1e-4 for i, a in enumerate(values) for b in values[i + 1 :])


def test_truncation_zero_removes_the_latent(tiny_file):
    inpainter = make_tiny(tiny_file, truncation_psi=0.0, noise_mode="none", dropout=False)
    assert inpainter.config()["truncation_w_avg"] == {"samples": 4096, "seed": 0}
    image, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., 2:9, 6:14] = 1
    a, b = (inpainter.inpaint(image * (1 - mask), mask, [s]) for s in (1, 2))
    torch.testing.assert_close(a, b)
    assert (make_tiny(tiny_file, truncation_psi=0.5).inpaint(image, mask, [1]) - a).abs().max() > 1e-4


def test_port_variant_without_the_4x4_skip_loads_the_same_file(tiny_file):
    """skip_4x4=False is the PyTorch port's forward: same keys, another output."""
    image, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    authors = make_tiny(tiny_file, noise_mode="none", dropout=False)
    port = CoModGanInpainter(weight_paths={WEIGHTS_KEY: str(tiny_file)}, noise_mode="none", dropout=False,
                             network_config=dataclasses.replace(TINY, skip_4x4=False))
    assert port.config()["network"]["skip_4x4"] is False and authors.config()["network"]["skip_4x4"] is True
    assert (port.inpaint(image, mask, [0]) - authors.inpaint(image, mask, [0])).abs().max() > 1e-4


def test_created_through_the_registry(tiny_file):
    for name in ("comod", "co-mod-gan"):
        inpainter = create_inpainter(name, weight_paths={WEIGHTS_KEY: str(tiny_file)}, network_config=TINY)
        assert isinstance(inpainter, CoModGanInpainter) and inpainter.name == "comod"


# ---------------------------------------------------------------- errors


def test_missing_file_raises_weights_not_found():
    with pytest.raises(WeightsNotFoundError, match=WEIGHTS_KEY):
        CoModGanInpainter(network_config=TINY)


def test_wrong_files_raise_value_errors_naming_file_and_keys(tmp_path, tiny_state):
    dropped = dict(tiny_state)
    del dropped["G_synthesis.G_4x4.Dense.bias"]
    torch.save({**dropped, "extra.weight": torch.zeros(1)}, tmp_path / "keys.pth")
    with pytest.raises(ValueError, match=r"keys\.pth.*G_synthesis\.G_4x4\.Dense\.bias.*extra\.weight"):
        make_tiny(tmp_path / "keys.pth")
    torch.save({**tiny_state, "G_synthesis.G_4x4.Dense.bias": torch.zeros(3)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"shape\.pth.*G_synthesis\.G_4x4\.Dense\.bias"):
        make_tiny(tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="wrong shapes"):  # same keys, narrower network
        CoModGanInpainter(weight_paths={WEIGHTS_KEY: str(tmp_path / "shape.pth")},
                          network_config=dataclasses.replace(TINY, fmap_max=8))
    (tmp_path / "co-mod-gan-places2-050000.pkl").write_bytes(b"not read")
    with pytest.raises(ValueError, match="TensorFlow pickle"):
        make_tiny(tmp_path / "co-mod-gan-places2-050000.pkl")


def test_bad_options_and_sizes(tiny_file):
    with pytest.raises(ValueError, match="noise_mode"):
        make_tiny(tiny_file, noise_mode="const")
    inpainter = make_tiny(tiny_file)
    with pytest.raises(ValueError, match="exactly 16x16"):
        inpainter.inpaint(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32), [0])
    with pytest.raises(ValueError, match="seeds"):
        inpainter.inpaint(torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16), [0])


# ---------------------------------------------------------------- real size


@pytest.mark.realsize
def test_real_size_network_loads_strictly_and_inpaints_512(tmp_path):
    net = CoModGenerator()  # the released Places2 512 architecture
    assert sum(p.numel() for p in net.parameters()) == 79_792_231
    state = net.state_dict()
    assert len(state) == 180
    path = tmp_path / "co-mod-gan-places2-050000_net_G_ema.pth"
    torch.save(state, path)
    del net, state
    inpainter = CoModGanInpainter(weight_paths={WEIGHTS_KEY: str(path)})
    assert inpainter.policy.pad_multiple == 512 and inpainter.config()["network"]["resolution"] == 512
    image = np.ascontiguousarray(data.astronaut()[:500, :480])  # padded to 512x512
    mask = np.zeros((500, 480), np.float32)
    mask[150:350, 200:330] = 1
    start = time.perf_counter()
    (pred,) = inpaint_arrays(inpainter, [image], [mask], [0])
    seconds = time.perf_counter() - start
    assert pred.raw.shape == (500, 480, 3) and np.isfinite(pred.raw).all()
    composite = composite_uint8(to_uint8(pred.raw), image, mask)
    np.testing.assert_array_equal(composite[mask == 0], image[mask == 0])
    print(f"comod real-size 512 forward on {torch.get_num_threads()} CPU threads: {seconds:.1f} s")
