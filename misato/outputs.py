"""The layout of one inpainting output folder (see `baselines.runner`): paths, the manifest's schema and the
finished-sample test. Light (no torch), so readers of run folders (`misato study create`) need not load models."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from misato.io import sha256_file

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "misato.inpaint/1"


class OutputFolder:
    """Paths of one run's outputs and the finished-sample test."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.raw = self.root / "raw"
        self.composite = self.root / "composite"
        self.records = self.root / "records"
        self.manifest = self.root / "manifest.json"

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
