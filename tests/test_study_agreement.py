"""`misato study agreement`: metrics judged against the participants (issue 23).

Synthetic: "people" who follow one metric give it pairwise agreement near 1 and tau-b near 1; a metric unrelated
to their votes gets agreement near 0.5 and tau-b near 0 (both intervals hold the chance value). End to end: a
served-study database whose participants pick the method with the best PSNR on each item, and result files whose
per-image CSVs hold that PSNR and an unrelated LPIPS: the CLI writes the table and the chart.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluators.record import DatasetInfo, ResultRecord
from misato.cli import main
from misato.jobs.study.agreement import agreement, per_item
from misato.jobs.study.create import CreateConfig, create_study
from misato.jobs.study.design import DATABASE_FILE, load_study, option_order
from misato.jobs.study.store import AnswerStore
from test_study_blinding import FILLS, make_fake_runs


def _people(scores: np.ndarray, voters: int, follow: float, rng) -> np.ndarray:
    """Votes (items, methods): each voter picks the best-scoring method with probability `follow`, else any."""
    votes = np.zeros(scores.shape, np.int64)
    for i, row in enumerate(scores):
        for _ in range(voters):
            pick = int(np.argmax(row)) if rng.random() < follow else int(rng.integers(len(row)))
            votes[i, pick] += 1
    return votes


def test_people_following_one_metric_agree_with_it_and_not_with_an_unrelated_one():
    rng = np.random.default_rng(0)
    followed = rng.normal(size=(300, 4))
    unrelated = rng.normal(size=(300, 4))
    votes = _people(followed, voters=9, follow=0.95, rng=rng)
    good = agreement(votes, followed, higher_is_better=True, resamples=300, seed=1)
    assert good["pairwise"] > 0.9 and good["pairwise_interval"][0] > 0.85 and good["tau_b"] > 0.6
    flipped = agreement(votes, -followed, higher_is_better=False, resamples=300, seed=1)  # lower is better
    assert flipped == good
    chance = agreement(votes, unrelated, higher_is_better=True, resamples=300, seed=1)
    low, high = chance["pairwise_interval"]
    assert abs(chance["pairwise"] - 0.5) < 0.06 and low < 0.5 < high
    low, high = chance["tau_b_interval"]
    assert abs(chance["tau_b"]) < 0.08 and low < 0 < high


def test_ties_and_missing_values_are_left_out():
    votes = np.array([[3, 0, 0], [2, 2, 2]])
    scores = np.array([[1.0, np.nan, 0.5], [1.0, 2.0, 3.0]])
    agree, ordered, taus = per_item(votes, scores, True)
    assert ordered.tolist() == [1, 0] and agree.tolist() == [1, 0]  # (a, c) only; item 2: votes all tied
    assert np.isnan(taus).all()  # a missing value / all votes tied: no tau-b
    with pytest.raises(ValueError, match="differ in shape"):
        per_item(votes, scores[:, :2], True)


@pytest.fixture(scope="module")
def answered_study(tmp_path_factory) -> tuple[Path, Path]:
    """A study of 12 images whose 5 participants pick the method with the highest PSNR of each item; the
    result folder holds each method's record and per-image CSV (PSNR: that order; LPIPS: unrelated)."""
    root = tmp_path_factory.mktemp("agreement")
    create_study(CreateConfig(make_fake_runs(root, 14), FILLS, 12, root / "study", attention_checks=2))
    study = load_study(root / "study")
    rng = np.random.default_rng(3)
    stems = sorted({item.stem for item in study.items})
    psnr = {m: {s: float(rng.normal(25, 3)) for s in stems} for m in FILLS}
    lpips = {m: {s: float(rng.uniform(0.1, 0.5)) for s in stems} for m in FILLS}
    store = AnswerStore.open(root / "study" / DATABASE_FILE, study.study_id)
    for _ in range(5):
        participant = store.new_participant()
        for item in study.items:
            best = item.truth if item.attention_check else max(
                (o for o in item.options), key=lambda o: psnr[o.method][item.stem])
            store.add_answer(participant, item.id, {q.key: best.id for q in study.questions},
                             [o.id for o in option_order(study, participant, item)])
    results = root / "results"
    results.mkdir()
    dataset = study.source["dataset"]
    for method in FILLS:
        name = f"{method}__data__asuka"
        with (results / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["stem", "domain", "hole_ratio", "psnr", "lpips"])
            for stem in stems:
                writer.writerow([stem, "", 0.2, psnr[method][stem], lpips[method][stem]])
        record = ResultRecord(method=method, dataset=DatasetInfo(name=dataset["name"], kind=dataset["kind"],
                                                                 content_hash=dataset["content_sha256"]),
                              protocol={"name": "asuka", "version": 1}, overall={"n": len(stems)},
                              higher_is_better={"psnr": True, "lpips": False}, per_image_csv=f"{name}.csv")
        (results / f"{name}.json").write_text(json.dumps(record.to_json()))
    return root / "study", results


def test_cli_writes_the_table_and_chart(answered_study, tmp_path, capsys):
    study, results = answered_study
    assert main(["study", "agreement", str(study), str(results), "--out", str(tmp_path / "report"),
                 "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    assert "psnr" in printed and "lpips" in printed
    data = json.loads((tmp_path / "report" / "agreement.json").read_text())
    by = {(a["question"], a["metric"]): a for a in data["agreement"]}
    for question in ("context_stability_pct", "visual_consistency_pct"):
        assert by[(question, "psnr")]["pairwise"] == 1.0 and by[(question, "psnr")]["tau_b"] > 0.5
        assert by[(question, "lpips")]["pairwise"] < 1.0
    assert "| psnr |" in (tmp_path / "report" / "agreement.md").read_text()
    page = (tmp_path / "report" / "agreement.html").read_text()
    assert "<svg" in page and "chance 0.5" in page


def test_cli_refuses_results_of_another_dataset(answered_study, tmp_path, capsys):
    study, results = answered_study
    other = Path(shutil.copytree(results, tmp_path / "other"))
    path = other / "flat__data__asuka.json"
    data = json.loads(path.read_text())
    data["dataset"]["content_hash"] = "0" * 64
    path.write_text(json.dumps(data))
    assert main(["study", "agreement", str(study), str(other), "--out", str(tmp_path / "r")]) == 1
    assert "another dataset" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["study", "agreement", str(study), str(tmp_path / "none.json"), "--out", str(tmp_path / "r")]) == 1
    assert "no such result file" in capsys.readouterr().err
