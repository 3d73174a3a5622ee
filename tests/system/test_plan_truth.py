"""`cadence plan` tells what the daemon will do: it keeps the slots the ledger says are in use,
and `--diff` dry-runs the next pass against the real calendar, writing nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.core.plan import plan
from daemon.errors import NotFound
from daemon.store import Ledger
from tests.fixtures.smtp import free_port
from tests.system.harness import Deployment
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)
LEE, ANA = "lee@acme.test", "ana@acme.test"
LEE_MON = datetime(2026, 11, 23, 9, 0, tzinfo=CHI)


def times(d: Deployment, at: datetime) -> dict[str, str]:
    out = d.cli("plan", "--at", at.isoformat(), "--json")
    assert out.returncode == 0, out.stderr
    return {s["rep"]: s["time"] for s in json.loads(out.stdout)["series"]}


def test_the_plan_keeps_the_slots_in_use_where_a_stateless_one_would_move_them(
    deployment: Deployment,
) -> None:
    d = deployment
    maya, _ = setup(d)
    d.once(T0)
    before = times(d, T0)
    # Lee leaves. From the roster alone, Ana would take Lee's freed 09:00...
    lines = d.config_path.read_text().splitlines(keepends=True)
    d.config_path.write_text("".join(line for line in lines if LEE not in line))
    stateless = {p.rep.email: p.pattern.time.strftime("%H:%M") for p in plan(d.config().roster, T0)}
    assert stateless[ANA] != before[ANA]
    # ...but the daemon keeps her slot, and so does the plan.
    assert times(d, T0)[ANA] == before[ANA]
    d.once(T0 + timedelta(hours=1))
    (ana,) = [s for s in d.rep_series(maya, ANA) if s.until is None]
    assert ana.start.astimezone(CHI).strftime("%H:%M") == before[ANA]


def test_plan_diff_shows_the_next_pass_and_writes_nothing(deployment: Deployment) -> None:
    d = deployment
    maya, _ = setup(d)
    first = d.cli("plan", "--diff", "--at", T0.isoformat(), "--json")
    assert first.returncode == 0, first.stderr
    creates = [a for a in json.loads(first.stdout)["actions"] if a["action"] == "create"]
    assert {a["rep"] for a in creates} == {"sam@acme.test", LEE, ANA}
    if d.kind in ("caldav", "outlook"):  # a calendar cadence makes in the manager's account
        with pytest.raises(NotFound):  # nothing was created by looking, not even the calendar
            d.series(maya)
    else:  # the manager's calendar exists already: nothing was put on it
        assert d.series(maya) == {}

    d.once(T0)
    lee_uid = next(s.uid for s in d.rep_series(maya, LEE))
    d.cancel(maya, lee_uid, LEE_MON + timedelta(days=7))
    state = d.root / "state" / "cadence.sqlite3"
    ledger_before = state.read_bytes()
    mail_before = len(d.mail())

    at = T0 + timedelta(hours=1)
    out = d.cli("plan", "--diff", "--at", at.isoformat())
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Next pass at {at.isoformat()}")
    assert "record_cancellation" in out.stdout and "cancellation to " + maya in out.stdout
    as_json = json.loads(d.cli("plan", "--diff", "--at", at.isoformat(), "--json").stdout)
    emails = [a for a in as_json["actions"] if a["action"] == "email"]
    assert [(e["kind"], e["to"]) for e in emails] == [("cancellation", [maya])]
    assert state.read_bytes() == ledger_before and len(d.mail()) == mail_before

    # The pass then does what the diff said, and a diff after it has nothing left to do.
    d.once(at)
    (sent,) = d.mail_of("cancellation")
    assert sent["X-Cadence-Occurrence"] == emails[0]["occurrence"]
    led = Ledger.open(d.root / "state")
    try:
        assert len(led.cancellations()) == 1
    finally:
        led.close()
    after = d.cli("plan", "--diff", "--at", at.isoformat())
    assert after.returncode == 0 and "nothing to do" in after.stdout.splitlines()[0]


def test_plan_diff_names_a_calendar_it_cannot_read_and_exits_1(tmp_path: Path) -> None:
    d = Deployment(tmp_path, f"http://127.0.0.1:{free_port()}/", ["m@acme.test", "r@acme.test"])
    setup(d)
    out = d.cli("plan", "--diff", "--at", T0.isoformat())
    assert out.returncode == 1
    problems = [line for line in out.stdout.splitlines() if line.startswith("(!) ")]
    assert problems and all("127.0.0.1" in line for line in problems)
    assert problems[0].startswith("(!) m@acme.test: ")
