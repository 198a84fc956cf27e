"""`mae-far`: MAE-FAR (Cao, Dong, Fu, ECCV 2022) behind the inpainter contract.

In: images float32 (B, 3, H, W) RGB in [0, 1] (holes zeroed), masks float32 (B, 1, H, W) in {0, 1}, 1 = hole
(binarised at 0.5), seeds (unused: the model is deterministic). Out: float32 (B, 3, H, W) in [0, 1], raw (the
harness composites). H == W, a multiple of 16, at least `config.min_size` (the policy pads to this).

Inference as the release's `test.py` / dataset code (github ewrfcas/MAE-FAR):
  1. MAE input at 256: the image resized with cv2 INTER_AREA (ImageNet-normalised inside the MAE), the mask
     shrunk with INTER_AREA and binarised at > 0 (a 256 pixel is a hole if any source pixel is);
  2. the MAE prior (`baselines.maefar.prior`): decoder features (B, 512, 16, 16) and attention scores (B, 256, 256);
  3. the masked positional encoding at 32x32 (`network.masked_position_encoding`);
  4. the FAR network at the input size (the released model was fine-tuned on 256..512): features upsampled to
     H/16 and decoded to four prior maps, generator output through a sigmoid.
Sizes above `config.max_size` (512) are processed at 512 (image area-downsampled, mask any-hole) and the output
is upsampled bilinearly: the released model never saw larger inputs, and its patch attention only fits sizes
up to 512 or multiples of 128.

Weights: one file, key "mae-far-places2" (`weight_specs.py`): the authors' Lightning checkpoint (its
'state_dict') or its safetensors conversion, keys 'mae.*' (the MAE, ASUKA's layout) and 'acr.*' (the FAR
network); both parts load strictly, see `load_mae_far`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from baselines.asuka.mae import AsukaMAE, MAEConfig, prepare_mae_inputs
from baselines.base import Inpainter, ResolutionPolicy
from baselines.maefar.network import (
    MaeFarACR,
    MaeFarConfig,
    any_hole_resize,
    masked_position_encoding,
)
from baselines.maefar.prior import mae_far_prior
from misato.checkpoints import sub_state

WEIGHT_KEY = "mae-far-places2"
# Parameters of ASUKA's fine-tuned MAE that the plain MAE of MAE-FAR does not have (and `mae_far_prior` never uses).
MAE_UNUSED_KEYS: tuple[str, ...] = ("decoder_patch_embed.proj.weight", "decoder_patch_embed.proj.bias", "alpha")
PREFIXES: tuple[str, str] = ("mae.", "acr.")


def split_lightning_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split the Lightning state dict into (MAE state, FAR state), stripping the leading 'mae.' / 'acr.'.

    Other entries (the EMA copy 'acr_ema.*', the discriminator, loss networks) are ignored, as the release's
    `test.py` does. The released test loads `acr.*`, not the EMA copy.
    """
    mae, acr = (sub_state(state, prefix) for prefix in PREFIXES)
    return mae, acr


def load_mae_far(path: str | os.PathLike, config: MaeFarConfig | None = None,
                 mae_config: MAEConfig | str = "mae_vit_base_patch16") -> tuple[AsukaMAE, MaeFarACR]:
    """(MAE, FAR network) in eval mode from the released checkpoint or its safetensors conversion.

    Raises `misato.checkpoints.CheckpointNeedsConversionError` (naming `misato weights convert ... --state-key
    state_dict`) for the released pytorch-lightning checkpoint (converted without pytorch_lightning or omegaconf),
    ValueError for a file of another layout.
    """
    from misato.checkpoints import load_checkpoint, load_state_strict

    checkpoint = load_checkpoint(path, state_key="state_dict")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (or a Lightning checkpoint with 'state_dict')")  # noqa: TRY004
    mae_state, acr_state = split_lightning_state(state)
    if not mae_state or not acr_state:
        raise ValueError(f"{path}: no 'mae.*' and 'acr.*' entries; not a MAE-FAR checkpoint "
                         f"(first keys: {list(state)[:5]})")
    mae = AsukaMAE(mae_config)
    load_state_strict(mae, mae_state, f"{path} (mae.*)", "MAE-FAR MAE", allow_missing=MAE_UNUSED_KEYS)
    acr = MaeFarACR(config or MaeFarConfig())
    load_state_strict(acr, acr_state, f"{path} (acr.*)", "MAE-FAR FAR network")
    return mae.eval().requires_grad_(False), acr.eval().requires_grad_(False)


class MaeFarInpainter(Inpainter):
    """MAE-FAR, Places2 model. Options: `weight_paths={"mae-far-places2": PATH}`, `allow_download`, and (for
    tests) `config` / `mae_config` (architecture; defaults are the released model's).

    A missing file raises `misato.weights.WeightsNotFoundError` from the constructor.
    """

    name: ClassVar[str] = "mae-far"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=16, min_size=256, square=True)
    batched: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True  # no random draw anywhere: seeds are unused
    weights: ClassVar[tuple[str, ...]] = (WEIGHT_KEY,)

    def __init__(self, device: str | torch.device = "cpu", config: MaeFarConfig | None = None,
                 mae_config: MAEConfig | str = "mae_vit_base_patch16", **options: Any) -> None:
        super().__init__(device, **options)
        self.net_config = config or MaeFarConfig()
        resolved = self.resolve_weight(WEIGHT_KEY)
        mae, acr = load_mae_far(resolved.path, self.net_config, mae_config)
        self.mae, self.acr = mae.to(self.device), acr.to(self.device)

    def _check(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or masks.shape != (images.shape[0], 1, *images.shape[2:]):
            raise ValueError(f"mae-far: expected images (B, 3, H, W) and masks (B, 1, H, W), "
                             f"got {tuple(images.shape)} and {tuple(masks.shape)}")
        height, width = images.shape[2:]
        if height != width or height % 16 or height < self.net_config.min_size:
            raise ValueError(f"mae-far: H == W, a multiple of 16 and >= {self.net_config.min_size} required "
                             f"(the harness pads), got {height}x{width}")

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        self._check(images, masks)
        size = images.shape[-1]
        images = images.to(self.device, torch.float32)
        masks = (masks.to(self.device, torch.float32) >= 0.5).float()
        work = min(size, self.net_config.max_size)
        if work != size:
            images = F.interpolate(images, size=(work, work), mode="area")
            masks = any_hole_resize(masks, work)
        mae_size = self.mae.config.img_size
        mae_images, _ = prepare_mae_inputs(images, masks, mae_size)
        feats, scores = mae_far_prior(self.mae, mae_images, any_hole_resize(masks, mae_size))
        rel_pos, direct = masked_position_encoding(masks, self.net_config.pos_size, self.net_config.rel_pos_num)
        out = self.acr(images, masks, feats, scores, rel_pos, direct)
        if work != size:
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        return out.clamp(0, 1)
