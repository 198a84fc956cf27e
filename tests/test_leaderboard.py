"""Leaderboard: layout from the fixture results that tests/result_fixtures.py writes through the result record.

Expected values are derived in the tests from the fixture JSONs and the paper CSV (read here with the csv
module), never typed in.
"""

from __future__ import annotations

import atexit
import base64
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leaderboard import ResultFileError, build_table1, collect, results_frame, write_reports
from evaluators.metrics import TABLE1, spec
from leaderboard.render import escape_latex, read_table_csv, render_latex, render_markdown, table_csv
from leaderboard.tables import build_domain_tables, build_tables, paper_table2
from result_fixtures import EVIL, THUMBNAIL_STEMS, write_fixtures

FIXTURES = write_fixtures(Path(tempfile.mkdtemp(prefix="misato-result-fixtures-")))
atexit.register(shutil.rmtree, FIXTURES, True)
REFERENCE = Path(__file__).resolve().parents[1] / "leaderboard" / "data" / "paper_table1.csv"
CHROMIUM = Path("/usr/bin/chromium")
PAPER_NAME = {"lama": "LaMa", "asuka-sd": "ASUKA"}  # the fixtures' methods that the paper reports


def fixture_json() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]


def paper_rows() -> dict[tuple[str, str], dict[str, float]]:
    with open(REFERENCE, newline="") as handle:
        return {(r["method"], r["dataset"]): {m: float(r[m]) for m in TABLE1} for r in csv.DictReader(handle)}


def expected_best(kind: str, metric: str) -> set[str]:
    """Methods holding the best value of (kind, metric) in the fixtures, by the files' direction."""
    values = {d["method"]: d["metrics"]["overall"][metric] for d in fixture_json()
              if d["dataset"]["kind"] == kind and metric in d["metrics"]["overall"]}
    pick = max if d_higher(metric) else min
    target = pick(values.values())
    return {m for m, v in values.items() if v == target}


def d_higher(metric: str) -> bool:
    return fixture_json()[0]["higher_is_better"][metric]


def md_rows(markdown: str, title: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the Markdown table under `### title`."""
    section = markdown.split(f"### {title}", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return split[0], split[1:]


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A copy of the fixture results (JSON, per-image CSVs, thumbnails) that a test may change."""
    return Path(shutil.copytree(FIXTURES, tmp_path / "results"))


# ---------------------------------------------------------------- collecting
def test_collect_finds_every_fixture_and_skips_other_json(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "r")
    (tmp_path / "r" / "nested").mkdir()
    (tmp_path / "r" / "nested" / "manifest.json").write_text('{"method": "x", "seeds": {}}')
    results = collect([tmp_path / "r"])
    assert len(results) == len(fixture_json())
    assert {r.method for r in results} == {d["method"] for d in fixture_json()}
    tidy = results_frame(results)
    expected = sum(len(d["metrics"]["overall"]) - 1 + sum(len(v) - 1 for v in d["metrics"]["per_domain"].values())
                   for d in fixture_json())
    assert len(tidy) == expected
    lama = tidy[(tidy.method == "lama") & (tidy.kind == "MISATO") & (tidy.domain == "indoor") & (tidy.metric == "psnr")]
    assert lama["value"].tolist() == [json.loads((FIXTURES / "lama__misato-512__comod.json").read_text())[
        "metrics"]["per_domain"]["indoor"]["psnr"]]


def test_schema_version_error_names_the_file(tmp_path: Path) -> None:
    data = fixture_json()[0]
    data["schema_version"] = 99
    bad = tmp_path / "x__y__z.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match=re.escape(str(bad)) + ".*schema_version 99"):
        collect([tmp_path])


def test_missing_key_and_duplicate_method_errors(tmp_path: Path) -> None:
    data = fixture_json()[0]
    del data["protocol"]
    (tmp_path / "a__b__c.json").write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match="protocol"):
        collect([tmp_path / "a__b__c.json"])
    lama = FIXTURES / "lama__misato-512__comod.json"
    twin = tmp_path / "twin__misato-512__comod.json"
    twin.write_text(lama.read_text())
    with pytest.raises(ResultFileError, match="two results for method 'lama'"):
        build_table1(collect([lama, twin]))


def test_leaderboard_imports_no_model_or_metric_code() -> None:
    """Only the data-only metric table and result record of `evaluators`; no torch, no model, no metric code."""
    code = ("import sys, leaderboard, leaderboard.html, misato.cli.table; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'evaluators', 'baselines')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['evaluators', 'evaluators.metrics', 'evaluators.record']"


# ---------------------------------------------------------------- Table 1
def test_table1_layout_bold_and_paper_rows() -> None:
    results = collect([FIXTURES])
    table = build_table1(results)
    groups = [g for g, _ in table.groups()]
    assert groups == ["MISATO", "Places2", "my-photos"]  # custom dataset: its own group, by name
    assert all(metrics == list(TABLE1) for _, metrics in table.groups())

    markdown = render_markdown([table])
    header, rows = md_rows(markdown, table.title)
    assert header[:2] == ["Method", "Source"]
    assert header[2:6] == [f"MISATO · {spec(m).label} {'↑' if d_higher(m) else '↓'}" for m in TABLE1]
    latex = render_latex([table])
    for kind in ("MISATO", "Places2"):
        for metric in TABLE1:
            column = header.index(f"{kind} · {spec(metric).label} {'↑' if d_higher(metric) else '↓'}")
            bold = {r[0] for r in rows if r[column].startswith("**")}
            best = {m.replace("<", "&lt;") for m in expected_best(kind, metric)}
            assert bold == best, (kind, metric)
            # paper and diff rows are never bold
            assert all(not r[column].startswith("**") for r in rows if r[1] != "measured")
            for method in best:
                value = table.frame.loc[(method, "measured"), (kind, metric)]
                assert rf"\textbf{{{value:.{spec(metric).decimals}f}}}" in latex

    # Paper rows: present for matched names only, separate source, diff = fixture - paper CSV.
    reference = paper_rows()
    sources = {(m, s) for m, s in table.frame.index}
    for d in fixture_json():
        method = d["method"]
        assert (method, "measured") in sources
        assert ((method, "paper") in sources) == (method in PAPER_NAME)
    for method, name in PAPER_NAME.items():
        for d in fixture_json():
            kind = d["dataset"]["kind"]
            if d["method"] != method or kind not in ("MISATO", "Places2"):
                continue
            for metric in TABLE1:
                measured = d["metrics"]["overall"][metric]
                reported = reference[(name, kind)][metric]
                assert table.frame.loc[(method, "paper"), (kind, metric)] == reported
                assert table.frame.loc[(method, "diff"), (kind, metric)] == pytest.approx(measured - reported)
                text = f"{measured - reported:+.{spec(metric).decimals}f}"
                row = next(r for r in rows if r[0] == method and r[1] == "diff")
                assert any(cell == text or cell.startswith(text + " ± ") for cell in row)  # ±: the measured one
    assert "protocol comod v1" in table.caption and "n = 4" in table.caption and "n = 36500" in table.caption
    assert table.frame.loc[("telea", "measured"), ("MISATO", "fid")] != table.frame.loc[
        ("telea", "measured"), ("MISATO", "fid")]  # NaN: unavailable
    assert any("FID" in note and "unavailable for telea" in note and "misato weights fetch" in note for note in table.notes)


def test_no_paper_rows_when_disabled() -> None:
    table = build_table1(collect([FIXTURES]), paper=False)
    assert set(s for _, s in table.frame.index) == {"measured"}
    assert "paper" not in {t.key for t in build_tables(collect([FIXTURES]), paper=False)}


def test_different_protocols_become_separate_groups(tmp_path: Path) -> None:
    for path in FIXTURES.glob("*misato-512*.json"):
        data = json.loads(path.read_text())
        shutil.copy(path, tmp_path / path.name)
        data["protocol"] = {"name": "asuka", "version": 1}
        (tmp_path / path.name.replace("__comod", "__asuka")).write_text(json.dumps(data))
    table = build_table1(collect([tmp_path]))
    assert sorted(g for g, _ in table.groups()) == ["MISATO (asuka v1)", "MISATO (comod v1)"]
    assert "protocol asuka v1" in table.caption and "protocol comod v1" in table.caption


# ---------------------------------------------------------------- other tables
def test_per_domain_table() -> None:
    (table,) = build_domain_tables(collect([FIXTURES]))
    assert [g for g, _ in table.groups()] == ["landscape", "indoor", "building", "background"]
    misato = [d for d in fixture_json() if d["dataset"]["kind"] == "MISATO"]
    for d in misato:
        for domain, values in d["metrics"]["per_domain"].items():
            for metric, value in values.items():
                if metric != "n":
                    assert table.frame.loc[(d["method"], "measured"), (domain, metric)] == value
    for domain in ("landscape", "background"):
        for metric in ("lpips", "psnr"):
            values = {d["method"]: d["metrics"]["per_domain"][domain][metric] for d in misato}
            best = (max if d_higher(metric) else min)(values.values())
            marked = {m for (m, _), flag in table.best[(domain, metric)].items() if flag}
            assert marked == {m for m, v in values.items() if v == best}
    assert "landscape n = 1" in table.caption


def test_paper_table2_best_within_each_subtable() -> None:
    table = paper_table2()
    reference = pd.read_csv(REFERENCE.with_name("paper_table2.csv"))
    assert len(table.frame) == len(reference)
    for sub, rows in reference.groupby("table"):
        best = rows["fid"].min()
        marked = table.best[("MISATO", "fid")].to_numpy()[rows.index.to_numpy()]
        assert (marked == (rows["fid"] == best).to_numpy()).all(), sub
    assert "(a) MAE" in render_markdown([table])


def test_csv_round_trip(tmp_path: Path) -> None:
    for table in build_tables(collect([FIXTURES])):
        path = tmp_path / f"{table.key}.csv"
        path.write_text(table_csv(table))
        back = read_table_csv(path)
        pd.testing.assert_frame_equal(back.frame, table.frame, check_names=True)
        pd.testing.assert_frame_equal(back.best, table.best)
        assert back.row_kind == table.row_kind
    assert EVIL in pd.read_csv(tmp_path / "table1.csv", dtype=str)["method"].tolist()


# ---------------------------------------------------------------- escaping
def test_markup_from_files_is_escaped_in_md_and_latex() -> None:
    tables = build_tables(collect([FIXTURES]))
    markdown = render_markdown(tables)
    assert "<script" not in markdown and "<img" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;" in markdown
    latex = render_latex(tables)
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in latex
    assert escape_latex("50% a_b & {c} #1 $x$ ~^\\") == (
        r"50\% a\_b \& \{c\} \#1 \$x\$ \textasciitilde{}\textasciicircum{}\textbackslash{}")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (texlive-latex-recommended)")
def test_latex_compiles_with_booktabs(tmp_path: Path) -> None:
    (tmp_path / "tables.tex").write_text(render_latex(build_tables(collect([FIXTURES]))))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[landscape,margin=1cm]{geometry}\n"
        "\\begin{document}\n\\input{tables.tex}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


class _Dom(HTMLParser):
    """Collects element names, attributes and text of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html_text: str) -> _Dom:
    dom = _Dom()
    dom.feed(html_text)
    return dom


def check_report_dom(dom: _Dom) -> None:
    tags = [t for t, _ in dom.tags]
    assert "script" not in tags
    assert not any(k.startswith("on") for _, attrs in dom.tags for k in attrs)
    images = [a for t, a in dom.tags if t == "img"]
    # a row per thumbnail sample x (masked input + 4 methods + ground truth), all embedded
    assert len(images) == len(THUMBNAIL_STEMS) * 6
    assert all((a.get("src") or "").startswith("data:image/jpeg;base64,") for a in images)
    assert tags.count("table") >= 4
    text = "".join(dom.text)
    assert EVIL in text  # shown literally, as text
    assert "LPIPS 0.188" in text  # per-image score of the evil method at 0000, from its per-image CSV


def test_html_report_is_self_contained_and_escaped(workspace: Path, tmp_path: Path) -> None:
    written = write_reports([workspace], tmp_path / "out", formats=["html"])
    html_text = written["html"].read_text()
    assert "http://" not in html_text and "https://" not in html_text and "<link" not in html_text
    dom = parse(html_text)
    check_report_dom(dom)
    first = next(a["src"] for t, a in dom.tags if t == "img")
    thumb = Image.open(io.BytesIO(base64.b64decode(first.split(",", 1)[1])))
    assert thumb.size == (64, 64) and thumb.mode == "RGB"


def test_grid_samples_option_and_missing_pieces(workspace: Path, tmp_path: Path) -> None:
    shutil.rmtree(workspace / "telea__misato-512__comod.thumbs")
    written = write_reports([workspace], tmp_path / "out", formats=["html"], samples=["1600", "9999"])
    dom = parse(written["html"].read_text())
    text = "".join(dom.text)
    assert "1600" in text and "no thumbnails of 9999 in the misato-512 results" in text
    assert "thumbnail unreadable" in text and "for 1600" in text  # telea's column, its files deleted
    assert len([t for t, _ in dom.tags if t == "img"]) == 5  # one row: input, 3 of 4 methods, ground truth


def test_grid_shows_the_scored_thumbnails_the_scorer_wrote(workspace: Path, tmp_path: Path) -> None:
    """The grid embeds the result folder's thumbnails as they are (the report never opens a dataset)."""
    lama = workspace / "lama__misato-512__comod.json"
    written = write_reports([lama], tmp_path / "out", formats=["html"], samples=["0000"])
    images = [a["src"] for t, a in parse(written["html"].read_text()).tags if t == "img"]
    folder = workspace / "lama__misato-512__comod.thumbs"
    files = [folder / f"0000.{role}.jpg" for role in ("input", "scored", "truth")]
    assert [base64.b64decode(s.split(",", 1)[1]) for s in images] == [f.read_bytes() for f in files]


def test_results_folder_can_move(workspace: Path, tmp_path: Path) -> None:
    """Per-image CSV and thumbnails are resolved beside the JSON, wherever the folder is."""
    from leaderboard import load_result

    moved = Path(shutil.move(workspace, tmp_path / "elsewhere"))
    result = load_result(moved / "lama__misato-512__comod.json")
    assert result.per_image_csv == moved / "lama__misato-512__comod.per_image.csv"
    assert result.thumbnails["0500"]["scored"] == moved / "lama__misato-512__comod.thumbs" / "0500.scored.jpg"
    assert result.thumbnails["0500"]["scored"].is_file() and result.record.dataset.resolution == 512


def test_fixtures_round_trip_through_the_record() -> None:
    """from_json(to_json(record)) == record, and every fixture file is what the record writes."""
    from evaluators.record import ResultRecord

    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text())
        record = ResultRecord.from_json(data, str(path))
        assert record.to_json() == data
        assert ResultRecord.from_json(record.to_json(), "again") == record


def test_record_refuses_non_finite_values() -> None:
    from evaluators.record import DatasetInfo, ResultRecord

    record = ResultRecord("m", DatasetInfo("d", "custom"), {"name": "comod", "version": 1},
                          overall={"n": 2, "psnr": float("inf")})
    with pytest.raises(ValueError, match="overall.psnr is inf"):
        record.to_json()


def test_cli_writes_all_formats(workspace: Path, tmp_path: Path, capsys) -> None:
    from misato.cli import main

    out = tmp_path / "out"
    assert main(["table", str(workspace), "--out", str(out), "--format", "md,tex,csv", "--no-paper"]) == 0
    printed = capsys.readouterr().out
    for name in ("leaderboard.md", "leaderboard.tex", "table1.csv", "per_domain.csv"):
        assert (out / name).is_file() and str(out / name) in printed
    assert not (out / "report.html").exists() and not (out / "paper_table1.csv").exists()
    assert main(["table", str(workspace), "--out", str(out), "--format", "pdf"]) == 1


# ---------------------------------------------------------------- real browser
def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="Debian chromium not installed (apt-get install chromium); required on CI")
def test_html_report_in_headless_chromium(workspace: Path, tmp_path: Path) -> None:
    report = write_reports([workspace], tmp_path / "out", formats=["html"])["html"]
    done = _chromium(["--dump-dom", report.as_uri()], tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    check_report_dom(parse(done.stdout))  # the DOM the browser built: tables, images, no injected elements
    shot = tmp_path / "shot.png"
    done = _chromium(["--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()],
                     tmp_path / "profile")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10  # rendered content, not a blank page


def test_intervals_are_shown_as_value_plus_minus_half_width(tmp_path: Path) -> None:
    """lama's fixture has 95% intervals: every format shows "value ± half-width" at the metric's decimals,
    the CSV keeps the half-width, results without intervals show the bare value."""
    from result_fixtures import INTERVALS

    tables = build_tables(collect([FIXTURES]))
    markdown = render_markdown(tables)
    lpips = INTERVALS["lama"]["overall"]["lpips"]
    half = (lpips[1] - lpips[0]) / 2
    assert f"0.161 ± {half:.3f}" in markdown and "15.902 ± 2.000" in markdown
    assert "0.171 ± 0.011" in markdown  # indoor, in the per-domain table
    assert "0.148 ±" not in markdown  # asuka-sd has no intervals
    assert "0.161 ± 0.010" in render_latex(tables) and "0.161 ± 0.010" in "".join(
        parse(write_reports([FIXTURES], tmp_path / "h", formats=["html"])["html"].read_text()).text)
    table1 = next(t for t in tables if t.key == "table1")
    (tmp_path / "t1.csv").write_text(table_csv(table1))
    back = read_table_csv(tmp_path / "t1.csv")
    assert np.allclose(back.half_width.to_numpy(dtype=float), table1.half_width.to_numpy(dtype=float), equal_nan=True)


def test_paired_comparison_with_the_best_method(tmp_path: Path) -> None:
    """From the per-image CSVs: P(method beats the column's best) under the paired bootstrap, equal to
    evaluators.bootstrap.win_probability on the same aligned values."""
    from evaluators.bootstrap import win_probability
    from leaderboard.results import per_image_scores
    from leaderboard.tables import build_paired_table

    results = collect([FIXTURES])
    table = build_paired_table(results)
    misato = {r.method: r for r in results if r.dataset_kind == "MISATO"}
    best = min(misato, key=lambda m: misato[m].overall["lpips"])  # lower LPIPS is better
    assert best == "asuka-sd" and ("asuka-sd", "measured") not in table.frame.index or math.isnan(
        table.frame.loc[("asuka-sd", "measured"), ("MISATO", "lpips")])
    a, b = per_image_scores(misato["lama"])[0], per_image_scores(misato[best])[0]
    expected = win_probability(a["lpips"].to_numpy(float), b.loc[a.index, "lpips"].to_numpy(float), False, 1000, 0)
    assert table.frame.loc[("lama", "measured"), ("MISATO", "lpips")] == expected
    assert f"| {expected:.2f} |" in render_markdown([table]).replace("**", "")


def test_html_plots_metrics_by_hole_ratio(tmp_path: Path) -> None:
    """An inline SVG per per-image metric, one line (legend entry) per method, names escaped."""
    html_text = write_reports([FIXTURES], tmp_path / "out", formats=["html"])["html"].read_text()
    assert "MISATO: metrics by hole ratio" in html_text and html_text.count("<svg") >= 4
    section = html_text.split("metrics by hole ratio", 1)[1].split("</section>", 1)[0]
    assert "LPIPS vs hole ratio" in section and "30-40%" in section
    assert EVIL not in section and "&lt;script&gt;" in section  # the evil method's legend, escaped
    check_report_dom(parse(html_text))


# ---------------------------------------------------------------- failed runs
def test_failed_runs_are_failed_rows_and_supersede_older_results(tmp_path: Path) -> None:
    """A failed (method, dataset) pair is a row of "failed" cells in its column group, in every table and format,
    never a blank or a missing row; an older result of the same pair is not shown (named in the notes) and leaves
    the paired comparison and the grid; a pair in a group of its own (nothing scored there) gets its group."""
    from leaderboard.tables import FailedRun, build_metrics_table

    results = collect([FIXTURES])
    lama = next(r for r in results if r.method == "lama" and r.dataset_kind == "MISATO")
    failures = (FailedRun("lama", lama.dataset_name, "MISATO", lama.protocol_label, lama.paste_back, "score",
                          "CUDA out of memory"),
                FailedRun("new-method", "other-photos", "custom", lama.protocol_label, True, "inpaint", "boom"))
    table = build_table1(results, failures=failures)
    assert [g for g, _ in table.groups()] == ["MISATO", "Places2", "my-photos", "other-photos"]
    failed = table.failed_cells()
    rows = list(table.frame.index)
    misato = [j for j, (group, _) in enumerate(table.frame.columns) if group == "MISATO"]
    assert failed[rows.index(("lama", "measured")), misato].all()
    assert not failed[rows.index(("lama", "measured"))].all()  # Places2: lama's result stands
    assert not failed[rows.index(("lama", "paper"))].any()  # the paper's figures are not failures
    assert failed[rows.index(("new-method", "measured"))].sum() == len(TABLE1)
    assert any(str(lama.path) in note and "not shown" in note for note in table.notes)
    assert any(note.startswith("lama [MISATO]: failed while score: CUDA out of memory") for note in table.notes)
    header, md = md_rows(render_markdown([table]), table.title)
    lama_row = next(r for r in md if r[:2] == ["lama", "measured"])
    assert lama_row[2:2 + len(TABLE1)] == ["failed"] * len(TABLE1)
    (tmp_path / "table1.csv").write_text(table_csv(table))
    csv_back = read_table_csv(tmp_path / "table1.csv")
    assert (csv_back.failed_cells() == failed).all()
    metrics = build_metrics_table(results, failures)
    assert metrics.failed_cells()[list(metrics.frame.index).index(("new-method", "measured"))].any()

    written = write_reports([FIXTURES], tmp_path / "board", failures=failures)
    html = written["html"].read_text()
    assert 'class="failed">failed</td>' in html
    from leaderboard.tables import build_paired_table

    def lama_compared(paired) -> bool:
        columns = [j for j, (group, _) in enumerate(paired.frame.columns) if group == "MISATO"]
        row = ("lama", "measured")
        return row in paired.frame.index and np.isfinite(paired.frame.loc[row].to_numpy()[columns]).any()

    assert lama_compared(build_paired_table(results))  # without the failure, lama is compared on MISATO
    assert not lama_compared(read_table_csv(tmp_path / "board" / "paired.csv"))
    domains = read_table_csv(tmp_path / "board" / "per_domain.csv")
    assert domains.failed_cells()[list(domains.frame.index).index(("lama", "measured"))].all()
