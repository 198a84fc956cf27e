"""`asuka-flux`: the released ASUKA-FLUX.1-Fill (Hugging Face `yikaiwang/ASUKA-FLUX.1-Fill`) on diffusers'
`FluxFillPipeline` (base model `black-forest-labs/FLUX.1-Fill-dev`).

Data flow (facts from the release, github Yikai-Wang/asuka-misato `asuka-flux/`; the code is ours):
1. MAE prior (B, 256, 512) from the image and mask resized to 256 (`baselines.asuka.mae`);
2. two alignment modules: D = 4096 gives 256 tokens that replace T5's `prompt_embeds` (B, 256, 4096); D = 768,
   mean-pooled over tokens, replaces CLIP's `pooled_prompt_embeds` (B, 768); text ids are zeros (diffusers does
   that for any prompt_embeds);
3. conditioning weight w = 0.5 toward the empty-prompt embeddings (`vec.pt` (1, 768), `txt_256.pt`
   (1, 256, 4096)): `cond = null + w (cond - null)`;
4. FLUX.1-Fill denoises (50 steps, distilled guidance 30, shifted schedule as the release's `get_schedule`);
5. the 16-channel conditioned decoder decodes `z / scaling_factor + shift_factor` (0.3611, 0.1159 from the
   pipeline VAE's config) given the masked image and the mask.

In: images float32 (B, 3, H, W) RGB in [0, 1], masks float32 (B, 1, H, W), 1 = hole, H, W multiples of 16 (8 for
the VAE times 2 for FLUX's patch packing). Out: float32 (B, 3, H, W) in [0, 1], raw (the harness composites;
the release also pastes back only at evaluation). One generator per sample (the release uses seed 42 for all).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from baselines.asuka.inpainter import AsukaInpainterBase
from baselines.base import ResolutionPolicy
from baselines.sd.components import dtype_name, resolve_dtype

log = logging.getLogger(__name__)

DEFAULT_FLUX_MODEL = "black-forest-labs/FLUX.1-Fill-dev"
FLUX_STEPS = 50
FLUX_GUIDANCE = 30.0
FLUX_CONDITION_WEIGHT = 0.5


class AsukaFluxPipeline:
    """MAE prior -> two alignment modules -> FLUX.1-Fill -> conditioned decoder.

    flux_pipeline: a `FluxFillPipeline` (text encoders not needed); alignment_clip: `AsukaAlignment` with dim =
    the transformer's pooled_projection_dim (768); alignment_t5: dim = joint_attention_dim (4096);
    decoder: `ConditionedLatentDecoder` with the FLUX VAE's scaling and shift (None: decode with the VAE);
    null_vec (1, 768) and null_txt (1, 256, 4096): the empty-prompt embeddings (needed for weight != 1).
    """

    def __init__(self, flux_pipeline: Any, mae: torch.nn.Module, alignment_clip: torch.nn.Module,
                 alignment_t5: torch.nn.Module, decoder: torch.nn.Module | None = None,
                 null_vec: torch.Tensor | None = None, null_txt: torch.Tensor | None = None) -> None:
        config = flux_pipeline.transformer.config
        for module, width, name in ((alignment_clip, config.pooled_projection_dim, "pooled_projection_dim"),
                                    (alignment_t5, config.joint_attention_dim, "joint_attention_dim")):
            if getattr(module, "dim", width) != width:
                raise ValueError(f"alignment width {module.dim} != the transformer's {name} {width}")
        self.flux_pipeline = flux_pipeline
        self.mae = mae.eval().requires_grad_(False)
        self.alignment_clip = alignment_clip.eval().requires_grad_(False)
        self.alignment_t5 = alignment_t5.eval().requires_grad_(False)
        self.decoder = None if decoder is None else decoder.eval().requires_grad_(False)
        self.null_vec = null_vec
        self.null_txt = null_txt
        flux_pipeline.set_progress_bar_config(disable=True)

    @property
    def device(self) -> torch.device:
        return self.flux_pipeline.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.flux_pipeline.transformer.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "AsukaFluxPipeline":
        self.flux_pipeline.to(device=device, dtype=dtype)
        for module in (self.mae, self.alignment_clip, self.alignment_t5, self.decoder):
            if module is not None:
                module.to(device=device, dtype=dtype)
        for name in ("null_vec", "null_txt"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device=device, dtype=dtype))
        return self

    @torch.no_grad()
    def condition(self, images: torch.Tensor, masks: torch.Tensor,
                  condition_weight: float = FLUX_CONDITION_WEIGHT) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole -> (tokens (B, 256, 4096), pooled (B, 768))
        in the transformer dtype."""
        from baselines.asuka.alignment import blend_with_null
        from baselines.asuka.mae import prepare_mae_inputs

        param = next(self.mae.parameters())
        mae_images, mae_masks = prepare_mae_inputs(images, masks, size=self.mae.config.img_size)
        prior = self.mae.prior(mae_images.to(param.device, param.dtype), mae_masks.to(param.device, param.dtype))
        tokens = self.alignment_t5(prior.to(next(self.alignment_t5.parameters()).dtype))
        pooled = self.alignment_clip.pooled(prior.to(next(self.alignment_clip.parameters()).dtype))
        if condition_weight != 1.0:
            if self.null_vec is None or self.null_txt is None:
                raise ValueError("ASUKA-FLUX: condition_weight != 1 needs null_vec and null_txt")
            tokens = blend_with_null(tokens, self.null_txt.to(tokens.device), condition_weight)
            pooled = blend_with_null(pooled, self.null_vec.to(pooled.device), condition_weight)
        return tokens.to(self.device, self.dtype), pooled.to(self.device, self.dtype)

    @torch.no_grad()
    def decode(self, packed: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Packed FLUX latents (B, h*w/4, 4C) -> float32 images (B, 3, H, W) in [0, 1]."""
        height, width = images.shape[-2:]
        pipe = self.flux_pipeline
        latents = pipe._unpack_latents(packed, height, width, pipe.vae_scale_factor)
        if self.decoder is None:
            vae = pipe.vae
            z = latents / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
            pixels = vae.decode(z, return_dict=False)[0]
        else:
            param = next(self.decoder.parameters())
            holes = (masks >= 0.5).to(param.device, param.dtype)
            pixels = self.decoder.decode(latents.to(param.dtype), images.to(param.device, param.dtype) * 2 - 1, holes)
        return ((pixels.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generator: Sequence[torch.Generator],
        num_inference_steps: int = FLUX_STEPS,
        guidance_scale: float = FLUX_GUIDANCE,
        condition_weight: float = FLUX_CONDITION_WEIGHT,
    ) -> torch.Tensor:
        """images float32 (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole, one generator per sample ->
        float32 (B, 3, H, W) in [0, 1] (raw)."""
        batch, _, height, width = images.shape
        if len(generator) != batch:
            raise ValueError(f"ASUKA-FLUX: {len(generator)} generators for a batch of {batch}")
        images = images.to(self.device, torch.float32)
        masks = masks.to(self.device, torch.float32)
        tokens, pooled = self.condition(images, masks, condition_weight)
        packed = self.flux_pipeline(
            prompt_embeds=tokens,
            pooled_prompt_embeds=pooled,
            image=images,
            mask_image=masks,
            height=height,
            width=width,
            num_inference_steps=int(num_inference_steps),
            guidance_scale=float(guidance_scale),
            generator=list(generator),
            output_type="latent",
        ).images
        return self.decode(packed, images, masks)


def load_null(path: Any, ndim: int) -> torch.Tensor:
    """An empty-prompt embedding file (`vec.pt` -> (1, 768), `txt_256.pt` -> (1, 256, 4096)), weights_only."""
    from misato.checkpoints import load_checkpoint

    value = load_checkpoint(path)
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{path}: expected a tensor, got {type(value).__name__}")
    while value.ndim < ndim:
        value = value[None]
    if value.ndim != ndim or value.shape[0] != 1:
        raise ValueError(f"{path}: expected a ({'1, ' + ', '.join(['N'] * (ndim - 1))}) tensor, got {tuple(value.shape)}")
    return value.float()


class AsukaFluxInpainter(AsukaInpainterBase):
    """The released ASUKA-FLUX.1-Fill.

    Options: model (FLUX.1-Fill-dev id or local folder), steps (50), guidance (30.0), condition_weight (0.5),
    dtype ("bf16" default on GPU), weight_paths ({key: path} for the `weights` keys), allow_download,
    mae_config (MAE preset, default the released size). Alignment widths come from the transformer config
    (pooled_projection_dim 768, joint_attention_dim 4096), the decoder's sizes from the VAE config (FLUX: 16
    latent channels, 128-256-512-512), so the same code loads tiny test models.
    """

    name: ClassVar[str] = "asuka-flux"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=16)  # VAE /8, then 2x2 patch packing
    weights: ClassVar[tuple[str, ...]] = ("asuka-mae", "asuka-alignment-clip", "asuka-alignment-t5",
                                          "asuka-decoder-flux", "asuka-flux-null-vec", "asuka-flux-null-txt")

    def __init__(
        self,
        device: str | torch.device = "cpu",
        model: str = DEFAULT_FLUX_MODEL,
        steps: int = FLUX_STEPS,
        guidance: float = FLUX_GUIDANCE,
        condition_weight: float = FLUX_CONDITION_WEIGHT,
        mae_config: str = "mae_vit_base_patch16",
        dtype: str | None = None,
        **options: Any,
    ) -> None:
        from baselines.asuka.convert import load_released_decoder
        from baselines.asuka.decoder import ConditionedLatentDecoder, DecoderArch, build_decoder
        from baselines.asuka.inpainter import load_alignment_file
        from baselines.asuka.mae import AsukaMAE
        from baselines.sd.components import dtype_kwargs, load_pretrained

        super().__init__(device, model=model, steps=int(steps), guidance=float(guidance),
                         condition_weight=float(condition_weight), mae_config=mae_config, **options)
        torch_dtype = resolve_dtype(self.device, dtype, gpu_default="bf16")
        self.options["dtype"] = dtype_name(torch_dtype)
        # resolve every file first, so a missing one fails before the 12B model is loaded
        paths = {key: self.resolve_weight(key).path for key in self.weights}
        mae, self.mae_report = AsukaMAE.from_released(paths["asuka-mae"], mae_config)
        null_vec = load_null(paths["asuka-flux-null-vec"], 2)
        null_txt = load_null(paths["asuka-flux-null-txt"], 3)
        from diffusers import FluxFillPipeline

        flux = load_pretrained(FluxFillPipeline, model, "FLUX.1-Fill pipeline",
                               allow_download=bool(self.options.get("allow_download")), text_encoder=None,
                               text_encoder_2=None, tokenizer=None, tokenizer_2=None, **dtype_kwargs(torch_dtype))
        width = mae.config.decoder_embed_dim
        transformer = flux.transformer.config
        clip = load_alignment_file(paths["asuka-alignment-clip"], transformer.pooled_projection_dim, in_dim=width)
        t5 = load_alignment_file(paths["asuka-alignment-t5"], transformer.joint_attention_dim, in_dim=width)
        vae = flux.vae.config
        arch = DecoderArch.from_vae_config(vae)
        decoder = ConditionedLatentDecoder(
            load_released_decoder(paths["asuka-decoder-flux"], build_decoder("asuka", arch)),
            "asuka", scaling_factor=vae.scaling_factor, shift_factor=vae.shift_factor or 0.0,
            post_quant_conv=getattr(flux.vae, "post_quant_conv", None),
        )
        self.pipeline = AsukaFluxPipeline(flux, mae, clip, t5, decoder, null_vec, null_txt).to(self.device, torch_dtype)

    @classmethod
    def from_components(
        cls,
        pipeline: AsukaFluxPipeline,
        device: str | torch.device = "cpu",
        steps: int = 2,
        guidance: float = FLUX_GUIDANCE,
        condition_weight: float = FLUX_CONDITION_WEIGHT,
        **options: Any,
    ) -> "AsukaFluxInpainter":
        """Wrap an `AsukaFluxPipeline` (tests pass one of tiny random modules)."""
        self = cls.__new__(cls)
        self._wrap(pipeline, device, steps, guidance, condition_weight, options)
        return self

    def diffusers_pipeline(self) -> Any:
        return self.pipeline.flux_pipeline
