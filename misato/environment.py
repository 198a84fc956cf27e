"""Provenance recorded in every result, run manifest and build manifest: package versions, git state, time."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "misato-bench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image", "pillow",
    "opencv-python-headless", "lpips", "clean-fid", "torch-fidelity", "torchmetrics", "open_clip_torch",
    "diffusers", "transformers", "accelerate", "pycocotools", "datasets",
)


def package_versions() -> dict[str, str | None]:
    """Python and installed package versions (None when a package is absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state() -> dict[str, Any] | None:
    """Commit of the checkout this package runs from and whether tracked files have uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
