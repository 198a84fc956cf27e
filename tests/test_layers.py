"""The layers of pyproject.toml's import-linter contract (issue 24) hold, and a backward import breaks them.

Top to bottom: the commands and jobs (`misato.cli`, `misato.jobs`) > `leaderboard` > `evaluators` | `baselines`
> the ground of `misato`. `lint-imports` (from the venv that runs the tests) reads the contract from pyproject.toml.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import misato

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("misato", "evaluators", "baselines", "leaderboard")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract() -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == "layers")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_lint_imports_passes_on_the_tree():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_backward_import_breaks_the_contract(tmp_path):
    """A copy of the tree where a ground module imports the scorer (a higher layer) fails `lint-imports`, naming
    that import; the unchanged copy passes, so the failure is the added line's."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.json",
                                                                                         "*.csv", "static", "templates"))
    assert _lint(tmp_path).returncode == 0
    ground = tmp_path / "misato" / "io.py"
    ground.write_text(ground.read_text() + "\n\ndef _backward():\n    from evaluators import scoring  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "misato.io -> evaluators.scoring" in result.stdout, result.stdout


def test_the_ground_names_every_other_misato_module():
    """A new module of `misato` belongs to a layer: the top (cli, jobs, __main__) or the ground list."""
    named = {name.strip() for layer in _contract()["layers"] for name in layer.replace("|", ":").split(":")}
    children = {f"misato.{module.name}" for module in pkgutil.iter_modules(misato.__path__)}
    assert children - named == set()
    assert named >= {"misato.cli", "misato.jobs", "leaderboard", "evaluators", "baselines"}
