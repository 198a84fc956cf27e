"""`misato.outputs.RunFolder` and `OutputFolder.prediction_images`: the one owner of a job folder's paths."""

from __future__ import annotations

import json

from misato.outputs import OutputFolder, RunFolder, safe_name


def test_run_folder_paths(tmp_path):
    run = RunFolder(tmp_path)
    assert run.predictions("misato 512", "lama/big") == tmp_path / "predictions" / "misato-512" / "lama-big"
    assert (run.results, run.leaderboard) == (tmp_path / "results", tmp_path / "leaderboard")
    assert run.job_records == (tmp_path / "run.json", tmp_path / "reproduce.json")
    assert safe_name("..") == "unnamed" and safe_name("a.b_c-d") == "a.b_c-d"


def test_run_folder_listings(tmp_path):
    run = RunFolder(tmp_path)
    assert run.prediction_folders() == [] and run.result_files() == []
    started = run.predictions("d", "b")
    (started / "records").mkdir(parents=True)
    run.predictions("d", "a").mkdir(parents=True)  # no records/: no inpainting begun
    run.results.mkdir()
    (run.results / "b__d__p.json").write_text("{}")
    (run.results / "b__d__p.per_image.csv").write_text("")
    assert run.prediction_folders() == [started]
    assert run.result_files() == [run.results / "b__d__p.json"]


def test_prediction_images_needs_both_raw_and_manifest(tmp_path):
    """An inpainting output folder (manifest.json beside raw/) is read from raw/; a folder with only one of the
    two is a folder of images itself (the rule the scorer and the folder inpainter share)."""
    folder = OutputFolder(tmp_path / "out")
    folder.raw.mkdir(parents=True)
    assert OutputFolder.prediction_images(folder.root) == folder.root
    folder.manifest.write_text(json.dumps({}))
    assert OutputFolder.prediction_images(folder.root) == folder.raw
    folder.raw.rmdir()
    assert OutputFolder.prediction_images(folder.root) == folder.root
