"""Slots, occurrences and the fiscal calendar: examples in awkward zones, then properties."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.fiscal import week_of_quarter
from daemon.core.model import MonthDay, WorkingHours
from daemon.core.observed import CalendarHours
from daemon.core.plan import plan
from daemon.core.schedule import Pattern
from tests.unit.rosters import rep, roster

ZONES = ["America/Denver", "Australia/Sydney", "Asia/Kolkata", "Pacific/Apia", "America/Phoenix",
         "Europe/London", "America/New_York", "Pacific/Auckland"]  # fmt: skip


def test_denver_slot_keeps_ten_oclock_across_the_dst_change() -> None:
    p = Pattern((1,), time(10, 0), 1, 30, "America/Denver", date(2026, 1, 5))
    starts = list(p.occurrences(date(2026, 10, 20), date(2026, 11, 20)))
    assert {s.strftime("%a %H:%M") for s in starts} == {"Tue 10:00"}
    assert {s.utcoffset() for s in starts} == {timedelta(hours=-6), timedelta(hours=-7)}


def test_sydney_rep_with_chicago_manager_gets_a_slot_inside_both_days() -> None:
    # Sydney Tuesday morning is Chicago Monday afternoon: each side's own weekday counts.
    r = roster(
        rep(role="ae", start_date="2025-01-06", timezone="Australia/Sydney",
            working_hours={"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00",
                           "end": "17:00"}),
    )  # fmt: skip
    (series,) = plan(r, datetime(2026, 11, 22, tzinfo=ZoneInfo("UTC")))
    assert series.slot_fits
    for o in series.upcoming:
        chicago = o.start.astimezone(ZoneInfo("America/Chicago"))
        assert chicago.weekday() < 5 and time(9) <= chicago.time()
        assert (chicago + timedelta(minutes=30)).time() <= time(17)
        assert o.start.weekday() < 5 and time(7) <= o.start.time()


def test_kolkata_half_hour_offset_and_phoenix_without_dst() -> None:
    r = roster(
        rep("ravi@acme.test", role="ae", start_date="2025-01-06", timezone="Asia/Kolkata",
            manager="raj@acme.test"),
        rep("pat@acme.test", role="ae", start_date="2025-01-06", timezone="America/Phoenix"),
        managers=[
            {"email": "raj@acme.test", "name": "Raj", "timezone": "Asia/Kolkata"},
            {"email": "maya@acme.test", "name": "Maya", "timezone": "America/Chicago"},
        ],
    )  # fmt: skip
    ravi, pat = plan(r, datetime(2027, 3, 1, tzinfo=ZoneInfo("UTC")))
    assert ravi.upcoming[0].start.utcoffset() == timedelta(hours=5, minutes=30)
    # Phoenix stays at UTC-7 while Chicago springs forward on 14 March 2027.
    assert {o.start.utcoffset() for o in pat.upcoming} == {timedelta(hours=-7)}
    assert len({o.start.time() for o in pat.upcoming}) == 1


def test_apia_rep_keeps_a_weekday_slot() -> None:
    r = roster(
        rep("sina@acme.test", role="ae", start_date="2025-01-06", timezone="Pacific/Apia",
            manager="olivia@acme.test", working_hours={"start": "07:00", "end": "18:00"}),
        managers=[{"email": "olivia@acme.test", "name": "Olivia", "timezone": "Pacific/Auckland"}],
    )  # fmt: skip
    (series,) = plan(r, datetime(2026, 11, 22, tzinfo=ZoneInfo("UTC")))
    assert series.slot_fits
    assert all(o.start.weekday() < 5 for o in series.upcoming)


def test_managers_1on1s_never_overlap_when_slots_are_chosen() -> None:
    reps = [rep(f"r{i}@acme.test", role="ae", start_date="2025-01-06") for i in range(8)]
    plans = plan(roster(*reps), datetime(2026, 11, 22, tzinfo=ZoneInfo("UTC")))
    intervals = sorted((o.start, o.end) for p in plans for o in p.upcoming[:1])
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert end <= start


def test_preferred_slot_is_honoured_and_the_second_day_is_two_days_later() -> None:
    (series,) = plan(
        roster(rep(start_date="2026-11-01", slot={"day": "tue", "time": "11:30"})),
        datetime(2026, 11, 22, tzinfo=ZoneInfo("UTC")),
    )
    assert series.pattern.days == (1, 3) and series.pattern.time == time(11, 30)


def test_career_conversation_is_the_last_1on1_of_each_month() -> None:
    (series,) = plan(roster(rep(role="ae", start_date="2025-01-06")),
                     datetime(2026, 11, 1, tzinfo=ZoneInfo("UTC")), count=12)  # fmt: skip
    by_month: dict[int, list[str]] = {}
    for o in series.upcoming:
        by_month.setdefault(o.start.month, []).append(o.template)
    complete = list(by_month.values())[:-1]  # the list may stop before the last month ends
    assert len(complete) >= 2
    for templates in complete:
        assert templates[-1] == "career" and set(templates[:-1]) <= {"coaching"}


def test_week_11_is_flagged_in_the_organisation_zone() -> None:
    # Fiscal year from 02-01: Q4 starts 1 Nov 2026; week 11 is 10-16 Jan 2027.
    (series,) = plan(roster(rep(role="ae", start_date="2025-01-06")),
                     datetime(2027, 1, 4, tzinfo=ZoneInfo("UTC")))  # fmt: skip
    flagged = [o.start.date() for o in series.upcoming if o.week11]
    assert flagged == [date(2027, 1, 11)]


def test_fiscal_start_on_the_31st_is_clamped_to_short_months() -> None:
    fy = MonthDay(month=1, day=31)
    assert week_of_quarter(date(2026, 4, 30), fy) == 1  # Q2 starts 30 April
    assert week_of_quarter(date(2026, 4, 29), fy) == 13


# --- properties ------------------------------------------------------------------------------

days_strategy = st.dates(date(2021, 1, 1), date(2035, 12, 31))


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    first=st.integers(0, 6),
    sessions=st.integers(1, 2),
    interval=st.integers(1, 2),
    hour=st.integers(7, 19),
    minute=st.sampled_from([0, 30]),
    start=days_strategy,
)
def test_wall_clock_start_never_drifts_and_no_pair_meets_twice_a_day(
    zone: str, first: int, sessions: int, interval: int, hour: int, minute: int, start: date
) -> None:
    days = (first,) if sessions == 1 else tuple(sorted((first, (first + 2) % 7)))
    p = Pattern(days, time(hour, minute), interval, 30, zone, start)
    starts = list(p.occurrences(start, start + timedelta(days=400)))
    assert {(s.hour, s.minute) for s in starts} == {(hour, minute)}
    assert all(s.tzinfo == ZoneInfo(zone) for s in starts)
    local_days = [s.date() for s in starts]
    assert len(local_days) == len(set(local_days))
    assert local_days == sorted(local_days)
    if sessions == 2:
        a, b = days
        assert min((b - a) % 7, (a - b) % 7) >= 2  # never adjacent, also across the weekend


@settings(max_examples=200, deadline=None)
@given(
    role=st.sampled_from(["sdr", "ae"]),
    hired=st.dates(date(2024, 1, 1), date(2027, 12, 31)),
    at_day=st.dates(date(2024, 1, 1), date(2028, 6, 30)),
    zone=st.sampled_from(ZONES),
)
def test_until_is_the_day_before_the_next_stage(role: str, hired: date, at_day: date,
                                                zone: str) -> None:  # fmt: skip
    at = datetime(at_day.year, at_day.month, at_day.day, 12, tzinfo=ZoneInfo(zone))
    (series,) = plan(roster(rep(role=role, start_date=hired.isoformat(), timezone=zone)), at)
    if series.next_span is None:
        assert series.until is None
    else:
        assert series.until == series.next_span.start - timedelta(days=1)
        for o in series.upcoming:
            assert (o.start.date() <= series.until) == (o.stage == series.stage)


@settings(max_examples=300, deadline=None)
@given(
    day=days_strategy,
    month=st.integers(1, 12),
    mday=st.integers(1, 31),
)
def test_week_numbers_are_1_to_14_and_increase_within_a_quarter(day: date, month: int,
                                                                 mday: int) -> None:  # fmt: skip
    fy = MonthDay(month=month, day=mday)
    week = week_of_quarter(day, fy)
    nxt = week_of_quarter(day + timedelta(days=1), fy)
    assert 1 <= week <= 14
    assert nxt == week or nxt == week + 1 or nxt == 1
    if nxt != week and nxt == 1:
        assert week >= 13  # a quarter is at least 89 days: weeks 1-13 at least


@settings(max_examples=60, deadline=None)
@given(
    reps=st.lists(
        st.tuples(
            st.sampled_from(["sdr", "ae", "senior_ae"]),
            st.dates(date(2025, 6, 1), date(2027, 3, 1)),
            st.sampled_from(ZONES),
            st.booleans(),
        ),
        min_size=2,
        max_size=12,
    ),
    at_day=st.dates(date(2026, 1, 1), date(2027, 3, 1)),
)
def test_reps_sharing_upcoming_meetings_get_exactly_their_own(
    reps: list[tuple[str, date, str, bool]], at_day: date
) -> None:
    # plan() computes a meeting list once for reps whose next meetings coincide; each rep's
    # list must still be what their own stage, slot and start date give.
    r = roster(
        *[
            rep(f"r{i}@acme.test", role=role, start_date=hired.isoformat(), timezone=zone,
                forecast_within_5pct=forecast, slot={"day": "tue", "time": "10:00"})
            for i, (role, hired, zone, forecast) in enumerate(reps)
        ]
    )  # fmt: skip
    at = datetime(at_day.year, at_day.month, at_day.day, 8, tzinfo=ZoneInfo("America/New_York"))
    for series in plan(r, at):
        alone = plan(
            roster(*[x for x in r.model_dump()["reps"] if x["email"] == series.rep.email]), at
        )
        assert series.upcoming == alone[0].upcoming


def test_two_sdrs_on_one_slot_ramp_on_their_own_days() -> None:
    at = datetime(2026, 11, 22, 9, tzinfo=ZoneInfo("America/New_York"))
    slot = {"day": "tue", "time": "10:00"}
    soon, later = plan(
        roster(
            rep("soon@acme.test", start_date="2026-09-01", slot=slot),  # ramps 30 Nov
            rep("later@acme.test", start_date="2026-10-20", slot=slot),  # ramps 18 Jan
        ),
        at,
    )
    assert [o.start.weekday() for o in soon.upcoming[:3]] == [1, 3, 1]  # Tue, Thu, then Tue only
    assert [o.start.weekday() for o in later.upcoming[:3]] == [1, 3, 1]
    assert [o.start.weekday() for o in soon.upcoming[3:5]] == [1, 1]
    assert [o.start.weekday() for o in later.upcoming[3:5]] == [3, 1]


def test_a_managers_calendar_hours_place_new_slots_unless_the_roster_gives_hours() -> None:
    # Maya's calendar keeps Tue/Thu 13:00-17:00 Los Angeles (15:00-19:00 in her roster zone,
    # Chicago); Lee (Chicago, the policy's 09:00-17:00) can meet her 15:00-17:00 those days.
    lee = rep("lee@acme.test", role="ae", start_date="2025-01-06")
    kept = {"maya@acme.test": CalendarHours(
        WorkingHours(days=(1, 3), start=time(13), end=time(17)), "America/Los_Angeles")}  # fmt: skip
    at = datetime(2026, 11, 22, tzinfo=ZoneInfo("UTC"))
    (series,) = plan(roster(lee), at, calendar_hours=kept)
    assert series.slot_fits
    for o in series.upcoming:
        chicago = o.start.astimezone(ZoneInfo("America/Chicago"))
        assert chicago.weekday() in (1, 3)
        assert time(15) <= chicago.time() and (chicago + timedelta(minutes=30)).time() <= time(17)
    # No calendar hours: the policy's Monday 09:00; the roster's own hours win over the calendar.
    (default,) = plan(roster(lee), at)
    assert default.upcoming[0].start.astimezone(ZoneInfo("America/Chicago")).time() == time(9)
    maya = {"email": "maya@acme.test", "name": "Maya Chen", "timezone": "America/Chicago",
            "working_hours": {"start": "08:00", "end": "12:00"}}  # fmt: skip
    (own,) = plan(roster(lee, managers=[maya]), at, calendar_hours=kept)
    assert own.upcoming[0].start.astimezone(ZoneInfo("America/Chicago")).time() == time(9)
    assert own.upcoming[0].start.weekday() == 0
