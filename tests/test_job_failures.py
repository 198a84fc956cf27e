"""Issue 21, cases 3, 7 and 10: no job hides a failure, `misato status` tells what happened, one job per folder.

3. A failed method (or stage) fails the job: exit status 1, the failures listed last, the failed rows kept as
   "failed" in every table format (md, csv, tex, html); `--set` values type-checked before any work.
7. `misato status` derives each pair's state from the job's record and the files: a crashed method is "failed"
   with the samples on disk counted, the pairs a Ctrl-C left unstarted are "missing".
10. One lock per output folder: a second job refuses, naming the first; Ctrl-C releases it; a dead owner's lock is
   taken over (two real processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaderboard.render import read_table_csv
from misato.cli import main
from misato.lock import lock_path, read_owner

# fails on its third sample (batch size 1): two samples are on disk when it dies
FLAKY = '''
from baselines.base import Inpainter


class Flaky(Inpainter):
    name = "flaky"

    def __init__(self, device="cpu", **options):
        super().__init__(device, **options)
        self.calls = 0

    def inpaint(self, images, masks, seeds):
        self.calls += images.shape[0]
        if self.calls > 2:
            raise RuntimeError("flaky: crashed on its third sample")
        return images


class Interrupted(Inpainter):
    name = "interrupted"

    def inpaint(self, images, masks, seeds):
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
'''


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    """Poll `condition` every 0.1 s until it holds; fail after `timeout` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal delivers it (a parent may have set it to ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory) -> tuple[Path, int, str]:
    """`misato run` of telea and a method that crashes on its third sample: (out, exit code, printed)."""
    import contextlib
    import io

    from conftest import MISATO_STEMS, make_dataset

    root = tmp_path_factory.mktemp("failed-run")
    dataset = make_dataset(root / "data", MISATO_STEMS[:4])
    plugin = root / "plugin.py"
    plugin.write_text(FLAKY)
    out = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", "--methods", f"telea,flaky={plugin}:Flaky", "--dataset", str(dataset), "--batch-size", "1",
                     "--metrics", "psnr,ssim", "--out", str(out), "--no-progress"])
    return out, code, printed.getvalue()


# ---------------------------------------------------------------- case 3: failures fail the job, rows stay
def test_run_with_a_failed_method_exits_1_lists_it_last_and_keeps_its_row(failed_run):
    out, code, printed = failed_run
    assert code == 1  # used to be 0 without --strict
    tail = printed[printed.index("FAILED: 1 of 2 runs"):]
    assert "flaky on data, while inpaint [RuntimeError]" in tail and "crashed on its third sample" in tail
    assert "files:" not in tail  # the failures come after everything else

    board = out / "leaderboard"
    assert "| flaky | measured | failed | failed |" in (board / "leaderboard.md").read_text()
    table = read_table_csv(board / "table1.csv")
    failed = table.failed_cells()
    rows = {label: i for i, label in enumerate(table.frame.index)}
    assert failed[rows[("flaky", "measured")]].all() and not failed[rows[("telea", "measured")]].any()
    metrics = read_table_csv(board / "metrics.csv")
    psnr = metrics.frame.columns.get_loc(("MISATO", "psnr"))
    assert metrics.failed_cells()[list(metrics.frame.index).index(("flaky", "measured")), psnr]
    assert metrics.frame.loc[("telea", "measured"), ("MISATO", "psnr")] > 0  # the other method was scored
    assert r"flaky & measured & \textit{failed}" in (board / "leaderboard.tex").read_text()
    html = (board / "report.html").read_text()
    row = html[html.index('<th scope="row">flaky</th>'):].split("</tr>", 1)[0]
    assert row.count('<td class="failed">failed</td>') == 4
    summary = json.loads((out / "run.json").read_text())
    assert summary["status"] == "finished" and summary["failed"] == 1


def test_reproduce_table1_with_a_failed_method_exits_1_and_keeps_its_row(tmp_path, capsys):
    out = tmp_path / "t1"
    code = main(["reproduce", "table1", "--preset", "smoke", "--methods", "telea", "--set", "telea.radius=-1",
                 "--out", str(out), "--no-progress"])
    assert code == 1  # used to be 0, with the row missing from table1.md
    printed = capsys.readouterr().out
    assert "FAILED: 2 of 2 runs" in printed and "radius must be > 0" in printed
    table = (out / "table1.md").read_text()
    assert table.count("| telea | measured | failed | failed | failed | failed | failed | failed | failed | failed |") == 1
    assert json.loads((out / "reproduce.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("value,message", [
    ("sd-tiny.steps=10.7", "--set sd-tiny.steps=10.7: steps takes an integer, got 10.7 (float)"),
    ("sd-tiny.guidance=fast", '--set sd-tiny.guidance="fast": guidance takes a number or null'),
    ("telea.radius=true", "--set telea.radius=true: radius takes a number, got true (bool)"),
    ("telea.raduis=2", "--set 'telea.raduis=2': telea (telea) takes no option 'raduis'"),
])
def test_reproduce_set_values_are_type_checked_before_any_work(value, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["reproduce", "table1", "--preset", "smoke", "--set", value, "--out", str(out)]) == 1
    assert message in capsys.readouterr().err and not out.exists()


def test_run_option_values_are_type_checked_before_any_work(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "never"
    assert main(["run", "--methods", "telea", "--option", "radius=wide", "--dataset", str(tiny_dataset),
                 "--out", str(out)]) == 1
    assert '--option (for telea) radius="wide": radius takes a number' in capsys.readouterr().err
    assert not out.exists()


def test_inpaint_option_values_are_type_checked_when_the_inpainter_is_built(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "never"
    assert main(["inpaint", "--method", "telea", "--option", "radius=wide", "--dataset", str(tiny_dataset),
                 "--out", str(out), "--no-progress"]) == 1
    assert 'misato inpaint: error: telea: option radius="wide": radius takes a number' in capsys.readouterr().err
    assert not out.exists()


def test_run_strict_makes_missing_weights_fail_the_method(tmp_path, tiny_dataset, capsys):
    """--strict keeps its scoring meaning in `misato run`: a metric's missing weights fail that method's scoring
    (listed, row 'failed', exit 1); without it the metric is unavailable and the run succeeds."""
    args = ["run", "--methods", "telea", "--limit", "2", "--metrics", "lpips,psnr", "--dataset", str(tiny_dataset),
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "lenient")]) == 0
    assert main([*args, "--out", str(tmp_path / "strict"), "--strict"]) == 1
    tail = capsys.readouterr().out.split("FAILED: 1 of 1 runs", 1)[1]
    assert "telea on data, while score" in tail and "misato weights fetch alexnet-torchvision" in tail


def test_demo_with_a_failed_method_exits_1(tmp_path, capsys):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(FLAKY)
    out = tmp_path / "demo"
    code = main(["demo", "--methods", f"telea,flaky={plugin}:Flaky", "--embedded-size", "64", "--out", str(out),
                 "--data-dir", str(tmp_path / "embedded"), "--no-progress"])
    assert code == 1
    assert "FAILED: 1 of 2 runs" in capsys.readouterr().out
    assert "| flaky | measured | failed |" in (out / "leaderboard" / "leaderboard.md").read_text()


# ---------------------------------------------------------------- case 7: status from the job's record
def test_status_shows_a_crashed_method_as_failed_with_its_samples(failed_run, capsys):
    out, _, _ = failed_run
    assert main(["status", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    flaky = next(line for line in lines if " flaky " in line).split()
    assert flaky[:4] == ["data", "flaky", "failed", "2/4"]  # used to read "running 0/4"
    assert "crashed on its third sample" in " ".join(flaky)
    assert next(line for line in lines if " telea " in line).split()[:4] == ["data", "telea", "scored", "4/4"]


def test_status_lists_pairs_a_ctrl_c_left_unstarted_as_missing(tmp_path, tiny_dataset):
    from misato.jobs.status import folder_status

    plugin = tmp_path / "plugin.py"
    plugin.write_text(FLAKY)
    out = tmp_path / "run"
    code = main(["run", "--methods", f"stop={plugin}:Interrupted,telea,ns", "--dataset", str(tiny_dataset),
                 "--out", str(out), "--no-progress"])
    assert code == 130
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not lock_path(out).exists()  # released on Ctrl-C
    states = {s.method: (s.state, s.finished) for s in folder_status(out)}
    assert states == {"stop": ("partial", 0), "telea": ("missing", 0), "ns": ("missing", 0)}


# ---------------------------------------------------------------- case 10: one job per output folder
def test_a_second_job_on_one_folder_is_refused_and_ctrl_c_releases_the_lock(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        [sys.executable, "-m", "misato", "run", "--methods", "dummy", "--option", "delay=60", "--batch-size", "1",
         "--dataset", str(tiny_dataset), "--out", str(out), "--no-progress"], stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_default_sigint)
    try:
        _wait_for(lambda: (out / "predictions" / "data" / "dummy" / "records").is_dir()
                  and (read_owner(out) or {}).get("pid") == first.pid, "the first job to start inpainting")
        assert main(["status", str(out)]) == 0
        assert "running" in capsys.readouterr().out  # the live lock says so

        assert main(["run", "--methods", "telea", "--dataset", str(tiny_dataset), "--out", str(out),
                     "--no-progress"]) == 1
        error = capsys.readouterr().err
        assert f"is in use by pid {first.pid} on host" in error and "misato run" in error
        assert not (out / "predictions" / "data" / "telea").exists()  # refused before any work

        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 130
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        log.close()
    assert not lock_path(out).exists()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path, tiny_dataset, caplog):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom misato.lock import folder_lock\n"
                               "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)  # no cleanup: the lock file stays, naming a process that is gone
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert read_owner(out)["pid"] == holder.pid
    assert main(["run", "--methods", "telea", "--limit", "1", "--metrics", "psnr", "--dataset", str(tiny_dataset),
                 "--out", str(out), "--no-progress"]) == 0
    assert f"taking over the lock of pid {holder.pid}" in caplog.text
    assert not lock_path(out).exists()


def test_a_lock_naming_another_host_is_refused_with_the_file_to_delete(tmp_path):
    from misato.lock import FolderLockedError, folder_lock

    lock_path(tmp_path).write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "command": "misato run"}))
    with pytest.raises(FolderLockedError, match="pid .* on host elsewhere.*delete"):
        with folder_lock(tmp_path):
            pass
    with folder_lock(tmp_path / "other"):  # re-entrant in one process
        with folder_lock(tmp_path / "other"):
            assert read_owner(tmp_path / "other")["pid"] == os.getpid()
    assert not lock_path(tmp_path / "other").exists()


def test_reproduce_table2_with_a_failed_stage_goes_on_exits_1_and_keeps_the_rows(tmp_path, monkeypatch, capsys):
    """A failed training stage skips what builds on it (and says so), the independent stages still run, every row
    stays in table2.md as "failed", reproduce.json lists the failures, exit status 1 (used to be a traceback)."""
    from baselines.asuka.training import latents, loop
    from misato.jobs.reproduce.table2 import load_preset

    trained = []

    def fake_train(config, builder, inputs, **kwargs):
        name = Path(inputs.out).name
        trained.append(name)
        if name == "mae-ft":
            raise RuntimeError("boom: the MAE fine-tune ran out of memory")
        return {"status": "complete", "step": 0}  # nothing written: composing its model fails later

    monkeypatch.setattr(loop, "train", fake_train)
    monkeypatch.setattr(latents, "build_latent_cache", lambda *args, **kwargs: {"entries": []})
    out = tmp_path / "t2"
    assert main(["reproduce", "table2", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    preset = load_preset("smoke")
    independent = [n for n, s in preset["stages"].items() if s.get("mae") == "pretrained" or s["stage"] == "decoder"]
    assert "align-pt-mae" in independent and set(independent) <= set(trained)  # went on after mae-ft failed
    assert "align-self4" not in trained  # builds on mae-ft: skipped
    summary = json.loads((out / "reproduce.json").read_text())
    failures = {f["name"]: f["error"] for f in summary["failures"]}
    assert failures["mae-ft"].startswith("boom") and "builds on stage mae-ft" in failures["align-self4"]
    assert set(preset["runs"]) <= set(failures) and summary["status"] == "finished"
    tail = printed[printed.index("FAILED:"):]
    assert "stage mae-ft:" in tail and "boom: the MAE fine-tune" in tail
    table = (out / "table2.md").read_text()
    for row in preset["rows"]:
        assert f"| {row['variant']} | measured | failed |" in table.replace("\\", "")
    lines = (out / "table2_2a_mae.csv").read_text().splitlines()
    assert lines[0].endswith(",best,failed") and all(line.endswith(",True") for line in lines if ",measured,measured," in line)
