"""One writer per state dir, as an operator meets it: cron overlapping a manual run, a rolling
restart, a daemon SIGKILLed while it held the lock. Real processes; nothing sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from daemon.errors import NotFound
from daemon.lock import state_lock
from tests.system.harness import Deployment
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # Sunday noon: Lee's Monday pre-reads are due


def _once(d: Deployment) -> subprocess.Popen[str]:
    return d.spawn("once", "--now", T0.isoformat())


def _one_of_everything(d: Deployment, manager: str) -> None:
    series = d.series(manager)
    per_rep = Counter(
        (next(a.email for a in s.attendees if a.email != manager), s.rrule) for s in series.values()
    )
    assert len(series) == 4 and set(per_rep.values()) == {1}, per_rep
    sent = Counter((m["X-Cadence-Occurrence"], m["X-Cadence-Kind"], m["To"]) for m in d.mail())
    assert sent and set(sent.values()) == {1}, sent


def _no_series(d: Deployment, manager: str) -> bool:
    try:
        return d.series(manager) == {}
    except NotFound:  # CalDAV: not even the calendar was made
        return True


def test_a_second_once_on_a_held_state_dir_exits_4_naming_the_holder(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    state = deployment.root / "state"
    with state_lock(state):
        turned_away = [_once(deployment) for _ in range(3)]
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in turned_away]
    for code, err in results:
        assert code == 4, err
        (line,) = err.splitlines()
        assert f"pid {os.getpid()}" in line and str(state) in line
    # Nothing was touched: no series made, no email sent.
    assert _no_series(deployment, maya) and deployment.mail() == []

    # Released: the next one runs.
    assert deployment.cli("once", "--now", T0.isoformat()).returncode == 0
    _one_of_everything(deployment, maya)


def test_three_once_started_together_one_writes_the_others_step_aside(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    started = [_once(deployment) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in started]
    codes = [code for code, _ in results]
    # Whether they overlap is up to the scheduler; whichever did, none fails for another reason.
    assert 0 in codes and set(codes) <= {0, 4}, results
    for code, err in results:
        if code == 4:
            assert len(err.splitlines()) == 1 and "pid " in err
        else:
            assert err == ""
    _one_of_everything(deployment, maya)


def test_a_sigkilled_holder_leaves_no_stale_lock(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    env = {**os.environ, "CADENCE_TEST_FAULT": "series-created#1"}
    killed = deployment.cli("once", "--now", T0.isoformat(), env=env)
    assert killed.returncode == -signal.SIGKILL
    assert (deployment.root / "state" / "cadence.lock").exists()
    rerun = deployment.cli("once", "--now", T0.isoformat())
    assert rerun.returncode == 0, rerun.stderr
    _one_of_everything(deployment, maya)


def test_run_wait_for_lock_starts_when_the_holder_lets_go(deployment: Deployment) -> None:
    maya, _ = setup(deployment, extra="interval_seconds: 3600\n")
    state = deployment.root / "state"
    events: list[dict[str, object]] = []
    with state_lock(state):
        run = deployment.spawn("run", "--wait-for-lock")
        watchdog = threading.Timer(90, run.kill)  # a test that would hang fails instead
        watchdog.start()
        assert run.stderr is not None
        lines = iter(run.stderr)

        def until(name: str) -> dict[str, object]:
            for line in lines:
                record = json.loads(line) if line.startswith("{") else {"event": line.strip()}
                events.append(record)
                if record["event"] == name:
                    return record
            raise AssertionError(f"run exited before logging {name!r}: {events}")

        waiting = until("waiting for the state dir lock")
        assert waiting["pid"] == os.getpid()
        assert _no_series(deployment, maya)  # nothing written while it waits
    try:
        assert until("pass done")["errors"] == 0
        # On the real clock: a series per rep at least (Sam's ramp may be within the horizon).
        assert len(deployment.series(maya)) >= 3
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        if run.poll() is None:
            run.kill()
            run.wait()


def test_run_waiting_for_the_lock_stops_cleanly_on_sigterm(deployment: Deployment) -> None:
    setup(deployment, extra="interval_seconds: 3600\n")
    with state_lock(deployment.root / "state"):
        run = deployment.spawn("run", "--wait-for-lock")
        watchdog = threading.Timer(90, run.kill)
        watchdog.start()
        try:
            assert run.stderr is not None
            first = json.loads(run.stderr.readline())
            assert first["event"] == "waiting for the state dir lock"
            run.send_signal(signal.SIGTERM)  # systemd stopping a daemon still in line
            assert run.wait(timeout=60) == 0
            assert run.stderr.read() == ""
        finally:
            watchdog.cancel()
            if run.poll() is None:
                run.kill()
                run.wait()
