"""Stage `alignment`: train the alignment module between the frozen MAE and the frozen SD 1.5 inpainting UNet
(paper Sec. 3.2, 5).

Per item: with probability p(step) the MAE sees the unmasked image (the reconstruction prior; an all-zero mask),
else the training mask. The prior (B, 256, 512) goes through the alignment module to (B, 256, 768) =
`encoder_hidden_states` of the SD objective (`training.diffusion.epsilon_loss`) with the true mask. Only the
alignment module is trained; gradients pass through the frozen UNet.
p(step) = p_start + (p_end - p_start) * min(step, p_decay_steps) / p_decay_steps (paper: 1.0 -> 0.1 over 2K).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from baselines.asuka.alignment import AsukaAlignment
from baselines.asuka.mae import prepare_mae_inputs
from baselines.asuka.training.config import AlignmentTrainConfig
from baselines.asuka.training.data import generators
from baselines.asuka.training.diffusion import (
    TINY_SD,
    draw_diffusion,
    epsilon_loss,
    latent_shape,
    load_frozen_sd,
    noise_scheduler,
)
from baselines.asuka.training.loop import StageParts, TrainInputs
from baselines.asuka.training.mae import load_mae


def reconstruction_probability(config: AlignmentTrainConfig, step: int) -> float:
    """p at optimizer step `step` (0-based): linear from p_start to p_end over p_decay_steps, then held."""
    progress = min(step, config.p_decay_steps) / config.p_decay_steps
    return config.p_start + (config.p_end - config.p_start) * progress


def weight_dtype(accelerator: Any) -> torch.dtype:
    """dtype of the frozen parts: the mixed-precision dtype (as diffusers' training scripts), else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(accelerator.mixed_precision), torch.float32)


def sd_record(sd_model: str) -> dict[str, Any]:
    return {"sd_model": sd_model if sd_model == TINY_SD or not Path(sd_model).exists() else str(Path(sd_model).resolve())}


def build(config: AlignmentTrainConfig, inputs: TrainInputs, accelerator: Any) -> StageParts:
    device, dtype = accelerator.device, weight_dtype(accelerator)
    mae, records = load_mae(config, inputs.mae)
    mae = mae.eval().requires_grad_(False).to(device, dtype)
    sd = load_frozen_sd(config.sd_model, device, dtype, seed=config.seed)
    if config.gradient_checkpointing:
        sd.unet.enable_gradient_checkpointing()
    scheduler = noise_scheduler(sd)
    alignment = AsukaAlignment(dim=sd.unet.config.cross_attention_dim, variant=config.variant,
                               in_dim=mae.config.decoder_embed_dim).train()
    records.update(sd_record(config.sd_model))

    def loss(module: torch.nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images, masks = batch["image"], batch["mask"]
        gens = generators(batch["seed"])
        p = reconstruction_probability(config, step)
        full_view = torch.stack([torch.rand((), generator=g) < p for g in gens])
        mae_masks = masks * (~full_view).float()[:, None, None, None]
        with torch.no_grad():
            mae_images, mae_masks = prepare_mae_inputs(images, mae_masks, size=mae.config.img_size)
            prior = mae.prior(mae_images.to(device, dtype), mae_masks.to(device, dtype))
        cond = module(prior.float())
        draws = draw_diffusion(gens, latent_shape(sd.vae, *images.shape[-2:]), scheduler.config.num_train_timesteps)
        value = epsilon_loss(sd.unet, sd.vae, scheduler, images.to(device), masks.to(device), cond, draws)
        return value, {"p": p, "reconstruction_share": float(full_view.float().mean())}

    def save(module: torch.nn.Module, out: Path) -> dict[str, str]:
        from baselines.asuka.trained import MAE_FILE, save_safetensors, save_sd_components, write_asuka_sd_folder

        files: dict[str, str] = {}
        if "mae" in records:
            mae_path = Path(records["mae"]["path"])
        else:  # a random MAE (tiny runs): keep it beside the alignment so the folder is complete
            save_safetensors(mae.state_dict(), out / MAE_FILE)
            mae_path, files["mae"] = out / MAE_FILE, MAE_FILE
        sd_model = records["sd_model"]
        if sd_model == TINY_SD:
            sd_model = files["sd"] = save_sd_components(sd, out)
        files.update(write_asuka_sd_folder(out, module, sd_model, mae_path, mae.config))
        return files

    return StageParts(alignment, loss, save, records, frozen={"mae": mae, "unet": sd.unet, "vae": sd.vae})
