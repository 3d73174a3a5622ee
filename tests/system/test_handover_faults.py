"""A manager change handed over at the week's end, across passes and while the old manager's
calendar fails: the rep never meets on both calendars.

Found by the soak (seeds 6 and 8): a pass ended the old series at this Sunday (the pair had met
this week) and retired it; a later pass (here: after a failed write had stopped the first one
short) no longer counted the retired series as still holding this week, and started the new
series this week too, so the rep met twice. And (seed 6 again) a new series taking this week was
made ahead of the pass's other writes, so when ending the old one then failed, both ran until
a later pass. The calendar goes through the soak's fault proxy, which fails the old calendar's
writes in the first pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.fixtures.radicale import CalDAVServer
from tests.soak.proxy import FaultProxy
from tests.system.harness import Deployment
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=NY)  # a Sunday
SAM = "sam@acme.test"


@pytest.fixture
def proxy(caldav_server: CalDAVServer) -> Iterator[FaultProxy]:
    """Faults injected between cadence and each real CalDAV server in turn."""
    with FaultProxy(caldav_server.url) as p:
        yield p


@pytest.mark.parametrize(
    ("kind", "start", "moved", "later"),
    [
        # Tuesday, after Sam's 10:00 Denver 1:1: the old series keeps this week.
        ("http_503", T0, datetime(2026, 11, 24, 13, 0, tzinfo=NY), timedelta(hours=1)),
        ("timeout", T0, datetime(2026, 11, 24, 13, 0, tzinfo=NY), timedelta(hours=1)),
        # Monday, before it: the new series takes Tuesday. Made ahead of the failed end (soak
        # seed 6), it stood beside the old one, which the next pass, on Wednesday, ended only
        # after Tuesday's meeting: Sam met on both calendars.
        (
            "http_503", T0 - timedelta(weeks=1), datetime(2026, 11, 23, 13, 0, tzinfo=NY),
            timedelta(days=2),
        ),
    ],
)  # fmt: skip
def test_a_handover_interrupted_by_a_failing_old_calendar_never_double_books(
    tmp_path: Path,
    proxy: FaultProxy,
    kind: str,
    start: datetime,
    moved: datetime,
    later: timedelta,
) -> None:
    d = Deployment(tmp_path, proxy.url, [f"mayah-{kind}@acme.test", f"rajh-{kind}@acme.test"])
    maya, raj = setup(d)
    assert d.once(start).errors == []
    setup(d, sam_manager=raj)  # Sam (both stages' series, the ramp is near) moves to Raj

    proxy.arm(0, kind, 50, match=f"PUT /{maya.split('@')[0]}")
    faulty = d.once(moved)
    proxy.disarm()
    assert faulty.unavailable
    assert_handed_over(d, maya, raj)

    assert d.once(moved + later).errors == []
    assert d.rep_series(maya, SAM) and d.rep_series(raj, SAM)
    assert_handed_over(d, maya, raj)


def assert_handed_over(d: Deployment, maya: str, raj: str) -> None:
    """Whatever is on Raj's calendar for Sam starts after the last day Maya's may meet."""
    old, new = d.rep_series(maya, SAM), d.rep_series(raj, SAM)
    if not new:
        return
    assert all(s.until is not None for s in old)
    last_old = max(s.until for s in old if s.until is not None)
    assert last_old < min(s.start for s in new).date()
