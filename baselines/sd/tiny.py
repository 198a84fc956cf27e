"""The tiny random Stable Diffusion (diffusers' fast-test sizes) that `sd_model="tiny"` means: the frozen SD of
the CPU training preset (`misato train ... --preset tiny`) and of `misato reproduce table2 --preset smoke`, and the
tests' stand-in. The VAE downsamples 8x as SD's (64x64 images -> 8x8 latents, 256 -> 32x32); random weights,
seeded, so runs are reproducible offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

TINY = "tiny"  # the model name that means these modules (`load_inpaint_pipeline`, training's `sd_model`)

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, UNet2DConditionModel


def tiny_unet(in_channels: int = 9, cross_attention_dim: int = 32, seed: int = 0) -> "UNet2DConditionModel":
    """UNet2DConditionModel with block_out_channels (32, 64); in_channels 9 (inpainting) or 4 (RePaint)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
    ).eval()


# Channels of the tiny VAE's levels: 4 levels = 3 downsamplings = SD's scale factor 8, so the tiny UNet and the
# VAE's mid-block attention see as many tokens as SD 1.5 does (a 256 px image: 32x32 latents, 16x16 = 256 tokens
# in the UNet's cross-attention level). With 2 levels (factor 2) they saw 128x128 latents, 4,096 UNet tokens and
# 16,384 VAE tokens: 119 s per 256 px image at 50 steps on one CPU thread instead of seconds.
TINY_VAE_CHANNELS = (32, 32, 64, 64)


def tiny_vae(seed: int = 0) -> "AutoencoderKL":
    """AutoencoderKL with 4 levels (`TINY_VAE_CHANNELS`; scale factor 8 as SD's), 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    levels = len(TINY_VAE_CHANNELS)
    return AutoencoderKL(
        block_out_channels=list(TINY_VAE_CHANNELS), in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
        latent_channels=4,
    ).eval()


def tiny_scheduler() -> Any:
    """The SD 1.5 noise schedule (scaled_linear 0.00085..0.012) in a DDIM scheduler (deterministic, eta 0)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )


def tiny_text_encoder(hidden_size: int = 32, seed: int = 0) -> tuple[Any, Any]:
    """(CLIPTextModel, CLIPTokenizer) of tiny size, offline: a character-level vocabulary (a-z, start and end
    tokens, no merges), so prompts of lowercase words encode to distinct embeddings (1, 77, hidden_size)."""
    import string

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        hidden_size=hidden_size, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return CLIPTextModel(config).eval(), tokenizer


def tiny_inpaint_pipeline(
    vae: Any | None = None, seed: int = 0, text_encoder: bool = False
) -> "StableDiffusionInpaintPipeline":
    """A StableDiffusionInpaintPipeline of tiny random modules; without text encoder unless asked (then pass
    prompt_embeds)."""
    from diffusers import StableDiffusionInpaintPipeline

    encoder, tokenizer = tiny_text_encoder(seed=seed) if text_encoder else (None, None)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae if vae is not None else tiny_vae(seed), text_encoder=encoder, tokenizer=tokenizer,
        unet=tiny_unet(9, seed=seed), scheduler=tiny_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
