"""LaMa (Suvorov et al., WACV 2022), big-lama, from one of two published forms (option `checkpoint`).

checkpoint="torchscript" (default): the TorchScript export `big-lama.pt` (weights key "lama-big" in
  `baselines.weight_specs`), loaded with `torch.jit.load` (TorchScript archives are not pickles, so
  `torch.load(weights_only=True)` does not apply). Its forward is `model(image, mask) -> image`:
  image float32 (B, 3, H, W) RGB in [0, 1]; mask float32 (B, 1, H, W) in {0, 1}, 1 = hole; H and W multiples
  of 8; output float32 (B, 3, H, W) in [0, 1], already composited by the model. Called one sample at a time:
  the export was traced at batch size 1.
checkpoint="authors": the authors' release `big-lama/models/best.ckpt` (huggingface.co/smartywu/big-lama,
  big-lama.zip), converted once to safetensors (weights key "lama-big-authors"), run by our FFC ResNet
  generator (`baselines.lama_ffc`) as the authors' `bin/predict.py` does: input
  `cat([image * (1 - mask), mask])` (4 channels), H and W multiples of 8, output the sigmoid image in [0, 1]
  (the harness composites). Batched.

Both are deterministic: seeds are not used.
"""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch

from baselines.base import Inpainter, ResolutionPolicy
from baselines.lama_ffc import FFCResNetConfig, FFCResNetGenerator, generator_state_dict
from misato.checkpoints import CorruptCheckpointError

# option value -> weights key
CHECKPOINTS: dict[str, str] = {"torchscript": "lama-big", "authors": "lama-big-authors"}
# The Lightning checkpoint keeps the training module's state dict under this entry.
AUTHORS_STATE_KEY = "state_dict"


class LamaInpainter(Inpainter):
    """big-lama; options: `checkpoint` ("torchscript" | "authors", see the module docstring),
    `weight_paths={"lama-big": PATH}` or `{"lama-big-authors": PATH}`, `allow_download` (see
    `Inpainter.resolve_weight`); `generator_config` (authors only; default big-lama's architecture).

    A missing file raises `misato.weights.WeightsNotFoundError` from the constructor, naming the fix; an
    authors file that is not big-lama's generator raises `ValueError` naming the file and the first
    missing/unexpected keys.
    """

    name: ClassVar[str] = "lama"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=8)
    batched: ClassVar[bool] = False  # the TorchScript export; the authors' generator sets it True per instance
    weights: ClassVar[tuple[str, ...]] = tuple(CHECKPOINTS.values())

    def __init__(
        self,
        device: str | torch.device = "cpu",
        checkpoint: str = "torchscript",
        generator_config: FFCResNetConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__(device, **options)
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"lama: checkpoint must be one of {sorted(CHECKPOINTS)}, got {checkpoint!r}")
        if generator_config is not None and checkpoint != "authors":
            raise ValueError("lama: generator_config applies to checkpoint='authors' only")
        self.checkpoint = checkpoint
        resolved = self.resolve_weight(CHECKPOINTS[checkpoint])
        if checkpoint == "torchscript":
            with warnings.catch_warnings():
                # torch.jit is deprecated in favour of torch.export, but the published file is TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                try:
                    self.model = torch.jit.load(str(resolved.path), map_location=self.device)
                except RuntimeError as error:  # not a TorchScript archive: another checkpoint, truncated, ...
                    raise CorruptCheckpointError(
                        f"{resolved.path}: not a TorchScript file (lama's default checkpoint, big-lama.pt: "
                        f"{str(error).split('.')[0]}); the authors' best.ckpt goes with --option checkpoint=authors "
                        f"--weight {CHECKPOINTS['authors']}=PATH"
                    ) from error
        else:
            self.generator_config = generator_config or FFCResNetConfig()
            self.model = load_authors_generator(resolved.path, self.generator_config).to(self.device)
            self.batched = True
        self.model.eval()

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        if images.shape[-2] % 8 or images.shape[-1] % 8:
            raise ValueError(f"lama: H and W must be multiples of 8 (the harness pads), got {tuple(images.shape)}")
        masks = (masks > 0.5).float()
        if self.checkpoint == "authors":
            return self.model(torch.cat([images * (1 - masks), masks], dim=1)).float()
        outputs = [self.model(image[None], mask[None]) for image, mask in zip(images, masks)]
        return torch.cat(outputs).float()

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["options"]["checkpoint"] = self.checkpoint
        if self.checkpoint == "authors":
            config["generator"] = dataclasses.asdict(self.generator_config)
        return config


def load_authors_generator(path: str | Path, config: FFCResNetConfig) -> FFCResNetGenerator:
    """Build the generator and load the `generator.` entries of the authors' (converted) checkpoint strictly.

    path: a safetensors (or weights-only torch) file with the training module's keys `generator.model.<i>...`;
      discriminator and loss entries are ignored. Returns the generator in eval mode, on CPU.
    Raises ValueError (the release archive itself, no generator entries, missing/unexpected keys, wrong shapes),
      `misato.checkpoints.CheckpointNeedsConversionError` for the unconverted `best.ckpt` (a pytorch-lightning 1.x
      checkpoint: `misato weights convert` reads it without pytorch_lightning or omegaconf).
    """
    from misato.checkpoints import load_checkpoint, load_state_strict

    path = Path(path)
    if _is_release_archive(path):
        raise ValueError(
            f"{path} is the big-lama.zip release archive; unzip it and convert its Lightning checkpoint once (its "
            f"tensors only, no code is run): misato weights convert big-lama/models/best.ckpt "
            f"big-lama-best.safetensors --state-key {AUTHORS_STATE_KEY}, then pass big-lama-best.safetensors "
            f"(--weight lama-big-authors=PATH)"
        )
    state = load_checkpoint(path, state_key=AUTHORS_STATE_KEY)
    weights = generator_state_dict(state) if isinstance(state, dict) else {}
    if not weights:
        found = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: no 'generator.' entries: not the big-lama training checkpoint (found: {found})")
    what = f"big-lama FFC generator ({config}; keys after removing 'generator.')"
    return load_state_strict(FFCResNetGenerator(config), weights, path, what).eval()


def _is_release_archive(path: Path) -> bool:
    """True for big-lama.zip itself (what a download of the spec's URL gives before unzipping)."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("models/best.ckpt") for name in archive.namelist())
