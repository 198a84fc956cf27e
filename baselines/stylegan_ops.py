"""StyleGAN2 low-level ops in plain PyTorch, shared by the MAT and Co-Mod-GAN generators.

One implementation each of: the separable FIR resampling filter ([1, 3, 3, 1] by default), "upfirdn2d"
(zero-insert upsample, pad / crop, FIR filter, keep every n-th pixel), 2x FIR up/downsampling convolutions
that pad once, bias + activation ('linear' or leaky ReLU 0.2 times sqrt(2)), the modulated / demodulated
convolution, 2nd-moment normalisation and the equalised-learning-rate fully connected layer. Written from
the op definitions of StyleGAN2-ADA (`torch_utils.ops`, which MAT carries) and of the TF StyleGAN2 /
rosinality port that Co-Mod-GAN follows; only the cases the two generators use are supported (factors 1
and 2). Tensors are (B, C, H, W) unless stated.

Where the two models' conventions differ, the difference is a parameter here, not a second copy:

- FIR gain: MAT stores its filters normalised to sum 1 and applies the up**2 gain at run time
  (StyleGAN2-ADA); Co-Mod-GAN's buffers (`kernel`) carry the gain baked in. `fir_filter(gain=...)`
  builds either; `upsample2d(gain=...)` and `conv2d_resample(filter_gain=...)` default to up**2 and take
  1.0 for a filter that already carries it.
- Kernel flip on upsampling: `flip_weight` as in StyleGAN2-ADA (True = correlation, i.e. F.conv2d semantics,
  everywhere; False = true convolution). MAT uses True throughout (so its transposed convolution flips the
  kernel); Co-Mod-GAN's port, like TF StyleGAN2 and ADA's own synthesis layers, uses `flip_weight = (up == 1)`.
- Bias of a linear layer without activation: MAT adds it after the matmul (ADA's addmm is commented out in
  MAT's `FullyConnectedLayer`), Co-Mod-GAN's `EqualLinear` fuses it (`F.linear` -> addmm). The two sum in a
  different order and can differ in the last float bit, so `FullyConnectedLayer(fused_bias=...)` keeps both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def fir_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0), gain: float = 1.0) -> torch.Tensor:
    """The separable low-pass filter outer(taps, taps), normalised to sum 1 then scaled by `gain`; (k, k) float32."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    f = f / f.sum()
    return f * gain if gain != 1 else f


def fir_padding(taps: int, up: int = 1, down: int = 1, kernel_size: int = 1, padding: int = 0) -> tuple[int, int]:
    """(before, after) padding, per axis, of the FIR step of a resampling op, as StyleGAN2-ADA's `conv2d_resample`.

    `taps`: filter length; `padding`: the convolution's own padding (counted on the upsampled grid). With
    up > 1 and kernel_size > 1 this is the padding of the filter that follows a stride-`up` transposed
    convolution; with kernel_size 1 that of plain FIR upsampling; with down > 1 that of the filter that
    precedes a stride-`down` convolution (or subsampling). Negative values crop.
    """
    p0 = p1 = padding
    if up > 1:
        p0 += (taps + up - 1) // 2
        p1 += (taps - up) // 2
    if down > 1:
        p0 += (taps - down + 1) // 2
        p1 += (taps - down) // 2
    if up > 1 and kernel_size > 1:
        p0 -= kernel_size - 1
        p1 -= kernel_size - up
    return p0, p1


def upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
    pad: tuple[int, int] | tuple[int, int, int, int] = (0, 0), gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by inserting zeros, pad, convolve with `f`, keep every `down`-th pixel.

    x: (B, C, H, W); f: (kh, kw) float32; pad: (before, after) for both axes or (x0, x1, y0, y1), negative
    values crop. The filter is applied as a true convolution (flipped), scaled by `gain`, to every channel
    alike. Returns (B, C, (H*up + y0 + y1 - kh) // down + 1, (W*up + x0 + x1 - kw) // down + 1).
    """
    x0, x1, y0, y1 = (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else pad
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, (max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)))
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    kernel = (f * gain if gain != 1 else f).to(x.dtype).flip([0, 1])
    x = F.conv2d(x, kernel[None, None].expand(c, 1, *kernel.shape), groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, gain: float | None = None) -> torch.Tensor:
    """FIR upsampling that keeps the DC level: (B, C, H, W) -> (B, C, up*H, up*W).

    gain: applied to `f` at run time; None = up**2 (for `f` summing to 1), 1.0 for a filter stored with it.
    """
    p0, p1 = fir_padding(f.shape[-1], up=up)
    return upfirdn2d(x, f, up=up, pad=(p0, p1), gain=float(up * up) if gain is None else gain)


def conv2d_resample(
    x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1, padding: int = 0,
    groups: int = 1, flip_weight: bool = True, filter_gain: float | None = None,
) -> torch.Tensor:
    """x (B, Cin, H, W) with w (Cout, Cin/groups, k, k), with optional 2x up- or downsampling.

    flip_weight: True = correlation (F.conv2d semantics), False = true convolution (see the module docstring).
    Downsampling: FIR-filter the padded input, then a stride-2 convolution. Upsampling: a stride-2
    transposed convolution, then FIR filtering with gain `filter_gain` (None = up**2, for `f` summing to 1).
    Padding is counted on the upsampled grid, so a k=3, padding=1 layer maps H to H/2 (down) or 2H (up).
    """
    if up == 1 and down == 1:
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=padding, groups=groups)
    if f is None:
        raise ValueError("conv2d_resample: resampling needs a FIR filter f")
    taps = f.shape[-1]
    k = w.shape[-1]
    if down == 2 and up == 1 and k > 1:
        x = upfirdn2d(x, f, pad=fir_padding(taps, down=down, padding=padding))
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), stride=down, groups=groups)
    if up == 2 and down == 1 and k > 1:
        out_channels, in_per_group = w.shape[:2]
        w = w.reshape(groups, out_channels // groups, in_per_group, k, k).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_channels // groups, k, k)
        p0, p1 = fir_padding(taps, up=up, kernel_size=k, padding=padding)
        crop = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, w.flip([2, 3]) if flip_weight else w, stride=up, padding=crop, groups=groups)
        gain = float(up * up) if filter_gain is None else filter_gain
        return upfirdn2d(x, f, pad=(p0 + crop, p1 + crop), gain=gain)
    raise ValueError(f"conv2d_resample: unsupported up={up}, down={down}, kernel {k}")


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: int = 1,
    padding: int = 0, resample_filter: torch.Tensor | None = None, flip_weight: bool = True,
    filter_gain: float | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution, 'fused': one grouped convolution with per-sample weights.

    x (B, Cin, H, W); weight (1, Cout, Cin, k, k) or (Cout, Cin, k, k), already multiplied by its equalised-lr
    gain; styles (B, Cin): per-sample scales of the input channels. With `demodulate` each output channel's
    weights are rescaled to unit L2 norm (+1e-8). Returns (B, Cout, H*up, W*up) for 'same' `padding`; the
    resampling arguments are those of `conv2d_resample`.
    """
    batch, in_channels, height, width = x.shape
    w = weight * styles.view(batch, 1, in_channels, 1, 1)  # (B, Cout, Cin, k, k)
    if demodulate:
        w = w * (w.pow(2).sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    out_channels, k = w.shape[1], w.shape[-1]
    x = x.reshape(1, batch * in_channels, height, width)
    x = conv2d_resample(x, w.reshape(batch * out_channels, in_channels, k, k), resample_filter, up=up,
                        padding=padding, groups=batch, flip_weight=flip_weight, filter_gain=filter_gain)
    return x.reshape(batch, out_channels, *x.shape[2:])


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None,
             dim: int = 1) -> torch.Tensor:
    """Add the bias along `dim`, apply 'linear' or 'lrelu' (slope 0.2), then scale by `gain`.

    x: any shape; b: (x.shape[dim],) or None; gain: default 1 for 'linear', sqrt(2) for 'lrelu'.
    """
    if b is not None:
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        x = x + b.reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = LRELU_GAIN if gain is None else gain
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if gain is not None and gain != 1:
        x = x * gain
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) along `dim` (the mapping networks' input normalisation of z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """y = act(x @ (W * lr / sqrt(in))^T + b * lr); x (..., in) -> (..., out). Keys: weight (out, in), bias (out,).

    The weight is stored unscaled (unit variance / lr) and scaled at run time (equalised learning rate).
    fused_bias: with activation 'linear', add the bias inside `F.linear` (addmm; Co-Mod-GAN's `EqualLinear`)
    instead of after the matmul (MAT); see the module docstring.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear", lr_multiplier: float = 1.0,
                 bias_init: float = 0.0, fused_bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.activation = activation
        self.fused_bias = fused_bias
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        bias = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.fused_bias and self.activation == "linear":
            return F.linear(x, weight, bias)
        return bias_act(x.matmul(weight.t()), bias, self.activation, dim=x.ndim - 1)
