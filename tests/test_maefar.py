"""MAE-FAR (`mae-far`): loading the authors' checkpoint layout strictly, the inpainter contract, the MPE and the
patch attention on small cases, with a tiny architecture and random weights (one real-size test)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from baselines.asuka.mae import AsukaMAE
from baselines.harness import inpaint_arrays
from baselines.maefar.inpainter import (
    MAE_UNUSED_KEYS,
    WEIGHT_KEY,
    MaeFarInpainter,
    load_mae_far,
    split_lightning_state,
)
from baselines.maefar.network import (
    MaeFarACR,
    MaeFarConfig,
    attention_work_size,
    group_conv_attention,
    masked_position_encoding,
    sinusoidal_table,
)
from inpainter_contract import check_contract, hole_masks
from misato.checkpoints import CheckpointNeedsConversionError, convert_to_safetensors
from misato.composite import composite_uint8
from baselines.runner import to_uint8
from misato.weights import WeightsNotFoundError, get_spec

# 8 base channels, one FFC block, a 32x32 MAE (4x4 tokens of width 24); works at 64..128
TINY = MaeFarConfig(channels=8, n_blocks=1, mae_dim=24, min_size=64, max_size=128)
TINY_MAE = "tiny"


def authors_state(config: MaeFarConfig = TINY, mae_config: str = TINY_MAE, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the layout of the authors' Lightning 'state_dict' (plus entries the loader ignores)."""
    torch.manual_seed(seed)
    mae = AsukaMAE(mae_config)
    acr = MaeFarACR(config)
    with torch.no_grad():
        for name, param in acr.named_parameters():
            if param.ndim == 0 and name != "GCs.alpha5":  # the prior scales start at 0: make the prior matter
                param.copy_(torch.rand(()) * 0.5 + 0.25)
        acr.G.convt4.weight.mul_(20.0)  # spread the sigmoid output over [0, 1]
        for module in acr.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    state = {f"mae.{k}": v for k, v in mae.state_dict().items() if k not in MAE_UNUSED_KEYS}
    state.update({f"acr.{k}": v for k, v in acr.state_dict().items()})
    state.update({f"acr_ema.{k}": v + 1 for k, v in acr.state_dict().items() if v.is_floating_point()})
    state["D.model.0.weight"] = torch.zeros(4, 3, 3, 3)
    return {k: v.contiguous().clone() for k, v in state.items()}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("maefar") / "mae_far_tiny.safetensors"
    save_file(authors_state(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny(tiny_file) -> MaeFarInpainter:
    return MaeFarInpainter(config=TINY, mae_config=TINY_MAE, weight_paths={WEIGHT_KEY: tiny_file})


def batch(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images (n, 3, size, size) in [0, 1), hole pixels zeroed, and hole_masks as (n, 1, size, size)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.from_numpy(np.stack(hole_masks(n, size)))[:, None]
    return images * (1 - masks), masks


# ------------------------------------------------------------------------------------------- weights


def test_spec_is_registered():
    spec = get_spec(WEIGHT_KEY)
    assert "drive.google.com" in spec.url and spec.sha256 == ""
    assert "--state-key state_dict" in spec.manual and "CC BY-NC" in spec.description  # never downloaded


def test_split_lightning_state_strips_prefixes_and_ignores_the_rest():
    state = {"mae.norm.weight": torch.ones(1), "acr.G.conv1.weight": torch.ones(2), "acr_ema.G.conv1.weight":
             torch.ones(3), "D.w": torch.ones(4), "loss_resnet_pl.x": torch.ones(5)}
    mae, acr = split_lightning_state(state)
    assert list(mae) == ["norm.weight"] and list(acr) == ["G.conv1.weight"]
    assert acr["G.conv1.weight"].shape == (2,)  # not the EMA copy: the release's test.py loads 'acr.'


def test_loads_strictly_from_safetensors_and_plain_lightning_dict(tiny_file, tmp_path):
    state = authors_state()
    mae, acr = load_mae_far(tiny_file, TINY, TINY_MAE)
    for key, value in acr.state_dict().items():
        assert torch.equal(value, state[f"acr.{key}"]), key
    assert torch.equal(mae.blocks[0].attn.qkv.weight, state["mae.blocks.0.attn.qkv.weight"])
    # a Lightning file that torch.load(weights_only=True) accepts: the 'state_dict' entry is used
    plain = tmp_path / "plain.ckpt"
    torch.save({"epoch": 3, "global_step": 10, "state_dict": state}, plain)
    _, acr2 = load_mae_far(plain, TINY, TINY_MAE)
    assert torch.equal(acr2.G.convt4.weight, state["acr.G.convt4.weight"])


class LightningConfigObject:
    """Stands for the config objects in a Lightning checkpoint that weights_only refuses."""


def test_pickle_needing_full_unpickling_names_the_convert_command(tmp_path):
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": authors_state(), "hyper_parameters": LightningConfigObject()}, path)
    with pytest.raises(CheckpointNeedsConversionError, match=r"misato weights convert .*--state-key state_dict"):
        MaeFarInpainter(config=TINY, mae_config=TINY_MAE, weight_paths={WEIGHT_KEY: str(path)})
    converted = convert_to_safetensors(path, tmp_path / "best.safetensors", state_key="state_dict")
    load_mae_far(converted, TINY, TINY_MAE)


@pytest.mark.parametrize("change,message", [
    ("drop", r"missing keys \['G.conv1.weight'\]"),
    ("extra", r"unexpected keys \['G.extra'\]"),
    ("shape", r"wrong shapes \['G.conv1.weight"),
    ("foreign", r"no 'mae.\*' and 'acr.\*' entries"),
])
def test_wrong_checkpoint_names_file_and_keys(tmp_path, change, message):
    state = authors_state()
    if change == "drop":
        del state["acr.G.conv1.weight"]
    elif change == "extra":
        state["acr.G.extra"] = torch.zeros(1)
    elif change == "shape":
        state["acr.G.conv1.weight"] = torch.zeros(1, 4, 7, 7)
    else:
        state = {"generator.conv1.weight": torch.zeros(1)}
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=message) as error:
        MaeFarInpainter(config=TINY, mae_config=TINY_MAE, weight_paths={WEIGHT_KEY: str(path)})
    assert "wrong.safetensors" in str(error.value)


def test_missing_file_raises_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError):
        MaeFarInpainter(config=TINY, mae_config=TINY_MAE)


# ------------------------------------------------------------------------------------------- contract


def test_contract_through_the_harness(tiny):
    """64x64 crops are padded to the policy's 256 (above the tiny max 128: run at 128 and upsampled)."""
    assert tiny.deterministic  # seeds are unused
    preds = check_contract(tiny, 64, stochastic=False)
    for mask, pred in zip(hole_masks(3, 64), preds):
        assert pred.out_of_range == 0 and pred.raw[mask == 1].std() > 0


def test_raw_output_at_the_network_size(tiny):
    """At 64x64 (the harness path runs at 128) and unclamped (the harness clamps what the contract sees)."""
    images, masks = batch(3)
    out = tiny.inpaint(images, masks, [0, 1, 2])
    assert out.shape == images.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1 and float(out.std()) > 0
    # seeds are unused; single samples give the same result as the batch
    assert torch.equal(tiny.inpaint(images, masks, [5, 6, 7]), out)
    for i in range(3):
        torch.testing.assert_close(tiny.inpaint(images[i:i + 1], masks[i:i + 1], [i]), out[i:i + 1],
                                   rtol=0, atol=1e-5)


def test_known_pixels_change_the_output(tiny):
    images, masks = batch(1)
    out = tiny.inpaint(images, masks, [0])
    other = images.clone()
    other[..., 48:, :] = 1 - other[..., 48:, :] * (1 - masks[..., 48:, :])  # change known pixels only
    assert (tiny.inpaint(other, masks, [0]) - out).abs().max() > 1e-3


def test_harness_composites_and_handles_sizes_above_max(tiny):
    """64x64 crops are padded to the policy's 256 (above the tiny max 128: run at 128 and upsampled)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)]
    masks = [np.zeros((64, 64), np.float32), np.zeros((50, 70), np.float32)]
    masks[0][10:30, 20:40] = 1
    masks[1][5:45, 30:35] = 1
    preds = inpaint_arrays(tiny, images, masks, [0, 1], batch_size=2)
    for image, mask, pred in zip(images, masks, preds):
        assert pred.raw.shape == image.shape and np.isfinite(pred.raw).all()
        out = composite_uint8(to_uint8(pred.raw), image, mask)
        np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


def test_rejects_sizes_the_network_cannot_take(tiny):
    for size in ((64, 80), (72, 72), (48, 48)):
        with pytest.raises(ValueError, match="multiple of 16"):
            tiny.inpaint(torch.zeros(1, 3, *size), torch.zeros(1, 1, *size), [0])


def test_fully_masked_image_stays_finite(tiny):
    out = tiny.inpaint(torch.zeros(2, 3, 64, 64), torch.ones(2, 1, 64, 64), [0, 1])
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------- pieces


def test_masked_position_encoding_on_a_small_hole():
    masks = torch.zeros(1, 1, 64, 64)
    masks[..., 16:40, 20:28] = 1  # at 32x32: rows 8..19, cols 10..13 (4 wide)
    rel, direct = masked_position_encoding(masks, pos_size=32, pos_num=128)
    assert rel.shape == (1, 64, 64) and direct.shape == (1, 64, 64, 4)
    hole = masks[0, 0] > 0
    assert (rel[0][~hole] == 0).all() and (direct[0][~hole] == 0).all()
    # distance 1 at the hole border (x 8), distance 2 in its middle columns (x 8), clipped at 127
    assert int(rel[0, 16, 20]) == 8 and int(rel[0, 24, 22]) == 16 and int(rel.max()) == 16
    # direction bits: which 2x2 corner windows (release order: top-left, bottom-left, top-right, bottom-right)
    # touch the known region; at the hole's top-left corner three do, on its left edge two
    assert direct[0, 16, 20].tolist() == [1, 1, 1, 0]
    assert direct[0, 24, 20].tolist() == [1, 1, 0, 0]
    # no known pixel: no distance (the release would loop forever)
    rel_full, _ = masked_position_encoding(torch.ones(1, 1, 32, 32), 32, 128)
    assert int(rel_full.max()) == 0


def test_sinusoidal_table_layout():
    table = sinusoidal_table(5, 6)
    pos, j = 3, 1
    assert table[pos, j].item() == pytest.approx(np.sin(pos / 10000 ** (2 * j / 6)), abs=1e-6)
    assert table[pos, 3 + j].item() == pytest.approx(np.cos(pos / 10000 ** (2 * j / 6)), abs=1e-6)


@pytest.mark.parametrize("height,work", [(32, 32), (40, 48), (48, 48), (56, 64), (64, 64)])
def test_group_attention_sizes_and_identity_scores(height, work):
    """Sizes as the release; with one-hot scores (each token attends to itself) the patches are pasted back."""
    assert attention_work_size(height) == work
    x = torch.rand(2, 3, height, height)
    scores = torch.eye(256).expand(2, -1, -1)
    out = group_conv_attention(x, scores, torch.tensor(1.0))
    assert out.shape == x.shape
    if work == height and work % 32 == 0:  # even rate: every pixel covered by 4 overlapping patches (/ 4)
        inner = slice(work // 16, -work // 16)
        torch.testing.assert_close(out[..., inner, inner], 2 * x[..., inner, inner], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------- real size


@pytest.mark.realsize
def test_real_size_model_loads_strictly_and_inpaints_512(tmp_path):
    torch.manual_seed(0)
    mae = AsukaMAE()
    acr = MaeFarACR()
    state = {f"mae.{k}": v for k, v in mae.state_dict().items() if k not in MAE_UNUSED_KEYS}
    state.update({f"acr.{k}": v for k, v in acr.state_dict().items()})
    path = tmp_path / "mae_far_places2.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    del mae, acr, state
    inpainter = MaeFarInpainter(weight_paths={WEIGHT_KEY: str(path)})
    assert sum(p.numel() for p in inpainter.acr.parameters()) == 40_988_491
    images, masks = batch(1, size=512)
    start = time.perf_counter()
    out = inpainter.inpaint(images, masks, [0])
    print(f"mae-far 512 CPU forward: {time.perf_counter() - start:.1f} s")
    assert out.shape == (1, 3, 512, 512) and torch.isfinite(out).all()
