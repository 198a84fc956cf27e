"""Pixel metrics and compositing against direct re-computations of the official formulas."""

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from misato.composite import composite_uint8
from evaluators.functional.pixel import (
    boundary_gradient_error, psnr_uint8, psnr_unit_eps, ssim_gaussian_rgb, ssim_uniform_gray,
)


@pytest.fixture(scope="module")
def pair():
    from skimage import data

    gt = np.ascontiguousarray(data.astronaut()[100:196, 150:246])
    rng = np.random.default_rng(0)
    pred = np.clip(gt + rng.normal(0, 25, gt.shape), 0, 255).astype(np.uint8)
    mask = np.zeros(gt.shape[:2], np.uint8)
    mask[20:60, 30:80] = 255
    mask[70:75, 10:90] = 128  # soft values exercise the soft-mask composite
    return pred, gt, mask


def test_asuka_psnr_equals_official_formula(pair):
    pred, gt, _ = pair
    p, g = TF.to_tensor(pred), TF.to_tensor(gt)
    expected = float(-10 * torch.log10(torch.mean((p - g) ** 2) + 1e-7))
    assert psnr_unit_eps(pred, gt) == pytest.approx(expected, abs=1e-6)


def test_uint8_psnr_equals_skimage(pair):
    pred, gt, _ = pair
    assert psnr_uint8(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=255), rel=1e-12)
    assert psnr_uint8(gt, gt) == float("inf")


def test_asuka_ssim_equals_official_formula(pair):
    pred, gt, _ = pair
    p = TF.rgb_to_grayscale(TF.to_tensor(pred))[0].numpy()
    g = TF.rgb_to_grayscale(TF.to_tensor(gt))[0].numpy()
    assert ssim_uniform_gray(pred, gt) == pytest.approx(structural_similarity(p, g, data_range=1.0), abs=1e-12)


def test_gaussian_ssim_equals_skimage(pair):
    """Our OpenCV-filtered SSIM is skimage's Gaussian RGB SSIM (the comod protocol's definition)."""
    pred, gt, _ = pair
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, gt.shape, dtype=np.uint8)
    odd = gt[:37, :61]  # odd, non-square sizes
    for a, b in ((pred, gt), (gt, gt), (noise, gt), (np.zeros_like(gt), gt), (odd[::-1], odd)):
        expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         channel_axis=-1, data_range=255)
        assert ssim_gaussian_rgb(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim_gaussian_rgb(gt, gt) == 1.0
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_gaussian_rgb(gt[:8, :8], gt[:8, :8])


def _official_gradient(result, gt, mask):
    """cal_grad.py's per-channel formula, written out independently."""
    edges = cv2.Canny(mask, 100, 200)
    means = []
    for c in range(3):
        r, g = result[:, :, c], gt[:, :, c]
        gx = cv2.Sobel(r, cv2.CV_64F, 1, 0, ksize=3) - cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3)
        gy = cv2.Sobel(r, cv2.CV_64F, 0, 1, ksize=3) - cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3)
        vals = np.sqrt(gx**2 + gy**2)[edges > 0]
        means.append(vals.mean() if vals.size else 0)
    return float(np.mean(means))


def test_boundary_gradient_equals_official_formula(pair):
    """Sobel at the edge pixels only equals the official full-image filters, including edges on the image border
    (OpenCV's reflect-101) and the soft composite formed at the pixels read."""
    pred, gt, mask = pair
    border = mask.copy()
    border[:30, :12] = 255  # touches the top and left borders
    border[-9:, 50:] = 255  # and the bottom and right ones
    rng = np.random.default_rng(1)
    blobs = (cv2.GaussianBlur(rng.random(gt.shape[:2]), (0, 0), 4) > 0.5).astype(np.uint8) * 255
    for m in (mask, border, blobs):
        assert cv2.Canny(m, 100, 200).any()
        soft = m[:, :, None] / 255.0
        result = pred * soft + gt * (1 - soft)
        expected = _official_gradient(result, gt, m)
        assert boundary_gradient_error(result, gt, m) == pytest.approx(expected, rel=1e-12)
        assert boundary_gradient_error(pred, gt, m, soft=True) == pytest.approx(expected, rel=1e-12)
        hard = np.where(m[:, :, None] >= 128, pred, gt)
        assert boundary_gradient_error(hard, gt, m) == pytest.approx(_official_gradient(hard, gt, m), rel=1e-12)
        assert expected > 0


def test_boundary_gradient_zero_without_edges(pair):
    pred, gt, _ = pair
    assert boundary_gradient_error(pred, gt, np.zeros(gt.shape[:2], np.uint8)) == 0.0


def test_composite_rounds_not_truncates():
    gt = np.zeros((1, 3, 3), np.uint8)
    pred = np.full((1, 3, 3), 255, np.uint8)
    hole = np.array([[0.25, 0.375, 0.5]], np.float32)  # exact in binary: 63.75, 95.625, 127.5
    assert composite_uint8(pred, gt, hole)[0, :, 0].tolist() == [64, 96, 128]  # truncation: 63, 95, 127


def test_composite_binary_mask_keeps_known_pixels(pair):
    pred, gt, mask = pair
    hole = (mask >= 128).astype(np.float32)
    out = composite_uint8(pred, gt, hole)
    assert np.array_equal(out[hole == 0], gt[hole == 0])
    assert np.array_equal(out[hole == 1], pred[hole == 1])


def test_composite_refuses_float_predictions(pair):
    pred, gt, mask = pair
    with pytest.raises(ValueError, match="uint8"):
        composite_uint8(pred / 255.0, gt, (mask >= 128).astype(np.float32))


def test_composite_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        composite_uint8(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 3), np.uint8), np.zeros((2, 2)))
