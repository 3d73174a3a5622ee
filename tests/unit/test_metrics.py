"""The number's arithmetic: week W, the rep's own four-week baseline, the change, and the line
people read. Nothing invented when data are missing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from daemon.core.fiscal import quarter_start
from daemon.core.metrics import (
    Number,
    Weekly,
    baseline_weeks,
    number_for,
    number_week,
    show,
)
from daemon.core.model import Metric, MonthDay

NY = ZoneInfo("America/New_York")
SAM = "sam@acme.test"
MB = Metric.MEETINGS_BOOKED
W = date(2026, 11, 16)  # a Monday


def weekly(values: dict[date, float], through: date | None = W, metric: Metric = MB) -> Weekly:
    return Weekly(source="metrics.csv", values={(SAM, metric): values}, through=through)


def at(day: date, hour: int = 10, tz: ZoneInfo = NY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz)


def weeks_before(n: int) -> date:
    return W - timedelta(weeks=n)


# --- week W -------------------------------------------------------------------------------------


def test_w_is_the_last_full_week_before_the_meeting() -> None:
    # A Tuesday meeting in the week of 23 Nov reads the week of 16 Nov.
    assert number_week(at(date(2026, 11, 24)), NY) == W
    # Sunday of the week of 23 Nov: that week has not ended, still 16 Nov.
    assert number_week(at(date(2026, 11, 29), 20), NY) == W
    # Monday 00:00 of the week of 23 Nov: the week of 16 Nov just ended.
    assert number_week(at(date(2026, 11, 23), 0), NY) == W


def test_w_is_read_in_the_organisations_zone_not_the_meetings() -> None:
    # 09:00 Monday 23 Nov in Sydney is Sunday 22 Nov, 17:00 in New York: the week of 16 Nov
    # has not ended for the organisation, so W is the week of 9 Nov.
    sydney = datetime(2026, 11, 23, 9, tzinfo=ZoneInfo("Australia/Sydney"))
    assert number_week(sydney, NY) == W - timedelta(weeks=1)
    assert number_week(sydney, ZoneInfo("Australia/Sydney")) == W


def test_a_week_across_a_dst_change_is_one_week_of_seven_days() -> None:
    # New York leaves DST on Sunday 1 Nov 2026: the meeting on Monday 2 Nov at 00:30 reads the
    # week of 26 Oct, whose baseline is the four Mondays before, an hour shorter or not.
    meeting = datetime(2026, 11, 2, 0, 30, tzinfo=NY)
    assert number_week(meeting, NY) == date(2026, 10, 26)
    assert baseline_weeks(date(2026, 10, 26)) == (
        date(2026, 9, 28), date(2026, 10, 5), date(2026, 10, 12), date(2026, 10, 19),
    )  # fmt: skip


# --- value, baseline, change --------------------------------------------------------------------


def test_the_spec_example() -> None:
    data = weekly({W: 7, weeks_before(1): 9, weeks_before(2): 10, weeks_before(3): 8,
                   weeks_before(4): 11})  # fmt: skip
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert (n.value, n.baseline) == (7, 9.5)
    assert n.as_json() == {"metric": "meetings_booked", "week": "2026-11-16", "value": 7,
                           "baseline": 9.5, "change": -0.263}  # fmt: skip
    assert n.line() == "Meetings booked, week of 16 Nov: 7 (your 4-week baseline 9.5, -26%)."


def test_a_new_hires_first_weeks_have_no_baseline_until_two_weeks_are_in() -> None:
    one = number_for(weekly({W: 3, weeks_before(1): 2}), SAM, MB, at(date(2026, 11, 24)), NY)
    assert (one.value, one.baseline, one.change) == (3, None, None)
    assert "no 4-week baseline yet: 1 of the 4 weeks before, 2 needed" in one.line()
    two = number_for(
        weekly({W: 3, weeks_before(1): 2, weeks_before(2): 4}), SAM, MB, at(date(2026, 11, 24)), NY
    )
    assert (two.baseline, two.change) == (3, 0)
    assert "from 2 weeks" in two.line() and "week of 26 Oct" in two.line()
    # Hired on 2 Nov: the weeks before are not missing, the baseline is from the start.
    hired = number_for(weekly({W: 3, weeks_before(1): 2, weeks_before(2): 4}), SAM, MB,
                       at(date(2026, 11, 24)), NY, started=date(2026, 11, 4))  # fmt: skip
    assert hired.line() == (
        "Meetings booked, week of 16 Nov: 3 (your 4-week baseline 3 from 2 weeks since starting, "
        "0%)."
    )


def test_a_missing_week_is_left_out_of_the_mean_and_named() -> None:
    data = weekly({W: 6, weeks_before(1): 4, weeks_before(3): 8, weeks_before(4): 6})
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert n.baseline == 6 and n.change == 0
    assert n.line() == (
        "Meetings booked, week of 16 Nov: 6 (your 4-week baseline 6 from 3 weeks, 0%). "
        "Missing: week of 2 Nov."
    )


def test_a_missing_w_is_said_and_no_change_is_made_up() -> None:
    data = weekly({weeks_before(1): 4, weeks_before(2): 6})
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert (n.value, n.baseline, n.change) == (None, 5, None)
    assert n.line().startswith("Meetings booked, week of 16 Nov: no figure in metrics.csv")


def test_a_zero_baseline_gives_no_change() -> None:
    data = weekly({W: 3, weeks_before(1): 0, weeks_before(2): 0})
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert (n.value, n.baseline, n.change) == (3, 0, None)
    assert n.as_json()["change"] is None
    assert "no change to compare with a 0 baseline" in n.line()


def test_a_week_the_source_does_not_have_yet_is_pending_and_says_when() -> None:
    data = weekly({weeks_before(1): 4, weeks_before(2): 6}, through=weeks_before(1))
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert n.pending and n.value is None
    assert n.line() == (
        "Meetings booked, week of 16 Nov: not in yet; cadence fills it in once metrics.csv has "
        "that week (after Sun 22 Nov)."
    )


def test_a_metric_the_source_cannot_give_is_said_plainly() -> None:
    data = Weekly("Salesforce", {}, W, unavailable={Metric.PIPELINE_COVERAGE: "no quarterly_quota"})
    n = number_for(data, SAM, Metric.PIPELINE_COVERAGE, at(date(2026, 11, 24)), NY)
    assert n.value is None and n.unavailable
    assert n.line() == (
        "Pipeline coverage: Salesforce cannot give it (no quarterly_quota); pull it by hand."
    )


def test_a_fiscal_quarter_end_does_not_reset_the_baseline() -> None:
    # Fiscal year from 02-01: the quarter starts on 1 Nov 2026, inside the baseline weeks.
    fy = MonthDay(month=2, day=1)
    assert quarter_start(date(2026, 11, 16), fy) == date(2026, 11, 1)
    data = weekly({W: 10, weeks_before(1): 10, weeks_before(2): 10, weeks_before(3): 20,
                   weeks_before(4): 20})  # fmt: skip
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert n.baseline == 15 and n.baseline_weeks == baseline_weeks(W)


def test_another_reps_values_never_count() -> None:
    data = Weekly("metrics.csv", {("ana@acme.test", MB): {W: 9, weeks_before(1): 9,
                                                          weeks_before(2): 9}}, W)  # fmt: skip
    n = number_for(data, SAM, MB, at(date(2026, 11, 24)), NY)
    assert (n.value, n.baseline) == (None, None)


def test_values_are_shown_as_counts_percents_and_ratios() -> None:
    assert show(Metric.ACTIVITIES, 41) == "41"
    assert show(Metric.ACTIVITIES, 40.25) == "40.2"
    assert show(Metric.WIN_RATE, 0.31) == "31%"
    assert show(Metric.PIPELINE_COVERAGE, 2.4) == "2.4×"
    data = weekly({W: 0.25, weeks_before(1): 0.2, weeks_before(2): 0.3}, metric=Metric.WIN_RATE)
    n = number_for(data, SAM, Metric.WIN_RATE, at(date(2026, 11, 24)), NY)
    assert n.line().startswith("Win rate, week of 16 Nov: 25% (your 4-week baseline 25%")


# --- properties ---------------------------------------------------------------------------------

# what an export holds: decimals to a few places
values = st.integers(0, 10**9).map(lambda i: i / 1000)
maybe = st.one_of(st.none(), values)


@given(st.lists(maybe, min_size=5, max_size=5), st.integers(0, 6), st.integers(0, 23))
def test_the_number_uses_only_what_is_there(cells: list[float | None], wd: int, hour: int) -> None:
    """Baseline is the mean of the present weeks when two or more are; the value is W's; the
    change follows from both; a meeting any day of the next week reads the same W."""
    present = {W - timedelta(weeks=i): v for i, v in enumerate(cells) if v is not None}
    meeting = at(W + timedelta(days=7 + wd), hour)
    n: Number = number_for(weekly(present), SAM, MB, meeting, NY)
    assert n.week == W
    assert n.value == present.get(W)
    before = [present[w] for w in baseline_weeks(W) if w in present]
    if len(before) >= 2:
        assert n.baseline is not None
        assert min(before) - 1e-6 <= n.baseline <= max(before) + 1e-6
    else:
        assert n.baseline is None
    if n.value is None or n.baseline is None or n.baseline == 0:
        assert n.change is None
    else:
        assert n.change is not None
        assert abs(n.baseline * (1 + n.change) - n.value) <= 1e-6 * max(1.0, n.value)
    assert "None" not in n.line() and "nan" not in n.line()


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
       st.sampled_from(["America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Apia"]))  # fmt: skip
def test_w_is_a_monday_that_ended_before_the_meeting(naive: datetime, name: str) -> None:
    org = ZoneInfo(name)
    meeting = naive.replace(tzinfo=ZoneInfo("UTC"))
    week = number_week(meeting, org)
    assert week.weekday() == 0
    end = datetime(week.year, week.month, week.day, tzinfo=org) + timedelta(days=7)
    assert end <= meeting.astimezone(org) + timedelta(hours=1)  # the end, and not a week more
    assert meeting.astimezone(org) - end < timedelta(days=7, hours=1)
