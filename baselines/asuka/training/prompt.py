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

from baselines.asuka.training.config import PromptTrainConfig
from baselines.asuka.training.data import generators
from baselines.asuka.training.diffusion import FrozenSD, weight_dtype
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
    sd = FrozenSD.load(config.sd_model, device, dtype, text_encoder=config.init == "empty", seed=config.seed,
                       gradient_checkpointing=config.gradient_checkpointing, allow_download=inputs.allow_download)
    prompt = LearnedPrompt(initial_embeddings(config, sd.pipe, device))

    def loss(module: torch.nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images = batch["image"]
        return sd.objective(images, batch["mask"], module(images.shape[0]), generators(batch["seed"])), {}

    def save(module: torch.nn.Module, out: Path) -> dict[str, str]:
        from baselines.asuka.trained import write_prompt_folder

        files: dict[str, str] = {}
        files.update(write_prompt_folder(out, module.embeds.data, sd.saved_reference(out, files)))
        return files

    return StageParts(prompt, loss, save, sd.record(), frozen={"unet": sd.pipe.unet, "vae": sd.pipe.vae})
