"""MAT (Li et al., CVPR 2022, "MAT: Mask-Aware Transformer for Large Hole Image Inpainting") as an `Inpainter`.

Contract side (see `baselines.base`): images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole, one seed
per sample; returns (B, 3, H, W) in [0, 1]. Inside, MAT's conventions: image in [-1, 1], mask 1 = KEEP.
H = W = 512 (the released models' size) or a multiple of it; the policy pads to that.

Per sample, a `torch.Generator` seeded with the sample's seed draws, in order: the latent z (z_dim normals),
the two bottleneck keep maps (MAT applies dropout to them even at test time) and, with
noise_mode="random", the decoder noise. The authors' test script (generate_image.py) uses
noise_mode="const" and truncation_psi=1. truncation_psi defaults to 1; noise_mode defaults to "const" for a
generator file that holds the stored noise maps, and to "none" for one that does not: the published
state-dict files (IOPaint's Places .pth, the CelebA-HQ fp16 mirror) were saved without them, and IOPaint
runs the Places file with "none". The effective mode is recorded in `config()`.

The authors' own release files (`Places_512_FullData.pkl`, `CelebA-HQ_512.pkl`) are StyleGAN-style network
pickles; `misato weights convert X.pkl X.safetensors --state-key G_ema` takes the EMA generator's parameters and
buffers (with the noise maps) without the authors' code, and the error for an unconverted .pkl names that command.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from baselines.base import Inpainter, ResolutionPolicy
from baselines.mat.layers import NOISE_MODES
from baselines.mat.network import Generator, MatConfig
from baselines.mat.randomness import SampleRandomness
from misato.checkpoints import load_checkpoint, load_state_strict

# model option -> misato.weights key
MODEL_WEIGHTS: dict[str, str] = {"places": "mat-places512", "celeba": "mat-celeba512"}
# The module of the authors' network pickles that their test script runs (`legacy.load_network_pkl(f)['G_ema']`).
NETWORK_PICKLE_KEY = "G_ema"


def _is_noise_key(key: str) -> bool:
    return key.endswith((".noise_const", ".noise_strength"))


class MatInpainter(Inpainter):
    """MAT, Places2 512 (model="places", default) or CelebA-HQ 512 (model="celeba").

    Options: noise_mode "const" | "random" | "none" | None (default: "const", as the authors' test script,
    when the file holds the noise maps; "none" when it does not, as both published state-dict files);
    truncation_psi (default 1); network_config: a `MatConfig` (default: the released architecture;
    tests pass tiny ones); `weight_paths={key: PATH}`, `allow_download` (see `Inpainter.resolve_weight`).
    A missing file raises `misato.weights.WeightsNotFoundError`; a file with other keys or shapes ValueError;
    an unconverted network pickle `misato.checkpoints.CheckpointNeedsConversionError` naming the command.
    """

    name: ClassVar[str] = "mat"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=512, min_size=512, square=True)
    batched: ClassVar[bool] = True
    weights: ClassVar[tuple[str, ...]] = tuple(MODEL_WEIGHTS.values())

    def __init__(self, device: str | torch.device = "cpu", model: str = "places", noise_mode: str | None = None,
                 truncation_psi: float = 1.0, network_config: MatConfig | None = None, **options: Any) -> None:
        super().__init__(device, model=model, noise_mode=noise_mode, truncation_psi=truncation_psi, **options)
        if model not in MODEL_WEIGHTS:
            raise ValueError(f"mat: model must be one of {sorted(MODEL_WEIGHTS)}, got {model!r}")
        if noise_mode is not None and noise_mode not in NOISE_MODES:
            raise ValueError(f"mat: noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self.truncation_psi = float(truncation_psi)
        resolved = self.resolve_weight(MODEL_WEIGHTS[model])
        state = load_checkpoint(resolved.path, state_key=NETWORK_PICKLE_KEY)  # the key: for the .pkl's conversion hint
        # the file decides whether the generator has noise inputs (see MatConfig.use_noise)
        has_noise = isinstance(state, dict) and any(_is_noise_key(str(k)) for k in state)
        if noise_mode not in (None, "none") and not has_noise:
            raise ValueError(f"{resolved.path}: this generator file has no noise maps (noise_const, noise_strength); "
                             f"run it with noise_mode='none' (got {noise_mode!r})")
        self.noise_mode = noise_mode or ("const" if has_noise else "none")
        config = dataclasses.replace(network_config or MatConfig(), use_noise=has_noise)
        # an instance policy: a non-default config runs at its own resolution
        self.policy = ResolutionPolicy(pad_multiple=config.resolution, min_size=config.resolution, square=True)
        if not isinstance(state, dict):
            raise ValueError(f"{resolved.path}: expected a state dict of the MAT generator, got {type(state).__name__}")
        self.net = load_state_strict(Generator(config), state, resolved.path, f"MAT generator ({config})")
        self.net.eval().requires_grad_(False).to(self.device)

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        if len(seeds) != images.shape[0]:
            raise ValueError(f"mat: {len(seeds)} seeds for a batch of {images.shape[0]}")
        keep = (masks < 0.5).to(images.dtype)
        x = (images * 2 - 1) * keep
        rng = SampleRandomness(seeds)
        z = rng.normal((self.net.config.z_dim,)).to(self.device)
        out = self.net(x, keep, z, rng, noise_mode=self.noise_mode, truncation_psi=self.truncation_psi)
        # MAT's generate_image.py clamps too: `(output * 127.5 + 127.5).round().clamp(0, 255)`; the harness refuses
        # values outside [0, 1] from any inpainter that does not say what it does with them
        return ((out + 1) / 2).clamp(0, 1).float()

    def config(self) -> dict[str, Any]:
        record = super().config()
        record["network"] = dataclasses.asdict(self.net.config)
        record["noise_mode"] = self.noise_mode
        record["truncation_psi"] = self.truncation_psi
        return record
