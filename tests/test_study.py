"""The user study (Table 2 (c)): `create` from real runner outputs, the server's rules over real HTTP (a uvicorn
server in a thread on a free loopback port), 20 concurrent participants, the tally of a known answer set, the
leaderboard's measured Table 2 (c), and the CLI.

The runs are real `baselines.runner.inpaint_dataset` outputs of three classical/dummy inpainters on 12 tiny MISATO
stems; their folders carry paper method names (lama, asuka-sd, co-mod) so the leaderboard's paper rows are
exercised; the numbers mean nothing about those methods.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from misato.cli import main
from misato.jobs.study.create import CreateConfig, create_study
from misato.jobs.study.design import DATABASE_FILE, MEDIA_DIR, STUDY_FILE, load_study
from misato.jobs.study.server import StudyApp, bind_socket, server
from misato.jobs.study.store import AnswerStore
from misato.jobs.study.tally import tally, write_results

STEMS = ["0000", "0001", "0002", "0003", "0500", "0501", "0502", "0503", "1000", "1001", "1500", "1501"]
# run folder label -> the inpainter that made it
LABELS = {"lama": "telea", "asuka-sd": "ns", "co-mod": "dummy"}
METHODS = tuple(LABELS)
TOKEN = "organiser-secret-token"


def make_runs(root: Path) -> Path:
    """A `misato run`-style folder: RUNS/predictions/data/<label>/ from the real runner."""
    from conftest import make_dataset
    from baselines.runner import inpaint_dataset

    make_dataset(root / "data", STEMS)
    for label, spec in LABELS.items():
        inpaint_dataset(root / "data", spec, root / "runs" / "predictions" / "data" / label, progress=False)
    return root / "runs"


def make_study(runs: Path, out: Path, images: int = 6, checks: int = 2, seed: int = 0):
    return create_study(CreateConfig(runs, METHODS, images, out, seed, checks))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.mktemp("study-runs"))


@pytest.fixture(scope="module")
def template_study(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study-template") / "study"
    make_study(runs, out)
    return out


@pytest.fixture
def study_dir(template_study, tmp_path) -> Path:
    """A fresh copy of the 8-item study (6 images + 2 attention checks), without answers."""
    return Path(shutil.copytree(template_study, tmp_path / "study"))


@contextmanager
def live_server(folder: Path, token: str = TOKEN):
    """The study's app served by uvicorn in a thread on a free 127.0.0.1 port: yields (base URL, app)."""
    app = StudyApp(folder, token)
    sock = bind_socket("127.0.0.1", 0)
    uv = server(app, log_level="warning")
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        uv.should_exit = True
        thread.join(10)


class Client:
    """One browser-like participant: a cookie jar, redirects followed, HTTP errors returned as responses."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.requests = 0

    def request(self, path: str, form: dict | None = None, json_api: bool = False,
                headers: dict | None = None, body: bytes | None = None) -> tuple[int, str, dict]:
        data = body if body is not None else (urlencode(form).encode() if form is not None else None)
        request = urllib.request.Request(self.base + path, data=data, headers={
            "Accept": "application/json" if json_api else "text/html", **(headers or {})})
        self.requests += 1
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(errors="replace"), _lower(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace"), _lower(error.headers)

    def start(self, external: str | None = None) -> str:
        """Consent on the start page (with the platform's id of the link, if any): the first item's page."""
        form = {"consent": "yes", **({"external": external} if external else {})}
        status, page, _ = self.request("/start", form=form)
        assert status == 200, page
        return page

    @property
    def participant(self) -> str:
        return next(c.value for c in self.cookies).split(".")[0]


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def parse_item(page: str) -> tuple[str, dict[str, list[str]], tuple[int, int]]:
    """(item id, {question: option ids in display order}, progress (answered, total)) of an item page."""
    item = re.search(r'name="item" value="([0-9a-f]+)"', page).group(1)
    options: dict[str, list[str]] = {}
    for question, option in re.findall(r'name="(context|visual)" value="([0-9a-f]+)"', page):
        options.setdefault(question, []).append(option)
    answered, total = re.search(r'id="progress">(\d+) / (\d+)<', page).groups()
    return item, options, (int(answered), int(total))


def stored(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(participant, item) -> {question: option} of the database."""
    study = load_study(folder)
    out: dict[tuple[str, str], dict[str, str]] = {}
    for a in AnswerStore.open(folder / DATABASE_FILE, study.study_id, create=False).answers():
        out.setdefault((a.participant, a.item), {})[a.question] = a.option
    return out


# ---------------------------------------------------------------- create
def test_create_picks_stratified_composites_and_hides_method_names(runs, template_study):
    study = load_study(template_study)
    data = (template_study / STUDY_FILE).read_text()
    assert sum(i.attention_check for i in study.items) == 2
    ordinary = [i for i in study.items if not i.attention_check]
    domains = [i.domain for i in ordinary]
    assert sorted(domains.count(d) for d in set(domains)) == [1, 1, 2, 2]  # 6 over 4 domains, round-robin
    assert len({i.stem for i in study.items}) == 8  # checks use other images
    media = sorted(p.name for p in (template_study / MEDIA_DIR).iterdir())
    assert media == sorted(study.images) and len(media) == 8 * (len(METHODS) + 1)
    for name in media + [i.id for i in study.items] + [o.id for i in study.items for o in i.options]:
        assert not any(m in name for m in METHODS)
    for item in study.items:
        truth = np.asarray(Image.open(runs.parent / "data" / "image" / f"{item.stem}.png").convert("RGB"), float)
        hole = np.asarray(Image.open(runs.parent / "data" / "mask" / f"{item.stem}.png")) >= 128
        masked = np.asarray(Image.open(template_study / MEDIA_DIR / item.input), float)
        assert np.abs(masked[hole] - 128).mean() < 8 and np.abs(masked[~hole] - truth[~hole]).mean() < 8
        sources = {m: np.asarray(Image.open(runs / "predictions" / "data" / m / "composite" / f"{item.stem}.png"),
                                 float) for m in METHODS}
        sources[None] = truth
        for option in item.options:
            shown = np.asarray(Image.open(template_study / MEDIA_DIR / option.image), float)
            errors = {m: np.abs(shown - source)[hole].mean() for m, source in sources.items()}
            assert shown.shape == truth.shape and errors[option.method] < 4  # a JPEG of its method's composite
            assert np.abs(shown - truth)[~hole].mean() < 4  # the ground truth outside the hole
        assert (item.truth is not None) == item.attention_check
    assert json.loads(data)["questions"][0]["metric"] == "context_stability_pct"
    # the same seed picks the same images (ids and names are random); the checks do not change the main picks
    again = make_study(runs, template_study.parent / "again", checks=0)
    assert sorted(i.stem for i in again.items) == sorted(i.stem for i in ordinary)


def test_create_resizes_to_max_side(runs, tmp_path):
    study = create_study(CreateConfig(runs, METHODS[:2], 2, tmp_path / "s", max_side=64))
    assert study.image_max_side == 64
    create_study(CreateConfig(runs, METHODS[:2], 2, tmp_path / "small", max_side=100))
    # the 64-px images are never enlarged
    assert all(Image.open(p).size == (64, 64) for p in (tmp_path / "small" / MEDIA_DIR).iterdir())


# ---------------------------------------------------------------- server rules
def test_participant_pages_progress_resume_and_no_method_names(study_dir):
    with live_server(study_dir) as (base, _):
        client = Client(base)
        status, welcome, headers = client.request("/")
        assert status == 200 and "Start" in welcome and "default-src 'none'" in headers["content-security-policy"]
        page = client.start()
        seen = [page]
        item, options, progress = parse_item(page)
        assert progress == (0, 8) and len(options["context"]) == 3 and options["context"] == options["visual"]
        status, body, _ = client.request("/answer", {"item": item, "context": options["context"][0],
                                                     "visual": options["visual"][1]})
        assert status == 200  # the browser flow: 303 to /study, followed
        next_item, _, progress = parse_item(body)
        assert progress == (1, 8) and next_item != item
        # reload: same item, same option order; a new visit of / goes on where it stopped
        assert parse_item(client.request("/study")[1])[:2] == parse_item(body)[:2]
        assert parse_item(client.request("/")[1])[0] == next_item
        for path in re.findall(r'src="(/media/[^"]+)"', body):
            status, _, headers = client.request(path)
            assert status == 200 and headers["content-type"] == "image/jpeg"
        seen.append(body)
        other = Client(base)
        other_page = other.start()
        assert other.participant != client.participant
        seen.append(other_page)
        for text in seen:
            assert not any(method in text for method in METHODS)


def test_bad_input_is_refused_with_clear_status_codes(study_dir):
    study = load_study(study_dir)
    with live_server(study_dir) as (base, _):
        anonymous = Client(base)
        client = Client(base)
        first = study.item(parse_item(client.start())[0])
        other = next(item for item in study.items if item.id != first.id)
        good = {"item": first.id, "context": first.options[0].id, "visual": first.options[1].id}
        assert anonymous.request("/answer", good, json_api=True)[0] == 401  # no participant cookie
        signed = next(c.value for c in client.cookies)
        for forged in ("0" * 32, "lama", "<script>", "0" * 32 + signed[32:], signed[:33] + "0" * 32):
            headers = {"Cookie": f"misato_study_participant={forged}"}  # an id or signature the server never gave
            assert anonymous.request("/answer", good, json_api=True, headers=headers)[0] == 401
        for form, status in [
            ({**good, "item": "0123456789abcdef"}, 404),                      # unknown item id
            ({**good, "context": other.options[0].id}, 422),                  # another item's option
            ({**good, "context": "lama"}, 422),                               # a forged method name
            ({"item": first.id, "context": first.options[0].id}, 422),        # one question unanswered
            ({**good, "method": "lama"}, 422),                                 # an unknown field
        ]:
            code, body, _ = client.request("/answer", form, json_api=True)
            assert code == status and "error" in json.loads(body), (form, body)
        assert client.request("/answer", body=b"item=" + b"a" * 9000, json_api=True)[0] == 413
        assert client.request("/answer", body=b"item=%ff", json_api=True)[0] == 400
        code, page, _ = client.request("/answer", {**good, "context": "<img src=x onerror=alert(1)>"})
        assert code == 422 and "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
        # one answer per participant and item: the same again is a no-op, another is refused and the first kept
        assert client.request("/answer", good, json_api=True)[0] == 201
        code, body, _ = client.request("/answer", good, json_api=True)
        assert code == 200 and json.loads(body)["status"] == "same"
        assert client.request("/answer", {**good, "visual": first.options[2].id}, json_api=True)[0] == 409
        assert stored(study_dir) == {(client.participant, first.id): {"context": good["context"],
                                                                      "visual": good["visual"]}}
        # only the study's images; nothing else of the folder is served
        for path in ("/media/0123456789abcdef.jpg", "/media/..%2Fstudy.json", "/study.json", f"/{DATABASE_FILE}"):
            assert client.request(path)[0] == 404, path
        # organiser endpoints
        for path in ("/results", "/export"):
            assert client.request(path, json_api=True)[0] == 401
            assert client.request(path, json_api=True, headers={"Authorization": "Bearer wrong"})[0] == 403
        code, body, _ = client.request("/results", json_api=True, headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and json.loads(body)["counts"]["started"] == 1
        code, body, _ = client.request("/export", headers={"Authorization": f"Bearer {TOKEN}"})
        rows = list(csv.DictReader(io.StringIO(body)))
        # the export writes a ground-truth option (method None: the participant's first item may be an attention
        # check, drawn from the study's random secret) as an empty method cell
        assert code == 200 and {(r["question"], r["method"]) for r in rows} == {
            ("context", first.options[0].method or ""), ("visual", first.options[1].method or "")}


def _participate(base: str, seed: int) -> tuple[str, dict[str, dict[str, str]], int]:
    """A simulated participant answering every item at random (one answer sent twice): (id, answers, requests)."""
    rng = np.random.default_rng(seed)
    client = Client(base)
    page = client.start()
    answers: dict[str, dict[str, str]] = {}
    while "name=\"item\"" in page:
        item, options, (answered, _) = parse_item(page)
        assert answered == len(answers)
        choice = {q: options[q][int(rng.integers(len(options[q])))] for q in ("context", "visual")}
        for _ in range(2 if not answers else 1):  # the first answer is submitted twice
            code, _, _ = client.request("/answer", {"item": item, **choice}, json_api=True)
            assert code in (200, 201)
        answers[item] = choice
        page = client.request("/study")[1]
    assert "Thank you" in page
    return client.participant, answers, client.requests


def test_twenty_concurrent_participants_lose_and_duplicate_nothing(study_dir):
    start = time.perf_counter()
    with live_server(study_dir) as (base, _):
        with ThreadPoolExecutor(20) as pool:
            done = list(pool.map(lambda seed: _participate(base, seed), range(20)))
    seconds = time.perf_counter() - start
    expected = {(p, item): choice for p, answers, _ in done for item, choice in answers.items()}
    assert len({p for p, _, _ in done}) == 20 and len(expected) == 20 * 8
    assert stored(study_dir) == expected
    study = load_study(study_dir)
    rows = AnswerStore.open(study_dir / DATABASE_FILE, study.study_id).answers()
    assert len(rows) == 20 * 8 * 2  # no duplicates (the primary key would refuse them anyway)
    requests = sum(n for _, _, n in done)
    assert requests <= 20 * (2 + 2 * 8 + 1)
    print(f"20 participants x 8 items: {requests} requests in {seconds:.2f} s, {len(rows)} rows stored")


# ---------------------------------------------------------------- tally
def _answer(store: AnswerStore, participant: str, items, pick: dict[str, str]) -> None:
    """Answer `items` picking, per question, the option of the method `pick[question]`."""
    for item in items:
        choice = {q: next(o for o in item.options if o.method == method).id for q, method in pick.items()}
        store.add_answer(participant, item.id, choice, [o.id for o in item.options])


def test_tally_of_a_known_answer_set(study_dir, tmp_path):
    from leaderboard import collect, write_reports
    from leaderboard.tables import build_table1, build_tables
    from result_fixtures import write_fixtures

    study = load_study(study_dir)
    store = AnswerStore.open(study_dir / DATABASE_FILE, study.study_id)
    ordinary = [i for i in study.items if not i.attention_check]
    checks = [i for i in study.items if i.attention_check]
    people = [store.new_participant() for _ in range(4)]
    _answer(store, people[0], ordinary, {"context": "lama", "visual": "asuka-sd"})
    _answer(store, people[1], ordinary, {"context": "lama", "visual": "lama"})
    _answer(store, people[2], ordinary, {"context": "co-mod", "visual": "co-mod"})
    _answer(store, people[3], ordinary[:3], {"context": "co-mod", "visual": "co-mod"})  # partial: not tallied
    for item in checks:
        truth, wrong = item.truth.id, next(o for o in item.options if o.method is not None).id
        store.add_answer(people[0], item.id, {"context": truth, "visual": truth}, [])  # all right: passes
        store.add_answer(people[1], item.id, {"context": truth, "visual": wrong}, [])  # half right: passes (0.5)
        store.add_answer(people[2], item.id, {"context": wrong, "visual": wrong}, [])  # none right: excluded

    store.new_participant()  # started, never answered: a dropout
    found = tally(study, store.answers(), resamples=500, seed=3, participants=store.participants())
    assert found.counts == {"started": 5, "participants": 4, "answered": 4, "complete": 3, "partial": 1,
                            "excluded_attention": 1, "excluded_fast": 0, "min_seconds": None, "tallied": 2,
                            "attention_checks": 2, "attention_failure_rate": pytest.approx(1 / 3), "answers": 12}
    assert found.shares == {"lama": {"context_stability_pct": 100.0, "visual_consistency_pct": 50.0},
                            "asuka-sd": {"context_stability_pct": 0.0, "visual_consistency_pct": 50.0},
                            "co-mod": {"context_stability_pct": 0.0, "visual_consistency_pct": 0.0}}
    assert found.intervals["lama"]["context_stability_pct"] == [100.0, 100.0]
    low, high = found.intervals["lama"]["visual_consistency_pct"]
    assert low == 0.0 and high == 100.0  # two participants, one picked lama always, the other never
    assert tally(study, store.answers(), resamples=500, seed=3).intervals == found.intervals  # seeded
    # every item shows every method: the Bradley-Terry (Luce) strengths equal the top-1 shares / 100
    for metric, strengths in found.strengths.items():
        assert strengths == pytest.approx({m: found.shares[m][metric] / 100 for m in METHODS}, abs=1e-9)

    _, written = write_results(study_dir, tmp_path / "results", resamples=500, seed=3)
    assert sorted(p.name for p in written) == sorted(f"{m}__data__user-study.json" for m in METHODS)
    record = json.loads((tmp_path / "results" / "lama__data__user-study.json").read_text())
    assert record["metrics"]["overall"] == {"n": 12, "context_stability_pct": 100.0, "visual_consistency_pct": 50.0}
    assert record["seeds"] == {"study": 0, "bootstrap": 3} and record["config"]["study"]["excluded_attention"] == 1
    assert record["protocol"]["name"] == "user-study" and record["dataset"]["kind"] == "MISATO"

    # the leaderboard: a measured Table 2 (c) beside the paper's, the other tables untouched by study results
    fixtures = write_fixtures(tmp_path / "fixtures")
    tables = {t.key: t for t in build_tables(collect([fixtures, tmp_path / "results"]))}
    assert tables["table1"].frame.equals(build_table1(collect([fixtures])).frame)
    table = tables["table2c"]
    assert table.frame.loc[("lama", "measured"), ("MISATO", "context_stability_pct")] == 100.0
    # 3 of the paper's 9 methods: shares among other competitors are not comparable, so no paper / diff rows
    assert set(table.frame.index.get_level_values("source")) == {"measured"} and "No paper rows" in table.caption
    written = write_reports([fixtures, tmp_path / "results"], tmp_path / "board")
    markdown = written["md"].read_text()
    assert "Table 2 (c): user study" in markdown and "2 participants tallied (12 answers)" in markdown
    assert "100.00 ± 0.00" in markdown and "failure rate 33.3%" in markdown
    assert "table2c" in written["html"].read_text() and (tmp_path / "board" / "paper_table2c.csv").is_file()
    # the paper's nine methods: paper and diff rows
    full = tmp_path / "full"
    full.mkdir()
    for method in ("lama", "mat", "co-mod", "mae-far", "sd", "sd-text", "sd-prompt", "sd-repaint", "asuka-sd"):
        data = json.loads((tmp_path / "results" / "lama__data__user-study.json").read_text())
        (full / f"{method}__data__user-study.json").write_text(json.dumps({**data, "method": method}))
    table = next(t for t in build_tables(collect([full])) if t.key == "table2c")
    assert table.frame.loc[("lama", "paper"), ("MISATO", "visual_consistency_pct")] == 8.28
    assert table.frame.loc[("asuka-sd", "diff"), ("MISATO", "context_stability_pct")] == pytest.approx(100 - 39.43)
    assert "No paper rows" not in table.caption


# ---------------------------------------------------------------- CLI
def test_cli_help_and_a_real_create(runs, tmp_path, capsys):
    for argv in (["study", "--help"], ["study", "create", "--help"], ["study", "serve", "--help"],
                 ["study", "tally", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "create" in text and "--attention-checks" in text and "127.0.0.1" in text and "--bootstrap" in text
    out = tmp_path / "study"
    assert main(["study", "create", "--runs", str(runs), "--methods", ",".join(METHODS), "--images", "8",
                 "--attention-checks", "1", "--seed", "5", "--out", str(out)]) == 0
    study = load_study(out)
    assert len(study.items) == 9 and study.seed == 5 and study.methods == METHODS
    assert sorted(i.domain for i in study.items if not i.attention_check) == [
        "background", "background", "building", "building", "indoor", "indoor", "landscape", "landscape"]


def test_cli_refuses_bad_inputs_before_any_work(runs, template_study, tmp_path, capsys):
    out = tmp_path / "study"
    base = ["study", "create", "--runs", str(runs), "--methods", ",".join(METHODS), "--out", str(out)]
    cases = [
        (["study", "create", "--runs", str(tmp_path / "nope"), "--methods", "a,b", "--images", "2", "--out",
          str(out)], "--runs"),
        ([*base[:4], "--methods", "lama,unknown", "--images", "2", "--out", str(out)], "unknown"),
        ([*base[:4], "--methods", "lama", "--images", "2", "--out", str(out)], "2 or more"),
        ([*base, "--images", "40"], "only 12 sample(s)"),
        ([*base, "--images", "10", "--attention-checks", "3"], "only 12 sample(s)"),
        ([*base, "--images", "0"], "--images must be >= 1"),
        ([*base, "--images", "2", "--attention-pass", "2"], "--attention-pass"),
        ([*base, "--images", "2", "--dataset", "other"], "--dataset other"),
        ([*base[:-1], str(template_study), "--images", "2"], "not an empty folder"),
        (["study", "serve", str(tmp_path / "nope"), "--port", "0"], "not a study folder"),
        (["study", "serve", str(template_study), "--port", "0", "--id-param", "bad name"], "--id-param"),
        (["study", "serve", str(template_study), "--port", "0", "--completion-url", "javascript:x"],
         "--completion-url"),
        (["study", "serve", str(template_study), "--port", "0", "--public-url", "ftp://x"], "--public-url"),
        (["study", "tally", str(template_study), "--out", str(tmp_path / "r")], "no answers yet"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        error = capsys.readouterr().err
        assert error.startswith("misato study: error: ") and message in error and error.count("\n") == 1, error
    assert not out.exists() and not (template_study / DATABASE_FILE).exists() and not (tmp_path / "r").exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["study", "serve", str(template_study), "--port", str(busy.getsockname()[1])]) == 1
        assert "cannot listen there" in capsys.readouterr().err
    assert not (template_study / DATABASE_FILE).exists()


def test_cli_serve_prints_url_and_token_and_binds_loopback(study_dir):
    token_file = study_dir.parent / "token"
    process = subprocess.Popen([sys.executable, "-m", "misato", "study", "serve", str(study_dir), "--port", "0",
                                "--token-file", str(token_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(5)]
        url = re.search(r"participants: (http://127\.0\.0\.1:\d+/)", "".join(lines)).group(1)
        assert f"recruiting link: {url}?PROLIFIC_PID=" in "".join(lines)
        token = re.search(r"organiser token: (\S+)", "".join(lines)).group(1)
        assert token_file.read_text().strip() == token  # kept for the next start
        deadline = time.monotonic() + 20
        while True:
            try:
                request = urllib.request.Request(url + "results", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert json.loads(response.read())["counts"]["participants"] == 0
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and process.poll() is None, lines
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(10)
