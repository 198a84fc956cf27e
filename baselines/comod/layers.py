"""StyleGAN2 building blocks of Co-Mod-GAN in plain torch, named as in the PyTorch port's state dict.

Weights follow the port's (rosinality-style) convention, which its converted Places2 file uses: equalized
learning rate (a stored weight of unit variance is multiplied by 1/sqrt(fan_in) at run time), linear weights
(out, in), conv weights (out, in, k, k), modulated conv weights (1, out, in, k, k). Biases with activation
follow the "bias, leaky ReLU(0.2), times sqrt(2)" rule of StyleGAN2's `fused_bias_act`. The FIR resampling
filter [1, 3, 3, 1] is a persistent buffer (`kernel`), as in the port's file.

The maths (FIR resampling, bias + activation, modulated conv, the dense layer) is the shared implementation
of `baselines.stylegan_ops`, in the port's conventions: FIR buffers stored with the up**2 gain baked in
(`filter_gain=1.0` at run time), no kernel flip in the upsampling transposed conv (`flip_weight = (up == 1)`),
dense bias fused into `F.linear` (`fused_bias=True`). The modules stay here because their key layout is the
port's own (`kernel`, `modulation`, `noise.weight`, the encoder's `0.kernel, 1.weight, 2.bias` Sequential).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from baselines.stylegan_ops import (
    FullyConnectedLayer,
    bias_act,
    fir_filter,
    fir_padding,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)


class Blur(nn.Module):
    """FIR filtering with a fixed (K, K) kernel buffer (key `kernel`) and padding (before, after)."""

    def __init__(self, taps: tuple[int, ...], pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", fir_filter(taps, gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (zero insertion, filter with gain 4); key `kernel`."""

    def __init__(self, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("kernel", fir_filter(taps, 4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(x, self.kernel, gain=1.0)  # the gain is in the buffer


class EqualConv2d(nn.Module):
    """Conv with equalized lr, 'same' padding or stride 2 without padding (after a Blur). Keys: weight[, bias].

    Not the shared `conv2d_resample`: in the port's layout the FIR filter and the strided conv are separate
    modules (`0.kernel`, `1.weight`), so each does its own step.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class BiasLeakyReLU(nn.Module):
    """leaky_relu(x + bias, 0.2) * sqrt(2) with a learned bias (key `bias`) broadcast over dim 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, "lrelu")


class ConvLayer(nn.Sequential):
    """Encoder conv + bias + lrelu. Keys `0.weight, 1.bias`; with downsample `0.kernel, 1.weight, 2.bias`
    (FIR blur, then a stride-2 conv without padding: (H, W) -> (H/2, W/2))."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, taps: tuple[int, ...],
                 downsample: bool = False) -> None:
        layers: list[nn.Module] = []
        if downsample:
            layers.append(Blur(taps, fir_padding(len(taps), down=2, padding=kernel_size // 2)))
            layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride=2, bias=False))
        else:
            layers.append(EqualConv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False))
        layers.append(BiasLeakyReLU(out_ch))
        super().__init__(*layers)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv ('fused': one grouped conv with per-sample weights).

    Keys: weight (1, out, in, k, k), modulation.{weight, bias} (a dense layer style_dim -> in), and with
    upsample `blur.kernel`. forward(x (B, in, H, W), style (B, style_dim)) -> (B, out, H', W'), H' = 2H with
    upsample (transposed conv, stride 2, then FIR filter with gain 4), else H ('same' padding).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, taps: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = FullyConnectedLayer(style_dim, in_ch, bias_init=1.0, fused_bias=True)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            # holds the filter (key `blur.kernel`, gain 4); `modulated_conv2d` applies it after the transposed conv
            pad = fir_padding(len(taps), up=2, kernel_size=kernel_size, padding=kernel_size // 2)
            self.blur = Blur(taps, pad, gain=4.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        up = 2 if self.upsample else 1
        return modulated_conv2d(x, self.weight * self.scale, self.modulation(style), self.demodulate, up=up,
                                padding=self.weight.shape[-1] // 2,
                                resample_filter=self.blur.kernel if self.upsample else None,
                                flip_weight=not self.upsample, filter_gain=1.0)


class NoiseInjection(nn.Module):
    """x + weight * noise; key `weight` (1,) (TF `noise_strength`). noise: (B, 1, H, W) or None (no noise).

    Not shared with MAT: the maths is one multiply-add, but the noise comes from the caller here (MAT's layer
    draws it or reads a stored map) and the key (`noise.weight` (1,) vs MAT's `noise_strength` ()) differs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return x if noise is None else x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally 2x up), noise, bias + lrelu. Keys conv.*, noise.weight, activate.bias."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False,
                 taps: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample, taps=taps)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation + bias, added to the 2x FIR-upsampled previous RGB image.

    Keys: conv.*, bias (1, C, 1, 1), and with upsample `upsample.kernel`.
    """

    def __init__(self, in_ch: int, style_dim: int, out_ch: int, upsample: bool,
                 taps: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(taps)
        self.conv = ModulatedConv2d(in_ch, out_ch, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)
