"""Co-Mod-GAN (Zhao et al., ICLR 2021, "Large Scale Image Completion via Co-Modulated Generative Adversarial
Networks"), Places2 512, as an `Inpainter`.

Contract side (see `baselines.base`): images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole, one seed
per sample; returns (B, 3, H, W) in [0, 1]. Inside: image in [-1, 1], keep = 1 - hole (the port's generator
takes masks with 1 = hole and feeds `1 - mask`; the authors' TF graph takes 1 = known). H = W = 512 exactly:
the encoder flattens its 4x4 map into a dense layer, so the size is fixed; the policy pads smaller images
(reflect) to 512x512, and larger ones are refused.

Weights: the PyTorch port's converted file (`co-mod-gan-places2-050000_net_G_ema.pth`, key
"comod-places512"), loaded strictly into `baselines.comod.network.CoModGenerator`, whose parameter names
are the file's keys.

Randomness, per sample, from a CPU `torch.Generator` seeded with the sample's seed, in this order: z
(512 normals), the encoder dropout keep map (1024 Bernoulli(1/2), if `dropout`), the noise maps of the 15
modulated convs (if noise_mode="random"). Defaults follow the authors' inference (run_generator.py):
truncation off (psi 1), noise randomised, dropout on (their graph applies it at test time). dropout=False
with noise_mode="none" and `CoModConfig(skip_4x4=False)` is the port's eval forward (see
`baselines.comod.network` for the 4x4 skip the port leaves out). truncation_psi != 1 uses w_avg = the
mean of 4096 mapped z from seed 0 (the port's file has no tracked average; the port estimates one the same
way, from unseeded draws).

Why there is no converter from the authors' TensorFlow pickle (co-mod-gan-places2-050000.pkl): it is a
dnnlib `tflib.Network` pickle (its `__setstate__` rebuilds the graph from embedded source code), so reading
it needs TensorFlow 1.x (the authors' Dockerfile: tensorflow 1.15.0, Python <= 3.7) plus the authors'
`dnnlib`, neither installable next to current torch. The port's author converted it by hand ("I did this
manually", zengxianyu/co-mod-gan-pytorch issue #5) and never published the script (issue #15 is open; the
repository only keeps commented-out calls `net.G_mapping.load_from_tf_dict("co-mod-gan-ffhq-9-025000.npz")`
to a loader that is not in it, i.e. the TF variables were first dumped to an .npz). Such a conversion maps
the TF variables `G_mapping/Dense{i}/{weight,bias}`, `G_synthesis/E_*/.../{weight,bias}`, `.../mod_weight`,
`.../mod_bias`, `noise_strength` onto the port's names, transposes dense weights ([in, out] -> [out, in])
and conv weights ([k, k, in, out] -> [out, in, k, k]; [1, out, in, k, k] for modulated convs; the
upsampling convs are run as transposed convolutions in the port, which needs the TF kernel flipped
spatially, as TF's `upsample_conv_2d` flips it), adds 1 to `mod_bias` (TF adds the 1 at run time, the port
initialises the bias at 1) and drops `dlatent_avg` and the fixed noise maps `noise{i}`. Use the port's file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch

from baselines.base import Inpainter, ResolutionPolicy
from baselines.comod.network import CoModConfig, CoModGenerator
from misato.checkpoints import load_checkpoint, load_state_strict

WEIGHTS_KEY = "comod-places512"
NOISE_MODES: tuple[str, ...] = ("random", "none")
# w_avg for truncation: the mean of this many mapped latents drawn from this seed
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0


def load_generator(path: str | Path, config: CoModConfig) -> CoModGenerator:
    """Build the generator and load the port's state dict from `path` strictly; eval mode, CPU.

    Raises ValueError naming the file for the authors' TF pickle, a non-state-dict, missing / unexpected
    keys (the first five of each) or wrong shapes; `misato.checkpoints.CheckpointNeedsConversionError` for
    a pickle that needs the full unpickler.
    """
    path = Path(path)
    if path.suffix == ".pkl":
        raise ValueError(f"{path}: the authors' TensorFlow pickle cannot be read here (it needs TensorFlow 1.x and "
                         f"dnnlib); use the PyTorch port's co-mod-gan-places2-050000_net_G_ema.pth "
                         f"(`misato weights fetch {WEIGHTS_KEY}`)")
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a flat state dict of the Co-Mod-GAN generator "
                         f"(keys like 'G_mapping.G_mapping.Dense0.weight')")
    generator = load_state_strict(CoModGenerator(config), state, path, f"Co-Mod-GAN generator ({config})")
    return generator.eval().requires_grad_(False)


class CoModGanInpainter(Inpainter):
    """Co-Mod-GAN Places2 512.

    Options: truncation_psi (default 1: off), noise_mode "random" (default) | "none", dropout (default True,
    the authors' test-time encoder dropout), network_config (a `CoModConfig`; default the released
    architecture, tests pass tiny ones), `weight_paths={"comod-places512": PATH}`, `allow_download`.
    A missing file raises `misato.weights.WeightsNotFoundError`; a file with other keys or shapes ValueError.
    """

    name: ClassVar[str] = "comod"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=512, min_size=512, square=True)
    batched: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True  # given the seeds
    weights: ClassVar[tuple[str, ...]] = (WEIGHTS_KEY,)

    def __init__(self, device: str | torch.device = "cpu", truncation_psi: float = 1.0, noise_mode: str = "random",
                 dropout: bool = True, network_config: CoModConfig | None = None, **options: Any) -> None:
        super().__init__(device, truncation_psi=truncation_psi, noise_mode=noise_mode, dropout=dropout, **options)
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"comod: noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self.truncation_psi = float(truncation_psi)
        self.noise_mode = noise_mode
        self.dropout = bool(dropout)
        config = network_config or CoModConfig()
        # an instance policy: a non-default config runs at its own (fixed) resolution
        self.policy = ResolutionPolicy(pad_multiple=config.resolution, min_size=config.resolution, square=True)
        resolved = self.resolve_weight(WEIGHTS_KEY)
        self.net = load_generator(resolved.path, config).to(self.device)
        self.w_avg = self.net.mean_w(W_AVG_SAMPLES, W_AVG_SEED) if self.truncation_psi != 1.0 else None

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        config = self.net.config
        size = config.resolution
        if tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"comod: the generator takes exactly {size}x{size} images (its encoder ends in a dense "
                             f"layer); got {tuple(images.shape[-2:])}. Larger images are not supported")
        if len(seeds) != images.shape[0]:
            raise ValueError(f"comod: {len(seeds)} seeds for a batch of {images.shape[0]}")
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

        def draw(sampler) -> torch.Tensor:
            return torch.stack([sampler(g) for g in generators]).to(self.device)

        z = draw(lambda g: torch.randn(config.latent_size, generator=g))
        keep_map = None
        if self.dropout:
            keep_map = draw(lambda g: (torch.rand(config.global_size, generator=g) >= config.dropout_rate).float())
        noises = None
        if self.noise_mode == "random":
            noises = [draw(lambda g, s=shape: torch.randn(s, generator=g)) for shape in config.noise_shapes()]
        keep = (masks < 0.5).to(images.dtype)
        raw = self.net(images * 2 - 1, keep, z, keep_map, noises, self.truncation_psi, self.w_avg)
        return ((raw + 1) / 2).clamp(0, 1).float()

    def config(self) -> dict[str, Any]:
        record = super().config()
        record["network"] = dataclasses.asdict(self.net.config)
        record["truncation_psi"] = self.truncation_psi
        if self.w_avg is not None:
            record["truncation_w_avg"] = {"samples": W_AVG_SAMPLES, "seed": W_AVG_SEED}
        record["noise_mode"] = self.noise_mode
        record["dropout"] = self.dropout
        return record
