"""Checkpoint loading and key maps between the ASUKA release and our modules.

- checkpoints are read with `misato.checkpoints.load_checkpoint` (never unpickled).
- decoder: the release's LDM-style decoder (`asuka_decoder.ckpt`, Lightning dict `['state_dict']`, keys
  `decoder.*`) <-> our diffusers-style `AsukaMaskConditionDecoder`. Our own rule table rather than diffusers'
  `convert_ldm_vae_checkpoint`: that one needs the whole VAE (encoder and quant convs) and knows nothing of the
  condition encoder; the table also gives the inverse map the round-trip test needs.
- alignment: the release's `nn.Sequential(Linear, 4 x SingleStreamBlockAsuka, LayerNorm)` state dict
  (`asuka_alignment_{clip,t5}.pt`) -> `AsukaAlignment` keys; the unused `modulation.*` weights are dropped.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Callable

import torch

from misato.checkpoints import load_checkpoint, sub_state

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ decoder
Rule = tuple[str, Callable[[re.Match, int], str]]


def _level(index: str, levels: int) -> int:
    """LDM numbers levels from the highest resolution (`up.0`), diffusers from the lowest (`up_blocks.0`)."""
    return levels - 1 - int(index)


_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_RESNET_BACK = {value: key for key, value in _RESNET.items()}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_BACK = {value: key for key, value in _ATTN.items()}

# LDM key (without the "decoder." prefix) -> ours. Each pattern matches a whole key.
_LDM_TO_OURS: list[Rule] = [
    (r"(conv_in|conv_out)\.(weight|bias)", lambda m, n: f"{m[1]}.{m[2]}"),
    (r"norm_out\.(weight|bias)", lambda m, n: f"conv_norm_out.{m[1]}"),
    (r"mid\.block_([12])\.(\w+)\.(weight|bias)",
     lambda m, n: f"mid_block.resnets.{int(m[1]) - 1}.{_RESNET[m[2]]}.{m[3]}"),
    (r"mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)",
     lambda m, n: f"mid_block.attentions.0.{_ATTN[m[1]]}.{m[2]}"),
    (r"up\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)",
     lambda m, n: f"up_blocks.{_level(m[1], n)}.resnets.{m[2]}.{_RESNET[m[3]]}.{m[4]}"),
    (r"up\.(\d+)\.upsample\.conv\.(weight|bias)", lambda m, n: f"up_blocks.{_level(m[1], n)}.upsamplers.0.conv.{m[2]}"),
    (r"encoder\.layers\.(\d+)\.(weight|bias)", lambda m, n: f"condition_encoder.layers.{m[1]}.{m[2]}"),
]
_LDM_DROPPED = re.compile(r"up_layers\..*")  # built by the release but never used in its forward

_OURS_TO_LDM: list[Rule] = [
    (r"(conv_in|conv_out)\.(weight|bias)", lambda m, n: f"{m[1]}.{m[2]}"),
    (r"conv_norm_out\.(weight|bias)", lambda m, n: f"norm_out.{m[1]}"),
    (r"mid_block\.resnets\.([01])\.(\w+)\.(weight|bias)",
     lambda m, n: f"mid.block_{int(m[1]) + 1}.{_RESNET_BACK[m[2]]}.{m[3]}"),
    (r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)",
     lambda m, n: f"mid.attn_1.{_ATTN_BACK[m[1]]}.{m[2]}"),
    (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(weight|bias)",
     lambda m, n: f"up.{_level(m[1], n)}.block.{m[2]}.{_RESNET_BACK[m[3]]}.{m[4]}"),
    (r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)",
     lambda m, n: f"up.{_level(m[1], n)}.upsample.conv.{m[2]}"),
    (r"condition_encoder\.layers\.(\d+)\.(weight|bias)", lambda m, n: f"encoder.layers.{m[1]}.{m[2]}"),
]


def _apply(rules: list[Rule], key: str, levels: int) -> str | None:
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match:
            try:
                return target(match, levels)
            except KeyError:
                return None
    return None


def _is_attention_linear(key: str) -> bool:
    return bool(re.fullmatch(r"mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight", key))


def _levels_of(keys: list[str], pattern: str) -> int:
    found = [int(m[1]) for key in keys if (m := re.match(pattern, key))]
    if not found:
        raise ValueError("decoder state dict has no up-sampling levels")
    return max(found) + 1


def ldm_decoder_to_ours(state: dict[str, torch.Tensor], prefix: str = "decoder.") -> dict[str, torch.Tensor]:
    """The release's decoder weights -> `AsukaMaskConditionDecoder` keys.

    state: a Lightning `['state_dict']` (keys `decoder.*`, other prefixes ignored) or the decoder's own state dict
    (prefix ""). `up_layers.*` (unused in the release) are dropped; the 1x1 attention convs become linears.
    An unknown decoder key raises ValueError (nothing is dropped silently).
    """
    own = sub_state(state, prefix)
    if not own:
        raise ValueError(f"no key starts with {prefix!r}; first keys: {list(state)[:5]}")
    levels = _levels_of(list(own), r"up\.(\d+)\.")
    out: dict[str, torch.Tensor] = {}
    for key, value in own.items():
        if _LDM_DROPPED.fullmatch(key):
            continue
        new = _apply(_LDM_TO_OURS, key, levels)
        if new is None:
            raise ValueError(f"decoder key {prefix}{key} has no mapping (attention at up levels is not supported)")
        out[new] = value.flatten(1) if _is_attention_linear(new) and value.ndim == 4 else value
    return out


def ours_to_ldm_decoder(state: dict[str, torch.Tensor], prefix: str = "decoder.") -> dict[str, torch.Tensor]:
    """Inverse of `ldm_decoder_to_ours` (without the dropped `up_layers`): our keys -> the release's."""
    levels = _levels_of(list(state), r"up_blocks\.(\d+)\.")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _apply(_OURS_TO_LDM, key, levels)
        if new is None:
            raise ValueError(f"decoder key {key} has no LDM mapping")
        out[prefix + new] = value[..., None, None] if _is_attention_linear(key) else value
    return out


def load_released_decoder(path: str | os.PathLike, decoder: torch.nn.Module | None = None) -> torch.nn.Module:
    """`asuka_decoder.ckpt` -> an `AsukaMaskConditionDecoder` (FLUX arch: 16 latent channels) loaded strictly.

    decoder: an existing decoder to load into (default: a new one with `DECODER_ARCHS["flux"]`).
    """
    from baselines.asuka.decoder import build_decoder

    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a Lightning checkpoint with a 'state_dict'")
    decoder = decoder if decoder is not None else build_decoder("asuka", "flux")
    decoder.load_state_dict(ldm_decoder_to_ours(state), strict=True)
    return decoder.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------ alignment
def convert_released_alignment(state: dict[str, torch.Tensor], depth: int = 4) -> dict[str, torch.Tensor]:
    """Release `nn.Sequential` keys -> `AsukaAlignment` keys.

    `0.*` -> `proj_in.*`; `{1..depth}.*` -> `blocks.{i-1}.*` (RMSNorm `scale` -> `weight`, `modulation.*`
    dropped: unused in the release's forward); `{depth+1}.*` -> `norm_out.*`. A `module.` prefix (DDP) is removed.
    """
    if not isinstance(state, dict):
        raise ValueError(f"alignment checkpoint must be a state dict, got {type(state).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        head, _, rest = key.partition(".")
        if not head.isdigit():
            raise ValueError(f"alignment key {key!r} is not an nn.Sequential key")
        index = int(head)
        if index == 0:
            out[f"proj_in.{rest}"] = value
        elif index == depth + 1:
            out[f"norm_out.{rest}"] = value
        elif 1 <= index <= depth:
            if rest.startswith("modulation."):
                continue
            rest = re.sub(r"(query_norm|key_norm)\.scale$", r"\1.weight", rest)
            out[f"blocks.{index - 1}.{rest}"] = value
        else:
            raise ValueError(f"alignment key {key!r} is outside a depth-{depth} module")
    return out
