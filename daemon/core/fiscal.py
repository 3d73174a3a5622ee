"""Fiscal quarters and the week of the quarter, in the organisation's time zone.

Quarters are three months from ``fiscal_year_start``; a start day past the end of a month (a
fiscal year starting on the 31st) is clamped to the month's last day.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from daemon.core.model import MonthDay

WEEK11 = 11


def _clamped(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


@lru_cache(maxsize=4096)
def quarter_start(day: date, fiscal_year_start: MonthDay) -> date:
    """The first day of the fiscal quarter that contains ``day``."""
    best: date | None = None
    for year in (day.year - 1, day.year):
        for q in range(4):
            month0 = fiscal_year_start.month - 1 + 3 * q
            start = _clamped(year + month0 // 12, month0 % 12 + 1, fiscal_year_start.day)
            if start <= day and (best is None or start > best):
                best = start
    assert best is not None  # a start in the previous year always precedes ``day``
    return best


def week_of_quarter(day: date, fiscal_year_start: MonthDay) -> int:
    """``(day - quarter_start).days // 7 + 1``: 1 to 14 (a 92-day quarter has a short week 14)."""
    return (day - quarter_start(day, fiscal_year_start)).days // 7 + 1


def week_of_quarter_at(instant: datetime, org_zone: ZoneInfo, fiscal_year_start: MonthDay) -> int:
    return week_of_quarter(instant.astimezone(org_zone).date(), fiscal_year_start)


def week_bounds(instant: datetime, org_zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The Monday 00:00 and the next Monday 00:00 around ``instant`` in the organisation's zone."""
    local = instant.astimezone(org_zone).date()
    monday = local - timedelta(days=local.weekday())
    start = datetime(monday.year, monday.month, monday.day, tzinfo=org_zone)
    nxt = monday + timedelta(days=7)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=org_zone)
