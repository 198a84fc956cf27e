"""MAT: our port with random weights saved in the authors' key layout, through the inpainter contract."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage import data

from baselines.harness import inpaint_arrays
from baselines.mat.inpainter import MatInpainter
from baselines.mat.network import Generator, MatConfig
from baselines.mat.randomness import SampleRandomness
from baselines.mat.transformer import Conv2dLayerPartial
from baselines.registry import create_inpainter
from baselines.stylegan_ops import conv2d_resample, fir_filter, upsample2d
from inpainter_contract import check_contract, hole_masks, photo_crops
from misato.composite import composite_uint8
from baselines.runner import to_uint8
from misato.weights import WeightsNotFoundError, get_spec

# The smallest config the architecture allows: 128 px (the first stage works on a 64x64 token grid).
TINY = MatConfig(resolution=128, z_dim=16, w_dim=16, channel_base=1024, channel_max=16, stage1_dim=12,
                 stage1_heads=2, mapping_layers=2)


def random_state(config: MatConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random generator state dict in the authors' layout, with non-zero biases and noise strengths and
    small toRGB weights (so the random output stays mostly inside [-1, 1] and seeds visibly matter)."""
    torch.manual_seed(seed)
    net = Generator(config)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                param.copy_(torch.randn_like(param) * 0.2)
            if "toRGB.conv.weight" in name:
                param.mul_(0.05)
    return net.state_dict()


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return random_state(TINY)


@pytest.fixture
def tiny_file(tmp_path, tiny_state):
    path = tmp_path / "Places_512_FullData_G.pth"
    torch.save(tiny_state, path)
    return path


def make_tiny(path, **options) -> MatInpainter:
    return MatInpainter(weight_paths={"mat-places512": str(path)}, network_config=TINY, **options)


# ---------------------------------------------------------------- layout and specs


def test_state_dict_has_the_authors_key_layout(tiny_state):
    for key in ("mapping.fc0.weight", "mapping.w_avg", "synthesis.first_stage.conv_first.conv.resample_filter",
                "synthesis.first_stage.tran.0.blocks.1.attn_mask", "synthesis.first_stage.tran.1.downsample.conv.conv.weight",
                "synthesis.first_stage.tran.2.blocks.3.attn.q.weight", "synthesis.first_stage.down_conv.3.weight",
                "synthesis.first_stage.dec_conv.0.conv0.conv.affine.bias", "synthesis.enc.EncConv_Block_16x16.conv1.bias",
                "synthesis.to_style.conv.2.weight", "synthesis.dec.Dec_16x16.conv1.noise_const",
                "synthesis.dec.Dec_128x128.toRGB.resample_filter"):
        assert key in tiny_state, key
    # the 16x16 stage attends over the whole grid: no shifted windows, no shift mask
    assert "synthesis.first_stage.tran.2.blocks.1.attn_mask" not in tiny_state


def test_weight_specs_are_registered():
    places = get_spec("mat-places512")
    assert places.filename == "Places_512_FullData_G.pth" and places.md5 == "8ca927835fa3f5e21d65ffcb165377ed"
    assert places.url.endswith("/add_mat/Places_512_FullData_G.pth") and "CC BY-NC" in places.description
    celeba = get_spec("mat-celeba512")
    assert celeba.hf_repo and len(celeba.sha256) == 64 and "CC BY-NC" in celeba.description


# ---------------------------------------------------------------- ops


def test_fir_resampling_keeps_constants_and_shapes():
    f = fir_filter()
    x = torch.full((1, 2, 8, 8), 3.0)
    up = upsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and torch.allclose(up[..., 2:-2, 2:-2], x[..., :1, :1].expand(1, 2, 12, 12))
    w = torch.randn(4, 2, 3, 3)
    assert conv2d_resample(x, w, f, down=2, padding=1).shape == (1, 4, 4, 4)
    assert conv2d_resample(x, w, f, up=2, padding=1).shape == (1, 4, 16, 16)


def test_partial_conv_updates_mask_and_rescales():
    layer = Conv2dLayerPartial(1, 1, 3)
    with torch.no_grad():
        layer.conv.weight.fill_(1.0)
        layer.conv.bias.zero_()
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :, :2] = 1
    out, updated = layer(torch.ones(1, 1, 6, 6) * mask, mask)
    assert torch.equal(updated[0, 0, 0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    # a valid output is the mean of its valid inputs times k^2 * weight_gain (= 9 / 3 here)
    assert torch.allclose(out[0, 0, 2, :3], torch.full((3,), 3.0)) and torch.all(out[0, 0, :, 3:] == 0)


def test_sample_randomness_is_per_sample():
    a = SampleRandomness([5, 7]).keep_half((3, 4))
    b = SampleRandomness([7]).keep_half((3, 4))
    assert torch.equal(a[1], b[0]) and set(a.unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------- the contract


def test_contract_shapes_known_pixels_batching_and_seeds(tiny_file):
    inpainter = make_tiny(tiny_file)
    assert inpainter.policy.pad_multiple == 128 and inpainter.policy.square
    preds = check_contract(inpainter, 64, stochastic=True)
    for image, mask, pred in zip(photo_crops(64), hole_masks(3, 64), preds):
        # the model itself pastes the known pixels back (in [-1, 1], so up to float rounding)
        np.testing.assert_allclose(pred.raw[mask == 0], image[mask == 0] / 255.0, atol=1e-5)


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_noise_modes_run_and_are_recorded(tiny_file, noise_mode):
    inpainter = make_tiny(tiny_file, noise_mode=noise_mode, truncation_psi=0.7)
    image = torch.rand(2, 3, 128, 128)
    mask = torch.zeros(2, 1, 128, 128)
    mask[..., 30:90, 20:70] = 1
    out = inpainter.inpaint(image * (1 - mask), mask, [3, 4])
    assert out.shape == (2, 3, 128, 128) and torch.isfinite(out).all()
    assert torch.equal(out, inpainter.inpaint(image * (1 - mask), mask, [3, 4]))
    record = inpainter.config()
    assert record["noise_mode"] == noise_mode and record["truncation_psi"] == 0.7
    assert record["network"] == dataclasses.asdict(TINY) and record["weights"][0]["key"] == "mat-places512"


def test_created_through_the_registry(tiny_file):
    inpainter = create_inpainter("mat", weight_paths={"mat-places512": str(tiny_file)}, network_config=TINY)
    assert isinstance(inpainter, MatInpainter)


def test_multiple_of_the_resolution_runs(tiny_file):
    """Twice the trained size: the transformer runs on a bigger grid, "const" noise falls back to random."""
    inpainter = make_tiny(tiny_file)
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 100:180, 60:200] = 1
    out = inpainter.inpaint(torch.rand(1, 3, 256, 256) * (1 - mask), mask, [0])
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="multiple of 128"):
        inpainter.inpaint(torch.rand(1, 3, 192, 192), torch.zeros(1, 1, 192, 192), [0])


# ---------------------------------------------------------------- files and errors


def test_missing_file_raises_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError):
        make_tiny(tmp_path / "absent.pth")
    with pytest.raises(WeightsNotFoundError, match="mat-celeba512"):
        MatInpainter(model="celeba", network_config=TINY)


def test_wrong_files_raise_value_errors_naming_file_and_keys(tmp_path, tiny_state):
    extra = dict(tiny_state, **{"synthesis.extra.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth.*synthesis\.extra\.weight"):
        make_tiny(tmp_path / "extra.pth")
    missing = {k: v for k, v in tiny_state.items() if k != "mapping.fc1.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing\.pth.*mapping\.fc1\.weight"):
        make_tiny(tmp_path / "missing.pth")
    torch.save(tiny_state, tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match=r"tiny\.pth: not a MAT generator .*wrong shapes.*mapping\.fc0\.weight"):
        MatInpainter(weight_paths={"mat-places512": str(tmp_path / "tiny.pth")},
                     network_config=dataclasses.replace(TINY, z_dim=8))
    with pytest.raises(ValueError, match="model must be"):
        make_tiny(tmp_path / "extra.pth", model="ffhq")


def noise_free(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layout of the published state-dict files: the authors' keys minus noise_const / noise_strength."""
    return {k: v for k, v in state.items() if not k.endswith((".noise_const", ".noise_strength"))}


def test_default_noise_mode_follows_the_file(tiny_file, tmp_path, tiny_state):
    assert make_tiny(tiny_file).config()["noise_mode"] == "const"  # the authors' test-script default
    stripped = {k: v.half() for k, v in noise_free(tiny_state).items()}
    assert len(stripped) == len(tiny_state) - 2 * len([k for k in tiny_state if k.endswith(".noise_const")])
    path = tmp_path / "MAT_CelebA-HQ_512_fp16.safetensors"
    save_file(stripped, str(path))
    inpainter = MatInpainter(model="celeba", weight_paths={"mat-celeba512": str(path)}, network_config=TINY)
    assert inpainter.config()["noise_mode"] == "none" and not inpainter.net.config.use_noise
    assert inpainter.net.mapping.fc0.weight.dtype == torch.float32
    assert torch.equal(inpainter.net.mapping.fc0.weight, stripped["mapping.fc0.weight"].float())
    for mode in ("const", "random"):
        with pytest.raises(ValueError, match="no noise maps"):
            MatInpainter(model="celeba", noise_mode=mode, weight_paths={"mat-celeba512": str(path)},
                         network_config=TINY)


def test_noise_free_file_matches_the_full_file_without_noise(tiny_file, tmp_path, tiny_state):
    torch.save(noise_free(tiny_state), tmp_path / "stripped.pth")
    stripped = MatInpainter(weight_paths={"mat-places512": str(tmp_path / "stripped.pth")}, network_config=TINY)
    full = make_tiny(tiny_file, noise_mode="none")
    image, mask = torch.rand(1, 3, 128, 128), torch.zeros(1, 1, 128, 128)
    mask[..., 40:100, 30:90] = 1
    assert torch.equal(stripped.inpaint(image * (1 - mask), mask, [9]), full.inpaint(image * (1 - mask), mask, [9]))


# ---------------------------------------------------------------- real size


@pytest.mark.realsize
def test_real_size_network_loads_strictly_and_inpaints_512(tmp_path):
    net = Generator()  # the authors' architecture, with noise inputs
    assert sum(p.numel() for p in net.parameters()) == 61_562_518
    state = noise_free(net.state_dict())  # the published Places file's layout (as IOPaint loads it)
    assert len(state) == 465 and sum(v.numel() for v in state.values()) == 62_612_683
    path = tmp_path / "Places_512_FullData_G.pth"
    torch.save(state, path)
    del net
    inpainter = MatInpainter(weight_paths={"mat-places512": str(path)})
    assert inpainter.policy.pad_multiple == 512 and inpainter.config()["noise_mode"] == "none"
    image = np.ascontiguousarray(data.astronaut()[:512, :512])
    mask = np.zeros((512, 512), np.float32)
    mask[150:350, 200:330] = 1
    start = time.perf_counter()
    (pred,) = inpaint_arrays(inpainter, [image], [mask], [0])
    seconds = time.perf_counter() - start
    assert pred.raw.shape == (512, 512, 3)
    np.testing.assert_array_equal(composite_uint8(to_uint8(pred.raw), image, mask)[mask == 0], image[mask == 0])
    print(f"MAT 512 CPU forward: {seconds:.1f} s")
