"""Shared flags mean the same in every command (issue 24): one spelling, help, default, type and choices across
every subcommand's parser; renamed flags keep their old spelling for one release, with a message."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from misato.cli import build_parser, main
from misato.cli._common import PER_COMMAND_FLAGS


def _subcommand_flags() -> dict[str, list[tuple[str, argparse.Action]]]:
    """flag -> [(subcommand path, its action)] over every (nested) subcommand parser; hidden aliases left out."""
    flags: dict[str, list[tuple[str, argparse.Action]]] = defaultdict(list)

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
            elif action.help != argparse.SUPPRESS:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help") and path:
                        flags[flag].append((path, action))

    walk(build_parser(), "")
    return flags


def _meaning(action: argparse.Action) -> str:
    return repr((action.help, action.default, action.type, tuple(action.choices or ()), action.dest, action.nargs))


def test_shared_flags_have_one_help_and_default_everywhere():
    shared = {flag: uses for flag, uses in _subcommand_flags().items() if len(uses) > 1}
    assert {"--device", "--no-progress", "--weight", "--offline", "--num-workers", "--limit"} <= set(shared)
    differing = {flag: sorted({(path, _meaning(action)) for path, action in uses})
                 for flag, uses in shared.items()
                 if flag not in PER_COMMAND_FLAGS and len({_meaning(action) for _, action in uses}) > 1}
    assert differing == {}
    assert PER_COMMAND_FLAGS <= set(shared)  # no stale exemption: each is taken by several commands


def test_batch_size_flags_say_which_batch():
    flags = _subcommand_flags()
    assert "--batch-size" not in flags  # only the hidden old spelling is left
    assert {path for path, _ in flags["--inpaint-batch-size"]} == {"inpaint", "run"}
    assert {path for path, _ in flags["--score-batch-size"]} == {"score", "run"}


@pytest.mark.parametrize("argv, dest, value", [
    (["score", "--dataset", "d", "--predictions", "p", "--method", "m", "--batch-size", "4"], "score_batch_size", 4),
    (["inpaint", "--method", "telea", "--batch-size", "3"], "batch_size", 3),
    (["run", "--methods", "telea", "--dataset", "d", "--out", "o", "--batch-size", "2"], "batch_size", 2),
    (["build", "--out", "o", "--batch-size", "8"], "batch_size", 8),
    (["verify", "root", "--limit", "5"], "limit", 5),
    (["demo", "--size", "64"], "embedded_size", 64),
])
def test_old_spellings_work_for_one_release_with_a_message(argv, dest, value, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    old = next(a for a in argv if a in ("--batch-size", "--limit", "--size"))
    assert f"{old} is deprecated" in capsys.readouterr().err


def test_old_spellings_hidden_from_help(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    assert "--score-batch-size" in text and "--batch-size" not in text.replace("--score-batch-size", "")


def test_demo_no_progress_silences_the_scoring_bars(monkeypatch, tmp_path):
    """`misato demo --no-progress` turns off the scorer's bars too, not only the inpainting ones."""
    from misato.jobs import pipeline

    seen = {}

    def capture(config):
        seen["config"] = config
        raise RuntimeError("stopped before any work")

    monkeypatch.setattr(pipeline, "run_benchmark", capture)
    with pytest.raises(RuntimeError, match="stopped before any work"):
        main(["demo", "--out", str(tmp_path), "--methods", "telea", "--no-progress", "--offline"])
    assert seen["config"].progress is False and seen["config"].score.progress is False


@pytest.mark.parametrize("argv, field, value", [
    (["run", "--methods", "telea", "--dataset", "embedded", "--inpaint-batch-size", "3"], "batch_size", 3),
    (["demo", "--methods", "telea", "--embedded-size", "64"], "embedded_size", 64),
    (["score", "--dataset", "d", "--predictions", "p", "--label", "m", "--score-batch-size", "5"], "batch_size", 5),
])
def test_print_config_prints_the_resolved_config_and_does_nothing(argv, field, value, tmp_path, capsys):
    import json

    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config[field] == value and not out.exists()
    score = config.get("score", config)
    assert score["bootstrap"] == 1000 and score["protocol"] == "comod"
