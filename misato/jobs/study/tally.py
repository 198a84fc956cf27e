"""`misato study tally`: the answers -> Table 2 (c) as ordinary result files (`evaluators.record.ResultRecord`).

Who counts: participants who answered every item ("complete"); partial answers are counted, not tallied. A
complete participant fails the attention checks when they picked the ground truth in fewer than
`attention_pass_fraction` of their attention-check questions, and is excluded (counted). The attention-check
failure rate = excluded / complete (null when the study has no checks). With `min_seconds`, a complete participant
whose median response time (first showing of an item to its answer) is under it is excluded as too fast
(counted apart; answers without a time are not held against anyone); the answers of complete participants given
faster than it are counted too (answers_under_min_seconds).

Counts: started (every participant row, dropouts before the first answer included), answered (one answer or
more), complete, partial (answered, not complete), excluded_attention, excluded_fast, tallied, answers.

Figures: per method and question, the top-1 selection ratio = 100 x (answers picking the method) / (answers) over
the ordinary items of the tallied participants (the shares of one question sum to 100). 95% intervals: percentile
bootstrap over participants (each resample draws participants with replacement, with all their answers; seeded,
`evaluators.bootstrap.Resamples`).

Position bias: the share of the tallied answers that picked the option shown at each screen position (A, B, ...),
beside the 1/k a position-blind participant gives. Bradley-Terry (Luce's choice model, the top-1 form of
Bradley-Terry): each answer is one choice of a method among the methods shown; strengths (summing to 1) by
Hunter's (2004) MM iterations, with percentile bootstrap intervals over participants. When every item shows
every method, the maximum-likelihood strengths equal the top-1 shares / 100 (a check, tested); they differ when
the choice sets differ.

Output: one `<method>__<dataset>__user-study.json` per method: `metrics.overall` holds n (the tallied answers)
and the two study metrics, `intervals.overall` their intervals, `config.study` the counts, `seeds` the study's and
the bootstrap's seeds. `misato table` renders them as the measured Table 2 (c) beside the paper's.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.bootstrap import LEVEL, Resamples, check_resamples, percentile_interval, resampled_sums
from misato.defaults import BOOTSTRAP_RESAMPLES
from misato.jobs.study.design import DATABASE_FILE, Study, load_study
from misato.jobs.study.store import Answer, AnswerStore, Participant

log = logging.getLogger(__name__)

PROTOCOL = {"name": "user-study", "version": 1}


@dataclass
class StudyTally:
    """The tally of one study. shares / intervals: method -> metric -> % / [low, high] (empty when nobody is
    tallied); counts: module docstring, plus attention_checks and attention_failure_rate; position_bias:
    metric -> share (%) of the answers per screen position; strengths / strength_intervals: metric -> method ->
    Bradley-Terry strength / [low, high]."""

    counts: dict[str, Any]
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    position_bias: dict[str, list[float]] = field(default_factory=dict)
    strengths: dict[str, dict[str, float]] = field(default_factory=dict)
    strength_intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)


MM_ITERATIONS = 500
MM_TOLERANCE = 1e-10


def luce_strengths(wins: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Maximum-likelihood strengths (sum 1) of Luce's choice model by Hunter's (2004) MM iterations.

    wins: (M,) how often each method was chosen; exposure: (S, M), row s = the number of answers whose choice set
    was set s times the set's 0/1 membership of each method. A method never chosen gets 0."""
    strengths = np.full(wins.shape, 1.0 / len(wins))
    member = exposure > 0
    for _ in range(MM_ITERATIONS):
        totals = (member * strengths).sum(axis=1)  # (S,)
        denominator = (exposure / np.where(totals > 0, totals, 1.0)[:, None]).sum(axis=0)
        new = np.where(denominator > 0, wins / np.where(denominator > 0, denominator, 1.0), 0.0)
        new = new / new.sum() if new.sum() > 0 else strengths
        if np.abs(new - strengths).max() < MM_TOLERANCE:
            return new
        strengths = new
    return strengths


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


def select(study: Study, answers: list[Answer], min_seconds: float | None = None
           ) -> tuple[list[str], list[str], list[str]]:
    """(complete, passing the attention checks, tallied) participants of `answers` (module docstring)."""
    by_participant = _by_participant(answers)
    complete = [p for p, answered in by_participant.items() if len(answered) == len(study.items)]
    attentive = [p for p in complete if passes_checks(study, by_participant[p])]
    medians = median_seconds(answers) if min_seconds is not None else {}
    kept = [p for p in attentive if medians.get(p, np.inf) >= (min_seconds or 0.0)]
    return complete, attentive, kept


def votes(study: Study, answers: list[Answer], participants: list[str]) -> dict[str, np.ndarray]:
    """question metric -> int (items, methods): how many of `participants` picked each method on each ordinary
    item (items in study order, methods in `study.methods` order)."""
    by_participant = _by_participant(answers)
    ordinary = [item for item in study.items if not item.attention_check]
    method_index = {m: i for i, m in enumerate(study.methods)}
    out = {q.metric: np.zeros((len(ordinary), len(study.methods)), np.int64) for q in study.questions}
    for participant in participants:
        for i, item in enumerate(ordinary):
            for question in study.questions:
                option = item.option(by_participant[participant][item.id][question.key])
                out[question.metric][i, method_index[option.method]] += 1
    return out


def median_seconds(answers: list[Answer]) -> dict[str, float]:
    """participant -> the median response time of their answered items (items without a time left out)."""
    times: dict[str, dict[str, float]] = {}
    for a in answers:
        if a.seconds is not None:
            times.setdefault(a.participant, {})[a.item] = a.seconds
    return {p: statistics.median(t.values()) for p, t in times.items()}


def tally(study: Study, answers: list[Answer], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
          participants: list[Participant] | None = None, min_seconds: float | None = None) -> StudyTally:
    """Shares, strengths, intervals and counts of `answers` (module docstring); `participants`: every participant
    row (for the started count; default: those with answers); `resamples` 0: no intervals."""
    resamples = check_resamples(resamples)
    if min_seconds is not None and not (np.isfinite(min_seconds) and min_seconds >= 0):
        raise ValueError(f"--min-seconds must be a number >= 0, got {min_seconds}")
    by_participant = _by_participant(answers)
    complete, attentive, kept = select(study, answers, min_seconds)
    checks = study.attention_checks
    started = len({p.id for p in participants} | set(by_participant)) if participants is not None \
        else len(by_participant)
    counts = {"started": started, "participants": len(by_participant), "answered": len(by_participant),
              "complete": len(complete), "partial": len(by_participant) - len(complete),
              "excluded_attention": len(complete) - len(attentive), "excluded_fast": len(attentive) - len(kept),
              "min_seconds": min_seconds, "tallied": len(kept), "attention_checks": checks,
              "attention_failure_rate": (len(complete) - len(attentive)) / len(complete) if checks and complete
              else None}
    ordinary = [item for item in study.items if not item.attention_check]
    counts["answers"] = len(kept) * len(ordinary)
    if min_seconds is not None:  # per-answer flags: answers given faster than min_seconds, among the complete
        whole = set(complete)
        timed = {(a.participant, a.item): a.seconds for a in answers if a.participant in whole}
        counts["answers_under_min_seconds"] = sum(t is not None and t < min_seconds for t in timed.values())
    result = StudyTally(counts)
    if not kept:
        return result
    methods, questions = study.methods, study.questions
    method_index = {m: i for i, m in enumerate(methods)}
    # per participant p and question q: picks[p, m, q] (choices of method m), sets[p, q, s] (answers whose choice
    # set was set s), positions[p, q, j] (choices of the option at screen position j)
    set_index: dict[tuple[int, ...], int] = {}
    rows: list[tuple[int, int, int, int, int]] = []  # (p, q, method, set, position)
    width = max(len(item.options) for item in ordinary)
    shown_by = {(a.participant, a.item): a.shown for a in answers}
    for p, participant in enumerate(kept):
        for item in ordinary:
            members = tuple(sorted(method_index[o.method] for o in item.options))
            s_index = set_index.setdefault(members, len(set_index))
            for q, question in enumerate(questions):
                option = by_participant[participant][item.id][question.key]
                order = shown_by.get((participant, item.id), ())
                rows.append((p, q, method_index[item.option(option).method], s_index,
                             order.index(option) if option in order else -1))
    data = np.array(rows)
    picks = np.zeros((len(kept), len(methods), len(questions)))
    np.add.at(picks, (data[:, 0], data[:, 2], data[:, 1]), 1)
    sets = np.zeros((len(kept), len(questions), len(set_index)))
    np.add.at(sets, (data[:, 0], data[:, 1], data[:, 3]), 1)
    membership = np.zeros((len(set_index), len(methods)))
    for members, s_index in set_index.items():
        membership[s_index, list(members)] = 1.0
    placed = data[data[:, 4] >= 0]
    positions = np.zeros((len(questions), width))
    np.add.at(positions, (placed[:, 1], placed[:, 4]), 1)

    def strengths(total_picks: np.ndarray, total_sets: np.ndarray) -> np.ndarray:  # (M, Q), (Q, S) -> (M, Q)
        return np.stack([luce_strengths(total_picks[:, q], total_sets[q][:, None] * membership)
                         for q in range(len(questions))], axis=1)

    per_answer = 100.0 / len(ordinary)
    share = picks.sum(axis=0) / len(kept) * per_answer  # (M, Q)
    strength = strengths(picks.sum(axis=0), sets.sum(axis=0))
    result.shares = {m: {q.metric: float(share[i, j]) for j, q in enumerate(questions)} for m, i in method_index.items()}
    result.strengths = {q.metric: {m: float(strength[i, j]) for m, i in method_index.items()}
                        for j, q in enumerate(questions)}
    result.position_bias = {q.metric: [float(100.0 * v / positions[j].sum()) if positions[j].sum() else 0.0
                                       for v in positions[j]] for j, q in enumerate(questions)}
    if resamples:
        start = time.perf_counter()
        indices = Resamples(len(kept), resamples, seed)
        resampled = resampled_sums(picks, indices) / len(kept) * per_answer  # (R, M, Q)
        resampled_strength = np.stack([strengths(picks[row].sum(axis=0), sets[row].sum(axis=0)) for row in indices])
        for m, i in method_index.items():
            result.intervals[m] = {}
            for j, q in enumerate(questions):
                interval = percentile_interval(resampled[:, i, j], LEVEL)
                if interval is not None:
                    result.intervals[m][q.metric] = list(interval)
                interval = percentile_interval(resampled_strength[:, i, j], LEVEL)
                if interval is not None:
                    result.strength_intervals.setdefault(q.metric, {})[m] = list(interval)
        result.bootstrap = {"resamples": resamples, "seed": seed, "level": LEVEL,
                            "method": "percentile, participants resampled with replacement",
                            "seconds": round(time.perf_counter() - start, 3)}
    return result


SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string starting with = + - @ (or a tab / carriage return, which
    spreadsheets strip before reading a formula) gets a leading apostrophe; other values are unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(SPREADSHEET_TRIGGERS) else value


EXPORT_COLUMNS = ("participant", "external_id", "item", "stem", "attention_check", "question", "option", "method",
                  "ground_truth", "position", "shown", "item_position", "seconds", "created")


def export_csv(study: Study, answers: list[Answer], externals: dict[str, str | None]) -> str:
    """Every stored answer as CSV (`EXPORT_COLUMNS`; position: the option's 1-based screen position, shown: the
    screen order of the option ids, item_position: 1-based place of the item in the participant's order), every
    cell spreadsheet-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for a in answers:
        item = study.item(a.item)
        option = item.option(a.option) if item else None
        row = [a.participant, externals.get(a.participant) or "", a.item, item.stem if item else "",
               int(bool(item and item.attention_check)), a.question, a.option, (option.method or "") if option else "",
               int(bool(option and option.method is None)), a.shown.index(a.option) + 1 if a.option in a.shown else "",
               " ".join(a.shown), "" if a.position is None else a.position + 1,
               "" if a.seconds is None else a.seconds, a.created]
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return buffer.getvalue()


def answer_store(folder: str | os.PathLike, study: Study) -> AnswerStore:
    """The existing answer database of the study in `folder` (for `tally` and `agreement`: never created)."""
    return AnswerStore.open(Path(folder) / DATABASE_FILE, study.study_id, create=False)


def tally_folder(folder: str | os.PathLike, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 min_seconds: float | None = None) -> tuple[Study, StudyTally]:
    """Load a study folder and tally its answer database."""
    study = load_study(folder)
    store = answer_store(folder, study)
    return study, tally(study, store.answers(), resamples, seed, store.participants(), min_seconds)


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
                              "study_folder": str(Path(folder).resolve()), "items": len(study.items),
                              "position_bias_pct": result.position_bias,
                              "bradley_terry": {metric: {"strength": by_method[method],
                                                         "interval": result.strength_intervals.get(metric, {})
                                                         .get(method)}
                                                for metric, by_method in result.strengths.items()}}},
            versions=package_versions(), git_commit=git.get("commit"), git_dirty=git.get("dirty"), created=utc_now(),
        )
    return out


def write_results(folder: str | os.PathLike, out_dir: str | os.PathLike, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0, min_seconds: float | None = None) -> tuple[StudyTally, list[Path]]:
    """Tally the study in `folder` and write one result file per method into `out_dir`."""
    from evaluators.record import result_stem
    from misato.io import atomic_write_json

    study, result = tally_folder(folder, resamples, seed, min_seconds)
    written = []
    for method, record in records(study, result, folder).items():
        path = Path(out_dir) / f"{result_stem(method, record.dataset.name, PROTOCOL['name'])}.json"
        atomic_write_json(path, record.to_json())
        written.append(path)
    log.info("wrote %d result file(s) to %s", len(written), out_dir)
    return result, written
