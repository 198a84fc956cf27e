"""ASUKA's parts (Wang et al.): MAE prior, alignment module, inpainting-specialised decoder, key converters.

Pipelines import from here:
    from baselines.asuka import AsukaMAE, prepare_mae_inputs, AsukaAlignment, blend_with_null
    from baselines.asuka import build_decoder, ConditionedLatentDecoder, load_released_decoder
Heavy modules (diffusers) load on first use of the names that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AsukaMAE": "mae", "MAEConfig": "mae", "MAE_PRESETS": "mae", "prepare_mae_inputs": "mae", "TokenMask": "mae",
    "AsukaAlignment": "alignment", "ALIGNMENT_PRESETS": "alignment", "blend_with_null": "alignment",
    "AsukaMaskConditionDecoder": "decoder", "ConditionedLatentDecoder": "decoder", "DECODER_VARIANTS": "decoder",
    "DECODER_ARCHS": "decoder", "DecoderArch": "decoder", "build_decoder": "decoder",
    "init_from_vae_decoder": "decoder", "to_asymmetric_vae": "decoder",
    "load_released_decoder": "convert", "ldm_decoder_to_ours": "convert",
    "ours_to_ldm_decoder": "convert", "convert_released_alignment": "convert",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'baselines.asuka' has no attribute {name!r}")
    return getattr(importlib.import_module(f"baselines.asuka.{module}"), name)
