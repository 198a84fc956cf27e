"""The one download path for pretrained files: HTTP(S) with resume, retries, a hash check and a per-file lock.

`fetch_url(url, target, ...)` downloads into `target`'s folder through `<target>.part`, which is renamed to
`target` only after its sha256 checks out (the full digest, or the 8+ hex prefix a torch-hub file name
publishes: `name-<hex>.ext`). On the way:
- a dropped connection or a read that times out resumes from the bytes already in `.part` (HTTP Range), and
  5xx/429 answers and connection errors are retried, both with exponential backoff, at most
  `DownloadPolicy.retries` times; a 4xx answer ends at once with the URL and the status;
- a `.part` whose sha256 is wrong is deleted and named (`DownloadHashError`); a failed write (disk full) deletes
  `.part` and names the path (`DownloadWriteError`), so no partial file is ever used later;
- `fcntl.flock` on `.locks/<name>.lock` in the target's folder: of two processes fetching the same file, one downloads
  and the other waits, then finds the verified file.
Hugging Face files go through `fetch_hf` (`huggingface_hub.hf_hub_download`, which keeps its own cache, lock and
resume), at `$HF_ENDPOINT` when set.

Offline: `offline()` is true when `MISATO_OFFLINE` or `HF_HUB_OFFLINE` is set to 1/true/yes/on; both fetchers
then refuse before any connection (`OfflineError`). `$MISATO_WEIGHTS_ENDPOINT` rebases every non-Hub download
on a mirror: `<endpoint>/<file name>` (a flat folder of the registered file names, e.g. `python -m http.server`
run in a copy of the weights folder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import http.client
import importlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("MISATO_OFFLINE", "HF_HUB_OFFLINE")
ENDPOINT_VARIABLE = "MISATO_WEIGHTS_ENDPOINT"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# torch.hub's convention, at least 8 hex digits: "alexnet-owt-7be5be79.pth" publishes the prefix 7be5be79.
HASH_PREFIX = re.compile(r"-([a-f0-9]{8,})\.")
_TRUE = {"1", "true", "yes", "on"}
# A connection that failed or broke (urllib's HTTPError, a URLError subclass, is caught before these).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class DownloadPolicy:
    """Retries and timeouts of `fetch_url`.

    retries: further attempts after the first (each resumes); backoff_s: the first wait, doubled each retry up
    to max_backoff_s; timeout_s: seconds a connection or a single read may stall before it counts as dropped;
    chunk_bytes: bytes read and written at a time."""

    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 30.0
    chunk_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(f"DownloadPolicy: retries and delays must be >= 0, got {self}")
        if self.timeout_s <= 0 or self.chunk_bytes <= 0:
            raise ValueError(f"DownloadPolicy: timeout_s and chunk_bytes must be > 0, got {self}")


class DownloadError(OSError):
    """A download that could not complete (an HTTP error status, retries exhausted, a timeout)."""


class OfflineError(DownloadError):
    """A download asked for while `MISATO_OFFLINE` or `HF_HUB_OFFLINE` is set."""


class DownloadHashError(ValueError):
    """Downloaded bytes whose sha256 is not the expected one (the file has been deleted)."""


class DownloadWriteError(OSError):
    """Writing the downloaded bytes failed (disk full, permissions); the partial file has been deleted."""


def offline() -> bool:
    """True when `MISATO_OFFLINE` or `HF_HUB_OFFLINE` is 1/true/yes/on: nothing may touch the network."""
    return bool(offline_reason())


def offline_reason() -> str:
    """Which variable made `offline()` true, e.g. "MISATO_OFFLINE=1" ("" when online)."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name}={os.environ[name]}"
    return ""


def mirror_url(url: str, filename: str) -> str:
    """`url`, or `$MISATO_WEIGHTS_ENDPOINT/<filename>` when that variable is set (a flat mirror folder)."""
    endpoint = os.environ.get(ENDPOINT_VARIABLE, "").strip()
    return f"{endpoint.rstrip('/')}/{filename}" if endpoint else url


def published_prefix(filename: str) -> str:
    """The sha256 prefix a torch-hub style file name publishes ("vgg16-397923af.pth" -> "397923af"), else ""."""
    found = HASH_PREFIX.search(filename)
    return found.group(1) if found else ""


def digest_matches(digest: str, sha256: str, prefix: str = "") -> bool:
    """True when `digest` equals the full `sha256`, or (no full one) starts with `prefix`; True when neither is
    known (nothing to check)."""
    if sha256:
        return digest == sha256
    return digest.startswith(prefix)


def _check_online(what: str) -> None:
    if offline():
        raise OfflineError(f"{what}: not downloaded, offline ({offline_reason()})")


@contextlib.contextmanager
def file_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `.locks/<name>.lock` in `target`'s folder (the lock file stays: removing it
    would let a third process lock a different inode)."""
    lock_path = target.parent / ".locks" / f"{target.name}.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process downloading %s", target)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_url(url: str, target: str | os.PathLike, sha256: str = "", prefix: str = "", progress: bool = True,
              policy: DownloadPolicy | None = None) -> Path:
    """Download `url` to `target` (see the module docstring); returns `target`.

    sha256: the full expected digest ("" when unpublished); prefix: the published digest prefix used when there
    is no full digest. A `target` already present with matching bytes is returned without any request.
    Raises OfflineError, DownloadError, DownloadHashError or DownloadWriteError, each naming the URL or path."""
    from misato.io import sha256_file

    policy = policy or DownloadPolicy()
    target = Path(target)
    _check_online(str(target.name))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadWriteError(error.errno, f"cannot create the folder {target.parent}: {error.strerror}") from None
    with file_lock(target):
        if target.is_file() and digest_matches(sha256_file(target), sha256, prefix):
            return target  # another process fetched it while this one waited for the lock
        part = target.with_name(target.name + ".part")
        _download(url, part, progress, policy)
        digest = sha256_file(part)
        if not digest_matches(digest, sha256, prefix):
            part.unlink()
            expected = sha256 or f"a digest starting {prefix}"
            raise DownloadHashError(f"{url}: the downloaded bytes have sha256 {digest}, expected {expected}; "
                                    f"deleted {part} (a wrong file or a bad mirror)")
        os.replace(part, target)
    return target


def _download(url: str, part: Path, progress: bool, policy: DownloadPolicy) -> None:
    """Fill `part` with the bytes of `url`, resuming from what it holds; bounded retries with backoff."""
    attempt = 0
    while True:
        try:
            if _attempt(url, part, progress, policy):
                return
            problem = "the connection closed before the end of the file"
        except urllib.error.HTTPError as error:
            if error.code not in RETRY_STATUS:
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
            problem = f"HTTP {error.code} {error.reason}"
        except _NETWORK_ERRORS as error:
            problem = str(getattr(error, "reason", None) or error) or type(error).__name__
        if attempt >= policy.retries:
            kept = f"; {part} keeps the {part.stat().st_size} bytes received, to resume from" if part.exists() else ""
            raise DownloadError(f"{url}: {problem} (gave up after {attempt + 1} attempts){kept}")
        delay = min(policy.backoff_s * 2 ** attempt, policy.max_backoff_s)
        attempt += 1
        log.warning("%s: %s; retry %d of %d in %.1f s", url, problem, attempt, policy.retries, delay)
        time.sleep(delay)


def _attempt(url: str, part: Path, progress: bool, policy: DownloadPolicy) -> bool:
    """One request; True when `part` is complete (as far as the server's length tells)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "misato-bench", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=policy.timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after `offset`: complete if the server's size is offset
            size = (error.headers.get("Content-Range") or "").rpartition("/")[2]
            error.close()
            if size == str(offset):
                return True
            part.unlink(missing_ok=True)
            raise http.client.HTTPException(f"{part} does not match the server's file; starting again") from None
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored Range: start again
        elif offset and not (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        _copy(response, part, offset, total, progress, policy.chunk_bytes)
    return total is None or part.stat().st_size == total


def _open_part(part: Path, offset: int) -> BinaryIO:
    """The `.part` file positioned at `offset` (truncated there)."""
    handle = open(part, "r+b" if offset else "wb")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _copy(response: http.client.HTTPResponse, part: Path, offset: int, total: int | None, progress: bool,
          chunk_bytes: int) -> None:
    """Stream the response body into `part` from `offset`, with a tqdm bar; a write error deletes `part`."""
    from tqdm.auto import tqdm

    try:
        handle = _open_part(part, offset)
    except OSError as error:
        raise DownloadWriteError(error.errno, f"cannot write {part}: {error.strerror}") from None
    with handle, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=part.name.removesuffix(".part"), disable=not progress, leave=True) as bar:
        while True:
            chunk = response.read(chunk_bytes)
            if not chunk:
                break
            try:
                handle.write(chunk)
                handle.flush()
            except OSError as error:
                handle.close()
                part.unlink(missing_ok=True)
                reason = "no space left on the device" if error.errno == errno.ENOSPC else error.strerror
                raise DownloadWriteError(error.errno, f"cannot write {part}: {reason}; the partial file was "
                                         f"removed (free space, or set MISATO_WEIGHTS_DIR to another disk)") from None
            bar.update(len(chunk))


def remote_size(url: str, timeout_s: float = 10.0) -> int | None:
    """The server's Content-Length for `url` (a HEAD request), None when it does not say. Offline: OfflineError."""
    _check_online(url)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "misato-bench",
                                                                  "Accept-Encoding": "identity"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except _NETWORK_ERRORS as error:
        raise DownloadError(f"{url}: {getattr(error, 'reason', None) or error}") from None
    return int(length) if length and length.isdigit() else None


def fetch_hf(repo: str, filename: str, revision: str) -> Path:
    """`huggingface_hub.hf_hub_download` at `$HF_ENDPOINT` (read now, not at import) into the hub cache.
    Its errors become DownloadError naming the repo, file and revision."""
    _check_online(f"{repo}/{filename}@{revision}")
    from huggingface_hub import hf_hub_download

    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, endpoint=endpoint))
    except _hf_errors() as error:
        raise DownloadError(f"{repo}/{filename}@{revision} ({endpoint or 'huggingface.co'}): "
                            f"{_first_line(error)}") from None


def hf_remote_size(repo: str, filename: str, revision: str) -> int | None:
    """The size the hub (at `$HF_ENDPOINT`) reports for a file, None when unknown."""
    _check_online(f"{repo}/{filename}@{revision}")
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        return get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)).size
    except _hf_errors() as error:
        raise DownloadError(f"{repo}/{filename}@{revision}: {_first_line(error)}") from None


def _hf_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises for a file it cannot get: its HTTP and not-found errors, network errors."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    errors: tuple[type[BaseException], ...] = (HfHubHTTPError, EntryNotFoundError, OSError)
    for client in ("httpx2", "httpx"):  # huggingface_hub 2.x uses httpx2, 1.x httpx: their network errors
        with contextlib.suppress(ImportError):
            errors += (importlib.import_module(client).HTTPError,)
    return errors


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
