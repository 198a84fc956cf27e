"""One lock per output folder: two jobs never write the same folder at once.

`folder_lock(OUT)` holds `OUT/.misato.lock` while a job writes OUT (`misato run`, `reproduce`, `demo`,
`inpaint`, `score`, `train`). The lock is two things in one file:

- an advisory `fcntl.flock` on it, which the kernel drops when the holder ends in any way (SIGKILL included), and
- the owner's description written in it (pid, host, process start time, command, since when), so that a second
  process can say who holds the folder.

A second process refuses at once with `FolderLockedError` (a ValueError: one line on the command line) naming the
owner. A lock file whose flock is free but whose text names a process of this host that is gone (same pid, other
start time, or no such pid) is stale: it is taken over with a warning naming the old owner. A free lock naming a
process on another host is refused (its liveness cannot be checked from here; the message says which file to
delete once that job is gone). The lock is released (file removed) on every exit of the `with` block: normal,
exception, Ctrl-C (KeyboardInterrupt) and SIGTERM (turned into SystemExit while the lock is held in the main
thread); folders it created that the job left empty are removed with it. A lock file that cannot be written (a
full disk) is an OSError naming it.

Re-entrant within one process (a locked job calling another locked API on the same folder). Under a distributed
launch (`accelerate launch`, torchrun: environment RANK > 0) only rank 0 takes the lock; when rank 0 is refused
it exits and the launcher stops the other ranks.

Standard library only: this module is imported before any heavy work starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

LOCK_NAME = ".misato.lock"
_ATTEMPTS = 10  # a lock file replaced between our open and our flock is retried this many times
_HELD: dict[str, list[int]] = {}  # resolved lock path -> [fd, depth] of the locks this process holds


class FolderLockedError(ValueError):
    """The output folder is in use by another process; the message names it and the lock file."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of an output folder."""
    return Path(folder) / LOCK_NAME


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]  # field 22 of proc(5), counted after the command name


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the lock's owner (a process of this host) still runs: its pid exists with the same start time
    (where known, so a reused pid does not count)."""
    pid, started = owner.get("pid"), owner.get("process_start")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    now = _process_start(pid)
    return started is None or now is None or now == started


def _identity() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python",
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def describe(owner: dict[str, Any] | None) -> str:
    """`pid 123 on host h (misato run ..., since 2026-12-04T15:00:00+00:00)`, or a note when unknown."""
    if not owner:
        return "another process (its lock file is still being written)"
    return (f"pid {owner.get('pid')} on host {owner.get('host')} ({owner.get('command', '?')}, "
            f"since {owner.get('since', '?')})")


def read_owner(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The owner written in the folder's lock file, None when there is none (or it cannot be read)."""
    try:
        return _parse(lock_path(folder).read_text())
    except OSError:
        return None


def is_locked(folder: str | os.PathLike) -> bool:
    """Whether the folder's lock is held now: by this process, by a live process of this host, or by a process of
    another host (which cannot be checked from here). Reads the file only (never takes the flock)."""
    path = lock_path(folder)
    if str(path.resolve()) in _HELD:
        return True
    owner = read_owner(folder)
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    return _alive(owner)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return None
    return owner if isinstance(owner, dict) else None


def _read(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    return _parse(os.read(fd, 1 << 16).decode("utf-8", "replace"))


def _write(fd: int, owner: dict[str, Any]) -> None:
    """The owner's description (not fsynced: after a crash the flock is gone anyway, and an empty file is free)."""
    data = (json.dumps(owner) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (the previous holder may have removed it meanwhile)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _acquire(path: Path) -> int:
    """Open, flock and claim the lock file (its folder exists: `folder_lock` made it); returns its descriptor.
    Raises FolderLockedError when it is held."""
    host = socket.gethostname()
    for _ in range(_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read(fd)
            os.close(fd)
            raise FolderLockedError(f"{path.parent} is in use by {describe(owner)}; a second job on one output "
                                    f"folder would redo or mix its work: wait for it or stop it (lock {path})"
                                    ) from None
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise FolderLockedError(f"{path}: this file system cannot lock files ({error.strerror}); "
                                        "use an output folder on a local disk") from None
            raise
        if not _same_file(fd, path):  # the holder released (removed) it between our open and our flock
            os.close(fd)
            continue
        owner = _read(fd)
        if owner and owner.get("host") != host:
            os.close(fd)
            raise FolderLockedError(f"{path.parent} is in use by {describe(owner)} (lock {path}); if that job is "
                                    f"no longer running, delete {path}")
        if owner and owner.get("pid") != os.getpid() and _alive(owner):
            os.close(fd)
            raise FolderLockedError(f"{path.parent} is in use by {describe(owner)} (lock {path}); wait for it "
                                    "or stop it")
        if owner:
            log.warning("%s: taking over the lock of %s, which is no longer running", path.parent, describe(owner))
        try:
            _write(fd, _identity())
        except OSError as error:  # a full disk: named, and no lock file left behind
            _release(path, fd)
            raise OSError(error.errno, error.strerror, str(path)) from None
        return fd
    raise FolderLockedError(f"{path}: the lock file kept being replaced; is another job starting on "
                            f"{path.parent}?")


def _release(path: Path, fd: int) -> None:
    try:
        if _same_file(fd, path):
            path.unlink()
    finally:
        os.close(fd)  # drops the flock


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of output folder `folder` (created if needed) for the `with` block; yields the lock path.
    Raises FolderLockedError before the block runs when another live process holds it (see the module docstring).
    """
    path = lock_path(folder)
    if int(os.environ.get("RANK", "0") or 0) > 0:  # a distributed job's other ranks: rank 0 holds the lock
        yield path
        return
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"{path.parent} is a file, not a folder (an output folder is expected)")
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    try:
        fd = _acquire(path)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[key] = [fd, 1]
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main and previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield path
    finally:
        if main and previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        del _HELD[key]
        _release(path, fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders the lock created (deepest first) that are still empty: a job that wrote nothing leaves
    nothing behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the job wrote there), or gone
            return
