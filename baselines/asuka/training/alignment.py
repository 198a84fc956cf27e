"""Stage `alignment`: train the alignment module between the frozen MAE and the frozen SD 1.5 inpainting UNet
(paper Sec. 3.2, 5).

Per item: with probability p(step) the MAE sees the unmasked image (the reconstruction prior; an all-zero mask),
else the training mask. The prior (B, 256, 512) goes through the alignment module to (B, 256, 768) =
`encoder_hidden_states` of the SD objective (`training.diffusion.FrozenSD.objective`) with the true mask. Only the
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
from baselines.asuka.training.diffusion import FrozenSD, weight_dtype
from baselines.asuka.training.loop import StageParts, TrainInputs
from baselines.asuka.training.mae import load_mae


def reconstruction_probability(config: AlignmentTrainConfig, step: int) -> float:
    """p at optimizer step `step` (0-based): linear from p_start to p_end over p_decay_steps, then held."""
    progress = min(step, config.p_decay_steps) / config.p_decay_steps
    return config.p_start + (config.p_end - config.p_start) * progress


def build(config: AlignmentTrainConfig, inputs: TrainInputs, accelerator: Any) -> StageParts:
    device, dtype = accelerator.device, weight_dtype(accelerator)
    mae, records = load_mae(config, inputs.mae)
    mae = mae.eval().requires_grad_(False).to(device, dtype)
    sd = FrozenSD.load(config.sd_model, device, dtype, seed=config.seed,
                       gradient_checkpointing=config.gradient_checkpointing, allow_download=inputs.allow_download)
    alignment = AsukaAlignment(dim=sd.pipe.unet.config.cross_attention_dim, variant=config.variant,
                               in_dim=mae.config.decoder_embed_dim).train()
    records.update(sd.record())

    def loss(module: torch.nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images, masks = batch["image"], batch["mask"]
        gens = generators(batch["seed"])
        p = reconstruction_probability(config, step)
        full_view = torch.stack([torch.rand((), generator=g) < p for g in gens])
        mae_masks = masks * (~full_view).float()[:, None, None, None]
        with torch.no_grad():
            mae_images, mae_masks = prepare_mae_inputs(images, mae_masks, size=mae.config.img_size)
            prior = mae.prior(mae_images.to(device, dtype), mae_masks.to(device, dtype))
        value = sd.objective(images, masks, module(prior.float()), gens)
        return value, {"p": p, "reconstruction_share": float(full_view.float().mean())}

    def save(module: torch.nn.Module, out: Path) -> dict[str, str]:
        from baselines.asuka.trained import MAE_FILE, save_safetensors, write_asuka_sd_folder

        files: dict[str, str] = {}
        if "mae" in records:
            mae_path = Path(records["mae"]["path"])
        else:  # a random MAE (tiny runs): keep it beside the alignment so the folder is complete
            save_safetensors(mae.state_dict(), out / MAE_FILE)
            mae_path, files["mae"] = out / MAE_FILE, MAE_FILE
        files.update(write_asuka_sd_folder(out, module, sd.saved_reference(out, files), mae_path, mae.config))
        return files

    return StageParts(alignment, loss, save, records, frozen={"mae": mae, "unet": sd.pipe.unet, "vae": sd.pipe.vae})
