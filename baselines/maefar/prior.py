"""MAE-FAR's prior: decoder features and averaged decoder attention of the inpainting MAE.

Facts from the release (github ewrfcas/MAE-FAR, `MAE/models_mae.py` `MaskedAutoencoderViT.forward_return_feature`
with `mask_decoder=True`, as built by its `test.py`); the MAE network itself is ASUKA's port
(`baselines.asuka.mae.AsukaMAE`, same state-dict layout), reused here:

- encoder: a token is masked when any hole pixel falls in its patch; masked tokens are excluded as keys;
- decoder input: masked tokens replaced by `mask_token` (the plain MAE: no partial-patch embedding), + pos;
- every decoder block runs with full (unmasked) attention, and ALSO yields a score map: the head-averaged softmax
  of the same logits with the keys of FULLY masked tokens (hole area 1) excluded. The 8 maps are averaged:
  scores (B, L, L), rows = queries;
- features: `decoder_norm` of the last block's output, as (B, 512, 16, 16).

Deviation: where every token of a sample is fully masked the release's softmax is NaN; here that sample's scores
exclude no key (and ASUKA's encoder lets it attend to all tokens), so the output stays finite.
"""

from __future__ import annotations

import torch

from baselines.asuka.mae import AsukaMAE, Block, TokenMask


def masked_attention_probs(block: Block, h: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """Head-averaged attention probabilities of `block` on tokens h (B, L, D), keys `excluded` (B, L) bool removed.

    Returns (B, L, L) float, rows = queries, each row sums to 1.
    """
    batch, length, dim = h.shape
    heads = block.attn.num_heads
    qkv = block.attn.qkv(block.norm1(h)).reshape(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    logits = (qkv[0] @ qkv[1].transpose(-2, -1)) * (dim // heads) ** -0.5
    logits = logits.masked_fill(excluded[:, None, None, :], float("-inf"))
    return logits.softmax(dim=-1).mean(dim=1)


def mae_far_prior(mae: AsukaMAE, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The MAE prior of MAE-FAR at the MAE size S (`mae.config.img_size`).

    images: float (B, 3, S, S) RGB in [0, 1]; masks: float (B, 1, S, S) in {0, 1}, 1 = hole.
    Returns features (B, D, g, g) (D = decoder width, g = S / patch) and scores (B, g*g, g*g).
    """
    size = mae.config.img_size
    if images.shape[1:] != (3, size, size) or masks.shape != (images.shape[0], 1, size, size):
        raise ValueError(f"MAE-FAR prior expects images (B, 3, {size}, {size}) and masks (B, 1, {size}, {size}), "
                         f"got {tuple(images.shape)} and {tuple(masks.shape)}")
    x, holes = mae.normalize(images, masks)
    tokens = mae.token_mask(holes)
    latent = mae.encode(x, tokens)
    h = mae.decoder_input(latent, x, holes, TokenMask(tokens.masked, torch.zeros_like(tokens.partial)))
    full = tokens.masked & ~tokens.partial
    excluded = full & ~full.all(dim=1, keepdim=True)
    scores = []
    for block in mae.decoder_blocks:
        scores.append(masked_attention_probs(block, h, excluded))
        h = block(h)
    feats = mae.decoder_norm(h)
    grid = mae.config.grid
    feats = feats.reshape(feats.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
    return feats, torch.stack(scores, dim=1).mean(dim=1)
