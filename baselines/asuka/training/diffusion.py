"""The frozen SD 1.5 inpainting model and its training objective, shared by the alignment and prompt stages.

Objective (the standard SD inpainting objective, as diffusers' inpainting training scripts): for images x in
[-1, 1] and masks M (1 = hole),
  z0 = s * (mu + sigma * e1) of VAE(x);  zm = s * (mu + sigma * e2) of VAE(x * (M < 0.5));  m = nearest(M, z0 size)
  t ~ U{0, ..., T-1};  eps ~ N(0, I);  z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
  loss = mean || eps - UNet([z_t; m; zm], t, cond) ||^2      (v-prediction models: target = v)
Every draw (e1, e2, eps, t) comes from the item's own generator, in that order, after the stage's own draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from baselines.sd.tiny import TINY as TINY_SD


def load_frozen_sd(sd_model: str, device: torch.device, dtype: torch.dtype, text_encoder: bool = False,
                   seed: int = 0, allow_download: bool = False) -> Any:
    """A `StableDiffusionInpaintPipeline` with every part frozen (requires_grad False, eval) on `device`.

    sd_model "tiny": random tiny modules (`baselines.sd.tiny`), built from `seed`.
    Else a hub id or diffusers folder (`baselines.sd.components.load_inpaint_pipeline`; a hub id is read from the
    Hugging Face cache only unless allow_download).
    """
    from baselines.sd.components import load_inpaint_pipeline
    from baselines.sd.tiny import tiny_inpaint_pipeline

    if sd_model == TINY_SD:  # seeded here (the training seed), unlike load_inpaint_pipeline's seed 0
        pipe = tiny_inpaint_pipeline(seed=seed, text_encoder=text_encoder).to(device)
    else:
        pipe = load_inpaint_pipeline(sd_model, device, torch.float32, text_encoder=text_encoder,
                                     allow_download=allow_download)
    if pipe.unet.config.in_channels != 9:
        raise ValueError(f"{sd_model}: the UNet has {pipe.unet.config.in_channels} input channels; an SD inpainting "
                         "UNet (9: latents, mask, masked-image latents) is needed")
    for module in (pipe.unet, pipe.vae, getattr(pipe, "text_encoder", None)):
        if module is not None:
            module.requires_grad_(False).eval().to(device)
            if dtype != torch.float32:
                module.to(dtype=dtype)
    return pipe


def noise_scheduler(pipe: Any) -> Any:
    """The training noise schedule: a `DDPMScheduler` with the pipeline's scheduler config (betas, T,
    prediction type), as diffusers' training scripts build it."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


@dataclass
class DiffusionDraws:
    """Per-item random draws of the objective (see the module docstring), float32 on CPU.

    latent_eps, masked_eps, noise: (B, C, h, w); timesteps: (B,) int64."""

    latent_eps: torch.Tensor
    masked_eps: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


def draw_diffusion(gens: list[torch.Generator], latent_shape: tuple[int, int, int],
                   num_train_timesteps: int) -> DiffusionDraws:
    """latent_shape (C, h, w); one generator per item, consumed in a fixed order."""
    latent_eps, masked_eps, noise, timesteps = [], [], [], []
    for g in gens:
        latent_eps.append(torch.randn(latent_shape, generator=g))
        masked_eps.append(torch.randn(latent_shape, generator=g))
        noise.append(torch.randn(latent_shape, generator=g))
        timesteps.append(torch.randint(0, num_train_timesteps, (), generator=g))
    return DiffusionDraws(torch.stack(latent_eps), torch.stack(masked_eps), torch.stack(noise), torch.stack(timesteps))


def weight_dtype(accelerator: Any) -> torch.dtype:
    """dtype of the frozen parts: the mixed-precision dtype (as diffusers' training scripts), else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(accelerator.mixed_precision), torch.float32)


@dataclass
class FrozenSD:
    """The frozen SD inpainting model a stage trains against: the pipeline, its training noise schedule, and the
    model reference recorded in runs (a hub id, an absolute local folder, or "tiny")."""

    pipe: Any
    scheduler: Any
    model: str

    @classmethod
    def load(cls, sd_model: str, device: torch.device, dtype: torch.dtype, text_encoder: bool = False,
             seed: int = 0, gradient_checkpointing: bool = False, allow_download: bool = False) -> "FrozenSD":
        pipe = load_frozen_sd(sd_model, device, dtype, text_encoder=text_encoder, seed=seed,
                              allow_download=allow_download)
        if gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
        return cls(pipe, noise_scheduler(pipe), sd_reference(sd_model))

    def record(self) -> dict[str, Any]:
        return {"sd_model": self.model}

    def objective(self, images: torch.Tensor, masks: torch.Tensor, cond: torch.Tensor,
                  gens: list[torch.Generator]) -> torch.Tensor:
        """`epsilon_loss` with the items' draws (`draw_diffusion`): images (B, 3, H, W) in [0, 1], masks
        (B, 1, H, W) 1 = hole, cond (B, N, D) on the training device."""
        draws = draw_diffusion(gens, latent_shape(self.pipe.vae, *images.shape[-2:]),
                               self.scheduler.config.num_train_timesteps)
        return epsilon_loss(self.pipe.unet, self.pipe.vae, self.scheduler, images.to(cond.device),
                            masks.to(cond.device), cond, draws)

    def saved_reference(self, out: Path, files: dict[str, str]) -> str:
        """The SD reference a trained folder names: the model itself, or (tiny random parts, which exist nowhere
        else) a copy saved into the run folder, added to `files`."""
        if self.model != TINY_SD:
            return self.model
        from baselines.asuka.trained import save_sd_components

        files["sd"] = save_sd_components(self.pipe, out)
        return files["sd"]


def sd_reference(sd_model: str) -> str:
    """How a run records its SD model: "tiny", a hub id, or an existing local folder as an absolute path."""
    return sd_model if sd_model == TINY_SD or not Path(sd_model).exists() else str(Path(sd_model).resolve())


def latent_shape(vae: Any, height: int, width: int) -> tuple[int, int, int]:
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return vae.config.latent_channels, height // factor, width // factor


def epsilon_loss(unet: Any, vae: Any, scheduler: Any, images: torch.Tensor, masks: torch.Tensor,
                 cond: torch.Tensor, draws: DiffusionDraws) -> torch.Tensor:
    """The SD inpainting objective (module docstring); gradients flow into `cond` only (UNet and VAE frozen).

    images float (B, 3, H, W) RGB in [0, 1]; masks (B, 1, H, W), 1 = hole; cond (B, N, D) = encoder_hidden_states.
    Returns a scalar float32 loss.
    """
    dtype = next(unet.parameters()).dtype
    device = cond.device
    with torch.no_grad():
        pixels = (images * 2 - 1).to(device, vae.dtype)
        holes = (masks >= 0.5).to(device, vae.dtype)
        scale = vae.config.scaling_factor

        def encode(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
            dist = vae.encode(x).latent_dist
            return (dist.mean + dist.std * eps.to(device, dist.mean.dtype)) * scale

        latents = encode(pixels, draws.latent_eps)
        masked_latents = encode(pixels * (1 - holes), draws.masked_eps)
        mask_latent = F.interpolate(holes, size=latents.shape[-2:])
        noise = draws.noise.to(device, latents.dtype)
        timesteps = draws.timesteps.to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        if scheduler.config.prediction_type == "epsilon":
            target = noise
        elif scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise ValueError(f"unsupported prediction type {scheduler.config.prediction_type!r}")
        unet_in = torch.cat([noisy, mask_latent, masked_latents], dim=1).to(dtype)
    pred = unet(unet_in, timesteps, encoder_hidden_states=cond.to(dtype), return_dict=False)[0]
    return F.mse_loss(pred.float(), target.float())


__all__ = ["load_frozen_sd", "noise_scheduler", "DiffusionDraws", "draw_diffusion", "latent_shape", "epsilon_loss",
           "TINY_SD", "FrozenSD", "sd_reference", "weight_dtype"]
