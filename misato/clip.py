"""The CLIP image tower, loaded one way for every user (the builder's features and the CLIP score): an open_clip
architecture, a checkpoint file read strictly without unpickling, frozen in eval mode.

`CLIP_PRESETS` names, per open_clip architecture, its registered weights key (`misato.weights`) and whether its
checkpoints need QuickGELU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ClipPreset:
    """Defaults for one open_clip architecture: the weights key and whether they need QuickGELU."""

    model: str
    weight_key: str | None
    quick_gelu: bool


# OpenAI's CLIP checkpoints were trained with QuickGELU; open_clip's "ViT-L-14" config uses GELU and only
# switches for the "openai" tag, so loading the same file by path must force it.
CLIP_PRESETS: dict[str, ClipPreset] = {
    "ViT-L-14": ClipPreset("ViT-L-14", "clip-vit-l-14-openai", True),
    "ViT-L-14-336": ClipPreset("ViT-L-14-336", "clip-vit-l-14-336-openai", True),
}


def clip_weight_key(model: str, field: str = "clip_model") -> str:
    """The registered weights key of open_clip architecture `model`; ValueError naming `field` (the setting that
    chose it) when no file is registered for it."""
    preset = CLIP_PRESETS.get(model)
    if preset is None or preset.weight_key is None:
        raise ValueError(f"{field} {model!r}: no registered weights (CLIP models with weights: {', '.join(sorted(CLIP_PRESETS))})")
    return preset.weight_key


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (OpenAI's CLIP releases are), which `torch.load` cannot read safely
    (`misato.unpickle.file_format`)."""
    from misato.unpickle import file_format

    return file_format(Path(path)) == "torchscript"


def load_clip(model: str, path: str | os.PathLike, quick_gelu: bool, device: Any = "cpu",
              precision: str = "fp32") -> tuple[Any, Any]:
    """The one CLIP loader (builder features and CLIP score): an open_clip `model` with the checkpoint at `path`
    (`load_clip_weights`), frozen, in eval mode on `device`, and its image preprocessing.
    quick_gelu: True for OpenAI checkpoints (trained with QuickGELU)."""
    import open_clip

    network, _, preprocess = open_clip.create_model_and_transforms(
        model, pretrained=None, force_quick_gelu=quick_gelu, precision=precision)
    load_clip_weights(network, path)
    return network.to(device).eval().requires_grad_(False), preprocess


def load_clip_weights(model: Any, path: str | os.PathLike) -> None:
    """Load a CLIP checkpoint into an open_clip model, strictly.

    OpenAI's files (e.g. ViT-L-14.pt) are TorchScript archives: open_clip only reads them through its
    "openai" tag, and `torch.load(weights_only=True)` refuses them, so their parameters are taken with
    `torch.jit.load` (which runs no pickled Python) and loaded by name, as open_clip does for the tag.
    Other files go through `open_clip.load_checkpoint` with `weights_only=True`.
    """
    import open_clip
    import torch

    if is_torchscript(path):
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        # Scalars stored beside the weights by OpenAI, and buffers the model rebuilds itself (non-persistent,
        # such as the causal attention mask, which traced archives keep): neither is a weight.
        rebuilt = {name for name, _ in model.named_buffers()} - set(model.state_dict())
        for key in ("input_resolution", "context_length", "vocab_size", *rebuilt):
            state.pop(key, None)
        model.load_state_dict(state, strict=True)
    else:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
