"""MAE-FAR's inpainting network ("ACR": attention- and prior-conditioned FFC ResNet), our PyTorch port.

Facts from the release (github ewrfcas/MAE-FAR, `ACR/networks/{generators,ffc,attention,layers}.py` and
`configs/config_FAR_places2.yml`); the code here is our own. Module and parameter names follow the authors'
state dict (`G.*` generator, `GCs.*` prior encoder), so the released `acr.*` weights load strictly.

- `G` (the authors' `FFCGenerator`): LaMa-like. Input [image*(1-mask), mask] (4 channels, image in [0, 1]);
  reflect-pad 3 + 7x7 conv to 64, plus the masked positional embeddings, BN, ReLU; three stride-2 3x3 convs
  (128, 256, 512), each preceded by adding a prior feature map; group attention with the MAE scores; 9 FFC
  ResNet blocks (global ratio 0.75, no LFU) on x + prior; group attention again; three transposed convs back
  to 64; reflect-pad 3 + 7x7 conv to 3; sigmoid. Output in [0, 1].
- `GCs` (the authors' `GCEncoder`): MAE decoder features (B, 512, 16, 16) bilinearly resized to (H/16, H/16),
  concatenated with 2 grid-centre coordinate channels (row, column in (-1, 1)), then four gated transposed convs
  (k4 s2 p1) with BN + ReLU; each scale is multiplied by a learned scalar (`alpha1..4`) and becomes a prior map
  for the generator. `alpha_att1/2` weight the two attention outputs; the masked positional encoding (MPE) is a
  fixed sinusoidal table of 128 relative distances (`rel_pos_emb`) and a 4 x 64 direction embedding
  (`direct_emb`), scaled by `alpha5`, `alpha6`.
- Masked positional encoding (the release's dataset code): at 32x32, hole pixels are reached by repeated 3x3
  dilation of the known region; step i gives distance i, and which of four 2x2 corner filters reached the pixel
  gives its direction bits. Distances become min(i * 128 / 16, 127), both are resized (nearest) to the image and
  zeroed on known pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.ffc import concat_parts, ffc_3x3, split_channels


@dataclass(frozen=True)
class MaeFarConfig:
    """Architecture of the released Places2 model (defaults), sizes of the pre/post-processing.

    channels: width of the first conv; the encoder doubles it three times (64, 128, 256, 512).
    n_blocks: FFC ResNet blocks; global_ratio: share of FFC channels in the spectral branch.
    mae_dim: channels of the MAE decoder features (decoder_embed_dim).
    rel_pos_num / pos_size: MPE distance table length and the grid the distances are computed on.
    min_size / max_size: working sizes (square, multiple of 16): the release trains on 256..512.
    """

    channels: int = 64
    n_blocks: int = 9
    global_ratio: float = 0.75
    mae_dim: int = 512
    rel_pos_num: int = 128
    pos_size: int = 32
    min_size: int = 256
    max_size: int = 512

    @property
    def bottleneck(self) -> int:
        return self.channels * 8


# ------------------------------------------------------------------------------------------------ FFC


# The FFC layers are the shared ones of `baselines.ffc` (same module and parameter names as the release's).
# Only the residual block stays here: the release names its two layers `ffc1`, `ffc2` where LaMa's
# `baselines.ffc.FFCResnetBlock` has `conv1`, `conv2`, and the checkpoint keys must load as they are.


class MaeFarFFCResnetBlock(nn.Module):
    """x + FFC(FFC(x)) on a (B, C, H, W) tensor: split into (first C - int(C*ratio) local, rest global) channels,
    two 3x3 FFC+BN+ReLU layers (`baselines.ffc.ffc_3x3`), concatenated back. Output (B, C, H, W)."""

    def __init__(self, channels: int, global_ratio: float) -> None:
        super().__init__()
        self.split = split_channels(channels, global_ratio)[0]
        self.ffc1 = ffc_3x3(channels, global_ratio)
        self.ffc2 = ffc_3x3(channels, global_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + concat_parts(self.ffc2(self.ffc1((x[:, :self.split], x[:, self.split:]))))


# ------------------------------------------------------------------------------------------------ attention


def attention_work_size(height: int) -> int:
    """The release resizes the bottleneck to 48 (sizes 33..47) or 64 (49..63) before its patch attention."""
    if 48 < height < 64:
        return 64
    if 32 < height < 48:
        return 48
    return height


def group_conv_attention(x: torch.Tensor, scores: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x + alpha * (MAE attention applied to patches of x): the release's `GroupConvAttention`.

    x: (B, C, H, H) bottleneck features; scores: (B, L, L) MAE attention, rows = queries (softmax over keys),
    L = g*g tokens. x is resized (bilinear) to a multiple r of g; every token j gets the (2r)x(2r) patch of x
    around its r x r cell (replicate padding); each query cell i receives sum_j scores[i, j] * patch_j, the
    overlapping patches are summed (transposed conv with stride r) and divided by 4; resized back.
    """
    batch, channels, height, width = x.shape
    size = attention_work_size(height)
    work = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    tokens = scores.shape[-1]
    grid = math.isqrt(tokens)
    rate = size // grid
    kernel = 2 * rate
    pad = rate // 2 + (rate % 2)
    padded = F.pad(work, (pad, pad, pad, pad), mode="replicate")
    patches = padded.unfold(2, kernel, rate).unfold(3, kernel, rate)  # (B, C, g', g', K, K)
    if rate == 1:
        patches = patches[:, :, :-1, :-1]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(batch * tokens, channels, kernel, kernel)
    # input channel j of sample b at query position i holds scores[b, i, j]
    weights = scores.transpose(1, 2).reshape(1, batch * tokens, grid, grid)
    y = F.conv_transpose2d(weights, patches, stride=rate, padding=pad, groups=batch) / 4.0
    if rate % 2:
        y = F.pad(y, (0, 1, 0, 1), mode="replicate")
    y = y.reshape(batch, channels, size, size)
    if size != height:
        y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False)
    return x + y * alpha


# ------------------------------------------------------------------------------------------------ generator


def conv_bn(cin: int, cout: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A 3x3 stride-2 conv (bias) and its BN."""
    return nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout)


def convt_bn(cin: int, cout: int) -> tuple[nn.ConvTranspose2d, nn.BatchNorm2d]:
    """A 3x3 stride-2 transposed conv doubling the size, and its BN."""
    return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(cout)


class MaeFarGenerator(nn.Module):
    """The FFC inpainting generator (`G.*`). See the module docstring for the data flow."""

    def __init__(self, config: MaeFarConfig) -> None:
        super().__init__()
        c = config.channels
        self.conv1 = nn.Conv2d(4, c, kernel_size=7)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv_bn(c, 2 * c)
        self.conv3, self.bn3 = conv_bn(2 * c, 4 * c)
        self.conv4, self.bn4 = conv_bn(4 * c, 8 * c)
        self.middle = nn.Sequential(*(MaeFarFFCResnetBlock(8 * c, config.global_ratio) for _ in range(config.n_blocks)))
        self.convt1, self.bnt1 = convt_bn(8 * c, 4 * c)
        self.convt2, self.bnt2 = convt_bn(4 * c, 2 * c)
        self.convt3, self.bnt3 = convt_bn(2 * c, c)
        self.convt4 = nn.Conv2d(c, 3, kernel_size=7)

    def forward(self, x: torch.Tensor, prior: MaeFarPrior, scores: torch.Tensor) -> torch.Tensor:
        """x: (B, 4, H, H) [image*(1-mask), mask]; scores (B, L, L). Returns (B, 3, H, H) in [0, 1]."""
        x = self.conv1(F.pad(x, (3, 3, 3, 3), mode="reflect")) + prior.rel_pos_emb + prior.direct_emb
        x = F.relu(self.bn1(x))
        x = F.relu(self.bn2(self.conv2(x + prior.feats[0])))
        x = F.relu(self.bn3(self.conv3(x + prior.feats[1])))
        x = F.relu(self.bn4(self.conv4(x + prior.feats[2])))
        x = group_conv_attention(x, scores, prior.alpha_att1)
        x = self.middle(x + prior.feats[3])
        x = group_conv_attention(x, scores, prior.alpha_att2)
        x = F.relu(self.bnt1(self.convt1(x)))
        x = F.relu(self.bnt2(self.convt2(x)))
        x = F.relu(self.bnt3(self.convt3(x)))
        return torch.sigmoid(self.convt4(F.pad(x, (3, 3, 3, 3), mode="reflect")))


# ------------------------------------------------------------------------------------------------ prior encoder


class MaeFarGateConvT(nn.Module):
    """Gated 4x4 stride-2 transposed conv: features * sigmoid(gate), both from one conv (`gate_conv`)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.gate_conv = nn.ConvTranspose2d(cin, cout * 2, kernel_size=4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.gate_conv(x).chunk(2, dim=1)
        return x * torch.sigmoid(gate)


def sinusoidal_table(rows: int, dim: int) -> torch.Tensor:
    """(rows, dim) float32: sin of position / 10000^(2k/dim) in the first half, cos in the second (not interleaved)."""
    position = torch.arange(rows, dtype=torch.float64)[:, None]
    rates = torch.pow(10000.0, -2 * torch.arange(dim // 2 + dim % 2, dtype=torch.float64) / dim)
    sin = torch.sin(position * rates)
    cos = torch.cos(position * rates[: dim // 2])
    return torch.cat([sin, cos], dim=1).float()


def grid_centres(size: int) -> torch.Tensor:
    """(2, size, size) float32: row and column coordinates of pixel centres in (-1, 1)."""
    half_step = 1 / size
    seq = (-1 + half_step) + (2 * half_step) * torch.arange(size, dtype=torch.float32)
    rows, cols = torch.meshgrid(seq, seq, indexing="ij")
    return torch.stack([rows, cols])


@dataclass
class MaeFarPrior:
    """What the prior encoder hands the generator: four prior maps (full, 1/2, 1/4, 1/8 size) and scalars."""

    feats: list[torch.Tensor]
    rel_pos_emb: torch.Tensor  # (B, C, H, H)
    direct_emb: torch.Tensor  # (B, C, H, H)
    alpha_att1: torch.Tensor
    alpha_att2: torch.Tensor


class MaeFarPriorEncoder(nn.Module):
    """The authors' `GCEncoder` (`GCs.*`): MAE features -> multi-scale prior maps, and the MPE embeddings."""

    def __init__(self, config: MaeFarConfig) -> None:
        super().__init__()
        c = config.channels
        widths = [config.mae_dim + 2, 8 * c, 4 * c, 2 * c, c]
        for i in range(4):
            setattr(self, f"convt{i}", MaeFarGateConvT(widths[i], widths[i + 1]))
            setattr(self, f"bnt{i}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"alpha{i + 1}", nn.Parameter(torch.tensor(0.0)))
        self.alpha_att1 = nn.Parameter(torch.tensor(0.0))
        self.alpha_att2 = nn.Parameter(torch.tensor(0.0))
        self.rel_pos_emb = nn.Embedding(config.rel_pos_num, c)
        self.rel_pos_emb.weight.data.copy_(sinusoidal_table(config.rel_pos_num, c))
        self.direct_emb = nn.Module()
        self.direct_emb.weight = nn.Parameter(torch.randn(4, c))
        self.alpha5 = nn.Parameter(torch.tensor(1.0))
        self.alpha6 = nn.Parameter(torch.tensor(1.0))

    def forward(self, mae_feats: torch.Tensor, rel_pos: torch.Tensor, direct: torch.Tensor) -> MaeFarPrior:
        """mae_feats (B, D, g, g); rel_pos (B, H, H) long in [0, rel_pos_num); direct (B, H, H, 4) in {0, 1}.

        H must be a multiple of 16: the features are resized to H/16 and upsampled 16x.
        """
        size = rel_pos.shape[-1]
        x = F.interpolate(mae_feats, size=(size // 16, size // 16), mode="bilinear", align_corners=False)
        coords = grid_centres(size // 16).to(x)[None].expand(x.shape[0], -1, -1, -1)
        x = torch.cat([x, coords], dim=1)
        feats = []
        for i in range(4):
            x = F.relu(getattr(self, f"bnt{i}")(getattr(self, f"convt{i}")(x)))
            feats.append(x * getattr(self, f"alpha{i + 1}"))
        rel = self.rel_pos_emb(rel_pos).permute(0, 3, 1, 2) * self.alpha5
        dire = (direct.float() @ self.direct_emb.weight).permute(0, 3, 1, 2) * self.alpha6
        return MaeFarPrior(feats[::-1], rel, dire, self.alpha_att1, self.alpha_att2)


class MaeFarACR(nn.Module):
    """The FAR network (`G` + `GCs`); state-dict keys as the authors' `ACRModel` (the `acr.*` entries)."""

    def __init__(self, config: MaeFarConfig | None = None) -> None:
        super().__init__()
        config = config or MaeFarConfig()
        self.config = config
        self.G = MaeFarGenerator(config)
        self.GCs = MaeFarPriorEncoder(config)

    def forward(self, images: torch.Tensor, masks: torch.Tensor, mae_feats: torch.Tensor, scores: torch.Tensor,
                rel_pos: torch.Tensor, direct: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, H) in [0, 1]; masks (B, 1, H, H) {0, 1}, 1 = hole; mae_feats (B, D, g, g);
        scores (B, g*g, g*g); rel_pos (B, H, H) long; direct (B, H, H, 4). H a multiple of 16.
        Returns the raw generator output (B, 3, H, H) in [0, 1]."""
        prior = self.GCs(mae_feats, rel_pos, direct)
        x = torch.cat([images * (1 - masks), masks], dim=1)
        return self.G(x, prior, scores)


# ------------------------------------------------------------------------------------------------ MPE


def any_hole_resize(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} -> (B, 1, size, size): 1 where any overlapping source pixel is a hole.

    The release's `cv2.resize(mask, INTER_AREA)` followed by `> 0` when shrinking.
    """
    if masks.shape[-2:] == (size, size):
        return (masks > 0).float()
    return (F.adaptive_max_pool2d(masks.float(), size) > 0).float()


def masked_position_encoding(masks: torch.Tensor, pos_size: int, pos_num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's masked positional encoding, batched.

    masks: (B, 1, H, W) {0, 1}, 1 = hole, H and W >= pos_size.
    Returns rel_pos (B, H, W) long in [0, pos_num) and direct (B, H, W, 4) float {0, 1}; both 0 on known pixels.
    Step i of the 3x3 dilation of the known region (at pos_size, reflect-101 borders as cv2.filter2D) reaches the
    pixels at distance i; the direction bits say which 2x2 corner (top-left, bottom-left, top-right, bottom-right
    in the release's filter order) reached them. Deviation: a mask with no known cell at pos_size makes the
    release loop forever; here its distances and directions stay 0.
    """
    known = 1 - any_hole_resize(masks, pos_size)
    filters = torch.zeros(5, 1, 3, 3, dtype=known.dtype, device=known.device)
    filters[0] = 1
    filters[1, 0, :2, :2] = 1
    filters[2, 0, 1:, :2] = 1
    filters[3, 0, :2, 1:] = 1
    filters[4, 0, 1:, 1:] = 1
    pos = torch.zeros_like(known)
    direct = torch.zeros(known.shape[0], 4, pos_size, pos_size, dtype=known.dtype, device=known.device)
    step = 0
    while True:
        reached = F.conv2d(F.pad(known, (1, 1, 1, 1), mode="reflect"), filters) > 0  # (B, 5, s, s)
        new = reached[:, :1] & (known == 0)
        if not new.any():
            break
        step += 1
        pos[new] = float(step)
        direct[reached[:, 1:] & (known == 0)] = 1
        known = torch.maximum(known, new.to(known.dtype))
    rel = (pos.double() / (pos_size / 2) * pos_num).long().clamp(0, pos_num - 1)
    height, width = masks.shape[-2:]
    rows = torch.arange(height, device=masks.device) * pos_size // height
    cols = torch.arange(width, device=masks.device) * pos_size // width
    hole = masks[:, 0] > 0.5
    rel = rel[:, 0][:, rows][:, :, cols] * hole
    direct = direct[:, :, rows][:, :, :, cols].permute(0, 2, 3, 1) * hole[..., None]
    return rel, direct
