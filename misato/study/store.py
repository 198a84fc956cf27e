"""The answer database (`STUDY/answers.sqlite`): SQLite through the standard library, in WAL mode.

Tables::

    meta(key, value)                       study_id: the study file the answers belong to
    participants(id, created)              anonymous random ids (nothing else is kept about a participant)
    answers(participant, item, question, option, shown, created)
        one row per question of an answered item, PRIMARY KEY (participant, item, question); shown: the option
        ids in the order the participant saw them (JSON)

An item's answer (every question) is written in one `BEGIN IMMEDIATE` transaction, so concurrent writers are
serialised and a participant has at most one answer per item: repeating the same answer changes nothing
("same"), a different second answer is refused ("conflict") and the first one kept. Every call opens its own
connection (safe from any thread); WAL lets the tally read while the server writes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from misato.environment import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL REFERENCES participants(id),
    item TEXT NOT NULL,
    question TEXT NOT NULL,
    option TEXT NOT NULL,
    shown TEXT NOT NULL,
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


class AnswerStore:
    """The answer database of one study (module docstring). `open` creates it or checks it belongs to the study."""

    def __init__(self, path: str | os.PathLike, study_id: str) -> None:
        self.path = Path(path)
        self.study_id = study_id

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
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys=ON")
            yield db

    def new_participant(self) -> str:
        """A new anonymous participant id (`PARTICIPANT_PATTERN`: 128 random bits in hex)."""
        participant = secrets.token_hex(16)
        with self._connect() as db:
            db.execute("INSERT INTO participants(id, created) VALUES (?, ?)", (participant, utc_now()))
        return participant

    def has_participant(self, participant: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM participants WHERE id = ?", (participant,)).fetchone() is not None

    def answered_items(self, participant: str) -> set[str]:
        with self._connect() as db:
            return {row[0] for row in db.execute("SELECT DISTINCT item FROM answers WHERE participant = ?",
                                                 (participant,))}

    def add_answer(self, participant: str, item: str, choices: dict[str, str], shown: list[str]) -> str:
        """Store the answer of `participant` to `item` ({question: option}); STORED, SAME (this exact answer was
        already stored: nothing written) or CONFLICT (another answer was stored first: kept, nothing written)."""
        created = utc_now()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                before = dict(db.execute("SELECT question, option FROM answers WHERE participant = ? AND item = ?",
                                         (participant, item)).fetchall())
                if not before:
                    db.executemany(
                        "INSERT INTO answers(participant, item, question, option, shown, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(participant, item, q, o, json.dumps(shown), created) for q, o in choices.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return STORED if not before else SAME if before == choices else CONFLICT

    def answers(self) -> list[Answer]:
        """Every stored row, by participant, item and question."""
        with self._connect() as db:
            rows = db.execute("SELECT participant, item, question, option, shown, created FROM answers "
                              "ORDER BY participant, item, question").fetchall()
        return [Answer(p, i, q, o, tuple(json.loads(s)), c) for p, i, q, o, s, c in rows]
