"""The status endpoint of ``cadence run`` (opt-in with ``http: {listen: HOST:PORT}``).

An operator, a Kubernetes probe and Prometheus need to tell from outside whether the daemon is
doing its job: ``/healthz`` answers 200 while the last good pass is recent (within three
intervals) and 503 with the reason otherwise; ``/metrics`` is the Prometheus text format made by
``prometheus-client``; ``/`` is the HTML rate report. The server runs in its own threads and only
reads: pass figures are handed over after each pass, the report opens the ledger read-only, so a
slow scrape never holds up a pass.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from daemon import logs
from daemon.config import Config
from daemon.errors import CadenceError

if TYPE_CHECKING:
    from daemon.reconcile import PassResult

HEALTHY_INTERVALS = 3


class Instruments:
    """The daemon's counters, in a registry of its own (so two daemons in one test process, or
    a test and the library's defaults, never mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes = Counter("cadence_passes", "Reconcile passes, by outcome", ["outcome"],
                              registry=r)  # fmt: skip
        self.duration = Histogram(
            "cadence_pass_duration_seconds", "Wall time of one pass", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )  # fmt: skip
        self.created = Counter("cadence_series_created", "Series created", registry=r)
        self.ended = Counter("cadence_series_ended", "Series ended or given their end",
                             registry=r)  # fmt: skip
        self.agendas = Counter("cadence_agenda_writes", "Agenda block writes", registry=r)
        self.emails = Counter("cadence_emails_sent", "Emails sent, by kind", ["kind"], registry=r)
        self.api_errors = Counter(
            "cadence_api_errors", "Calendar and mail errors, by provider and kind",
            ["provider", "kind"], registry=r,
        )  # fmt: skip
        self.cancellations = Counter(
            "cadence_cancellations", "Cancellations newly recorded, by kind", ["kind"], registry=r
        )
        self.rate = Gauge(
            "cadence_cancellation_rate",
            "Cancelled / scheduled 1:1s that started in the last 13 weeks, per manager",
            ["manager"], registry=r,
        )  # fmt: skip
        self.last_success = Gauge(
            "cadence_last_success_timestamp_seconds", "When the last good pass ran", registry=r
        )
        self.endpoint_down = Gauge(
            "cadence_endpoint_down", "1 while an endpoint's breaker is open (daemon.breaker)",
            ["endpoint"], registry=r,
        )  # fmt: skip
        self.breaker_changes = Counter(
            "cadence_breaker_changes", "Breakers opened and closed, by endpoint",
            ["endpoint", "to"], registry=r,
        )  # fmt: skip
        for outcome in ("ok", "unavailable", "failed"):
            self.passes.labels(outcome)

    def record(self, result: PassResult | None, seconds: float, ok: bool, at: datetime) -> None:
        outcome = "ok" if ok else ("unavailable" if result is not None else "failed")
        self.passes.labels(outcome).inc()
        self.duration.observe(seconds)
        if ok:
            self.last_success.set(at.timestamp())
        if result is None:
            return
        self.created.inc(result.created)
        self.ended.inc(result.ended)
        self.agendas.inc(result.agendas)
        for kind, n in result.sent.items():
            self.emails.labels(kind).inc(n)
        for kind, n in result.cancellations.items():
            self.cancellations.labels(kind).inc(n)
        for (provider, kind), n in result.api_errors.items():
            self.api_errors.labels(provider, kind).inc(n)
        for manager, rate in result.manager_rates.items():
            self.rate.labels(manager).set(rate)
        for endpoint in result.endpoints_opened:
            self.breaker_changes.labels(endpoint, "open").inc()
            self.endpoint_down.labels(endpoint).set(1)
        for endpoint in result.endpoints_closed:
            self.breaker_changes.labels(endpoint, "closed").inc()
            self.endpoint_down.labels(endpoint).set(0)


class Health:
    """What /healthz answers, updated by the loop after each pass."""

    def __init__(self, interval: float, clock: Callable[[], datetime]) -> None:
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.last_success: datetime | None = None
        self.last_pass: datetime | None = None
        self.last_problem: str | None = None
        self.alerts: list[dict[str, str]] = []  # the open admin alerts (daemon.alerts)
        self.endpoints_down: list[str] = []  # whose breaker is open (daemon.breaker)
        self._lock = threading.Lock()

    def passed(
        self,
        at: datetime,
        ok: bool,
        problem: str | None,
        alerts: list[dict[str, str]] | None = None,
        endpoints_down: list[str] | None = None,
    ) -> None:
        with self._lock:
            self.last_pass = at
            if alerts is not None:
                self.alerts = alerts
            if endpoints_down is not None:
                self.endpoints_down = endpoints_down
            if ok:
                self.last_success = at
                self.last_problem = None
            else:
                self.last_problem = problem

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            now = self.clock()
            limit = HEALTHY_INTERVALS * self.interval
            since = self.last_success or self.started
            age = (now - since).total_seconds()
            ok = self.last_success is not None and age <= limit
            body: dict[str, Any] = {
                "status": "ok" if ok else "failing",
                "last_success": self.last_success.isoformat() if self.last_success else None,
                "last_pass": self.last_pass.isoformat() if self.last_pass else None,
                "interval_seconds": self.interval,
                # Operational problems for an admin (an invalid roster edit, the safety valve...):
                # the daemon itself is fine, so they do not make it unhealthy.
                "alerts": list(self.alerts),
                # Servers not answering: their work is skipped after a few failures in a row,
                # and probed once a pass until they answer.
                "endpoints_down": list(self.endpoints_down),
            }
            if self.last_problem:
                body["last_problem"] = self.last_problem
            if not ok:
                if self.last_success is None and age <= limit:
                    body["why"] = "no pass has succeeded yet"
                elif self.last_success is None:
                    body["why"] = f"no pass has succeeded in the {age:.0f} s since start"
                else:
                    body["why"] = (
                        f"the last good pass was {age:.0f} s ago, more than {HEALTHY_INTERVALS}"
                        f" intervals of {self.interval:g} s"
                    )
                if self.last_problem:
                    body["why"] += f": {self.last_problem}"
            return ok, body


class StatusServer:
    """The listener and its thread; ``with StatusServer(...)`` serves until the block ends."""

    def __init__(
        self,
        config: Callable[[], Config],  # the roster in use now: run follows roster edits
        address: tuple[str, int],
        health: Health,
        instruments: Instruments,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.health = health
        self.instruments = instruments
        self.clock = clock
        handler = _handler(self)
        try:
            self.httpd = ThreadingHTTPServer(address, handler)
        except OSError as exc:
            raise CadenceError(
                f"http.listen {address[0]}:{address[1]}: cannot listen: {exc.strerror or exc}"
            ) from exc
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="cadence-status", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"

    def __enter__(self) -> StatusServer:
        self.thread.start()
        logs.get().info("status endpoint listening", url=self.url)
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def report_page(self) -> str:
        from daemon import report

        return report.render_html(report.build(self.config(), self.clock()))


def _handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cadence"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok, body = server.health.verdict()
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                data = generate_latest(server.instruments.registry)
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, data)
            elif path == "/":
                try:
                    page = server.report_page()
                except CadenceError as exc:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
                               f"{exc}\n".encode())  # fmt: skip
                    return
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", page.encode())
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Scrapes and probes every few seconds would drown the pass log."""

    return Handler
