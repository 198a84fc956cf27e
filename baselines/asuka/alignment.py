"""ASUKA's alignment module: MAE prior (B, N, 512) -> condition tokens (B, N, D) for the diffusion model.

Structure (paper Sec. 3.2 and the FLUX release, `test_asuka_flux.py:get_single_stram_blk_asuka`):
`Linear(512 -> D)`, N blocks, `LayerNorm(D)`. The ASUKA block (release: `SingleStreamBlockAsuka` in
`src/flux/modules/layers.py`) is a parallel attention + MLP block: pre-norm LayerNorm without affine (eps 1e-6),
one `linear1` D -> 3D + 4D (qkv and MLP input), per-head RMSNorm on q and k (learned scale, eps 1e-6),
SDPA without any positional embedding, tanh-GELU on the MLP branch, `linear2` on [attn, mlp] 5D -> D, residual.
Released checkpoints also hold a `modulation.lin` that the forward never uses; the converter drops it.

Variants of Table 2(b) are presets (data), not subclasses:
  linear  dimension alignment only (no block)
  attn    one self-attention block
  cross4  learnable queries + 4 cross-attention layers reading the projected prior
  self4   ASUKA: 4 self-attention blocks
Every variant keeps the final LayerNorm, so they differ only in the blocks (the paper does not say otherwise).

For SD 1.5: D = 768, the (B, 256, 768) output replaces the text embeddings. For FLUX: D = 768 pooled over tokens
(`pooled`) replaces CLIP's vector, D = 4096 replaces T5's tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AlignmentPreset:
    """block: key of `BLOCKS` (or "none"); depth: number of blocks; learned_queries: cross-attention reads a
    learnable query set instead of transforming the prior tokens in place."""

    block: str
    depth: int
    learned_queries: bool = False


ALIGNMENT_PRESETS: dict[str, AlignmentPreset] = {
    "linear": AlignmentPreset("none", 0),
    "attn": AlignmentPreset("self", 1),
    "cross4": AlignmentPreset("cross", 4, learned_queries=True),
    "self4": AlignmentPreset("self", 4),
}


class QKNorm(nn.Module):
    """Per-head RMSNorm of queries and keys (release key names `query_norm`, `key_norm`; ours use torch's
    `nn.RMSNorm`, whose parameter is `weight` where the release has `scale`: the converter renames it)."""

    def __init__(self, head_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.query_norm = nn.RMSNorm(head_dim, eps=eps)
        self.key_norm = nn.RMSNorm(head_dim, eps=eps)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q), self.key_norm(k)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, H*Dh) -> (B, H, L, Dh)."""
    batch, length, width = x.shape
    return x.reshape(batch, length, num_heads, width // num_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, Dh) -> (B, L, H*Dh)."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class AlignmentBlock(nn.Module):
    """ASUKA's self-attention block (parallel attention + MLP), x (B, L, D) -> (B, L, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"alignment width {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_hidden = int(dim * mlp_ratio)
        self.pre_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear1 = nn.Linear(dim, 3 * dim + self.mlp_hidden)
        self.norm = QKNorm(dim // num_heads)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.linear2 = nn.Linear(dim + self.mlp_hidden, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        qkv, mlp = torch.split(self.linear1(self.pre_norm(x)), [3 * self.dim, self.mlp_hidden], dim=-1)
        # the release's layout: (K=3, H, Dh) along the feature axis
        q, k, v = (_heads(part, self.num_heads) for part in qkv.chunk(3, dim=-1))
        q, k = self.norm(q, k)
        attn = _merge(torch.nn.functional.scaled_dot_product_attention(q, k.to(v.dtype), v))
        return x + self.linear2(torch.cat([attn, self.mlp_act(mlp)], dim=-1))


class CrossAttentionBlock(nn.Module):
    """Cross-attention layer for the `cross4` ablation: queries (B, Q, D) read the context (B, N, D).

    Our design (the paper gives none): pre-norm (LayerNorm without affine) on both streams, QK RMSNorm as in
    the ASUKA block, residual cross-attention, then a residual tanh-GELU MLP (ratio 4).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"alignment width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.norm = QKNorm(dim // num_heads)
        self.to_out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError("CrossAttentionBlock needs a context (the projected MAE prior)")
        q = _heads(self.to_q(self.norm_q(x)), self.num_heads)
        k, v = (_heads(part, self.num_heads) for part in self.to_kv(self.norm_kv(context)).chunk(2, dim=-1))
        q, k = self.norm(q, k)
        x = x + self.to_out(_merge(torch.nn.functional.scaled_dot_product_attention(q, k.to(v.dtype), v)))
        return x + self.mlp(self.norm_mlp(x))


BLOCKS: dict[str, type[nn.Module]] = {"self": AlignmentBlock, "cross": CrossAttentionBlock}


class AsukaAlignment(nn.Module):
    """Alignment module. forward: prior (B, N, in_dim) -> condition (B, N, dim) (`cross4`: (B, num_queries, dim)).

    dim: width of the condition (768 for SD 1.5's text embeddings and FLUX's CLIP slot, 4096 for FLUX's T5);
    num_heads: default dim // 64 as in the release; num_queries: only for learned-query variants (default 256,
    the MAE's token count, so every variant returns the same shape).
    """

    def __init__(self, dim: int = 768, variant: str = "self4", in_dim: int = 512, num_heads: int | None = None,
                 mlp_ratio: float = 4.0, num_queries: int = 256) -> None:
        super().__init__()
        if variant not in ALIGNMENT_PRESETS:
            raise ValueError(f"unknown alignment variant {variant!r}; known: {sorted(ALIGNMENT_PRESETS)}")
        preset = ALIGNMENT_PRESETS[variant]
        self.variant = variant
        self.preset = preset
        self.dim = dim
        num_heads = num_heads or max(1, dim // 64)
        self.proj_in = nn.Linear(in_dim, dim)
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02) if preset.learned_queries else None
        block_cls = BLOCKS.get(preset.block)
        self.blocks = nn.ModuleList(block_cls(dim, num_heads, mlp_ratio) for _ in range(preset.depth)) \
            if block_cls is not None else nn.ModuleList()
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, prior: torch.Tensor) -> torch.Tensor:
        """prior (B, N, in_dim) float -> (B, N or num_queries, dim) in the prior's dtype."""
        if prior.ndim != 3 or prior.shape[-1] != self.proj_in.in_features:
            raise ValueError(f"alignment expects (B, N, {self.proj_in.in_features}), got {tuple(prior.shape)}")
        h = self.proj_in(prior)
        if self.queries is not None:
            context, h = h, self.queries.to(h.dtype).expand(h.shape[0], -1, -1)
            for block in self.blocks:
                h = block(h, context)
        else:
            for block in self.blocks:
                h = block(h)
        return self.norm_out(h)

    def pooled(self, prior: torch.Tensor) -> torch.Tensor:
        """Mean over tokens of `forward`: (B, dim), the release's replacement of FLUX's pooled CLIP vector."""
        return self.forward(prior).mean(dim=1)

    @classmethod
    def from_released(cls, path: str | os.PathLike, dim: int | None = None) -> "AsukaAlignment":
        """Load a released alignment file (`asuka_alignment_clip.pt`: D = 768, `asuka_alignment_t5.pt`:
        D = 4096): a plain state dict of the release's `nn.Sequential`, loaded strictly after renaming.
        Widths and depth are read from the file (the depth must be a self-attention preset's: 1 or 4);
        `dim`, when given, is checked against the file's width."""
        from baselines.asuka.convert import convert_released_alignment
        from misato.checkpoints import load_checkpoint

        raw = load_checkpoint(path)
        if not isinstance(raw, dict) or "0.weight" not in {k.removeprefix("module.") for k in raw}:
            raise ValueError(f"{path}: not a released alignment state dict (no '0.weight')")
        depth = len({k.removeprefix("module.").split(".")[0] for k in raw}) - 2
        variants = {preset.depth: name for name, preset in ALIGNMENT_PRESETS.items() if preset.block == "self"}
        if depth not in variants:
            raise ValueError(f"{path}: {depth} blocks; no self-attention preset has that depth ({sorted(variants)})")
        state = convert_released_alignment(raw, depth=depth)
        width, in_dim = state["proj_in.weight"].shape
        if dim is not None and dim != width:
            raise ValueError(f"{path}: alignment width {width}, expected {dim}")
        model = cls(dim=width, variant=variants[depth], in_dim=in_dim)
        model.load_state_dict(state, strict=True)
        return model.eval().requires_grad_(False)


def blend_with_null(cond: torch.Tensor, null: torch.Tensor, weight: float) -> torch.Tensor:
    """The FLUX release's conditioning weight: `null + weight * (cond - null)`.

    cond (B, ...) and null broadcastable to it (e.g. the empty-prompt embedding, (1, ...)); weight 1 = cond.
    """
    return null.to(cond.dtype) + weight * (cond - null.to(cond.dtype))
