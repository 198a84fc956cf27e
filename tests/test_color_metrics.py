"""color_shift, color_shift_raw and seam on controlled cases: zero on the ground truth, monotone in a colour shift
of the hole, blind to a colour-preserving texture shuffle (which LPIPS sees)."""

import numpy as np
import pytest
import torch

from evaluators.functional.color import (
    boundary_bands, low_pass_color_shift, region_low_pass, scaled_length, seam_color_step,
)
from evaluators.functional.color import _ciede2000
from evaluators.pixel_metrics import Decoded, color_shift, color_shift_raw, seam
from evaluators.protocols import get_protocol

PROTOCOL = get_protocol("comod")
SIGMA, BAND = PROTOCOL.color_sigma, PROTOCOL.seam_band
SHIFTS = (0, 2, 5, 10, 20, 40)


@pytest.fixture(scope="module")
def photo():
    """A 256 x 256 photo and a box hole (1 = hole)."""
    from skimage import data, transform

    gt = (transform.resize(data.astronaut(), (256, 256), anti_aliasing=True) * 255).round().astype(np.uint8)
    hole = np.zeros((256, 256), np.float32)
    hole[60:180, 90:200] = 1
    return gt, hole


def _shifted(gt, hole, amount, direction=(1, 1, 1)):
    """The ground truth with `amount` * direction added to every hole pixel (uint8, clipped)."""
    out = gt.astype(np.float64)
    out[hole > 0] += np.array(direction) * amount
    return np.clip(out, 0, 255).astype(np.uint8)


def _shuffled(gt, hole, tile=4, seed=0):
    """The hole's pixels permuted among themselves within each tile x tile tile: same local colours, no texture."""
    rng = np.random.default_rng(seed)
    out = gt.copy()
    for y in range(0, gt.shape[0], tile):
        for x in range(0, gt.shape[1], tile):
            inside = hole[y:y + tile, x:x + tile] > 0
            block = out[y:y + tile, x:x + tile]
            block[inside] = block[inside][rng.permutation(int(inside.sum()))]
    return out


def _decoded(pred, gt, hole):
    scored = np.where(hole[..., None] > 0, pred, gt).astype(np.uint8)
    return Decoded(gt, pred, (hole * 255).astype(np.uint8), hole, scored, True)


def test_ground_truth_scores_exactly_zero(photo):
    gt, hole = photo
    sample = _decoded(gt, gt, hole)
    assert color_shift(sample, PROTOCOL) == 0.0
    assert color_shift_raw(sample, PROTOCOL) == 0.0
    assert seam(sample, PROTOCOL) == 0.0


@pytest.mark.parametrize("direction", [(1, 1, 1), (1, -1, 0)], ids=["brighter", "red-green"])
def test_uniform_shift_raises_both_scores_monotonically(photo, direction):
    gt, hole = photo
    shifts = [low_pass_color_shift(_shifted(gt, hole, d, direction), gt, hole, SIGMA) for d in SHIFTS]
    seams = [seam_color_step(_shifted(gt, hole, d, direction), gt, hole, BAND) for d in SHIFTS]
    assert shifts[0] == 0 and seams[0] == 0
    assert all(b > a for a, b in zip(shifts, shifts[1:])), shifts
    assert all(b > a for a, b in zip(seams, seams[1:])), seams
    assert shifts[-1] > 10  # 40 levels is a large, visible shift (CIEDE2000 units)


def test_texture_shuffle_keeps_color_shift_near_zero_while_lpips_rises(photo, tmp_path):
    """The metric is about colour, not texture: shuffling the hole's pixels within 4 x 4 tiles keeps the low
    frequencies (color_shift below a just-noticeable difference) while LPIPS (random-weight AlexNet backbone
    with the lpips package's heads) rises far above that of a 5-level colour shift with a 3x larger color_shift."""
    import lpips
    import torchvision
    from pathlib import Path

    from evaluators.lpips_metric import lpips_distance
    from misato.lpips_network import build_lpips
    from misato.weights import resolve

    gt, hole = photo
    shuffled, shifted = _shuffled(gt, hole), _shifted(gt, hole, 5)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    model = build_lpips(resolve("alexnet-torchvision", tmp_path / "alexnet.pth"),
                        resolve("lpips-alex-lin", Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"))
    chw = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    lpips_of = lambda a: float(lpips_distance(model, chw(a), chw(gt))[0])  # noqa: E731
    assert np.array_equal(np.sort(shuffled[hole > 0], axis=0), np.sort(gt[hole > 0], axis=0))  # same colours
    shuffle_shift, shift_shift = (low_pass_color_shift(x, gt, hole, SIGMA) for x in (shuffled, shifted))
    assert shuffle_shift < 0.5 and shift_shift > 3 * shuffle_shift
    assert lpips_of(shuffled) > 10 * lpips_of(shifted)


def test_raw_variant_sees_the_known_region(photo):
    """A whole-image shift (a VAE decoder's) is invisible to color_shift after paste-back, not to the raw one."""
    gt, hole = photo
    whole = _shifted(gt, np.ones_like(hole), 10)
    sample = _decoded(whole, gt, hole)
    assert color_shift_raw(sample, PROTOCOL) > 2
    assert color_shift(sample, PROTOCOL) == pytest.approx(color_shift_raw(sample, PROTOCOL), rel=0.2)
    kept = _decoded(_shifted(gt, hole, 10), gt, hole)  # known pixels untouched: raw = hole shift, diluted
    assert 0 < color_shift_raw(kept, PROTOCOL) < color_shift(kept, PROTOCOL)


def test_definitions_on_small_cases():
    # the low-pass sees region pixels only: a constant region stays constant whatever lies outside
    image = np.zeros((32, 32, 3), np.float32)
    image[:, :16] = 0.8
    region = np.zeros((32, 32), bool)
    region[:, :16] = True
    (low,) = region_low_pass([image], region, 3.0)
    assert np.allclose(low[region], 0.8, atol=1e-6)
    # bands: boundary points are hole pixels with a known 4-neighbour
    hole = np.zeros((12, 12), bool)
    hole[4:8, 4:8] = True
    boundary, inner, outer = boundary_bands(hole, 1)
    assert boundary.sum() == 12 and inner.sum() == 12 and (outer & hole).sum() == 0 and outer.sum() == 16
    assert scaled_length(8.0, (256, 512, 3)) == 4.0
    assert _ciede2000(np.array([[0.2, 0.4, 0.6]]), np.array([[0.2, 0.4, 0.6]]))[0] == 0


def test_degenerate_and_bad_inputs():
    gt = np.full((16, 16, 3), 100, np.uint8)
    empty, full = np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32)
    assert np.isnan(low_pass_color_shift(gt, gt, empty, SIGMA))
    assert np.isnan(seam_color_step(gt, gt, empty, BAND)) and np.isnan(seam_color_step(gt, gt, full, BAND))
    with pytest.raises(ValueError, match="uint8"):
        low_pass_color_shift(gt.astype(np.float32), gt, full, SIGMA)
    with pytest.raises(ValueError, match="expected pred, gt"):
        seam_color_step(gt, gt, np.ones((8, 8)), BAND)
    with pytest.raises(ValueError, match="positive"):
        scaled_length(0, gt.shape)


def test_cost_at_512_is_small():
    """Each colour metric on one 512 x 512 image in well under 0.5 s (0.02-0.06 s measured on one core; the bound
    leaves room for a loaded machine)."""
    import time

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    pred = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    hole = np.zeros((512, 512), np.float32)
    hole[100:400, 120:380] = 1
    sample = _decoded(pred, gt, hole)
    for metric in (color_shift, color_shift_raw, seam):
        start = time.perf_counter()
        metric(sample, PROTOCOL)
        assert time.perf_counter() - start < 0.5, metric.__name__
