"""`misato study serve`: the participants' web app (Starlette + uvicorn) over the answer database.

Participant pages (plain HTML forms: no script needed; Jinja2 with autoescape, a strict Content-Security-Policy)::

    GET  /          welcome page (or, for a known participant, on to /study)
    POST /start     a new anonymous participant id, kept in an HttpOnly SameSite=Lax cookie -> /study
    GET  /study     the participant's next unanswered item, "12 / 40" progress; the thank-you page when done
    POST /answer    form fields `item` and one option id per question (urlencoded) -> stored at once -> /study
    GET  /media/ID  a study image (only the names the study file lists)

Answer statuses: 201 stored, 200 the same answer again (nothing written: a repeated submit is idempotent), 409 a
different answer to an item already answered (the first is kept), 401 no known participant cookie, 404 unknown
item, 422 a missing question, an option id that is not one of the item's (a method name among them) or an unknown
field, 413 a body over 8 KiB. A client that sends `Accept: application/json` gets a JSON body with that status;
a browser gets a 303 to the next item (stored or same) or an error page with the status.

Organiser endpoints (`Authorization: Bearer TOKEN`, the token `serve` prints; 401 without one, 403 with a wrong one):

    GET /results    JSON: counts, shares and intervals so far (`misato.study.tally`)
    GET /export     CSV of every stored answer with the method each option stands for
"""

from __future__ import annotations

import csv
import io
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from misato.study.design import DATABASE_FILE, MEDIA_DIR, Study, item_order, load_study, option_order
from misato.study.store import CONFLICT, PARTICIPANT_PATTERN, STORED, AnswerStore

HERE = Path(__file__).parent
COOKIE = "misato_study_participant"
COOKIE_MAX_AGE_S = 180 * 24 * 3600
MAX_BODY_BYTES = 8192
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class _Refused(Exception):
    """A request refused with `status` and a message for the participant or client."""

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

    def __init__(self, folder: str | Path, token: str) -> None:
        self.folder = Path(folder)
        self.study: Study = load_study(self.folder)
        self.store = AnswerStore.open(self.folder / DATABASE_FILE, self.study.study_id)
        self.token = token
        self.media = {name: self.folder / MEDIA_DIR / name for name in self.study.images}
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.app = Starlette(routes=[
            Route("/", self.welcome, methods=["GET"]),
            Route("/start", self.start, methods=["POST"]),
            Route("/study", self.next_item, methods=["GET"]),
            Route("/answer", self.answer, methods=["POST"]),
            Route("/media/{name}", self.image, methods=["GET"]),
            Route("/results", self.results, methods=["GET"]),
            Route("/export", self.export, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ], exception_handlers={404: self._not_found, 405: self._not_found})
        self.app.add_middleware(SecurityHeaders)

    # ------------------------------------------------------------ helpers
    def page(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(title=self.study.title, **values)
        return HTMLResponse(html, status_code=status_code)

    def refusal(self, request: Request, refused: _Refused) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        return self.page("error.html", refused.status, status=refused.status, message=refused.message)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return self.refusal(request, _Refused(status, "no such page" if status == 404 else "method not allowed"))

    async def participant(self, request: Request) -> str | None:
        """The participant id of the request's cookie, when the database knows it."""
        participant = request.cookies.get(COOKIE, "")
        if not PARTICIPANT_PATTERN.fullmatch(participant):
            return None
        return participant if await run_in_threadpool(self.store.has_participant, participant) else None

    def check_token(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise _Refused(401, "organiser token required: Authorization: Bearer TOKEN (printed by "
                                "`misato study serve`)")
        if not secrets.compare_digest(given.strip().encode(), self.token.encode()):
            raise _Refused(403, "wrong organiser token")

    # ------------------------------------------------------------ participant pages
    async def welcome(self, request: Request) -> Response:
        if await self.participant(request):
            return RedirectResponse("/study", status_code=303)
        return self.page("welcome.html", study=self.study, total=len(self.study.items))

    async def start(self, request: Request) -> Response:
        participant = await self.participant(request) or await run_in_threadpool(self.store.new_participant)
        response = RedirectResponse("/study", status_code=303)
        response.set_cookie(COOKIE, participant, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="lax")
        return response

    async def next_item(self, request: Request) -> Response:
        participant = await self.participant(request)
        if participant is None:
            return RedirectResponse("/", status_code=303)
        answered = await run_in_threadpool(self.store.answered_items, participant)
        total = len(self.study.items)
        pending = [item for item in item_order(self.study, participant) if item.id not in answered]
        if not pending:
            return self.page("done.html", total=total)
        item = pending[0]
        options = [(chr(ord("A") + i), option) for i, option in enumerate(option_order(self.study, participant, item))]
        return self.page("item.html", study=self.study, item=item, options=options, answered=len(answered),
                         total=total)

    async def answer(self, request: Request) -> Response:
        try:
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
            shown = [option.id for option in option_order(self.study, participant, item)]
            outcome = await run_in_threadpool(self.store.add_answer, participant, item.id, choices, shown)
            if outcome == CONFLICT:
                raise _Refused(409, "this image was already answered differently; the first answer is kept")
        except _Refused as refused:
            return self.refusal(request, refused)
        if _wants_json(request):
            answered = await run_in_threadpool(self.store.answered_items, participant)
            return JSONResponse({"status": outcome, "item": item.id, "answered": len(answered),
                                 "total": len(self.study.items)}, status_code=201 if outcome == STORED else 200)
        return RedirectResponse("/study", status_code=303)

    async def image(self, request: Request) -> Response:
        path = self.media.get(request.path_params["name"])
        if path is None:
            return self.refusal(request, _Refused(404, "no such image"))
        return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})

    # ------------------------------------------------------------ organiser
    async def results(self, request: Request) -> Response:
        from misato.study.tally import tally

        try:
            self.check_token(request)
        except _Refused as refused:
            return self.refusal(request, refused)
        answers = await run_in_threadpool(self.store.answers)
        found = await run_in_threadpool(tally, self.study, answers)
        return JSONResponse({"study_id": self.study.study_id, "counts": found.counts, "shares": found.shares,
                             "intervals": found.intervals})

    async def export(self, request: Request) -> Response:
        try:
            self.check_token(request)
        except _Refused as refused:
            return self.refusal(request, refused)
        answers = await run_in_threadpool(self.store.answers)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["participant", "item", "stem", "attention_check", "question", "option", "method",
                         "ground_truth", "position", "created"])
        for a in answers:
            item = self.study.item(a.item)
            option = item.option(a.option) if item else None
            writer.writerow([a.participant, a.item, item.stem if item else "",
                             int(bool(item and item.attention_check)), a.question, a.option,
                             (option.method or "") if option else "",
                             int(bool(option and option.method is None)),
                             a.shown.index(a.option) + 1 if a.option in a.shown else "", a.created])
        return Response(buffer.getvalue(), media_type="text/csv",
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
    participants' addresses are neither stored nor printed."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app.app, log_level=log_level, access_log=False, proxy_headers=False,
                                         server_header=False))


def new_token() -> str:
    """A fresh organiser token (printed by `serve`, never stored)."""
    return secrets.token_urlsafe(24)


def summary(app: StudyApp, sock: socket.socket, token: str) -> str:
    """What `serve` prints: the participants' URL, the organiser token and how to read the results."""
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    return "\n".join([
        f"study {app.study.study_id}: {len(app.study.items)} items, {len(app.study.methods)} methods; "
        f"answers in {app.store.path}",
        f"participants: {url}",
        f"organiser token: {token}",
        f"results: curl -H 'Authorization: Bearer {token}' {url}results   (CSV of the answers: {url}export)",
    ])

