"""Co-Mod-GAN generator (Zhao et al., ICLR 2021): mapping network, encoder and co-modulated StyleGAN2 decoder.

Module names reproduce the state-dict keys of the PyTorch port (github.com/zengxianyu/co-mod-gan-pytorch,
`models/networks/co_mod_gan.py`, identical on its `master` and `train` branches), e.g.
`G_mapping.G_mapping.Dense0.weight`, `G_synthesis.E.512x512_0.FromRGB.0.weight`,
`G_synthesis.G_4x4.Conv.conv.modulation.weight`, `G_synthesis.G_512x512.ToRGB.upsample.kernel`: 180 entries
for the Places2 512 model (79,792,231 parameters, plus the FIR kernel buffers).

The forward pass is the authors' TensorFlow graph (github.com/zsyzzsoft/co-mod-gan,
`training/co_mod_gan.py`, `G_main` / `G_mapping` / `G_synthesis_co_mod_gan`) at inference:

  z (B, 512) -> pixel norm -> 8 dense layers (lr multiplier 0.01, lrelu) -> w (B, 512), the same w for all
  layers (no style mixing at test time), optionally truncated: w = w_avg + psi * (w - w_avg).
  Encoder input: cat([keep - 0.5, image * keep]) (B, 4, R, R), keep = 1 - hole, image in [-1, 1].
  Encoder: FromRGB (1x1) at R, then per resolution r = R..8 a 3x3 conv (its output is the skip feature
  E[r]) and a 3x3 stride-2 conv after FIR blur; at 4x4 a 3x3 conv (skip E[4]), flatten, dense to
  2 * nf(1) = 1024 (lrelu), then dropout with rate `dropout_rate` -> x_global (B, 1024).
  Decoder: dense x_global -> (B, nf(1), 4, 4), plus E[4]; every modulated layer is modulated by
  cat([w, x_global]) (B, 1536) ("co-modulation"); per resolution r = 8..R: 2x up modulated conv,
  + E[r], modulated conv, each followed by per-pixel noise * strength, bias, lrelu; skip-architecture RGB
  output (1x1 modulated conv without demodulation, summed with the FIR-upsampled lower-resolution RGB).
  Output: RGB (B, 3, R, R) in about [-1, 1], not composited.

Two details where the PyTorch port's forward differs from the authors' graph, and where we follow the authors:
1. The authors add the 4x4 encoder feature E[4] to the reshaped dense output at the start of the decoder
   (`x = x + E_features[2]` in `G_4x4`); the port's `Block0.forward` leaves it out. The network graph
   pickled in the authors' .pkl (which dnnlib rebuilds from source embedded in the pickle) cannot be
   inspected here, so `CoModConfig.skip_4x4=False` keeps the port's variant available.
2. The authors' graph applies `tf.nn.dropout(x, 0.5)` to x_global unconditionally (the `if is_training:`
   guard is commented out), so the released model is stochastic at test time through it; the port uses
   `nn.Dropout` in eval mode, i.e. no dropout. Here dropout is an explicit per-sample random draw (see
   `forward`), on by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from baselines.comod.layers import ConvLayer, StyledConv, ToRGB
from baselines.stylegan_ops import FullyConnectedLayer, normalize_2nd_moment


@dataclass(frozen=True)
class CoModConfig:
    """Architecture; the defaults are the released Places2 512 generator (the authors' G_synthesis defaults
    with resolution 512; the port hard-codes the same)."""

    resolution: int = 512
    latent_size: int = 512  # z
    dlatent_size: int = 512  # w
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    fmap_base: int = 16 << 10
    fmap_max: int = 512
    fmap_min: int = 1
    num_channels: int = 3
    resample_kernel: tuple[int, ...] = (1, 3, 3, 1)
    dropout_rate: float = 0.5
    # add the 4x4 encoder feature to the decoder's first map, as the authors' graph does; False reproduces
    # the PyTorch port's forward, which leaves it out (see the module docstring)
    skip_4x4: bool = True

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"CoModConfig.resolution must be a power of two >= 8, got {self.resolution}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"CoModConfig.dropout_rate must be in [0, 1), got {self.dropout_rate}")

    @property
    def log2_resolution(self) -> int:
        return self.resolution.bit_length() - 1

    def nf(self, stage: int) -> int:
        """Feature maps at `stage` (resolution 2**(stage + 1)), as the authors' `nf`."""
        return int(min(max(int(self.fmap_base / 2.0**stage), self.fmap_min), self.fmap_max))

    @property
    def global_size(self) -> int:
        """Size of x_global, the encoder's global code: 2 * nf(1)."""
        return 2 * self.nf(1)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """(1, H, W) of the per-sample noise of each modulated conv, in forward order (4x4, then 2 per res)."""
        sizes = [4] + [2**r for r in range(3, self.log2_resolution + 1) for _ in range(2)]
        return [(1, s, s) for s in sizes]


class Mapping(nn.Module):
    """z (B, latent_size) -> w (B, dlatent_size). Keys `G_mapping.Dense{i}.{weight,bias}`."""

    def __init__(self, config: CoModConfig) -> None:
        super().__init__()
        layers = {}
        dim = config.latent_size
        for i in range(config.mapping_layers):
            out = config.dlatent_size if i == config.mapping_layers - 1 else config.mapping_fmaps
            layers[f"Dense{i}"] = FullyConnectedLayer(dim, out, "lrelu", lr_multiplier=config.mapping_lrmul)
            dim = out
        self.G_mapping = nn.ModuleDict(layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.G_mapping.values():
            x = layer(x)
        return x


class EncoderBlock(nn.Module):
    """At resolution r: 3x3 conv (the skip feature), then FIR blur + 3x3 stride-2 conv to r/2."""

    def __init__(self, in_ch: int, out_ch: int, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.Conv0 = ConvLayer(in_ch, in_ch, 3, taps)
        self.Conv1_down = ConvLayer(in_ch, out_ch, 3, taps, downsample=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.Conv0(x)
        return self.Conv1_down(feature), feature


class FromRGB(nn.Module):
    """1x1 conv of the 4-channel input (keep - 0.5, masked RGB)."""

    def __init__(self, in_ch: int, out_ch: int, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.FromRGB = ConvLayer(in_ch, out_ch, 1, taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FromRGB(x)


class EncoderFinal(nn.Module):
    """At 4x4: 3x3 conv (the skip feature), flatten, dense to 2 * nf(1) with lrelu (dropout is applied by
    the caller)."""

    def __init__(self, config: CoModConfig) -> None:
        super().__init__()
        self.Conv = ConvLayer(config.nf(2), config.nf(1), 3, config.resample_kernel)
        self.Dense0 = FullyConnectedLayer(config.nf(1) * 16, config.global_size, "lrelu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.Conv(x)
        return self.Dense0(feature.flatten(1)), feature


class DecoderFirst(nn.Module):
    """4x4: dense x_global -> (nf(1), 4, 4), + E[4] (if `skip_4x4`), modulated conv, ToRGB."""

    def __init__(self, config: CoModConfig, mod_size: int) -> None:
        super().__init__()
        self.channels = config.nf(1)
        self.skip = config.skip_4x4
        self.Dense = FullyConnectedLayer(config.global_size, self.channels * 16, "lrelu")
        self.Conv = StyledConv(self.channels, self.channels, mod_size, taps=config.resample_kernel)
        self.ToRGB = ToRGB(self.channels, mod_size, config.num_channels, upsample=False)

    def forward(self, x_global: torch.Tensor, feature: torch.Tensor, mod: torch.Tensor,
                noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Dense(x_global).view(-1, self.channels, 4, 4)
        if self.skip:
            x = x + feature
        x = self.Conv(x, mod, noise)
        return x, self.ToRGB(x, mod)


class DecoderBlock(nn.Module):
    """Resolution r: 2x up modulated conv, + E[r], modulated conv, ToRGB added to the upsampled RGB."""

    def __init__(self, in_ch: int, out_ch: int, mod_size: int, config: CoModConfig) -> None:
        super().__init__()
        taps = config.resample_kernel
        self.Conv0_up = StyledConv(in_ch, out_ch, mod_size, upsample=True, taps=taps)
        self.Conv1 = StyledConv(out_ch, out_ch, mod_size, taps=taps)
        self.ToRGB = ToRGB(out_ch, mod_size, config.num_channels, upsample=True, taps=taps)

    def forward(self, x: torch.Tensor, rgb: torch.Tensor, feature: torch.Tensor, mod: torch.Tensor,
                noises: tuple[torch.Tensor | None, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv0_up(x, mod, noises[0]) + feature
        x = self.Conv1(x, mod, noises[1])
        return x, self.ToRGB(x, mod, skip=rgb)


class Synthesis(nn.Module):
    """Encoder `E` and decoder `G_4x4` ... `G_RxR`; see the module docstring."""

    def __init__(self, config: CoModConfig) -> None:
        super().__init__()
        self.config = config
        taps = config.resample_kernel
        top = config.log2_resolution
        encoder: dict[str, nn.Module] = {}
        for res in range(top, 2, -1):
            name = f"{2**res}x{2**res}"
            if res == top:
                encoder[f"{name}_0"] = FromRGB(config.num_channels + 1, config.nf(res - 1), taps)
            encoder[name] = EncoderBlock(config.nf(res - 1), config.nf(res - 2), taps)
        encoder["4x4"] = EncoderFinal(config)
        self.E = nn.ModuleDict(encoder)
        mod_size = config.dlatent_size + config.global_size
        self.G_4x4 = DecoderFirst(config, mod_size)
        for res in range(3, top + 1):
            block = DecoderBlock(config.nf(res - 2), config.nf(res - 1), mod_size, config)
            self.add_module(f"G_{2**res}x{2**res}", block)

    def forward(self, image: torch.Tensor, keep: torch.Tensor, w: torch.Tensor, dropout_keep: torch.Tensor | None,
                noises: list[torch.Tensor] | None) -> torch.Tensor:
        """image (B, C, R, R) in [-1, 1]; keep (B, 1, R, R), 1 = known; w (B, dlatent_size);
        dropout_keep: (B, global_size) {0, 1} map of x_global entries kept (None = no dropout);
        noises: per-sample noise maps in `CoModConfig.noise_shapes` order (None = no noise).
        Returns the raw RGB (B, C, R, R)."""
        x = torch.cat([keep - 0.5, image * keep], dim=1)
        features: dict[int, torch.Tensor] = {}
        top = self.config.log2_resolution
        x = self.E[f"{2**top}x{2**top}_0"](x)
        for res in range(top, 2, -1):
            x, features[res] = self.E[f"{2**res}x{2**res}"](x)
        x_global, features[2] = self.E["4x4"](x)
        if dropout_keep is not None:
            x_global = x_global * dropout_keep / (1.0 - self.config.dropout_rate)
        mod = torch.cat([w, x_global], dim=1)
        noise = iter(noises) if noises is not None else None
        x, rgb = self.G_4x4(x_global, features[2], mod, next(noise) if noise else None)
        for res in range(3, top + 1):
            pair = (next(noise), next(noise)) if noise else (None, None)
            x, rgb = getattr(self, f"G_{2**res}x{2**res}")(x, rgb, features[res], mod, pair)
        return rgb


class CoModGenerator(nn.Module):
    """Mapping + synthesis, keys `G_mapping.*` and `G_synthesis.*` as in the port's `Generator`."""

    def __init__(self, config: CoModConfig | None = None) -> None:
        super().__init__()
        self.config = config or CoModConfig()
        self.G_mapping = Mapping(self.config)
        self.G_synthesis = Synthesis(self.config)

    @torch.no_grad()
    def mean_w(self, count: int, seed: int) -> torch.Tensor:
        """The average w of `count` latents drawn from a CPU generator seeded `seed`; (1, dlatent_size).

        The port's file carries no `dlatent_avg` (the authors' tracked average), so truncation uses this
        estimate, as the port's `mean_latent(4096)` does."""
        z = torch.randn(count, self.config.latent_size, generator=torch.Generator().manual_seed(seed))
        device = next(self.parameters()).device
        return self.G_mapping(z.to(device)).mean(dim=0, keepdim=True)

    def forward(self, image: torch.Tensor, keep: torch.Tensor, z: torch.Tensor,
                dropout_keep: torch.Tensor | None = None, noises: list[torch.Tensor] | None = None,
                truncation_psi: float = 1.0,
                w_avg: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, C, R, R) in [-1, 1], keep (B, 1, R, R) 1 = known, z (B, latent_size); the rest as in
        `Synthesis.forward`; truncation_psi != 1 needs w_avg (1, dlatent_size). Returns raw RGB (B, C, R, R)."""
        w = self.G_mapping(z)
        if truncation_psi != 1.0:
            if w_avg is None:
                raise ValueError("truncation_psi != 1 needs w_avg (see CoModGenerator.mean_w)")
            w = w_avg + truncation_psi * (w - w_avg)
        return self.G_synthesis(image, keep, w, dropout_keep, noises)
