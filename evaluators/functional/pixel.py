"""Per-image pixel metrics on uint8 arrays: PSNR, SSIM, boundary-gradient error.

Inputs are numpy uint8 (H, W, 3) RGB composites and ground truths; masks float32 (H, W) in [0, 1],
1 = hole. Variants are registries keyed by the names a `Protocol` stores.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch


def psnr_uint8(pred: np.ndarray, gt: np.ndarray) -> float:
    """10 log10(255^2 / MSE) in float64 over the whole image (inf for identical images)."""
    mse = np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def psnr_unit_eps(pred: np.ndarray, gt: np.ndarray) -> float:
    """asuka: -10 log10(MSE + 1e-7) on [0, 1] values (float32 as the official script computes it)."""
    p = torch.from_numpy(pred).float() / 255.0
    g = torch.from_numpy(gt).float() / 255.0
    mse = torch.mean((p - g) ** 2)
    return float(-10.0 * torch.log10(mse + 1e-7))


def ssim_gaussian_rgb(pred: np.ndarray, gt: np.ndarray) -> float:
    """Wang et al. SSIM: 11x11 Gaussian window (sigma 1.5), population statistics, per RGB channel, mean.

    The value of skimage's `structural_similarity(pred, gt, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=-1, data_range=255)` (tested equal to 1e-12). Own code (why): skimage
    runs 15 scipy float64 filters per image (0.17 s at 512 on one core, the largest cost of scoring outside
    network forwards); the same float64 statistics through OpenCV's Gaussian blur take 0.05 s. Window as skimage's:
    radius int(3.5 sigma + 0.5) = 5, so after skimage's crop of 5 pixels no border value enters the mean.
    pred, gt: uint8 (H, W, 3) with H, W >= 11.
    """
    sigma, radius = 1.5, int(3.5 * 1.5 + 0.5)
    if min(pred.shape[:2]) < 2 * radius + 1:
        raise ValueError(f"SSIM needs images of at least {2 * radius + 1}x{2 * radius + 1}, got {pred.shape}")
    x, y = pred.astype(np.float64), gt.astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (2 * radius + 1, 2 * radius + 1), sigma, sigmaY=sigma,
                                borderType=cv2.BORDER_REFLECT)

    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    s = s[radius:-radius, radius:-radius]
    return float(np.mean([s[..., channel].mean(dtype=np.float64) for channel in range(s.shape[-1])]))


def _gray_unit(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (H, W) in [0, 1]: torchvision's `rgb_to_grayscale` of `image / 255` (the ITU-R 601
    weights 0.2989, 0.587, 0.114, the same float32 tensor operations; own lines, as torchvision's import costs
    about 1 s of start-up: issue 26)."""
    red, green, blue = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0).unbind(dim=0)
    return (0.2989 * red + 0.587 * green + 0.114 * blue).numpy()


def ssim_uniform_gray(pred: np.ndarray, gt: np.ndarray) -> float:
    """asuka: torchvision rgb_to_grayscale on [0, 1] floats, then skimage defaults (7x7 uniform), data_range 1.
    skimage (scipy) is imported here, by the protocol that uses it, not with the module."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_gray_unit(pred), _gray_unit(gt), data_range=1.0))


PSNR_VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"uint8": psnr_uint8, "unit-eps": psnr_unit_eps}
SSIM_VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "gaussian-rgb": ssim_gaussian_rgb,
    "uniform-gray": ssim_uniform_gray,
}


def _reflect101(index: np.ndarray, n: int) -> np.ndarray:
    """OpenCV's default border (BORDER_REFLECT_101, "gfedcb|abcdefgh|gfedcba") for indices in [-1, n]."""
    index = np.abs(index)
    return np.where(index >= n, 2 * (n - 1) - index, index)


def _neighbourhood_index(shape: tuple[int, ...], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Flat pixel indices of the 3x3 neighbourhoods of the points (ys, xs), borders as OpenCV's: (3, 3, K)."""
    h, w = shape[:2]
    rows = np.stack([_reflect101(ys + d, h) for d in (-1, 0, 1)])
    cols = np.stack([_reflect101(xs + d, w) for d in (-1, 0, 1)])
    return rows[:, None, :] * w + cols[None, :, :]


def _sobel3(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cv2.Sobel(..., CV_64F, ksize=3) in x and in y at the centres of 3x3 neighbourhoods p (3, 3, K, C) float64."""
    gx = (p[0, 2] - p[0, 0]) + 2 * (p[1, 2] - p[1, 0]) + (p[2, 2] - p[2, 0])
    gy = (p[2, 0] - p[0, 0]) + 2 * (p[2, 1] - p[0, 1]) + (p[2, 2] - p[0, 2])
    return gx, gy


def boundary_gradient_error(result: np.ndarray, gt: np.ndarray, mask_uint8: np.ndarray, soft: bool = False) -> float:
    """Mean over RGB channels of the mean Sobel-gradient difference on the mask's Canny edge.

    Own code (why): the metric exists only in the asuka-misato scripts. Per channel: 3x3 Sobel (CV_64F) in x
    and y of `result` minus that of `gt`, magnitude, mean over pixels where cv2.Canny(mask, 100, 200) > 0;
    0 when the mask has no edge (as the official script does). The Sobel responses are computed at the edge
    pixels only (2,600-10,300 of the 262,144 pixels of MISATO masks at 512; 29 -> 8 ms per image in the scoring
    benchmark), with OpenCV's border; equal to the full-image computation to 1e-12 (test).
    result: (H, W, 3) float64 or uint8 composite; gt: (H, W, 3) uint8; mask_uint8: (H, W) uint8 0..255.
    soft: `result` is the raw prediction, and the error is taken on its soft composite
    result * m + gt * (1 - m), m = mask / 255 in float64, unrounded (asuka's cal_grad.py), formed at the pixels
    the Sobel reads.
    """
    ys, xs = np.nonzero(cv2.Canny(mask_uint8, 100, 200))
    if ys.size == 0:
        return 0.0
    index = _neighbourhood_index(gt.shape, ys, xs)
    r = result.reshape(-1, result.shape[-1])[index].astype(np.float64)
    g = gt.reshape(-1, gt.shape[-1])[index].astype(np.float64)
    if soft:
        m = mask_uint8.reshape(-1)[index].astype(np.float64)[..., None] / 255.0
        r = r * m + g * (1.0 - m)
    (rx, ry), (gx, gy) = _sobel3(r), _sobel3(g)
    dx, dy = rx - gx, ry - gy
    return float(np.mean(np.sqrt(dx**2 + dy**2).mean(axis=0)))
