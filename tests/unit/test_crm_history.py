"""Pipeline coverage and forecast accuracy worked out of deal histories, as both CRMs give them:
the state at a week's end in the organisation's zone, the fiscal quarter that week ends in, the
last month over, and nothing invented."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.model import JANUARY, Metric, MonthDay
from daemon.metrics.crm import (
    DealHistory,
    DealState,
    Outcome,
    forecast_accuracy,
    history_start,
    pipeline_coverage,
)

NY = ZoneInfo("America/New_York")
SAM = "sam@acme.test"
OPEN, WON, LOST = Outcome.OPEN, Outcome.WON, Outcome.LOST


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def coverage(deals: list[DealHistory], week: date, quota: float = 100.0,
             fiscal: MonthDay = JANUARY) -> float | None:  # fmt: skip
    rows = pipeline_coverage(deals, {SAM: quota}, [week], NY, fiscal)
    return next((row.value for row in rows), None)


def accuracy(deals: list[DealHistory], week: date) -> float | None:
    return next((row.value for row in forecast_accuracy(deals, [SAM], [week], NY)), None)


def deal(*states: DealState) -> DealHistory:
    return DealHistory(SAM, states)


def test_the_state_at_the_weeks_end_is_the_one_before_local_midnight_across_a_dst_change() -> None:
    # The week of 26 Oct 2026 ends at midnight on Mon 2 Nov in New York, after the clocks went
    # back on Sun 1 Nov: a change a minute before counts, one at midnight belongs to next week.
    week = date(2026, 10, 26)
    end = date(2026, 11, 2)
    before = deal(DealState(local(end) - timedelta(minutes=1), 40, date(2026, 12, 1), OPEN, False))
    at_end = deal(DealState(local(end), 50, date(2026, 12, 1), OPEN, False))
    assert coverage([before, at_end], week) == pytest.approx(0.4)
    assert local(end).utcoffset() == timedelta(hours=-5)  # EST: the zone's own midnight


def test_a_week_ending_on_the_quarters_last_day_counts_that_quarter_the_next_week_the_next() -> (
    None
):
    # Fiscal year from 1 Feb: Q4 is November to January; 31 Jan 2027 is a Sunday.
    fiscal = MonthDay(month=2, day=1)
    closing_jan = DealState(local(date(2026, 11, 2)), 30, date(2027, 1, 29), OPEN, False)
    closing_feb = DealState(local(date(2026, 11, 2)), 20, date(2027, 2, 3), OPEN, False)
    deals = [deal(closing_jan), deal(closing_feb)]
    assert coverage(deals, date(2027, 1, 25), fiscal=fiscal) == pytest.approx(0.3)
    assert coverage(deals, date(2027, 2, 1), fiscal=fiscal) == pytest.approx(0.2)


def test_won_deals_shrink_what_is_left_of_the_quota_and_a_met_quota_has_no_coverage() -> None:
    opened = local(date(2026, 10, 5))
    won = deal(DealState(opened, 60, date(2026, 11, 20), OPEN, False),
               DealState(local(date(2026, 11, 11), 12), 60, date(2026, 11, 11), WON, False))  # fmt: skip
    lost = deal(DealState(opened, 25, date(2026, 11, 20), OPEN, False),
                DealState(local(date(2026, 11, 12), 12), 25, date(2026, 11, 12), LOST, False))  # fmt: skip
    assert coverage([won, lost], date(2026, 11, 2)) == pytest.approx(85 / 100)
    assert coverage([won, lost], date(2026, 11, 9)) == pytest.approx(0 / 40)  # a real 0×
    assert coverage([won, lost], date(2026, 11, 9), quota=60) is None  # met: nothing to cover


def test_a_rep_without_a_quota_gets_no_coverage_and_one_with_no_deals_gets_zero() -> None:
    assert list(pipeline_coverage([], {}, [date(2026, 11, 9)], NY, JANUARY)) == []
    assert coverage([], date(2026, 11, 9)) == 0.0


def test_accuracy_counts_what_was_committed_as_the_month_began_and_what_closed_won_in_it() -> None:
    sept = local(date(2026, 9, 15))
    committed_won = deal(DealState(sept, 100, date(2026, 10, 20), OPEN, True),
                         DealState(local(date(2026, 10, 19)), 80, date(2026, 10, 19), WON, True))  # fmt: skip
    # Committed only on 2 Oct, after the month began: its win counts, its commit does not.
    late = deal(DealState(sept, 50, date(2026, 10, 30), OPEN, False),
                DealState(local(date(2026, 10, 2)), 50, date(2026, 10, 30), OPEN, True),
                DealState(local(date(2026, 10, 29)), 50, date(2026, 10, 29), WON, True))  # fmt: skip
    # Committed for October, slipped to November: counted committed, not won.
    slipped = deal(DealState(sept, 100, date(2026, 10, 25), OPEN, True),
                   DealState(local(date(2026, 10, 24)), 100, date(2026, 11, 24), OPEN, True))  # fmt: skip
    assert accuracy([committed_won, late, slipped], date(2026, 11, 2)) == pytest.approx(
        1 - abs(200 - 130) / 200
    )


def test_the_last_month_over_is_this_one_when_the_week_ends_on_its_last_day() -> None:
    # Sun 31 Jan 2027 ends January; the week before ends in January with December over.
    dec = deal(DealState(local(date(2026, 11, 20)), 100, date(2026, 12, 10), OPEN, True),
               DealState(local(date(2026, 12, 9)), 100, date(2026, 12, 9), WON, True))  # fmt: skip
    jan = deal(DealState(local(date(2026, 12, 20)), 100, date(2027, 1, 10), OPEN, True))
    assert accuracy([dec, jan], date(2027, 1, 18)) == pytest.approx(1.0)
    assert accuracy([dec, jan], date(2027, 1, 25)) == pytest.approx(0.0)  # nothing won


def test_accuracy_is_at_least_zero_and_absent_when_nothing_was_committed() -> None:
    sept = local(date(2026, 9, 15))
    big = deal(DealState(sept, 10, date(2026, 10, 20), OPEN, True),
               DealState(local(date(2026, 10, 19)), 35, date(2026, 10, 19), WON, True))  # fmt: skip
    assert accuracy([big], date(2026, 11, 2)) == 0.0  # won 3.5 times the commit
    uncommitted = deal(DealState(sept, 10, date(2026, 10, 20), OPEN, False))
    assert accuracy([uncommitted], date(2026, 11, 2)) is None


def test_history_starts_at_the_earlier_of_the_quarter_and_the_month_before_the_first_week() -> None:
    assert history_start([date(2026, 10, 12)], JANUARY) == date(2026, 9, 1)
    assert history_start([date(2026, 11, 16)], JANUARY) == date(2026, 10, 1)
    assert history_start([date(2026, 11, 16)], MonthDay(month=2, day=1)) == date(2026, 10, 1)
    assert history_start([date(2026, 12, 7)], MonthDay(month=2, day=1)) == date(2026, 11, 1)


STATES = st.builds(
    DealState,
    since=st.datetimes(datetime(2026, 9, 1), datetime(2026, 12, 31), timezones=st.just(UTC)),
    amount=st.floats(0, 1e6),
    close=st.dates(date(2026, 8, 1), date(2027, 3, 1)),
    outcome=st.sampled_from(Outcome),
    commit=st.booleans(),
)
DEALS = st.lists(
    st.lists(STATES, min_size=1, max_size=4).map(
        lambda states: deal(*sorted(states, key=lambda s: s.since))
    ),
    max_size=8,
)
WEEKS = [date(2026, 10, 5) + timedelta(weeks=i) for i in range(12)]


@given(DEALS, st.floats(1, 1e6))
def test_figures_are_never_negative_nor_accuracy_above_one_whatever_the_deals(
    deals: list[DealHistory], quota: float
) -> None:
    rows = [*pipeline_coverage(deals, {SAM: quota}, WEEKS, NY, JANUARY),
            *forecast_accuracy(deals, [SAM], WEEKS, NY)]  # fmt: skip
    assert all(row.value >= 0 for row in rows)
    assert all(row.value <= 1 for row in rows if row.metric is Metric.FORECAST_ACCURACY)


@given(DEALS)
def test_changes_after_the_last_weeks_end_change_nothing(deals: list[DealHistory]) -> None:
    end = local(WEEKS[-1] + timedelta(weeks=1))
    later = DealState(end + timedelta(hours=1), 999.0, date(2026, 12, 1), Outcome.WON, True)
    changed = [DealHistory(d.rep, (*d.states, later)) if d.states[-1].since < end else d
               for d in deals]  # fmt: skip

    def figures(ds: list[DealHistory]) -> list[tuple[Metric, date, float]]:
        return [(r.metric, r.week, r.value) for r in (
            *pipeline_coverage(ds, {SAM: 5000.0}, WEEKS, NY, JANUARY),
            *forecast_accuracy(ds, [SAM], WEEKS, NY))]  # fmt: skip

    assert figures(changed) == figures(deals)
