"""The GAN rows of Table 1 (mat, comod, mae-far, lama with the authors' checkpoint) through `misato run` and
`misato inpaint --list`: registered under their names, and without weights each fails alone with the fix."""

from __future__ import annotations

import json

from misato.cli import main as cli_main
from misato.weights import fix_text, get_spec

METHODS = {"mat": "mat-places512", "comod": "comod-places512", "mae-far": "mae-far-places2"}


def test_listed_with_their_options(capsys):
    assert cli_main(["inpaint", "--list"]) == 0
    printed = capsys.readouterr().out
    for method in (*METHODS, "lama"):
        assert method in printed
    assert "truncation_psi" in printed and "noise_mode" in printed and "checkpoint" in printed


def test_run_without_weights_fails_each_method_with_its_fix(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    methods = ",".join([*METHODS, "lama", "telea"])
    args = ["run", "--methods", methods, "--option", "checkpoint=authors",  # taken by lama only
            "--dataset", str(tiny_dataset), "--limit", "2", "--metrics", "psnr", "--out", str(out), "--no-progress"]
    assert cli_main(args) == 1  # failed methods fail the job (issue 21 case 3); telea still ran
    printed = capsys.readouterr().out
    outcomes = {o["method"]: o for o in json.loads((out / "run.json").read_text())["outcomes"]}
    assert outcomes["telea"]["status"] == "ok"
    for method, key in {**METHODS, "lama": "lama-big-authors"}.items():
        outcome = outcomes[method]
        assert (outcome["status"], outcome["error_type"]) == ("failed", "WeightsNotFoundError"), method
        assert fix_text(get_spec(key)) in outcome["error"] and fix_text(get_spec(key)) in printed
    assert "Google Drive page" in fix_text(get_spec("mae-far-places2"))  # never fetched automatically
