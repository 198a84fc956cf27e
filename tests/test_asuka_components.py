"""ASUKA components on CPU with tiny configurations: MAE prior, alignment variants, decoders, converters."""

from __future__ import annotations

import argparse
import functools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.asuka.alignment import ALIGNMENT_PRESETS, AlignmentBlock, AsukaAlignment, blend_with_null
from baselines.asuka.convert import (
    convert_released_alignment,
    ldm_decoder_to_ours,
    ours_to_ldm_decoder,
)
from baselines.asuka.decoder import (
    DECODER_VARIANTS,
    ConditionedLatentDecoder,
    build_decoder,
    init_from_vae_decoder,
    to_asymmetric_vae,
)
from misato.checkpoints import load_checkpoint
from baselines.asuka.mae import AsukaMAE, MAEConfig, prepare_mae_inputs, sincos_pos_embed_2d


def seeded(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random, non-trivial weights everywhere (zero-initialised params too), deterministic."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return module.eval()


@pytest.fixture(scope="module")
def mae() -> AsukaMAE:
    torch.manual_seed(0)
    model = seeded(AsukaMAE("tiny"))
    with torch.no_grad():
        model.alpha.fill_(0.3)  # strictly inside [0, 1] so partial mixing is visible
    return model


def images_and_masks(batch: int = 3, size: int = 32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    masks = torch.zeros(batch, 1, size, size)
    masks[0, :, 3:13, 5:21] = 1  # spans whole and partial patches (patch 8)
    masks[1, :, 16:24, 8:16] = 1  # exactly one whole patch
    if batch > 2:
        masks[2, :, 0, 0] = 1  # a single pixel: one partial patch
    return images, masks


# ------------------------------------------------------------------------------------------------ MAE
def test_token_mask_rule_matches_per_patch_counting(mae):
    _, masks = images_and_masks()
    tokens = mae.token_mask(masks)
    patch, grid = mae.config.patch_size, mae.config.grid
    for b in range(masks.shape[0]):
        for index in range(grid * grid):
            r, c = divmod(index, grid)
            holes = masks[b, 0, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch].sum().item()
            assert tokens.masked[b, index].item() == (holes > 0)
            assert tokens.partial[b, index].item() == (0 < holes < patch * patch)
    assert tokens.partial[1].sum() == 0 and tokens.masked[1].sum() == 1
    assert tokens.partial[2].sum() == 1


def test_partial_tokens_mix_alpha_with_image_embedding(mae):
    images, masks = images_and_masks()
    x, holes = mae.normalize(images, masks)
    tokens = mae.token_mask(holes)
    latent = torch.randn(3, mae.config.num_patches, mae.config.embed_dim)
    got = mae.decoder_input(latent, x, holes, tokens)
    # independent patch embedding of [x*(1-m), m] with unfold + matmul
    proj = mae.decoder_patch_embed.proj
    cols = F.unfold(torch.cat([x * (1 - holes), holes], 1), kernel_size=mae.config.patch_size,
                    stride=mae.config.patch_size)  # (B, C*p*p, L)
    image_tokens = cols.transpose(1, 2) @ proj.weight.flatten(1).T + proj.bias
    visible = latent @ mae.decoder_embed.weight.T + mae.decoder_embed.bias
    alpha = 0.3
    pos = sincos_reference(mae.config.decoder_embed_dim, mae.config.grid)
    for b in range(3):
        for index in range(mae.config.num_patches):
            if tokens.partial[b, index]:
                expected = mae.mask_token[0, 0] * alpha + image_tokens[b, index] * (1 - alpha)
            elif tokens.masked[b, index]:
                expected = mae.mask_token[0, 0]
            else:
                expected = visible[b, index]
            torch.testing.assert_close(got[b, index], expected + pos[index], rtol=1e-5, atol=1e-5)


def test_alpha_is_clamped(mae):
    images, masks = images_and_masks()
    x, holes = mae.normalize(images, masks)
    tokens = mae.token_mask(holes)
    latent = torch.randn(3, mae.config.num_patches, mae.config.embed_dim)
    with torch.no_grad():
        mae.alpha.fill_(1.7)
        above = mae.decoder_input(latent, x, holes, tokens)
        mae.alpha.fill_(1.0)
        one = mae.decoder_input(latent, x, holes, tokens)
        mae.alpha.fill_(0.3)
    torch.testing.assert_close(above, one)


def sincos_reference(dim: int, grid: int) -> torch.Tensor:
    """MAE's 2-D sin-cos table computed here with numpy: first half from the column index, second from the row."""
    def one_d(half: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(half // 2, dtype=np.float64) / (half / 2))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    cols, rows = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    return torch.from_numpy(np.concatenate([one_d(dim // 2, cols), one_d(dim // 2, rows)], axis=1)).float()


def test_position_embeddings_are_mae_sincos():
    torch.testing.assert_close(sincos_pos_embed_2d(64, 4), sincos_reference(64, 4), rtol=1e-5, atol=1e-5)


def test_masked_attention_encoder_equals_token_dropping(mae):
    images, masks = images_and_masks()
    x, holes = mae.normalize(images, masks)
    tokens = mae.token_mask(holes)
    with torch.no_grad():
        full = mae.encode(x, tokens)
        embedded = mae.patch_embed(x) + mae.pos_embed
        for b in range(x.shape[0]):
            keep = (~tokens.masked[b]).nonzero().squeeze(1)
            h = embedded[b:b + 1, keep]
            for block in mae.blocks:
                h = block(h)
            torch.testing.assert_close(full[b, keep], mae.norm(h)[0], rtol=1e-5, atol=1e-5)
        # and masked content does not reach visible tokens
        other = mae.encode(x + holes * 5.0, tokens)
    keep = ~tokens.masked
    torch.testing.assert_close(full[keep], other[keep], rtol=1e-5, atol=1e-5)


def test_vit_block_matches_timm():
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    from baselines.asuka.mae import Block

    ours = seeded(Block(32, 4, 4.0, 1e-6))
    norm = functools.partial(torch.nn.LayerNorm, eps=1e-6)
    theirs = timm_vit.Block(32, 4, 4.0, qkv_bias=True, norm_layer=norm).eval()
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and not missing
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_fully_masked_sample_is_finite_and_isolated(mae):
    images, masks = images_and_masks()
    masks_full = masks.clone()
    masks_full[1] = 1
    with torch.no_grad():
        batch = mae.prior(images, masks_full)
        alone = torch.cat([mae.prior(images[i:i + 1], masks_full[i:i + 1]) for i in (0, 2)])
        _, pixels = mae.reconstruct(images, masks_full)
    assert torch.isfinite(batch).all() and torch.isfinite(pixels).all()
    assert batch[1].abs().max() == 0
    torch.testing.assert_close(batch[[0, 2]], alone, rtol=1e-5, atol=1e-5)


def test_prior_is_decoder_state_before_block_prior_layer(mae):
    images, masks = images_and_masks()
    with torch.no_grad():
        prior = mae.prior(images, masks)
        x, holes = mae.normalize(images, masks)
        tokens = mae.token_mask(holes)
        h = mae.decoder_input(mae.encode(x, tokens), x, holes, tokens)
        for block in mae.decoder_blocks[: mae.config.prior_layer]:
            h = block(h)
    assert prior.shape == (3, mae.config.num_patches, mae.config.decoder_embed_dim)
    torch.testing.assert_close(prior, h)
    # unmasked reconstruction prior: None and an all-zero mask agree
    with torch.no_grad():
        torch.testing.assert_close(mae.prior(images, None), mae.prior(images, torch.zeros_like(masks)))


def test_real_size_prior_shape_on_meta_device():
    with torch.device("meta"):
        model = AsukaMAE()
        prior = model.prior(torch.empty(2, 3, 256, 256), torch.empty(2, 1, 256, 256))
    assert prior.shape == (2, 256, 512)


def released_mae_keys(depth: int = 12, decoder_depth: int = 8) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the release's MaskedAutoencoderViTFinetune (mae_vit_base_patch16, 256 px), from the
    release's facts: timm PatchEmbed `proj`, timm-style Block names, no cls token, fixed pos embeds stored."""
    keys: dict[str, tuple[int, ...]] = {
        "pos_embed": (1, 256, 768), "patch_embed.proj.weight": (768, 3, 16, 16), "patch_embed.proj.bias": (768,),
        "norm.weight": (768,), "norm.bias": (768,),
        "decoder_embed.weight": (512, 768), "decoder_embed.bias": (512,), "mask_token": (1, 1, 512),
        "decoder_pos_embed": (1, 256, 512), "decoder_norm.weight": (512,), "decoder_norm.bias": (512,),
        "decoder_pred.weight": (768, 512), "decoder_pred.bias": (768,),
        "decoder_patch_embed.proj.weight": (512, 4, 16, 16), "decoder_patch_embed.proj.bias": (512,), "alpha": (),
    }
    for prefix, count, dim in (("blocks", depth, 768), ("decoder_blocks", decoder_depth, 512)):
        for i in range(count):
            for name, shape in (("norm1.weight", (dim,)), ("norm1.bias", (dim,)), ("attn.qkv.weight", (3 * dim, dim)),
                                ("attn.qkv.bias", (3 * dim,)), ("attn.proj.weight", (dim, dim)),
                                ("attn.proj.bias", (dim,)), ("norm2.weight", (dim,)), ("norm2.bias", (dim,)),
                                ("mlp.fc1.weight", (4 * dim, dim)), ("mlp.fc1.bias", (4 * dim,)),
                                ("mlp.fc2.weight", (dim, 4 * dim)), ("mlp.fc2.bias", (dim,))):
                keys[f"{prefix}.{i}.{name}"] = shape
    return keys


def test_state_dict_keys_match_release():
    with torch.device("meta"):
        model = AsukaMAE()
    got = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert got == released_mae_keys()
    # ~112.5M parameters including the fixed position tables, as the release counts them
    assert math.isclose(sum(math.prod(shape) for shape in got.values()) / 1e6, 112.5, abs_tol=0.05)


def test_load_released_reports_missing_and_unexpected(tmp_path, mae):
    state = dict(mae.state_dict())
    state.pop("alpha")
    state["cls_token"] = torch.zeros(1, 1, 32)
    path = tmp_path / "mae.pth"
    torch.save({"model": state, "epoch": 300, "args": argparse.Namespace(lr=1e-4, output_dir="x")}, path)
    fresh = AsukaMAE("tiny")
    report = fresh.load_released(path)
    assert report.missing == ["alpha"] and report.unexpected == ["cls_token"]
    torch.testing.assert_close(fresh.mask_token, mae.mask_token)


def test_load_checkpoint_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {}, "hp": _Opaque()}, path)
    with pytest.raises(ValueError, match="never unpickled"):
        load_checkpoint(path)


class _Opaque:
    pass


def test_prepare_mae_inputs_area_and_nearest():
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 64, 64, generator=generator)
    masks = (torch.rand(2, 1, 64, 64, generator=generator) > 0.7).float()
    out_images, out_masks = prepare_mae_inputs(images, masks, size=32)
    # integer factor 2: INTER_AREA is the 2x2 mean, INTER_NEAREST picks one pixel per block
    torch.testing.assert_close(out_images, F.avg_pool2d(images, 2), rtol=1e-5, atol=1e-5)
    assert out_masks.shape == (2, 1, 32, 32) and set(out_masks.unique().tolist()) <= {0.0, 1.0}
    blocks = masks.reshape(2, 1, 32, 2, 32, 2)
    assert ((out_masks == blocks.amax(dim=(3, 5))) | (out_masks == blocks.amin(dim=(3, 5)))).all()
    wide = prepare_mae_inputs(torch.rand(1, 3, 40, 90), torch.zeros(1, 1, 40, 90), size=32)
    assert wide[0].shape == (1, 3, 32, 32)
    with pytest.raises(ValueError):
        prepare_mae_inputs(images, masks[:, :, :10])


def test_mae_rejects_wrong_size(mae):
    with pytest.raises(ValueError, match="32"):
        mae.prior(torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))


# ------------------------------------------------------------------------------------------------ alignment
@pytest.mark.parametrize("variant", sorted(ALIGNMENT_PRESETS))
def test_alignment_variant_shapes(variant):
    model = seeded(AsukaAlignment(dim=32, variant=variant, in_dim=24, num_heads=4, num_queries=16))
    prior = torch.randn(2, 16, 24)
    with torch.no_grad():
        out = model(prior)
        pooled = model.pooled(prior)
    assert out.shape == (2, 16, 32) and pooled.shape == (2, 32)
    torch.testing.assert_close(pooled, out.mean(1))
    depth = ALIGNMENT_PRESETS[variant].depth
    assert len(model.blocks) == depth
    assert torch.isfinite(out).all()


def test_alignment_block_matches_naive_computation():
    block = seeded(AlignmentBlock(32, 4))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        got = block(x)
        h = F.layer_norm(x, (32,), eps=1e-6)
        y = h @ block.linear1.weight.T + block.linear1.bias
        q, k, v, mlp = y[..., :32], y[..., 32:64], y[..., 64:96], y[..., 96:]

        def heads(t):  # (K H D) layout: head h owns features h*8 .. h*8+7 of each of q, k, v
            return t.reshape(2, 5, 4, 8).transpose(1, 2)

        def rms(t, weight):
            return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * weight

        q = rms(heads(q), block.norm.query_norm.weight)
        k = rms(heads(k), block.norm.key_norm.weight)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1) @ heads(v)
        attn = attn.transpose(1, 2).reshape(2, 5, 32)
        gelu = 0.5 * mlp * (1 + torch.tanh(math.sqrt(2 / math.pi) * (mlp + 0.044715 * mlp**3)))
        expected = x + torch.cat([attn, gelu], -1) @ block.linear2.weight.T + block.linear2.bias
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_alignment_has_no_positional_information():
    model = seeded(AsukaAlignment(dim=32, variant="self4", in_dim=24, num_heads=4))
    prior = torch.randn(1, 16, 24)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(prior)[:, perm], model(prior[:, perm]), rtol=1e-5, atol=1e-5)


def test_released_alignment_conversion_drops_modulation(tmp_path):
    model = seeded(AsukaAlignment(dim=64, variant="self4", in_dim=24))
    released = {}
    for key, value in model.state_dict().items():
        key = re.sub(r"(query_norm|key_norm)\.weight$", r"\1.scale", key)
        key = re.sub(r"^blocks\.(\d+)\.", lambda m: f"{int(m[1]) + 1}.", key)
        key = key.replace("proj_in.", "0.").replace("norm_out.", "5.")
        released[key] = value.clone()
    for i in range(1, 5):
        released[f"{i}.modulation.lin.weight"] = torch.randn(192, 64)
        released[f"{i}.modulation.lin.bias"] = torch.randn(192)
    assert "1.norm.query_norm.scale" in released and "0.weight" in released and "5.bias" in released
    path = tmp_path / "align.pt"
    torch.save(released, path)
    loaded = AsukaAlignment.from_released(path, dim=64)
    with pytest.raises(ValueError, match="width 64"):
        AsukaAlignment.from_released(path, dim=768)
    prior = torch.randn(2, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(prior), model(prior))
    with pytest.raises(ValueError):
        convert_released_alignment({"7.linear1.weight": torch.zeros(1)}, depth=4)


def test_blend_with_null():
    cond, null = torch.randn(3, 4, 8), torch.randn(1, 4, 8)
    torch.testing.assert_close(blend_with_null(cond, null, 1.0), cond)
    torch.testing.assert_close(blend_with_null(cond, null, 0.0), null.expand_as(cond))
    torch.testing.assert_close(blend_with_null(cond, null, 0.5), (cond + null) / 2)


# ------------------------------------------------------------------------------------------------ decoder
def decoder_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 8, 8, generator=generator)
    image = torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 3:9, 5:14] = 1
    mask[1, :, 10:, :7] = 1
    return z, image, mask


@pytest.fixture(scope="module")
def asuka_decoder() -> torch.nn.Module:
    return seeded(build_decoder("asuka", "tiny"), seed=2)


def test_decoder_known_everywhere_ignores_latent(asuka_decoder):
    z, image, _ = decoder_inputs()
    zeros = torch.zeros(2, 1, 16, 16)
    with torch.no_grad():
        a = asuka_decoder(z, image, zeros)
        b = asuka_decoder(torch.randn_like(z) * 3, image, zeros)
        c = asuka_decoder(z, -image, zeros)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # the image does matter


def test_decoder_hole_everywhere_ignores_image(asuka_decoder):
    z, image, _ = decoder_inputs()
    ones = torch.ones(2, 1, 16, 16)
    with torch.no_grad():
        a = asuka_decoder(z, image, ones)
        b = asuka_decoder(z, torch.rand_like(image), ones)
        c = asuka_decoder(z * 2, image, ones)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_decoder_level_masks_use_area_rule(asuka_decoder):
    # a single hole pixel: at the 8x8 level its cell counts as hole (area > 0), so the latent there matters
    z, image, _ = decoder_inputs()
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 5, 5] = 1
    level = asuka_decoder.level_mask(mask, (8, 8))
    assert level.sum() == 2 and level[0, 0, 2, 2] == 1
    assert F.interpolate(mask, size=(8, 8), mode="nearest").sum() == 0  # diffusers' rule would miss it


def test_asuka_decoder_equals_diffusers_cond_when_mask_channel_is_zero():
    ours = seeded(build_decoder("asuka", "tiny"), seed=3)
    cond = build_decoder("cond", "tiny").eval()
    with torch.no_grad():
        ours.condition_encoder.layers[0].weight[:, 3] = 0
    state = dict(ours.state_dict())
    state["condition_encoder.layers.0.weight"] = state["condition_encoder.layers.0.weight"][:, :3]
    cond.load_state_dict(state, strict=True)
    z, image, _ = decoder_inputs()
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 2:8] = 1  # aligned with the 8x8 latent grid: area > 0 and nearest agree
    with torch.no_grad():
        torch.testing.assert_close(ours(z, image, mask), cond(z, image, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", sorted(DECODER_VARIANTS))
def test_decoder_variants_shapes(variant):
    decoder = seeded(build_decoder(variant, "tiny"))
    z, image, mask = decoder_inputs()
    with torch.no_grad():
        out = decoder(z, image, mask) if DECODER_VARIANTS[variant].conditioned else decoder(z)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_flux_arch_has_16_latent_channels():
    with torch.device("meta"):
        decoder = build_decoder("asuka", "flux")
        out = decoder(torch.empty(1, 16, 32, 32), torch.empty(1, 3, 256, 256), torch.empty(1, 1, 256, 256))
    assert decoder.conv_in.in_channels == 16 and decoder.condition_encoder.layers[0].in_channels == 4
    assert out.shape == (1, 3, 256, 256)


def test_converter_round_trip_with_release_keys(asuka_decoder):
    ldm = ours_to_ldm_decoder(asuka_decoder.state_dict())
    # spot-check the release's naming
    assert "decoder.mid.attn_1.q.weight" in ldm and ldm["decoder.mid.attn_1.q.weight"].ndim == 4
    assert "decoder.encoder.layers.0.weight" in ldm and "decoder.norm_out.weight" in ldm
    assert "decoder.up.1.block.0.conv1.weight" in ldm and "decoder.up.1.upsample.conv.weight" in ldm
    assert "decoder.up.0.block.0.nin_shortcut.weight" in ldm
    checkpoint = dict(ldm)
    checkpoint["decoder.up_layers.0.conv.weight"] = torch.zeros(3)  # unused in the release
    checkpoint["encoder.conv_in.weight"] = torch.zeros(3)  # the VAE encoder of the Lightning module
    checkpoint["loss.logvar"] = torch.zeros(())
    converted = ldm_decoder_to_ours(checkpoint)
    fresh = build_decoder("asuka", "tiny")
    fresh.load_state_dict(converted, strict=True)
    for key, value in asuka_decoder.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    with pytest.raises(ValueError, match="no mapping"):
        ldm_decoder_to_ours({**ldm, "decoder.up.0.attn.0.q.weight": torch.zeros(1)})


def test_load_released_decoder(tmp_path, asuka_decoder):
    from baselines.asuka.convert import load_released_decoder

    path = tmp_path / "asuka_decoder.ckpt"
    torch.save({"state_dict": ours_to_ldm_decoder(asuka_decoder.state_dict()), "global_step": 5}, path)
    loaded = load_released_decoder(path, decoder=build_decoder("asuka", "tiny"))
    z, image, mask = decoder_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, image, mask), asuka_decoder(z, image, mask))


@pytest.fixture(scope="module")
def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=16)
    return seeded(vae, seed=4)


def test_init_from_vae_decoder_reproduces_vae_in_holes(tiny_vae):
    decoder = build_decoder("asuka", "tiny")
    report = init_from_vae_decoder(decoder, tiny_vae.decoder.state_dict())
    assert report["unexpected"] == [] and all(k.startswith("condition_encoder.") for k in report["missing"])
    z, image, _ = decoder_inputs()
    with torch.no_grad():
        torch.testing.assert_close(decoder(z, image, torch.ones(2, 1, 16, 16)), tiny_vae.decoder(z),
                                   rtol=1e-5, atol=1e-5)


def test_init_from_asymmetric_decoder_widens_first_conv():
    source = seeded(build_decoder("cond", "tiny"), seed=5)
    target = build_decoder("asuka", "tiny")
    report = init_from_vae_decoder(target, source.state_dict())
    assert report == {"missing": [], "unexpected": []}
    weight = target.condition_encoder.layers[0].weight
    assert weight.shape[1] == 4 and weight[:, 3].abs().max() == 0
    torch.testing.assert_close(weight[:, :3], source.condition_encoder.layers[0].weight)


def test_conditioned_latent_decoder_scaling(tiny_vae):
    wrapper = ConditionedLatentDecoder.from_vae(tiny_vae, "asuka")
    plain = ConditionedLatentDecoder.from_vae(tiny_vae, "vae")
    z, image, _ = decoder_inputs()
    latents = z * tiny_vae.config.scaling_factor
    with torch.no_grad():
        expected = tiny_vae.decode(z).sample
        torch.testing.assert_close(wrapper.decode(latents, image, torch.ones(2, 1, 16, 16)), expected,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(plain.decode(latents), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs the image"):
        wrapper.decode(latents)
    shifted = ConditionedLatentDecoder(wrapper.decoder, "asuka", scaling_factor=0.5, shift_factor=0.25)
    with torch.no_grad():
        hole = _hole().expand(2, 1, 16, 16)
        direct = wrapper.decoder(z / 0.5 + 0.25, image, hole)
        torch.testing.assert_close(shifted.decode(z, image, hole), direct)


def _hole() -> torch.Tensor:
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 2:10, 4:12] = 1
    return mask


def test_to_asymmetric_vae_decodes_with_our_decoder(tiny_vae, asuka_decoder):
    asym = to_asymmetric_vae(tiny_vae, asuka_decoder)
    z, image, mask = decoder_inputs()
    with torch.no_grad():
        got = asym.decode(z, image=image, mask=mask).sample
        expected = asuka_decoder(tiny_vae.post_quant_conv(z), image, mask)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        x = torch.rand(1, 3, 16, 16) * 2 - 1
        torch.testing.assert_close(asym.encode(x).latent_dist.mean, tiny_vae.encode(x).latent_dist.mean)


# ------------------------------------------------------------------------------------------------ weights
def test_weight_specs():
    from baselines.asuka.weight_specs import WEIGHTS

    published = [spec for spec in WEIGHTS if spec.url]
    assert {spec.filename for spec in published} == {"mae_300.pth", "asuka_alignment_clip.pt", "asuka_alignment_t5.pt",
                                                     "asuka_decoder.ckpt", "vec.pt", "txt_256.pt"}
    assert {spec.key for spec in WEIGHTS if not spec.url} == {"asuka-sd-alignment", "asuka-sd-decoder"}
    assert len({spec.key for spec in WEIGHTS}) == len(WEIGHTS)
    for spec in published:
        assert spec.url == f"https://huggingface.co/yikaiwang/ASUKA-FLUX.1-Fill/resolve/main/{spec.filename}"
        assert spec.hf_repo == "yikaiwang/ASUKA-FLUX.1-Fill"
        assert spec.sha256 == "" and "not published" in spec.description


def test_tiny_config_is_a_real_config():
    assert MAEConfig().num_patches == 256 and MAEConfig().grid == 16
    with pytest.raises(ValueError):
        AsukaMAE("tiny", prior_layer=9)
    with pytest.raises(ValueError, match="unknown"):
        AsukaMAE("huge")


def test_conditioned_latent_decoder_flux_style_vae():
    from diffusers import AutoencoderKL

    vae = seeded(AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                               block_out_channels=(32, 64), layers_per_block=1, latent_channels=16,
                               norm_num_groups=8, sample_size=16, scaling_factor=0.3611, shift_factor=0.1159,
                               use_quant_conv=False, use_post_quant_conv=False), seed=6)
    wrapper = ConditionedLatentDecoder.from_vae(vae, "asuka")
    assert wrapper.post_quant_conv is None and wrapper.shift_factor == pytest.approx(0.1159)
    latents = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        expected = vae.decode(latents / 0.3611 + 0.1159).sample
        got = wrapper.decode(latents, torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
