"""ASUKA's MAE prior: the inpainting fine-tuned masked auto-encoder of the official release.

Facts from the release (github Yikai-Wang/asuka-misato, `asuka-flux/MAE/models_mae.py`,
`MaskedAutoencoderViTFinetune` built as `mae_vit_base_patch16`); the code here is our own:

- encoder ViT-B/16 (768-d, 12 blocks, 12 heads), decoder 512-d, 8 blocks, 16 heads, input 256x256
  (16x16 = 256 tokens), LayerNorm eps 1e-6, no cls token, fixed 2-D sin-cos position embeddings;
- extra `decoder_patch_embed` (4-channel patch embedding of `[image*(1-mask), mask]`) and a scalar `alpha`;
- a token is masked when any hole pixel falls in its patch (area-downsampled mask > 0). Masked tokens stay in
  the encoder sequence and are excluded as attention keys (the release fills their logits with -inf);
- decoder input: `decoder_embed(latent)`, masked tokens replaced by `mask_token`, partial tokens
  (0 < hole area < 1) mixed as `x*alpha + E_img*(1-alpha)` (alpha clamped to [0, 1]), then `+ decoder_pos_embed`;
- the prior is the decoder hidden state after decoder blocks 0..5 (`decoder_layer=6`), before `decoder_norm`:
  (B, 256, 512).

Our deviation: a fully masked image has no visible key, the release's softmax then gives NaN and the release
zeroes the prior of the WHOLE batch. Here it is handled per sample: such a sample attends over all its tokens
(keeps the arithmetic finite) and its prior is set to zeros, as the release does for it; batch-mates are
unaffected because attention never mixes samples.

Why our own ViT block rather than timm's: timm is not a declared dependency and its `Block` accepts an
attention mask only in recent releases; the block is 25 lines and keeps the checkpoint's key names.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Fixed sin-cos position tables: buffers in the state dict, recomputed rather than loaded for training.
FIXED_POSITION_KEYS: tuple[str, ...] = ("pos_embed", "decoder_pos_embed")


@dataclass(frozen=True)
class MAEConfig:
    """Sizes of the MAE. `prior_layer`: number of decoder blocks run before the prior is read."""

    img_size: int = 256
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    prior_layer: int = 6

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def validate(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if not 0 < self.prior_layer <= self.decoder_depth:
            raise ValueError(f"prior_layer must be in [1, {self.decoder_depth}], got {self.prior_layer}")
        for dim, heads in ((self.embed_dim, self.num_heads), (self.decoder_embed_dim, self.decoder_num_heads)):
            if dim % heads:
                raise ValueError(f"width {dim} is not divisible by {heads} heads")


MAE_PRESETS: dict[str, MAEConfig] = {
    # the released `mae_300.pth` (MAE-FAR style fine-tune of MAE ViT-B/16)
    "mae_vit_base_patch16": MAEConfig(),
    # a few-thousand-parameter model for CPU tests; same structure
    "tiny": MAEConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=24,
                      decoder_depth=3, decoder_num_heads=2, prior_layer=2),
}


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding of MAE, (grid*grid, dim) float32, row-major over (h, w).

    Uses diffusers' implementation (same layout as MAE's: first half encodes the column, second the row).
    """
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    try:
        table = get_2d_sincos_pos_embed(dim, grid, base_size=grid, output_type="pt")
    except TypeError:  # diffusers < 0.32 has no output_type and returns numpy
        table = get_2d_sincos_pos_embed(dim, grid, base_size=grid)
    return torch.as_tensor(table).float()


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: (B, C, H, W) -> (B, (H/p)*(W/p), dim). Key names as timm's (`proj`)."""

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv (timm key names), computed by SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D); attn_mask bool broadcastable to (B, heads, L, L), True = may attend."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact GELU, as MAE/timm
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


@dataclass(frozen=True)
class TokenMask:
    """Per-token mask state, (B, L) bool each. `partial` is a subset of `masked`."""

    masked: torch.Tensor  # any hole pixel in the patch (area > 0)
    partial: torch.Tensor  # 0 < hole area < 1

    @property
    def fully_masked_samples(self) -> torch.Tensor:
        """(B,) bool: samples with no visible token."""
        return self.masked.all(dim=1)


@dataclass
class LoadReport:
    """What `load_state_dict(strict=False)` left out, for logs and run manifests."""

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {"path": self.path, "missing_keys": list(self.missing), "unexpected_keys": list(self.unexpected)}


class AsukaMAE(nn.Module):
    """The fine-tuned MAE. State-dict keys follow the released `mae_300.pth` (timm-style MAE names).

    Public entry points take images at the MAE's size (`config.img_size`), float (B, 3, S, S) RGB in [0, 1],
    and masks float (B, 1, S, S), 1 = hole (binarised at 0.5). Use `prepare_mae_inputs` to resize.
    """

    def __init__(self, config: MAEConfig | str = "mae_vit_base_patch16", **overrides) -> None:
        super().__init__()
        if isinstance(config, str):
            if config not in MAE_PRESETS:
                raise ValueError(f"unknown MAE preset {config!r}; known: {sorted(MAE_PRESETS)}")
            config = MAE_PRESETS[config]
        config = replace(config, **overrides)
        config.validate()
        self.config = config
        c = config
        # encoder
        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(c.embed_dim, c.grid)[None])
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.norm_eps) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        # decoder
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(c.decoder_embed_dim, c.grid)[None])
        self.decoder_blocks = nn.ModuleList(
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.mlp_ratio, c.norm_eps) for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=c.norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size**2 * c.in_chans)
        # fine-tune additions: embedding of [masked image, mask] for partial patches, and their mixing weight
        self.decoder_patch_embed = PatchEmbed(c.patch_size, c.in_chans + 1, c.decoder_embed_dim)
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation (xavier-uniform linears and patch projections, N(0, 0.02) mask token)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for embed in (self.patch_embed, self.decoder_patch_embed):
            nn.init.xavier_uniform_(embed.proj.weight.view(embed.proj.weight.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)

    # ----------------------------------------------------------------------------------------- inputs
    def _check(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        size = self.config.img_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"AsukaMAE expects images (B, 3, {size}, {size}), got {tuple(images.shape)}")
        if masks.shape != (images.shape[0], 1, size, size):
            raise ValueError(f"AsukaMAE expects masks (B, 1, {size}, {size}), got {tuple(masks.shape)}")

    def normalize(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images and 1 = hole masks -> (ImageNet-normalised image with holes zeroed, binary mask)."""
        holes = (masks >= 0.5).to(images.dtype)
        x = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        return x * (1 - holes), holes

    def token_mask(self, masks: torch.Tensor) -> TokenMask:
        """masks (B, 1, S, S) in {0, 1}, 1 = hole -> per-token `masked` (area > 0) and `partial` (0 < area < 1)."""
        grid = self.config.grid
        area = F.interpolate(masks.float(), size=(grid, grid), mode="area").flatten(1)
        return TokenMask(masked=area > 0, partial=(area > 0) & (area < 1))

    # ----------------------------------------------------------------------------------------- encoder
    def encode(self, x: torch.Tensor, tokens: TokenMask | None) -> torch.Tensor:
        """Encoder on a normalised masked image x (B, 3, S, S); masked tokens are excluded as attention keys.

        Returns the normed latent (B, L, embed_dim) for all L tokens (masked positions carry no information
        the decoder uses: it replaces them by `mask_token`). A sample with no visible token attends to all
        tokens (finite arithmetic); `prior` zeroes its output.
        """
        h = self.patch_embed(x) + self.pos_embed.to(x.dtype)
        attn_mask = None
        if tokens is not None:
            keep = ~tokens.masked | tokens.fully_masked_samples[:, None]
            attn_mask = keep[:, None, None, :]  # (B, 1, 1, L): same key set for every head and query
        for block in self.blocks:
            h = block(h, attn_mask)
        return self.norm(h)

    # ----------------------------------------------------------------------------------------- decoder
    def decoder_input(self, latent: torch.Tensor, x: torch.Tensor, holes: torch.Tensor,
                      tokens: TokenMask | None) -> torch.Tensor:
        """Decoder tokens before the blocks (B, L, decoder_embed_dim): mask tokens, partial-patch mixing, pos."""
        h = self.decoder_embed(latent)
        if tokens is not None:
            h = torch.where(tokens.masked[..., None], self.mask_token.to(h.dtype).expand_as(h), h)
            image_tokens = self.decoder_patch_embed(torch.cat([x * (1 - holes), holes], dim=1))
            alpha = self.alpha.clamp(0.0, 1.0).to(h.dtype)
            mixed = h * alpha + image_tokens * (1 - alpha)
            h = torch.where(tokens.partial[..., None], mixed, h)
        return h + self.decoder_pos_embed.to(h.dtype)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, S, S), the layout of `decoder_pred`."""
        c, p, g = self.config.in_chans, self.config.patch_size, self.config.grid
        patches = patches.reshape(patches.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", patches).reshape(patches.shape[0], c, g * p, g * p)

    # ----------------------------------------------------------------------------------------- public
    def prior(self, images: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """ASUKA's prior: the decoder hidden state after `prior_layer` blocks, before `decoder_norm`.

        images: float (B, 3, S, S) RGB in [0, 1] at the MAE size; masks: float (B, 1, S, S), 1 = hole, or None
        for the "reconstruction prior" (nothing masked; same as an all-zero mask).
        Returns (B, L, decoder_embed_dim) in the images' dtype; zeros for a sample whose every patch is masked.
        """
        prior, _ = self._run(images, masks, return_image=False)
        return prior

    def reconstruct(self, images: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(prior (B, L, D), pixel prediction (B, 3, S, S) in ImageNet-normalised space) from one pass."""
        prior, pixels = self._run(images, masks, return_image=True)
        return prior, pixels

    forward = prior

    def reconstruct_with_tokens(self, images: torch.Tensor, masks: torch.Tensor,
                                token_masked: torch.Tensor) -> torch.Tensor:
        """The fine-tuning forward (paper Sec. 3.1): pixel prediction (B, 3, S, S), ImageNet-normalised.

        images (B, 3, S, S) in [0, 1]; masks (B, 1, S, S) 1 = hole (the inpainting hole: its pixels are zeroed);
        token_masked (B, L) bool, True = token dropped (every hole-touching token plus random extra ones, see
        `misato.masks.samplers.enlarge_for_mae`). Partial tokens are the dropped ones with 0 < hole area < 1,
        as at inference; a hole-touching token that was not dropped stays visible with its hole pixels zeroed.
        """
        self._check(images, masks)
        if token_masked.shape != (images.shape[0], self.config.num_patches):
            raise ValueError(f"token_masked must be (B, {self.config.num_patches}), got {tuple(token_masked.shape)}")
        x, holes = self.normalize(images, masks)
        area = self.token_mask(holes)
        tokens = TokenMask(masked=token_masked.bool(), partial=token_masked.bool() & area.partial)
        _, pixels = self._run_tokens(x, holes, tokens, return_image=True)
        return pixels

    def _run(self, images: torch.Tensor, masks: torch.Tensor | None, return_image: bool):
        if masks is None:
            masks = torch.zeros_like(images[:, :1])
        self._check(images, masks)
        x, holes = self.normalize(images, masks)
        return self._run_tokens(x, holes, self.token_mask(holes), return_image)

    def _run_tokens(self, x: torch.Tensor, holes: torch.Tensor, tokens: TokenMask, return_image: bool):
        latent = self.encode(x, tokens)
        h = self.decoder_input(latent, x, holes, tokens)
        prior = None
        last = len(self.decoder_blocks) if return_image else self.config.prior_layer
        for index, block in enumerate(self.decoder_blocks[:last]):
            h = block(h)
            if index + 1 == self.config.prior_layer:
                prior = h
        empty = tokens.fully_masked_samples
        prior = torch.where(empty[:, None, None], torch.zeros_like(prior), prior)
        pixels = self.unpatchify(self.decoder_pred(self.decoder_norm(h))) if return_image else None
        return prior, pixels

    # ----------------------------------------------------------------------------------------- weights
    def load_released(self, path: str | os.PathLike) -> LoadReport:
        """Load `mae_300.pth` (a dict with key 'model') non-strictly; missing/unexpected keys are logged and
        returned."""
        from misato.checkpoints import load_checkpoint

        checkpoint = load_checkpoint(path)
        state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a dict with key 'model' holding a state dict")
        result = self.load_state_dict(state, strict=False)
        report = LoadReport(str(path), list(result.missing_keys), list(result.unexpected_keys))
        if report.missing or report.unexpected:
            log.warning("MAE %s: missing keys %s, unexpected keys %s", path, report.missing, report.unexpected)
        return report

    def load_for_training(self, path: str | os.PathLike, allow_missing_finetune: bool) -> LoadReport:
        """Load a MAE file to fine-tune or to train on, refusing any file that is not this architecture.

        Accepts the released `mae_300.pth` / MAE-FAR layout (dict with 'model') and our safetensors. The fixed
        sin-cos position tables are recomputed, never read (a pre-trained file may carry a cls position).
        allow_missing_finetune: a pre-trained MAE (MAE-FAR) has no `decoder_patch_embed` and `alpha`; they keep
        their initial values (alpha = 1: partial tokens use the encoder only). Any other missing key, or a
        tensor of another shape, raises ValueError naming the file and the keys.
        """
        from misato.checkpoints import load_checkpoint

        checkpoint = load_checkpoint(path)
        state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path}: not a MAE state dict (expected a dict of tensors, or one under 'model')")
        state = {k: v for k, v in state.items() if k not in FIXED_POSITION_KEYS}
        own = self.state_dict()
        wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in state.items()
                 if k in own and v.shape != own[k].shape]
        if wrong:
            raise ValueError(f"{path}: not a MAE of this architecture ({self.config}); mismatched shapes: "
                             f"{wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
        optional = ("decoder_patch_embed.", "alpha") if allow_missing_finetune else ()
        missing = [k for k in own if k not in state and k not in FIXED_POSITION_KEYS]
        fatal = [k for k in missing if not k.startswith(optional)]
        if fatal:
            hint = ("" if allow_missing_finetune else
                    " (a pre-trained MAE without the fine-tune parameters needs mae_weights='pretrained')")
            raise ValueError(f"{path}: not a MAE of this architecture; missing keys {fatal[:5]}"
                             f"{' ...' if len(fatal) > 5 else ''}{hint}")
        result = self.load_state_dict(state, strict=False)
        report = LoadReport(str(path), missing, list(result.unexpected_keys))
        if report.missing or report.unexpected:
            log.info("MAE %s: kept initial values for %s; ignored %s", path, report.missing, report.unexpected)
        return report

    @classmethod
    def from_released(cls, path: str | os.PathLike,
                      config: MAEConfig | str = "mae_vit_base_patch16") -> tuple["AsukaMAE", LoadReport]:
        model = cls(config)
        report = model.load_released(path)
        return model.eval().requires_grad_(False), report


def prepare_mae_inputs(images: torch.Tensor, masks: torch.Tensor, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize a batch to the MAE's input size as the release does (cv2 INTER_AREA image, INTER_NEAREST mask).

    images: float (B, 3, H, W) RGB in [0, 1] (any aspect ratio: resized to size x size); masks: float (B, 1, H, W),
    1 = hole. Returns float32 (B, 3, size, size) in [0, 1] and float32 (B, 1, size, size) in {0, 1}, on the
    input device. The release resizes 8-bit images (rounding to 1/255); we resize the float values.
    cv2 rather than torch's `area` mode: they differ for non-integer scale factors and the release used cv2.
    """
    import cv2

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if masks.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(f"masks must be (B, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}")
    if images.shape[2:] == (size, size):
        return images.float(), (masks >= 0.5).float()
    image_np = images.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    mask_np = (masks.detach().float()[:, 0] >= 0.5).cpu().numpy().astype(np.float32)
    out_images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in image_np])
    out_masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in mask_np])
    return (torch.from_numpy(out_images).permute(0, 3, 1, 2).to(images.device),
            torch.from_numpy(out_masks)[:, None].to(images.device))
