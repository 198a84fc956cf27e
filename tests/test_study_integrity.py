"""The study's integrity and what a public study needs (issue 23), over real HTTP on 127.0.0.1: cross-site
requests refused on every POST, answers only for the current item, the "needs cookies" page (no loop, no row),
the platform's participant id and the completion code, response times and --min-seconds, the position-bias and
Bradley-Terry figures, the spreadsheet-safe export, /healthz, --token-file, --behind-proxy and the printed link.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

from misato.jobs.study.create import CreateConfig, create_study
from misato.jobs.study.design import DATABASE_FILE, load_study
from misato.jobs.study.server import ServeConfig, StudyApp, participant_url, token_from_file
from misato.jobs.study.store import AnswerStore
from misato.jobs.study.tally import export_csv, spreadsheet_safe, tally
from test_study import TOKEN, Client, live_server, parse_item
from test_study_blinding import FILLS, make_fake_runs


@pytest.fixture(scope="module")
def small_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    create_study(CreateConfig(make_fake_runs(root, 8), FILLS, 6, root / "study", attention_checks=2))
    return root / "study"


@pytest.fixture
def small(small_template, tmp_path) -> Path:
    return Path(shutil.copytree(small_template, tmp_path / "study"))


def _store(folder: Path) -> AnswerStore:
    return AnswerStore.open(folder / DATABASE_FILE, load_study(folder).study_id, create=False)


def _answer_current(client: Client, page: str, pick: int = 0) -> str:
    item, options, _ = parse_item(page)
    code, _, _ = client.request("/answer", {"item": item, **{q: o[pick] for q, o in options.items()}})
    assert code == 200
    return item


def test_cross_site_posts_are_refused_and_the_cookie_is_strict(small):
    with live_server(small) as (base, _):
        outsider = Client(base)
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Sec-Fetch-Site": "same-site", "Origin": base}):
            code, page, _ = outsider.request("/start", {"consent": "yes"}, headers=headers)
            assert code == 403 and "did not come from the study" in page, headers
        assert _store(small).participants() == []  # nothing stored for a refused start
        client = Client(base)
        status, _, headers = client.request("/start", {"consent": "yes"}, headers={"Origin": base})
        assert status == 200
        page = client.request("/study")[1]
        item, options, _ = parse_item(page)
        form = {"item": item, **{q: o[0] for q, o in options.items()}}
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            assert client.request("/answer", form, json_api=True, headers=headers)[0] == 403
        # a same-origin browser POST (Sec-Fetch-Site decides over an Origin of null)
        assert client.request("/answer", form, json_api=True,
                              headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"})[0] == 201
        request = urllib.request.Request(base + "/start", data=b"consent=yes", method="POST")
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(request, timeout=10)
        cookie = redirect.value.headers["set-cookie"]
        assert "samesite=strict" in cookie.lower() and "httponly" in cookie.lower() and "secure" not in cookie.lower()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_answers_only_for_the_current_item(small):
    study = load_study(small)
    with live_server(small) as (base, _):
        client = Client(base)
        page = client.start()
        current, _, _ = parse_item(page)
        later = next(item for item in study.items if item.id != current)
        form = {"item": later.id, **{q.key: later.options[0].id for q in study.questions}}
        code, body, _ = client.request("/answer", form, json_api=True)
        assert code == 409 and "not the image you are on" in json.loads(body)["error"]
        code, page, _ = client.request("/answer", form)
        assert code == 409 and "Back to the study" in page and "Sorry" in page  # a friendly page
        first = _answer_current(client, page=client.request("/study")[1])
        assert first == current and len(_store(small).answers()) == len(study.questions)


def test_a_browser_without_cookies_gets_a_clear_page_and_no_rows(small):
    with live_server(small) as (base, _):
        for _ in range(3):  # clicks Start three times, dropping every cookie
            request = urllib.request.Request(base + "/start", data=b"consent=yes")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, page = response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                status, page = error.code, error.read().decode()
            assert status == 400 and "This study needs cookies" in page
        assert _store(small).participants() == []
        assert Client(base).request("/start", {})[0] == 422  # no consent, no participant


def test_platform_id_completion_code_response_times_and_tally(small):
    config = ServeConfig(TOKEN, id_param="PID", completion_code="C0DE-42",
                         completion_url="https://platform.example/complete?cc=C0DE-42")
    study = load_study(small)
    with live_server(small, config) as (base, _):
        client = Client(base)
        code, welcome, _ = client.request("/?PID=abc_123")
        assert code == 200 and 'name="external" value="abc_123"' in welcome and "worked example" in welcome
        assert client.request("/?PID=%3Cscript%3E")[0] == 400  # not an id: refused, never echoed raw
        page = client.start(external="abc_123")
        while 'name="item"' in page:
            _answer_current(client, page)
            page = client.request("/study")[1]
        assert "C0DE-42" in page and 'href="https://platform.example/complete?cc=C0DE-42"' in page
        code, body, _ = client.request("/healthz", json_api=True)
        assert code == 200 and json.loads(body) == {"status": "ok"}
        code, body, _ = client.request("/export", headers={"Authorization": f"Bearer {TOKEN}"})
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {r["external_id"] for r in rows} == {"abc_123"} and len(rows) == len(study.items) * 2
    assert sorted({int(r["item_position"]) for r in rows}) == list(range(1, len(study.items) + 1))
    assert all(float(r["seconds"]) >= 0 for r in rows) and all(len(r["shown"].split()) == 3 for r in rows)
    store = _store(small)
    answers = store.answers()
    assert all(a.seconds is not None and a.position is not None for a in answers)
    found = tally(study, answers, resamples=50, participants=store.participants())
    assert found.counts["tallied"] == 1 or found.counts["excluded_attention"] == 1
    slow = tally(study, answers, resamples=0, participants=store.participants(), min_seconds=3600)
    assert slow.counts["excluded_fast"] + slow.counts["excluded_attention"] == 1 and slow.counts["tallied"] == 0
    assert slow.counts["answers_under_min_seconds"] == len(study.items)  # every answer flagged
    with pytest.raises(ValueError, match="--min-seconds"):
        tally(study, answers, min_seconds=float("nan"))


def test_position_bias_and_strengths_of_a_known_answer_set(small):
    """Participants who always pick screen position A: the position bias shows 100% on A; people who always pick
    method 'blur': its strength is 1 and the others' 0."""
    study = load_study(small)
    store = AnswerStore.open(small / DATABASE_FILE, study.study_id)
    from misato.jobs.study.design import option_order

    groups: dict[str, set[str]] = {"position": set(), "method": set()}
    for rule in groups:
        for _ in range(3):
            participant = store.new_participant()
            groups[rule].add(participant)
            for item in study.items:
                shown = option_order(study, participant, item)
                if item.attention_check:
                    pick = item.truth
                elif rule == "position":
                    pick = shown[0]
                else:
                    pick = next(o for o in item.options if o.method == "blur")
                store.add_answer(participant, item.id, {q.key: pick.id for q in study.questions},
                                 [o.id for o in shown])
    answers = store.answers()
    by_position = tally(study, [a for a in answers if a.participant in groups["position"]], resamples=0)
    for shares in by_position.position_bias.values():
        assert shares == [100.0, 0.0, 0.0]
    by_method = tally(study, [a for a in answers if a.participant in groups["method"]], resamples=200)
    for metric, strengths in by_method.strengths.items():
        assert strengths["blur"] == pytest.approx(1.0) and strengths["flat"] == pytest.approx(0.0)
        assert by_method.strength_intervals[metric]["blur"] == pytest.approx([1.0, 1.0])


def test_export_cells_are_spreadsheet_safe(small):
    assert [spreadsheet_safe(v) for v in ("=1+2", "+a", "-b", "@c", "\tx", "ok", 3)] == [
        "'=1+2", "'+a", "'-b", "'@c", "'\tx", "ok", 3]
    study = load_study(small)
    data = json.loads((small / "study.json").read_text())
    evil = {"flat": "=HYPERLINK(\"http://x\")", "blur": "@SUM(1)", "soft": "-2+3"}
    data["methods"] = [evil[m] for m in data["methods"]]
    for item in data["items"]:
        for option in item["options"]:
            option["method"] = evil.get(option["method"], option["method"])
    (small / "study.json").write_text(json.dumps(data))
    study = load_study(small)
    store = AnswerStore.open(small / DATABASE_FILE, study.study_id)
    participant = store.new_participant("=cmd|' /C calc'!A0")
    item = next(i for i in study.items if not i.attention_check)
    store.add_answer(participant, item.id, {q.key: item.options[0].id for q in study.questions}, [])
    rows = list(csv.reader(io.StringIO(export_csv(study, store.answers(), store.external_ids()))))
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row
    assert rows[1][1] == "'=cmd|' /C calc'!A0"


def test_token_file_proxy_and_printed_link(small, tmp_path):
    path = tmp_path / "token"
    token = token_from_file(path)
    assert token_from_file(path) == token and path.stat().st_mode & 0o777 == 0o600
    path.write_text("short\n")
    with pytest.raises(ValueError, match="--token-file"):
        token_from_file(path)
    with pytest.raises(ValueError, match="--id-param"):
        StudyApp(small, ServeConfig(TOKEN, id_param="bad name"))
    with pytest.raises(ValueError, match="--completion-url"):
        StudyApp(small, ServeConfig(TOKEN, completion_url="javascript:alert(1)"))
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        url = participant_url(sock)
        assert "0.0.0.0" not in url and url.endswith(f":{sock.getsockname()[1]}/")
    assert participant_url(sock, "https://study.example.org") == "https://study.example.org/"
    with live_server(small, ServeConfig(TOKEN, behind_proxy=True)) as (base, _):
        request = urllib.request.Request(base + "/start", data=b"consent=yes", method="POST",
                                         headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "study.example",
                                                  "Origin": "https://study.example"})
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(_NoRedirect).open(request, timeout=10)
        assert redirect.value.code == 303 and "secure" in redirect.value.headers["set-cookie"].lower()


def test_media_and_pages_leak_no_method_or_check(small):
    study = load_study(small)
    with live_server(small) as (base, _):
        client = Client(base)
        page = client.start()
        while 'name="item"' in page:
            assert not any(m in page for m in FILLS) and "attention" not in page.lower()
            for path in re.findall(r'src="(/media/[^"]+)"', page):
                _, _, headers = client.request(path)
                assert {"etag", "last-modified"}.isdisjoint(headers) and headers["cache-control"].startswith("private")
            _answer_current(client, page)
            page = client.request("/study")[1]
    assert len(_store(small).answers()) == len(study.items) * len(study.questions)
