"""Inpainting mask generators and samplers. Every mask is uint8 (H, W) in {0, 1}, 1 = hole (white).

Generators (re-implemented from published algorithms, `numpy.random.Generator` streams):
LaMa irregular strokes (`lama-thin`, `lama-medium`, `lama-thick`), Co-Mod-GAN free-form (`comod`, MAT
counts `comod-mat`, `comod-mat-small`, strokes only `comod-brush`), COCO object shapes (`coco-object`),
and for ASUKA training only `rectangle` / `complement-rectangle`. See `registry.PRESETS`.

Samplers: `asuka_training_mask` (Sec. 3.1 mixture, ratio [0.1, 0.75]; `enlarge_for_mae` for the MAE's
75% token masking) and `misato_mask` (Sec. 4: no rectangles, ratio [0.2, 0.8], COCO background holes
carved out of the foreground from `coco_foreground`). Per-item streams come from `item_rng`.
"""

from misato.masks.coco import ObjectShapeBank, ObjectShapeParams, carve_background, coco_foreground, object_shape_mask
from misato.masks.registry import PRESETS, GeneratorPreset, generate, get_preset
from misato.masks.samplers import (
    ASUKA_TRAIN,
    MISATO,
    SAMPLERS,
    MaeMask,
    MaskSample,
    MaskSamplingError,
    MaskSkipped,
    SamplerConfig,
    asuka_training_mask,
    draw_candidate,
    enlarge_for_mae,
    misato_mask,
    sample_mask,
    sample_misato_mask,
)
from misato.masks.seeding import item_rng, item_seed_sequence, stable_words

__all__ = [
    "ASUKA_TRAIN",
    "MISATO",
    "PRESETS",
    "SAMPLERS",
    "GeneratorPreset",
    "MaeMask",
    "MaskSample",
    "MaskSamplingError",
    "MaskSkipped",
    "ObjectShapeBank",
    "ObjectShapeParams",
    "SamplerConfig",
    "asuka_training_mask",
    "carve_background",
    "coco_foreground",
    "draw_candidate",
    "enlarge_for_mae",
    "generate",
    "get_preset",
    "item_rng",
    "item_seed_sequence",
    "misato_mask",
    "object_shape_mask",
    "sample_mask",
    "sample_misato_mask",
    "stable_words",
]
