"""A roster that lives: `cadence run` follows edits to its YAML and CSV between passes, keeps the
last good roster through a broken edit, and tells the admins once when it breaks and once when
it is fixed.

The loop runs in-process with an injected clock and an injected wait, which makes the edits
between passes; the SIGHUP test runs the real command and reads its JSON log lines.
"""

from __future__ import annotations

import json
import signal
import textwrap
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.config import load
from daemon.reconcile import run_forever
from tests.fixtures.smtp import free_port
from tests.system.harness import Deployment, text_of
from tests.system.test_daemon_loop import Daemon, daemon  # noqa: F401 - the fixture

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # a Sunday
HEADER = "email,name,role,start_date,manager,timezone,slot\n"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def write(
    d: Deployment, *, zone: str = "America/Chicago", interval: int = 60, extra: str = ""
) -> None:
    maya, raj = d.managers
    d.config_path.write_text(
        textwrap.dedent(f"""\
        organization: {{name: Acme, timezone: America/New_York, fiscal_year_start: "02-01",
                        admins: [ops@acme.test]}}
        managers:
          - {{email: {maya}, name: Maya Chen, timezone: {zone}}}
          - {{email: {raj}, name: Raj Patel, timezone: America/New_York}}
        reps: roster.csv
        state_dir: {d.root / "state"}
        interval_seconds: {interval}
        calendar: {d.calendar_config()}
        mail: {{from: 'cadence <cadence@acme.test>', maildir: {d.root / "outbox"}}}
        """)
        + extra
    )


def roster(d: Deployment, *rows: str) -> None:
    (d.root / "roster.csv").write_text(HEADER + "".join(f"{r}\n" for r in rows))


def lee(d: Deployment, start: date = date(2025, 1, 6)) -> str:
    return f"lee@acme.test,Lee Park,ae,{start.isoformat()},{d.managers[0]},,mon 11:00"


def zoe(d: Deployment, start: date = date(2025, 3, 3)) -> str:
    return f"zoe@acme.test,Zoe Adams,ae,{start.isoformat()},{d.managers[0]},,wed 15:00"


def log_events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_run_follows_roster_edits_and_tells_the_admins_about_a_broken_one(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    d = deployment
    maya = d.managers[0]
    status = f"http://127.0.0.1:{free_port()}"
    http = f"http: {{listen: '{status.removeprefix('http://')}'}}\n"
    write(d, extra=http)
    roster(d, lee(d))
    now = [T0]
    passes: list[list[dict[str, Any]]] = []

    def added_zoe() -> None:
        roster(d, lee(d), zoe(d))

    def zoe_is_there() -> None:
        (series,) = d.rep_series(maya, "zoe@acme.test")
        # Wednesday 25 Nov 15:00 Chicago; its pre-read is due 24 hours before.
        assert series.start == datetime(2026, 11, 25, 15, 0, tzinfo=ZoneInfo("America/Chicago"))
        assert [m for m in d.mail_of("preread") if m["To"] == "zoe@acme.test"] == []
        now[0] = series.start - timedelta(hours=24) + timedelta(minutes=1)

    def prereads_went() -> None:
        to_zoe = [m for m in d.mail_of("preread") if m["To"] == "zoe@acme.test"]
        assert len(to_zoe) == 1
        write(d, zone="Mars/Base", extra=http)  # a broken edit

    def still_broken() -> None:
        now[0] += timedelta(minutes=1)

    def fixed() -> None:
        write(d, extra=http)
        now[0] += timedelta(minutes=1)

    steps = [added_zoe, zoe_is_there, prereads_went, still_broken, fixed]
    waits: list[float] = []
    open_alerts: list[list[str]] = []  # the status endpoint's alerts after each pass

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        passes.append(log_events(capsys.readouterr().err))
        with urllib.request.urlopen(f"{status}/healthz", timeout=10) as answer:
            health = json.loads(answer.read())
        assert health["status"] == "ok"  # an admin's problem, not the daemon's
        open_alerts.append([a["problem"] for a in health["alerts"]])
        if len(waits) > len(steps):
            return True
        steps[len(waits) - 1]()
        return False

    assert run_forever(load(d.config_path), clock=lambda: now[0], wait=wait) == 0
    assert waits == [60.0] * 6  # no pass failed, none backed off

    # Zoe's series came with the edit, on the next pass; nothing was written twice.
    assert [e["event"] for e in passes[1] if e["event"] == "roster reloaded"] == ["roster reloaded"]
    assert len(d.rep_series(maya, "zoe@acme.test")) == 1
    assert len(d.rep_series(maya, "lee@acme.test")) == 1

    # The broken edit: reported on each pass while it lasts, one line a pass, with the place.
    for broken in passes[3:5]:
        (error,) = [e for e in broken if e["event"].startswith("roster edit invalid")]
        (problem,) = error["problems"]
        assert problem.startswith(f"{d.config_path}:4: managers[0] ({maya}): timezone")
        assert not [e for e in broken if e["event"] == "roster reloaded"]
    alerts = d.mail_of("admin_alert")
    assert len(alerts) == 2  # one when it broke, one when it was fixed; none in between
    opened, cleared = sorted(alerts, key=lambda m: "resolved" in str(m["Subject"]))
    assert opened["To"] == "ops@acme.test" and "needs you" in str(opened["Subject"])
    assert "Mars/Base" in text_of(opened) and str(d.config_path) in text_of(opened)
    assert "resolved" in str(cleared["Subject"])
    # The status endpoint carried the open problem while it lasted.
    assert open_alerts == [[], [], [], ["roster"], ["roster"], []]
    # While broken, the daemon ran on the last good roster: Zoe and Lee kept their series.
    assert len(d.rep_series(maya, "zoe@acme.test")) == 1


def test_sighup_picks_up_an_edit_without_waiting_for_the_interval(
    deployment: Deployment,
    daemon: list[Daemon],  # noqa: F811 - the fixture
) -> None:
    d = deployment
    maya = d.managers[0]
    write(d, interval=3600)
    today = date.today()
    roster(d, lee(d, today - timedelta(days=400)))
    run = Daemon(d)
    daemon.append(run)
    assert run.until("pass done")["errors"] == 0
    assert d.rep_series(maya, "zoe@acme.test") == []

    roster(d, lee(d, today - timedelta(days=400)), zoe(d, today - timedelta(days=400)))
    run.process.send_signal(signal.SIGHUP)
    reloaded = run.until("roster reloaded")
    assert reloaded["added"] == ["zoe@acme.test"]
    assert run.until("pass done")["errors"] == 0
    assert len(d.rep_series(maya, "zoe@acme.test")) == 1

    assert run.stop(signal.SIGTERM) == 0


def test_the_safety_valve_is_one_alert_while_it_lasts_and_one_when_it_is_over(
    deployment: Deployment,
) -> None:
    d = deployment
    maya = d.managers[0]
    write(d)
    roster(d, lee(d), zoe(d))
    assert d.once(T0).errors == []
    for uid in d.series(maya):
        d.delete(maya, uid)

    tripped = d.once(T0 + timedelta(minutes=1))
    assert tripped.alarms and d.series(maya) == {}
    (alert,) = d.mail_of("admin_alert")
    assert alert["To"] == "ops@acme.test" and maya in str(alert["Subject"])
    assert "--restore-missing" in text_of(alert)
    # Still tripped on the next passes, and after a restart (a new runtime): nothing new.
    assert d.once(T0 + timedelta(minutes=2)).alarms
    assert d.once(T0 + timedelta(minutes=3)).alarms
    assert len(d.mail_of("admin_alert")) == 1

    assert d.once(T0 + timedelta(minutes=4), restore_missing=True).alarms == []
    assert len(d.series(maya)) == 2
    resolved = [m for m in d.mail_of("admin_alert") if "resolved" in str(m["Subject"])]
    assert len(resolved) == 1 and maya in str(resolved[0]["Subject"])
    assert d.once(T0 + timedelta(minutes=5)).emails == 0
    assert len(d.mail_of("admin_alert")) == 2
