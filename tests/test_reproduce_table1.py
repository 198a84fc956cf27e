"""`misato reproduce table1`: the smoke preset end to end (the paper preset's code path on CPU), resume, subsets,
and every bad input refused before any work."""

from __future__ import annotations

import json

import pytest

from leaderboard.render import escape_markdown
from misato.cli import main
from misato.jobs.reproduce.table1 import load_preset


@pytest.mark.smoke
def test_smoke_preset_end_to_end_and_resume(tmp_path, random_weights, capsys):
    out = tmp_path / "t1"
    args = ["reproduce", "table1", "--preset", "smoke", "--out", str(out), "--no-progress",
            "--weight", f"alexnet-torchvision={random_weights['alexnet-torchvision']}"]
    assert main(args) == 0
    summary = json.loads((out / "reproduce.json").read_text())
    preset = load_preset("smoke")
    assert len(summary["outcomes"]) == len(preset["methods"]) * 2 and all(o["status"] == "ok" for o in summary["outcomes"])
    table = (out / "table1.md").read_text()
    assert "MISATO · LPIPS" in table and "Places2 · LPIPS" in table and " ± " in table  # value ± half-width
    for label, method in preset["methods"].items():
        assert escape_markdown(f"{label} ({method['spec']}): {method['chosen']}") in table  # chosen settings shown
    results = sorted((out / "results").glob("*.json"))
    assert len(results) == 8
    stamps = [p.stat().st_mtime_ns for p in results]
    assert main([*args, "--methods", "telea,sd-tiny"]) == 0  # a subset, resumed: nothing redone
    assert [p.stat().st_mtime_ns for p in results] == stamps
    assert "4 of 4 runs scored" in capsys.readouterr().out  # 2 methods x 2 datasets


@pytest.mark.parametrize("extra,message", [
    (["--preset", "paper"], "MISATO needs --misato DIR"),
    (["--preset", "smoke", "--methods", "lama"], "--methods lama: not in preset smoke"),
    (["--preset", "smoke", "--set", "nope.radius=2"], "--set 'nope.radius=2': expected LABEL.KEY=VALUE"),
    (["--preset", "smoke", "--device", "tpu"], "--device 'tpu'"),
])
def test_bad_inputs_fail_before_any_work(extra, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["reproduce", "table1", "--out", str(out), *extra]) == 1
    assert message in capsys.readouterr().err and not out.exists()


def test_paper_preset_names_the_unreleased_files(tmp_path, capsys):
    """The paper preset needs the trained prompt and ASUKA run: without them the error names the --set flag."""
    misato = tmp_path / "MISATO"
    misato.mkdir()
    args = ["reproduce", "table1", "--preset", "paper", "--misato", str(misato), "--places2", str(misato),
            "--out", str(tmp_path / "o")]
    assert main(args) == 1
    assert "--set SD-prompt.prompt_file=PATH" in capsys.readouterr().err
    paper = load_preset("paper")
    assert len(paper["methods"]) == 9 and set(paper["datasets"]) == {"MISATO", "Places2"}


def test_status_states(tmp_path, capsys):
    """scored / inpainted / partial / missing, read from manifests, samples on disk, results and an older
    reproduce.json (preset datasets x methods, no recorded plan)."""
    from datetime import datetime, timedelta, timezone

    from misato.jobs.status import folder_status
    from result_fixtures import ROWS, record

    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    out = tmp_path / "run"
    (out / "results").mkdir(parents=True)
    row = next(r for r in ROWS if r["method"] == "lama" and r["kind"] == "MISATO")
    (out / "results" / "lama__misato-512__comod.json").write_text(json.dumps(record(row, 0, out / "results").to_json()))
    manifests = {"lama": ("complete", 4, now), "telea": ("complete", 4, now), "sd": ("running", 2, now - timedelta(
        seconds=30)), "mat": ("incomplete", 1, now - timedelta(hours=2))}
    for method, (status, finished, updated) in manifests.items():
        folder = out / "predictions" / "misato-512" / method
        for sub in ("raw", "records", "composite"):
            (folder / sub).mkdir(parents=True)
        for i in range(finished):
            for sub, suffix in (("raw", ".png"), ("records", ".json"), ("composite", ".png")):
                (folder / sub / f"{i:04d}{suffix}").write_text("{}")
        (folder / "manifest.json").write_text(json.dumps({
            "status": status, "num_finished": 0, "updated": updated.isoformat(timespec="seconds"),
            "dataset": {"name": "misato-512", "num_selected": 4}}))
    (out / "reproduce.json").write_text(json.dumps({"preset": {"name": "512", "datasets": {"MISATO": {}},
                                                               "methods": {"lama": {}, "comod": {}}}}))
    states = {(s.dataset, s.method): (s.state, s.finished, s.total) for s in folder_status(out)}
    assert states == {("misato-512", "lama"): ("scored", 4, 4), ("misato-512", "telea"): ("inpainted", 4, 4),
                      ("misato-512", "sd"): ("partial", 2, 4), ("misato-512", "mat"): ("partial", 1, 4),
                      ("misato-512", "comod"): ("missing", 0, None)}
    assert main(["status", str(out)]) == 0
    assert "1 scored" in capsys.readouterr().out
    assert main(["status", str(tmp_path / "nope")]) == 1
