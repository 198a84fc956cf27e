"""Mask generators and samplers (misato.masks): bounds, determinism, COCO background carving, preview CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misato.masks import (
    MISATO,
    PRESETS,
    MaskSample,
    MaskSamplingError,
    MaskSkipped,
    ObjectShapeBank,
    SamplerConfig,
    asuka_training_mask,
    coco_foreground,
    enlarge_for_mae,
    generate,
    get_preset,
    item_rng,
    misato_mask,
    sample_mask,
    sample_misato_mask,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

SIZE = 512

# pycocotools' decode warns under numpy 2 about __array__(copy=...); it is harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# --------------------------------------------------------------------------------------------------------
# A COCO-format annotation made on the fly: a polygon (horse contours), a compressed RLE (disk) and a
# crowd region as uncompressed RLE (rectangle), all on one 400x328 image.


def _horse() -> np.ndarray:
    from skimage.data import horse

    return ~horse()  # scikit-image's horse is black (False) on white


def _disk(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - 60) ** 2 + (xx - 330) ** 2 <= 45**2


def _crowd_rect(h: int, w: int) -> np.ndarray:
    rect = np.zeros((h, w), bool)
    rect[250:320, 20:120] = True
    return rect


def _uncompressed_rle(binary: np.ndarray) -> dict:
    """Column-major run lengths starting with a run of zeros (COCO's uncompressed RLE), written out here."""
    flat = binary.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(binary.shape), "counts": [int(c) for c in counts]}


def _coco_dict() -> dict:
    from skimage.measure import find_contours

    horse = _horse()
    h, w = horse.shape
    polygons = [
        np.fliplr(contour).ravel().tolist()  # (row, col) -> x, y
        for contour in find_contours(np.pad(horse, 1).astype(float), 0.5)
        if len(contour) >= 6
    ]
    polygons = [[max(0.0, v - 1) for v in poly] for poly in polygons]  # undo the padding offset
    rle = mask_utils.encode(np.asfortranarray(_disk(h, w).astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    crowd = _crowd_rect(h, w)
    return {
        "images": [{"id": 7, "width": w, "height": h, "file_name": "horse.png"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": polygons,
             "area": float(horse.sum()), "bbox": [0, 0, w, h]},
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": rle,
             "area": float(_disk(h, w).sum()), "bbox": [285, 15, 90, 90]},
            {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": _uncompressed_rle(crowd),
             "area": float(crowd.sum()), "bbox": [20, 250, 100, 70]},
        ],
    }


@pytest.fixture(scope="module")
def coco() -> COCO:
    index = COCO()
    index.dataset = _coco_dict()
    index.createIndex()
    return index


@pytest.fixture(scope="module")
def bank(coco: COCO) -> ObjectShapeBank:
    return ObjectShapeBank.from_coco(coco, min_area=100)


def _truth_foreground(coco: COCO, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Foreground computed independently: source arrays (polygon via pycocotools' own rasteriser), crop,
    PIL nearest resize."""
    info = coco.imgs[7]
    h, w = info["height"], info["width"]
    poly = coco.anns[3]["segmentation"]
    horse_poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, h, w))).astype(bool)
    union = horse_poly | _disk(h, w) | _crowd_rect(h, w)
    left, top, right, bottom = box
    crop = Image.fromarray(union[top:bottom, left:right].astype(np.uint8) * 255)
    return np.asarray(crop.resize((size, size), Image.NEAREST)) > 127


# --------------------------------------------------------------------------------------------------------
# Generators


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("size", [SIZE, 300])
def test_every_generator_returns_binary_uint8(name: str, size: int, bank: ObjectShapeBank) -> None:
    rng = item_rng(1, name, size)
    for _ in range(5):
        mask = generate(name, rng, size, bank)
        assert mask.shape == (size, size) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}


def test_unknown_generator_names_close_matches() -> None:
    with pytest.raises(ValueError, match="lama-thin"):
        get_preset("lama-thn")


def test_object_preset_needs_a_bank() -> None:
    with pytest.raises(ValueError, match="ObjectShapeBank"):
        generate("coco-object", item_rng(0, "x", 0), 64)


# Mean hole ratios at 512 from shared/notes/misato-and-masks.md ("approximate simulation, 300 samples
# each"), checked within a loose band because the notes' figures are themselves estimates.
NOTES_MEAN_HOLE_RATIO = {
    "lama-thin": 0.29,
    "lama-medium": 0.37,
    "lama-thick": 0.51,
    "comod": 0.66,
    "comod-brush": 0.39,
    "comod-mat": 0.40,
}


@pytest.mark.parametrize("name", sorted(NOTES_MEAN_HOLE_RATIO))
def test_hole_ratio_statistics_match_notes(name: str) -> None:
    rng = item_rng(123, name, 0)
    ratios = np.array([generate(name, rng, SIZE).mean() for _ in range(200)])
    standard_error = ratios.std() / np.sqrt(ratios.size)
    assert abs(ratios.mean() - NOTES_MEAN_HOLE_RATIO[name]) < 0.05 + 3 * standard_error, ratios.mean()


def test_lama_strokes_follow_the_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every cv2.line call of thin_512 draws: strokes in [4, 70 + 1] (LaMa's off-by-one), 1-5
    connected segments each, brush width in [5, 5 + 20), segment length < 10 + 100."""
    import misato.masks.lama as lama

    calls: list[tuple[tuple[int, int], tuple[int, int], int]] = []
    real_line = lama.cv2.line

    class Recorder:
        def __getattr__(self, name: str):
            return getattr(lama.cv2, name)

        @staticmethod
        def line(img, start, end, color, thickness):
            calls.append((tuple(start), tuple(end), thickness))
            return real_line(img, start, end, color, thickness)

    monkeypatch.setattr(lama, "cv2", Recorder())
    rng = item_rng(0, "lama-calls", 0)
    stroke_counts = []
    for _ in range(500):
        calls.clear()
        lama.lama_irregular_mask(rng, 64, lama.LAMA_512["thin"])
        strokes, run = [], 0
        for k, (start, end, width) in enumerate(calls):
            assert 5 <= width < 25
            assert np.hypot(end[0] - start[0], end[1] - start[1]) < 10 + 100
            if k and start != calls[k - 1][1]:
                strokes.append(run)
                run = 0
            run += 1
        strokes.append(run)
        assert all(1 <= r <= 5 for r in strokes) or len(strokes) < len(calls)  # coinciding starts merge runs
        stroke_counts.append(len(strokes))
    assert min(stroke_counts) >= 4 and max(stroke_counts) <= 71
    assert max(stroke_counts) == 71  # P(no 71 in 500 draws) = (67/68)^500 < 0.1%; the seed is fixed anyway


def test_comod_brush_variant_is_strokes_only() -> None:
    """comod-brush draws exactly RandomBrush(20) from the same stream (no box fill is drawn or consumed),
    while full Co-Mod differs from its own strokes by the boxes."""
    from misato.masks.comod import COMOD_PRESETS, comod_brush

    for i in range(10):
        brush_only = generate("comod-brush", item_rng(0, "comod", i), SIZE)
        strokes = comod_brush(item_rng(0, "comod", i), SIZE, 20, COMOD_PRESETS["brush"])
        assert np.array_equal(brush_only, strokes)
    full = [generate("comod", item_rng(0, "comod", i), SIZE) for i in range(10)]
    assert not all(np.array_equal(f, comod_brush(item_rng(0, "comod", i), SIZE, 20, COMOD_PRESETS["comod"]))
                   for i, f in enumerate(full))


# --------------------------------------------------------------------------------------------------------
# Seeding and determinism


def test_item_rng_same_triple_same_stream_and_distinct_otherwise() -> None:
    a = item_rng(0, "landscape", 5).integers(0, 2**62, size=4)
    assert np.array_equal(a, item_rng(0, "landscape", 5).integers(0, 2**62, size=4))
    for other in (item_rng(1, "landscape", 5), item_rng(0, "indoor", 5), item_rng(0, "landscape", 6)):
        assert not np.array_equal(a, other.integers(0, 2**62, size=4))
    with pytest.raises(ValueError, match="index"):
        item_rng(0, "landscape", -1)


def test_misato_mask_is_deterministic_and_order_independent(bank: ObjectShapeBank) -> None:
    indices = list(range(12))
    forward = {i: misato_mask(0, "building", i, objects=bank) for i in indices}
    backward = {i: misato_mask(0, "building", i, objects=bank) for i in reversed(indices)}
    interleaved = {}
    for i in indices[::2] + indices[1::2]:
        misato_mask(0, "indoor", i, objects=bank)  # other items drawn in between must not matter
        interleaved[i] = misato_mask(0, "building", i, objects=bank)
    for i in indices:
        for other in (backward[i], interleaved[i]):
            assert np.array_equal(forward[i].mask, other.mask)
            assert (forward[i].kind, forward[i].attempts) == (other.kind, other.attempts)
    assert len({forward[i].mask.tobytes() for i in indices}) == len(indices)


def test_misato_mask_does_not_depend_on_python_hash_seed() -> None:
    code = (
        "import hashlib; from misato.masks import misato_mask; "
        "print(hashlib.sha256(misato_mask(3, 'landscape', 42, size=128).mask.tobytes()).hexdigest())"
    )
    outputs = set()
    for hash_seed in ("1", "987"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(done.stdout.strip())
    here = hashlib.sha256(misato_mask(3, "landscape", 42, size=128).mask.tobytes()).hexdigest()
    assert outputs == {here}


# --------------------------------------------------------------------------------------------------------
# Samplers


def test_misato_sampler_ratio_bounds_and_no_rectangles(bank: ObjectShapeBank) -> None:
    kinds, attempts, checked = [], [], 0
    for i in range(150):
        sample = misato_mask(11, "landscape", i, objects=bank)
        assert isinstance(sample, MaskSample)
        assert sample.mask.shape == (SIZE, SIZE) and sample.mask.dtype == np.uint8
        assert 0.2 <= sample.hole_ratio <= 0.8 and sample.hole_ratio == pytest.approx(sample.mask.mean())
        if sample.attempts > 1 and i % 10 == 0:
            # `attempts` is the number of candidates drawn: one try fewer finds no mask in range
            with pytest.raises(MaskSamplingError):
                misato_mask(11, "landscape", i, objects=bank, max_tries=sample.attempts - 1)
            checked += 1
        attempts.append(sample.attempts)
        kinds.append(sample.kind)
    assert max(attempts) > 1 and max(attempts) <= 100  # rejections happen, within the default max_tries
    assert checked > 0
    assert not any("rectangle" in kind for kind in kinds)
    # Without the regular basis the 50/40 split renormalises to 5/9 object, 4/9 irregular. Binomial sd ~0.04.
    share = np.mean([kind.startswith("coco-object") for kind in kinds])
    assert abs(share - 5 / 9) < 0.12, share


def test_misato_sampler_without_objects_uses_irregular_only() -> None:
    for i in range(40):
        sample = misato_mask(2, "indoor", i, size=256, ratio_range=(0.3, 0.6))
        assert 0.3 <= sample.hole_ratio <= 0.6
        assert sample.kind in dict(MISATO.irregular)


def test_asuka_sampler_ratio_bounds_and_mixture(bank: ObjectShapeBank) -> None:
    n = 500
    bases = {"object": 0, "irregular": 0, "regular": 0}
    unions = 0
    for i in range(n):
        sample = asuka_training_mask(item_rng(5, "asuka", i), SIZE, bank)
        assert 0.1 <= sample.hole_ratio <= 0.75
        head = sample.kind.split("+")[0]
        basis = "object" if head == "coco-object" else "regular" if "rectangle" in head else "irregular"
        bases[basis] += 1
        unions += "+" in sample.kind
    # Kinds are drawn once per mask (fix_kind), so accepted masks keep the paper's 50/40/10 and 50% union.
    # Binomial standard deviations at n=500 are <= 0.023; the bands are ~3.5 of them.
    assert abs(bases["object"] / n - 0.5) < 0.08
    assert abs(bases["irregular"] / n - 0.4) < 0.08
    assert abs(bases["regular"] / n - 0.1) < 0.05
    assert abs(unions / max(1, bases["object"]) - 0.5) < 0.12


def test_rejection_keeps_the_mixture_proportions() -> None:
    """The kind is drawn once per mask and only its shape is redrawn, so a kind that rarely fits the range
    (lama-medium: ~15% in [0.5, 0.8]) keeps its 50% share against one that often fits (~48%); redrawing the
    kind with every candidate would give it about 0.15 / (0.15 + 0.48) ~ 0.24."""
    config = SamplerConfig(
        "mix",
        bases=(("irregular", 1.0),),
        irregular=(("lama-medium", 0.5), ("complement-rectangle", 0.5)),
        ratio_range=(0.5, 0.8),
        max_tries=300,
    )
    kinds = [sample_mask(item_rng(0, "mix", i), SIZE, config).kind for i in range(200)]
    assert abs(np.mean([kind == "lama-medium" for kind in kinds]) - 0.5) < 0.11  # binomial sd 0.035


def test_sampler_retry_cap_raises_a_clear_error() -> None:
    config = SamplerConfig("impossible", bases=(("irregular", 1.0),), ratio_range=(0.999, 1.0), max_tries=3)
    with pytest.raises(MaskSamplingError, match="after 3 tries"):
        sample_mask(item_rng(0, "x", 0), 128, config)
    with pytest.raises(ValueError, match="ratio_range"):
        SamplerConfig("bad", bases=(("irregular", 1.0),), ratio_range=(0.8, 0.2))


def test_enlarge_for_mae_reaches_75_percent_of_tokens() -> None:
    rng = item_rng(0, "mae", 0)
    for i in range(20):
        sample = asuka_training_mask(item_rng(0, "mae-mask", i), 256)
        mae = enlarge_for_mae(sample.mask, rng, target_ratio=0.75, patch_size=16)
        n_tokens = (256 // 16) ** 2
        assert mae.token_mask.sum() == n_tokens - int(n_tokens * 0.25)
        touched = sample.mask.reshape(16, 16, 16, 16).any(axis=(1, 3))
        if touched.sum() <= mae.token_mask.sum():
            assert not (touched & ~mae.token_mask).any()  # every token touching the hole is dropped
            assert not (sample.mask & ~mae.pixel_mask.astype(bool)).any()  # the hole is kept in full
        else:  # more tokens touch the hole than may be dropped: no extra token, only hole pixels stay masked
            assert not (mae.pixel_mask.astype(bool) & ~sample.mask.astype(bool)).any()
        visible = np.repeat(np.repeat(~mae.token_mask, 16, axis=0), 16, axis=1)
        assert not (mae.pixel_mask.astype(bool) & visible).any()
        # extra tokens are masked whole
        extra = mae.token_mask & ~touched
        assert (mae.pixel_mask.reshape(16, 16, 16, 16).min(axis=(1, 3))[extra] == 1).all()


# --------------------------------------------------------------------------------------------------------
# COCO background masks


def test_coco_foreground_covers_every_instance_including_crowd(coco: COCO) -> None:
    box = (36, 0, 364, 328)  # centre square of the 400x328 image
    for size in (SIZE, 200):
        foreground = coco_foreground(coco, 7, box, size)
        truth = _truth_foreground(coco, box, size)
        assert foreground.shape == (size, size) and foreground.dtype == bool
        assert not (truth & ~foreground).any()  # conservative: no true foreground pixel is missed
        assert foreground.mean() < truth.mean() + 0.05  # ... and not grossly dilated
    crowd_only = coco_foreground(coco, 7, (20, 250, 120, 320), 64)
    assert crowd_only.all()  # the crowd rectangle fills that crop
    with pytest.raises(ValueError, match="crop box"):
        coco_foreground(coco, 7, (0, 0, 500, 328), 64)


def test_object_bank_from_coco_includes_crowd_and_is_sorted(coco: COCO) -> None:
    bank = ObjectShapeBank.from_coco(coco, min_area=100, include_crowd=False)
    assert [bank.key(i) for i in range(len(bank))] == [1, 3]
    assert bank.shape(0).shape == (91, 91)  # tight box of the disk of radius 45
    with_crowd = ObjectShapeBank.from_coco(coco, min_area=100)  # default: crowd regions are shapes too
    assert len(with_crowd) == 3 and [with_crowd.key(i) for i in range(3)] == sorted(with_crowd.key(i) for i in range(3))


def test_coco_background_holes_never_touch_foreground(coco: COCO, bank: ObjectShapeBank) -> None:
    box = (36, 0, 364, 328)
    foreground = coco_foreground(coco, 7, box, SIZE)
    truth = _truth_foreground(coco, box, SIZE)
    accepted = 0
    for i in range(60):
        sample = misato_mask(0, "background", i, size=SIZE, foreground=foreground, objects=bank)
        if sample is None:
            continue
        accepted += 1
        assert not (sample.mask.astype(bool) & foreground).any()
        assert not (sample.mask.astype(bool) & truth).any()
        assert 0.2 <= sample.hole_ratio <= 0.8 and sample.hole_ratio == pytest.approx(sample.mask.mean())
    assert accepted >= 40  # the horse image has ~55% background: most items fit


def test_too_little_background_is_skipped_with_a_reason() -> None:
    foreground = np.ones((128, 128), bool)
    foreground[:20, :] = False  # 16% background < 0.2
    assert misato_mask(0, "background", 0, size=128, foreground=foreground) is None
    skipped = sample_misato_mask(0, "background", 0, size=128, foreground=foreground)
    assert isinstance(skipped, MaskSkipped) and "background" in skipped.reason
    assert skipped.background_ratio == pytest.approx(20 / 128)
    with pytest.raises(ValueError, match="foreground must have shape"):
        misato_mask(0, "background", 0, size=128, foreground=np.zeros((64, 64), bool))


# --------------------------------------------------------------------------------------------------------
# Preview CLI


def test_preview_cli_writes_grids_histogram_and_stats(tmp_path: Path, coco: COCO) -> None:
    from misato.cli import main

    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(_coco_dict()))
    out = tmp_path / "preview"
    names = ["lama-thin", "comod-brush", "coco-object", "misato"]
    code = main(
        ["masks", "preview", "--out", str(out), "--generators", ",".join(names), "--n", "4", "--size", "128",
         "--coco-annotations", str(annotations)]
    )
    assert code == 0
    for name in names:
        grid = np.asarray(Image.open(out / f"{name}.png"))
        assert grid.ndim == 2 and grid.max() == 255  # holes are white
    hist = Image.open(out / "hole_ratio_hist.png")
    assert hist.mode == "RGB" and hist.size[1] > 100
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["generators"]) == names
    assert all(len(g["hole_ratios"]) == 4 for g in stats["generators"].values())
    assert main(["masks", "preview", "--out", str(out), "--generators", "lama-thn"]) == 1
