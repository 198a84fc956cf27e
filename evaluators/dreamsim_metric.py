"""DreamSim (Fu et al., NeurIPS 2023): the ensemble perceptual distance, per image, on the hole's bounding box
(`dreamsim`) and on the whole image (`dreamsim_image`), result vs ground truth.

The distance is the `dreamsim` package's own model (`dreamsim.dreamsim(dreamsim_type="ensemble")`: DINO ViT-B/16 CLS,
CLIP and OpenCLIP ViT-B/16 embeddings with the released LoRA adapter, 1 - cosine similarity of the normalised,
concatenated embeddings), read from the registry's files (the package itself never downloads; the registry
fetches only where downloads are allowed):
- `dreamsim-ensemble`: the release archive the package downloads (backbones and adapter), unpacked once into the
  cache (`<cache root>/dreamsim/<sha256 prefix>`), every member checked to stay inside that folder;
- `dino-vitb16`: the DINO backbone. The package builds it with `torch.hub.load("facebookresearch/dino:main",
  "dino_vitb16")`, which fetches DINO's code from GitHub and its weights from fbaipublicfiles at run time, and calls
  `torch.hub.set_dir` (a process-wide setting). Both are replaced while it loads: the hub call by DINO's own
  recipe (the package's copy of DINO's `vit_base(patch_size=16, num_classes=0)`, filled strictly from the file),
  set_dir by nothing. Every other file the package reads goes through `torch.load(weights_only=True)` or peft's
  safetensors / weights-only loader.
Input convention as the package's `preprocess`: each crop resized to 224 x 224 by PIL bicubic, RGB in [0, 1].
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from misato.weights import ResolvedWeight

ARCHIVE_KEY, DINO_KEY = "dreamsim-ensemble", "dino-vitb16"
# What the package needs for the ensemble (its `download_weights` list); the adapter's two files.
ARCHIVE_MEMBERS = ("dino_vitb16_pretrain.pth", "open_clip_vitb16_pretrain.pth.tar", "clip_vitb16_pretrain.pth.tar",
                   "ensemble_lora/adapter_config.json")


def unpack_archive(archive: Path, folder: Path) -> Path:
    """The release archive unpacked in `folder` (atomically: into a temporary sibling, then renamed); reused when
    already there. ValueError naming the file when it is not a zip, a member would land outside `folder`, or a file
    the ensemble needs is missing."""
    if (folder / ".complete").is_file():
        return folder
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive}: not a zip archive (expected the DreamSim release dreamsim_ensemble_checkpoint.zip)")
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        outside = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts]
        if outside:
            raise ValueError(f"{archive}: members outside the archive's folder: {outside[:3]}")
        missing = [m for m in ARCHIVE_MEMBERS if m not in names]
        if missing:
            raise ValueError(f"{archive}: not the DreamSim ensemble archive: missing {', '.join(missing)}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            opened.extractall(temporary)
            (temporary / ".complete").write_text("")
            os.replace(temporary, folder)
        except OSError:
            if not (folder / ".complete").is_file():
                raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return folder


def dino_backbone(path: Path) -> torch.nn.Module:
    """DINO ViT-B/16 as torch.hub's `dino_vitb16` builds it, weights read weights-only and loaded strictly."""
    from dreamsim.feature_extraction import vision_transformer

    from misato.checkpoints import load_checkpoint, load_state_strict

    model = vision_transformer.vit_base(patch_size=16, num_classes=0)
    return load_state_strict(model, load_checkpoint(path), path, "DINO ViT-B/16 backbone")


def load_dreamsim(archive: ResolvedWeight, dino: ResolvedWeight, device: torch.device) -> Any:
    """The package's DreamSim ensemble (eval, no gradients) on `device`, from the two registry files."""
    from dreamsim import model as package

    from misato.defaults import cache_root

    folder = unpack_archive(archive.path, cache_root() / "dreamsim" / archive.sha256[:16])

    def hub_load(repo: str, name: str, *args: Any, **kwargs: Any) -> torch.nn.Module:
        if name != "dino_vitb16":
            raise ValueError(f"DreamSim asked torch.hub for {repo} {name}; only dino_vitb16 is provided")
        return dino_backbone(dino.path)

    with mock.patch.object(torch.hub, "load", hub_load), mock.patch.object(torch.hub, "set_dir", lambda d: None), \
            mock.patch.object(package, "download_weights", lambda cache_dir, dreamsim_type: None):
        network, _ = package.dreamsim(pretrained=True, device=str(device), cache_dir=str(folder),
                                      normalize_embeds=True, dreamsim_type="ensemble")
    return network.eval().requires_grad_(False)


def hole_box(hole: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns of the hole's bounding box; the whole image for an empty hole (left out of the means
    under paste-back, as every per-image metric of an empty mask is)."""
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    if not len(rows):
        return slice(None), slice(None)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class DreamSimInputs:
    """Worker-side preprocessing: uint8 (H, W, 3) RGB -> float32 (3, size, size) in [0, 1], PIL bicubic resize
    (the package's `preprocess`)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from PIL import Image

        resized = Image.fromarray(np.ascontiguousarray(image)).resize((self.size, self.size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(resized, np.float32) / 255.0).permute(2, 0, 1).contiguous()


class DreamSimDistance:
    """The network and its batch call: `distance(a, b)` for (B, 3, S, S) inputs -> float64 (B,) on the CPU."""

    def __init__(self, archive: ResolvedWeight, dino: ResolvedWeight, device: torch.device) -> None:
        self.model, self.device = load_dreamsim(archive, dino, device), device

    @torch.inference_mode()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model(a.to(self.device), b.to(self.device)).reshape(len(a)).double().cpu()
