"""A hung server costs a pass a few timeouts, not one per manager (``daemon.breaker``).

A server that accepts connections and never answers (a stuck proxy, a frozen server) is played
by a loopback listener that does exactly that and counts the connections it gets. The timeouts
are set low in the config; the tests count attempts, never time: one pass makes
``THRESHOLD`` attempts on the hung endpoint, skips the rest of its work with one line naming it,
and the next pass probes once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.breaker import THRESHOLD
from daemon.embedded import EmbeddedRadicale
from daemon.reconcile import run_forever
from tests.fixtures.smtp import Refusing, serve_smtp
from tests.soak.proxy import FaultProxy
from tests.system.harness import Deployment

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # Sunday noon: Monday 09:00 pre-reads are due
MANAGERS = 20
LOW = "connect_timeout_seconds: 0.5, read_timeout_seconds: 0.5"


class HungServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; ``connections`` counts them."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)

    def __enter__(self) -> HungServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


class TunedDeployment(Deployment):
    """A CalDAV deployment with low timeouts (and what else the test needs) in its config."""

    caldav_extra = LOW

    def calendar_config(self) -> str:
        return f"{{caldav: {{url: '{self.url}', {self.caldav_extra}}}}}"


def team(d: Deployment, mail: str | None = None, extra: str = "") -> None:
    """``MANAGERS`` managers in Chicago, each with one ramped AE meeting on Mondays at 09:00."""
    managers = "".join(
        f"- {{email: {m}, name: Manager {i}, timezone: America/Chicago}}\n"
        for i, m in enumerate(d.managers)
    )
    reps = "".join(
        f"- {{email: rep{i}@acme.test, name: Rep {i}, role: ae, start_date: 2025-01-06, "
        f'manager: {m}, slot: {{day: mon, time: "09:00"}}}}\n'
        for i, m in enumerate(d.managers)
    )
    d.write_config(managers, reps, extra, mail)


def events(stdout: str, name: str) -> list[dict[str, object]]:
    found = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


@pytest.fixture
def hung() -> Iterator[HungServer]:
    with HungServer() as server:
        yield server


def test_a_hung_calendar_server_costs_a_few_timeouts_and_the_next_pass_probes_once(
    tmp_path: Path, hung: HungServer
) -> None:
    d = TunedDeployment(tmp_path, f"http://127.0.0.1:{hung.port}/",
                        [f"m{i}@acme.test" for i in range(MANAGERS)])  # fmt: skip
    team(d)
    first = d.cli("once", "--now", T0.isoformat())
    assert first.returncode == 1
    (line,) = first.stderr.strip().splitlines()
    assert line.startswith(f"cadence: calendar server http://127.0.0.1:{hung.port}/ is not")
    assert f"{THRESHOLD} failures in a row" in line and "next pass" in line
    # THRESHOLD attempts, not one per manager; the log says so once.
    assert hung.connections == THRESHOLD
    assert len(events(first.stdout, "endpoint not answering; its remaining work this pass is "
                                    "skipped")) == 1  # fmt: skip
    (done,) = events(first.stdout, "pass done")
    assert done["errors"] == 1

    second = d.cli("once", "--now", (T0 + timedelta(minutes=1)).isoformat())
    assert second.returncode == 1
    assert hung.connections == THRESHOLD + 1  # one probe
    (line,) = second.stderr.strip().splitlines()
    assert f"127.0.0.1:{hung.port}" in line and "still not answering" in line


def test_a_hung_mail_server_stops_the_emails_not_the_calendar(
    tmp_path: Path, hung: HungServer, radicale: EmbeddedRadicale
) -> None:
    d = Deployment(tmp_path, radicale.url,
                   [f"hm{i}-{tmp_path.name}@acme.test" for i in range(MANAGERS)])  # fmt: skip
    smtp = f"transport: smtp, smtp: {{host: 127.0.0.1, port: {hung.port}, security: none, {LOW}}}"
    team(d, mail=smtp)
    first = d.once(T0)
    # The calendar's work went on: every series is there.
    assert first.created == MANAGERS
    # Pre-reads were due for 20 meetings (40 emails): THRESHOLD attempts, then none.
    assert first.emails == 0
    assert hung.connections == THRESHOLD
    assert first.exit_code == 1
    (error,) = first.errors
    assert error.startswith(f"mail server 127.0.0.1:{hung.port} is not answering")
    assert first.endpoints_opened == [f"mail server 127.0.0.1:{hung.port}"]

    second = d.once(T0 + timedelta(minutes=1))
    assert hung.connections == THRESHOLD + 1  # one probe, then the emails wait again
    assert second.emails == 0 and second.endpoints_opened == []
    (error,) = second.errors
    assert "still not answering" in error


def test_an_open_breaker_alerts_the_admins_once_and_its_closing_once(
    tmp_path: Path, radicale: EmbeddedRadicale
) -> None:
    with FaultProxy(radicale.url, hold_seconds=2.0) as proxy:
        d = TunedDeployment(tmp_path, proxy.url,
                            [f"am{i}-{tmp_path.name}@acme.test" for i in range(4)])  # fmt: skip
        team(d)
        text = d.config_path.read_text().replace(
            "organization: {name: Acme,", "organization: {name: Acme, admins: [ops@acme.test],"
        )
        d.config_path.write_text(text)
        endpoint = f"calendar server {proxy.url}"
        proxy.arm(0, "timeout", count=1000)
        down = d.once(T0)
        assert proxy.injected["timeout"] == THRESHOLD
        assert down.endpoints_opened == [endpoint]
        assert down.endpoints_down == [endpoint]
        alerts = d.mail_of("admin_alert")
        assert len(alerts) == 1 and endpoint in alerts[0]["Subject"] + str(alerts[0])

        still = d.once(T0 + timedelta(minutes=1))
        assert proxy.injected["timeout"] == THRESHOLD + 1
        assert still.endpoints_opened == [] and len(d.mail_of("admin_alert")) == 1

        proxy.disarm()
        back = d.once(T0 + timedelta(minutes=2))
        assert back.errors == [] and back.created == 4
        assert back.endpoints_closed == [endpoint] and back.endpoints_down == []
        assert len(d.mail_of("admin_alert")) == 2  # the second one says it is over
        again = d.once(T0 + timedelta(minutes=3))
        assert again.endpoints_closed == [] and len(d.mail_of("admin_alert")) == 2


class CountingRefusal(Refusing):
    """A mail server that answers every recipient "451 try again later"; counts the tries."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    async def handle_RCPT(self, *args: Any) -> str:
        self.tries += 1
        return await super().handle_RCPT(*args)


def test_run_keeps_its_interval_for_the_calendar_while_a_dead_mail_server_waits_its_turn(
    tmp_path: Path, radicale: EmbeddedRadicale
) -> None:
    """``cadence run`` on an injected clock with a mail server that refuses everything: the
    calendar's work goes on every interval (a manager added to the roster gets their series
    at the next pass), while the mail server is tried once per probe of its own back-off
    (5 s, 10 s, 20 s... from its opening), never once per pass."""
    handler = CountingRefusal()
    with serve_smtp(handler) as server:
        d = Deployment(tmp_path, radicale.url,
                       [f"rm{i}-{tmp_path.name}@acme.test" for i in range(MANAGERS)])  # fmt: skip
        smtp = f"transport: smtp, smtp: {{host: 127.0.0.1, port: {server.port}, security: none}}"
        team(d, mail=smtp, extra="interval_seconds: 60\n")
        late = f"late-{tmp_path.name}@acme.test"
        now = [T0]
        waits: list[float] = []
        tries: list[int] = []  # the mail server's tries so far, at each wait
        late_series: list[int] = []

        def wait(seconds: float) -> bool:
            waits.append(seconds)
            tries.append(handler.tries)
            late_series.append(len(d.series(late)) if late in d.managers else -1)
            now[0] += timedelta(seconds=seconds)
            if len(waits) == 8:  # a manager joins the roster
                d.managers.append(late)
                team(d, mail=smtp, extra="interval_seconds: 60\n")
            return len(waits) == 12

        try:
            assert run_forever(d.config(), clock=lambda: now[0], wait=wait) == 0
        finally:
            structlog.reset_defaults()
    # Passes at 0, 5, 15, 35 and 75 s probe the mail server (its back-off: 5, 10, 20, 40, 80
    # s); from then on the loop waits the interval, or less when a probe falls due sooner
    # (155 s, 315 s), never more. Before, every pass backed off: 5, 10, 20... up to 300 s.
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 20.0, 60.0, 60.0, 40.0, 60.0, 60.0, 60.0]
    assert tries == [THRESHOLD + n for n in (0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6)]
    assert max(waits) <= 60
    # The manager added before the ninth wait has a series after it: one interval at most.
    assert late_series[8:] == [1, 1, 1, 1] and late_series[7] == -1
    assert server.received == []
