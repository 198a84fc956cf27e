"""Named, versioned evaluation protocols. A protocol fixes every choice that changes a number.

Presets are data (pyiqa style): one `Protocol` dataclass, one entry per name. Every result file records
`Protocol.record()`. Bump `version` whenever a field's meaning changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from misato.defaults import MASK_HOLE_FRACTION


@dataclass(frozen=True)
class Protocol:
    """Every setting that decides a metric's value.

    feature_net: key in `evaluators.features.EXTRACTORS` (network + its input resize).
    ids_pca_dim: PCA dimension applied to real+fake features before the IDS SVM; None = raw features.
    ids_pca_from_resolution: the PCA dimension is the image side instead (asuka: `--resolution`, 512 or 1024).
    psnr / ssim: keys in `evaluators.functional.pixel` (PSNR_VARIANTS / SSIM_VARIANTS).
    grad_soft_mask: boundary-gradient composite with the soft mask m/255 (asuka) instead of the binary one.
    kid_*: KID subsets (seeded; torch-fidelity's defaults).
    color_sigma: Gaussian sigma of `color_shift` / `color_shift_raw` in pixels at 512 (scaled by min(H, W) / 512).
    seam_band: width of the inner and outer bands of `seam` in pixels at 512 (scaled, rounded, at least 1).
    detector: key in `evaluators.detection.DETECTORS`, the detector of `hallucination`.
    detector_score: detections (of prediction and ground truth) below this score are ignored.
    hallucination_inside: a detection counts when at least this fraction of its area (mask, else box) is hole.
    hallucination_iou: box IoU at which a ground-truth detection of the same class matches (not hallucinated).
    cmmd_clip_model / cmmd_sigma / cmmd_scale: the open_clip model of `cmmd` (whole images, resized to its input side)
      and the Gaussian RBF kernel's bandwidth and the scale of the MMD (google-research/cmmd; `evaluators.cmmd`).
    dinov2_size: the side `fd_dinov2` resizes images to before DINOv2 (`evaluators.dinov2`).
    dreamsim_size: the side `dreamsim` resizes each crop to (`evaluators.dreamsim_metric`).
    """

    name: str
    version: int
    description: str
    feature_net: str
    ids_pca_dim: int | None = None
    ids_pca_from_resolution: bool = False
    ids_pca_seed: int = 0
    lpips_net: str = "alex"
    lpips_value_range: tuple[float, float] = (-1.0, 1.0)
    psnr: str = "uint8"
    ssim: str = "gaussian-rgb"
    grad_soft_mask: bool = False
    mask_threshold: float = MASK_HOLE_FRACTION
    clip_model: str = "ViT-L-14"
    clip_quick_gelu: bool = True
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = 2020
    color_sigma: float = 8.0
    seam_band: float = 8.0
    detector: str = "maskrcnn-coco"
    detector_score: float = 0.5
    hallucination_inside: float = 0.5
    hallucination_iou: float = 0.5
    cmmd_clip_model: str = "ViT-L-14-336"
    cmmd_sigma: float = 10.0
    cmmd_scale: float = 1000.0
    dinov2_size: int = 224
    dreamsim_size: int = 224
    departures: tuple[str, ...] = field(default=())

    def record(self) -> dict:
        out = asdict(self)
        out["lpips_value_range"] = list(self.lpips_value_range)
        out["departures"] = list(self.departures)
        return out


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="comod",
            version=1,
            description="Co-Mod-GAN/MAT convention: TF-ported Inception (2015-12-05) pool3 2048-d at native size "
            "resized to 299 by TF1 bilinear inside the network (torch-fidelity = TTUR), np.cov (ddof 1), "
            "U/P-IDS with LinearSVC(dual=False) on raw features, LPIPS-Alex on [-1,1], PSNR on [0,255], "
            "Gaussian (11, 1.5) RGB SSIM.",
            feature_net="inception-tf",
        ),
        Protocol(
            name="clean",
            version=1,
            description="clean-fid resize: PIL bicubic to 299 in float (no quantisation) then the TF-ported "
            "Inception; otherwise as comod.",
            feature_net="inception-tf-clean",
            departures=(
                "Inception input resized by clean-fid's PIL bicubic (float) instead of TF1 bilinear",
                "network: torch-fidelity's port of the 2015-12-05 graph, not NVIDIA's TorchScript that clean-fid "
                "loads (same weights; features agree to about 1e-4)",
            ),
        ),
        Protocol(
            name="asuka",
            version=1,
            description="Official asuka-misato eval scripts: torchvision inception_v3 IMAGENET1K_V1 (fc=Identity) "
            "with its transforms (PIL resize 342, centre crop 299, ImageNet normalisation), np.cov, PCA to the "
            "image side (512 or 1024) before the SVM, PSNR on [0,1] with +1e-7, grayscale skimage SSIM (7x7 uniform), boundary gradient "
            "with the soft mask.",
            feature_net="inception-torchvision",
            ids_pca_from_resolution=True,
            psnr="unit-eps",
            ssim="uniform-gray",
            grad_soft_mask=True,
            departures=(
                "features: torchvision ImageNet Inception, not the TF 2015-12-05 graph",
                "resize 342 + centre crop 299 drops about 13% of each border, where most holes touch",
                "PCA to the image side (512 at 512, 1024 at 1024) on real+fake before the SVM (needs at least that "
                "many feature rows); seeded here (random_state=ids_pca_seed) since sklearn's randomized solver is "
                "otherwise not reproducible",
                "PSNR with +1e-7 in the log, grayscale SSIM with a 7x7 uniform window",
                "CLIP score: hole = mask >= 128 here; the official script keeps pixels with mask // 255 == 1 "
                "(only 255). Identical on binary 0/255 masks such as MISATO's",
            ),
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
