"""hallucination / hallucination_area: each matching rule of `evaluators.detection` on fixed boxes, and the whole
scorer with a stand-in detector (magenta squares are the only "objects") together with the colour metrics."""

import csv
import dataclasses

import numpy as np
import pytest
from PIL import Image

from evaluators.detection import (
    DETECTORS, Detections, Detector, box_iou, get_detector, hallucinated, hallucination_values, inside_fraction,
)
from evaluators.protocols import PROTOCOLS

PROTOCOL = PROTOCOLS["comod"]  # score 0.5, inside 0.5, IoU 0.5
MAGENTA = (255, 0, 255)


def _hole() -> np.ndarray:
    hole = np.zeros((40, 40), np.float32)
    hole[10:30, 10:30] = 1  # 400 hole pixels
    return hole


def _dets(*rows, masks=None) -> Detections:
    """Detections from (x0, y0, x1, y1, label, score) rows."""
    array = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(array[:, :4], array[:, 4].astype(np.int64), array[:, 5], masks)


def _count(pred: Detections, gt: Detections = Detections.empty()) -> int:
    return int(hallucinated(pred, gt, _hole(), PROTOCOL.detector_score, PROTOCOL.hallucination_inside,
                            PROTOCOL.hallucination_iou).sum())


def test_score_threshold():
    assert _count(_dets((12, 12, 20, 20, 1, 0.9))) == 1
    assert _count(_dets((12, 12, 20, 20, 1, 0.3))) == 0  # below the score: ignored


def test_inside_fraction_rule():
    assert _count(_dets((0, 0, 8, 8, 1, 0.9))) == 0  # outside the hole
    assert inside_fraction(_dets((6, 12, 16, 22, 1, 0.9)).areas((40, 40)), _hole())[0] == pytest.approx(0.6)
    assert _count(_dets((6, 12, 16, 22, 1, 0.9))) == 1  # 60% inside
    assert _count(_dets((4, 12, 14, 22, 1, 0.9))) == 0  # 40% inside


def test_matching_rules():
    pred = _dets((12, 12, 22, 22, 1, 0.9))
    assert _count(pred, _dets((13, 12, 23, 22, 1, 0.8))) == 0  # same label, IoU 0.82: matched
    assert _count(pred, _dets((13, 12, 23, 22, 2, 0.8))) == 1  # different label: no match
    assert _count(pred, _dets((17, 12, 27, 22, 1, 0.8))) == 1  # same label, IoU 0.33: no match
    assert _count(pred, _dets((13, 12, 23, 22, 1, 0.2))) == 1  # the truth's detection is below the score
    assert box_iou(pred.boxes, _dets((17, 12, 27, 22, 1, 0.8)).boxes)[0, 0] == pytest.approx(50 / 150)


def test_area_fraction():
    # two overlapping hallucinated boxes (10x10 and 10x10 shifted by 5): union 150 of 400 hole pixels
    pred = _dets((10, 10, 20, 20, 1, 0.9), (15, 10, 25, 20, 3, 0.9), (12, 12, 18, 18, 1, 0.1))
    assert hallucination_values(pred, Detections.empty(), _hole(), PROTOCOL) == (2.0, pytest.approx(150 / 400))
    # with masks, the mask's pixels count, not the box's
    mask = np.zeros((1, 40, 40), bool)
    mask[0, 10:15, 10:30] = True  # 100 pixels, box 20x20
    masked = _dets((10, 10, 30, 30, 1, 0.9), masks=mask)
    assert hallucination_values(masked, Detections.empty(), _hole(), PROTOCOL) == (1.0, 0.25)
    # nothing hallucinated; an empty hole has no share
    assert hallucination_values(Detections.empty(), Detections.empty(), _hole(), PROTOCOL) == (0.0, 0.0)
    count, area = hallucination_values(pred, Detections.empty(), np.zeros((40, 40)), PROTOCOL)
    assert count == 0 and np.isnan(area)


def test_bad_detections_and_unknown_detector():
    with pytest.raises(ValueError, match="boxes must be"):
        Detections(np.zeros((2, 4)), np.zeros(3, np.int64), np.zeros(3))
    with pytest.raises(ValueError, match="masks are"):
        _dets((1, 1, 2, 2, 1, 0.9), masks=np.zeros((1, 8, 8), bool)).areas((40, 40))
    with pytest.raises(ValueError, match="unknown detector 'nope'; known: maskrcnn-coco"):
        get_detector("nope")


class MagentaSquares(Detector):
    """Stand-in detector: every connected blob of pure magenta pixels is an object (label 1, score 0.9, with its
    mask); nothing else is. No weights."""

    key = "magenta-squares"
    weight_keys = ()

    def __init__(self, weights, device, score) -> None:
        pass

    def detect(self, images):
        from scipy import ndimage

        out = []
        for image in images:
            pixels = image.permute(1, 2, 0).numpy()
            labels, count = ndimage.label((pixels == MAGENTA).all(axis=2))
            found = ndimage.find_objects(labels)
            boxes = np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in found], np.float64).reshape(-1, 4)
            masks = np.stack([labels == i + 1 for i in range(count)]) if count else np.zeros((0, *labels.shape), bool)
            out.append(Detections(boxes, np.ones(count, np.int64), np.full(count, 0.9), masks))
        return out


@pytest.fixture
def stand_in_protocol(monkeypatch):
    monkeypatch.setitem(DETECTORS, MagentaSquares.key, MagentaSquares)
    protocol = dataclasses.replace(PROTOCOLS["comod"], name="stand-in", detector=MagentaSquares.key)
    monkeypatch.setitem(PROTOCOLS, protocol.name, protocol)
    return protocol


def test_scoring_end_to_end(tiny_dataset, tmp_path, stand_in_protocol):
    """Predictions = ground truth, with a magenta 5x5 square in the hole of the first image of each domain
    (hallucinated) and a colour shift in the hole of the second: the values reach the record (overall, per
    domain, protocol) and the per-image CSV."""
    from scipy import ndimage

    from evaluators.scoring import ScoreConfig, score
    from misato.data import load_dataset

    dataset = load_dataset(tiny_dataset)
    out = tmp_path / "pred"
    out.mkdir()
    squares = {}
    for sample in dataset.samples:
        image = np.asarray(Image.open(sample.image_path).convert("RGB")).copy()
        hole = np.asarray(Image.open(sample.mask_path).convert("L")) >= 128
        if sample.stem in ("0000", "0500"):
            y, x = np.argwhere(ndimage.binary_erosion(hole, np.ones((5, 5)), border_value=0))[0] - 2
            image[y:y + 5, x:x + 5] = MAGENTA
            squares[sample.stem] = 25 / hole.sum()
        elif sample.stem in ("0001", "0501"):
            image[hole] = np.clip(image[hole].astype(int) + 30, 0, 255)
        Image.fromarray(image).save(out / f"{sample.stem}.png")
    metrics = ("color_shift", "color_shift_raw", "seam", "hallucination", "hallucination_area")
    result = score(dataset, out, "m", tmp_path / "res", ScoreConfig(protocol="stand-in", metrics=metrics,
                                                                     device="cpu", batch_size=3, progress=False))
    record = result.record
    assert record.unavailable == {}
    assert record.protocol["detector"] == "magenta-squares" and record.protocol["color_sigma"] == 8.0
    assert {"seam_band", "detector_score", "hallucination_inside", "hallucination_iou"} <= set(record.protocol)
    rows = {r["stem"]: r for r in csv.DictReader(result.csv_path.open())}
    assert set(metrics) <= set(next(iter(rows.values())))
    for stem, row in rows.items():
        assert float(row["hallucination"]) == (1 if stem in squares else 0), stem
        assert float(row["hallucination_area"]) == pytest.approx(squares.get(stem, 0), rel=1e-4)
        if stem not in squares and stem not in ("0001", "0501"):
            assert float(row["color_shift"]) == 0 and float(row["seam"]) == 0 and float(row["color_shift_raw"]) == 0
    assert float(rows["0001"]["color_shift"]) > 3 and float(rows["0001"]["seam"]) > 1
    assert record.overall["hallucination"] == pytest.approx(2 / 8)
    for domain in ("landscape", "indoor"):
        assert record.per_domain[domain]["hallucination"] == pytest.approx(1 / 4)
        expected = np.mean([float(r["color_shift"]) for r in rows.values() if r["domain"] == domain])
        assert record.per_domain[domain]["color_shift"] == pytest.approx(expected, rel=1e-5)
    assert record.higher_is_better == {m: False for m in metrics}


def test_report_lists_the_worst_images(tiny_dataset, tiny_predictions, tmp_path, stand_in_protocol):
    """The HTML report's worst-5 view: per method and consistency metric, the 5 highest per-image values (lower
    is better) with stem, domain and value, the thumbnail where the result kept one."""
    import csv as csv_module

    from evaluators.scoring import ScoreConfig, score
    from leaderboard.html import worst_images
    from leaderboard.report import write_reports
    from leaderboard.results import load_result, per_image_scores
    from misato.data import load_dataset

    metrics = ("psnr", "color_shift", "seam", "hallucination")
    result = score(load_dataset(tiny_dataset), tiny_predictions, "noisy", tmp_path / "res",
                   ScoreConfig(protocol="stand-in", metrics=metrics, device="cpu", progress=False, bootstrap=0))
    rows = list(csv_module.DictReader(result.csv_path.open()))
    expected = sorted(rows, key=lambda r: -float(r["color_shift"]))[:5]
    scores, problem = per_image_scores(load_result(result.json_path))
    assert problem is None
    worst = worst_images(scores, "color_shift")
    assert [w[0] for w in worst] == [r["stem"] for r in expected]
    assert [w[1] for w in worst] == [r["domain"] for r in expected]
    assert worst_images(scores, "psnr", 2)[0][2] == min(float(r["psnr"]) for r in rows)  # higher is better
    page = write_reports([tmp_path / "res"], tmp_path / "board", formats=("html",))["html"].read_text()
    section = page[page.index("Worst 5 images: noisy"):]
    for row in expected:
        assert f"{row['stem']} ({row['domain']}): {float(row['color_shift']):.2f}" in section
    assert "Seam ↓" in section and "Halluc. objects ↓" in section and "PSNR" not in section
    thumbnailed = [r["stem"] for r in expected if r["stem"] in result.record.thumbnails]
    assert section.count("<img") >= len(thumbnailed)
