"""Training of ASUKA-SD's parts and of the learned-prompt baseline (`misato train STAGE`).

One module per stage (`mae`, `alignment`, `prompt`, `decoder`; `latents` builds the decoder's offline latents),
each exposing `build(config, inputs, accelerator) -> StageParts`; `loop.train` runs any of them; `config` holds the presets. `STAGES` maps a stage name to its
`build` (imported lazily: training pulls in diffusers and accelerate).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

STAGES: tuple[str, ...] = ("mae", "alignment", "prompt", "decoder")
# Not a training stage but a step of one: the decoder's offline latent cache, configured by the decoder's config.
LATENTS = "decoder-latents"
COMMANDS: tuple[str, ...] = (*STAGES, LATENTS)


def config_stage(command: str) -> str:
    """The stage whose config a `misato train` command reads (decoder-latents -> decoder)."""
    return "decoder" if command == LATENTS else command


def stage_builder(stage: str) -> Callable[..., Any]:
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; known: {', '.join(STAGES)}")
    return importlib.import_module(f"{__name__}.{stage}").build
