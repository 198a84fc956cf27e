"""Call any inpainter the same way: resolution policy, batching, device moves and output checks.

The runner hands the harness lists of samples as arrays (images uint8 (H, W, 3) RGB, masks float32
(H, W) in {0, 1} with 1 = hole, one seed per sample). The harness

1. groups samples of equal size (a batch must be one tensor) and cuts groups to the inpainter's batch
   size (1 when `inpainter.batched` is False);
2. sets the hole pixels of the images to 0, so no inpainter ever sees the ground truth it must fill
   (as LaMa's own pipeline does with `img * (1 - mask)`), then pads each batch to the inpainter's `ResolutionPolicy` (reflect padding at the bottom and right,
   so cropping back is `[..., :H, :W]`);
3. moves tensors to `inpainter.device`, calls `inpaint(images, masks, seeds)` under `torch.no_grad()`,
   checks the output (shape, dtype, finite values: `OutputError` naming the method and the samples) and its
   range: values outside [-CLAMP_TOLERANCE, 1 + CLAMP_TOLERANCE] are refused (`OutputError`, with the share
   and extremes) unless `clip_outputs=True` (CLI `--clip-outputs`, recorded in the run manifest), which clips
   them and counts them per sample; values within the tolerance (float rounding) are clamped to [0, 1];
4. returns the raw outputs, cropped back, as float32 (H, W, 3) arrays in [0, 1].

Compositing (paste-back of known pixels) is not done here: the runner does it, for every method alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from baselines.base import Inpainter, ResolutionPolicy

log = logging.getLogger(__name__)

# Outputs within this distance of [0, 1] are clamped (float rounding); values further out are refused, or clipped
# and counted per sample with `clip_outputs`.
CLAMP_TOLERANCE = 1e-3


class OutputError(ValueError):
    """An inpainter returned something that is not an image in [0, 1]; the message names the method and samples."""


def value_policy(clip_outputs: bool) -> dict[str, object]:
    """What the harness does with output values outside [0, 1] (recorded in run manifests)."""
    return {"range": [0.0, 1.0], "tolerance": CLAMP_TOLERANCE, "beyond_tolerance": "clip" if clip_outputs else "refuse"}


@dataclass
class Prediction:
    """One raw output: float32 (H, W, 3) RGB in [0, 1], and the fraction of values that were outside
    [-CLAMP_TOLERANCE, 1 + CLAMP_TOLERANCE] (non-zero only with `clip_outputs`)."""

    raw: np.ndarray
    out_of_range: float


def padded_size(height: int, width: int, policy: ResolutionPolicy) -> tuple[int, int]:
    """The (H, W) the policy asks for: at least `min_size`, square if asked, then a multiple of `pad_multiple`."""
    if policy.pad_multiple < 1 or policy.min_size < 0:
        raise ValueError(f"invalid resolution policy {policy}")
    h, w = max(height, policy.min_size), max(width, policy.min_size)
    if policy.square:
        h = w = max(h, w)
    m = policy.pad_multiple
    return -(-h // m) * m, -(-w // m) * m


def reflect_pad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (B, C, H, W) at the bottom/right to (height, width) by reflection.

    `F.pad(mode="reflect")` needs each pad smaller than the side, so large pads (a 64 px image to a
    512 px minimum) are done in repeated reflections, like `numpy.pad(mode="reflect")`. A side of one
    pixel cannot be reflected and is replicated.
    """
    while x.shape[-2] < height or x.shape[-1] < width:
        h, w = x.shape[-2:]
        pad_h = min(height - h, h - 1) if h > 1 else height - h
        pad_w = min(width - w, w - 1) if w > 1 else width - w
        mode = "reflect" if (h > 1 or pad_h == 0) and (w > 1 or pad_w == 0) else "replicate"
        x = F.pad(x, (0, max(pad_w, 0), 0, max(pad_h, 0)), mode=mode)
    return x


def pad_batch(
    images: torch.Tensor, masks: torch.Tensor, policy: ResolutionPolicy
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Pad images (B, 3, H, W) and masks (B, 1, H, W) to the policy; returns them and the original (H, W).

    The padded mask is the reflection of the mask (so padding never invents a hole or known area that
    the reflected image content would contradict) and is re-binarised.
    """
    height, width = images.shape[-2:]
    target = padded_size(height, width, policy)
    if target == (height, width):
        return images, masks, (height, width)
    images = reflect_pad(images, *target)
    masks = (reflect_pad(masks, *target) > 0.5).to(masks.dtype)
    return images, masks, (height, width)


def crop_back(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo `pad_batch`: keep the top-left (H, W)."""
    return x[..., : size[0], : size[1]]


def _to_tensors(images: list[np.ndarray], masks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mask = torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]
    return image.contiguous(), mask.contiguous()


def check_output(out: object, expected: tuple[int, ...], who: str, samples: list[str] | None = None) -> torch.Tensor:
    """Raise `OutputError` unless `out` is a finite float tensor of shape `expected`; `samples` (ids, one per
    batch item) are named for non-finite values."""
    if not isinstance(out, torch.Tensor):
        raise OutputError(f"{who}.inpaint returned {type(out).__name__}, expected a torch.Tensor of shape {expected}")
    if tuple(out.shape) != tuple(expected):
        raise OutputError(f"{who}.inpaint returned shape {tuple(out.shape)}, expected {tuple(expected)}")
    if not out.is_floating_point():
        raise OutputError(f"{who}.inpaint returned dtype {out.dtype}, expected float in [0, 1]")
    finite = torch.isfinite(out).flatten(1).all(1).cpu()
    if not finite.all():
        named = samples or [str(i) for i in range(len(finite))]
        bad = [named[i] for i in torch.nonzero(~finite).flatten().tolist()]
        raise OutputError(f"{who}.inpaint returned NaN or infinite values for sample(s) {', '.join(map(repr, bad))}")
    return out


def _check_range(out: torch.Tensor, who: str, samples: list[str], clip_outputs: bool) -> torch.Tensor:
    """Per-sample share of values outside [0, 1] beyond `CLAMP_TOLERANCE`; `OutputError` for the first sample with
    any, unless `clip_outputs`."""
    flat = out.flatten(1)
    outside = ((flat < -CLAMP_TOLERANCE) | (flat > 1 + CLAMP_TOLERANCE)).float().mean(1)
    if not clip_outputs and bool((outside > 0).any()):
        i = int(torch.nonzero(outside > 0)[0])
        raise OutputError(
            f"{who}: the output for sample {samples[i]!r} has {100 * float(outside[i]):.1f}% of its values outside "
            f"[0, 1] (min {float(flat[i].min()):.3g}, max {float(flat[i].max()):.3g}); an inpainter returns RGB in "
            "[0, 1] (a model working in [-1, 1] converts with (x + 1) / 2 in its own class). Pass --clip-outputs "
            "(Python: clip_outputs=True) to clip them instead; the run manifest records it")
    return outside


def run_batch(
    inpainter: Inpainter,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    seeds: list[int],
    stems: list[str] | None = None,
    clip_outputs: bool = False,
    labels: list[str] | None = None,
) -> list[Prediction]:
    """Inpaint one batch of equal-sized samples with the policy applied; see the module docstring. Errors name the
    samples by `labels` (default: the stems, else the position in the batch)."""
    who = inpainter.name or type(inpainter).__name__
    named = list(labels or stems or [f"#{i}" for i in range(len(images))])
    image, mask = _to_tensors(images, masks)
    image = image * (1.0 - mask)  # hide the ground truth inside the hole
    image, mask, size = pad_batch(image, mask, inpainter.policy)
    kwargs = {"stems": list(stems or [])} if inpainter.uses_sample_ids else {}
    with torch.no_grad():
        out = inpainter.inpaint(image.to(inpainter.device), mask.to(inpainter.device), list(seeds), **kwargs)
    out = check_output(out, tuple(image.shape), who, named)
    out = crop_back(out.detach().float().cpu(), size)
    outside = _check_range(out, who, named, clip_outputs)
    out = out.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous().numpy()
    return [Prediction(out[i], float(outside[i])) for i in range(len(images))]


def inpaint_arrays(
    inpainter: Inpainter,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    seeds: list[int],
    stems: list[str] | None = None,
    batch_size: int = 1,
    clip_outputs: bool = False,
) -> list[Prediction]:
    """Inpaint samples of any sizes: groups equal sizes into batches of at most `batch_size`.

    images: uint8 (H, W, 3) RGB; masks: float32 (H, W) in {0, 1}, 1 = hole; seeds: one per sample.
    clip_outputs: clip output values outside [0, 1] instead of raising `OutputError` (module docstring, step 3).
    Returns one `Prediction` per sample, in input order. Results do not depend on `batch_size` as
    long as the inpainter honours its per-sample seeds.
    """
    if not (len(images) == len(masks) == len(seeds)) or (stems is not None and len(stems) != len(images)):
        raise ValueError(f"got {len(images)} images, {len(masks)} masks, {len(seeds)} seeds for one call")
    for i, (image, mask) in enumerate(zip(images, masks)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"sample {i}: expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"sample {i}: mask shape {mask.shape} differs from image size {image.shape[:2]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    per_call = batch_size if inpainter.batched else 1
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape[:2], []).append(i)
    results: list[Prediction | None] = [None] * len(images)
    for indices in groups.values():
        for start in range(0, len(indices), per_call):
            chunk = indices[start : start + per_call]
            preds = run_batch(
                inpainter,
                [images[i] for i in chunk],
                [masks[i] for i in chunk],
                [seeds[i] for i in chunk],
                [stems[i] for i in chunk] if stems is not None else None,
                clip_outputs,
                [stems[i] if stems is not None else f"#{i}" for i in chunk],
            )
            for i, pred in zip(chunk, preds):
                results[i] = pred
    missing = [stems[i] if stems is not None else i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"{inpainter.name}: no output for samples {missing[:5]}")
    return results
