"""The ASUKA paper's reported figures (Tables 1 and 2), shipped as package data.

The CSVs in `leaderboard/data/` are transcribed from the paper (see data/README.md). They are shown beside
measured rows as "paper" rows with a "diff" row (measured - paper); they are never ranked with measured rows.
"""

from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources

import pandas as pd

# Method names in result files (lower-cased) -> the paper's spelling. One source of truth for the matching.
PAPER_NAMES: dict[str, str] = {
    "lama": "LaMa",
    "big-lama": "LaMa",
    "mat": "MAT",
    "comod": "Co-Mod",
    "co-mod": "Co-Mod",
    "co-mod-gan": "Co-Mod",
    "mae-far": "MAE-FAR",
    "sd": "SD",
    "sd-text": "SD-text",
    "sd-prompt": "SD-prompt",
    "sd-repaint": "SD-Repaint",
    "asuka": "ASUKA",
    "asuka-sd": "ASUKA",
}



def _read(name: str) -> pd.DataFrame:
    text = resources.files("leaderboard.data").joinpath(name).read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text))


@lru_cache(maxsize=None)
def _table1() -> pd.DataFrame:
    return _read("paper_table1.csv")


def table1() -> pd.DataFrame:
    """Paper Table 1: columns method, dataset (MISATO | Places2), images, lpips, fid, u_ids, p_ids."""
    return _table1().copy()


def table2() -> pd.DataFrame:
    """Paper Table 2 (a), (b), (d) ablations on MISATO: columns table, variant, lpips, fid, u_ids, p_ids."""
    return _read("paper_table2.csv")


def table2c_user_study() -> pd.DataFrame:
    """Paper Table 2 (c) user study: method, context_stability_pct, visual_consistency_pct (top-1 share, %)."""
    return _read("paper_table2c_user_study.csv")


def paper_name(method: str) -> str | None:
    """The paper's name for a measured method (case-insensitive, also matching the paper's own spelling)."""
    key = method.strip().lower()
    if key in PAPER_NAMES:
        return PAPER_NAMES[key]
    spelled = {name.lower(): name for name in _table1()["method"]}
    return spelled.get(key)


def table1_value(method: str, kind: str, metric: str) -> float | None:
    """The paper's Table 1 figure for (paper method name, dataset kind, metric), or None."""
    frame = _table1()
    rows = frame[(frame["method"] == method) & (frame["dataset"] == kind)]
    if rows.empty or metric not in frame.columns:
        return None
    return float(rows.iloc[0][metric])


def table1_samples() -> dict[str, int]:
    """Evaluation-set size the paper states per dataset kind (MISATO 2000, Places2 36500)."""
    frame = _table1()
    return {kind: int(group["images"].iloc[0]) for kind, group in frame.groupby("dataset", sort=False)}
