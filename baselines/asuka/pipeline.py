"""`AsukaInpaintPipeline`: ASUKA (Wang et al., 2024) on diffusers' `StableDiffusionInpaintPipeline`.

Data flow for a batch (images float32 (B, 3, H, W) RGB in [0, 1], masks (B, 1, H, W), 1 = hole):

1. MAE prior: images and masks resized to the MAE size (256; `prepare_mae_inputs`, as the release), prior
   (B, 256, 512) = decoder hidden state after 6 blocks (`baselines.asuka.mae.AsukaMAE.prior`);
2. alignment: (B, 256, 512) -> (B, 256, D) (D = 768 for SD 1.5), optionally interpolated toward the empty-prompt
   embedding, `cond = null + w (cond - null)` (the FLUX release uses w = 0.5; the paper's SD version w = 1);
3. the SD inpainting pipeline denoises with `prompt_embeds = cond` (no text encoder), guidance 1.0 by default
   (the paper did not use classifier-free guidance for ASUKA-SD), `output_type="latent"`;
4. the inpainting-specialised decoder decodes the latents given the masked image and the mask
   (`baselines.asuka.decoder.ConditionedLatentDecoder`); without one, the pipeline's VAE decodes.

Returns float32 (B, 3, H, W) in [0, 1], the raw output (no paste-back: the harness composites).
Each stage is per sample (no batch statistics), and noise comes from one generator per sample, so a sample's
output does not depend on its batch-mates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from baselines.asuka.alignment import blend_with_null
from baselines.asuka.mae import prepare_mae_inputs

log = logging.getLogger(__name__)


def null_from_text_embedding(embeds: torch.Tensor, length: int) -> torch.Tensor:
    """Stretch a (1, L, D) empty-prompt text embedding to (1, length, D) tokens, for interpolation with the
    (B, length, D) ASUKA condition.

    CLIP's empty prompt is 77 tokens (start, end, padding); beyond 77 the last (padding) token is repeated,
    the way T5 pads its empty prompt to 256 tokens in the FLUX release's `txt_256.pt`. Shorter: truncated.
    This is our choice for SD 1.5 (the SD version of ASUKA was never released).
    """
    if embeds.ndim != 3 or embeds.shape[0] != 1:
        raise ValueError(f"text embedding must be (1, L, D), got {tuple(embeds.shape)}")
    if embeds.shape[1] >= length:
        return embeds[:, :length]
    tail = embeds[:, -1:].expand(1, length - embeds.shape[1], embeds.shape[2])
    return torch.cat([embeds, tail], dim=1)


class AsukaInpaintPipeline:
    """MAE prior -> alignment -> SD inpainting UNet -> inpainting-specialised decoder.

    sd_pipeline: a `StableDiffusionInpaintPipeline` (9-channel UNet; text encoder not needed).
    mae: `AsukaMAE`; alignment: `AsukaAlignment` with dim = the UNet's cross_attention_dim.
    decoder: `ConditionedLatentDecoder` (or None: decode with `sd_pipeline.vae`).
    null_embeds: empty-prompt embedding broadcastable to the condition (1, N, D) or (1, 1, D); needed for
    condition_weight != 1 and for guidance > 1 (then it is also the negative prompt embedding).
    """

    def __init__(self, sd_pipeline: Any, mae: torch.nn.Module, alignment: torch.nn.Module,
                 decoder: torch.nn.Module | None = None, null_embeds: torch.Tensor | None = None) -> None:
        cross_dim = sd_pipeline.unet.config.cross_attention_dim
        if getattr(alignment, "dim", cross_dim) != cross_dim:
            raise ValueError(f"alignment width {alignment.dim} != the UNet's cross_attention_dim {cross_dim}")
        self.sd_pipeline = sd_pipeline
        self.mae = mae.eval().requires_grad_(False)
        self.alignment = alignment.eval().requires_grad_(False)
        self.decoder = None if decoder is None else decoder.eval().requires_grad_(False)
        self.null_embeds = null_embeds
        sd_pipeline.set_progress_bar_config(disable=True)

    @property
    def device(self) -> torch.device:
        return self.sd_pipeline.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.sd_pipeline.unet.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "AsukaInpaintPipeline":
        """Move every part (and cast it, when dtype is given)."""
        self.sd_pipeline.to(device=device, dtype=dtype)
        for module in (self.mae, self.alignment, self.decoder):
            if module is not None:
                module.to(device=device, dtype=dtype)
        if self.null_embeds is not None:
            self.null_embeds = self.null_embeds.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def condition(self, images: torch.Tensor, masks: torch.Tensor, condition_weight: float = 1.0) -> torch.Tensor:
        """ASUKA's condition tokens: images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole ->
        (B, N, D) in the UNet dtype (N = 256 for the released MAE)."""
        mae_param = next(self.mae.parameters())
        mae_images, mae_masks = prepare_mae_inputs(images, masks, size=self.mae.config.img_size)
        prior = self.mae.prior(mae_images.to(mae_param.device, mae_param.dtype),
                               mae_masks.to(mae_param.device, mae_param.dtype))
        align_param = next(self.alignment.parameters())
        cond = self.alignment(prior.to(align_param.dtype))
        if condition_weight != 1.0:
            cond = blend_with_null(cond, self._null(), condition_weight)
        return cond.to(self.device, self.dtype)

    def _null(self) -> torch.Tensor:
        if self.null_embeds is None:
            raise ValueError("ASUKA: condition_weight != 1 and guidance > 1 need null_embeds (empty-prompt embedding)")
        return self.null_embeds.to(self.device, self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, 4, H/8, W/8) -> float32 images (B, 3, H, W) in [0, 1], with the specialised
        decoder given the image in [-1, 1] (it masks the holes itself) and the binary mask (1 = hole)."""
        if self.decoder is None:
            vae = self.sd_pipeline.vae
            pixels = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
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
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        condition_weight: float = 1.0,
    ) -> torch.Tensor:
        """images float32 (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole, one generator per sample ->
        float32 (B, 3, H, W) in [0, 1] (raw, not composited). H, W multiples of 8."""
        batch, _, height, width = images.shape
        if len(generator) != batch:
            raise ValueError(f"ASUKA: {len(generator)} generators for a batch of {batch}")
        images = images.to(self.device, torch.float32)
        masks = masks.to(self.device, torch.float32)
        cond = self.condition(images, masks, condition_weight)
        extra: dict[str, Any] = {}
        if guidance_scale > 1.0:
            extra["negative_prompt_embeds"] = self._null().expand_as(cond)
        latents = self.sd_pipeline(
            prompt_embeds=cond,
            image=images,
            mask_image=masks,
            height=height,
            width=width,
            num_inference_steps=int(num_inference_steps),
            guidance_scale=float(guidance_scale),
            generator=list(generator),
            output_type="latent",
            **extra,
        ).images
        return self.decode(latents, images, masks)
