"""`misato study agreement STUDY RESULTS...`: every metric judged against the participants' votes.

For each question of the study (context stability, visual consistency) and each per-image metric of the result
files (`per_image_csv` of the study's methods, scored on the study's dataset), over the study's ordinary items:

- pairwise agreement: of the pairs of methods on an item that the participants' majority orders (more votes for
  one than the other) and the metric orders (different values), the share the metric orders the same way
  (oriented by the metric's `higher_is_better`); pairs tied on either side are left out (counted as `pairs`).
  0.5 is chance, 1 full agreement.
- Kendall's tau-b per item between the methods' vote counts and their oriented metric values
  (`scipy.stats.kendalltau`, ties handled by tau-b), averaged over the items where it is defined (an item whose
  votes or values are all tied has none). 0 is chance, 1 full agreement.
- 95% percentile bootstrap intervals over items (`evaluators.bootstrap.Resamples`, seeded): pairwise agreement
  as the ratio of the resampled sums, tau-b as the mean of the resampled items' defined values.

The votes are those of the participants `misato study tally` counts (complete, passing the attention checks, and
not too fast with `min_seconds`). Output: `agreement.json`, `agreement.md` (the table) and `agreement.html` (the
table and a bar chart with the intervals, inline SVG, every label escaped).
"""

from __future__ import annotations

import csv
import html
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluators.bootstrap import LEVEL, Resamples, check_resamples, percentile_interval, resampled_means, \
    resampled_sums
from misato.defaults import BOOTSTRAP_RESAMPLES
from misato.jobs.study.design import Study, load_study
from misato.jobs.study.tally import answer_store, select, votes

log = logging.getLogger(__name__)

NOT_METRICS = ("stem", "domain", "hole_ratio")  # per-image CSV columns that are not metrics


@dataclass(frozen=True)
class Agreement:
    """One (question, metric) figure: pairwise agreement and mean tau-b with their intervals; items: the items
    with a defined tau-b; pairs: the pairs both sides order."""

    question: str
    metric: str
    pairwise: float | None
    pairwise_interval: list[float] | None
    tau_b: float | None
    tau_b_interval: list[float] | None
    items: int
    pairs: int


def per_item(votes_: np.ndarray, scores: np.ndarray, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """(agreeing pairs, ordered pairs, tau-b) per item of `votes_` and `scores` (items, methods); a non-finite
    score leaves its pairs out and the item's tau-b undefined (NaN)."""
    from scipy.stats import kendalltau

    if votes_.shape != scores.shape:
        raise ValueError(f"votes {votes_.shape} and scores {scores.shape} differ in shape")
    oriented = np.asarray(scores, np.float64) * (1.0 if higher_is_better else -1.0)
    a, b = np.triu_indices(votes_.shape[1], k=1)
    vote_sign = np.sign(votes_[:, a] - votes_[:, b])
    with np.errstate(invalid="ignore"):
        score_sign = np.sign(oriented[:, a] - oriented[:, b])
    ordered = (vote_sign != 0) & (score_sign != 0) & np.isfinite(score_sign)
    agree = ordered & (vote_sign == score_sign)
    taus = np.full(len(votes_), np.nan)
    for i in range(len(votes_)):
        if np.isfinite(oriented[i]).all() and np.ptp(votes_[i]) > 0 and np.ptp(oriented[i]) > 0:
            taus[i] = kendalltau(votes_[i], oriented[i]).statistic  # tau-b (scipy's default variant)
    return agree.sum(axis=1).astype(np.float64), ordered.sum(axis=1).astype(np.float64), taus


def agreement(votes_: np.ndarray, scores: np.ndarray, higher_is_better: bool, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = 0) -> dict:
    """Pairwise agreement and mean tau-b of one metric with the votes (module docstring) and their bootstrap
    intervals over items: {pairwise, pairwise_interval, tau_b, tau_b_interval, items, pairs}."""
    resamples = check_resamples(resamples)
    agree, ordered, taus = per_item(votes_, scores, higher_is_better)
    pairs = int(ordered.sum())
    defined = np.isfinite(taus)
    out = {"pairwise": float(agree.sum() / pairs) if pairs else None, "pairwise_interval": None,
           "tau_b": float(taus[defined].mean()) if defined.any() else None, "tau_b_interval": None,
           "items": int(defined.sum()), "pairs": pairs}
    if resamples and len(votes_) > 1:
        indices = Resamples(len(votes_), resamples, seed)
        sums = resampled_sums(np.stack([agree, ordered], axis=1), indices)  # (R, 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(sums[:, 1] > 0, sums[:, 0] / np.maximum(sums[:, 1], 1), np.nan)
        interval = percentile_interval(ratio, LEVEL)
        out["pairwise_interval"] = list(interval) if interval and pairs else None
        interval = percentile_interval(resampled_means(taus, indices), LEVEL)
        out["tau_b_interval"] = list(interval) if interval and defined.any() else None
    return out


def read_scores(study: Study, results: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """metric label -> float (items, methods) of the study's ordinary items, and label -> higher_is_better, from
    the result files (or folders of them). A label is the metric name, with the protocol when several protocols
    score it. ValueError naming the file for a result of another dataset, or a method without per-image values."""
    from evaluators.record import ResultRecord

    files = [(f, Path(path).is_dir()) for path in results
             for f in (sorted(Path(path).rglob("*.json")) if Path(path).is_dir() else [Path(path)])]
    if not files:
        raise ValueError(f"RESULTS {' '.join(map(str, results))}: no result files")
    ordinary = [item for item in study.items if not item.attention_check]
    wanted = study.source["dataset"].get("content_sha256")
    tables: dict[tuple[str, str], dict[str, dict[str, float]]] = {}  # (protocol, metric) -> method -> stem -> value
    higher: dict[tuple[str, str], bool] = {}
    for path, in_folder in files:
        if not path.is_file():
            raise ValueError(f"{path}: no such result file")
        try:
            record = ResultRecord.read(path)
        except ValueError:
            if not in_folder:
                raise
            log.info("%s: not a result file, skipped", path)  # e.g. a manifest or report beside the results
            continue
        if record.method not in study.methods or not record.per_image_csv:
            continue
        if record.dataset.content_hash != wanted:
            raise ValueError(f"{path}: scored on another dataset than the study's (content hash differs)")
        csv_path = Path(path).parent / record.per_image_csv
        if not csv_path.is_file():
            raise ValueError(f"{path}: its per-image file {csv_path} is missing")
        with csv_path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for column in (rows[0].keys() if rows else []):
            if column in NOT_METRICS or column not in record.higher_is_better:
                continue
            key = (record.protocol_name, column)
            higher[key] = bool(record.higher_is_better[column])
            tables.setdefault(key, {})[record.method] = {r["stem"]: _number(r[column]) for r in rows}
    protocols: dict[str, set[str]] = {}
    for protocol, metric in tables:
        protocols.setdefault(metric, set()).add(protocol)
    scores, orientation = {}, {}
    for (protocol, metric), by_method in sorted(tables.items()):
        if set(by_method) != set(study.methods):
            log.warning("metric %s (%s): no per-image values of %s; left out", metric, protocol,
                        ", ".join(sorted(set(study.methods) - set(by_method))))
            continue
        missing = [item.stem for item in ordinary if any(item.stem not in by_method[m] for m in study.methods)]
        if missing:
            raise ValueError(f"metric {metric} ({protocol}): no per-image value for study image(s) "
                             f"{', '.join(missing[:3])}")
        label = metric if len(protocols[metric]) == 1 else f"{metric} ({protocol})"
        scores[label] = np.array([[by_method[m][item.stem] for m in study.methods] for item in ordinary])
        orientation[label] = higher[(protocol, metric)]
    if not scores:
        raise ValueError(f"RESULTS: no per-image metric of all {len(study.methods)} study methods "
                         f"({', '.join(study.methods)}) on the study's dataset")
    return scores, orientation


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def study_agreement(folder: str | os.PathLike, results: list[Path], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                    min_seconds: float | None = None) -> list[Agreement]:
    """Every (question, metric) agreement of the study in `folder` with the metrics of `results`."""
    study = load_study(folder)
    resamples = check_resamples(resamples)
    scores, orientation = read_scores(study, [Path(r) for r in results])
    answers = answer_store(folder, study).answers()
    _, _, kept = select(study, answers, min_seconds)
    if not kept:
        raise ValueError(f"{folder}: no complete answers that pass the attention checks")
    counted = votes(study, answers, kept)
    out = []
    for question in study.questions:
        for label, values in scores.items():
            found = agreement(counted[question.metric], values, orientation[label], resamples, seed)
            out.append(Agreement(question.metric, label, **found))
    return out


def _figure(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def markdown(found: list[Agreement]) -> str:
    """The agreement table (one row per metric and question)."""
    lines = ["| question | metric | pairwise agreement [95% CI] | Kendall tau-b [95% CI] | items | pairs |",
             "|---|---|---|---|---|---|"]
    for a in found:
        lines.append(f"| {_md(a.question)} | {_md(a.metric)} | {_figure(a.pairwise, a.pairwise_interval)} | "
                     f"{_figure(a.tau_b, a.tau_b_interval)} | {a.items} | {a.pairs} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


BAR_HEIGHT, LABEL_WIDTH, PLOT_WIDTH = 18, 260, 360


def chart_svg(found: list[Agreement]) -> str:
    """Horizontal bars of pairwise agreement (0..1) with interval whiskers and a line at chance (0.5)."""
    rows = [a for a in found if a.pairwise is not None]
    height = BAR_HEIGHT * (len(rows) + 2)
    x = lambda v: LABEL_WIDTH + v * PLOT_WIDTH  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {LABEL_WIDTH + PLOT_WIDTH + 20} {height}" '
             'role="img" aria-label="pairwise agreement of each metric with the participants">']
    for i, a in enumerate(rows):
        y = BAR_HEIGHT * (i + 1)
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end" font-size="11">'
                     f'{html.escape(a.metric)} / {html.escape(a.question)}</text>')
        parts.append(f'<rect x="{x(0)}" y="{y + 3}" width="{a.pairwise * PLOT_WIDTH:.1f}" height="{BAR_HEIGHT - 6}" '
                     'fill="#1f5fbf"/>')
        if a.pairwise_interval:
            low, high = a.pairwise_interval
            parts.append(f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y + 9}" y2="{y + 9}" stroke="#000"/>')
    parts.append(f'<line x1="{x(0.5)}" x2="{x(0.5)}" y1="{BAR_HEIGHT - 4}" y2="{height - BAR_HEIGHT + 4}" '
                 'stroke="#a00" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x(0.5)}" y="{height - 4}" text-anchor="middle" font-size="10">chance 0.5</text>')
    parts.append(f'<text x="{x(1)}" y="{height - 4}" text-anchor="end" font-size="10">1</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(found: list[Agreement], out: str | os.PathLike, settings: dict) -> dict[str, Path]:
    """agreement.json, agreement.md and agreement.html in `out` (atomic writes)."""
    from dataclasses import asdict

    from misato.io import atomic_write_bytes, atomic_write_json

    out = Path(out)
    table = markdown(found)
    title = "Metrics judged against the participants"
    intro = ("Pairwise agreement: share of the method pairs on an item that the participants' majority and the "
             "metric order the same way (0.5 = chance). Kendall tau-b: per item, averaged (0 = chance). "
             f"95% bootstrap intervals over items ({settings['resamples']} resamples, seed {settings['seed']}).")
    rows = "".join(f"<tr><td>{html.escape(a.question)}</td><td>{html.escape(a.metric)}</td>"
                   f"<td>{_figure(a.pairwise, a.pairwise_interval)}</td><td>{_figure(a.tau_b, a.tau_b_interval)}"
                   f"</td><td>{a.items}</td><td>{a.pairs}</td></tr>" for a in found)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{html.escape(intro)}</p><table><thead><tr><th>question</th><th>metric</th>"
            "<th>pairwise agreement [95% CI]</th><th>Kendall tau-b [95% CI]</th><th>items</th><th>pairs</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>{chart_svg(found)}</body></html>")
    paths = {"json": out / "agreement.json", "md": out / "agreement.md", "html": out / "agreement.html"}
    atomic_write_json(paths["json"], {"settings": settings, "agreement": [asdict(a) for a in found]})
    atomic_write_bytes(paths["md"], f"# {title}\n\n{intro}\n\n{table}".encode())
    atomic_write_bytes(paths["html"], page.encode())
    return paths
