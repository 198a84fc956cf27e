"""Colour consistency of an inpainted image with its ground truth: low-frequency colour shift and boundary seam.

Pure maths on numpy arrays, numbers out. Images are uint8 (H, W, 3) sRGB; `region` / `hole` masks are (H, W)
bool or float in {0, 1}, 1 = hole (or: the pixels averaged over). Colour science comes from scikit-image
(`skimage.color.rgb2lab`, D65 / 2 degrees, and `skimage.color.deltaE_ciede2000` with kL = kC = kH = 1); filters
from OpenCV. Lengths are stated in pixels at 512 and scaled to the image (`scaled_length`).

Both scores are CIEDE2000 units (about 1 = a just-noticeable difference), 0 for the ground truth itself, lower is
better. Averaging is done on sRGB values in [0, 1] (the encoded values, as filters and box means on images
usually are); only the averaged colours are converted to CIELAB, which keeps both scores cheap at 512.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIDE = 512  # lengths in the protocol are pixels at this image side


def scaled_length(length_at_512: float, shape: tuple[int, ...]) -> float:
    """A length given in pixels at 512 scaled to an image of `shape` (H, W, ...): length * min(H, W) / 512."""
    if length_at_512 <= 0:
        raise ValueError(f"a length in pixels at 512 must be positive, got {length_at_512}")
    return length_at_512 * min(shape[0], shape[1]) / REFERENCE_SIDE


def _ciede2000(rgb_a: np.ndarray, rgb_b: np.ndarray) -> np.ndarray:
    """CIEDE2000 between two (N, 3) arrays of sRGB colours in [0, 1] -> float64 (N,). skimage (and with it scipy)
    is imported by the first call, not with the module: a score without the colour metrics never loads it."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    return deltaE_ciede2000(rgb2lab(rgb_a[:, None, :])[:, 0], rgb2lab(rgb_b[:, None, :])[:, 0])


def _check(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, what: str) -> np.ndarray:
    """`mask` as bool, after checking the shapes and dtypes shared by both scores."""
    if pred.dtype != np.uint8 or gt.dtype != np.uint8:
        raise ValueError(f"{what}: pred and gt must be uint8, got {pred.dtype} and {gt.dtype}")
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 3 or mask.shape != pred.shape[:2]:
        raise ValueError(f"{what}: expected pred, gt (H, W, 3) and a mask (H, W); got {pred.shape}, {gt.shape}, "
                         f"{mask.shape}")
    return np.asarray(mask) > 0.5


def region_low_pass(images: list[np.ndarray], region: np.ndarray, sigma: float) -> list[np.ndarray]:
    """Gaussian low-pass of each image restricted to `region` (normalised convolution): at each pixel,
    G*(image * region) / G*(region), so pixels outside the region never leak in; on a region of every pixel it is
    a plain Gaussian blur. images: float32 (H, W, 3) each; region: bool (H, W) with at least one pixel; sigma in
    pixels (kernel truncated at 4 sigma, borders mirrored as "dcba|abcd"). Returns float32 (H, W, 3) each,
    meaningful on `region` only."""
    size = 2 * int(np.ceil(4.0 * sigma)) + 1
    blur = lambda x: cv2.GaussianBlur(x, (size, size), sigma, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    if region.all():
        return [blur(image) for image in images]
    weight = region.astype(np.float32)
    norm = 1.0 / np.maximum(blur(weight), 1e-12)[..., None]
    return [blur(image * weight[..., None]) * norm for image in images]


def _tile_means(images: list[np.ndarray], region: np.ndarray, block: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Means of each image (H, W, C) over the region pixels of every block x block tile (the last row and column
    of tiles may be smaller) -> ([means (T, C) per image], region pixel counts (T,)) for the T tiles holding
    region pixels."""
    height, width = region.shape
    rows, cols = -(-height // block), -(-width // block)

    def tile_sums(x: np.ndarray) -> np.ndarray:
        x = np.pad(x, ((0, rows * block - height), (0, cols * block - width), (0, 0)))
        x = x.reshape(rows, block, cols * block, -1).sum(axis=1)
        return x.reshape(rows, cols, block, -1).sum(axis=2).reshape(rows * cols, -1)

    weight = region.astype(np.float32)[..., None]
    counts = tile_sums(weight)[:, 0]
    kept = counts > 0
    return [tile_sums(image * weight)[kept] / counts[kept, None] for image in images], counts[kept]


def low_pass_color_shift(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, sigma_at_512: float) -> float:
    """Mean CIEDE2000 between the low-passed prediction and ground truth over `region`.

    Definition: s = sigma_at_512 * min(H, W) / 512; P, G = region_low_pass of pred / 255 and gt / 255 over
    region (the low-pass sees region pixels only, so with region = the hole the known context of a composite does
    not dilute the hole's shift near the boundary). The image is cut into k x k tiles, k = max(1, floor(s / 2));
    per tile, the means of P and of G over its region pixels and their CIEDE2000 in CIELAB; the value is the mean
    of these over tiles weighted by each tile's region pixel count. (P and G hold no detail finer than s, so the
    tile means change them negligibly while cutting the colour conversions k^2-fold: the per-pixel mean of
    CIEDE2000(P, G) over the region agrees within 0.1% on photos.) 0 when pred equals gt on the region; NaN for
    an empty region. pred, gt: uint8 (H, W, 3); region: (H, W), 1 = measured.
    """
    inside = _check(pred, gt, region, "color shift")
    if not inside.any():
        return float("nan")
    sigma = scaled_length(sigma_at_512, pred.shape)
    low = region_low_pass([pred.astype(np.float32) / 255.0, gt.astype(np.float32) / 255.0], inside, sigma)
    (low_pred, low_gt), counts = _tile_means(low, inside, max(1, int(sigma // 2)))
    return float(np.average(_ciede2000(low_pred.astype(np.float64), low_gt.astype(np.float64)), weights=counts))


def boundary_bands(hole: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boundary, inner, outer) bool (H, W) masks of a bool hole mask, by exact Euclidean distance transforms:

    inner: hole pixels at distance <= band from the nearest known pixel;
    outer: known pixels at distance <= band from the nearest hole pixel;
    boundary: hole pixels with a known 4-neighbour (distance exactly 1 to the known region).
    The image border is not an edge: a hole touching it has no boundary there."""
    to_known = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_hole = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return hole & (to_known <= 1.0), hole & (to_known <= band), ~hole & (to_hole <= band)


def _window_means(image: np.ndarray, band_mask: np.ndarray, size: int, points: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean colour of the `band_mask` pixels inside the size x size window centred on each point -> (N, 3)."""
    weight = band_mask.astype(np.float32)
    sums = cv2.boxFilter(image * weight[..., None], -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    counts = cv2.boxFilter(weight, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return (sums[points] / counts[points][:, None]).astype(np.float64)


def seam_color_step(pred: np.ndarray, gt: np.ndarray, hole: np.ndarray, band_at_512: float) -> float:
    """Colour step across the hole's edge beyond the ground truth's own: mean over boundary points of
    |dE(inner, outer) of pred - dE(inner, outer) of gt|.

    Definition: w = max(1, round(band_at_512 * min(H, W) / 512)); bands and boundary points as `boundary_bands(hole,
    w)`. The inner (outer) colour at a boundary point is the mean sRGB colour of the inner (outer) band pixels in
    the (2w + 1) x (2w + 1) window centred on it (never empty: the point itself is inner, its known 4-neighbour
    outer); dE is CIEDE2000 between the two means in CIELAB. 0 when pred equals gt near the edge; NaN when the
    mask has no edge (empty or full). pred, gt: uint8 (H, W, 3); hole: (H, W), 1 = hole.
    """
    inside = _check(pred, gt, hole, "seam")
    band = max(1, round(scaled_length(band_at_512, pred.shape)))
    boundary, inner, outer = boundary_bands(inside, band)
    if not boundary.any():
        return float("nan")
    points = np.nonzero(boundary)
    size = 2 * band + 1
    steps = []
    for image in (pred, gt):
        rgb = image.astype(np.float32) / 255.0
        steps.append(_ciede2000(_window_means(rgb, inner, size, points), _window_means(rgb, outer, size, points)))
    return float(np.mean(np.abs(steps[0] - steps[1])))
