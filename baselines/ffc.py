"""Fast Fourier convolution (Chi et al., NeurIPS 2020) building blocks, shared by LaMa and MAE-FAR.

One implementation for both networks that use it: LaMa's big-lama generator (`baselines.lama_ffc`, after
advimman/lama `saicinpainting/training/modules/ffc.py`) and MAE-FAR's FAR generator (`baselines.maefar.network`,
after ewrfcas/MAE-FAR `ACR/networks/ffc.py`, itself derived from LaMa's). Module and parameter names follow
those files (`convl2l`, `convl2g`, `convg2l`, `convg2g.{conv1,fu,conv2}`, `bn_l`, `bn_g`, ...), so both
authors' checkpoints load strictly into the networks built from these blocks.

An FFC splits the channels into a local part (ordinary convolutions) and a global part (a 1x1 convolution in the
2-D real FFT domain, whose receptive field is the whole image); four branches mix them: local->local,
local->global, global->local (reflect-padded convolutions) and global->global (`SpectralTransform`). Neither
network enables the "local Fourier unit", gating, squeeze-excitation, learnable spatial transforms, dilation or a
strided global->global branch, so those variants are not implemented.

Activations between FFC layers are (local, global) pairs (`Pair`) of float32 (B, C_*, H, W) tensors; a part is
None when it has no channels. Both networks run in float32 (their inpainters cast the inputs; no autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Local and global halves of an FFC activation; either may be absent (no channels of that kind).
Pair = tuple[torch.Tensor | None, torch.Tensor | None]


def split_channels(channels: int, ratio_global: float) -> tuple[int, int]:
    """(local, global) channel counts; the global count is truncated as in the authors' `int(c * ratio)`."""
    n_global = int(channels * ratio_global)
    return channels - n_global, n_global


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def concat_parts(x: Pair) -> torch.Tensor:
    """(local, global) pair -> one (B, C_local + C_global, H, W) tensor, local channels first."""
    parts = [part for part in x if part is not None]
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


class FourierUnit(nn.Module):
    """1x1 convolution + BN + ReLU on the real and imaginary parts of the orthonormal 2-D real FFT.

    (B, C, H, W) -> (B, C_out, H, W). Channel order in the frequency domain: real and imaginary part of
    channel 0, then of channel 1, ... (as the authors' `view` after stacking them on a last axis).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * in_channels, 2 * out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        spectrum = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")  # (B, C, H, W // 2 + 1) complex
        parts = torch.stack((spectrum.real, spectrum.imag), dim=2).flatten(1, 2)  # (B, 2C, H, W // 2 + 1)
        parts = F.relu(self.bn(self.conv_layer(parts)))
        parts = parts.unflatten(1, (-1, 2))  # (B, C_out, 2, H, W // 2 + 1)
        spectrum = torch.complex(parts[:, :, 0].contiguous(), parts[:, :, 1].contiguous())
        return torch.fft.irfftn(spectrum, s=(height, width), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """The global->global branch: 1x1 conv to C_out/2 (+BN+ReLU), a Fourier unit with a residual, 1x1 conv to C_out.

    (B, C_in, H, W) -> (B, C_out, H, W); stride 1.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU()
        )
        self.fu = FourierUnit(hidden, hidden)
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


class FFC(nn.Module):
    """Fast Fourier convolution without bias. Input and output are (local, global) pairs of (B, C_*, H, W).

    ratio_gin / ratio_gout: share of global channels in the input / output (0 = all local). The local-input
    branches are `kernel_size` convolutions with `stride` and reflect `padding`. A branch exists only where both
    its input and output parts have channels (the authors' `nn.Identity` placeholders have no parameters, so the
    state-dict keys agree).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
        stride: int = 1, padding: int = 0,
    ) -> None:
        super().__init__()
        in_l, in_g = split_channels(in_channels, ratio_gin)
        out_l, out_g = split_channels(out_channels, ratio_gout)
        if in_g and out_g and stride != 1:
            raise ValueError("a strided global->global branch is not implemented (neither LaMa nor MAE-FAR uses one)")

        def conv(c_in: int, c_out: int) -> nn.Conv2d | None:
            if not (c_in and c_out):
                return None
            return nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False, padding_mode="reflect")

        self.convl2l = conv(in_l, out_l)
        self.convl2g = conv(in_l, out_g)
        self.convg2l = conv(in_g, out_l)
        self.convg2g = SpectralTransform(in_g, out_g) if in_g and out_g else None
        self.out_channels = (out_l, out_g)

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = x

        def apply(module: nn.Module | None, value: torch.Tensor | None) -> torch.Tensor | None:
            return None if module is None or value is None else module(value)

        out_l = _add(apply(self.convl2l, x_l), apply(self.convg2l, x_g)) if self.out_channels[0] else None
        out_g = _add(apply(self.convl2g, x_l), apply(self.convg2g, x_g)) if self.out_channels[1] else None
        return out_l, out_g


class FFCBNReLU(nn.Module):
    """FFC, then BatchNorm and ReLU on each present part (the authors' `FFC_BN_ACT` with ReLU).

    Same arguments as `FFC`. Accepts a plain (B, C_in, H, W) tensor (all local) or a (local, global) pair;
    returns a pair.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
        stride: int = 1, padding: int = 0,
    ) -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding)
        out_l, out_g = self.ffc.out_channels
        self.bn_l = nn.BatchNorm2d(out_l) if out_l else None
        self.bn_g = nn.BatchNorm2d(out_g) if out_g else None

    def forward(self, x: torch.Tensor | Pair) -> Pair:
        x_l, x_g = self.ffc((x, None) if isinstance(x, torch.Tensor) else x)
        x_l = None if x_l is None or self.bn_l is None else F.relu(self.bn_l(x_l))
        x_g = None if x_g is None or self.bn_g is None else F.relu(self.bn_g(x_g))
        return x_l, x_g


def ffc_3x3(channels: int, ratio_global: float) -> FFCBNReLU:
    """The residual blocks' layer: 3x3 FFC (reflect padding 1, stride 1) + BN + ReLU, C -> C, same global ratio."""
    return FFCBNReLU(channels, channels, 3, ratio_global, ratio_global, padding=1)


class FFCResnetBlock(nn.Module):
    """Two 3x3 FFC+BN+ReLU layers (reflect padding) with an identity shortcut on both parts; pair in, pair out.

    Layer names `conv1`, `conv2` as LaMa's. MAE-FAR's block names them `ffc1`, `ffc2` in its checkpoint and is
    therefore a separate class, `baselines.maefar.network.MaeFarFFCResnetBlock`, built from the same `ffc_3x3`.
    """

    def __init__(self, channels: int, ratio_global: float) -> None:
        super().__init__()
        self.conv1 = ffc_3x3(channels, ratio_global)
        self.conv2 = ffc_3x3(channels, ratio_global)

    def forward(self, x: Pair) -> Pair:
        y_l, y_g = self.conv2(self.conv1(x))
        return _add(x[0], y_l), _add(x[1], y_g)


class ConcatParts(nn.Module):
    """`concat_parts` as a module (for `nn.Sequential`): (local, global) pair -> one tensor, local channels first."""

    def forward(self, x: Pair) -> torch.Tensor:
        return concat_parts(x)
