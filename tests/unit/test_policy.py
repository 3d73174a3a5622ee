"""The cadence table, row by row, and the stage boundaries a rep crosses."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.core.plan import plan
from tests.unit.rosters import rep, roster

NY = ZoneInfo("America/New_York")
AT = datetime(2026, 11, 22, 9, 0, tzinfo=NY)


def only(*reps: dict[str, object], at: datetime = AT):  # type: ignore[no-untyped-def]
    (series,) = plan(roster(*reps), at)
    return series


@pytest.mark.parametrize(
    ("fields", "stage", "rrule", "minutes"),
    [
        ({"role": "sdr", "start_date": "2026-11-01"}, "new_sdr", "INTERVAL=1;BYDAY=MO,WE", 25),
        ({"role": "sdr", "start_date": "2026-01-05"}, "ramped_sdr", "INTERVAL=1;BYDAY=MO", 30),
        ({"role": "ae", "start_date": "2026-10-01"}, "new_ae", "INTERVAL=1;BYDAY=MO", 45),
        ({"role": "ae", "start_date": "2025-01-06"}, "ramped_ae", "INTERVAL=1;BYDAY=MO", 30),
        ({"role": "senior_ae", "start_date": "2020-03-02", "forecast_within_5pct": True},
         "senior_ae", "INTERVAL=2;BYDAY=MO", 30),
        ({"role": "senior_ae", "start_date": "2020-03-02"}, "senior_ae", "INTERVAL=1;BYDAY=MO", 30),
    ],
)  # fmt: skip
def test_each_row_of_the_cadence_table(
    fields: dict[str, object], stage: str, rrule: str, minutes: int
) -> None:
    series = only(rep(**fields))
    assert series.stage.value == stage
    assert series.pattern.rrule() == f"FREQ=WEEKLY;{rrule}"
    assert series.pattern.duration_minutes == minutes
    first = series.upcoming[0]
    assert first.end - first.start == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("role", "ramp", "before", "after"),
    [("sdr", 90, "new_sdr", "ramped_sdr"), ("ae", 180, "new_ae", "ramped_ae")],
)
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_ramp_boundary_day_before_day_of_day_after(
    role: str, ramp: int, before: str, after: str, offset: int
) -> None:
    start = date(2026, 3, 2)
    day = start + timedelta(days=ramp + offset)
    at = datetime(day.year, day.month, day.day, 0, 1, tzinfo=ZoneInfo("America/Chicago"))
    series = only(rep(role=role, start_date=start.isoformat()), at=at)
    expected = before if offset < 0 else after
    assert series.stage.value == expected
    if offset < 0:
        assert series.next_span is not None
        assert series.next_span.start == start + timedelta(days=ramp)
        assert series.until == start + timedelta(days=ramp - 1)
    else:
        assert series.until is None and series.next_span is None


def test_tenure_is_counted_in_the_series_time_zone() -> None:
    # Day 90 begins in Kolkata while it is still day 89 in New York.
    start = date(2026, 3, 2)
    change = start + timedelta(days=90)
    at = datetime(change.year, change.month, change.day, 1, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    kolkata = only(rep(start_date=start.isoformat(), timezone="Asia/Kolkata"), at=at)
    newyork = only(rep(start_date=start.isoformat(), timezone="America/New_York"), at=at)
    assert kolkata.stage.value == "ramped_sdr"
    assert newyork.stage.value == "new_sdr"


def test_upcoming_continues_into_the_next_stage_without_gap_or_overlap() -> None:
    series = only(rep(start_date="2026-09-01", timezone="America/Denver",
                      slot={"day": "tue", "time": "10:00"}))  # fmt: skip
    assert len(series.upcoming) >= 8
    stages = [o.stage.value for o in series.upcoming]
    assert stages[:2] == ["new_sdr", "new_sdr"] and set(stages[2:]) == {"ramped_sdr"}
    assert series.upcoming[1].start.date() <= series.until  # type: ignore[operator]
    assert series.upcoming[2].start.date() >= series.next_span.start  # type: ignore[union-attr]
    # The new stage starts the first Tuesday after the change: no gap week.
    assert series.upcoming[2].start.date() == date(2026, 12, 1)


def test_senior_flag_flip_changes_the_interval_not_the_stage() -> None:
    on = only(rep(role="senior_ae", start_date="2020-01-06", forecast_within_5pct=True))
    off = only(rep(role="senior_ae", start_date="2020-01-06", forecast_within_5pct=False))
    assert on.stage == off.stage
    assert (on.pattern.interval_weeks, off.pattern.interval_weeks) == (2, 1)
    gaps = {(b.start - a.start).days for a, b in zip(on.upcoming, on.upcoming[1:], strict=False)}
    assert gaps == {14}


def test_policy_overrides_one_field_and_keeps_the_rest_of_the_table() -> None:
    r = roster(
        rep(start_date="2026-11-01"), policy={"cadence": {"new_sdr": {"duration_minutes": 30}}}
    )
    (series,) = plan(r, AT)
    assert series.pattern.duration_minutes == 30
    assert series.pattern.days == (0, 2)  # still twice weekly
