"""The layouts of output folders: one inpainting output folder (`OutputFolder`, written by `baselines.runner`:
paths, the manifest's schema and the finished-sample test) and a multi-method job folder (`RunFolder`, written by
`misato run` and `misato reproduce`). Light (no torch), so readers of run folders (`misato study create`,
`misato status`) need not load models."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from misato.io import sha256_file

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "misato.inpaint/1"
MANIFEST_NAME = "manifest.json"
RAW_DIR = "raw"


class OutputFolder:
    """Paths of one run's outputs and the finished-sample test."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.raw = self.root / RAW_DIR
        self.composite = self.root / "composite"
        self.records = self.root / "records"
        self.manifest = self.root / MANIFEST_NAME

    @staticmethod
    def is_output_folder(path: str | os.PathLike) -> bool:
        """True when `path` is an inpainting output folder (a manifest beside a raw/ folder), not bare images."""
        return (Path(path) / MANIFEST_NAME).is_file() and (Path(path) / RAW_DIR).is_dir()

    @staticmethod
    def prediction_images(path: str | os.PathLike) -> Path:
        """The folder holding the prediction files: `path/raw` for an inpainting output folder (its raw outputs:
        the scorer composites them itself), else `path` itself."""
        return Path(path) / RAW_DIR if OutputFolder.is_output_folder(path) else Path(path)

    def make(self) -> None:
        for folder in (self.raw, self.composite, self.records):
            folder.mkdir(parents=True, exist_ok=True)

    def finished(self, stem: str) -> bool:
        """Raw, record and composite all present (written in that order, each atomically) and the images still
        the bytes the record describes (size and sha256). A sample whose files were damaged later (truncated,
        overwritten) is logged, removed and so redone."""
        present = all((folder / f"{stem}{suffix}").is_file()
                      for folder, suffix in ((self.raw, ".png"), (self.records, ".json"), (self.composite, ".png")))
        if not present:
            return False
        expected = (self.read_record(stem) or {}).get("files")
        if expected is None:  # a record of an older run: presence is all it can tell
            return True
        for role, folder in (("raw", self.raw), ("composite", self.composite)):
            path = folder / f"{stem}.png"
            if path.stat().st_size != expected[role]["size"] or sha256_file(path) != expected[role]["sha256"]:
                log.warning("%s: %s does not match its record (size or sha256): the sample is redone", self.root, path)
                for stale in (self.raw / f"{stem}.png", self.records / f"{stem}.json", self.composite / f"{stem}.png"):
                    stale.unlink(missing_ok=True)
                return False
        return True

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a killed writer (names `.<file>.<random>.tmp`)."""
        removed = 0
        for folder in (self.raw, self.composite, self.records, self.root):
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def read_record(self, stem: str) -> dict[str, Any] | None:
        path = self.records / f"{stem}.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def safe_name(text: str) -> str:
    """`text` as one folder name: runs of characters outside [A-Za-z0-9._-] become "-" ("unnamed" when empty)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "unnamed"


class RunFolder:
    """Paths of a multi-method job folder (`misato run`, `misato reproduce table1/table2`)::

        OUT/predictions/<dataset>/<method>/   one `OutputFolder` per (dataset, method)
        OUT/results/                          result records (<method>__<dataset>__<protocol>.json, + .per_image.csv)
        OUT/leaderboard/                      the reports written from OUT/results
        OUT/run.json                          `misato run`'s record: plan, outcomes, status
        OUT/reproduce.json                    `misato reproduce`'s record
    """

    RUN_FILE = "run.json"
    REPRODUCE_FILE = "reproduce.json"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.predictions_root = self.root / "predictions"
        self.results = self.root / "results"
        self.leaderboard = self.root / "leaderboard"
        self.run_record = self.root / self.RUN_FILE
        self.reproduce_record = self.root / self.REPRODUCE_FILE

    @property
    def job_records(self) -> tuple[Path, Path]:
        """The job records a folder may hold, `misato run`'s first."""
        return self.run_record, self.reproduce_record

    def predictions(self, dataset: str, method: str) -> Path:
        """OUT/predictions/<dataset>/<method> (names made folder-safe by `safe_name`)."""
        return self.predictions_root / safe_name(dataset) / safe_name(method)

    def prediction_folders(self) -> list[Path]:
        """Every OUT/predictions/<dataset>/<method> holding a records/ folder (an inpainting begun), sorted."""
        return sorted(p.parent for p in self.predictions_root.glob("*/*/records"))

    def result_files(self) -> list[Path]:
        """The result records in OUT/results, sorted."""
        return sorted(self.results.glob("*.json"))
