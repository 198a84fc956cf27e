"""MAT's mask-aware transformer parts: partial convolutions, multi-head contextual attention, Swin-style layers.

Tokens are (B, L, C) with L = H * W in row-major order; token masks are (B, L, 1) with 1 = valid (known
or already filled by attention), 0 = still missing. Feature maps are (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.mat.layers import Conv2dLayer
from baselines.stylegan_ops import FullyConnectedLayer

# Additive attention bias for keys that are masked (missing, or across a shifted-window border).
MASKED_LOGIT = -100.0


def token2feature(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    b, _, c = x.shape
    return x.permute(0, 2, 1).reshape(b, c, size[0], size[1])


def feature2token(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    b, c = x.shape[:2]
    return x.reshape(b, c, -1).transpose(1, 2)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window, window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nW, window, window, C) -> (B, H, W, C)."""
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shifted_window_mask(size: tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """(nW, N, N) additive bias forbidding attention between the regions a cyclic shift wraps together."""
    h, w = size
    regions = torch.zeros(1, h, w, 1)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, hs, ws, :] = label
            label += 1
    regions = window_partition(regions, window).view(-1, window * window)
    diff = regions.unsqueeze(1) - regions.unsqueeze(2)
    return diff.masked_fill(diff != 0, MASKED_LOGIT).masked_fill(diff == 0, 0.0)


class Conv2dLayerPartial(nn.Module):
    """A `Conv2dLayer` that, given a {0, 1} mask (B, 1, H, W) (1 = valid), rescales outputs by k^2 / #valid inputs,
    zeroes outputs with no valid input, and returns the updated mask (1 where any input was valid)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: str = "linear",
                 up: int = 1, down: int = 1) -> None:
        super().__init__()
        self.conv = Conv2dLayer(in_channels, out_channels, kernel_size, activation, up=up, down=down)
        self.kernel_size = kernel_size
        self.stride = down

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if mask is None:
            return self.conv(x), None
        with torch.no_grad():
            ones = torch.ones(1, 1, self.kernel_size, self.kernel_size, dtype=mask.dtype, device=mask.device)
            count = F.conv2d(mask, ones, stride=self.stride, padding=self.kernel_size // 2)
            ratio = self.kernel_size**2 / (count + 1e-8)
            updated = count.clamp(0, 1)
            ratio = ratio * updated
        return self.conv(x) * ratio, updated


class WindowAttention(nn.Module):
    """Multi-head contextual attention inside one window: queries and keys from L2-normalised tokens, values
    from the raw tokens; keys that are missing get a -100 logit. A window with any valid token becomes valid.

    x (B', N, C), mask_windows (B', N, 1) or None, shift_mask (nW, N, N) or None.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = FullyConnectedLayer(dim, dim)
        self.k = FullyConnectedLayer(dim, dim)
        self.v = FullyConnectedLayer(dim, dim)
        self.proj = FullyConnectedLayer(dim, dim)

    def forward(self, x: torch.Tensor, mask_windows: torch.Tensor | None = None,
                shift_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        heads = self.num_heads
        normed = F.normalize(x, p=2.0, dim=-1)
        q = self.q(normed).reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
        k = self.k(normed).reshape(b, n, heads, c // heads).permute(0, 2, 3, 1)
        v = self.v(x).reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
        attn = (q @ k) * self.scale  # (B', heads, N, N)
        if shift_mask is not None:
            windows = shift_mask.shape[0]
            attn = attn.view(b // windows, windows, heads, n, n) + shift_mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        if mask_windows is not None:
            key_valid = mask_windows.squeeze(-1)[:, None, None, :]
            attn = attn + key_valid.masked_fill(key_valid == 0, MASKED_LOGIT).masked_fill(key_valid == 1, 0.0)
            with torch.no_grad():
                mask_windows = mask_windows.sum(dim=1, keepdim=True).clamp(0, 1).repeat(1, n, 1)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x), mask_windows


class Mlp(nn.Module):
    """fc1 (lrelu) then fc2 (linear): (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = FullyConnectedLayer(dim, hidden, "lrelu")
        self.fc2 = FullyConnectedLayer(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention, then `fuse(cat[input, attention output])` and an MLP (MAT has no residual
    around them and no LayerNorm). Windows larger than the layer's resolution shrink to it, without shift.

    x (B, L, C), size (H, W), mask (B, L, 1) or None -> (x, mask).
    """

    def __init__(self, dim: int, resolution: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window_size:
            window_size, shift_size = resolution, 0
        self.resolution = resolution
        self.window_size = window_size
        self.shift_size = shift_size
        self.attn = WindowAttention(dim, num_heads)
        self.fuse = FullyConnectedLayer(dim * 2, dim, "lrelu")
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask((resolution, resolution), window_size, shift_size) if shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def _shift_mask(self, size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        if self.shift_size == 0:
            return None
        if size == (self.resolution, self.resolution):
            return self.attn_mask
        return shifted_window_mask(size, self.window_size, self.shift_size).to(device)

    def forward(self, x: torch.Tensor, size: tuple[int, int],
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, w = size
        b, length, c = x.shape
        if length != h * w:
            raise ValueError(f"{length} tokens for a {h}x{w} grid")
        win, shift = self.window_size, self.shift_size
        shortcut = x
        x = x.view(b, h, w, c)
        if mask is not None:
            mask = mask.view(b, h, w, 1)
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            if mask is not None:
                mask = torch.roll(mask, shifts=(-shift, -shift), dims=(1, 2))
        x_windows = window_partition(x, win).view(-1, win * win, c)
        mask_windows = window_partition(mask, win).view(-1, win * win, 1) if mask is not None else None
        attn, mask_windows = self.attn(x_windows, mask_windows, self._shift_mask((h, w), x.device))
        x = window_reverse(attn.view(-1, win, win, c), win, h, w)
        if mask_windows is not None:
            mask = window_reverse(mask_windows.view(-1, win, win, 1), win, h, w)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
            if mask is not None:
                mask = torch.roll(mask, shifts=(shift, shift), dims=(1, 2))
        x = x.reshape(b, h * w, c)
        if mask is not None:
            mask = mask.reshape(b, h * w, 1)
        x = self.mlp(self.fuse(torch.cat([shortcut, x], dim=-1)))
        return x, mask


class PatchResample(nn.Module):
    """Token grid 2x down (`down=2`, mask-aware) or 2x up (`up=2`) through a 3x3 lrelu partial conv.

    The authors' PatchMerging / PatchUpsampling; the state dict holds only `conv`.
    """

    def __init__(self, in_channels: int, out_channels: int, up: int = 1, down: int = 1) -> None:
        super().__init__()
        self.conv = Conv2dLayerPartial(in_channels, out_channels, 3, "lrelu", up=up, down=down)
        self.factor = up / down

    def forward(self, x: torch.Tensor, size: tuple[int, int],
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor | None]:
        x, mask = self.conv(token2feature(x, size), token2feature(mask, size) if mask is not None else None)
        size = (int(size[0] * self.factor), int(size[1] * self.factor))
        return feature2token(x), size, feature2token(mask) if mask is not None else None


class BasicLayer(nn.Module):
    """One transformer stage: optional resample, `depth` blocks (every second one shifted by window/2), then a
    3x3 partial conv with a residual from after the resample. x (B, L, C) -> (x, size, mask)."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, window_size: int,
                 downsample: PatchResample | None = None, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio)
            for i in range(depth)
        )
        self.conv = Conv2dLayerPartial(dim, dim, 3, "lrelu")

    def forward(self, x: torch.Tensor, size: tuple[int, int],
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor | None]:
        if self.downsample is not None:
            x, size, mask = self.downsample(x, size, mask)
        identity = x
        for block in self.blocks:
            x, mask = block(x, size, mask)
        x, mask = self.conv(token2feature(x, size), token2feature(mask, size) if mask is not None else None)
        return feature2token(x) + identity, size, feature2token(mask) if mask is not None else None
