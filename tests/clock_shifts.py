"""The clocks `make test-future` runs the whole suite under, worked out from today.

The suite must give the same answer on any date. The clocks: a year and a month ahead, a minute
before the next daylight-saving change in the organisation's zone of the test configs, and a
minute before the next end of their fiscal quarter; the clock then runs, so the suite crosses
the moment while it runs.

Each spec is an offset from the real clock (``+SECONDS``), worked out just before its run: an
absolute ``@`` time would restart in every process the suite starts, so a subprocess begun twenty
minutes in would live twenty minutes before its parent, and refuse the certificates its parent's
fixtures had just made. Run bare, this lists ``key|label`` lines; ``clock_shifts.py KEY`` prints
the spec (``faketime -f SPEC``) for that key, as of now.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

ORG_ZONE = ZoneInfo("America/New_York")  # organization.timezone in tests/system/harness.py
FISCAL_YEAR_START_MONTH = 2  # fiscal_year_start "02-01" there too
LEAD = timedelta(minutes=1)  # start this long before the moment, so the run crosses it


def next_dst_change(now: datetime) -> datetime:
    """The first instant after ``now`` at which the organisation's UTC offset changes."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    offset = hour.astimezone(ORG_ZONE).utcoffset()
    for _ in range(2 * 366 * 24):
        hour += timedelta(hours=1)
        if hour.astimezone(ORG_ZONE).utcoffset() != offset:
            return hour
    raise RuntimeError("no daylight-saving change in two years")


def next_quarter_start(now: datetime) -> datetime:
    """Midnight in the organisation's zone of the first day of the next fiscal quarter."""
    local = now.astimezone(ORG_ZONE)
    month = FISCAL_YEAR_START_MONTH
    year = local.year - 1
    while True:
        start = datetime(year, month, 1, tzinfo=ORG_ZONE)
        if start > local:
            return start
        month += 3
        if month > 12:
            month -= 12
            year += 1


def offset_to(moment: datetime, now: datetime) -> str:
    """The libfaketime offset that puts the clock ``LEAD`` before ``moment``."""
    return f"+{int((moment - LEAD - now).total_seconds())}"


def a_year_and_a_month_on(now: datetime) -> datetime:
    return now + timedelta(days=400) + LEAD


CLOCKS: dict[str, tuple[str, Callable[[datetime], datetime]]] = {
    "year": ("a year and a month ahead", a_year_and_a_month_on),
    "dst": (f"the next daylight-saving change in {ORG_ZONE.key}", next_dst_change),
    "quarter": ("the next fiscal quarter end", next_quarter_start),
}


def main(argv: list[str]) -> None:
    if not argv:
        for key, (label, _) in CLOCKS.items():
            print(f"{key}|{label}")
        return
    now = datetime.now(UTC)
    print(offset_to(CLOCKS[argv[0]][1](now), now))


if __name__ == "__main__":
    main(sys.argv[1:])
