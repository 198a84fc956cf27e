"""Mask samplers: the ASUKA training mixture (paper Sec. 3.1) and the MISATO mixture (Sec. 4).

ASUKA training (Sec. 3.1): for each mask pick a basis with probability 50% object shape, 40% irregular,
10% regular; an object shape is unioned with an irregular mask with probability 50%; the hole ratio is
kept in [0.1, 0.75]. MISATO (Sec. 4): "the masking strategy as in Sec. 3.1 but excluding the rectangle and
complement rectangle masks", hole ratio in [0.2, 0.8]. Both keep a ratio range by rejection: a candidate
is redrawn (basis included) until lo <= ratio <= hi, at most `max_tries` times.

Choices the paper leaves open, recorded here and in the sampler configs:
* Without the regular basis, MISATO renormalises 50/40 to 5/9 object, 4/9 irregular.
* The irregular basis ("Co-Mod mask and LaMa mask") is half Co-Mod full free-form, half LaMa split evenly
  over thin/medium/thick 512. Co-Mod's box fills are part of the Co-Mod mask, not the excluded regular
  basis, so MISATO keeps them; `comod-brush` is the preset for a strictly rectangle-free variant.
* Regular = rectangle or complement rectangle, 50/50.
* "For masks smaller than the ratio of 75%, we enlarge the mask ratio to 75% with randomly selected mask
  regions": read as the MAE input masking of MAE-FAR [7] (`adaptive_random_masking`), which ASUKA's MAE
  fine-tuning follows: the image is cut in p x p tokens, every token touching the hole is dropped, and
  random other tokens are dropped until 75% of the tokens are; the inpainting hole itself (the sampled
  mask) is unchanged. See `enlarge_for_mae`. It applies to MAE training, not to MISATO.
* COCO background (MISATO's fourth domain): hole &= ~foreground, then the ratio is checked; an image whose
  background is too small for the lower bound is skipped (`MaskSkipped`) instead of raising.

Object shapes need an `ObjectShapeBank` (COCO segments). Without one, the object basis is dropped (and a
warning logged), so the sampler draws irregular (and regular) masks only; the `kind` field shows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from misato.masks.coco import ObjectShapeBank, carve_background
from misato.masks.registry import generate, get_preset
from misato.masks.seeding import item_rng

log = logging.getLogger(__name__)

Weighted = tuple[tuple[str, float], ...]

IRREGULAR_MIX: Weighted = (("comod", 0.5), ("lama-thin", 1 / 6), ("lama-medium", 1 / 6), ("lama-thick", 1 / 6))
REGULAR_MIX: Weighted = (("rectangle", 0.5), ("complement-rectangle", 0.5))


@dataclass(frozen=True)
class SamplerConfig:
    """A mixture of mask generators with a hole-ratio range enforced by rejection.

    bases: weights of the "object", "irregular" and "regular" bases (normalised at use).
    irregular / regular: preset names (see `misato.masks.registry.PRESETS`) and weights inside a basis.
    object_union_p: probability that an object shape is unioned with one irregular mask.
    ratio_range: inclusive [lo, hi] of the final hole ratio; max_tries: rejection cap.
    fix_kind: draw the kind (basis, union coin, preset) once per mask and redraw only its shape until the
    ratio fits, so accepted masks keep the stated mixture proportions; False redraws the kind with every
    candidate, which skews the mixture toward kinds that fit the range more often.
    """

    name: str
    bases: Weighted
    irregular: Weighted = IRREGULAR_MIX
    regular: Weighted = ()
    object_preset: str = "coco-object"
    object_union_p: float = 0.5
    ratio_range: tuple[float, float] = (0.2, 0.8)
    max_tries: int = 100
    fix_kind: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.ratio_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"sampler {self.name}: ratio_range must satisfy 0 <= lo <= hi <= 1, got {self.ratio_range}")
        if self.max_tries < 1:
            raise ValueError(f"sampler {self.name}: max_tries must be >= 1, got {self.max_tries}")
        for basis, weight in self.bases:
            if basis not in ("object", "irregular", "regular") or weight < 0:
                raise ValueError(f"sampler {self.name}: bad basis entry {(basis, weight)}")
        for name, weight in (*self.irregular, *self.regular, (self.object_preset, 1.0)):
            get_preset(name)
            if weight < 0:
                raise ValueError(f"sampler {self.name}: negative weight for {name}")


ASUKA_TRAIN = SamplerConfig(
    "asuka-train",
    bases=(("object", 0.5), ("irregular", 0.4), ("regular", 0.1)),
    regular=REGULAR_MIX,
    ratio_range=(0.1, 0.75),
)
MISATO = SamplerConfig("misato", bases=(("object", 0.5), ("irregular", 0.4)), ratio_range=(0.2, 0.8))
SAMPLERS: dict[str, SamplerConfig] = {c.name: c for c in (ASUKA_TRAIN, MISATO)}


@dataclass(frozen=True)
class MaskSample:
    """An accepted mask. mask: uint8 (size, size) in {0, 1}, 1 = hole; kind: generator name(s), joined by
    "+" for unions (e.g. "coco-object+lama-thin"); hole_ratio: mask.mean() after any foreground carving;
    attempts: candidates drawn, this one included."""

    mask: np.ndarray
    kind: str
    hole_ratio: float
    attempts: int


@dataclass(frozen=True)
class MaskSkipped:
    """No mask for this item: the image's background cannot hold a hole in the ratio range.

    reason: a sentence for the manifest; background_ratio: 1 - foreground.mean(); attempts: candidates drawn.
    """

    reason: str
    background_ratio: float
    attempts: int


class MaskSamplingError(ValueError):
    """No candidate fell in the ratio range within max_tries (without a foreground to blame)."""


_warned_no_objects: set[str] = set()


def _pick(rng: np.random.Generator, table: Weighted) -> str:
    """One name from a (name, weight) table, by a single uniform draw against the cumulative weights."""
    names = [name for name, _ in table]
    weights = np.array([weight for _, weight in table], dtype=np.float64)
    if weights.sum() <= 0:
        raise ValueError(f"empty or zero-weight table {table}")
    cumulative = np.cumsum(weights / weights.sum())
    return names[min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(names) - 1)]


def _active_bases(config: SamplerConfig, objects: ObjectShapeBank | None) -> Weighted:
    bases = tuple((b, w) for b, w in config.bases if w > 0 and not (b == "object" and objects is None))
    if objects is None and any(b == "object" and w > 0 for b, w in config.bases) and config.name not in _warned_no_objects:
        _warned_no_objects.add(config.name)
        log.warning("sampler %s: no ObjectShapeBank given, object-shape masks are left out", config.name)
    if not bases:
        raise ValueError(f"sampler {config.name}: no basis left to draw from (object shapes need an ObjectShapeBank)")
    return bases


def draw_kind(rng: np.random.Generator, config: SamplerConfig, objects: ObjectShapeBank | None = None) -> tuple[str, ...]:
    """Pick what to draw: the basis, the object/irregular union coin and the preset(s), e.g.
    ("coco-object", "lama-thin"). The masks of a kind are unioned."""
    basis = _pick(rng, _active_bases(config, objects))
    if basis == "object":
        if config.irregular and rng.random() < config.object_union_p:
            return (config.object_preset, _pick(rng, config.irregular))
        return (config.object_preset,)
    return (_pick(rng, config.irregular if basis == "irregular" else config.regular),)


def render_kind(
    rng: np.random.Generator, size: int, kind: tuple[str, ...], objects: ObjectShapeBank | None = None
) -> np.ndarray:
    """The union of one mask of each preset in `kind`: uint8 (size, size), 1 = hole."""
    mask = generate(kind[0], rng, size, objects)
    for name in kind[1:]:
        mask = mask | generate(name, rng, size, objects)
    return mask


def draw_candidate(
    rng: np.random.Generator, size: int, config: SamplerConfig, objects: ObjectShapeBank | None = None
) -> tuple[np.ndarray, str]:
    """One candidate of the mixture, before any ratio check: (uint8 (size, size) 1 = hole, kind name)."""
    kind = draw_kind(rng, config, objects)
    return render_kind(rng, size, kind, objects), "+".join(kind)


def sample_mask(
    rng: np.random.Generator,
    size: int,
    config: SamplerConfig,
    objects: ObjectShapeBank | None = None,
    foreground: np.ndarray | None = None,
) -> MaskSample | MaskSkipped:
    """Draw candidates until the hole ratio is in `config.ratio_range` (inclusive).

    foreground: optional bool (size, size), True = object pixel; holes are carved out of it before the
    ratio check. Returns `MaskSkipped` when the background is smaller than the lower bound, or when
    `max_tries` candidates all failed with a foreground; raises `MaskSamplingError` when they failed
    without one.
    """
    lo, hi = config.ratio_range
    background = 1.0
    if foreground is not None:
        foreground = np.asarray(foreground)
        if foreground.shape != (size, size):
            raise ValueError(f"foreground must have shape {(size, size)}, got {foreground.shape}")
        foreground = foreground.astype(bool)
        background = 1.0 - float(foreground.mean())
        if background < lo:
            return MaskSkipped(
                f"background covers {background:.3f} of the image, less than the minimum hole ratio {lo}", background, 0
            )
    kind = draw_kind(rng, config, objects) if config.fix_kind else None
    for attempt in range(1, config.max_tries + 1):
        drawn = kind if kind is not None else draw_kind(rng, config, objects)
        mask = render_kind(rng, size, drawn, objects)
        if foreground is not None:
            mask = carve_background(mask, foreground)
        ratio = float(mask.mean())
        if lo <= ratio <= hi:
            return MaskSample(mask.astype(np.uint8), "+".join(drawn), ratio, attempt)
    if foreground is not None:
        return MaskSkipped(
            f"no mask with hole ratio in [{lo}, {hi}] after {config.max_tries} tries on a background of {background:.3f}",
            background,
            config.max_tries,
        )
    raise MaskSamplingError(
        f"sampler {config.name}: no mask with hole ratio in [{lo}, {hi}] after {config.max_tries} tries at size {size}; "
        "widen ratio_range or raise max_tries"
    )


def asuka_training_mask(
    rng: np.random.Generator, size: int = 512, objects: ObjectShapeBank | None = None, config: SamplerConfig = ASUKA_TRAIN
) -> MaskSample:
    """One ASUKA training mask (Sec. 3.1), hole ratio in [0.1, 0.75]. Use `enlarge_for_mae` for MAE input."""
    result = sample_mask(rng, size, config, objects)
    if isinstance(result, MaskSkipped):  # only possible with a foreground, which is not passed here
        raise MaskSamplingError(result.reason)
    return result


def sample_misato_mask(
    seed: int,
    domain: str,
    index: int,
    size: int = 512,
    foreground: np.ndarray | None = None,
    ratio_range: tuple[float, float] = (0.2, 0.8),
    max_tries: int = 100,
    *,
    objects: ObjectShapeBank | None = None,
    config: SamplerConfig = MISATO,
) -> MaskSample | MaskSkipped:
    """Like `misato_mask`, but a skipped item returns `MaskSkipped` (with its reason) instead of None."""
    config = replace(config, ratio_range=tuple(ratio_range), max_tries=int(max_tries))
    return sample_mask(item_rng(seed, domain, index), int(size), config, objects, foreground)


def misato_mask(
    seed: int,
    domain: str,
    index: int,
    size: int = 512,
    foreground: np.ndarray | None = None,
    ratio_range: tuple[float, float] = (0.2, 0.8),
    max_tries: int = 100,
    *,
    objects: ObjectShapeBank | None = None,
    config: SamplerConfig = MISATO,
) -> MaskSample | None:
    """The MISATO mask of item `index` of `domain`: a `MaskSample`, or None when skipped.

    The stream is `item_rng(seed, domain, index)`, so the result depends only on these arguments.
    foreground: bool (size, size), True = object (COCO background domain; see `coco_foreground`).
    objects: COCO object shapes for the object basis; without them only irregular masks are drawn.
    None means the background is too small for `ratio_range`; the reason is logged at INFO, and
    `sample_misato_mask` (same arguments) returns it as `MaskSkipped.reason` for a manifest.
    Raises `MaskSamplingError` if no candidate fits within `max_tries` without a foreground.
    """
    result = sample_misato_mask(
        seed, domain, index, size, foreground, ratio_range, max_tries, objects=objects, config=config
    )
    if isinstance(result, MaskSkipped):
        log.info("mask for %s/%d skipped: %s", domain, index, result.reason)
        return None
    return result


@dataclass(frozen=True)
class MaeMask:
    """MAE input masking of one image. token_mask: bool (H/p, W/p), True = token dropped (exactly
    `n_tokens - int(n_tokens * (1 - target_ratio))` of them); pixel_mask: uint8 (H, W), 1 = hole as the MAE
    sees it (the hole inside dropped tokens plus every extra dropped token in full)."""

    token_mask: np.ndarray
    pixel_mask: np.ndarray


def enlarge_for_mae(
    mask: np.ndarray, rng: np.random.Generator, target_ratio: float = 0.75, patch_size: int = 16
) -> MaeMask:
    """Enlarge a hole to `target_ratio` of the MAE tokens with random extra tokens (MAE-FAR style).

    mask: (H, W) in {0, 1}, 1 = hole, H and W multiples of `patch_size`. Tokens touching the hole are
    dropped first; random hole-free tokens are added until the count is reached. If more tokens touch the
    hole than the target allows, a random subset of them is dropped (as MAE-FAR's tie-breaking does).
    """
    mask = np.asarray(mask).astype(bool)
    h, w = mask.shape
    p = int(patch_size)
    if h % p or w % p:
        raise ValueError(f"mask size {mask.shape} is not a multiple of patch_size {p}")
    if not 0.0 < target_ratio <= 1.0:
        raise ValueError(f"target_ratio must be in (0, 1], got {target_ratio}")
    touched = mask.reshape(h // p, p, w // p, p).any(axis=(1, 3)).ravel()
    n_tokens = touched.size
    n_drop = n_tokens - int(n_tokens * (1 - target_ratio))
    hole_idx, free_idx = np.flatnonzero(touched), np.flatnonzero(~touched)
    if hole_idx.size >= n_drop:
        dropped = rng.choice(hole_idx, size=n_drop, replace=False)
    else:
        dropped = np.concatenate([hole_idx, rng.choice(free_idx, size=n_drop - hole_idx.size, replace=False)])
    token = np.zeros(n_tokens, bool)
    token[dropped] = True

    def up(tokens: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(tokens.reshape(h // p, w // p), p, axis=0), p, axis=1)

    pixel = (mask & up(token & touched)) | up(token & ~touched)
    return MaeMask(token.reshape(h // p, w // p), pixel.astype(np.uint8))
