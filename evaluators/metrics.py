"""The metric table: one `MetricSpec` per metric, read by the scorer, the CLI help, the result record and the
leaderboard. Adding a metric is one entry here plus its implementation (and its test).

Data only (no torch, no network imports), so the leaderboard can read it without importing any model.

A metric's `source` says what feeds it:
  "pixels":    computed in the data-loader workers from the decoded images; `implementation` names a function
               `(Decoded, Protocol) -> float` (see `evaluators.pixel_metrics`);
  "lpips", "clip", "detector", "dreamsim": a network in `evaluators.networks.SOURCES` that yields the per-image
               values itself (the detector yields two: `hallucination` and `hallucination_area`; DreamSim two: the
               hole's bounding box and the whole image);
  "inception", "clip336", "clip", "dinov2": a set metric over paired features of that network (real and fake rows
               of the same images); `implementation` names a class in the
               torchmetrics shape (`update(real, fake)` over float64 state, `compute() -> dict`, see
               `evaluators.set_metrics`); metrics sharing an implementation (U-IDS and P-IDS, one SVM) are
               computed by one instance;
  "study":     a user-study figure (Table 2c); never computed by the scorer.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    name: the key in result files and `--metrics`.
    label: column header in tables.
    higher_is_better: the direction (tables mark the best value and draw arrows from it).
    decimals: digits shown in tables.
    aggregate: "per_image" (mean of per-image values, kept in the per-image CSV), "set" (of the whole set) or
      "study" (a user-study share).
    source: what feeds it (module docstring).
    implementation: "module:attribute" of the code computing it ("" for network-yielded and study metrics).
    description: one line for `--help` and the docs.
    extra_values: other keys the implementation writes beside the metric (KID's std).
    needs_boundary: meaningless when the mask has no boundary (an empty or a full hole).
    default: computed when no metrics are named; False makes a metric opt-in (`--metrics NAME`) where its cost
      would surprise a default run (the detector: about 9 s per image pair on 2 CPU cores).
    """

    name: str
    label: str
    higher_is_better: bool
    decimals: int
    aggregate: str
    source: str
    implementation: str
    description: str
    extra_values: tuple[str, ...] = ()
    needs_boundary: bool = False
    default: bool = True

    def load(self) -> Any:
        """The object `implementation` names (imported on first use)."""
        module, _, attribute = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attribute)


METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("lpips", "LPIPS", False, 3, "per_image", "lpips", "",
               "LPIPS-Alex distance to the ground truth (per image, mean)"),
    MetricSpec("fid", "FID", False, 3, "set", "inception", "evaluators.set_metrics:FrechetInceptionDistance",
               "Frechet Inception distance between ground truths and results"),
    MetricSpec("u_ids", "U-IDS", True, 3, "set", "inception", "evaluators.set_metrics:DiscriminativeScores",
               "unpaired Inception discriminative score: linear-SVM error between real and inpainted"),
    MetricSpec("p_ids", "P-IDS", True, 3, "set", "inception", "evaluators.set_metrics:DiscriminativeScores",
               "paired Inception discriminative score: share of results the SVM finds more real than their own truth"),
    MetricSpec("psnr", "PSNR", True, 2, "per_image", "pixels", "evaluators.pixel_metrics:psnr",
               "peak signal-to-noise ratio in dB (per image, mean)"),
    MetricSpec("ssim", "SSIM", True, 3, "per_image", "pixels", "evaluators.pixel_metrics:ssim",
               "structural similarity (per image, mean)"),
    # Sobel magnitude on 0-255 images: tens to hundreds
    MetricSpec("grad_error", "Grad. err.", False, 2, "per_image", "pixels", "evaluators.pixel_metrics:grad_error",
               "boundary gradient error: Sobel difference on the mask's edge (per image, mean)", needs_boundary=True),
    MetricSpec("clip_score", "CLIP", True, 3, "per_image", "clip", "",
               "cosine similarity of CLIP embeddings of the hole region, result vs truth (per image, mean)"),
    MetricSpec("kid", "KID", False, 4, "set", "inception", "evaluators.set_metrics:KernelInceptionDistance",
               "kernel Inception distance (seeded subsets)", extra_values=("kid_std",)),
    # CIEDE2000 units (about 1 = just noticeable); definitions in evaluators.functional.color
    MetricSpec("color_shift", "Colour shift", False, 2, "per_image", "pixels", "evaluators.pixel_metrics:color_shift",
               "visual consistency: mean CIEDE2000 between low-passed result and truth over the hole (per image, mean)"),
    MetricSpec("color_shift_raw", "Colour shift (raw)", False, 2, "per_image", "pixels",
               "evaluators.pixel_metrics:color_shift_raw",
               "color_shift of the raw output over the whole image, before paste-back (per image, mean)"),
    MetricSpec("seam", "Seam", False, 2, "per_image", "pixels", "evaluators.pixel_metrics:seam",
               "visual consistency: CIEDE2000 step across the hole's edge beyond the truth's own (per image, mean)",
               needs_boundary=True),
    # definitions in evaluators.detection
    MetricSpec("hallucination", "Halluc. objects", False, 3, "per_image", "detector", "",
               "context stability: detected objects mostly inside the hole with no match in the truth (per image, mean)",
               default=False),
    MetricSpec("hallucination_area", "Halluc. area", False, 3, "per_image", "detector", "",
               "context stability: share of the hole covered by those hallucinated objects (per image, mean)",
               default=False),
    # The metrics the field is moving to (issue 25), opt-in: each loads a large network of its own.
    MetricSpec("cmmd", "CMMD", False, 3, "set", "clip336", "evaluators.cmmd:ClipMaximumMeanDiscrepancy",
               "CLIP maximum mean discrepancy, Gaussian RBF kernel (google-research/cmmd): CLIP ViT-L/14-336 "
               "embeddings of whole images, results vs truths", default=False),
    MetricSpec("cmmd_l14", "CMMD (L/14, hole)", False, 3, "set", "clip", "evaluators.cmmd:HoleMaximumMeanDiscrepancy",
               "cmmd on the CLIP score's ViT-L/14 hole-region embeddings (its forward pass and cache, no other)",
               default=False),
    MetricSpec("fd_dinov2", "FD-DINOv2", False, 2, "set", "dinov2", "evaluators.dinov2:FrechetDinov2Distance",
               "Frechet distance between DINOv2 ViT-L/14 CLS features of truths and results (dgm-eval setting)",
               default=False),
    MetricSpec("dreamsim", "DreamSim (hole)", False, 4, "per_image", "dreamsim", "",
               "DreamSim ensemble distance to the ground truth on the hole's bounding box (per image, mean)",
               default=False),
    MetricSpec("dreamsim_image", "DreamSim", False, 4, "per_image", "dreamsim", "",
               "DreamSim ensemble distance to the ground truth on the whole image (per image, mean)", default=False),
    MetricSpec("context_stability_pct", "Context stability (%)", True, 2, "study", "study", "",
               "user study: share of answers picking this method for context stability"),
    MetricSpec("visual_consistency_pct", "Visual consistency (%)", True, 2, "study", "study", "",
               "user study: share of answers picking this method for visual consistency"),
)}

# Metrics the scorer computes, in the order tables show them.
SCORED: tuple[str, ...] = tuple(name for name, spec in METRICS.items() if spec.aggregate != "study")
# Metrics computed when none are named (`ScoreConfig.metrics=None`, no `--metrics`).
DEFAULT: tuple[str, ...] = tuple(name for name in SCORED if METRICS[name].default)
PER_IMAGE: tuple[str, ...] = tuple(name for name, spec in METRICS.items() if spec.aggregate == "per_image")
# The automatic context-stability and visual-consistency scores (the HTML report lists each method's worst images).
CONSISTENCY: tuple[str, ...] = ("color_shift", "color_shift_raw", "seam", "hallucination", "hallucination_area")
# Table 1 of the paper, in its column order.
TABLE1: tuple[str, ...] = ("lpips", "fid", "u_ids", "p_ids")


def spec(name: str) -> MetricSpec:
    """The spec of a metric; an unknown name (e.g. from a newer result file) gets a neutral one:
    its own name as label, 3 decimals, lower is better."""
    return METRICS.get(name) or MetricSpec(name, name, False, 3, "set", "unknown", "", "")


def check_metrics(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`names` validated against the scored metrics (ValueError naming the unknown ones and the known)."""
    unknown = [name for name in names if name not in SCORED]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(SCORED)}")
    return tuple(names)


def metrics_help() -> str:
    """One line per scored metric, for `--help`."""
    width = max(len(name) for name in SCORED)
    return "\n".join(f"  {name:<{width}} {'higher' if METRICS[name].higher_is_better else 'lower'} is better: "
                     f"{METRICS[name].description}{'' if METRICS[name].default else ' [opt-in]'}" for name in SCORED)
