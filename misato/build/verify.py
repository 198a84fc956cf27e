"""Check a built dataset folder against its manifest.json: missing, changed and unlisted files.

Unlisted files are image/mask files under the dataset's resolution folders (or image/ and mask/) that
the manifest does not name: a stray file would change what `misato.data.load_dataset` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from misato.build.export import read_manifest
from misato.io import IMAGE_SUFFIXES, sha256_file


@dataclass
class VerifyReport:
    """Outcome of `verify_folder`; `ok` when nothing is missing, changed or unlisted."""

    root: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unlisted)

    def lines(self, limit: int = 20) -> list[str]:
        """Human-readable summary, at most `limit` names per problem kind."""
        out = [f"{self.root}: {self.checked} file(s) listed in the manifest"]
        for label, names in (("missing", self.missing), ("changed", self.changed), ("unlisted", self.unlisted)):
            if names:
                out.append(f"{label}: {len(names)}")
                out += [f"  {name}" for name in names[:limit]]
                if len(names) > limit:
                    out.append(f"  ... and {len(names) - limit} more")
        out.append("OK" if self.ok else "PROBLEMS FOUND")
        return out


def _data_folders(root: Path, files: dict[str, str]) -> set[Path]:
    """The folders holding manifest files (e.g. 512/image, 512/mask)."""
    return {(root / relpath).parent for relpath in files}


def verify_folder(root: str | Path, hash_files: bool = True) -> VerifyReport:
    """Hash every file listed in ROOT/manifest.json and look for unlisted image files beside them.

    `hash_files=False` only checks that listed files exist (fast; changed files are not detected).
    """
    root = Path(root)
    manifest = read_manifest(root)
    files: dict[str, str] = manifest["files"]
    report = VerifyReport(root, checked=len(files))
    for relpath, digest in files.items():
        path = root / relpath
        if not path.is_file():
            report.missing.append(relpath)
        elif hash_files and sha256_file(path) != digest:
            report.changed.append(relpath)
    listed = set(files)
    for folder in sorted(_data_folders(root, files)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            relpath = path.relative_to(root).as_posix()
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and relpath not in listed:
                report.unlisted.append(relpath)
    return report
