"""The study is blind and holds its integrity (issue 23): nothing a participant can see tells the method of a
candidate or which items are attention checks, and no other site can act for a participant.

The three channels that broke blinding before are rerun as scripts against a served 50-item study on 127.0.0.1:
(1) ordering candidates by the media's validators (ETag / Last-Modified, i.e. file mtimes), (2) recomputing the
option and item orders from the public seed and the participant's own id, (3) ranking candidates by
Content-Length. Each must recover no better than chance: its hits stay under the binomial quantile at
1 - 1e-6 of Binomial(trials, 1/k) (a blinded study exceeds it once in a million runs; the unblinded code hit
every trial). The runs are written by hand (no inpainter): three smooth fills of the hole whose JPEG sizes differ
in a steady order, as real methods' do, so the size channel has something to find when nothing pads it.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy.stats import binom

from misato.io import atomic_write_json
from misato.outputs import MANIFEST_SCHEMA
from misato.seeds import sample_seed
from misato.jobs.study.create import CreateConfig, create_study
from misato.jobs.study.design import MEDIA_DIR, STUDY_FILE, load_study
from misato.jobs.study.media import MEDIA_MTIME, pad_jpeg, padding_segments
from test_study import Client, live_server, parse_item

FILLS = ("flat", "blur", "soft")  # method name -> how it fills the hole (sizes: flat < soft < blur < truth)
BOUND_P = 1e-6


def make_fake_runs(root: Path, count: int, methods: tuple[str, ...] = FILLS) -> Path:
    """RUNS/predictions/data/<method>/ with a runner-style manifest and composites: the ground truth outside the
    hole, a smooth fill inside (flat mean colour, or the truth blurred)."""
    from conftest import make_dataset
    from misato.data import load_dataset

    stems = [f"{i:04d}" for i in range(count)]
    make_dataset(root / "data", stems)
    dataset = load_dataset(root / "data")
    manifest_dataset = {"name": "data", "root": str(root / "data"), "content_sha256": dataset.content_hash(),
                        "mask_hole_is_white": True}
    for index, method in enumerate(methods):
        folder = root / "runs" / "predictions" / "data" / method
        (folder / "composite").mkdir(parents=True)
        for stem in stems:
            truth = Image.open(root / "data" / "image" / f"{stem}.png").convert("RGB")
            hole = np.asarray(Image.open(root / "data" / "mask" / f"{stem}.png")) >= 128
            kind = FILLS[index % len(FILLS)]
            if kind == "flat":
                fill = np.broadcast_to(np.asarray(truth, float).mean(axis=(0, 1)), hole.shape + (3,))
            else:
                fill = np.asarray(truth.filter(ImageFilter.GaussianBlur(1.0 if kind == "blur" else 4.0)), float)
            out = np.where(hole[..., None], fill, np.asarray(truth, float)).astype(np.uint8)
            Image.fromarray(out).save(folder / "composite" / f"{stem}.png")
        atomic_write_json(folder / "manifest.json", {"schema": MANIFEST_SCHEMA, "dataset": manifest_dataset,
                                                     "samples": {stem: {} for stem in stems}})
    return root / "runs"


@pytest.fixture(scope="module")
def big_study(tmp_path_factory) -> Path:
    """A served-size study: 40 images + 10 attention checks, three methods."""
    root = tmp_path_factory.mktemp("blind")
    runs = make_fake_runs(root, 50)
    create_study(CreateConfig(runs, FILLS, 40, root / "study", seed=0, attention_checks=10))
    return root / "study"


def strip_padding(data: bytes) -> bytes:
    """The JPEG without the comment segments of zeros after its start-of-image marker (and JFIF APP0 segment)."""
    start = 2
    if data[2:4] == b"\xff\xe0":
        start += 2 + int.from_bytes(data[4:6], "big")
    at = start
    while data[at:at + 2] == b"\xff\xfe":
        length = int.from_bytes(data[at + 2:at + 4], "big")
        assert not any(data[at + 4:at + 2 + length]), "a padding segment carries data"
        at += 2 + length
    return data[:start] + data[at:]


# ---------------------------------------------------------------- files
def test_padding_segments_carry_nothing_and_keep_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    buffer = tmp_path / "a.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, quality=90)
    data = buffer.read_bytes()
    for extra in (0, 4, 5, 1000, 65537, 65538, 65540, 200_003):
        padded = pad_jpeg(data, len(data) + extra)
        assert len(padded) == len(data) + extra and strip_padding(padded) == data
        assert padded[2:4] == b"\xff\xe0"  # the JFIF APP0 segment still first
        (tmp_path / "p.jpg").write_bytes(padded)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "p.jpg")), np.asarray(Image.open(buffer)))
    for bad in (1, 2, 3):
        with pytest.raises(ValueError, match="at least 4 bytes"):
            padding_segments(bad)
    with pytest.raises(ValueError, match="not a JPEG"):
        pad_jpeg(b"\x89PNG", 100)


def test_media_files_share_one_size_and_one_mtime_and_decode_unchanged(big_study):
    study = load_study(big_study)
    files = sorted((big_study / MEDIA_DIR).iterdir())
    assert len(files) == 50 * 4 == len(study.images)
    assert len({f.stat().st_size for f in files}) == 1  # every file one byte size
    assert {f.stat().st_mtime for f in files} == {MEDIA_MTIME}  # one fixed mtime, nothing of the write order
    for path in files[:20]:
        data = path.read_bytes()
        original = strip_padding(data)
        assert len(original) < len(data)
        (path.parent.parent / "x.jpg").write_bytes(original)
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(path.parent.parent / "x.jpg")))
        (path.parent.parent / "x.jpg").unlink()
    raw = json.loads((big_study / STUDY_FILE).read_text())
    assert re.fullmatch(r"[0-9a-f]{64}", raw["secret"]) and raw["schema"] == "misato.jobs.study/2"
    checks = [i for i, item in enumerate(raw["items"]) if item["attention_check"]]
    assert checks != list(range(40, 50))  # the checks are not the file's last items (1 in 10^10 by chance)
    stored_orders = [tuple(o["method"] for o in item["options"]) for item in raw["items"]
                     if not item["attention_check"]]
    assert len(set(stored_orders)) > 1  # options not stored in --methods order


def test_a_version_1_study_is_refused_with_a_clear_message(big_study, tmp_path):
    import shutil

    folder = Path(shutil.copytree(big_study, tmp_path / "old"))
    data = json.loads((folder / STUDY_FILE).read_text())
    data["schema"] = "misato.jobs.study/1"
    del data["secret"]
    (folder / STUDY_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="re-create it"):
        load_study(folder)


# ---------------------------------------------------------------- the three channels, as scripts
def _walk(base: str, study, rng: random.Random) -> list[dict]:
    """A participant answering every item at random; per item: its id, the displayed options (id, media headers,
    size) and the participant id."""
    client = Client(base)
    page = client.start()
    seen = []
    while 'name="item"' in page:
        item, options, _ = parse_item(page)
        images = re.findall(r'<figure class="candidate"><a href="/media/([^"]+)"', page)
        shown = []
        for option_id, image in zip(options["context"], images):
            status, body, headers = client.request(f"/media/{image}")
            assert status == 200
            shown.append({"id": option_id, "headers": headers, "size": int(headers["content-length"])})
        seen.append({"item": item, "options": shown, "participant": client.participant})
        choice = {q: rng.choice(options[q]) for q in options}
        code, _, _ = client.request("/answer", {"item": item, **choice}, json_api=True)
        assert code == 201
        page = client.request("/study")[1]
    return seen


def _bound(trials: int, p: float, tests: int = 1) -> int:
    return int(binom.ppf(1 - BOUND_P / tests, trials, p))


def test_three_channels_recover_no_better_than_chance(big_study):
    study = load_study(big_study)
    k = len(FILLS)
    method_of = {o.id: o.method for item in study.items for o in item.options}
    with live_server(big_study) as (base, _):
        walks = [_walk(base, study, random.Random(seed)) for seed in range(2)]
    pages = [page for walk in walks for page in walk]
    assert len(pages) == 100
    ordinary = [p for p in pages if not study.item(p["item"]).attention_check]
    checks = [p for p in pages if study.item(p["item"]).attention_check]

    # (1) validators: no ETag / Last-Modified; ordering by them (display order on ties) finds methods[0] at chance
    for page in pages:
        for option in page["options"]:
            assert "etag" not in option["headers"] and "last-modified" not in option["headers"]
    hits = 0
    for page in ordinary:
        ranked = sorted(page["options"], key=lambda o: (o["headers"].get("last-modified", ""),
                                                        o["headers"].get("etag", "")))
        hits += method_of[ranked[0]["id"]] == FILLS[0]
    assert hits <= _bound(len(ordinary), 1 / k), f"validator order found the first method on {hits}"

    # (2) seed + participant id: the orders the old formula gives (study seed 0, stored --methods order)
    hits = 0
    for page in ordinary:
        permutation = list(range(k))
        random.Random(sample_seed(f"{page['participant']}:{page['item']}", study.seed)).shuffle(permutation)
        guess = page["options"][permutation.index(0)]  # where methods[0] would be shown
        hits += method_of[guess["id"]] == FILLS[0]
    assert hits <= _bound(len(ordinary), 1 / k), f"seed + id recovered the method on {hits}"
    n_images = len(study.items) - study.attention_checks
    guessed = [(walk, position) for walk in walks for position in range(len(walk))
               if _old_item_position(walk[0]["participant"], study, position) >= n_images]  # checks stored last
    predicted = len(guessed)
    check_hits = sum(study.item(walk[position]["item"]).attention_check for walk, position in guessed)
    assert predicted == 2 * study.attention_checks
    assert check_hits <= _bound(predicted, study.attention_checks / len(study.items)), \
        f"seed + id found {check_hits} of {predicted} attention checks"

    # (3) sizes: every candidate one Content-Length; the largest is the ground truth only by chance, and no
    # method is the smallest more often than chance
    assert len({o["size"] for page in pages for o in page["options"]}) == 1
    largest = sum(method_of[max(page["options"], key=lambda o: o["size"])["id"]] is None for page in checks)
    assert largest <= _bound(len(checks), 1 / k), f"the largest file was the truth on {largest} of {len(checks)}"
    smallest = [method_of[min(page["options"], key=lambda o: o["size"])["id"]] for page in ordinary]
    assert max(smallest.count(m) for m in FILLS) <= _bound(len(ordinary), 1 / k, tests=k), smallest


def _old_item_position(participant: str, study, position: int) -> int:
    """The stored index the old formula put at screen `position` of `participant`'s item order."""
    permutation = list(range(len(study.items)))
    random.Random(sample_seed(f"{participant}:items", study.seed)).shuffle(permutation)
    return permutation[position]
