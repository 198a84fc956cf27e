"""Classical inpainters: OpenCV Telea and Navier-Stokes, scikit-image biharmonic.

No weights, CPU only, one sample at a time (`batched = False`). They see the harness's float32 images
(B=1, 3, H, W) in [0, 1] and masks (B=1, 1, H, W) with 1 = hole, and return the same layout.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from baselines.base import Inpainter


def _to_hwc_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded to nearest."""
    return np.rint(image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).astype(np.uint8)


class _PerSampleInpainter(Inpainter):
    """Loops over the batch and calls `fill(image_hwc, hole_bool)` -> float32 (H, W, 3) in [0, 1]."""

    batched: ClassVar[bool] = False
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    def fill(self, image: torch.Tensor, hole: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        outputs = []
        for image, mask in zip(images, masks):
            hole = (mask[0] > 0.5).cpu().numpy()
            filled = self.fill(image, hole)
            outputs.append(torch.from_numpy(np.ascontiguousarray(filled, dtype=np.float32)).permute(2, 0, 1))
        return torch.stack(outputs).to(images.device)


class _OpenCVInpainter(_PerSampleInpainter):
    """`cv2.inpaint` on 8-bit images. Channels are filled independently, so RGB order needs no swap."""

    flag_name: ClassVar[str] = ""

    def __init__(self, device: str | torch.device = "cpu", radius: float = 3.0, **options: Any) -> None:
        super().__init__(device, radius=radius, **options)
        if radius <= 0:
            raise ValueError(f"{self.name}: radius must be > 0, got {radius}")
        self.radius = float(radius)

    def fill(self, image: torch.Tensor, hole: np.ndarray) -> np.ndarray:
        import cv2

        out = cv2.inpaint(_to_hwc_uint8(image), hole.astype(np.uint8) * 255, self.radius, getattr(cv2, self.flag_name))
        return out.astype(np.float32) / 255.0


class TeleaInpainter(_OpenCVInpainter):
    """Telea (2004) fast marching inpainting, `cv2.INPAINT_TELEA`; option `radius` (pixels, default 3)."""

    name: ClassVar[str] = "telea"
    version: ClassVar[str] = "1"
    flag_name: ClassVar[str] = "INPAINT_TELEA"


class NavierStokesInpainter(_OpenCVInpainter):
    """Bertalmio et al. (2001) Navier-Stokes inpainting, `cv2.INPAINT_NS`; option `radius` (default 3)."""

    name: ClassVar[str] = "ns"
    version: ClassVar[str] = "1"
    flag_name: ClassVar[str] = "INPAINT_NS"


class BiharmonicInpainter(_PerSampleInpainter):
    """`skimage.restoration.inpaint_biharmonic` on float images, each hole region solved separately.

    Slow on large holes (one sparse solve per connected region).
    """

    name: ClassVar[str] = "biharmonic"
    version: ClassVar[str] = "1"

    def fill(self, image: torch.Tensor, hole: np.ndarray) -> np.ndarray:
        from skimage.restoration import inpaint_biharmonic

        array = image.permute(1, 2, 0).cpu().numpy().astype(np.float64)
        if not hole.any():
            return array.astype(np.float32)
        out = inpaint_biharmonic(array, hole, channel_axis=-1, split_into_regions=True)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
