"""Provenance recorded in every result and manifest file."""

from __future__ import annotations

import datetime
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "misato-bench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image", "pillow",
    "opencv-python-headless", "lpips", "clean-fid", "torch-fidelity", "torchmetrics", "open_clip_torch",
    "diffusers", "transformers",
)


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
