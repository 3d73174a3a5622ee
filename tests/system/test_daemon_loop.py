"""`cadence run` as an operator meets it: stopping cleanly, backing off while a server is down,
recovering when it returns; and emails that stay due while the mail server misbehaves.

The loop's clock and sleep are injected where timing matters; signal tests run the real command
in a subprocess and read its JSON log lines, never sleeping.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.errors import NotFound
from daemon.reconcile import run_forever
from tests.fixtures.radicale import CalDAVServer, radicale_server
from tests.fixtures.smtp import Dropping, Refusing, free_port, serve_smtp
from tests.system.conftest import caldav_deployment
from tests.system.harness import REPO, Deployment
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # Sunday noon: Lee's Monday 1:1 pre-reads are due
QUIET = "interval_seconds: 3600\n"  # one pass, then a long wait the test interrupts


def ramping_soon() -> date:
    """Sam's start date for a daemon on the real clock: he ramps ten days from today, so on any
    day the first pass makes his new-SDR series (its Tue/Thu meetings before the ramp) and his
    ramped series ahead (inside the 14-day horizon): four series with Lee's and Ana's."""
    return date.today() - timedelta(days=90 - 10)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # run_forever configured logging for this test's stderr


class Daemon:
    """`cadence run` in its own process group, its JSON log lines read as they come."""

    def __init__(self, deployment: Deployment) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--config", str(deployment.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, cwd=REPO, start_new_session=True,
        )  # fmt: skip
        # A daemon that never logs what the test waits for is killed, so the test fails, not hangs.
        self._watchdog = threading.Timer(90, self.process.kill)
        self._watchdog.start()
        self.events: list[dict[str, Any]] = []

    def until(self, event: str) -> dict[str, Any]:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            record = json.loads(line) if line.startswith("{") else {"event": line.strip()}
            self.events.append(record)
            if record.get("event") == event:
                return record
        raise AssertionError(f"the daemon exited before logging {event!r}: {self.events}")

    def stop(self, signum: signal.Signals, group: bool = False) -> int:
        if group:
            os.killpg(self.process.pid, signum)  # what Ctrl-C in a terminal does
        else:
            self.process.send_signal(signum)
        _, err = self.process.communicate(timeout=60)
        self._watchdog.cancel()
        self.events += [json.loads(x) for x in err.splitlines() if x.startswith("{")]
        return self.process.returncode

    def close(self) -> None:
        self._watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def deployment(tmp_path: Path, caldav_server: CalDAVServer) -> Deployment:
    """The daemon as a process, on each real CalDAV server (the loop is provider-neutral; the
    tests that start and stop a server themselves use the embedded Radicale, the default)."""
    return caldav_deployment(tmp_path, caldav_server)


@pytest.fixture
def daemon() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.close()


def test_sigterm_after_a_pass_exits_zero_with_the_series_in_place(
    deployment: Deployment, daemon: list[Daemon]
) -> None:
    maya, _ = setup(deployment, extra=QUIET, sam_start=ramping_soon())
    run = Daemon(deployment)
    daemon.append(run)
    done = run.until("pass done")
    assert done["errors"] == 0 and done["writes"] == 4  # Sam's ramped series too, ahead

    assert run.stop(signal.SIGTERM) == 0
    names = [e["event"] for e in run.events]
    assert names[-2:] == ["stopping", "cadence stopped"]
    assert len(deployment.series(maya)) == 4


def test_ctrl_c_on_the_embedded_defaults_stops_the_daemon_and_its_calendar_server(
    tmp_path: Path, daemon: list[Daemon]
) -> None:
    deployment = Deployment(tmp_path, "", ["maya@acme.test", "raj@acme.test"])
    maya, _ = setup(deployment, extra=QUIET, sam_start=ramping_soon())
    run = Daemon(deployment)
    daemon.append(run)
    deployment.url = run.until("embedded calendar server started")["url"]
    assert deployment.url.startswith("http://127.0.0.1:")
    run.until("pass done")
    assert len(deployment.series(maya)) == 4

    assert run.stop(signal.SIGINT, group=True) == 0
    names = [e["event"] for e in run.events]
    assert names[-1] == "cadence stopped"
    assert not [e for e in run.events if e.get("level") in ("warning", "error")]
    port = int(deployment.url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass  # the embedded Radicale went with the daemon


def test_run_backs_off_while_the_calendar_is_down_and_recovers_when_it_returns(
    tmp_path: Path,
) -> None:
    # Radicale only: the server is brought up mid-run on the port the config already names,
    # which the embedded server (cadence's own) does and the Xandikos fixture does not.
    port = free_port()
    deployment = Deployment(tmp_path, f"http://127.0.0.1:{port}/", ["maya@acme.test", "r@x.test"])
    maya, _ = setup(deployment, extra="interval_seconds: 60\n")
    now = [T0]
    waits: list[float] = []
    with ExitStack() as servers:

        def wait(seconds: float) -> bool:
            waits.append(seconds)
            now[0] += timedelta(seconds=seconds)
            if len(waits) == 2:  # the calendar server comes back during the second back-off
                servers.enter_context(radicale_server(tmp_path / "radicale", port=port))
            return len(waits) == 3

        assert run_forever(deployment.config(), clock=lambda: now[0], wait=wait) == 0
        # 5 s, then 10 s while it is down; the usual interval once a pass gets through.
        assert waits == [5.0, 10.0, 60.0]
        assert len(deployment.series(maya)) == 4


@pytest.mark.parametrize("trouble", ["refuses", "drops the connection"])
def test_an_smtp_server_in_trouble_keeps_the_emails_due_and_they_go_once_later(
    deployment: Deployment, trouble: str
) -> None:
    handler = Refusing() if trouble == "refuses" else Dropping()
    with serve_smtp(handler) as server:
        smtp = f"transport: smtp, smtp: {{host: 127.0.0.1, port: {server.port}, security: none}}"
        maya, _ = setup(deployment, mail=smtp)
        troubled = deployment.once(T0)
        assert troubled.writes == 4  # the calendar work is done regardless
        assert troubled.emails == 0 and troubled.unavailable
        assert f"127.0.0.1:{server.port}" in troubled.errors[0]
        assert server.received == []

        if isinstance(handler, Refusing):
            handler.refuse = False
        else:
            handler.drop = False
        back = deployment.once(T0 + timedelta(minutes=2))
        assert back.emails == 2 and back.errors == []
        assert sorted(str(r.message["To"]) for r in server.received) == sorted(
            ["lee@acme.test", maya]
        )
        assert deployment.once(T0 + timedelta(minutes=3)).emails == 0
        assert len(server.received) == 2


def test_a_broken_admin_template_stops_once_before_anything_is_touched(
    deployment: Deployment, tmp_path: Path
) -> None:
    folder = tmp_path / "my-templates"
    folder.mkdir()
    broken = folder / "recap.txt.j2"
    broken.write_text("Hi {{ rep.first_name }},\n\nYour commitment: {{ commitment }\n")
    maya, _ = setup(deployment, extra=f"templates: {{dir: '{folder}'}}\n")

    result = deployment.cli("once", "--now", T0.isoformat())
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(broken.resolve()) in line and "line 3" in line
    assert "Traceback" not in result.stderr
    with pytest.raises(NotFound):  # not even the calendar was created
        deployment.series(maya)
    assert deployment.mail() == []


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
def test_a_killed_daemon_takes_its_embedded_calendar_server_with_it(
    tmp_path: Path, daemon: list[Daemon]
) -> None:
    deployment = Deployment(tmp_path, "", ["maya@acme.test", "raj@acme.test"])
    setup(deployment, extra=QUIET, sam_start=ramping_soon())
    run = Daemon(deployment)
    daemon.append(run)
    run.until("pass done")
    pid = run.process.pid
    (child,) = [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]
    server = os.pidfd_open(child)
    try:
        run.process.kill()  # SIGKILL: no chance to stop the server itself
        run.process.wait(timeout=30)
        ready, _, _ = select.select([server], [], [], 30)  # readable once the server exited
        assert ready == [server], "the embedded Radicale outlived the daemon"
    finally:
        os.close(server)
