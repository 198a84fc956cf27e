"""`misato study serve`: the participants' web app (Starlette + uvicorn) over the answer database.

Participant pages (plain HTML forms: no script needed; Jinja2 with autoescape, a strict Content-Security-Policy)::

    GET  /          consent page with a worked example (or, for a known participant, on to /study); a link
                    `/?PROLIFIC_PID=ID` (the name is `ServeConfig.id_param`) carries the platform's participant id
    POST /start     consent given -> a new participant id in a signed HttpOnly SameSite=Strict cookie -> /begin
    GET  /begin     the cookie came back: the participant is stored (with the platform's id) -> /study; no cookie:
                    the "this study needs cookies" page (nothing stored, no loop)
    GET  /study     the participant's next unanswered item, "12 / 40" progress; the thank-you page (completion
                    code, link back to the platform) when done
    POST /answer    form fields `item` and one option id per question (urlencoded) -> stored at once -> /study
    GET  /media/ID  a study image (only the names the study file lists; no ETag or Last-Modified)
    GET  /healthz   {"status": "ok"} while the database answers (503 otherwise)

Answer statuses: 201 stored, 200 the same answer again (nothing written: a repeated submit is idempotent), 409 a
different answer to an item already answered (the first is kept) or an answer to an item other than the one the
participant is on, 401 no known participant cookie, 403 a cross-site request (an `Origin` of another host or
`Sec-Fetch-Site` other than same-origin, on every POST), 404 unknown item, 422 a missing question, an option id
that is not one of the item's (a method name among them) or an unknown field, 413 a body over 8 KiB. A client that
sends `Accept: application/json` gets a JSON body with that status; a browser gets a 303 to the next item (stored
or same) or a friendly error page with the status.

Every answer is stored with the option order the participant saw, the item's place in their order and the
seconds since the item was first shown (`misato.jobs.study.store`); the orders come from the study's secret
(`misato.jobs.study.design`), never from anything a participant can see.

Organiser endpoints (`Authorization: Bearer TOKEN`, the token `serve` prints or keeps in --token-file; 401 without
one, 403 with a wrong one):

    GET /results    JSON: counts, shares and intervals so far (`misato.jobs.study.tally`)
    GET /export     CSV of every stored answer with the method each option stands for (spreadsheet-safe cells)
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from misato.defaults import BOOTSTRAP_RESAMPLES
from misato.jobs.study.design import DATABASE_FILE, MEDIA_DIR, Study, item_order, keyed, load_study, option_order
from misato.jobs.study.store import CONFLICT, PARTICIPANT_PATTERN, STORED, AnswerStore, new_id

HERE = Path(__file__).parent
COOKIE = "misato_study_participant"
COOKIE_MAX_AGE_S = 180 * 24 * 3600
COOKIE_PATTERN = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{32})")
MAX_BODY_BYTES = 8192
ID_PARAM_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
EXTERNAL_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,256}")
TRUSTED_PROXIES = "127.0.0.1,::1"
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no referrer to other sites; "no-referrer" would make every POST's Origin null
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
MEDIA_HEADERS = {"Cache-Control": "private, max-age=86400"}  # no validators: nothing derived from the files
FRIENDLY = {  # status -> what the error page tells a participant
    400: "Something in that request was not readable.",
    401: "We could not find your place in the study: please open the study link again.",
    403: "That request did not come from the study's own page.",
    404: "There is no such page.",
    405: "There is no such page.",
    409: "That image was already answered, or is not the one you are on.",
    413: "That request was too large.",
    422: "Please answer every question before going on.",
}


@dataclass(frozen=True)
class ServeConfig:
    """The flags of `misato study serve` that shape the app.

    token: the organiser token; id_param: the link's query parameter holding the recruiting platform's participant
    id (stored with the answers); completion_code / completion_url: shown on the thank-you page (the link back to
    the platform); behind_proxy: trust X-Forwarded-* from `TRUSTED_PROXIES` and mark the cookie Secure (HTTPS)."""

    token: str
    id_param: str = "PROLIFIC_PID"
    completion_code: str | None = None
    completion_url: str | None = None
    behind_proxy: bool = False

    def check(self) -> None:
        if not TOKEN_PATTERN.fullmatch(self.token):
            raise ValueError("organiser token: 16 to 256 characters of A-Z a-z 0-9 _ -")
        if not ID_PARAM_PATTERN.fullmatch(self.id_param):
            raise ValueError(f"--id-param {self.id_param!r}: a query parameter name (letters, digits, _)")
        if self.completion_url is not None and urlsplit(self.completion_url).scheme not in ("https", "http"):
            raise ValueError(f"--completion-url {self.completion_url!r}: an http(s) URL")
        if self.completion_code is not None and not EXTERNAL_PATTERN.fullmatch(self.completion_code):
            raise ValueError(f"--completion-code {self.completion_code!r}: 1 to 128 of A-Z a-z 0-9 _ . : -")


class _Refused(Exception):
    """A request refused with `status` and a message for the participant or client: raised by a route, answered
    by the app's exception handler (`StudyApp.refusal`: an error page, or JSON for a JSON client)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to every response (images keep their own Cache-Control)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StudyApp:
    """The routes of one study (module docstring); `app` is the ASGI application."""

    def __init__(self, folder: str | Path, config: ServeConfig | str) -> None:
        self.config = ServeConfig(config) if isinstance(config, str) else config
        self.config.check()
        self.folder = Path(folder)
        self.study: Study = load_study(self.folder)
        self.store = AnswerStore.open(self.folder / DATABASE_FILE, self.study.study_id)
        self.token = self.config.token
        self.media = {name: self.folder / MEDIA_DIR / name for name in self.study.images}
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.app = Starlette(routes=[
            Route("/", self.welcome, methods=["GET"]),
            Route("/start", self.start, methods=["POST"]),
            Route("/begin", self.begin, methods=["GET"]),
            Route("/study", self.next_item, methods=["GET"]),
            Route("/answer", self.answer, methods=["POST"]),
            Route("/media/{name}", self.image, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/results", self.results, methods=["GET"]),
            Route("/export", self.export, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ], exception_handlers={404: self._not_found, 405: self._not_found, _Refused: self._refused})
        self.app.add_middleware(SecurityHeaders)

    # ------------------------------------------------------------ helpers
    def page(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(title=self.study.title, **values)
        return HTMLResponse(html, status_code=status_code)

    def refusal(self, request: Request, refused: _Refused) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        return self.page("error.html", refused.status, status=refused.status, message=refused.message,
                         friendly=FRIENDLY.get(refused.status, "Something went wrong."))

    async def _refused(self, request: Request, exc: Exception) -> Response:
        """Every route's refusal: a route raises `_Refused`, this answers it (`refusal`)."""
        assert isinstance(exc, _Refused)
        return self.refusal(request, exc)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return self.refusal(request, _Refused(status, "no such page" if status == 404 else "method not allowed"))

    def _signature(self, participant: str) -> str:
        return keyed(self.study, f"cookie:{participant}")[:16].hex()

    def cookie_id(self, request: Request) -> str | None:
        """The participant id of the request's cookie when the server signed it (known to the database or not)."""
        found = COOKIE_PATTERN.fullmatch(request.cookies.get(COOKIE, ""))
        if found is None or not hmac.compare_digest(found.group(2), self._signature(found.group(1))):
            return None
        return found.group(1)

    async def participant(self, request: Request) -> str | None:
        """The participant id of the request's cookie, when signed by this server and known to the database."""
        participant = self.cookie_id(request)
        if participant is None or not PARTICIPANT_PATTERN.fullmatch(participant):
            return None
        return participant if await run_in_threadpool(self.store.has_participant, participant) else None

    def check_same_origin(self, request: Request) -> None:
        """Refuse (403) a state-changing request another site made the browser send: `Sec-Fetch-Site` other than
        same-origin, or an `Origin` naming another host (`null` included). Clients that send neither (curl, the
        tests' urllib) are not browsers acting for a third party. A browser's Sec-Fetch-Site, when sent, decides;
        otherwise the Origin does."""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            if site != "same-origin":
                raise _Refused(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
            return
        origin = request.headers.get("origin")
        if origin is not None:
            host = request.headers.get("host", "")
            if self.config.behind_proxy:
                host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
            if urlsplit(origin).netloc.lower() != host.lower() or not host:
                raise _Refused(403, "cross-site request refused (Origin is not this study's host)")

    def check_token(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise _Refused(401, "organiser token required: Authorization: Bearer TOKEN (printed by "
                                "`misato study serve`)")
        if not secrets.compare_digest(given.strip().encode(), self.token.encode()):
            raise _Refused(403, "wrong organiser token")

    def external_id(self, value: str | None, where: str) -> str | None:
        if value in (None, ""):
            return None
        if not EXTERNAL_PATTERN.fullmatch(value):
            raise _Refused(400, f"the study link's {where} is not a valid participant id (1 to 128 of A-Z a-z 0-9 "
                                "_ . : -)")
        return value

    # ------------------------------------------------------------ participant pages
    async def welcome(self, request: Request) -> Response:
        if await self.participant(request):
            return RedirectResponse("/study", status_code=303)
        external = self.external_id(request.query_params.get(self.config.id_param), self.config.id_param)
        return self.page("welcome.html", study=self.study, total=len(self.study.items), external=external)

    async def start(self, request: Request) -> Response:
        self.check_same_origin(request)
        form = await _read_form(request)
        if form.get("consent") != "yes":
            raise _Refused(422, "please tick the consent box to take part")
        external = self.external_id(form.get("external"), self.config.id_param)
        if await self.participant(request):
            return RedirectResponse("/study", status_code=303)
        participant = new_id()  # stored once the cookie comes back (/begin): no row for a browser without cookies
        response = RedirectResponse("/begin" + (f"?{urlencode({'external': external})}" if external else ""),
                                    status_code=303)
        response.set_cookie(COOKIE, f"{participant}.{self._signature(participant)}", max_age=COOKIE_MAX_AGE_S,
                            httponly=True, samesite="strict", secure=self.config.behind_proxy)
        return response

    async def begin(self, request: Request) -> Response:
        participant = self.cookie_id(request)
        if participant is None:
            return self.page("cookies.html", 400)
        external = self.external_id(request.query_params.get("external"), self.config.id_param)
        await run_in_threadpool(self.store.add_participant, participant, external)
        return RedirectResponse("/study", status_code=303)

    def _pending(self, participant: str, answered: set[str]) -> list[tuple[int, Any]]:
        return [(position, item) for position, item in enumerate(item_order(self.study, participant))
                if item.id not in answered]

    async def next_item(self, request: Request) -> Response:
        participant = await self.participant(request)
        if participant is None:
            return RedirectResponse("/", status_code=303)
        answered = await run_in_threadpool(self.store.answered_items, participant)
        total = len(self.study.items)
        pending = self._pending(participant, answered)
        if not pending:
            return self.page("done.html", total=total, code=self.config.completion_code,
                             url=self.config.completion_url)
        item = pending[0][1]
        await run_in_threadpool(self.store.mark_shown, participant, item.id)
        options = [(chr(ord("A") + i), option) for i, option in enumerate(option_order(self.study, participant, item))]
        return self.page("item.html", study=self.study, item=item, options=options, answered=len(answered),
                         total=total)

    async def answer(self, request: Request) -> Response:
        self.check_same_origin(request)
        participant = await self.participant(request)
        if participant is None:
            raise _Refused(401, "no participant: open the study's start page first (cookies must be on)")
        form = await _read_form(request)
        item = self.study.item(form.pop("item", ""))
        if item is None:
            raise _Refused(404, "unknown item")
        choices = {}
        for question in self.study.questions:
            value = form.pop(question.key, None)
            if value is None:
                raise _Refused(422, "please answer every question")
            if item.option(value) is None:
                raise _Refused(422, f"{value!r} is not an option of this item")
            choices[question.key] = value
        if form:
            raise _Refused(422, f"unknown field(s): {', '.join(sorted(form))}")
        answered = await run_in_threadpool(self.store.answered_items, participant)
        if item.id not in answered:
            pending = self._pending(participant, answered)
            if not pending or pending[0][1].id != item.id:
                raise _Refused(409, "this is not the image you are on: answers are taken in order")
        position = next(i for i, other in enumerate(item_order(self.study, participant)) if other.id == item.id)
        shown = [option.id for option in option_order(self.study, participant, item)]
        outcome = await run_in_threadpool(self.store.add_answer, participant, item.id, choices, shown, position)
        if outcome == CONFLICT:
            raise _Refused(409, "this image was already answered differently; the first answer is kept")
        if _wants_json(request):
            answered = await run_in_threadpool(self.store.answered_items, participant)
            return JSONResponse({"status": outcome, "item": item.id, "answered": len(answered),
                                 "total": len(self.study.items)}, status_code=201 if outcome == STORED else 200)
        return RedirectResponse("/study", status_code=303)

    async def image(self, request: Request) -> Response:
        path = self.media.get(request.path_params["name"])
        if path is None:
            return self.refusal(request, _Refused(404, "no such image"))
        data = await run_in_threadpool(path.read_bytes)
        return Response(data, media_type="image/jpeg" if path.suffix == ".jpg" else "image/png",
                        headers=MEDIA_HEADERS)

    async def healthz(self, request: Request) -> Response:
        ok = await run_in_threadpool(self.store.healthy)
        return JSONResponse({"status": "ok" if ok else "database unavailable"}, status_code=200 if ok else 503)

    # ------------------------------------------------------------ organiser
    async def results(self, request: Request) -> Response:
        return await self._organiser(request, self._results)

    async def export(self, request: Request) -> Response:
        return await self._organiser(request, self._export)

    async def _organiser(self, request: Request, answer: Callable[[], Response]) -> Response:
        """An organiser endpoint: the bearer token checked (401/403 refused), then `answer` run off the event loop
        (it reads the database)."""
        self.check_token(request)
        return await run_in_threadpool(answer)

    def _results(self) -> Response:
        from misato.jobs.study.tally import tally

        found = tally(self.study, self.store.answers(), BOOTSTRAP_RESAMPLES, 0, self.store.participants())
        return JSONResponse({"study_id": self.study.study_id, "counts": found.counts, "shares": found.shares,
                             "intervals": found.intervals, "position_bias_pct": found.position_bias,
                             "bradley_terry": found.strengths, "bradley_terry_intervals": found.strength_intervals})

    def _export(self) -> Response:
        from misato.jobs.study.tally import export_csv

        answers = self.store.answers()
        return Response(export_csv(self.study, answers, self.store.external_ids()), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="answers.csv"'})


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def _read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as {field: value}; 413 past MAX_BODY_BYTES, 400/422 for malformed or repeated fields."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), errors="strict",
                          max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, "malformed form body (urlencoded UTF-8 expected)") from None
    repeated = sorted(k for k, v in fields.items() if len(v) != 1)
    if repeated:
        raise _Refused(422, f"one value per field: {', '.join(repeated)}")
    return {key: values[0] for key, values in fields.items()}


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) for uvicorn; ValueError naming the flag when it cannot be bound (a port
    in use, an unknown host, a privileged port)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ValueError(f"--host {host}: cannot be resolved ({error})") from error
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from error
    return sock


def server(app: StudyApp, log_level: str = "info") -> "uvicorn.Server":  # noqa: F821
    """A uvicorn server for `app`; run it with `.run(sockets=[bind_socket(host, port)])`. No access log: the
    participants' addresses are neither stored nor printed. Proxy headers are trusted only with --behind-proxy,
    and then only from `TRUSTED_PROXIES` (a proxy on this machine)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app.app, log_level=log_level, access_log=False,
                                         proxy_headers=app.config.behind_proxy, forwarded_allow_ips=TRUSTED_PROXIES,
                                         server_header=False))


def new_token() -> str:
    """A fresh organiser token (printed by `serve`; stored only in --token-file)."""
    return secrets.token_urlsafe(24)


def token_from_file(path: str | os.PathLike) -> str:
    """The organiser token kept in `path` (--token-file): read when the file exists, else a new one written there
    (mode 0600, atomically), so the token survives restarts."""
    from misato.io import atomic_write_bytes

    path = Path(path)
    if path.exists():
        if not path.is_file():
            raise ValueError(f"--token-file {path}: not a file")
        token = path.read_text(encoding="utf-8", errors="replace").strip()
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError(f"--token-file {path}: must hold one token of 16 to 256 characters (A-Z a-z 0-9 _ -)")
        return token
    token = new_token()
    atomic_write_bytes(path, (token + "\n").encode())
    path.chmod(0o600)
    return token


def participant_url(sock: socket.socket, public_url: str | None = None) -> str:
    """The address participants open: `public_url` when given (the proxy's HTTPS address), else the bound address,
    with this machine's host name in place of a wildcard (0.0.0.0 / ::) that no browser can open."""
    if public_url:
        return public_url if public_url.endswith("/") else public_url + "/"
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def summary(app: StudyApp, sock: socket.socket, token: str, public_url: str | None = None) -> str:
    """What `serve` prints: the participants' URL and recruiting link, the organiser token and how to read the
    results."""
    url = participant_url(sock, public_url)
    bound = sock.getsockname()[0]
    lines = [
        f"study {app.study.study_id}: {len(app.study.items)} items, {len(app.study.methods)} methods; "
        f"answers in {app.store.path}",
        f"participants: {url}",
        f"recruiting link: {url}?{app.config.id_param}=<the platform's participant id>",
    ]
    if bound in ("0.0.0.0", "::") and not public_url:
        lines.append(f"  (listening on every interface; if {url} does not resolve for participants, use this "
                     "machine's IP address or --public-url)")
    return "\n".join([*lines, f"organiser token: {token}",
                      f"results: curl -H 'Authorization: Bearer {token}' {url}results   (CSV of the answers: "
                      f"{url}export)"])
