"""MAT generator (Li et al., CVPR 2022): a mask-aware transformer coarse stage, then a StyleGAN2-style refinement.

Conventions of this module (the authors'): images (B, 3, H, W) in [-1, 1]; masks (B, 1, H, W) in {0, 1} with
1 = KEEP (known pixel), 0 = hole; output (B, 3, H, W) in about [-1, 1] with the known pixels pasted back.
H = W = `MatConfig.resolution` (or a multiple of it: the first-stage transformer then runs at a larger grid,
and "const" noise, stored at the trained resolution, falls back to "random", as in the authors' script).

Module and parameter names follow the authors' `networks/mat.py` Generator, so its state dict
(`mapping.fc0.weight`, `synthesis.first_stage.tran.0.blocks.1.attn_mask`, `synthesis.dec.Dec_16x16.conv0.weight`,
...) loads with `strict=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.mat.layers import (
    NOISE_MODES,
    Conv2dLayer,
    MappingNet,
    StyleConv,
    ToRGB,
)
from baselines.mat.randomness import SampleRandomness
from baselines.mat.transformer import (
    BasicLayer,
    Conv2dLayerPartial,
    PatchResample,
    feature2token,
    token2feature,
)
from baselines.stylegan_ops import FullyConnectedLayer

# First stage: the transformer runs at 64x64 tokens (for a 512 input), 64 -> 32 -> 16 -> 32 -> 64.
TRANSFORMER_RES = 64
TRANSFORMER_DEPTHS = (2, 3, 4, 3, 2)
TRANSFORMER_SCALES = (1, 0.5, 0.5, 2, 2)
TRANSFORMER_WINDOWS = (8, 16, 16, 16, 8)
# Both stages inject the latent code as a 16x16 map at their bottleneck.
BOTTLENECK = 16


@dataclass(frozen=True)
class MatConfig:
    """Generator architecture; the defaults are the released 512x512 models (Places2, CelebA-HQ, FFHQ).

    channels at resolution r: min(channel_base // r, channel_max) (64 at 512, 128 at 256, 256 at 128, 512 below).
    """

    resolution: int = 512
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    stage1_dim: int = 180
    stage1_heads: int = 6
    mapping_layers: int = 8
    # Noise inputs of the refinement decoder (noise_const, noise_strength). The authors' Generator has them;
    # the published state-dict copies (IOPaint's Places .pth, the fp16 safetensors mirrors) were saved from a
    # generator without them, which runs with noise_mode "none" only.
    use_noise: bool = True

    def __post_init__(self) -> None:
        log2 = int(math.log2(self.resolution))
        if self.resolution != 2**log2 or self.resolution < 2 * TRANSFORMER_RES:
            raise ValueError(f"MAT resolution must be a power of two >= {2 * TRANSFORMER_RES}, got {self.resolution}")
        if self.stage1_dim % self.stage1_heads:
            raise ValueError(f"stage1_dim {self.stage1_dim} is not divisible by stage1_heads {self.stage1_heads}")

    @property
    def log2(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis reads (12 at 512)."""
        return 2 * self.log2 - 6

    def channels(self, resolution: int) -> int:
        return min(self.channel_base // resolution, self.channel_max)


class DecStyleBlock(nn.Module):
    """First-stage decoder block: 2x up style conv, + encoder skip, style conv, toRGB (accumulating the image)."""

    def __init__(self, resolution: int, in_channels: int, out_channels: int, style_dim: int, img_channels: int) -> None:
        super().__init__()
        self.conv0 = StyleConv(in_channels, out_channels, style_dim, resolution, up=2, use_noise=False)
        self.conv1 = StyleConv(out_channels, out_channels, style_dim, resolution, use_noise=False)
        self.toRGB = ToRGB(out_channels, img_channels, style_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, style: torch.Tensor, skip: torch.Tensor,
                rng: SampleRandomness) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv0(x, style, "none", rng) + skip
        x = self.conv1(x, style, "none", rng)
        return x, self.toRGB(x, style, skip=img)


class FirstStage(nn.Module):
    """Coarse inpainting: partial-conv encoder to 64x64 tokens, mask-aware transformer (U-shaped, 64 -> 16 -> 64),
    a global style from the 16x16 bottleneck and w, then a style-modulated conv decoder back to full size.

    images (B, 3, H, W) in [-1, 1], masks (B, 1, H, W) 1 = keep, ws (B, num_ws, w_dim) -> (B, 3, H, W), known
    pixels pasted back.
    """

    def __init__(self, config: MatConfig) -> None:
        super().__init__()
        dim = config.stage1_dim
        self.conv_first = Conv2dLayerPartial(config.img_channels + 1, dim, 3, "lrelu")
        down_times = int(math.log2(config.resolution // TRANSFORMER_RES))
        self.enc_conv = nn.ModuleList(Conv2dLayerPartial(dim, dim, 3, "lrelu", down=2) for _ in range(down_times))
        self.tran = nn.ModuleList()
        res = TRANSFORMER_RES
        for depth, scale, window in zip(TRANSFORMER_DEPTHS, TRANSFORMER_SCALES, TRANSFORMER_WINDOWS):
            res = int(res * scale)
            resample = (PatchResample(dim, dim, down=int(1 / scale)) if scale < 1
                        else PatchResample(dim, dim, up=int(scale)) if scale > 1 else None)
            self.tran.append(BasicLayer(dim, res, depth, config.stage1_heads, window, downsample=resample))
        global_style: list[nn.Module] = [Conv2dLayer(dim, dim, 3, "lrelu", down=2)
                                         for _ in range(int(math.log2(BOTTLENECK)))]
        self.down_conv = nn.Sequential(*global_style, nn.AdaptiveAvgPool2d((1, 1)))
        self.to_style = FullyConnectedLayer(dim, dim * 2, "lrelu")
        self.ws_style = FullyConnectedLayer(config.w_dim, dim, "lrelu")
        self.to_square = FullyConnectedLayer(dim, BOTTLENECK * BOTTLENECK, "lrelu")
        self.dec_conv = nn.ModuleList()
        for _ in range(down_times):
            res *= 2
            self.dec_conv.append(DecStyleBlock(res, dim, dim, dim * 3, config.img_channels))

    def forward(self, images: torch.Tensor, masks: torch.Tensor, ws: torch.Tensor,
                rng: SampleRandomness) -> torch.Tensor:
        x, mask = self.conv_first(torch.cat([masks - 0.5, images * masks], dim=1), masks)
        skips = [x]
        for i, block in enumerate(self.enc_conv):
            x, mask = block(x, mask)
            if i != len(self.enc_conv) - 1:
                skips.append(x)
        size = (x.shape[-2], x.shape[-1])
        x, mask = feature2token(x), feature2token(mask)
        mid = len(self.tran) // 2
        for i, block in enumerate(self.tran):
            if i < mid:
                x, size, mask = block(x, size, mask)
                skips.append(x)
            elif i > mid:
                x, size, _ = block(x, size, None)
                x = x + skips[mid - i]
            else:
                x, size, _ = block(x, size, None)
                keep = rng.keep_half(tuple(x.shape[1:])).to(x)
                w = self.ws_style(ws[:, -1])
                noise = F.interpolate(self.to_square(w).unsqueeze(1), size=x.shape[1], mode="linear",
                                      align_corners=False)
                x = x * keep + noise.squeeze(1).unsqueeze(-1) * (1 - keep)
                style = torch.cat([self.to_style(self.down_conv(token2feature(x, size)).flatten(1)), w], dim=1)
        x = token2feature(x, size).contiguous()
        img = None
        for i, block in enumerate(self.dec_conv):
            x, img = block(x, img, style, skips[len(self.dec_conv) - i - 1], rng)
        return img * (1 - masks) + images * masks


class EncFromRGB(nn.Module):
    """1x1 then 3x3 lrelu conv at full resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, out_channels, 1, "lrelu")
        self.conv1 = Conv2dLayer(out_channels, out_channels, 3, "lrelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.conv0(x))


class ConvBlockDown(nn.Module):
    """3x3 lrelu conv with 2x FIR downsampling, then a 3x3 lrelu conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, out_channels, 3, "lrelu", down=2)
        self.conv1 = Conv2dLayer(out_channels, out_channels, 3, "lrelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.conv0(x))


class Encoder(nn.Module):
    """Second-stage conv encoder, full size down to 16x16; returns {log2(resolution): (B, C, r, r)}."""

    def __init__(self, config: MatConfig) -> None:
        super().__init__()
        self.levels = list(range(config.log2, int(math.log2(BOTTLENECK)) - 1, -1))
        for level in self.levels:
            res = 2**level
            block = (EncFromRGB(config.img_channels * 2 + 1, config.channels(res)) if level == config.log2
                     else ConvBlockDown(config.channels(res * 2), config.channels(res)))
            setattr(self, f"EncConv_Block_{res}x{res}", block)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        features = {}
        for level in self.levels:
            x = getattr(self, f"EncConv_Block_{2**level}x{2**level}")(x)
            features[level] = x
        return features


class ToStyle(nn.Module):
    """Global style code from the 16x16 features: three 2x-down lrelu convs, average pool, lrelu FC."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*(Conv2dLayer(in_channels, in_channels, 3, "lrelu", down=2) for _ in range(3)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = FullyConnectedLayer(in_channels, out_channels, "lrelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


class DecBlockFirstV2(nn.Module):
    """Decoder at 16x16: conv, + encoder features, style conv (w[0]), toRGB (w[1])."""

    def __init__(self, level: int, channels: int, style_dim: int, img_channels: int, use_noise: bool) -> None:
        super().__init__()
        self.level = level
        self.conv0 = Conv2dLayer(channels, channels, 3, "lrelu")
        self.conv1 = StyleConv(channels, channels, style_dim, 2**level, use_noise=use_noise)
        self.toRGB = ToRGB(channels, img_channels, style_dim)

    def forward(self, x: torch.Tensor, ws: torch.Tensor, gs: torch.Tensor, features: dict[int, torch.Tensor],
                noise_mode: str, rng: SampleRandomness) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv0(x) + features[self.level]
        x = self.conv1(x, torch.cat([ws[:, 0], gs], dim=1), noise_mode, rng)
        return x, self.toRGB(x, torch.cat([ws[:, 1], gs], dim=1))


class DecBlock(nn.Module):
    """Decoder at 2^level: 2x up style conv, + encoder features, style conv, toRGB; w index 2*level - 9 ... - 7."""

    def __init__(self, level: int, in_channels: int, out_channels: int, style_dim: int, img_channels: int,
                 use_noise: bool) -> None:
        super().__init__()
        self.level = level
        self.conv0 = StyleConv(in_channels, out_channels, style_dim, 2**level, up=2, use_noise=use_noise)
        self.conv1 = StyleConv(out_channels, out_channels, style_dim, 2**level, use_noise=use_noise)
        self.toRGB = ToRGB(out_channels, img_channels, style_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor, ws: torch.Tensor, gs: torch.Tensor,
                features: dict[int, torch.Tensor], noise_mode: str,
                rng: SampleRandomness) -> tuple[torch.Tensor, torch.Tensor]:
        first = 2 * self.level - 9
        x = self.conv0(x, torch.cat([ws[:, first], gs], dim=1), noise_mode, rng) + features[self.level]
        x = self.conv1(x, torch.cat([ws[:, first + 1], gs], dim=1), noise_mode, rng)
        return x, self.toRGB(x, torch.cat([ws[:, first + 2], gs], dim=1), skip=img)


class Decoder(nn.Module):
    """Second-stage StyleGAN2-style decoder, 16x16 up to full size, with skip-accumulated RGB."""

    def __init__(self, config: MatConfig, style_dim: int) -> None:
        super().__init__()
        bottleneck = int(math.log2(BOTTLENECK))
        self.levels = list(range(bottleneck + 1, config.log2 + 1))
        self.Dec_16x16 = DecBlockFirstV2(bottleneck, config.channels(BOTTLENECK), style_dim, config.img_channels,
                                         config.use_noise)
        for level in self.levels:
            res = 2**level
            block = DecBlock(level, config.channels(res // 2), config.channels(res), style_dim, config.img_channels,
                             config.use_noise)
            setattr(self, f"Dec_{res}x{res}", block)

    def forward(self, x: torch.Tensor, ws: torch.Tensor, gs: torch.Tensor, features: dict[int, torch.Tensor],
                noise_mode: str, rng: SampleRandomness) -> torch.Tensor:
        x, img = self.Dec_16x16(x, ws, gs, features, noise_mode, rng)
        for level in self.levels:
            x, img = getattr(self, f"Dec_{2**level}x{2**level}")(x, img, ws, gs, features, noise_mode, rng)
        return img


class SynthesisNet(nn.Module):
    """First stage, then the refinement encoder/decoder on [mask - 0.5, coarse composite, masked image]."""

    def __init__(self, config: MatConfig) -> None:
        super().__init__()
        self.first_stage = FirstStage(config)
        self.enc = Encoder(config)
        self.to_square = FullyConnectedLayer(config.w_dim, BOTTLENECK * BOTTLENECK, "lrelu")
        self.to_style = ToStyle(config.channels(BOTTLENECK), config.channels(4) * 2)
        self.dec = Decoder(config, config.w_dim + config.channels(4) * 2)

    def forward(self, images: torch.Tensor, masks: torch.Tensor, ws: torch.Tensor, noise_mode: str,
                rng: SampleRandomness) -> torch.Tensor:
        coarse = self.first_stage(images, masks, ws, rng)
        x = images * masks + coarse * (1 - masks)
        features = self.enc(torch.cat([masks - 0.5, x, images * masks], dim=1))
        level = int(math.log2(BOTTLENECK))
        bottom = features[level]
        keep = rng.keep_half(tuple(bottom.shape[1:])).to(bottom)
        noise = self.to_square(ws[:, 0]).view(-1, 1, BOTTLENECK, BOTTLENECK)
        noise = F.interpolate(noise, size=bottom.shape[-2:], mode="bilinear", align_corners=False)
        bottom = bottom * keep + noise * (1 - keep)
        features[level] = bottom
        img = self.dec(bottom, ws, self.to_style(bottom), features, noise_mode, rng)
        return img * (1 - masks) + images * masks


class Generator(nn.Module):
    """MAT generator: `mapping` (z -> w) and `synthesis`; see the module docstring for conventions.

    forward(images, masks, z (B, z_dim), rng, noise_mode, truncation_psi) -> (B, 3, H, W) in about [-1, 1].
    Random draws (the bottleneck keep maps and, with noise_mode "random", the noise) come from `rng`,
    one generator per sample, in a fixed order: first-stage map, second-stage map, then decoder noise.
    """

    def __init__(self, config: MatConfig = MatConfig()) -> None:
        super().__init__()
        self.config = config
        self.synthesis = SynthesisNet(config)
        self.mapping = MappingNet(config.z_dim, config.w_dim, config.num_ws, config.mapping_layers)

    def forward(self, images: torch.Tensor, masks: torch.Tensor, z: torch.Tensor, rng: SampleRandomness,
                noise_mode: str = "const", truncation_psi: float = 1.0) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode != "none" and not self.config.use_noise:
            raise ValueError(f"noise_mode {noise_mode!r} needs a generator with noise inputs (use_noise=False here)")
        size = images.shape[-1]
        if images.shape[-2] != size or size % self.config.resolution:
            raise ValueError(f"MAT needs square inputs with a side multiple of {self.config.resolution}, "
                             f"got {tuple(images.shape)}")
        if noise_mode == "const" and size != self.config.resolution:
            noise_mode = "random"  # the stored noise maps exist only at the trained resolution
        ws = self.mapping(z, truncation_psi)
        return self.synthesis(images, masks, ws, noise_mode, rng)
