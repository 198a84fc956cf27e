"""Stage `prompt`: learn prompt embeddings for the frozen SD 1.5 inpainting UNet (the SD-prompt baseline of
Table 1: "learnable prompts ... using the same training setting as ASUKA").

The trained module holds (1, num_tokens, D) embeddings used as `encoder_hidden_states` for every image; the
objective, data, masks and optimiser are the alignment stage's. Saved as `prompt.safetensors`
(`prompt_embeds`), the file `sd-prompt` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from baselines.asuka.training.alignment import sd_record, weight_dtype
from baselines.asuka.training.config import PromptTrainConfig
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


class LearnedPrompt(torch.nn.Module):
    """forward(batch_size) -> (batch_size, L, D) copies of the learned embeddings."""

    def __init__(self, embeds: torch.Tensor) -> None:
        super().__init__()
        if embeds.ndim != 3 or embeds.shape[0] != 1:
            raise ValueError(f"prompt embeddings must be (1, L, D), got {tuple(embeds.shape)}")
        self.embeds = torch.nn.Parameter(embeds.detach().clone().float())

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.embeds.expand(batch_size, -1, -1)


def initial_embeddings(config: PromptTrainConfig, sd: Any, device: torch.device) -> torch.Tensor:
    """(1, num_tokens, D): the text encoder's "" embedding (stretched or cut to num_tokens) or N(0, 1)."""
    width = sd.unet.config.cross_attention_dim
    if config.init == "random":
        return torch.randn((1, config.num_tokens, width), generator=torch.Generator().manual_seed(config.seed))
    from baselines.asuka.pipeline import null_from_text_embedding
    from baselines.sd.components import encode_text

    return null_from_text_embedding(encode_text(sd, "", device).float().cpu(), config.num_tokens)


def build(config: PromptTrainConfig, inputs: TrainInputs, accelerator: Any) -> StageParts:
    if inputs.mae:
        raise ValueError("the prompt stage uses no MAE; drop --mae")
    device, dtype = accelerator.device, weight_dtype(accelerator)
    sd = load_frozen_sd(config.sd_model, device, dtype, text_encoder=config.init == "empty", seed=config.seed)
    if config.gradient_checkpointing:
        sd.unet.enable_gradient_checkpointing()
    scheduler = noise_scheduler(sd)
    prompt = LearnedPrompt(initial_embeddings(config, sd, device))
    records = sd_record(config.sd_model)

    def loss(module: torch.nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images, masks = batch["image"], batch["mask"]
        gens = generators(batch["seed"])
        cond = module(images.shape[0])
        draws = draw_diffusion(gens, latent_shape(sd.vae, *images.shape[-2:]), scheduler.config.num_train_timesteps)
        return epsilon_loss(sd.unet, sd.vae, scheduler, images.to(device), masks.to(device), cond, draws), {}

    def save(module: torch.nn.Module, out: Path) -> dict[str, str]:
        from baselines.asuka.trained import save_sd_components, write_prompt_folder

        files: dict[str, str] = {}
        sd_model = records["sd_model"]
        if sd_model == TINY_SD:
            sd_model = files["sd"] = save_sd_components(sd, out)
        files.update(write_prompt_folder(out, module.embeds.data, sd_model))
        return files

    return StageParts(prompt, loss, save, records, frozen={"unet": sd.unet, "vae": sd.vae})
