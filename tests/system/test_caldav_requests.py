"""What a pass asks a real CalDAV server, counted by a proxy in front of it.

The cold pass at its floor: for each new calendar one PROPFIND finds it missing (the only
failing request), its parent and the calendar are made in the order that succeeds, and one
REPORT lists it; a quiet warm pass is one REPORT per calendar. On Radicale and on Xandikos, which
say "missing" differently (a 404; a 207 whose response is a 404).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from tests.fixtures.radicale import CalDAVServer
from tests.soak.proxy import FaultProxy
from tests.system.harness import Deployment
from tests.system.test_endpoint_breakers import T0, team


def test_a_cold_pass_fails_no_request_but_the_look_and_a_warm_pass_is_one_report_each(
    tmp_path: Path, caldav_server: CalDAVServer
) -> None:
    with FaultProxy(caldav_server.url) as proxy:
        d = Deployment(tmp_path, proxy.url, [f"c{i}-{tmp_path.name}@acme.test" for i in range(3)])
        team(d)
        cold = d.once(T0 - timedelta(days=2))  # nothing due but the calendars and series
        assert cold.errors == [] and cold.created == 3
        calendars = {f"/{m}/cadence/" for m in d.managers}
        failing = [(method, path, status) for method, path, status in proxy.seen
                   if status >= 400]  # fmt: skip
        # The one look per calendar that finds it missing (404 on Radicale; Xandikos says it
        # inside a 207, which is no failure on the wire).
        assert all(method == "PROPFIND" for method, _, _ in failing), failing
        assert len(failing) <= len(calendars)
        reports = Counter(path for method, path, _ in proxy.seen if method == "REPORT")
        assert set(reports) == calendars and set(reports.values()) == {1}
        made = Counter(method for method, _, status in proxy.seen if status == 201)
        assert made["MKCALENDAR"] == 3 and made["PUT"] == 3

        # The next pass reads back the series the cold one wrote: Xandikos sends no
        # calendar-data inside sync-collection, so a calendar with changes costs a multiget.
        proxy.seen.clear()
        warm = d.once(T0 - timedelta(days=2))
        assert warm.errors == [] and warm.writes == 0
        assert {method for method, _, _ in proxy.seen} == {"REPORT"}
        assert len(proxy.seen) <= 2 * len(calendars)
        # Quiet: one REPORT per calendar, nothing else.
        proxy.seen.clear()
        quiet = d.once(T0 - timedelta(days=2))
        assert quiet.errors == [] and quiet.writes == 0
        assert sorted(path for method, path, _ in proxy.seen) == sorted(calendars)
        assert {method for method, _, _ in proxy.seen} == {"REPORT"}
