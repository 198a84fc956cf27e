"""CLIP score of the hole region (asuka-misato `cal_clip_score.py`, intended metric).

Both the result and the ground truth keep only the hole (`image * mask`, zeros elsewhere); the score is the
cosine similarity of their L2-normalised open_clip image embeddings, averaged over images.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from misato.weights import ResolvedWeight


class ClipEmbedder:
    """open_clip image tower; `quick_gelu=True` for OpenAI checkpoints (trained with QuickGELU)."""

    def __init__(self, model_name: str, weights: ResolvedWeight, device: torch.device, quick_gelu: bool = True):
        from misato.clip import load_clip

        self.model, self._preprocess = load_clip(model_name, weights.path, quick_gelu, device)
        self.device = device
        config = self.model.visual.preprocess_cfg  # the model's own input side and normalisation
        self.image_size, self.mean, self.std = int(config["size"][0]), tuple(config["mean"]), tuple(config["std"])

    def preprocess(self) -> Callable[[np.ndarray], torch.Tensor]:
        return _HoleOnly(self._preprocess)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed -> float32 (B, E) unit-norm embeddings on the CPU."""
        features = self.model.encode_image(batch.to(self.device)).float()
        return torch.nn.functional.normalize(features, dim=-1).cpu()


class _HoleOnly:
    """uint8 (H, W, 3) image and (H, W) binary hole -> preprocessed tensor of image * hole."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, image: np.ndarray, hole: np.ndarray) -> torch.Tensor:
        from PIL import Image

        kept = (image * hole[..., None].astype(np.uint8)).astype(np.uint8)
        return self.transform(Image.fromarray(kept))
