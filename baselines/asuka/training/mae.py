"""Stage `mae`: fine-tune the MAE to inpainting masks (paper Sec. 3.1).

Each item gets a Sec. 3.1 training mask (hole ratio in [0.1, 0.75]) enlarged to 75% of the tokens with random
extra tokens (`misato.masks.samplers.enlarge_for_mae`). The MAE sees the image with the hole zeroed and the dropped
tokens removed from attention (`AsukaMAE.reconstruct_with_tokens`). Loss: squared error in ImageNet-normalised
space, mean over channels, averaged over the hole pixels of dropped tokens plus every pixel of the extra dropped
tokens (the enlarged pixel mask): what the MAE could not see.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.asuka.mae import AsukaMAE
from baselines.asuka.training.config import MAETrainConfig
from baselines.asuka.training.loop import StageParts, TrainInputs, file_record


class MAEFinetune(torch.nn.Module):
    """The trained module: forward(images, masks, token_masked) -> pixel prediction (B, 3, S, S), normalised."""

    def __init__(self, mae: AsukaMAE) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, images: torch.Tensor, masks: torch.Tensor, token_masked: torch.Tensor) -> torch.Tensor:
        return self.mae.reconstruct_with_tokens(images, masks, token_masked)


def mae_item(mask: np.ndarray, rng: np.random.Generator, ratio: float, patch_size: int) -> dict[str, Any]:
    """Per-item MAE masking: token_masked (L,) bool and loss_weight (1, S, S) float32 in {0, 1}."""
    from misato.masks.samplers import enlarge_for_mae

    enlarged = enlarge_for_mae(mask, rng, target_ratio=ratio, patch_size=patch_size)
    return {"token_masked": torch.from_numpy(enlarged.token_mask.ravel().copy()),
            "loss_weight": torch.from_numpy(enlarged.pixel_mask.astype(np.float32))[None]}


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """pred, target (B, 3, S, S); weight (B, 1, S, S) in {0, 1} -> mean over weighted pixels of the channel-mean
    squared error (0 when no pixel is weighted)."""
    error = (pred.float() - target.float()).pow(2).mean(dim=1, keepdim=True)
    return (error * weight).sum() / weight.sum().clamp_min(1.0)


def load_mae(config: Any, source: str | None) -> tuple[AsukaMAE, dict[str, Any]]:
    """The MAE a stage starts from: --mae (run folder or file) when given, else random when config.init is
    'random'; checks the architecture and, for mae_weights 'finetuned', the fine-tune parameters."""
    from baselines.asuka.mae import MAE_PRESETS, MAEConfig
    from baselines.asuka.trained import find_mae

    mae = AsukaMAE(config.mae_arch)
    if source is None:
        if config.init != "random":
            raise ValueError(f"the {config.stage} stage needs --mae (a MAE file or a `misato train mae` run folder); "
                             "or --set init=random for a random MAE (tests only)")
        return mae, {}
    found = find_mae(source)
    if found.config is not None and MAEConfig(**found.config) != MAE_PRESETS[config.mae_arch]:
        raise ValueError(f"--mae {source}: its MAE architecture {found.config} is not mae_arch {config.mae_arch!r}")
    pretrained = config.mae_weights == "pretrained"
    report = mae.load_for_training(found.path, allow_missing_finetune=pretrained)
    if pretrained:
        with torch.no_grad():  # alpha = 1: partial tokens use the encoder only until the fine-tune learns E_img
            mae.alpha.fill_(1.0)
    return mae, {"mae": {**file_record(found.path), **report.record()}}


def build(config: MAETrainConfig, inputs: TrainInputs, accelerator: Any) -> StageParts:
    mae, records = load_mae(config, inputs.mae)
    model = MAEFinetune(mae.train())
    mean, std = mae.pixel_mean, mae.pixel_std

    def loss(module: torch.nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        device = accelerator.device
        images, masks = batch["image"].to(device), batch["mask"].to(device)
        pred = module(images, masks, batch["token_masked"].to(device))
        target = (images - mean.to(device)) / std.to(device)
        weight = batch["loss_weight"].to(device)
        return masked_mse(pred, target, weight), {"masked_fraction": float(weight.mean())}

    def save(module: torch.nn.Module, out: Path) -> dict[str, str]:
        from baselines.asuka.trained import save_mae_run

        return save_mae_run(module.mae, out)

    extra = functools.partial(mae_item, ratio=config.mask_token_ratio, patch_size=mae.config.patch_size)
    return StageParts(model, loss, save, records, item_extra=extra)
