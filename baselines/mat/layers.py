"""MAT's StyleGAN2-style layers: equalised-lr conv layers, modulated convs, the mapping network.

Parameter and buffer names follow the authors' state dict (`weight`, `bias`, `resample_filter`, `affine`,
`noise_const`, `noise_strength`, `fc0`..., `w_avg`), so a released generator loads with `strict=True`.
Weights are stored unscaled and multiplied by 1/sqrt(fan_in) at run time (equalised learning rate). The ops
and the fully connected layer are the shared ones of `baselines.stylegan_ops`, in MAT's conventions: FIR
filters stored with sum 1 (the up**2 gain applied at run time), correlation semantics (`flip_weight=True`),
bias added after the matmul. The modules stay here because their key layout is MAT's own (every conv carries
a `resample_filter` buffer, noise is `noise_const` / `noise_strength`; Co-Mod-GAN's port names these
differently).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from baselines.mat.randomness import SampleRandomness
from baselines.stylegan_ops import (
    FullyConnectedLayer,
    bias_act,
    conv2d_resample,
    fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")


class Conv2dLayer(nn.Module):
    """Equalised-lr k x k convolution with optional 2x up/down FIR resampling, bias and activation.

    (B, Cin, H, W) -> (B, Cout, H*up/down, W*up/down).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: str = "linear",
                 up: int = 1, down: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", fir_filter())
        self.activation = activation
        self.up, self.down = up, down
        self.padding = kernel_size // 2
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv2d_resample(x, self.weight * self.weight_gain, self.resample_filter, self.up, self.down, self.padding)
        return bias_act(x, self.bias, self.activation)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by an affine map of the style, optionally demodulated.

    x (B, Cin, H, W), style (B, style_dim) -> (B, Cout, H*up, W*up); no bias (the caller adds it).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 up: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("resample_filter", fir_filter())
        self.affine = FullyConnectedLayer(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.up = up
        self.padding = kernel_size // 2
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return modulated_conv2d(x, self.weight * self.weight_gain, self.affine(style), self.demodulate, up=self.up,
                                padding=self.padding, resample_filter=self.resample_filter)


class StyleConv(nn.Module):
    """Modulated conv + per-pixel noise (optional) + bias + lrelu.

    Noise modes: "const" adds the stored `noise_const` (resolution x resolution), "random" a fresh
    N(0, 1) map per sample from that sample's generator, "none" nothing; each scaled by `noise_strength`.
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, resolution: int, up: int = 1,
                 use_noise: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, demodulate=True, up=up)
        self.use_noise = use_noise
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise_mode: str, rng: SampleRandomness) -> torch.Tensor:
        # Noise stays here, not in `stylegan_ops`: the maths is one multiply-add, but where the noise comes from
        # (a stored buffer or per-sample draws) and the key names are MAT's own.
        x = self.conv(x, style)
        if self.use_noise and noise_mode == "random":
            x = x + rng.normal((1, *x.shape[2:])).to(x) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return bias_act(x, self.bias, "lrelu")


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias; adds the 2x FIR-upsampled previous image when given."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", fir_filter())

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = bias_act(self.conv(x, style), self.bias)
        if skip is not None:
            if skip.shape != out.shape:
                skip = upsample2d(skip, self.resample_filter)
            out = out + skip
        return out


class MappingNet(nn.Module):
    """z (B, z_dim) -> w broadcast to (B, num_ws, w_dim): 2nd-moment normalisation, `num_layers` lrelu FCs (lr 0.01).

    With truncation_psi != 1, w is pulled towards the tracked average `w_avg`: w_avg + psi * (w - w_avg).
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01) -> None:
        super().__init__()
        self.num_ws = num_ws
        self.num_layers = num_layers
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], "lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        x = normalize_2nd_moment(z.float())
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x
