"""Start-up cost of the scoring path: what a command imports, and the on-disk cache of weight-file hashes."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from misato import weights

REPO = Path(__file__).resolve().parents[1]

# Packages a command must not import unless it uses them (issue 26): each costs 0.1-1.5 s of start-up.
HEAVY = ("torchvision", "open_clip", "sklearn", "diffusers", "transformers", "dreamsim", "starlette", "uvicorn",
         "jinja2", "torch._dynamo", "pandas", "scipy", "skimage", "lpips", "accelerate", "timm", "matplotlib")

# Runs `misato` in a fresh interpreter and prints, as JSON, the heavy packages present in sys.modules at exit.
WRAPPER = """
import json, sys
from misato.cli import main
heavy = json.loads(sys.argv[1])
try:
    code = main(sys.argv[2:])
except SystemExit as stop:
    code = stop.code
print("LOADED=" + json.dumps(sorted(name for name in heavy if name in sys.modules)))
sys.exit(code)
"""


def _loaded(*argv: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    done = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(heavy), *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED="))
    return json.loads(line.removeprefix("LOADED="))


def test_score_help_imports_no_heavy_package():
    """--help builds every subcommand's parser: none may import torch (1.5-2 s) to add its arguments."""
    assert _loaded("score", "--help", heavy=(*HEAVY, "torch")) == []


def test_psnr_only_score_imports_no_heavy_package(tiny_dataset, tiny_predictions, tmp_path):
    out = tmp_path / "results"
    assert _loaded("score", "--dataset", str(tiny_dataset), "--predictions", str(tiny_predictions), "--method", "m",
                   "--out", str(out), "--metrics", "psnr", "--no-progress", "--offline", "--device", "cpu") == []
    assert json.loads(next(out.glob("*.json")).read_text())["metrics"]["overall"]["psnr"] > 0  # it scored
