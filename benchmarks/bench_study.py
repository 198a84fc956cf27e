"""Benchmark of `misato study serve` under concurrent participants on loopback (not a test).

A synthetic study (`--items` items of 3 methods, 256-px JPEG candidates padded as `create` pads them) is served
by `misato study serve` in its own process on 127.0.0.1 (an ephemeral port, a temporary folder). `--participants`
client threads, all started together, each walk the whole study as a browser does: the consent page, POST
/start (-> /begin -> /study), then per item the page, its images (input and candidates) and POST /answer, to the
thank-you page. Each client keeps one keep-alive connection and its cookie.

Bounded: every request has a `--timeout` (s), the whole run a deadline of `--deadline` (s); the server process is
always stopped. Checked: every response has the expected status, and the database holds exactly one answer per
participant, item and question afterwards.

Usage:
    python benchmarks/bench_study.py [--participants 100] [--items 10] [--timeout 30] [--deadline 300]
Prints one JSON object: requests, seconds, requests_per_s, latency p50/p99 (ms) overall and per request kind.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("alpha", "beta", "gamma")


def make_study(folder: Path, items: int, side: int = 256) -> None:
    """A study folder of `items` items (one attention check per ten) with random-texture JPEGs."""
    from PIL import Image

    from misato.jobs.study.design import QUESTIONS, Item, Option, Study, new_secret, write_study
    from misato.jobs.study.media import pad_all, write_media

    rng = np.random.default_rng(0)
    media: dict[str, bytes] = {}

    def image() -> str:
        name = f"{secrets.token_hex(8)}.jpg"
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
        media[name] = buffer.getvalue()
        return name

    built = []
    for i in range(items):
        check = i % 10 == 9
        options = tuple(Option(secrets.token_hex(8), image(), None if check and j == 0 else m)
                        for j, m in enumerate(METHODS))
        built.append(Item(secrets.token_hex(8), f"{i:04d}", None, image(), options, check))
    study = Study(study_id=secrets.token_hex(8), seed=0, secret=new_secret(), questions=QUESTIONS, methods=METHODS,
                  items=tuple(built), source={"dataset": {"name": "bench", "kind": "custom"}})
    write_media(folder / "media", pad_all(media), random.SystemRandom())
    write_study(folder, study)


class Participant:
    """One browser-like client: a keep-alive connection, its cookie, the latency of each request by kind."""

    def __init__(self, port: int, timeout: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.cookie = ""
        self.latencies: list[tuple[str, float]] = []

    def request(self, kind: str, method: str, path: str, form: dict | None = None,
                expect: int = 200) -> tuple[int, bytes, http.client.HTTPMessage]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        self.latencies.append((kind, time.perf_counter() - start))
        cookie = response.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";")[0]
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: status {response.status}, expected {expect}: {data[:200]!r}")
        return response.status, data, response.headers

    def walk(self, deadline: float) -> int:
        """The whole study; the number of items answered."""
        self.request("page", "GET", "/")
        self.request("start", "POST", "/start", {"consent": "yes"}, expect=303)
        self.request("start", "GET", "/begin", expect=303)
        answered = 0
        while time.monotonic() < deadline:
            _, page, _ = self.request("page", "GET", "/study")
            text = page.decode()
            found = re.search(r'name="item" value="([0-9a-f]+)"', text)
            if found is None:
                if "Thank you" not in text:
                    raise RuntimeError("neither an item nor the thank-you page")
                return answered
            for image in dict.fromkeys(re.findall(r'src="(/media/[^"]+)"', text)):
                self.request("media", "GET", image)
            choices = {}
            for key, option in re.findall(r'name="([a-z_]+)" value="([0-9a-f]{16})" required', text):
                choices.setdefault(key, option)
            self.request("answer", "POST", "/answer", {"item": found.group(1), **choices}, expect=303)
            answered += 1
        raise TimeoutError("deadline reached before the participant finished")


def percentiles(values: list[float]) -> dict:
    ms = np.asarray(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


def run(participants: int, items: int, timeout: float, deadline_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "study"
        make_study(folder, items)
        server = subprocess.Popen([sys.executable, "-m", "misato", "study", "serve", str(folder), "--port", "0",
                                   "--token-file", str(Path(tmp) / "token")], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            port = None
            for _ in range(10):
                line = server.stdout.readline()
                found = re.search(r"participants: http://127\.0\.0\.1:(\d+)/", line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                raise RuntimeError("the server did not print its address")
            threading.Thread(target=server.stdout.read, daemon=True).start()  # drain its output
            _wait_healthy(port, timeout)
            deadline = time.monotonic() + deadline_s
            clients = [Participant(port, timeout) for _ in range(participants)]
            barrier = threading.Barrier(participants)

            def walk(client: Participant) -> int:
                barrier.wait(timeout)
                return client.walk(deadline)

            start = time.perf_counter()
            with ThreadPoolExecutor(participants) as pool:
                answered = list(pool.map(walk, clients))
            seconds = time.perf_counter() - start
            stored = _stored_rows(folder)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    latencies = [(kind, t) for c in clients for kind, t in c.latencies]
    expected_rows = participants * items * 2
    if sum(answered) != participants * items or stored != expected_rows:
        raise RuntimeError(f"answers: {sum(answered)} given, {stored} rows stored, {expected_rows} expected")
    return {"participants": participants, "items": items, "requests": len(latencies), "seconds": round(seconds, 3),
            "requests_per_s": round(len(latencies) / seconds, 1), "latency": percentiles([t for _, t in latencies]),
            "by_kind": {kind: percentiles([t for k, t in latencies if k == kind])
                        for kind in sorted({k for k, _ in latencies})},
            "rows_stored": stored, "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}


def _wait_healthy(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not become healthy")
        time.sleep(0.1)


def _stored_rows(folder: Path) -> int:
    from misato.jobs.study.design import DATABASE_FILE, load_study
    from misato.jobs.study.store import AnswerStore

    return len(AnswerStore.open(folder / DATABASE_FILE, load_study(folder).study_id, create=False).answers())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole run")
    args = parser.parse_args()
    for flag in ("participants", "items"):
        if not 1 <= getattr(args, flag) <= 1000:
            parser.error(f"--{flag} must be in [1, 1000]")
    if not (0 < args.timeout <= 600 and 0 < args.deadline <= 3600):
        parser.error("--timeout must be in (0, 600] and --deadline in (0, 3600]")
    print(json.dumps(run(args.participants, args.items, args.timeout, args.deadline), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
