"""How each metric is shown: label, decimals and the default direction (data, not if-chains).

The direction a table uses comes from the result files' `higher_is_better` when they state it (they must
agree); `higher_is_better` here is only the fallback for paper figures and files that omit it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    label: str
    decimals: int
    higher_is_better: bool


METRICS: dict[str, MetricInfo] = {
    "lpips": MetricInfo("LPIPS", 3, False),
    "fid": MetricInfo("FID", 3, False),
    "u_ids": MetricInfo("U-IDS", 3, True),
    "p_ids": MetricInfo("P-IDS", 3, True),
    "psnr": MetricInfo("PSNR", 2, True),
    "ssim": MetricInfo("SSIM", 3, True),
    "grad_error": MetricInfo("Grad. err.", 2, False),  # Sobel magnitude on 0-255 images: tens to hundreds
    "clip_score": MetricInfo("CLIP", 3, True),
    "kid": MetricInfo("KID", 4, False),
    "context_stability_pct": MetricInfo("Context stability (%)", 2, True),
    "visual_consistency_pct": MetricInfo("Visual consistency (%)", 2, True),
}

# Table 1 of the paper, in its column order.
TABLE1_METRICS: tuple[str, ...] = ("lpips", "fid", "u_ids", "p_ids")
# Every metric shown in the "all metrics" and per-domain tables, in this order (kid_std is not a column).
ALL_METRICS: tuple[str, ...] = ("lpips", "fid", "u_ids", "p_ids", "psnr", "ssim", "grad_error", "clip_score", "kid")


def info(metric: str) -> MetricInfo:
    """Display info for a metric; unknown metrics get their own name, 3 decimals, lower is better."""
    return METRICS.get(metric, MetricInfo(metric, 3, False))
