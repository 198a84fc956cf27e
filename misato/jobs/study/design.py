"""The study file (`STUDY/study.json`): which images, which methods, the questions, and the per-participant order.

Schema `misato.jobs.study/2` (written by `misato study create`, read by `serve` and `tally`)::

    schema, study_id (random hex; the answer database is bound to it), created, seed (picked the images only)
    secret: 64 random hex digits, created with the study; every order a participant sees is drawn from it. The
            study file is never served: keep it private (it also names the method of every option)
    title, instructions: shown to participants
    questions: [{key, metric, text}]   key: the form field; metric: the `evaluators.metrics` study metric it feeds
    methods: [name, ...]                 the compared methods (never shown to participants)
    attention_pass_fraction: float       a participant passes the attention checks when they picked the ground
                                         truth in at least this share of their attention-check questions
    image_max_side, image_format: the web-size images' largest side and format
    source: {runs, folders: {method: folder}, dataset: {name, kind, root, content_sha256, n_images, domains,
             mask_hole_is_white, resolution}}
    items: [{id, stem, domain, input, attention_check, options: [{id, image, method}]}]   (both lists shuffled)
        input: the masked input (hole drawn grey); image: a file in media/; method: null for the untouched ground
        truth, which only attention-check items hold (in place of one method's output)

Blinding: ids and image names are random hex (no method name anywhere a participant can see); the media files
are written in a random order with one fixed mtime and padded to one byte size (`misato.jobs.study.create`). The order
of the items and of each item's options is HMAC-SHA256(secret, participant id and item id) (`item_order`,
`option_order`): a participant sees the same order after a reload, another participant another order, and
nobody without the secret can tell which method sits where, whatever they know of the seed or their own id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from misato.io import atomic_write_json

SCHEMA = "misato.jobs.study/2"
STUDY_FILE = "study.json"
MEDIA_DIR = "media"
DATABASE_FILE = "answers.sqlite"

ID_PATTERN = re.compile(r"[0-9a-f]{16}")
SECRET_PATTERN = re.compile(r"[0-9a-f]{64}")
IMAGE_PATTERN = re.compile(r"[0-9a-f]{16}\.(jpg|png)")
KEY_PATTERN = re.compile(r"[a-z][a-z_]*")


@dataclass(frozen=True)
class Question:
    """One question asked about every item: `key` names its form field, `metric` the result column it feeds."""

    key: str
    metric: str
    text: str


# The paper's two questions (Table 2 (c)); a study file may word them otherwise.
QUESTIONS: tuple[Question, ...] = (
    Question("context", "context_stability_pct",
             "Context stability: which result adds nothing new inside the grey region (no new object, person or "
             "text), only continuing what is around it?"),
    Question("visual", "visual_consistency_pct",
             "Visual consistency: in which result do the colours and brightness inside the grey region best match "
             "the surroundings?"),
)
TITLE = "Which inpainting looks right?"
INSTRUCTIONS = ("Each page shows a photo with a grey region removed, then several candidate fills of that region. "
                "For each question pick the one candidate you find best. Your answers are saved as you go: you can "
                "close the page and come back later on the same browser.")


@dataclass(frozen=True)
class Option:
    """A candidate of an item: an image in media/ and the method that made it (None: the untouched ground truth)."""

    id: str
    image: str
    method: str | None


@dataclass(frozen=True)
class Item:
    """One image of the study: its masked input and its candidates."""

    id: str
    stem: str
    domain: str | None
    input: str
    options: tuple[Option, ...]
    attention_check: bool = False

    def option(self, option_id: str) -> Option | None:
        return next((o for o in self.options if o.id == option_id), None)

    @property
    def truth(self) -> Option | None:
        """The ground-truth option (attention checks only)."""
        return next((o for o in self.options if o.method is None), None)


@dataclass(frozen=True)
class Study:
    """A study file (module docstring). `item(id)` looks an item up; `images` lists every file in media/."""

    study_id: str
    seed: int
    secret: str
    questions: tuple[Question, ...]
    methods: tuple[str, ...]
    items: tuple[Item, ...]
    source: dict[str, Any]
    attention_pass_fraction: float = 0.5
    title: str = TITLE
    instructions: str = INSTRUCTIONS
    image_max_side: int = 512
    image_format: str = "jpg"
    created: str = ""
    schema: str = SCHEMA
    _by_id: dict[str, Item] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {item.id: item for item in self.items})

    def item(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    @property
    def images(self) -> list[str]:
        return [name for item in self.items for name in (item.input, *(o.image for o in item.options))]

    @property
    def attention_checks(self) -> int:
        return sum(item.attention_check for item in self.items)

    def to_json(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if key != "_by_id"}
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_json(cls, data: Any, source: str) -> "Study":
        """Validate a parsed study file; every error names `source` and the key."""
        def fail(message: str) -> None:
            raise ValueError(f"{source}: {message}")

        if isinstance(data, dict) and data.get("schema") == "misato.jobs.study/1":
            fail("a study of misato.jobs.study/1, whose orders anyone could recompute from the seed: re-create it with "
                 "`misato study create` (schema misato.jobs.study/2)")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            fail(f"not a study file (schema must be {SCHEMA!r})")
        try:
            questions = tuple(Question(**q) for q in data["questions"])
            items = tuple(Item(**{**item, "options": tuple(Option(**o) for o in item["options"])})
                          for item in data["items"])
            study = cls(**{**data, "questions": questions, "items": items, "methods": tuple(data["methods"])})
        except (KeyError, TypeError) as error:
            raise ValueError(f"{source}: malformed study file ({type(error).__name__}: {error})") from error
        study.check(fail)
        return study

    def check(self, fail) -> None:
        """Call `fail(message)` on the first inconsistency (ids, questions, methods, options, attention checks)."""
        from evaluators.metrics import METRICS

        if not ID_PATTERN.fullmatch(str(self.study_id)):
            fail("study_id must be 16 hex digits")
        if not SECRET_PATTERN.fullmatch(str(self.secret)):
            fail("secret must be 64 hex digits")
        keys = [q.key for q in self.questions]
        if not keys or len(set(keys)) != len(keys) or not all(KEY_PATTERN.fullmatch(str(k)) for k in keys) \
                or "item" in keys:
            fail(f"questions need unique lower-case keys other than 'item' (the item's form field), got {keys}")
        for q in self.questions:
            if q.metric not in METRICS or METRICS[q.metric].aggregate != "study":
                fail(f"question {q.key!r}: metric {q.metric!r} is not a study metric of evaluators.metrics")
        if len(self.methods) < 2 or len(set(self.methods)) != len(self.methods) or not all(
                isinstance(m, str) and m for m in self.methods):
            fail(f"methods must be 2 or more distinct names, got {list(self.methods)}")
        if not 0.0 <= float(self.attention_pass_fraction) <= 1.0:
            fail(f"attention_pass_fraction must be in [0, 1], got {self.attention_pass_fraction}")
        if not self.items or len(self._by_id) != len(self.items):
            fail("items must be a non-empty list with distinct ids")
        option_ids: set[str] = set()
        for item in self.items:
            if not ID_PATTERN.fullmatch(str(item.id)):
                fail(f"item id {item.id!r} must be 16 hex digits")
            if len(item.options) < 2:
                fail(f"item {item.id}: needs 2 or more options")
            for option in item.options:
                if not ID_PATTERN.fullmatch(str(option.id)) or option.id in option_ids:
                    fail(f"item {item.id}: option id {option.id!r} must be 16 hex digits, unique in the study")
                option_ids.add(option.id)
                if option.method is not None and option.method not in self.methods:
                    fail(f"item {item.id}: option {option.id} names unknown method {option.method!r}")
            truths = sum(o.method is None for o in item.options)
            if item.attention_check and truths != 1:
                fail(f"item {item.id}: an attention check holds exactly one ground-truth option (method null)")
            if not item.attention_check and truths:
                fail(f"item {item.id}: only attention checks hold a ground-truth option (method null)")
        for name in self.images:
            if not IMAGE_PATTERN.fullmatch(str(name)):
                fail(f"image name {name!r} must be 16 hex digits and .jpg or .png")


def load_study(folder: str | os.PathLike) -> Study:
    """Read and validate `folder/study.json`; every image it names must be in `folder/media/`."""
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: not a study folder (no {STUDY_FILE}; make one with `misato study create`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON file ({error})") from error
    study = Study.from_json(data, str(path))
    missing = [name for name in study.images if not (Path(folder) / MEDIA_DIR / name).is_file()]
    if missing:
        raise ValueError(f"{Path(folder) / MEDIA_DIR}: {len(missing)} image(s) of the study are missing, "
                         f"e.g. {missing[:3]}")
    return study


def write_study(folder: str | os.PathLike, study: Study) -> Path:
    """Write `folder/study.json` atomically (after its images: a study folder is complete once it exists)."""
    path = Path(folder) / STUDY_FILE
    atomic_write_json(path, study.to_json())
    return path


def new_secret() -> str:
    """A fresh study secret (256 random bits in hex)."""
    return secrets.token_hex(32)


def keyed(study: Study, purpose: str) -> bytes:
    """HMAC-SHA256 of `purpose` under the study's secret: the one source of every per-participant random draw and
    of the participant cookie's signature."""
    return hmac.new(bytes.fromhex(study.secret), purpose.encode(), hashlib.sha256).digest()


def _shuffled(values: list, study: Study, purpose: str) -> list:
    values = list(values)
    random.Random(int.from_bytes(keyed(study, purpose), "big")).shuffle(values)
    return values


def item_order(study: Study, participant: str) -> list[Item]:
    """The items in the order `participant` sees them (attention checks mixed in)."""
    return _shuffled(list(study.items), study, f"items:{participant}")


def option_order(study: Study, participant: str, item: Item) -> list[Option]:
    """The options of `item` in the order `participant` sees them."""
    return _shuffled(list(item.options), study, f"options:{participant}:{item.id}")
