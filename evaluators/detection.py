"""Hallucinated objects: detections in the prediction's hole that the ground truth does not have.

Matching rules are pure functions on `Detections` (numpy); detectors are pluggable through `DETECTORS` (the
protocol's `detector` names one; tests register a stand-in with fixed boxes). Masks follow the project's
convention: (H, W), 1 = hole.

Rules (thresholds from the protocol):
  1. a detection counts only when its score >= `detector_score` (prediction and ground truth alike);
  2. a prediction's detection is a candidate when at least `hallucination_inside` of its area lies in the hole
     (area: its instance mask when the detector gives one, else its box, as pixels whose centre is inside);
  3. a candidate is matched, and so not hallucinated, when a counted ground-truth detection of the same label
     has box IoU >= `hallucination_iou` with it;
  4. per image: `hallucination` = number of unmatched candidates; `hallucination_area` = share of the hole's
     pixels covered by the union of their areas (NaN for an empty hole).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

    from evaluators.protocols import Protocol
    from misato.weights import ResolvedWeight


@dataclass(frozen=True)
class Detections:
    """Objects found in one image (K of them).

    boxes: float (K, 4) as x0, y0, x1, y1 in pixels (pixel (y, x) covers [x, x+1) x [y, y+1)).
    labels: int (K,) class ids in the detector's label space (COCO category ids for maskrcnn-coco).
    scores: float (K,) confidences in [0, 1].
    masks: bool (K, H, W) instance masks, or None for a box-only detector.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = len(self.labels)
        if self.boxes.shape != (k, 4) or self.scores.shape != (k,):
            raise ValueError(f"Detections: boxes must be (K, 4) and scores (K,) for K = {k} labels, got "
                             f"{self.boxes.shape} and {self.scores.shape}")
        if self.masks is not None and (self.masks.ndim != 3 or len(self.masks) != k):
            raise ValueError(f"Detections: masks must be (K, H, W) for K = {k}, got {self.masks.shape}")

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))

    def areas(self, shape: tuple[int, int]) -> np.ndarray:
        """bool (K, H, W): each detection's pixels, its mask or else the pixels whose centre lies in its box."""
        if self.masks is not None:
            if self.masks.shape[1:] != tuple(shape):
                raise ValueError(f"Detections: masks are {self.masks.shape[1:]}, the image is {tuple(shape)}")
            return self.masks.astype(bool)
        ys = np.arange(shape[0]) + 0.5
        xs = np.arange(shape[1]) + 0.5
        x0, y0, x1, y1 = (self.boxes[:, i, None] for i in range(4))
        rows = (ys >= y0) & (ys < y1)
        cols = (xs >= x0) & (xs < x1)
        return rows[:, :, None] & cols[:, None, :]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (Ka, 4) and (Kb, 4), x0, y0, x1, y1 -> float64 (Ka, Kb); 0 for
    degenerate boxes."""
    a, b = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def inside_fraction(areas: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Share of each detection's pixels that are hole: bool areas (K, H, W), hole (H, W) 1 = hole -> (K,)
    (0 for a detection with no pixel)."""
    inside = (areas & (hole > 0.5)).sum(axis=(1, 2))
    total = areas.sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros(len(areas)), where=total > 0)


def hallucinated(pred: Detections, gt: Detections, hole: np.ndarray, score: float, inside: float,
                 iou: float) -> np.ndarray:
    """bool (K,) over `pred`'s detections: hallucinated under the module's rules 1-3."""
    candidate = pred.scores >= score
    if candidate.any():
        candidate[candidate] = inside_fraction(pred.areas(hole.shape)[candidate], hole) >= inside
    counted = gt.scores >= score
    overlaps = box_iou(pred.boxes, gt.boxes[counted])
    same_label = pred.labels[:, None] == gt.labels[counted][None, :]
    matched = ((overlaps >= iou) & same_label).any(axis=1)
    return candidate & ~matched


def hallucination_values(pred: Detections, gt: Detections, hole: np.ndarray,
                         protocol: "Protocol") -> tuple[float, float]:
    """(hallucinated objects, hallucinated share of the hole) of one image under `protocol`'s thresholds (rule 4).
    pred, gt: detections on the scored image and on the ground truth; hole: (H, W), 1 = hole."""
    chosen = hallucinated(pred, gt, hole, protocol.detector_score, protocol.hallucination_inside,
                          protocol.hallucination_iou)
    in_hole = hole > 0.5
    if not in_hole.any():
        return float(chosen.sum()), float("nan")
    covered = pred.areas(hole.shape)[chosen].any(axis=0) & in_hole if chosen.any() else np.zeros_like(in_hole)
    return float(chosen.sum()), float(covered.sum() / in_hole.sum())


class Detector:
    """A detector for `hallucination`. Subclasses set `key` and `weight_keys` (files of `misato.weights`) and
    implement `detect`; they are built once per process by the scorer with the resolved files."""

    key: ClassVar[str]
    weight_keys: ClassVar[tuple[str, ...]]

    def __init__(self, weights: dict[str, "ResolvedWeight"], device: "torch.device", score: float) -> None:
        """weights: the resolved files of `weight_keys`; score: the protocol's `detector_score` (a detector may
        drop lower-scored detections early; those are ignored anyway)."""

    def detect(self, images: list["torch.Tensor"]) -> list[Detections]:
        """Detections of each uint8 (3, H, W) RGB image."""
        raise NotImplementedError


class MaskRCNNCoco(Detector):
    """torchvision's Mask R-CNN ResNet-50 FPN trained on COCO (91 label ids, COCO category ids), built without
    downloads and loaded from the registry's file (weights-only); torchvision's own input transform (shorter side
    resized to 800, ImageNet normalisation). Masks: its soft masks > 0.5 at the image's size."""

    key = "maskrcnn-coco"
    weight_keys = ("maskrcnn-resnet50-fpn-coco",)

    def __init__(self, weights, device, score) -> None:
        import torchvision

        from misato.checkpoints import load_checkpoint, load_state_strict

        weight = weights[self.weight_keys[0]]
        model = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91, box_score_thresh=score)
        load_state_strict(model, load_checkpoint(weight.path), weight.path, "torchvision maskrcnn_resnet50_fpn (COCO)")
        self.model, self.device = model.eval().requires_grad_(False).to(device), device

    def detect(self, images):
        import torch

        with torch.inference_mode():
            outputs = self.model([image.to(self.device).float() / 255.0 for image in images])
        return [Detections(out["boxes"].cpu().numpy().astype(np.float64), out["labels"].cpu().numpy(),
                           out["scores"].cpu().numpy().astype(np.float64), (out["masks"][:, 0] > 0.5).cpu().numpy())
                for out in outputs]


DETECTORS: dict[str, type[Detector]] = {MaskRCNNCoco.key: MaskRCNNCoco}


def get_detector(name: str) -> type[Detector]:
    """The detector class a protocol names (ValueError listing the known ones)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]
