"""Check a dataset folder: against its manifest.json when it has one, and its structure always.

Manifest: a `misato build` manifest (file -> sha256) or the embedded set's (per-sample image/mask sha256): missing,
changed and unlisted files. Unlisted files are image/mask files under the dataset's folders that the manifest does
not name: a stray file would change what `misato.data.load_dataset` reads.
Structure (any image/ + mask/ or MISATO-layout folder, e.g. a downloaded MISATO without manifest): every
resolution folder opens, image and mask sizes agree, masks are binary (0 and 255 only), and in the MISATO layout
stems are MISATO indices with their per-domain counts reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from misato.builder.export import read_manifest
from misato.io import IMAGE_SUFFIXES, ImageFileError, read_mask_gray, sha256_file


@dataclass
class VerifyReport:
    """Outcome of `verify_folder`; `ok` when nothing is missing, changed or unlisted."""

    root: Path
    checked: int = 0
    has_manifest: bool = True
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    structure: list[str] = field(default_factory=list)
    domains: dict[str, dict[str, int]] = field(default_factory=dict)  # resolution -> domain -> samples

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unlisted or self.structure)

    def lines(self, limit: int = 20) -> list[str]:
        """Human-readable summary, at most `limit` names per problem kind."""
        out = [f"{self.root}: {self.checked} file(s) listed in the manifest" if self.has_manifest
               else f"{self.root}: no manifest.json; structure checked only"]
        out += [f"{resolution}: " + ", ".join(f"{d} {n}" for d, n in counts.items())
                for resolution, counts in self.domains.items()]
        for label, names in (("missing", self.missing), ("changed", self.changed), ("unlisted", self.unlisted),
                             ("structure", self.structure)):
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


def manifest_files(root: Path) -> dict[str, str] | None:
    """relative path -> sha256 from ROOT/manifest.json (build or embedded format); None without a manifest."""
    import json

    path = root / "manifest.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if isinstance(data.get("files"), dict):
        return read_manifest(root)["files"]
    if str((data.get("parameters") or {}).get("schema", "")).startswith("misato.embedded/"):
        return {f"{role}/{sample['stem']}.png": sample[f"{role}_sha256"]
                for sample in data["samples"] for role in ("image", "mask")}
    raise ValueError(f"{path}: neither a misato-build nor an embedded-set manifest")


def check_structure(root: Path, report: VerifyReport) -> None:
    """Structural checks of the module docstring, added to `report.structure` / `report.domains`."""
    import numpy as np
    from PIL import Image

    from misato.data import DatasetError, load_dataset

    resolutions = [None] if (root / "image").is_dir() else sorted(
        int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit() and (p / "image").is_dir())
    if not resolutions:
        report.structure.append(f"{root}: neither image/ + mask/ nor MISATO resolution folders (512/, 1024/)")
        return
    for resolution in resolutions:
        try:
            dataset = load_dataset(root, resolution)
        except DatasetError as error:
            report.structure.append(str(error))
            continue
        where = f"{resolution}/" if resolution else ""
        for sample in dataset.samples:
            try:
                with Image.open(sample.image_path) as image:
                    size = image.size
                gray = read_mask_gray(sample.mask_path)  # the loader's own reader: unreadable/16-bit named
            except (OSError, ImageFileError) as error:
                report.structure.append(f"{where}{sample.stem}: {error}")
                continue
            if size != gray.shape[::-1]:
                report.structure.append(f"{where}{sample.stem}: image {size} and mask {gray.shape[::-1]} differ")
            values = np.unique(gray)
            if not set(values.tolist()) <= {0, 255}:
                report.structure.append(f"{where}mask/{sample.mask_path.name}: not binary ({len(values)} gray levels)")
        if dataset.domains:
            counts: dict[str, int] = {}
            for sample in dataset.samples:
                if sample.domain is None:
                    report.structure.append(f"{where}{sample.stem}: not a MISATO index (0000-1999)")
                counts[str(sample.domain)] = counts.get(str(sample.domain), 0) + 1
            report.domains[str(resolution) if resolution else "domains"] = counts  # image/ + mask/: not "None"


def verify_folder(root: str | Path, hash_files: bool = True) -> VerifyReport:
    """Hash every file listed in ROOT/manifest.json (when there is one), look for unlisted image files beside
    them, and check the folder's structure (`check_structure`).

    `hash_files=False` only checks that listed files exist (fast; changed files are not detected).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    report = VerifyReport(root)
    check_structure(root, report)
    files = manifest_files(root)
    if files is None:
        report.has_manifest = False
        return report
    report.checked = len(files)
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
