"""Downloads against real servers on 127.0.0.1 (a thread per server, port 0), with faults injected: a connection
dropped mid-file, 404, 500 then 200, wrong bytes, a slow server, a full disk, two processes at once, a Hugging
Face-style endpoint, offline mode, and `misato demo` fetching its files from a loopback mirror."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.server
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from misato import download, weights
from misato.cli import main
from misato.download import DownloadError, DownloadHashError, DownloadPolicy, DownloadWriteError, fetch_url
from misato.weights import WeightSpec, WeightsHashError, WeightsNotFoundError, resolve

FAST = DownloadPolicy(retries=3, backoff_s=0.01, timeout_s=5.0, chunk_bytes=16 * 1024)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HF_ROUTE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


def payload(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed * 13 + i // 251) % 256 for i in range(size))


class Server:
    """A loopback HTTP server of `files` (URL path -> bytes, or a file streamed from disk) honouring Range.

    `faults` is a queue of what the next GETs do instead of answering normally: "drop:N" (send N bytes of the body,
    then close), "500", "slow" (wait past any client timeout before answering), "stall:N" (send N bytes, then
    wait), "gate:N" (send N bytes, wait for `gate`, send the rest). Paths of the Hugging Face form
    /{repo}/resolve/{revision}/{filename} also send the headers huggingface_hub reads (X-Repo-Commit, ETag,
    Content-Length)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.faults: list[str] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self.gate = threading.Event()
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                server.requests.append(("HEAD" if head else "GET", self.path, self.headers.get("Range")))
                fault = server.faults.pop(0) if server.faults and not head else ""
                if fault == "500":
                    self.send_error(500, "injected")
                    return
                if fault == "slow":
                    server.stop.wait(30)
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "no such file")
                    return
                size = body.stat().st_size if isinstance(body, Path) else len(body)
                start = int(self.headers["Range"][len("bytes="):].rstrip("-")) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(size - start))
                if HF_ROUTE.match(self.path):
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.end_headers()
                if head:
                    return
                if isinstance(body, Path):  # a large file: streamed, never held in memory
                    with body.open("rb") as handle:
                        handle.seek(start)
                        for block in iter(lambda: handle.read(1 << 20), b""):
                            self.wfile.write(block)
                    return
                rest = body[start:]
                kind, _, count = fault.partition(":")
                if kind in ("drop", "stall", "gate"):
                    self.wfile.write(rest[: int(count)])
                    self.wfile.flush()
                    if kind == "stall":
                        server.stop.wait(30)
                    if kind == "gate":
                        server.gate.wait(60)
                        self.wfile.write(rest[int(count):])
                    self.close_connection = True
                    return
                self.wfile.write(rest)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET"]

    def close(self) -> None:
        self.stop.set()
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    """A loopback server, with downloads allowed for this test only (the session is offline)."""
    monkeypatch.delenv("MISATO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    running = Server()
    yield running
    running.close()


def _leftovers(folder: Path) -> list[str]:
    """Files in a download folder other than the lock folder."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".locks") if folder.exists() else []


def test_dropped_connection_resumes_with_range(server, tmp_path):
    body = payload(300_000)
    server.files["/f.bin"] = body
    server.faults = ["drop:100000"]
    target = fetch_url(f"{server.url}/f.bin", tmp_path / "f.bin", hashlib.sha256(body).hexdigest(), policy=FAST)
    assert target.read_bytes() == body
    first, second = server.gets()
    assert first[2] is None and second[2] is not None
    resumed_from = int(second[2][len("bytes="):].rstrip("-"))
    assert 0 < resumed_from <= 100_000  # the second request asked only for the rest
    assert _leftovers(tmp_path) == ["f.bin"]


def test_404_is_a_clear_error_without_retries(server, tmp_path):
    with pytest.raises(DownloadError, match=rf"{re.escape(server.url)}/missing.bin: HTTP 404"):
        fetch_url(f"{server.url}/missing.bin", tmp_path / "missing.bin", policy=FAST)
    assert len(server.gets()) == 1 and _leftovers(tmp_path) == []


def test_500_then_200_is_retried(server, tmp_path):
    body = payload(5_000)
    server.files["/f.bin"] = body
    server.faults = ["500"]
    assert fetch_url(f"{server.url}/f.bin", tmp_path / "f.bin", hashlib.sha256(body).hexdigest(),
                     policy=FAST).read_bytes() == body
    assert len(server.gets()) == 2


def test_500_every_time_gives_up_after_the_retries(server, tmp_path):
    server.files["/f.bin"] = payload(10)
    server.faults = ["500"] * 10
    with pytest.raises(DownloadError, match=r"HTTP 500 .*gave up after 3 attempts"):
        fetch_url(f"{server.url}/f.bin", tmp_path / "f.bin", policy=dataclasses.replace(FAST, retries=2))
    assert len(server.gets()) == 3


def test_wrong_bytes_are_refused_and_deleted(server, tmp_path, monkeypatch):
    server.files["/model-0123abcd.pth"] = b"not the published file"
    with pytest.raises(DownloadHashError, match=r"expected a digest starting 0123abcd; deleted .*model-0123abcd"):
        fetch_url(f"{server.url}/model-0123abcd.pth", tmp_path / "model-0123abcd.pth", prefix="0123abcd", policy=FAST)
    assert _leftovers(tmp_path) == []
    # the same through the registry and a mirror: WeightsHashError, nothing left in the weights folder
    spec = WeightSpec("test-bad", "bad.pth", "https://example.invalid/bad.pth", "0" * 64, "a test file")
    _only_specs(monkeypatch, spec)
    monkeypatch.setenv("MISATO_WEIGHTS_ENDPOINT", server.url)
    server.files["/bad.pth"] = b"wrong bytes"
    with pytest.raises(WeightsHashError, match=r"sha256 [0-9a-f]{64}, expected 0{64}"):
        resolve("test-bad", allow_download=True)
    assert _leftovers(weights.default_weights_dir()) == []


def test_slow_server_times_out_without_hanging(server, tmp_path):
    server.files["/f.bin"] = payload(1_000)
    server.faults = ["slow", "slow"]
    policy = DownloadPolicy(retries=1, backoff_s=0.01, timeout_s=0.3)
    outcome: list[BaseException | Path] = []
    worker = threading.Thread(target=lambda: _capture(outcome, fetch_url, f"{server.url}/f.bin", tmp_path / "f.bin",
                                                      policy=policy))
    worker.start()
    worker.join(timeout=30)  # bounded: two attempts of 0.3 s each, far below this
    assert not worker.is_alive()
    assert isinstance(outcome[0], DownloadError) and "timed out" in str(outcome[0]), outcome
    assert len(server.gets()) == 2 and _leftovers(tmp_path) == []


def test_stalled_transfer_resumes_after_the_timeout_with_progress(server, tmp_path, capsys):
    body = payload(200_000)
    server.files["/f.bin"] = body
    server.faults = ["stall:50000"]
    policy = DownloadPolicy(retries=2, backoff_s=0.01, timeout_s=0.3, chunk_bytes=8 * 1024)
    assert fetch_url(f"{server.url}/f.bin", tmp_path / "f.bin", hashlib.sha256(body).hexdigest(),
                     policy=policy).read_bytes() == body
    assert server.gets()[1][2] is not None  # resumed
    assert "f.bin" in capsys.readouterr().err  # the progress bar names the file


def test_full_disk_names_the_path_and_leaves_no_partial_file(server, tmp_path, monkeypatch):
    body = payload(100_000)
    server.files["/f.bin"] = body
    real_open = download._open_part

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, chunk):
            if self.written + len(chunk) > 40_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(chunk)
            return self.handle.write(chunk)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(download, "_open_part", lambda part, offset: FullDisk(real_open(part, offset)))
    with pytest.raises(DownloadWriteError, match=rf"cannot write {re.escape(str(tmp_path / 'f.bin.part'))}: no space"):
        fetch_url(f"{server.url}/f.bin", tmp_path / "f.bin", hashlib.sha256(body).hexdigest(), policy=FAST)
    assert _leftovers(tmp_path) == [] and len(server.gets()) == 1  # not retried, nothing kept
    monkeypatch.setattr(download, "_open_part", real_open)
    assert fetch_url(f"{server.url}/f.bin", tmp_path / "f.bin", hashlib.sha256(body).hexdigest(),
                     policy=FAST).read_bytes() == body
    assert server.gets()[1][2] is None  # started from zero, not from the lost bytes


FETCH_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from misato.download import DownloadPolicy, fetch_url
path = fetch_url(sys.argv[1], sys.argv[2], sys.argv[3], progress=False, policy=DownloadPolicy(timeout_s=60))
print(path)
"""


def test_two_processes_fetching_one_file_download_it_once(server, tmp_path):
    body = payload(400_000)
    digest = hashlib.sha256(body).hexdigest()
    server.files["/f.bin"] = body
    server.faults = ["gate:100000"]  # the first download holds until the second process is waiting for it
    target = tmp_path / "w" / "f.bin"
    logs = [tmp_path / f"err{i}.txt" for i in range(2)]
    processes = [subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, f"{server.url}/f.bin", str(target), digest],
                                  stdout=subprocess.PIPE, stderr=log.open("w"), text=True) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while not any("waiting for another process" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
            time.sleep(0.05)
        server.gate.set()
        outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    finally:
        for p in processes:
            p.kill() if p.poll() is None else None
    assert [p.returncode for p in processes] == [0, 0], [log.read_text() for log in logs]
    assert outputs == [str(target)] * 2 and target.read_bytes() == body
    assert len(server.gets()) == 1 and _leftovers(target.parent) == ["f.bin"]


def _only_specs(monkeypatch, *specs: WeightSpec) -> None:
    monkeypatch.setattr(weights, "_REGISTRY", {s.key: s for s in specs})
    monkeypatch.setattr(weights, "ENTRY_POINT_GROUP", "misato.weights.none-in-tests")


def _capture(outcome: list, function, *args, **kwargs) -> None:
    try:
        outcome.append(function(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - handed to the test thread
        outcome.append(error)


def test_mirror_and_offline(server, monkeypatch):
    """MISATO_WEIGHTS_ENDPOINT serves `<endpoint>/<file name>`; MISATO_OFFLINE=1 or HF_HUB_OFFLINE=1 never
    connects, and the error names the file and the command that fetches it."""
    body = payload(3_000)
    spec = WeightSpec("test-net", "test-net.pth", "https://example.invalid/x/test-net.pth",
                      hashlib.sha256(body).hexdigest(), "a test file")
    _only_specs(monkeypatch, spec)
    server.files["/test-net.pth"] = body
    monkeypatch.setenv("MISATO_WEIGHTS_ENDPOINT", server.url + "/")
    for variable in ("MISATO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(variable, "1")
        with pytest.raises(WeightsNotFoundError) as error:
            resolve("test-net", allow_download=True)
        assert f"offline ({variable}=1)" in str(error.value) and "misato weights fetch test-net" in str(error.value)
        assert "test-net.pth" in str(error.value)
        monkeypatch.delenv(variable)
    assert server.requests == []
    found = resolve("test-net", allow_download=True)
    assert found.source == "download" and found.path.read_bytes() == body and found.matches is True
    assert [r[1] for r in server.gets()] == ["/test-net.pth"]
    assert resolve("test-net", allow_download=True).source == "weights_dir"  # cached: no second request
    assert len(server.gets()) == 1


def test_failed_download_is_weights_not_found_with_the_reason(server, monkeypatch):
    spec = WeightSpec("test-net", "test-net.pth", "https://example.invalid/test-net.pth", "", "a test file")
    _only_specs(monkeypatch, spec)
    monkeypatch.setenv("MISATO_WEIGHTS_ENDPOINT", server.url)
    with pytest.raises(WeightsNotFoundError, match=r"Not downloaded: .*/test-net.pth: HTTP 404"):
        resolve("test-net", allow_download=True)


@pytest.fixture
def hub(server, monkeypatch, tmp_path):
    """The loopback server as a Hugging Face endpoint (HF_ENDPOINT), with an empty hub cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read from the environment once, at import
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return server


def test_hugging_face_endpoint(hub, monkeypatch):
    body, other = payload(20_000), payload(1_000, seed=1)
    good = WeightSpec("test-hub", "h.bin", "https://huggingface.co/o/r/resolve/main/h.bin",
                      hashlib.sha256(body).hexdigest(), "a hub file", hf_repo="o/r", hf_revision="main")
    bad = WeightSpec("test-hub-bad", "g.bin", "https://huggingface.co/o/r/resolve/main/g.bin", "f" * 64,
                     "a hub file with the wrong bytes", hf_repo="o/r", hf_revision="main")
    _only_specs(monkeypatch, good, bad)
    hub.files["/o/r/resolve/main/h.bin"] = body
    hub.files["/o/r/resolve/main/g.bin"] = other
    found = resolve("test-hub", allow_download=True)
    assert found.source == "download" and found.path.read_bytes() == body and found.matches is True
    assert any(r[0] == "GET" and r[1] == "/o/r/resolve/main/h.bin" for r in hub.requests)
    assert resolve("test-hub").source == "hf_cache"  # found in the hub cache afterwards, without downloading
    with pytest.raises(WeightsHashError, match=r"o/r/g.bin@main: sha256 .* expected f{64}; deleted"):
        resolve("test-hub-bad", allow_download=True)
    with pytest.raises(WeightsNotFoundError):
        resolve("test-hub-bad")  # the wrong file is not left in the cache
    with pytest.raises(WeightsNotFoundError, match=r"Not downloaded: o/r/missing.bin@main"):
        _only_specs(monkeypatch, dataclasses.replace(good, key="test-missing", filename="missing.bin"))
        resolve("test-missing", allow_download=True)


def _metric_row(out: str, method: str) -> dict[str, str]:
    """{metric: printed value} from the demo's table (header line "method lpips fid ...", then one per method)."""
    lines = out.splitlines()
    header = next(line.split() for line in lines if line.split()[:1] == ["method"])
    row = next(line.split() for line in lines if line.split()[:1] == [method])
    return dict(zip(header[1:], row[1:]))


def test_demo_fetches_from_a_loopback_mirror_then_runs_offline(server, random_weights, monkeypatch, capsys,
                                                                tmp_path):
    """The issue's "done when": with MISATO_WEIGHTS_ENDPOINT on a loopback mirror serving random-weight stand-ins,
    `misato demo` downloads its files (progress on stderr) and prints LPIPS, FID and KID; offline, the same command
    uses the cache (no request) and prints the same values. CLIP's file is not served: its metric is reported
    missing with the fetch command, the others are unaffected."""
    specs = dict(weights.all_specs())
    for key in ("inception-tf", "alexnet-torchvision"):
        served = Path(random_weights[key])
        server.files[f"/{specs[key].filename}"] = served
        specs[key] = dataclasses.replace(specs[key], sha256=hashlib.sha256(served.read_bytes()).hexdigest())
    monkeypatch.setattr(weights, "all_specs", lambda: specs)
    monkeypatch.setenv("MISATO_WEIGHTS_ENDPOINT", server.url)
    command = ["demo", "--embedded-size", "64", "--methods", "telea", "--device", "cpu"]

    assert main([*command, "--out", str(tmp_path / "online")]) == 0
    online = capsys.readouterr()
    fetched = sorted(r[1] for r in server.gets())
    assert f"/{specs['inception-tf'].filename}" in fetched and f"/{specs['alexnet-torchvision'].filename}" in fetched
    assert specs["inception-tf"].filename in online.err and "100%" in online.err  # tqdm's bars
    values = _metric_row(online.out, "telea")
    for metric in ("lpips", "fid", "kid"):
        float(values[metric])  # a number, not the "–" of a missing file
    assert "misato weights fetch clip-vit-l-14-openai" in online.out

    requests = len(server.requests)
    monkeypatch.setenv("MISATO_OFFLINE", "1")
    assert main([*command, "--out", str(tmp_path / "offline")]) == 0
    offline = capsys.readouterr()
    assert len(server.requests) == requests  # the cache served every file
    assert {m: _metric_row(offline.out, "telea")[m] for m in ("lpips", "fid", "kid")} == \
        {m: values[m] for m in ("lpips", "fid", "kid")}


def test_network_is_disabled_and_offline_mode_connects_nowhere(monkeypatch):
    """Issue 21: no network access without downloads allowed, anywhere. The test session cannot leave 127.0.0.1
    (conftest); offline, every download entry point refuses before opening a connection."""
    import socket

    attempts = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address) or
                        real_connect(self, address))
    with socket.socket() as sock, pytest.raises(OSError, match="network disabled in the tests: connect to 192.0.2.1"):
        sock.connect(("192.0.2.1", 80))
    with pytest.raises(socket.gaierror, match="network disabled in the tests: name lookup of huggingface.co"):
        socket.getaddrinfo("huggingface.co", 443)
    attempts.clear()
    assert download.offline()  # the session's MISATO_OFFLINE=1
    for call in (lambda: fetch_url("http://127.0.0.1:9/f.bin", Path("unused/f.bin")),
                 lambda: download.remote_size("http://127.0.0.1:9/f.bin"),
                 lambda: download.fetch_hf("o/r", "f.bin", "main"),
                 lambda: download.hf_remote_size("o/r", "f.bin", "main")):
        with pytest.raises(download.OfflineError, match=r"offline \(MISATO_OFFLINE=1\)"):
            call()
    with pytest.raises(WeightsNotFoundError, match=r"offline \(MISATO_OFFLINE=1\)"):
        resolve("inception-tf", allow_download=True)
    assert main(["weights", "fetch", "--for", "demo"]) == 1
    assert attempts == [] and not Path("unused").exists()


def test_fetch_for_a_job_prints_sizes_first_then_downloads(server, monkeypatch, capsys):
    """`misato weights fetch --for score` through a mirror: the sizes the server reports (HEAD), then the downloads;
    a file the mirror lacks is named with its HTTP status and the command exits 1, the others are fetched."""
    specs = dict(weights.all_specs())
    stand_ins = {"inception-tf": payload(1_500_000), "alexnet-torchvision": payload(2_500, seed=2)}
    for key, body in stand_ins.items():
        server.files[f"/{specs[key].filename}"] = body
        specs[key] = dataclasses.replace(specs[key], sha256=hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(weights, "all_specs", lambda: specs)
    monkeypatch.setenv("MISATO_WEIGHTS_ENDPOINT", server.url)
    monkeypatch.setenv("HF_ENDPOINT", server.url)  # `list --sizes` asks about the Hub files too: 404 here
    assert main(["weights", "fetch", "--for", "score", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "inception-tf (weights-inception-2015-12-05-6726825d.pth; metrics fid, u_ids, p_ids, kid" in dry
    assert "to download, 1.5 MB, from " + server.url in dry and "to download, 2.5 kB" in dry
    assert "clip-vit-l-14-openai (ViT-L-14.pt; metrics clip_score (comod)): to download, size unknown: " in dry
    assert server.gets() == []  # HEAD requests only
    assert main(["weights", "list", "--sizes"]) == 0
    listing = capsys.readouterr().out
    assert "inception-tf: weights-inception-2015-12-05-6726825d.pth  [missing, 1.5 MB]" in listing
    assert "lpips-alex-lin: alex.pth  [ok, 6.0 kB]" in listing
    assert "asuka-mae: mae_300.pth  [missing, size unknown: yikaiwang/ASUKA-FLUX.1-Fill/mae_300.pth@main: " in listing
    assert main(["weights", "fetch", "--for", "score"]) == 1
    out = capsys.readouterr().out
    first_download = out.index("inception-tf: ")
    assert out.index("to download, 1.5 MB") < first_download  # sizes first
    assert f"inception-tf: {weights.default_weights_dir() / specs['inception-tf'].filename} [download, 1.5 MB]" in out
    assert "clip-vit-l-14-openai: not downloaded: " in out and "ViT-L-14.pt: HTTP 404" in out
    assert (weights.default_weights_dir() / specs["alexnet-torchvision"].filename).read_bytes() == \
        stand_ins["alexnet-torchvision"]
