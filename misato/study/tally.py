"""`misato study tally`: the answers -> Table 2 (c) as ordinary result files (`evaluators.record.ResultRecord`).

Who counts: participants who answered every item ("complete"); partial answers are counted, not tallied. A
complete participant fails the attention checks when they picked the ground truth in fewer than
`attention_pass_fraction` of their attention-check questions, and is excluded (counted). The attention-check
failure rate = excluded / complete (null when the study has no checks).

Figures: per method and question, the top-1 selection ratio = 100 x (answers picking the method) / (answers) over
the ordinary items of the tallied participants (the shares of one question sum to 100). 95% intervals: percentile
bootstrap over participants (each resample draws participants with replacement, with all their answers; seeded,
`evaluators.bootstrap.resample_indices`).

Output: one `<method>__<dataset>__user-study.json` per method: `metrics.overall` holds n (the tallied answers)
and the two study metrics, `intervals.overall` their intervals, `config.study` the counts, `seeds` the study's and
the bootstrap's seeds. `misato table` renders them as the measured Table 2 (c) beside the paper's.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.bootstrap import LEVEL, percentile_interval, resample_indices
from misato.study.design import DATABASE_FILE, Study, load_study
from misato.study.store import Answer, AnswerStore

log = logging.getLogger(__name__)

PROTOCOL = {"name": "user-study", "version": 1}


@dataclass
class StudyTally:
    """The tally of one study. shares / intervals: method -> metric -> % / [low, high] (empty when nobody is
    tallied); counts: participants, complete, partial, excluded_attention, tallied, answers, attention_checks,
    attention_failure_rate."""

    counts: dict[str, Any]
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)


def _by_participant(answers: list[Answer]) -> dict[str, dict[str, dict[str, str]]]:
    """participant -> item -> {question: option}."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for a in answers:
        out.setdefault(a.participant, {}).setdefault(a.item, {})[a.question] = a.option
    return out


def passes_checks(study: Study, answered: dict[str, dict[str, str]]) -> bool:
    """Whether a complete participant picked the ground truth in at least `attention_pass_fraction` of the
    attention-check questions (always True without checks)."""
    checks = [item for item in study.items if item.attention_check]
    if not checks:
        return True
    right = sum(answered[item.id].get(q.key) == item.truth.id for item in checks for q in study.questions)
    return right >= study.attention_pass_fraction * len(checks) * len(study.questions)


def tally(study: Study, answers: list[Answer], resamples: int = 1000, seed: int = 0) -> StudyTally:
    """Shares and intervals of `answers` (module docstring); `resamples` 0: no intervals."""
    if resamples < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {resamples}")
    by_participant = _by_participant(answers)
    complete = [p for p, answered in by_participant.items() if len(answered) == len(study.items)]
    kept = [p for p in complete if passes_checks(study, by_participant[p])]
    checks = study.attention_checks
    counts = {"participants": len(by_participant), "complete": len(complete),
              "partial": len(by_participant) - len(complete), "excluded_attention": len(complete) - len(kept),
              "tallied": len(kept), "attention_checks": checks,
              "attention_failure_rate": (len(complete) - len(kept)) / len(complete) if checks and complete else None}
    ordinary = [item for item in study.items if not item.attention_check]
    counts["answers"] = len(kept) * len(ordinary)
    result = StudyTally(counts)
    if not kept:
        return result
    # picks[p, m, q]: how often participant p picked method m for question q
    method_index = {m: i for i, m in enumerate(study.methods)}
    picks = np.zeros((len(kept), len(study.methods), len(study.questions)))
    for p, participant in enumerate(kept):
        for item in ordinary:
            for q, question in enumerate(study.questions):
                picks[p, method_index[item.option(by_participant[participant][item.id][question.key]).method], q] += 1
    per_answer = 100.0 / len(ordinary)
    share = picks.sum(axis=0) / len(kept) * per_answer  # (M, Q)
    result.shares = {m: {q.metric: float(share[i, j]) for j, q in enumerate(study.questions)}
                     for m, i in method_index.items()}
    if resamples:
        start = time.perf_counter()
        indices = resample_indices(len(kept), resamples, seed)
        resampled = picks[indices].sum(axis=1) / len(kept) * per_answer  # (R, M, Q)
        for m, i in method_index.items():
            result.intervals[m] = {}
            for j, q in enumerate(study.questions):
                interval = percentile_interval(resampled[:, i, j], LEVEL)
                if interval is not None:
                    result.intervals[m][q.metric] = list(interval)
        result.bootstrap = {"resamples": resamples, "seed": seed, "level": LEVEL,
                            "method": "percentile, participants resampled with replacement",
                            "seconds": round(time.perf_counter() - start, 3)}
    return result


def tally_folder(folder: str | os.PathLike, resamples: int = 1000, seed: int = 0) -> tuple[Study, StudyTally]:
    """Load a study folder and tally its answer database."""
    study = load_study(folder)
    store = AnswerStore.open(Path(folder) / DATABASE_FILE, study.study_id, create=False)
    return study, tally(study, store.answers(), resamples, seed)


def records(study: Study, result: StudyTally, folder: str | os.PathLike) -> dict[str, "ResultRecord"]:  # noqa: F821
    """method -> its result record."""
    from evaluators.metrics import METRICS
    from evaluators.record import DatasetInfo, ResultRecord
    from misato.environment import git_state, package_versions, utc_now

    if not result.shares:
        raise ValueError(f"{folder}: no complete answers that pass the attention checks to tally "
                         f"({result.counts['participants']} participant(s), {result.counts['complete']} complete, "
                         f"{result.counts['excluded_attention']} excluded)")
    dataset = dict(study.source["dataset"])
    info = DatasetInfo(**{**{k: v for k, v in dataset.items() if k != "content_sha256"},
                          "content_hash": dataset.get("content_sha256")})
    protocol = {**PROTOCOL, "selection": "top-1 share of answers, %",
                "questions": {q.metric: q.text for q in study.questions},
                "attention_pass_fraction": study.attention_pass_fraction}
    git = git_state() or {}
    out = {}
    for method in study.methods:
        out[method] = ResultRecord(
            method=method, dataset=info, protocol=protocol, paste_back=True,
            overall={"n": result.counts["answers"], **result.shares[method]},
            higher_is_better={q.metric: METRICS[q.metric].higher_is_better for q in study.questions},
            intervals={"overall": result.intervals[method]} if result.intervals.get(method) else {},
            bootstrap=result.bootstrap, predictions=study.source.get("folders", {}).get(method),
            seeds={"study": study.seed, "bootstrap": result.bootstrap.get("seed")},
            config={"study": {**result.counts, "study_id": study.study_id,
                              "study_folder": str(Path(folder).resolve()), "items": len(study.items)}},
            versions=package_versions(), git_commit=git.get("commit"), git_dirty=git.get("dirty"), created=utc_now(),
        )
    return out


def write_results(folder: str | os.PathLike, out_dir: str | os.PathLike, resamples: int = 1000,
                  seed: int = 0) -> tuple[StudyTally, list[Path]]:
    """Tally the study in `folder` and write one result file per method into `out_dir`."""
    from evaluators.record import result_stem
    from misato.io import atomic_write_json

    study, result = tally_folder(folder, resamples, seed)
    written = []
    for method, record in records(study, result, folder).items():
        path = Path(out_dir) / f"{result_stem(method, record.dataset.name, PROTOCOL['name'])}.json"
        atomic_write_json(path, record.to_json())
        written.append(path)
    log.info("wrote %d result file(s) to %s", len(written), out_dir)
    return result, written
