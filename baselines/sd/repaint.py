"""SD-RePaint: RePaint (Lugmayr et al., CVPR 2022) in the latent space of Stable Diffusion 1.5.

Our own sampling loop around diffusers' `RePaintScheduler` (diffusers ships the loop only for pixel-space
UNets, and the SD version only as an unmaintained community pipeline). Per step, the scheduler denoises the
whole latent (DDIM-style, `eta`), re-noises the known latents to the same time, and blends the two with the
latent mask; every `jump_length` steps it jumps back in time (`undo_step`) and resamples, `jump_n_sample - 1`
extra times. jump_n_sample=1 (no resampling) is plain latent blending.

Conventions:
- in: images float32 (B, 3, H, W) RGB in [0, 1]; masks float32 (B, 1, H, W), 1 = hole; H, W multiples of 8.
- the scheduler's mask is 1 = KNOWN: `known = 1 - maxpool(mask)` at latent resolution. Max pooling marks a
  latent cell as unknown if any pixel under it is a hole, so no hole pixel is ever forced to the known latents.
- the known latents are the VAE mean of the *masked* image (holes grey), never of the full image: the VAE
  encoder's receptive field would otherwise carry ground-truth hole pixels into known cells next to the hole.
- out: float32 (B, 3, H, W) in [0, 1]; the known pixels are pasted back in pixel space (the latent mask leaks at
  hole edges), which is the same as the harness's own compositing.

Noise comes from one CPU `torch.Generator` per sample (initial noise and every scheduler draw), so a sample's
output does not depend on its batch-mates. Latents and scheduler arithmetic stay in float32; only the UNet and
the VAE run in the model dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from baselines.base import Inpainter, ResolutionPolicy
from baselines.sd.components import (
    DEFAULT_BASE_MODEL,
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    as_prompt_batch,
    check_batch,
    dtype_name,
    encode_text,
    generators,
    load_base_pipeline,
    resolve_dtype,
)

log = logging.getLogger(__name__)

# RePaint paper defaults: jump length j = 10, resampling r = 10.
DEFAULT_JUMP_LENGTH = 10
DEFAULT_JUMP_N_SAMPLE = 10


def repaint_scheduler(config: Any, eta: float = 0.0) -> Any:
    """A `RePaintScheduler` with the noise schedule of `config` (any DDPM-family scheduler config) and
    clip_sample=False (latents are not confined to [-1, 1])."""
    from diffusers import RePaintScheduler

    trained = config.get("trained_betas")
    return RePaintScheduler(
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        beta_start=config.get("beta_start", 0.00085),
        beta_end=config.get("beta_end", 0.012),
        beta_schedule=config.get("beta_schedule", "scaled_linear"),
        trained_betas=None if trained is None else np.asarray(trained, dtype=np.float32),
        eta=float(eta),
        clip_sample=False,
    )


def latent_known_mask(masks: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 1, H, W) masks, 1 = hole -> (B, 1, H/f, W/f) float, 1 = KNOWN (no hole pixel in the cell)."""
    return 1.0 - F.max_pool2d(masks, kernel_size=factor, stride=factor)


def repaint_latents(
    unet: Any,
    scheduler: Any,
    known_latents: torch.Tensor,
    known_mask: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None,
    guidance: float,
    generator: Sequence[torch.Generator],
    steps: int,
    jump_length: int,
    jump_n_sample: int,
) -> torch.Tensor:
    """RePaint sampling in latent space.

    known_latents: float32 (B, C, h, w) scaled latents of the known content; known_mask: (B, 1, h, w),
    1 = known; prompt_embeds / negative_prompt_embeds: (B, L, D) in the UNet dtype (negative only used when
    guidance > 1); generator: one per sample. Returns float32 (B, C, h, w) latents.
    """
    device, dtype = known_latents.device, unet.dtype
    scheduler.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample, device=device)
    from diffusers.utils.torch_utils import randn_tensor

    sample = randn_tensor(known_latents.shape, generator=list(generator), device=device, dtype=torch.float32)
    sample = sample * scheduler.init_noise_sigma
    use_cfg = guidance > 1.0
    context = torch.cat([negative_prompt_embeds, prompt_embeds]) if use_cfg else prompt_embeds
    timesteps = [int(t) for t in scheduler.timesteps]
    t_last = timesteps[0] + 1
    for t in timesteps:
        if t < t_last:
            model_input = torch.cat([sample, sample]) if use_cfg else sample
            eps = unet(model_input.to(dtype), t, encoder_hidden_states=context, return_dict=False)[0].float()
            if use_cfg:
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            sample = scheduler.step(eps, t, sample, known_latents, known_mask, generator=list(generator)).prev_sample
        else:
            sample = scheduler.undo_step(sample, t_last, generator=list(generator))
        t_last = t
    return sample


class SDRepaintInpainter(Inpainter):
    """RePaint with the SD 1.5 text-to-image model (4-channel UNet) and latent blending.

    Options: model (hub id or local folder, default stable-diffusion-v1-5/stable-diffusion-v1-5), steps
    (default 50), jump_length (10), jump_n_sample (10; 1 = no resampling), eta (0.0 = DDIM), prompt (""),
    guidance (7.5; with prompt "" guidance is the identity and runs as 1.0, see `effective_guidance`), dtype.
    """

    name: ClassVar[str] = "sd-repaint"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=8)

    def __init__(
        self,
        device: str | torch.device = "cpu",
        model: str = DEFAULT_BASE_MODEL,
        steps: int = DEFAULT_STEPS,
        jump_length: int = DEFAULT_JUMP_LENGTH,
        jump_n_sample: int = DEFAULT_JUMP_N_SAMPLE,
        eta: float = 0.0,
        prompt: str = "",
        guidance: float = DEFAULT_GUIDANCE,
        dtype: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(device, model=model, **options)
        torch_dtype = resolve_dtype(self.device, dtype)
        pipe = load_base_pipeline(model, self.device, torch_dtype, bool(self.options.get("allow_download")))
        positive = encode_text(pipe, prompt, self.device)
        negative = positive if prompt == "" else encode_text(pipe, "", self.device)
        self._setup(pipe.unet, pipe.vae, pipe.scheduler.config, positive, negative, steps, jump_length,
                    jump_n_sample, eta, prompt, guidance)

    @classmethod
    def from_components(
        cls,
        unet: Any,
        vae: Any,
        scheduler_config: Any,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        steps: int = 2,
        jump_length: int = DEFAULT_JUMP_LENGTH,
        jump_n_sample: int = DEFAULT_JUMP_N_SAMPLE,
        eta: float = 0.0,
        guidance: float = 1.0,
        **options: Any,
    ) -> "SDRepaintInpainter":
        """Build from modules (tests pass tiny random ones); prompt_embeds (1, L, D) replace the text encoder."""
        self = cls.__new__(cls)
        Inpainter.__init__(self, device, model="<components>", **options)
        self._setup(unet.to(self.device), vae.to(self.device), scheduler_config, prompt_embeds,
                    negative_prompt_embeds, steps, jump_length, jump_n_sample, eta, "<embeddings>", guidance)
        return self

    def _setup(self, unet: Any, vae: Any, scheduler_config: Any, positive: torch.Tensor,
               negative: torch.Tensor | None, steps: int, jump_length: int, jump_n_sample: int, eta: float,
               prompt: str, guidance: float) -> None:
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"sd-repaint needs a text-to-image UNet ({vae.config.latent_channels} input channels), got "
                f"in_channels={unet.config.in_channels}; use e.g. {DEFAULT_BASE_MODEL}, not an inpainting model"
            )
        if int(steps) < 1 or int(jump_length) < 1 or int(jump_n_sample) < 1:
            raise ValueError(f"sd-repaint: steps, jump_length, jump_n_sample must be >= 1, got "
                             f"{steps}, {jump_length}, {jump_n_sample}")
        self.unet, self.vae = unet, vae
        self.scheduler = repaint_scheduler(scheduler_config, eta)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.prompt_embeds = as_prompt_batch(positive, "sd-repaint prompt").to(self.device, unet.dtype)
        guidance = float(guidance)
        self.options["guidance"] = guidance
        self.negative_prompt_embeds = None
        if guidance > 1.0:
            if negative is None:
                raise ValueError(f"sd-repaint: guidance {guidance} > 1 needs negative prompt embeddings")
            negative = as_prompt_batch(negative, "sd-repaint negative prompt").to(self.device, unet.dtype)
            if torch.equal(negative, self.prompt_embeds):
                guidance = 1.0  # CFG with equal embeddings is the identity
            else:
                self.negative_prompt_embeds = negative
        self.effective_guidance = guidance
        self.options.update(
            steps=int(steps), jump_length=int(jump_length), jump_n_sample=int(jump_n_sample), eta=float(eta),
            prompt=prompt, dtype=dtype_name(unet.dtype),
        )

    @torch.no_grad()
    def encode(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Scaled float32 latents (B, C, H/8, W/8) of the masked image (holes grey), the VAE posterior mean."""
        pixels = (images * 2.0 - 1.0) * (masks < 0.5)
        posterior = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
        return posterior.mean.float() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> float32 images (B, 3, H, W) in [0, 1]."""
        pixels = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.vae.dtype), return_dict=False)[0]
        return ((pixels.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """images float32 (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole -> float32 (B, 3, H, W) in [0, 1]."""
        check_batch(self.name, images, masks, seeds, self.policy.pad_multiple)
        batch = images.shape[0]
        images = images.to(self.device, torch.float32)
        masks = (masks.to(self.device, torch.float32) > 0.5).float()
        known_latents = self.encode(images, masks)
        known_mask = latent_known_mask(masks, self.vae_scale_factor)
        negative = None if self.negative_prompt_embeds is None else self.negative_prompt_embeds.expand(batch, -1, -1)
        latents = repaint_latents(
            self.unet, self.scheduler, known_latents, known_mask, self.prompt_embeds.expand(batch, -1, -1), negative,
            self.effective_guidance, generators(seeds), self.options["steps"], self.options["jump_length"],
            self.options["jump_n_sample"],
        )
        generated = self.decode(latents)
        return images * (1.0 - masks) + generated * masks  # paste-back in pixel space

    def config(self) -> dict[str, Any]:
        config = super().config()
        config.update(
            effective_guidance=self.effective_guidance,
            scheduler_class=type(self.scheduler).__name__,
            clip_sample=False,
            unet_evaluations=self.unet_evaluations(),
        )
        return config

    def unet_evaluations(self) -> int:
        """How many UNet calls one batch takes (RePaint's cost grows with jump_n_sample)."""
        self.scheduler.set_timesteps(self.options["steps"], self.options["jump_length"], self.options["jump_n_sample"])
        timesteps = [int(t) for t in self.scheduler.timesteps]
        last, count = timesteps[0] + 1, 0
        for t in timesteps:
            count += t < last
            last = t
        return count
