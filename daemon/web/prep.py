"""The pre-read form of ``cadence run`` (opt-in with ``prep: {listen, public_url}``).

Reps cannot edit an invite they do not own on Google or Outlook, so each person gets a link to a
small page of their own: ``GET /prep/{token}`` shows the meeting in their time zone and the three
fields with what they filed before; ``POST`` saves, and the next pass writes the lines into that
occurrence's agenda block.

This listener faces people (through the company's TLS proxy), unlike the status endpoint, so it
is a Starlette app served by uvicorn, a production HTTP server with a maintained parser (h11),
rather than ``http.server``, which its own documentation says is not for production use. It runs
in its own thread and event loop, with its own ledger connection; handlers are short (one lookup
by primary key, one small write), so they run on the loop. Every answer carries a strict CSP
(no script, nothing from elsewhere, the page's one inline style by hash), ``X-Frame-Options``
and ``Referrer-Policy: no-referrer``, so the token in the path never leaves in a Referer. Tokens
and filed text are never logged; uvicorn's access log is off.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon import logs, preread
from daemon.config import Config
from daemon.core.prep import FIELDS, MAX_FIELD_CHARS, FieldTooLong, Role, clean_fields
from daemon.errors import CadenceError
from daemon.render import Renderer
from daemon.store import Ledger, PrepToken

MAX_BODY = 16 * 1024
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)
_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]
_BASE_CSP = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


class _TooLarge(Exception):
    pass


def _csp(page: str) -> str:
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _STYLE.findall(page)
    ]
    return _BASE_CSP + (f"; style-src {' '.join(hashes)}" if hashes else "")


class SecurityHeaders:
    """Adds the headers every answer carries, whatever produced it (404s and 405s too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in _HEADERS if n not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", _BASE_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class PrepForm:
    """The app's state: the config in force (the daemon follows roster edits), templates, and
    the ledger connection of the server's thread."""

    def __init__(
        self, current: Callable[[], Config], renderer: Renderer, clock: Callable[[], datetime]
    ) -> None:
        self.current = current
        self.state_dir = current().settings.state_dir  # fixed for the daemon's life
        self.renderer = renderer
        self.clock = clock
        self._ledger: Ledger | None = None
        self._key: bytes | None = None
        self._names: tuple[Config, dict[str, str]] | None = None

    def names(self) -> dict[str, str]:
        """Email -> name of everyone on the roster in force, rebuilt when it changes."""
        config = self.current()
        if self._names is None or self._names[0] is not config:
            roster = config.roster
            names = {m.email: m.name for m in roster.managers}
            names |= {r.email: r.name for r in roster.reps}
            self._names = (config, names)
        return self._names[1]

    def ledger(self) -> Ledger:
        # Opened on first use, in the server's own thread (SQLite connections stay in theirs).
        if self._ledger is None:
            self._ledger = Ledger.open(self.state_dir)
            self._key = preread.csrf_key(self._ledger)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    @property
    def key(self) -> bytes:
        self.ledger()
        assert self._key is not None
        return self._key

    # --- pages -----------------------------------------------------------------------------

    def page(self, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        html = self.renderer.page(name, ctx)
        return HTMLResponse(html, status, headers={"Content-Security-Policy": _csp(html)})

    def gone(self, verdict: preread.Verdict) -> Response:
        if verdict is preread.Verdict.EXPIRED:
            return self.page("prep_gone", {"message": "This link has expired: the 1:1 is over."},
                             410)  # fmt: skip
        return self.page("prep_gone", {"message": "This link is not valid."}, 404)

    def form(
        self,
        record: PrepToken,
        token: str,
        values: tuple[str, ...],
        *,
        status: int = 200,
        saved: bool = False,
        problem: str | None = None,
    ) -> Response:
        role = Role(record.role)
        other = record.manager if role is Role.REP else record.rep
        tz = ZoneInfo(record.timezone)
        start = _instant(record.start).astimezone(tz)
        minutes = int((_instant(record.expires_at) - _instant(record.start)).total_seconds() // 60)
        names = self.names()
        ctx = {
            "role": role.value,
            "person": names.get(record.person, record.person),
            "other": names.get(other, other),
            "start": start,
            "duration_minutes": minutes,
            "fields": [
                {"name": name, "label": label, "value": value}
                for (name, label), value in zip(
                    FIELDS[role], values or ("",) * len(FIELDS[role]), strict=True
                )
            ],
            "max_chars": MAX_FIELD_CHARS,
            "csrf": preread.csrf_token(self.key, record),
            "saved": saved,
            "problem": problem,
        }
        return self.page("prep_form", ctx, status)

    # --- handlers --------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        token = request.path_params["token"]
        checked = preread.verify(self.ledger(), token, self.clock())
        if checked.verdict is not preread.Verdict.OK or checked.record is None:
            return self.gone(checked.verdict)
        record = checked.record
        saved = request.query_params.get("saved") == "1"
        return self.form(record, token, preread.filed(self.ledger(), record), saved=saved)

    async def save(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            body = await _body(request)
        except _TooLarge:
            return PlainTextResponse("Too much text: each field holds 500 characters.\n", 413)
        now = self.clock()
        ledger = self.ledger()
        checked = preread.verify(ledger, token, now)
        if checked.verdict is not preread.Verdict.OK or checked.record is None:
            return self.gone(checked.verdict)
        record = checked.record
        try:
            submitted = {
                k: v[0]
                for k, v in parse_qs(
                    body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20
                ).items()
            }
        except ValueError:
            return PlainTextResponse("Bad form.\n", 400)
        if not preread.csrf_ok(self.key, record, submitted.get("csrf", "")):
            return self.page(
                "prep_gone",
                {"message": "This form is out of date: open the link in your email again."},
                403,
            )
        role = Role(record.role)
        try:
            lines = clean_fields(role, submitted)
        except FieldTooLong as exc:
            typed = tuple(submitted.get(name, "")[:MAX_FIELD_CHARS] for name, _ in FIELDS[role])
            label = dict(FIELDS[role])[exc.name]
            problem = (
                f"\u201c{label}\u201d is {exc.length} characters long; it holds "
                f"{MAX_FIELD_CHARS}. Nothing was saved."
            )
            return self.form(record, token, typed, status=400, problem=problem)
        preread.save(ledger, record, lines, now)
        logs.get().info(
            "pre-read filed", action="preread_filed", role=record.role, rep=record.rep,
            manager=record.manager, occurrence=record.occurrence,
        )  # fmt: skip
        # Post/redirect/get: a reload shows the page instead of sending the form again.
        return RedirectResponse(f"{token}?saved=1", status_code=303)


def _instant(utc: str) -> datetime:
    return datetime.fromisoformat(utc.replace("Z", "+00:00"))


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(form: PrepForm) -> ASGIApp:
    async def prep(request: Request) -> Response:
        try:
            if request.method == "POST":
                return await form.save(request)
            return await form.show(request)
        except CadenceError as exc:  # the ledger is busy or broken: say so, briefly
            logs.get().error("pre-read form failed", error=str(exc))
            return PlainTextResponse("Try again in a minute.\n", 503)

    app = Starlette(routes=[Route("/prep/{token}", prep, methods=["GET", "POST"])])
    return SecurityHeaders(app)


class PrepServer:
    """The listener and its thread; ``with PrepServer(...)`` serves until the block ends."""

    def __init__(
        self,
        current: Callable[[], Config],
        address: tuple[str, int],
        renderer: Renderer,
        clock: Callable[[], datetime],
    ) -> None:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            # Listening now: a request that comes before the loop runs waits in the backlog.
            self.sock.listen(128)
        except OSError as exc:
            self.sock.close()
            raise CadenceError(
                f"prep.listen {host}:{port}: cannot listen: {exc.strerror or exc}"
            ) from exc
        self.form = PrepForm(current, renderer, clock)
        self.server = uvicorn.Server(
            uvicorn.Config(
                make_app(self.form), log_config=None, log_level="warning", access_log=False,
                server_header=False, proxy_headers=False, lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )  # fmt: skip
        self.thread = threading.Thread(target=self._serve, name="cadence-prep", daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.form.close()

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def __enter__(self) -> PrepServer:
        self.thread.start()
        logs.get().info("pre-read form listening", url=self.url)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
