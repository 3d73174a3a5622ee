"""A loopback HTTP proxy in front of the calendar server that fails requests on cue.

The daemon talks to the real server through it. ``arm(after, kind, count)`` makes the proxy let
``after`` requests through, then fail the next ``count`` ones the way real servers and networks
do: ``500``/``503`` answers (nothing reaches the server), a connection dropped before the
request is forwarded, one dropped *after* the server applied it (the write happened but its
answer is lost: the hardest case for idempotence), and a request held without an answer until
the client gives up (a timeout). Everything else is passed through byte for byte, and noted in
``seen``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("http_500", "http_503", "drop_before", "drop_after", "timeout")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


class FaultPlan:
    """Which of the next requests fail, and how: armed by the soak, asked by whatever stands
    between the daemon and the server (the proxy below, or a fake server's own handler where
    no proxy can stand, as with Graph over HTTPS)."""

    def __init__(self, hold_seconds: float = 5.0) -> None:
        self.hold_seconds = hold_seconds  # a held request is let go after this, at the latest
        self.injected: Counter[str] = Counter()
        # Every request the server answered: (method, path, status); a counting proxy too.
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._after = 0
        self._kind: str | None = None
        self._count = 0
        self._match: str | None = None
        self._release = threading.Event()

    def arm(self, after: int, kind: str, count: int = 1, match: str | None = None) -> None:
        """Fail ``count`` requests after ``after``, counting only those whose ``METHOD path``
        contains ``match`` when given."""
        with self._lock:
            self._after, self._kind, self._count = after, kind, count
            self._match = match
            self._release.clear()

    def disarm(self) -> None:
        """No more faults; a request still held is let go (as a dropped connection)."""
        with self._lock:
            self._kind, self._count = None, 0
        self._release.set()

    def hold(self) -> None:
        """Keep a request without an answer until the client gives up (or the plan is disarmed)."""
        self._release.wait(self.hold_seconds)

    def note(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.seen.append((method, path, status))

    def next_fault(self, request: str) -> str | None:
        with self._lock:
            if self._kind is None or self._count <= 0:
                return None
            if self._match is not None and self._match not in request:
                return None
            if self._after > 0:
                self._after -= 1
                return None
            self._count -= 1
            self.injected[self._kind] += 1
            return self._kind


class FaultProxy:
    def __init__(self, upstream: str, hold_seconds: float = 5.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = FaultPlan(hold_seconds)
        self.injected = self.plan.injected
        self.seen = self.plan.seen
        self.arm, self.disarm = self.plan.arm, self.plan.disarm
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (ConnectionError, TimeoutError):
                    self.close_connection = True

            def __getattr__(self, name: str) -> object:
                if name.startswith("do_"):
                    return self._forward
                raise AttributeError(name)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy.plan.next_fault(f"{self.command} {self.path}")
                if fault in ("drop_before", "timeout"):
                    if fault == "timeout":
                        proxy.plan.hold()
                    self._hang_up()
                    return
                if fault in ("http_500", "http_503"):
                    status = int(fault[-3:])
                    text = b"injected failure"
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(text)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(text)
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                proxy.plan.note(self.command, self.path, answer.status)
                if fault == "drop_after":
                    self._hang_up()
                    return
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.disarm()
        self._server.shutdown()
        self._server.server_close()
