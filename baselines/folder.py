"""Precomputed predictions as an inpainter: `folder:PATH` in any method list.

PATH holds one RGB image per sample named by the sample stem (`0000.png`, `0001.jpg`, ...), as written
by LaMa's, MAT's or ASUKA's own evaluation scripts; a folder written by `misato inpaint` may be given as
is (its `raw/` sub-folder is used). Before the run, `prepare` checks that every requested stem has a
file; each file's size must equal its sample's. The runner composites these outputs like any other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from baselines.base import Inpainter
from misato.data import list_images
from misato.io import read_rgb
from misato.outputs import OutputFolder

log = logging.getLogger(__name__)


class FolderInpainter(Inpainter):
    """Reads `<root>/<stem>.<png|jpg>` for each sample; returns float32 (B, 3, H, W) in [0, 1]."""

    name: ClassVar[str] = "folder"
    version: ClassVar[str] = "1"
    uses_sample_ids: ClassVar[bool] = True

    def __init__(self, device: str | torch.device = "cpu", root: str | Path = "", **options: Any) -> None:
        super().__init__(device, root=str(root), **options)
        folder = OutputFolder.prediction_images(Path(root).expanduser())
        if not str(root) or not folder.is_dir():
            raise ValueError(f"folder inpainter: {root!r} is not a folder of predictions")
        self.folder = folder
        self.files = list_images(folder)

    def prepare(self, stems: list[str]) -> None:
        missing = [s for s in stems if s not in self.files]
        if missing:
            raise ValueError(
                f"{self.folder}: no prediction for {len(missing)} of {len(stems)} samples, e.g. {missing[:5]}"
            )
        extra = len(set(self.files) - set(stems))
        if extra:
            log.info("%s: %d prediction(s) not in this run are ignored", self.folder, extra)

    def inpaint(
        self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int], stems: list[str] | None = None
    ) -> torch.Tensor:
        if stems is None or len(stems) != images.shape[0]:
            raise ValueError("folder inpainter needs one sample stem per image (stems=...)")
        outputs = []
        for stem, image in zip(stems, images):
            if stem not in self.files:
                raise ValueError(f"{self.folder}: no prediction for sample {stem!r}")
            path = self.files[stem]
            array = read_rgb(path)
            if array.shape[:2] != tuple(image.shape[-2:]):
                raise ValueError(
                    f"{path}: size {array.shape[1]}x{array.shape[0]} differs from the sample's "
                    f"{image.shape[-1]}x{image.shape[-2]}"
                )
            outputs.append(torch.from_numpy(array.astype(np.float32) / 255.0).permute(2, 0, 1))
        return torch.stack(outputs).to(images.device)

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["folder"] = str(self.folder.resolve())
        return config
