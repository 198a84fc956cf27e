"""Registry of mask generator presets: name -> (kind, typed parameters). Presets are data, not classes.

Every generator is called as `generate(name, rng, size, objects=None)` and returns uint8 (size, size)
in {0, 1}, 1 = hole. `objects` (an `ObjectShapeBank`) is needed only by presets with `needs_objects`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from misato.masks.coco import ObjectShapeBank, ObjectShapeParams, object_shape_mask
from misato.masks.comod import COMOD_PRESETS, comod_free_form_mask
from misato.masks.lama import LAMA_512, lama_irregular_mask
from misato.masks.shapes import RECTANGLE_PRESETS, rectangle_mask


@dataclass(frozen=True)
class GeneratorPreset:
    name: str
    kind: str
    params: Any
    description: str
    training_only: bool = False
    needs_objects: bool = False


def _lama(rng: np.random.Generator, size: int, params: Any, objects: ObjectShapeBank | None) -> np.ndarray:
    return lama_irregular_mask(rng, size, params)


def _comod(rng: np.random.Generator, size: int, params: Any, objects: ObjectShapeBank | None) -> np.ndarray:
    return comod_free_form_mask(rng, size, params)


def _rectangle(rng: np.random.Generator, size: int, params: Any, objects: ObjectShapeBank | None) -> np.ndarray:
    return rectangle_mask(rng, size, params)


def _object(rng: np.random.Generator, size: int, params: Any, objects: ObjectShapeBank | None) -> np.ndarray:
    if objects is None:
        raise ValueError("object-shape masks need an ObjectShapeBank (e.g. ObjectShapeBank.from_coco(coco))")
    return object_shape_mask(rng, size, objects, params)


KINDS: dict[str, Callable[[np.random.Generator, int, Any, ObjectShapeBank | None], np.ndarray]] = {
    "lama": _lama,
    "comod": _comod,
    "rectangle": _rectangle,
    "object": _object,
}

PRESETS: dict[str, GeneratorPreset] = {
    **{
        f"lama-{name}": GeneratorPreset(f"lama-{name}", "lama", params, f"LaMa irregular strokes, {name}_512 settings")
        for name, params in LAMA_512.items()
    },
    "comod": GeneratorPreset("comod", "comod", COMOD_PRESETS["comod"], "Co-Mod-GAN free-form: box fills + brushes"),
    "comod-mat": GeneratorPreset("comod-mat", "comod", COMOD_PRESETS["mat"], "Co-Mod free-form with MAT's counts (5, 3, 9)"),
    "comod-mat-small": GeneratorPreset(
        "comod-mat-small", "comod", COMOD_PRESETS["mat-small"], "Co-Mod free-form with MAT's small counts (3, 2, 4)"
    ),
    "comod-brush": GeneratorPreset("comod-brush", "comod", COMOD_PRESETS["brush"], "Co-Mod brush strokes only (no boxes)"),
    "coco-object": GeneratorPreset(
        "coco-object", "object", ObjectShapeParams(), "COCO object shape at random scale/position", needs_objects=True
    ),
    **{
        name: GeneratorPreset(name, "rectangle", params, f"{name} (ASUKA training only)", training_only=True)
        for name, params in RECTANGLE_PRESETS.items()
    },
}

ALIASES: dict[str, str] = {"co-mod": "comod", "mat": "comod-mat", "object": "coco-object", "rect": "rectangle"}


def get_preset(name: str) -> GeneratorPreset:
    """The preset called `name` (or an alias of it); unknown names raise ValueError listing close matches."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        close = difflib.get_close_matches(name, [*PRESETS, *ALIASES], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown mask generator {name!r}{hint} (known: {', '.join(PRESETS)})")
    return PRESETS[key]


def generate(name: str, rng: np.random.Generator, size: int = 512, objects: ObjectShapeBank | None = None) -> np.ndarray:
    """One mask of preset `name`: uint8 (size, size) in {0, 1}, 1 = hole."""
    if size < 8:
        raise ValueError(f"mask size must be at least 8 pixels, got {size}")
    preset = get_preset(name)
    return KINDS[preset.kind](rng, int(size), preset.params, objects)
