"""The clocks `make test-future` runs the whole suite under, worked out from today.

The suite must give the same answer on any date. Each line printed is ``label|spec``, where
``spec`` is a libfaketime time specification (``faketime -f SPEC``): the clock a year and a month
ahead, just before the next daylight-saving change in the organisation's zone of the test
configs, and just before the next end of their fiscal quarter. An ``@`` spec starts the clock at
that local time and lets it run, so the suite crosses the change while it runs.
"""

from __future__ import annotations

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


def faketime_at(moment: datetime) -> str:
    """libfaketime reads an absolute ``@`` time in the process's local zone."""
    return "@" + (moment - LEAD).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def main() -> None:
    now = datetime.now(UTC)
    print("a year and a month ahead|+400d")
    print(f"the next daylight-saving change in {ORG_ZONE.key}|{faketime_at(next_dst_change(now))}")
    print(f"the next fiscal quarter end|{faketime_at(next_quarter_start(now))}")


if __name__ == "__main__":
    main()
