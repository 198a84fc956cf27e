"""LaMa's generator (Suvorov et al., WACV 2022): the fast-Fourier-convolution ResNet of the authors' big-lama.

Layer layout, constants and parameter names follow advimman/lama (`FFCResNetGenerator` in
`saicinpainting/training/modules/ffc.py`, built with `configs/training/big-lama.yaml`), so the generator part of
the authors' Lightning checkpoint `big-lama/models/best.ckpt` (keys `generator.model.<i>...`, once converted
to safetensors) loads strictly into `FFCResNetGenerator` after `generator_state_dict` strips the prefix.

The fast-Fourier-convolution blocks (`FFCBNReLU`, `FFCResnetBlock`, ...) are the shared ones of `baselines.ffc`
(also used by MAE-FAR); big-lama disables the "local Fourier unit" and gating, and uses no squeeze-excitation
or learnable spatial transforms.

Generator tensors: input float32 (B, 4, H, W) = the image in [0, 1] with hole pixels zeroed, then the mask
(1 = hole); H and W multiples of 2**n_downsampling. Output float32 (B, 3, H, W) in [0, 1] (sigmoid): the
whole predicted image, not composited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from baselines.ffc import ConcatParts, FFCBNReLU, FFCResnetBlock
from misato.checkpoints import sub_state

# Prefix of the generator's entries in the authors' training-module state dict (`module.generator.model`).
GENERATOR_PREFIX = "generator."


@dataclass(frozen=True)
class FFCResNetConfig:
    """Architecture; the defaults are big-lama's (`configs/training/big-lama.yaml`, generator kind ffc_resnet).

    in_channels: 3 image channels + 1 mask channel. ngf: channels after the stem. n_downsampling: stride-2
    stages (input sides must be multiples of 2**n_downsampling). n_blocks: FFC residual blocks at the
    bottleneck. ratio_global: share of global (spectral) channels in the residual blocks and at the output of
    the last downsampling (`resnet_conv_kwargs.ratio_gin`; the stem and the other downsamplings are all local).
    max_features: channel cap of every stage.
    """

    in_channels: int = 4
    out_channels: int = 3
    ngf: int = 64
    n_downsampling: int = 3
    n_blocks: int = 18
    ratio_global: float = 0.75
    max_features: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio_global < 1.0:
            raise ValueError(f"ratio_global must be in [0, 1), got {self.ratio_global}")
        if min(self.in_channels, self.out_channels, self.ngf, self.n_downsampling, self.max_features) < 1:
            raise ValueError(f"invalid FFC ResNet config {self}")
        if self.n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}")

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.n_downsampling


class FFCResNetGenerator(nn.Module):
    """big-lama's generator; `model` is an `nn.Sequential` indexed like the authors' (state-dict keys `model.<i>...`).

    Layout: reflect pad 3, 7x7 FFC stem (local), n_downsampling stride-2 3x3 FFC stages (the last one produces
    the global part), n_blocks FFC residual blocks, concatenation, n_downsampling (ConvTranspose 3x3 stride 2,
    BN, ReLU) stages, reflect pad 3, 7x7 conv, sigmoid. See the module docstring for the tensors.
    """

    def __init__(self, config: FFCResNetConfig = FFCResNetConfig()) -> None:
        super().__init__()
        self.config = config
        ngf, cap, n_down = config.ngf, config.max_features, config.n_downsampling
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), FFCBNReLU(config.in_channels, ngf, 7, 0.0, 0.0)]
        for i in range(n_down):
            ratio_gout = config.ratio_global if i == n_down - 1 else 0.0
            layers.append(
                FFCBNReLU(min(cap, ngf * 2**i), min(cap, ngf * 2 ** (i + 1)), 3, 0.0, ratio_gout, stride=2, padding=1)
            )
        bottleneck = min(cap, ngf * 2**n_down)
        layers += [FFCResnetBlock(bottleneck, config.ratio_global) for _ in range(config.n_blocks)]
        layers.append(ConcatParts())
        for i in range(n_down):
            channels = ngf * 2 ** (n_down - i)
            c_in, c_out = min(cap, channels), min(cap, channels // 2)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(min(cap, ngf), config.out_channels, kernel_size=7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W) in [0, 1]; H, W multiples of `config.multiple`."""
        multiple = self.config.multiple
        if x.shape[1] != self.config.in_channels or x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"FFC ResNet: expected (B, {self.config.in_channels}, H, W) with H, W multiples of "
                f"{multiple}, got {tuple(x.shape)}"
            )
        return self.model(x)


def generator_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator's entries of the authors' training-module state dict, prefix `generator.` removed.

    Every other entry (discriminator, losses, evaluators) is ignored on purpose; an exact `generator.` prefix is
    required, so an averaged copy (`generator_average.`) would not be picked by mistake.
    """
    return sub_state(state, GENERATOR_PREFIX)


def authors_state_dict(generator: FFCResNetGenerator) -> dict[str, torch.Tensor]:
    """Our generator's state dict in the authors' checkpoint layout (`generator.model.<i>...`)."""
    return {GENERATOR_PREFIX + key: value for key, value in generator.state_dict().items()}
