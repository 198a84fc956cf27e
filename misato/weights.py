"""Weights registry: every pretrained file the suite can use, with URL, sha256 and file name.

Resolution order for a key (see `resolve`):
  1. an explicit path (a CLI flag / Python argument, or the environment variable `MISATO_WEIGHT_<KEY>`);
  2. `$MISATO_WEIGHTS_DIR/<file name>`;
  3. the standard caches: `$TORCH_HOME/hub/checkpoints/<file name>` and, for Hugging Face files, the
     hub cache (`huggingface_hub.try_to_load_from_cache`, offline);
  4. a download when `allow_download=True` (the `misato` commands pass it unless `--offline`): Hugging Face files
     into the hub cache, others into `$MISATO_WEIGHTS_DIR`, through `misato.download` (resume, retries, hash
     check, lock). `MISATO_OFFLINE=1` or `HF_HUB_OFFLINE=1` forbids it whatever the caller asks.
Nothing found raises `WeightsNotFoundError`, which names the file, its URL, why it was not downloaded and the
command that fetches it.

A file found through 2-4 must match the registered sha256, or where only a prefix is published (torch-hub
names `name-<8 hex>.ext`), start with it (a wrong file there is an error). An explicit path with an unexpected
hash is used, and `ResolvedWeight.matches` is False so results record it.

Specs live beside the code that uses them, as a module-level `WEIGHTS: list[WeightSpec]` that the owning
package declares in the `misato.weights` entry-point group (pyproject.toml); `all_specs()` collects them (one
source of truth per key; this module knows no consumer). A spec with an empty `url` is a file that was never
published (the SD-1.5 ASUKA weights): it resolves like any other, but cannot be downloaded.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from misato.io import sha256_file

if TYPE_CHECKING:
    from misato.download import DownloadPolicy

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "misato.weights"


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file.

    `sha256` is the full hex digest of the published file, or "" where no digest is published (the file
    is then used as found and its actual hash recorded, never "verified"). `package_file` names a copy
    shipped inside an installed package ("package:relative/path"), searched after the weights folder.
    A file on the Hugging Face hub names `hf_repo` (and `hf_revision`): it is fetched with
    `huggingface_hub.hf_hub_download` and found in the hub cache; `url` is then only informative.
    `manual`: the steps when `url` is not the file itself (a Google Drive page, a release archive to unzip and
    convert): such a file is never downloaded automatically; the steps are shown instead.
    """

    key: str
    filename: str
    url: str
    sha256: str
    description: str
    hf_repo: str | None = None  # Hugging Face repo id when the file lives on the hub
    hf_revision: str = "main"  # branch, tag or commit of hf_repo
    md5: str | None = None  # as published by some projects, informative only
    package_file: str | None = None
    manual: str = ""


@dataclass(frozen=True)
class ResolvedWeight:
    """Where a weight was found and whether its bytes are the registered ones."""

    key: str
    path: Path
    sha256: str
    expected_sha256: str
    source: str  # "explicit", "env", "weights_dir", "torch_hub", "hf_cache", "download"

    @property
    def matches(self) -> bool | None:
        """True/False against the registered digest; None when no digest is registered."""
        if not self.expected_sha256:
            return None
        return self.sha256 == self.expected_sha256

    def record(self) -> dict:
        """JSON-able provenance for result files."""
        return {
            "key": self.key,
            "path": str(self.path),
            "sha256": self.sha256,
            "expected_sha256": self.expected_sha256,
            "matches": self.matches,
            "source": self.source,
        }


class WeightsNotFoundError(FileNotFoundError):
    """A pretrained file is not on this machine and was not (or could not be) downloaded; `reason` says why."""

    def __init__(self, spec: WeightSpec, searched: list[Path], reason: str = ""):
        self.spec = spec
        self.searched = searched
        self.reason = reason
        places = "\n".join(f"  - {p}" for p in searched) or "  (none)"
        about = f"{spec.description}\n" if not spec.url or spec.manual else f"url: {spec.url}\n"
        why = f"Not downloaded: {reason}\n" if reason else ""
        super().__init__(f"weights {spec.key!r} ({spec.filename}) not found. Searched:\n{places}\n{about}{why}"
                         f"Fix: {fix_text(spec)}")


class WeightsHashError(ValueError):
    """A file found in a weights folder or cache whose sha256 differs from the registered one."""


_REGISTRY: dict[str, WeightSpec] = {}
_HASH_CACHE: dict[tuple, str] = {}  # this process's digests by `_stat_key`


def register(spec: WeightSpec) -> WeightSpec:
    """Add a spec; registering the same key twice with different contents is an error."""
    known = _REGISTRY.get(spec.key)
    if known is not None and known != spec:
        raise ValueError(f"weight key {spec.key!r} registered twice with different specs")
    _REGISTRY[spec.key] = spec
    return spec


def all_specs() -> dict[str, WeightSpec]:
    """Every registered spec: those `register`ed and those the `misato.weights` entry points list (light,
    data-only modules; an entry point names a `list[WeightSpec]`)."""
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        for spec in point.load():
            register(spec)
    return dict(sorted(_REGISTRY.items()))


def get_spec(key: str) -> WeightSpec:
    specs = all_specs()
    if key not in specs:
        import difflib

        close = difflib.get_close_matches(key, specs, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(specs)}"
        raise KeyError(f"unknown weights key {key!r}{hint}")
    return specs[key]


def env_var(key: str) -> str:
    """Environment variable that holds an explicit path for `key`."""
    return "MISATO_WEIGHT_" + "".join(c if c.isalnum() else "_" for c in key).upper()


def default_weights_dir() -> Path:
    """`misato.defaults.weights_dir()`: `$MISATO_WEIGHTS_DIR`, else the cache root's `weights/`."""
    from misato.defaults import weights_dir

    return weights_dir()


def torch_hub_dir() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
    ) / "torch"
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


HASHES_FORMAT = 1  # of the on-disk digest cache (`misato.defaults.weight_hashes_file`)


def _stat_key(path: Path) -> tuple[str, dict[str, int]]:
    """(absolute path, what identifies its bytes on disk without reading them: size, mtime_ns, inode, device)."""
    resolved = path.resolve()
    stat = resolved.stat()
    return str(resolved), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino,
                           "device": stat.st_dev}


def _read_hashes(cache: Path) -> dict[str, dict]:
    """The digest cache's entries by absolute path; {} when there is none, and (with a warning) when it is not a
    cache this version wrote (a corrupt or foreign file is ignored, then replaced by the next write)."""
    import json

    try:
        data = json.loads(cache.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("%s: ignored, not a readable weight-hash cache (%s); files are hashed again", cache, error)
        return {}
    entries = data.get("entries") if isinstance(data, dict) and data.get("format") == HASHES_FORMAT else None
    if not isinstance(entries, dict):
        log.warning("%s: ignored, not a weight-hash cache of format %d; files are hashed again", cache, HASHES_FORMAT)
        return {}
    return {path: entry for path, entry in entries.items() if _valid_entry(entry)}


def _valid_entry(entry: object) -> bool:
    """An entry holds the four stat fields as integers and a 64-digit lowercase hex sha256 (anything else is
    dropped: it could only make a file pass as bytes it does not hold)."""
    if not isinstance(entry, dict) or set(entry) != {"size", "mtime_ns", "inode", "device", "sha256"}:
        return False
    digest = entry["sha256"]
    return (all(type(entry[k]) is int for k in ("size", "mtime_ns", "inode", "device")) and isinstance(digest, str)
            and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest))


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached by (absolute path, size, mtime_ns, inode, device) in this process and on disk in
    `misato.defaults.weight_hashes_file()` (a multi-GB checkpoint is read once, not at every command's start);
    a file whose size, modification time, inode or device changed is hashed again. The cache is written
    atomically; a cache that cannot be written only costs the next command a re-hash (logged)."""
    from misato.defaults import weight_hashes_file

    where, identity = _stat_key(path)
    memo = (where, *identity.values())
    if memo in _HASH_CACHE:
        return _HASH_CACHE[memo]
    entries = _read_hashes(weight_hashes_file())
    known = entries.get(where)
    if known is not None and {k: known[k] for k in identity} == identity:
        digest = known["sha256"]
    else:
        digest = sha256_file(path)
        if _stat_key(path)[1] == identity:  # not changed while it was read: the digest is of these bytes
            _store_hash(entries, where, identity, digest)
    _HASH_CACHE[memo] = digest
    return digest


def remember_sha256(path: Path, digest: str) -> None:
    """Record `digest`, checked as the file was written (a verified download), as the sha256 of `path` as it is
    now, so that `file_sha256` (in this process and the next commands) does not read the file again."""
    from misato.defaults import weight_hashes_file

    where, identity = _stat_key(path)
    _store_hash(_read_hashes(weight_hashes_file()), where, identity, digest)
    _HASH_CACHE[(where, *identity.values())] = digest


def _store_hash(entries: dict[str, dict], where: str, identity: dict[str, int], digest: str) -> None:
    """Write the digest cache: `entries` with files that are gone dropped and `where` set to `identity` + `digest`
    (atomically; a cache that cannot be written only costs the next command a re-hash, logged)."""
    from misato.defaults import weight_hashes_file
    from misato.io import atomic_write_json

    cache = weight_hashes_file()
    entries = {p: e for p, e in entries.items() if Path(p).exists()}  # files gone leave the cache
    entries[where] = {**identity, "sha256": digest}
    try:
        atomic_write_json(cache, {"format": HASHES_FORMAT, "entries": entries})
    except OSError as error:
        log.warning("%s: weight-hash cache not written (%s); the next command hashes %s again", cache, error, where)


def _hf_cached(spec: WeightSpec) -> Path | None:
    if spec.hf_repo is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(spec.hf_repo, spec.filename, revision=spec.hf_revision)
    return Path(found) if isinstance(found, str) else None


def _package_path(spec: WeightSpec) -> Path | None:
    if spec.package_file is None:
        return None
    import importlib.util

    package, _, relative = spec.package_file.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / relative


def candidates(spec: WeightSpec) -> list[tuple[str, Path]]:
    """Non-explicit places searched for `spec`, in order."""
    places = [("weights_dir", default_weights_dir() / spec.filename)]
    packaged = _package_path(spec)
    if packaged is not None:
        places.append(("package", packaged))
    places.append(("torch_hub", torch_hub_dir() / spec.filename))
    hf = _hf_cached(spec)
    if hf is not None:
        places.append(("hf_cache", hf))
    return places


def hash_prefix(spec: WeightSpec) -> str:
    """The sha256 prefix the file name publishes (torch-hub style), used only when no full digest is known."""
    from misato.download import published_prefix

    return "" if spec.sha256 else published_prefix(spec.filename)


def resolve(key: str, path: str | os.PathLike | None = None, allow_download: bool = False) -> ResolvedWeight:
    """Find the file for `key`; see the module docstring for the order and the hash rules.

    Raises WeightsNotFoundError (not found and not downloaded: offline, not allowed, unpublished, manual steps, or
    the download failed, with its reason), WeightsHashError (a wrong file in a folder or cache, or downloaded
    bytes that do not match: deleted), or OSError naming the path when a download cannot be written."""
    from misato.download import digest_matches

    spec = get_spec(key)
    explicit = [("explicit", Path(path))] if path else []
    if not explicit and os.environ.get(env_var(key)):
        explicit = [("env", Path(os.environ[env_var(key)]))]
    for source, candidate in explicit:
        if not candidate.is_file():
            raise WeightsNotFoundError(spec, [candidate])
        digest = file_sha256(candidate)
        if not digest_matches(digest, spec.sha256, hash_prefix(spec)):
            log.warning("%s: sha256 %s differs from the registered %s; using it and recording the mismatch",
                        candidate, digest, spec.sha256 or f"prefix {hash_prefix(spec)}")
        return ResolvedWeight(key, candidate, digest, spec.sha256, source)
    searched = []
    for source, candidate in candidates(spec):
        searched.append(candidate)
        if candidate.is_file():
            digest = file_sha256(candidate)
            if not digest_matches(digest, spec.sha256, hash_prefix(spec)):
                raise WeightsHashError(
                    f"{candidate}: sha256 {digest} but {spec.key} should be "
                    f"{spec.sha256 or 'a digest starting ' + hash_prefix(spec)}; "
                    f"delete it and run `misato weights fetch {spec.key}`, or pass it explicitly to use it anyway"
                )
            return ResolvedWeight(key, candidate, digest, spec.sha256, source)
    if not allow_download:
        raise WeightsNotFoundError(spec, searched, "downloads are off (--offline, or the Python API's "
                                                   "allow_download=False)")
    return download(spec, searched=searched)


def download(spec: WeightSpec, folder: Path | None = None, progress: bool = True,
             policy: "DownloadPolicy | None" = None, searched: list[Path] | None = None) -> ResolvedWeight:
    """Download the file (see `misato.download`) and check its sha256: hub files with `hf_hub_download` (into the
    hub cache, at `$HF_ENDPOINT`), others from `spec.url` (or `$MISATO_WEIGHTS_ENDPOINT/<file name>`) into `folder`
    (default the weights folder). Unpublished and `manual` files, offline mode and failed downloads raise
    `WeightsNotFoundError` with the reason; wrong bytes are deleted and raise `WeightsHashError`."""
    from misato.download import (
        DownloadError, DownloadHashError, digest_matches, fetch_hf, fetch_url, mirror_url, offline, offline_reason,
    )

    searched = list(searched or [])
    if not spec.url:
        raise WeightsNotFoundError(spec, searched, "it was never published")
    if spec.manual:
        raise WeightsNotFoundError(spec, searched, "it needs manual steps (never downloaded automatically)")
    if offline():
        raise WeightsNotFoundError(spec, searched, f"offline ({offline_reason()})")
    try:
        if spec.hf_repo is not None:
            path = fetch_hf(spec.hf_repo, spec.filename, spec.hf_revision)
            digest = file_sha256(path)  # cached: the next command finds it in the hub cache without reading it
            if not digest_matches(digest, spec.sha256, hash_prefix(spec)):
                _remove_hub_file(path)
                raise WeightsHashError(f"{spec.hf_repo}/{spec.filename}@{spec.hf_revision}: sha256 {digest}, "
                                       f"expected {spec.sha256}; deleted {path}")
        else:
            url = mirror_url(spec.url, spec.filename)
            path = fetch_url(url, (folder or default_weights_dir()) / spec.filename, spec.sha256, hash_prefix(spec),
                             progress=progress, policy=policy)
            if spec.sha256:  # fetch_url checked the full digest: no second pass, now or at the next command
                remember_sha256(path, spec.sha256)
            digest = spec.sha256 or file_sha256(path)
    except DownloadHashError as error:
        raise WeightsHashError(str(error)) from None
    except DownloadError as error:
        log.warning("%s (%s) not downloaded: %s", spec.key, spec.filename, error)
        raise WeightsNotFoundError(spec, searched, str(error)) from None
    return ResolvedWeight(spec.key, path, digest, spec.sha256, "download")


def _remove_hub_file(path: Path) -> None:
    """Delete a hub-cache file and the blob its snapshot link points to."""
    blob = path.resolve()
    for item in {path, blob}:
        if item.exists() or item.is_symlink():
            item.unlink()


def fix_text(spec: WeightSpec) -> str:
    """How to provide a missing file, without machine paths (results and reports travel between machines)."""
    place = (f"put {spec.filename} in $MISATO_WEIGHTS_DIR (default ~/.cache/misato/weights), or pass "
             f"--weight {spec.key}=PATH (or ${env_var(spec.key)})")
    if not spec.url:
        return f"it was never published: train it (`misato train`), then {place}"
    if spec.manual:
        return f"{spec.manual}; then {place}"
    return f"run `misato weights fetch {spec.key}`, or {place}"
