"""FD-DINOv2: the Frechet distance between DINOv2 ViT-L/14 features of truths and results (Stein et al., "Exposing
flaws of generative model evaluation metrics", NeurIPS 2023: dgm-eval; torch-fidelity's `dinov2-vit-l-14`).

Features: the CLS token after the final layer norm (transformers `Dinov2Model`'s `pooler_output`, the torch.hub
model's `x_norm_clstoken`), 1024-d, of the whole image: float RGB in [0, 1], resized to 224 x 224 (`Protocol.
dinov2_size`) by torch's bicubic interpolation with antialiasing (torchvision's tensor `Resize` as dgm-eval applies
it), ImageNet mean/std. The network is built from its hub files, `config.json` and `model.safetensors` of
facebook/dinov2-large (registry keys `dinov2-vit-l-14-config` and `dinov2-vit-l-14`), read from the local files
the registry resolves (transformers itself never reaches the hub; the registry fetches only where downloads are
allowed). The distance is the suite's own
`evaluators.functional.frechet` (np.cov, divisor N - 1), as FID.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluators.cmmd import WholeImage
from evaluators.set_metrics import FrechetInceptionDistance
from misato.weights import ResolvedWeight

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG_KEY, MODEL_KEY = "dinov2-vit-l-14-config", "dinov2-vit-l-14"


def load_dinov2(config: Path, weights: Path) -> Any:
    """transformers `Dinov2Model` from a hub `config.json` and `model.safetensors` (CPU, eval, float32). A config
    that is not a DINOv2 one, or weights that do not fit it, end in a ValueError naming the file."""
    from transformers import Dinov2Config, Dinov2Model

    from misato.checkpoints import load_checkpoint, load_state_strict
    from misato.checkpoints import build_empty, check_loaded

    try:
        described = json.loads(Path(config).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config}: not a readable DINOv2 config.json ({error})") from None
    if not isinstance(described, dict) or described.get("model_type") != "dinov2":
        kind = described.get("model_type") if isinstance(described, dict) else type(described).__name__
        raise ValueError(f"{config}: not a DINOv2 config.json (model_type {kind!r}, expected 'dinov2')")
    settings = Dinov2Config.from_dict(described)
    model = build_empty(lambda: Dinov2Model(settings))
    load_state_strict(model, load_checkpoint(weights), weights, "transformers Dinov2Model", assign=True)
    return check_loaded(model, str(weights)).eval().requires_grad_(False)


class Dinov2Resize(WholeImage):
    """uint8 (H, W, 3) RGB -> float32 (3, size, size): `evaluators.cmmd.WholeImage` ([0, 1], antialiased bicubic
    resize) with the ImageNet mean/std."""

    def __init__(self, size: int) -> None:
        super().__init__(size, IMAGENET_MEAN, IMAGENET_STD)


class Dinov2Features:
    """The DINOv2 network of `fd_dinov2`: `preprocess` for the data-loader workers, `forward` on a batch."""

    def __init__(self, config: ResolvedWeight, weights: ResolvedWeight, device: torch.device, size: int) -> None:
        self.model = load_dinov2(config.path, weights.path).to(device)
        self.device, self.size = device, size

    def preprocess(self) -> Dinov2Resize:
        return Dinov2Resize(self.size)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, size, size) preprocessed -> float32 (B, hidden) CLS features on the CPU."""
        return self.model(pixel_values=batch.to(self.device)).pooler_output.float().cpu()


class FrechetDinov2Distance(FrechetInceptionDistance):
    """`fd_dinov2`: FID's streamed float64 statistics and formula on the DINOv2 features."""

    def compute(self) -> dict[str, float]:
        try:
            return {"fd_dinov2": super().compute()["fid"]}
        except ValueError as error:
            raise ValueError(str(error).replace("FID", "FD-DINOv2")) from None

    @staticmethod
    def intervals(real: np.ndarray, fake: np.ndarray, indices: np.ndarray, level: float) -> dict:
        found = FrechetInceptionDistance.intervals(real, fake, indices, level)
        return {"fd_dinov2": found["fid"]} if "fid" in found else {}
