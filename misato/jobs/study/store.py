"""The answer database (`STUDY/answers.sqlite`): SQLite through the standard library, in WAL mode.

Tables::

    meta(key, value)                       study_id: the study file the answers belong to
    participants(id, external, created)    anonymous random ids; external: the recruiting platform's id from the
                                           study link (e.g. ?PROLIFIC_PID=), null without one; nothing else is kept
    views(participant, item, shown_at)     when an item was first shown to a participant (Unix seconds)
    answers(participant, item, question, option, shown, position, seconds, created)
        one row per question of an answered item, PRIMARY KEY (participant, item, question); shown: the option
        ids in the order the participant saw them (JSON); position: the item's place (0-based) in the
        participant's order; seconds: from the item's first showing to the answer (null when never shown)

An item's answer (every question) is written in one `BEGIN IMMEDIATE` transaction, so concurrent writers are
serialised and a participant has at most one answer per item: repeating the same answer changes nothing
("same"), a different second answer is refused ("conflict") and the first one kept. Each thread keeps its own
connection (a connection is never shared between threads); WAL lets the tally read while the server writes.
Answers are written with synchronous=FULL (fsync at commit: an acknowledged answer survives a killed server and a
power cut); the time an item was first shown with NORMAL (it survives a killed server).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from misato.environment import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, external TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS views (
    participant TEXT NOT NULL REFERENCES participants(id),
    item TEXT NOT NULL,
    shown_at REAL NOT NULL,
    PRIMARY KEY (participant, item)
);
CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL REFERENCES participants(id),
    item TEXT NOT NULL,
    question TEXT NOT NULL,
    option TEXT NOT NULL,
    shown TEXT NOT NULL,
    position INTEGER,
    seconds REAL,
    created TEXT NOT NULL,
    PRIMARY KEY (participant, item, question)
);
"""
BUSY_TIMEOUT_S = 30.0
PARTICIPANT_PATTERN = re.compile(r"[0-9a-f]{32}")

STORED, SAME, CONFLICT = "stored", "same", "conflict"


@dataclass(frozen=True)
class Answer:
    """One stored row: `participant` picked `option` for `question` of `item`."""

    participant: str
    item: str
    question: str
    option: str
    shown: tuple[str, ...]
    created: str
    position: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Participant:
    """A participant row: the id, the platform's id from the link (or None) and when they started."""

    id: str
    external: str | None
    created: str


class AnswerStore:
    """The answer database of one study (module docstring). `open` creates it or checks it belongs to the study."""

    def __init__(self, path: str | os.PathLike, study_id: str) -> None:
        self.path = Path(path)
        self.study_id = study_id
        self._local = threading.local()

    @classmethod
    def open(cls, path: str | os.PathLike, study_id: str, create: bool = True) -> "AnswerStore":
        """The store at `path`; created (WAL mode) when absent and `create`, else ValueError when absent or when it
        holds the answers of another study."""
        path = Path(path)
        if not path.is_file() and not create:
            raise ValueError(f"{path}: no answers yet (start the study with `misato study serve`)")
        store = cls(path, study_id)
        with store._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('study_id', ?)", (study_id,))
            found = db.execute("SELECT value FROM meta WHERE key = 'study_id'").fetchone()[0]
        if found != study_id:
            raise ValueError(f"{path}: holds the answers of another study ({found}, not {study_id}); "
                             "a re-created study needs a fresh folder")
        return store

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (opened on first use; dropped after an error, reopened on the next call)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        try:
            yield db
        except sqlite3.Error:
            self._local.db = None
            db.close()
            raise

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    def new_participant(self, external: str | None = None) -> str:
        """A new anonymous participant id (`new_id`), stored with the platform's id `external`."""
        participant = new_id()
        self.add_participant(participant, external)
        return participant

    def add_participant(self, participant: str, external: str | None = None) -> bool:
        """Store `participant` (an id from `new_id`) unless known; True when it was new."""
        if not PARTICIPANT_PATTERN.fullmatch(participant):
            raise ValueError(f"participant id {participant!r} must be 32 hex digits")
        with self._connect() as db:
            return db.execute("INSERT OR IGNORE INTO participants(id, external, created) VALUES (?, ?, ?)",
                              (participant, external, utc_now())).rowcount == 1

    def participants(self) -> list[Participant]:
        """Every participant, answers or not, by creation time."""
        with self._connect() as db:
            rows = db.execute("SELECT id, external, created FROM participants ORDER BY created, id").fetchall()
        return [Participant(*row) for row in rows]

    def external_ids(self) -> dict[str, str | None]:
        return {p.id: p.external for p in self.participants()}

    def mark_shown(self, participant: str, item: str) -> None:
        """Record the first time `item` was shown to `participant` (a reload keeps the first time)."""
        with self._connect() as db:
            db.execute("PRAGMA synchronous=NORMAL")  # no fsync for a view: a power cut may lose it, never an answer
            db.execute("INSERT OR IGNORE INTO views(participant, item, shown_at) VALUES (?, ?, ?)",
                       (participant, item, time.time()))

    def has_participant(self, participant: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM participants WHERE id = ?", (participant,)).fetchone() is not None

    def answered_items(self, participant: str) -> set[str]:
        with self._connect() as db:
            return {row[0] for row in db.execute("SELECT DISTINCT item FROM answers WHERE participant = ?",
                                                 (participant,))}

    def add_answer(self, participant: str, item: str, choices: dict[str, str], shown: list[str],
                   position: int | None = None) -> str:
        """Store the answer of `participant` to `item` ({question: option}) with the option order they saw and the
        item's place in their order; STORED, SAME (this exact answer was already stored: nothing written) or
        CONFLICT (another answer was stored first: kept, nothing written)."""
        created, now = utc_now(), time.time()
        with self._connect() as db:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                before = dict(db.execute("SELECT question, option FROM answers WHERE participant = ? AND item = ?",
                                         (participant, item)).fetchall())
                if not before:
                    view = db.execute("SELECT shown_at FROM views WHERE participant = ? AND item = ?",
                                      (participant, item)).fetchone()
                    seconds = round(max(0.0, now - view[0]), 3) if view else None
                    db.executemany(
                        "INSERT INTO answers(participant, item, question, option, shown, position, seconds, created) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(participant, item, q, o, json.dumps(shown), position, seconds, created)
                         for q, o in choices.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return STORED if not before else SAME if before == choices else CONFLICT

    def answers(self) -> list[Answer]:
        """Every stored row, by participant, item and question."""
        with self._connect() as db:
            rows = db.execute("SELECT participant, item, question, option, shown, created, position, seconds "
                              "FROM answers ORDER BY participant, item, question").fetchall()
        return [Answer(p, i, q, o, tuple(json.loads(s)), c, n, t) for p, i, q, o, s, c, n, t in rows]

    def healthy(self) -> bool:
        """Whether the database answers a query (for /healthz)."""
        try:
            with self._connect() as db:
                return db.execute("SELECT 1 FROM meta WHERE key = 'study_id'").fetchone() is not None
        except sqlite3.Error:
            return False


def new_id() -> str:
    """A fresh participant id (`PARTICIPANT_PATTERN`: 128 random bits in hex)."""
    return secrets.token_hex(16)
