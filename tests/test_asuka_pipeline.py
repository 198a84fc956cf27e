"""ASUKA pipelines (`asuka-sd` on SD 1.5 inpainting, `asuka-flux` on FLUX.1-Fill) on CPU with tiny random parts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.asuka.alignment import AsukaAlignment
from baselines.asuka.convert import ours_to_ldm_decoder
from baselines.asuka.decoder import ConditionedLatentDecoder
from baselines.asuka.flux import AsukaFluxInpainter, AsukaFluxPipeline
from baselines.asuka.inpainter import AsukaSDInpainter, load_alignment_file, load_decoder_file
from baselines.asuka.mae import AsukaMAE, prepare_mae_inputs
from baselines.asuka.pipeline import AsukaInpaintPipeline, null_from_text_embedding
from baselines.sd.tiny import tiny_inpaint_pipeline, tiny_vae
from tiny_models import tiny_flux_fill_pipeline
from misato.weights import WeightsNotFoundError

SIZE = 32
ATOL = 1e-5  # batched vs single-sample CPU kernels differ by float rounding only
WIDTH = 32  # cross-attention width of the tiny UNet and both tiny FLUX text slots




def batch(n: int = 2, seed: int = 0, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images (B, 3, size, size) in [0, 1] and different box masks, 1 = hole."""
    generator = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.rand(n, 3, 8, 8, generator=generator), size=size, mode="bilinear")
    masks = torch.zeros(n, 1, size, size)
    unit = size // 8
    for i in range(n):
        masks[i, :, unit * (1 + i) : unit * (4 + i), unit + 1 : 5 * unit - 3] = 1.0
    return images, masks


def gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def check_contract(out: torch.Tensor, images: torch.Tensor) -> None:
    assert out.shape == images.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def check_batch_invariance(inpainter, images, masks, seeds) -> torch.Tensor:
    together = inpainter.inpaint(images, masks, seeds)
    for i, seed in enumerate(seeds):
        alone = inpainter.inpaint(images[i : i + 1], masks[i : i + 1], [seed])
        torch.testing.assert_close(alone[0], together[i], atol=ATOL, rtol=0)
    return together


def tiny_mae() -> AsukaMAE:
    torch.manual_seed(0)
    return AsukaMAE("tiny").eval()  # 32x32 input, 16 tokens, decoder width 24


def tiny_alignment(seed: int = 0) -> AsukaAlignment:
    torch.manual_seed(seed)
    return AsukaAlignment(dim=WIDTH, in_dim=24, num_heads=2).eval()


@torch.no_grad()
def expected_condition(mae: AsukaMAE, alignment: AsukaAlignment, images, masks) -> torch.Tensor:
    """ASUKA's condition computed step by step: resize to the MAE size, prior, alignment."""
    small_images, small_masks = prepare_mae_inputs(images, masks, size=mae.config.img_size)
    return alignment(mae.prior(small_images, small_masks))


class Capture:
    """Forward pre-hook that records keyword arguments of every call of a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.calls.append({"args": args, **kwargs})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# ------------------------------------------------------------------------------------------ asuka-sd


@pytest.fixture(scope="module")
def asuka_sd() -> AsukaInpaintPipeline:
    sd = tiny_inpaint_pipeline()
    decoder = ConditionedLatentDecoder.from_vae(sd.vae, "asuka", init_from_vae=True)
    null = torch.randn(1, 1, WIDTH, generator=torch.Generator().manual_seed(7))
    return AsukaInpaintPipeline(sd, tiny_mae(), tiny_alignment(), decoder, null_embeds=null)


def test_asuka_sd_contract_and_batch_invariance(asuka_sd):
    inpainter = AsukaSDInpainter.from_components(asuka_sd, steps=2)
    assert inpainter.config()["options"]["guidance"] == 1.0  # no CFG by default, as the paper
    images, masks = batch(2)
    out = check_batch_invariance(inpainter, images, masks, [3, 4])
    check_contract(out, images)
    big_images, big_masks = batch(1, size=64)
    check_contract(inpainter.inpaint(big_images, big_masks, [3]), big_images)


def test_tiny_asuka_sd_at_256_px_runs_on_sd_sized_latents(asuka_sd):
    """The tiny path (`--preset tiny`) is fast enough to try: its VAE downsamples 8x as SD's, so a 256 px image has
    32x32 latents, the UNet's attention sees at most 16x16 = 256 tokens and the VAE's at most 32x32 = 1024 (the old
    2x VAE: 128x128 latents, 4,096 and 16,384 tokens, 119 s per image at 50 steps on one CPU thread)."""
    from diffusers.models.attention_processor import Attention

    tokens: dict[str, list[int]] = {"unet": [], "vae": [], "decoder": []}
    latent_sides: list[tuple[int, int]] = []
    handles = [asuka_sd.sd_pipeline.unet.register_forward_pre_hook(
        lambda module, args: latent_sides.append(tuple(args[0].shape[-2:])))]
    for part, model in (("unet", asuka_sd.sd_pipeline.unet), ("vae", asuka_sd.sd_pipeline.vae),
                        ("decoder", asuka_sd.decoder)):
        for module in model.modules():
            if isinstance(module, Attention):
                handles.append(module.register_forward_pre_hook(
                    lambda module, args, kwargs, part=part: tokens[part].append(
                        _tokens(kwargs.get("hidden_states", args[0] if args else None))), with_kwargs=True))
    images, masks = batch(1, size=256)
    try:
        out = AsukaSDInpainter.from_components(asuka_sd, steps=2).inpaint(images, masks, [5])
    finally:
        for handle in handles:
            handle.remove()
    check_contract(out, images)
    assert asuka_sd.sd_pipeline.vae_scale_factor == 8 and set(latent_sides) == {(32, 32)}
    assert tokens["unet"] and max(tokens["unet"]) <= 256
    assert tokens["vae"] and max(tokens["vae"]) <= 1024 and max(tokens["decoder"], default=0) <= 1024


def _tokens(hidden: torch.Tensor) -> int:
    """Sequence length of an attention input: (B, N, C) tokens or a (B, C, H, W) map (the VAE's mid block)."""
    return hidden.shape[-2] * hidden.shape[-1] if hidden.ndim == 4 else hidden.shape[1]


def test_asuka_sd_condition_is_the_unet_context_and_the_decoder_decodes(asuka_sd):
    """The UNet sees alignment(MAE prior) as prompt_embeds, and the output is the conditioned decoder applied to
    the latents the SD pipeline returns for that context."""
    images, masks = batch(2)
    condition = expected_condition(asuka_sd.mae, asuka_sd.alignment, images, masks)
    assert condition.shape == (2, asuka_sd.mae.config.num_patches, WIDTH)
    with Capture(asuka_sd.sd_pipeline.unet) as seen:
        out = asuka_sd(images, masks, gens([1, 2]), num_inference_steps=2)
    assert len(seen.calls) == 2  # two steps, no CFG batch doubling
    for call in seen.calls:
        torch.testing.assert_close(call["encoder_hidden_states"], condition)
    latents = asuka_sd.sd_pipeline(
        prompt_embeds=condition, image=images, mask_image=masks, height=SIZE, width=SIZE, num_inference_steps=2,
        guidance_scale=1.0, generator=gens([1, 2]), output_type="latent",
    ).images
    with torch.no_grad():
        decoded = asuka_sd.decoder.decode(latents, images * 2 - 1, masks)
    torch.testing.assert_close(out, ((decoded + 1) / 2).clamp(0, 1), atol=ATOL, rtol=0)


def test_asuka_sd_condition_weight_and_guidance_use_the_null_embedding(asuka_sd):
    images, masks = batch(1)
    condition = expected_condition(asuka_sd.mae, asuka_sd.alignment, images, masks)
    null = asuka_sd.null_embeds
    with Capture(asuka_sd.sd_pipeline.unet) as seen:
        asuka_sd(images, masks, gens([0]), num_inference_steps=1, condition_weight=0.5, guidance_scale=2.0)
    context = seen.calls[0]["encoder_hidden_states"]
    assert context.shape[0] == 2  # CFG: [negative, positive]
    torch.testing.assert_close(context[0], null[0].expand_as(condition[0]))
    torch.testing.assert_close(context[1], 0.5 * null[0] + 0.5 * condition[0])
    without_null = AsukaInpaintPipeline(asuka_sd.sd_pipeline, asuka_sd.mae, asuka_sd.alignment, asuka_sd.decoder)
    with pytest.raises(ValueError, match="null_embeds"):
        without_null(images, masks, gens([0]), num_inference_steps=1, condition_weight=0.5)


def test_asuka_sd_without_special_decoder_uses_the_pipeline_vae(asuka_sd):
    plain = AsukaInpaintPipeline(asuka_sd.sd_pipeline, asuka_sd.mae, asuka_sd.alignment, decoder=None)
    images, masks = batch(1)
    out = plain(images, masks, gens([5]), num_inference_steps=1)
    condition = expected_condition(asuka_sd.mae, asuka_sd.alignment, images, masks)
    reference = asuka_sd.sd_pipeline(
        prompt_embeds=condition, image=images, mask_image=masks, height=SIZE, width=SIZE, num_inference_steps=1,
        guidance_scale=1.0, generator=gens([5]), output_type="pt",
    ).images
    torch.testing.assert_close(out, reference, atol=ATOL, rtol=0)


def test_null_from_text_embedding_pads_with_the_last_token():
    text = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 6, 4)[:, :3]
    null = null_from_text_embedding(text, 5)
    assert null.shape == (1, 5, 4)
    assert torch.equal(null[:, :3], text) and torch.equal(null[:, 3], text[:, 2]) and torch.equal(null[:, 4], text[:, 2])
    assert torch.equal(null_from_text_embedding(text, 2), text[:, :2])


# ------------------------------------------------------------------------------------------ weights


def test_missing_weights_raise_the_typed_error():
    with pytest.raises(WeightsNotFoundError, match="mae_300.pth"):
        AsukaSDInpainter(device="cpu")
    with pytest.raises(WeightsNotFoundError, match="mae_300.pth"):
        AsukaFluxInpainter(device="cpu")


def test_unreleased_sd_weights_resolve_from_explicit_paths(asuka_sd, tmp_path):
    inpainter = AsukaSDInpainter.from_components(asuka_sd)
    with pytest.raises(WeightsNotFoundError, match="(?s)asuka_sd_alignment.*never published: train it"):
        inpainter.resolve_weight("asuka-sd-alignment")
    path = tmp_path / "my_alignment.pt"
    path.write_bytes(b"stand-in")
    inpainter.options["weight_paths"] = {"asuka-sd-alignment": str(path)}
    assert inpainter.resolve_weight("asuka-sd-alignment").path == path
    from misato.weights import download, get_spec

    with pytest.raises(WeightsNotFoundError, match="never published"):
        download(get_spec("asuka-sd-decoder"))
    recorded = inpainter.config()["weights"]
    assert any(w["key"] == "asuka-sd-alignment" and w["path"] == str(path) for w in recorded)


def test_alignment_file_in_our_layout_and_in_the_release_layout(tmp_path):
    torch.manual_seed(1)
    model = AsukaAlignment(dim=64, variant="self4").eval()
    ours = tmp_path / "ours.pt"
    torch.save(model.state_dict(), ours)
    # the release's nn.Sequential layout: 0 = Linear, 1..4 = blocks (RMSNorm `scale`, unused modulation), 5 = norm
    release = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        if head == "proj_in":
            release[f"0.{rest}"] = value
        elif head == "norm_out":
            release[f"5.{rest}"] = value
        else:
            index, _, rest = rest.partition(".")
            release[f"{int(index) + 1}.{rest.replace('_norm.weight', '_norm.scale')}"] = value
    release["1.modulation.lin.weight"] = torch.zeros(3 * 64, 64)
    released = tmp_path / "release.pt"
    torch.save(release, released)
    prior = torch.randn(2, 16, 512)
    for path in (ours, released):
        loaded = load_alignment_file(path, dim=64)
        torch.testing.assert_close(loaded(prior), model(prior))


def test_decoder_file_with_ldm_keys_loads_into_the_sd_decoder(tmp_path):
    vae = tiny_vae()
    source = ConditionedLatentDecoder.from_vae(vae, "asuka", init_from_vae=False)
    torch.manual_seed(3)
    for param in source.decoder.parameters():
        param.data.normal_(0, 0.05)
    path = tmp_path / "decoder.ckpt"
    torch.save({"state_dict": ours_to_ldm_decoder(source.decoder.state_dict())}, path)
    loaded = load_decoder_file(path, vae)
    for key, value in source.decoder.state_dict().items():
        torch.testing.assert_close(loaded.decoder.state_dict()[key], value)
    assert loaded.post_quant_conv is vae.post_quant_conv and loaded.scaling_factor == vae.config.scaling_factor


# ------------------------------------------------------------------------------------------ asuka-flux


@pytest.fixture(scope="module")
def asuka_flux() -> AsukaFluxPipeline:
    flux = tiny_flux_fill_pipeline()
    decoder = ConditionedLatentDecoder.from_vae(flux.vae, "asuka", init_from_vae=True)
    generator = torch.Generator().manual_seed(9)
    null_vec = torch.randn(1, WIDTH, generator=generator)
    null_txt = torch.randn(1, 16, WIDTH, generator=generator)
    return AsukaFluxPipeline(flux, tiny_mae(), tiny_alignment(1), tiny_alignment(2), decoder, null_vec, null_txt)


def test_asuka_flux_contract_and_batch_invariance(asuka_flux):
    inpainter = AsukaFluxInpainter.from_components(asuka_flux, steps=2)
    options = inpainter.config()["options"]
    assert options["guidance"] == 30.0 and options["condition_weight"] == 0.5
    assert AsukaFluxInpainter.policy.pad_multiple == 16
    images, masks = batch(2)
    check_contract(check_batch_invariance(inpainter, images, masks, [8, 9]), images)


def test_asuka_flux_conditions_replace_t5_and_clip_and_decoder_uses_vae_shift(asuka_flux):
    images, masks = batch(2)
    small_images, small_masks = prepare_mae_inputs(images, masks, size=asuka_flux.mae.config.img_size)
    with torch.no_grad():
        prior = asuka_flux.mae.prior(small_images, small_masks)
        tokens = asuka_flux.alignment_t5(prior)
        pooled = asuka_flux.alignment_clip(prior).mean(dim=1)
    expected_tokens = asuka_flux.null_txt + 0.5 * (tokens - asuka_flux.null_txt)
    expected_pooled = asuka_flux.null_vec + 0.5 * (pooled - asuka_flux.null_vec)
    with Capture(asuka_flux.flux_pipeline.transformer) as seen:
        out = asuka_flux(images, masks, gens([1, 2]), num_inference_steps=2, guidance_scale=30.0)
    assert len(seen.calls) == 2
    call = seen.calls[0]
    torch.testing.assert_close(call["encoder_hidden_states"], expected_tokens)
    torch.testing.assert_close(call["pooled_projections"], expected_pooled)
    torch.testing.assert_close(call["guidance"], torch.full((2,), 30.0))
    assert not call["txt_ids"].any()
    flux = asuka_flux.flux_pipeline
    packed = flux(
        prompt_embeds=expected_tokens, pooled_prompt_embeds=expected_pooled, image=images, mask_image=masks,
        height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=30.0, generator=gens([1, 2]),
        output_type="latent",
    ).images
    latents = flux._unpack_latents(packed, SIZE, SIZE, flux.vae_scale_factor)
    z = latents / flux.vae.config.scaling_factor + flux.vae.config.shift_factor  # the release: z / 0.3611 + 0.1159
    with torch.no_grad():
        decoded = asuka_flux.decoder.decoder(z, images * 2 - 1, masks)
    torch.testing.assert_close(out, ((decoded + 1) / 2).clamp(0, 1), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------ loading from files


def save_mae_and_alignments(tmp_path, count: int) -> tuple[AsukaMAE, list[AsukaAlignment], dict[str, str]]:
    """A tiny MAE saved as the release does ({'model': state}) and `count` alignment state dicts (the release's
    key layout is tested in `test_alignment_file_in_our_layout_and_in_the_release_layout`)."""
    mae = tiny_mae()
    torch.save({"model": mae.state_dict(), "epoch": 300}, tmp_path / "mae.pth")
    alignments, paths = [], {"mae": str(tmp_path / "mae.pth")}
    for i in range(count):
        torch.manual_seed(10 + i)
        alignment = AsukaAlignment(dim=WIDTH, in_dim=24).eval()  # heads: dim // 64 -> 1, as loaded
        alignments.append(alignment)
        torch.save(alignment.state_dict(), tmp_path / f"alignment{i}.pt")
        paths[f"alignment{i}"] = str(tmp_path / f"alignment{i}.pt")
    return mae, alignments, paths


def test_asuka_sd_constructor_loads_every_file(tmp_path):
    from safetensors.torch import save_file

    sd = tiny_inpaint_pipeline()
    sd.save_pretrained(tmp_path / "sd")
    mae, (alignment,), paths = save_mae_and_alignments(tmp_path, 1)
    decoder = ConditionedLatentDecoder.from_vae(sd.vae, "asuka", init_from_vae=True)
    save_file(decoder.decoder.state_dict(), str(tmp_path / "decoder.safetensors"))
    weight_paths = {"asuka-mae": paths["mae"], "asuka-sd-alignment": paths["alignment0"],
                    "asuka-sd-decoder": str(tmp_path / "decoder.safetensors")}
    loaded = AsukaSDInpainter(device="cpu", model=str(tmp_path / "sd"), steps=2, mae_config="tiny",
                              weight_paths=weight_paths)
    reference = AsukaSDInpainter.from_components(AsukaInpaintPipeline(sd, mae, alignment, decoder), steps=2)
    images, masks = batch(1)
    torch.testing.assert_close(loaded.inpaint(images, masks, [6]), reference.inpaint(images, masks, [6]))
    config = loaded.config()
    assert {w["key"] for w in config["weights"]} == set(weight_paths)
    assert config["mae_load"]["missing_keys"] == [] and config["options"]["mae_config"] == "tiny"


def test_asuka_flux_constructor_loads_every_released_file(tmp_path):
    flux = tiny_flux_fill_pipeline()
    flux.save_pretrained(tmp_path / "flux")
    mae, (clip, t5), paths = save_mae_and_alignments(tmp_path, 2)
    decoder = ConditionedLatentDecoder.from_vae(flux.vae, "asuka", init_from_vae=True)
    torch.save({"state_dict": ours_to_ldm_decoder(decoder.decoder.state_dict())}, tmp_path / "decoder.ckpt")
    null_vec, null_txt = torch.randn(1, WIDTH), torch.randn(1, 16, WIDTH)
    torch.save(null_vec, tmp_path / "vec.pt")
    torch.save(null_txt, tmp_path / "txt_256.pt")
    weight_paths = {
        "asuka-mae": paths["mae"], "asuka-alignment-clip": paths["alignment0"],
        "asuka-alignment-t5": paths["alignment1"], "asuka-decoder-flux": str(tmp_path / "decoder.ckpt"),
        "asuka-flux-null-vec": str(tmp_path / "vec.pt"), "asuka-flux-null-txt": str(tmp_path / "txt_256.pt"),
    }
    loaded = AsukaFluxInpainter(device="cpu", model=str(tmp_path / "flux"), steps=2, mae_config="tiny",
                                weight_paths=weight_paths)
    reference = AsukaFluxInpainter.from_components(
        AsukaFluxPipeline(flux, mae, clip, t5, decoder, null_vec, null_txt), steps=2)
    images, masks = batch(1)
    torch.testing.assert_close(loaded.inpaint(images, masks, [6]), reference.inpaint(images, masks, [6]))
    assert {w["key"] for w in loaded.config()["weights"]} == set(weight_paths)
