"""ASUKA's inpainting-specialised decoder on diffusers, and the Table 2(d) decoder variants.

The release (`asuka-flux/ldm/modules/diffusionmodules/asuka_decoder.py:Decoder`, `configs/condition_decoder.yaml`)
is the asymmetric VAE's mask-conditioned decoder (Zhu et al., diffusers `MaskConditionDecoder`) with two changes:
  1. the condition encoder reads `[image*(1-mask), mask]` (4 channels); diffusers' reads the masked image only;
  2. at the start of each level the mask is area-downsampled and then `> 0` (a latent pixel counts as hole when
     any hole pixel falls in it); diffusers resizes it with `nearest`.
At full resolution, before the output norm, both use the raw mask: `h*mask + enc0*(1-mask)`.
`AsukaMaskConditionDecoder` subclasses diffusers' class and changes only these: the first condition conv (built by
diffusers' own `MaskConditionEncoder` with one more input channel) and `forward` (the level-mask rule sits inside
the loop, with no hook to override, so the loop is rewritten; the rest is inherited unchanged).

Conventions (as diffusers' VAE): z (B, C, h, w) unscaled latents (after `post_quant_conv` where the VAE has one);
image (B, 3, H, W) in [-1, 1]; mask (B, 1, H, W) in {0, 1}, 1 = hole; output (B, 3, H, W), roughly [-1, 1].

Variants (Table 2(d)) are presets in `DECODER_VARIANTS`: "vae" (plain KL-VAE decoder), "cond" (asymmetric decoder
as in diffusers), "asuka" (ours). `ConditionedLatentDecoder` wraps any of them with the latent scaling, shift and
`post_quant_conv` of the VAE it replaces (SD 1.5: z_channels 4, scale 0.18215; FLUX: 16, 0.3611, shift 0.1159).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import Decoder, MaskConditionDecoder, MaskConditionEncoder
from torch import nn


@dataclass(frozen=True)
class DecoderArch:
    """Sizes shared by every decoder variant (diffusers' names)."""

    latent_channels: int = 4
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    act_fn: str = "silu"

    @property
    def up_block_types(self) -> tuple[str, ...]:
        return ("UpDecoderBlock2D",) * len(self.block_out_channels)

    @classmethod
    def from_vae_config(cls, config: Any) -> "DecoderArch":
        """From an `AutoencoderKL` config (dict-like or attribute access)."""
        get = config.get if hasattr(config, "get") else lambda key, default=None: getattr(config, key, default)
        return cls(latent_channels=get("latent_channels"), out_channels=get("out_channels", 3),
                   block_out_channels=tuple(get("block_out_channels")), layers_per_block=get("layers_per_block"),
                   norm_num_groups=get("norm_num_groups", 32), act_fn=get("act_fn", "silu"))


DECODER_ARCHS: dict[str, DecoderArch] = {
    "sd15": DecoderArch(latent_channels=4),
    "flux": DecoderArch(latent_channels=16),  # the released asuka_decoder.ckpt (ch 128, ch_mult 1,2,4,4)
    "tiny": DecoderArch(latent_channels=4, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8),
}


def _common_kwargs(arch: DecoderArch) -> dict[str, Any]:
    return dict(in_channels=arch.latent_channels, out_channels=arch.out_channels, up_block_types=arch.up_block_types,
                block_out_channels=arch.block_out_channels, layers_per_block=arch.layers_per_block,
                norm_num_groups=arch.norm_num_groups, act_fn=arch.act_fn)


class AsukaMaskConditionDecoder(MaskConditionDecoder):
    """Mask-conditioned decoder of the ASUKA release. Same parameters as diffusers' `MaskConditionDecoder`
    except `condition_encoder.layers.0`, which has `out_channels + 1` input channels (image and mask)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        block_out_channels = kwargs.get("block_out_channels", (64,))
        out_channels = kwargs.get("out_channels", 3)
        # change 1: the mask is a fourth input channel of the condition encoder
        self.condition_encoder = MaskConditionEncoder(
            in_ch=out_channels + 1, out_ch=block_out_channels[0], res_ch=block_out_channels[-1]
        )

    @staticmethod
    def level_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Change 2: mask (B, 1, H, W) -> (B, 1, *size) in {0, 1}, 1 where any hole pixel falls (area > 0)."""
        return (F.interpolate(mask.float(), size=size, mode="area") > 0).to(mask.dtype)

    def forward(self, z: torch.Tensor, image: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                latent_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, C, h, w), image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) 1 = hole -> (B, 3, H, W).

        Without image or mask it is a plain decoder, as diffusers' class.
        """
        checkpoint = torch.is_grad_enabled() and self.gradient_checkpointing

        def run(module: nn.Module, *args: Any) -> torch.Tensor:
            return self._gradient_checkpointing_func(module, *args) if checkpoint else module(*args)

        sample = self.conv_in(z)
        upscale_dtype = next(iter(self.up_blocks.parameters())).dtype
        sample = run(self.mid_block, sample, latent_embeds).to(upscale_dtype)
        conditioned = image is not None and mask is not None
        if conditioned:
            mask = mask.to(sample.dtype)
            features = run(self.condition_encoder, torch.cat([(1 - mask) * image.to(sample.dtype), mask], dim=1))
        for up_block in self.up_blocks:
            if conditioned:
                level = self.level_mask(mask, tuple(sample.shape[-2:]))
                sample = sample * level + self._feature(features, sample) * (1 - level)
            sample = run(up_block, sample, latent_embeds)
        if conditioned:
            sample = sample * mask + self._feature(features, sample) * (1 - mask)
        sample = self.conv_norm_out(sample) if latent_embeds is None else self.conv_norm_out(sample, latent_embeds)
        return self.conv_out(self.conv_act(sample))

    @staticmethod
    def _feature(features: dict[str, torch.Tensor], sample: torch.Tensor) -> torch.Tensor:
        """diffusers' condition encoder keys its outputs by shape; a missing shape means a mismatched config."""
        key = str(tuple(sample.shape))
        if key not in features:
            raise ValueError(f"condition encoder has no feature of shape {key}; it has {sorted(features)} "
                             "(image size must be the latent size times the decoder's upsampling factor)")
        return features[key]


@dataclass(frozen=True)
class DecoderVariant:
    """A Table 2(d) decoder: how to build it and whether it reads the image and mask."""

    build: Callable[..., nn.Module]
    conditioned: bool
    description: str


DECODER_VARIANTS: dict[str, DecoderVariant] = {
    "vae": DecoderVariant(Decoder, False, "plain KL-VAE decoder (SD)"),
    "cond": DecoderVariant(MaskConditionDecoder, True, "asymmetric decoder (Zhu et al.), masked image input"),
    "asuka": DecoderVariant(AsukaMaskConditionDecoder, True, "ASUKA: masked image + mask input, area>0 levels"),
}


def build_decoder(variant: str = "asuka", arch: DecoderArch | str = "sd15", **overrides: Any) -> nn.Module:
    """A decoder of the named variant with the given sizes (a `DECODER_ARCHS` key or a `DecoderArch`)."""
    if variant not in DECODER_VARIANTS:
        raise ValueError(f"unknown decoder variant {variant!r}; known: {sorted(DECODER_VARIANTS)}")
    if isinstance(arch, str):
        if arch not in DECODER_ARCHS:
            raise ValueError(f"unknown decoder arch {arch!r}; known: {sorted(DECODER_ARCHS)}")
        arch = DECODER_ARCHS[arch]
    arch = replace(arch, **overrides)
    return DECODER_VARIANTS[variant].build(**_common_kwargs(arch))


def init_from_vae_decoder(decoder: nn.Module, vae_decoder_state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Initialise a decoder of any variant from a VAE decoder's weights, for training.

    vae_decoder_state: `AutoencoderKL.decoder.state_dict()` (SD's decoder: keys conv_in, mid_block, up_blocks,
    conv_norm_out, conv_out) or `AsymmetricAutoencoderKL.decoder.state_dict()`. The shared trunk is copied;
    the condition encoder keeps its initialisation unless the source has one. A 3-channel first condition conv
    (diffusers' asymmetric decoder, the paper's starting point) is copied into our 4-channel conv with a zero
    weight for the mask channel, so the initial function equals the source's. Returns the keys left at their
    initialisation ("missing") and the source keys not used ("unexpected").
    """
    state = dict(vae_decoder_state)
    own = decoder.state_dict()
    first = "condition_encoder.layers.0.weight"
    if first in state and first in own and state[first].shape[1] + 1 == own[first].shape[1]:
        widened = torch.zeros_like(own[first])
        widened[:, : state[first].shape[1]] = state[first]
        state[first] = widened
    for key, value in list(state.items()):
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"init_from_vae_decoder: {key} has shape {tuple(value.shape)} in the source and "
                             f"{tuple(own[key].shape)} in the decoder (different architecture)")
    result = decoder.load_state_dict(state, strict=False)
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}


class ConditionedLatentDecoder(nn.Module):
    """A decoder variant plus the latent bookkeeping of the VAE it replaces.

    decode(latents, image, mask): latents (B, C, h, w) as the diffusion model produces them (scaled);
    z = latents / scaling_factor + shift_factor, then `post_quant_conv` if any, then the decoder.
    image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) in {0, 1}, 1 = hole (ignored by the "vae" variant).
    Returns (B, 3, H, W) roughly in [-1, 1] (as `vae.decode`).
    """

    def __init__(self, decoder: nn.Module, variant: str, scaling_factor: float, shift_factor: float = 0.0,
                 post_quant_conv: nn.Module | None = None) -> None:
        super().__init__()
        if variant not in DECODER_VARIANTS:
            raise ValueError(f"unknown decoder variant {variant!r}; known: {sorted(DECODER_VARIANTS)}")
        self.decoder = decoder
        self.variant = variant
        self.scaling_factor = float(scaling_factor)
        self.shift_factor = float(shift_factor)
        self.post_quant_conv = post_quant_conv

    def decode(self, latents: torch.Tensor, image: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        z = latents / self.scaling_factor + self.shift_factor
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        if not DECODER_VARIANTS[self.variant].conditioned:
            return self.decoder(z)
        if image is None or mask is None:
            raise ValueError(f"decoder variant {self.variant!r} needs the image and the mask")
        if image.shape[0] != z.shape[0] or mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} do not match latents "
                             f"{tuple(z.shape)}")
        return self.decoder(z, image.to(z.dtype), mask.to(z.dtype))

    forward = decode

    @classmethod
    def from_vae(cls, vae: nn.Module, variant: str = "asuka", init_from_vae: bool = True) -> "ConditionedLatentDecoder":
        """Build the variant with the VAE's sizes, scaling, shift and post_quant_conv (shared, not copied);
        `init_from_vae`: start the decoder from the VAE's decoder weights (`init_from_vae_decoder`)."""
        config = vae.config
        decoder = build_decoder(variant, DecoderArch.from_vae_config(config))
        if init_from_vae:
            init_from_vae_decoder(decoder, vae.decoder.state_dict())
        decoder.to(device=next(vae.parameters()).device, dtype=next(vae.parameters()).dtype)
        shift = getattr(config, "shift_factor", None) if not hasattr(config, "get") else config.get("shift_factor")
        return cls(decoder, variant, scaling_factor=config.scaling_factor, shift_factor=shift or 0.0,
                   post_quant_conv=getattr(vae, "post_quant_conv", None))


def to_asymmetric_vae(vae: nn.Module, decoder: nn.Module) -> nn.Module:
    """An `AsymmetricAutoencoderKL` with the encoder and quant convs of `vae` (an SD `AutoencoderKL`) and the
    given conditioned decoder, so `StableDiffusionInpaintPipeline` passes the image and mask to it when decoding
    (it does so for `AsymmetricAutoencoderKL` only). The VAE must have quant_conv and post_quant_conv (SD does)."""
    from diffusers import AsymmetricAutoencoderKL

    if not isinstance(decoder, MaskConditionDecoder):
        raise ValueError(f"to_asymmetric_vae needs a mask-conditioned decoder, got {type(decoder).__name__}")
    config = vae.config
    if not (config.get("use_quant_conv", True) and config.get("use_post_quant_conv", True)):
        raise ValueError("to_asymmetric_vae needs a VAE with quant_conv and post_quant_conv (SD's VAE has both)")
    tiny_up = (config.block_out_channels[0],)  # throwaway decoder, replaced below
    asym = AsymmetricAutoencoderKL(
        in_channels=config.in_channels, out_channels=config.out_channels,
        down_block_types=tuple(config.down_block_types), down_block_out_channels=tuple(config.block_out_channels),
        layers_per_down_block=config.layers_per_block, up_block_types=("UpDecoderBlock2D",),
        up_block_out_channels=tiny_up, layers_per_up_block=1, act_fn=config.act_fn,
        latent_channels=config.latent_channels, norm_num_groups=config.norm_num_groups,
        sample_size=config.sample_size, scaling_factor=config.scaling_factor,
    )
    asym.encoder.load_state_dict(vae.encoder.state_dict())
    asym.quant_conv.load_state_dict(vae.quant_conv.state_dict())
    asym.post_quant_conv.load_state_dict(vae.post_quant_conv.state_dict())
    asym.decoder = decoder
    asym.register_to_config(block_out_channels=tuple(config.block_out_channels),
                            up_block_out_channels=tuple(config.block_out_channels),
                            layers_per_up_block=config.layers_per_block)
    param = next(vae.parameters())
    return asym.to(device=param.device, dtype=param.dtype)
