"""The metrics source contract, one suite for every backend (like ``provider_contract``).

A backend's test module subclasses ``MetricsSourceContract`` and gives ``publish``: put these
weekly values where the source reads them (a CSV file, a CRM fake's records that add up to them)
and return the source, its clock in the week after the last of them (``NOW``). A CRM gives more
than the values published (a 0 for a week without calls, a trailing win rate in the weeks after),
so a source is held to the values published and to the reps asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import pytest

from daemon.core.deals import Opportunity
from daemon.core.model import Metric
from daemon.metrics.base import MetricsSource, OpportunitiesSource, Row, open_opportunities
from daemon.metrics.crm import DealHistory, DealState, Outcome

SAM = "sam@acme.test"
LEE = "lee@acme.test"
GONE = "gone@acme.test"
W = date(2026, 11, 16)
NOW = datetime(2026, 12, 1, 15, tzinfo=UTC)  # the week of 30 Nov: 23 Nov is the last one over

DATA = [
    Row(SAM, Metric.ACTIVITIES, date(2026, 11, 9), 180),
    Row(SAM, Metric.ACTIVITIES, W, 214),
    Row(SAM, Metric.MEETINGS_BOOKED, W, 7),
    Row(LEE, Metric.WIN_RATE, W, 0.31),
    Row(GONE, Metric.ACTIVITIES, date(2026, 11, 23), 12),
]


class MetricsSourceContract:
    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        raise NotImplementedError

    def test_gives_every_weekly_value_of_the_reps_asked_for_all_at_once(self) -> None:
        source = self.publish(DATA)
        got = [
            (r.rep, r.metric, r.week, r.value)
            for r in source.read(frozenset({SAM, LEE}), {}).rows()
        ]
        by_key = {(rep, metric, week): value for rep, metric, week, value in got}
        assert len(by_key) == len(got)  # one value per rep, metric and week
        for row in DATA[:4]:
            assert by_key[(row.rep, row.metric, row.week)] == pytest.approx(row.value)
        assert {rep for rep, *_ in got} == {SAM, LEE}

    def test_people_not_on_the_roster_are_dropped_but_their_weeks_count_as_in(self) -> None:
        table = self.publish(DATA).read(frozenset({SAM}), {})
        assert {r.rep for r in table.rows()} == {SAM} and set(table.reps) <= {SAM}
        assert table.through == date(2026, 11, 23)

    def test_no_data_gives_no_rows_and_no_week_in(self) -> None:
        table = self.publish([]).read(frozenset({SAM}), {})
        assert list(table.rows()) == [] and dict(table) == {}
        assert table.through is None

    def test_its_version_tells_changed_data_from_the_same(self) -> None:
        first = self.publish(DATA).version()
        again = self.publish(DATA).version()
        changed = self.publish([*DATA[:-1], Row(GONE, Metric.ACTIVITIES, W, 13)]).version()
        if first is None:  # a CRM: only time tells, every refresh_hours
            assert again is None and changed is None
        else:
            assert first == again != changed

    def test_a_label_people_recognise(self) -> None:
        assert self.publish(DATA).label

    def test_what_it_cannot_give_is_said_with_why(self) -> None:
        source = self.publish(DATA)
        assert all(metric in Metric and why for metric, why in source.cannot.items())
        read = source.read(frozenset({SAM, LEE}), {})
        assert not set(source.cannot) & {row.metric for row in read.rows()}


class OpportunitiesContract:
    """For the sources that also give open opportunities (the CRMs): ``publish_deals`` puts
    these deals where the source reads them."""

    def publish_deals(self, deals: list[tuple[Opportunity, bool]]) -> OpportunitiesSource:
        raise NotImplementedError

    def test_open_opportunities_of_the_reps_asked_closing_soonest_first(self) -> None:
        late = Opportunity(SAM, "Acme renewal", 48000.0, "Negotiation", date(2026, 12, 18))
        soon = Opportunity(SAM, "Globex pilot", None, "Discovery", date(2026, 12, 4))
        won = Opportunity(SAM, "Initech", 9000.0, "Closed Won", date(2026, 11, 20))
        other = Opportunity(GONE, "Umbrella", 1000.0, "Proposal", date(2026, 12, 1))
        source = self.publish_deals([(late, False), (soon, False), (won, True), (other, False)])
        assert open_opportunities(source, frozenset({SAM, LEE})) == {SAM: (soon, late), LEE: ()}


def _noon(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(12), UTC)


def _state(day: str, amount: float, close: str, outcome: str, commit: bool = False) -> DealState:
    return DealState(_noon(day), amount, date.fromisoformat(close), Outcome(outcome), commit)


# Fiscal quarters from 1 Jan: Q4 is October to December. Every change at noon UTC, mid-week.
HISTORY = [
    # Sam, quota 100,000: an open deal grown on Wed 18 Nov; a committed one won on Thu 19 Nov;
    # one closing next quarter; one opened in the week of 23 Nov.
    DealHistory(SAM, (_state("2026-10-01", 40000, "2026-12-15", "open"),
                      _state("2026-11-18", 60000, "2026-12-15", "open"))),
    DealHistory(SAM, (_state("2026-10-05", 30000, "2026-11-20", "open", commit=True),
                      _state("2026-11-19", 30000, "2026-11-19", "won"))),
    DealHistory(SAM, (_state("2026-10-05", 50000, "2027-01-20", "open"),)),
    DealHistory(SAM, (_state("2026-11-25", 10000, "2026-12-20", "open"),)),
    # Lee, no quota: October's commit at its start was 50,000 (one won, one lost); a deal
    # committed later in October and won counts as won, not as committed.
    DealHistory(LEE, (_state("2026-09-20", 20000, "2026-10-25", "open", commit=True),
                      _state("2026-10-24", 20000, "2026-10-24", "won"))),
    DealHistory(LEE, (_state("2026-09-22", 30000, "2026-10-30", "open", commit=True),
                      _state("2026-10-30", 30000, "2026-10-30", "lost"))),
    DealHistory(LEE, (_state("2026-10-10", 20000, "2026-10-28", "open", commit=True),
                      _state("2026-10-27", 20000, "2026-10-27", "won"))),
    DealHistory(GONE, (_state("2026-09-20", 5000, "2026-10-25", "open", commit=True),)),
]  # fmt: skip
QUOTAS = {SAM: 100_000.0, GONE: 1000.0}


class DealHistoryContract:
    """For the sources that work pipeline coverage and forecast accuracy out of their deals'
    histories (the CRMs): ``publish_history`` puts deals that went through these states where
    the source reads them, the rest as in ``publish``."""

    def publish_history(self, deals: Sequence[DealHistory]) -> MetricsSource:
        raise NotImplementedError

    def test_pipeline_coverage_at_each_weeks_end_against_what_is_left_of_the_quota(self) -> None:
        table = self.publish_history(HISTORY).read(frozenset({SAM, LEE}), QUOTAS)
        coverage = table[SAM, Metric.PIPELINE_COVERAGE]
        assert coverage[date(2026, 11, 9)] == pytest.approx(70000 / 100000)
        assert coverage[date(2026, 11, 16)] == pytest.approx(60000 / 70000)  # 30,000 won
        assert coverage[date(2026, 11, 23)] == pytest.approx(70000 / 70000)
        assert (LEE, Metric.PIPELINE_COVERAGE) not in table  # no quota: nothing invented
        assert {rep for rep, _ in table} <= {SAM, LEE}

    def test_forecast_accuracy_of_the_last_month_over_against_its_commit_as_it_began(
        self,
    ) -> None:
        table = self.publish_history(HISTORY).read(frozenset({SAM, LEE}), QUOTAS)
        accuracy = table[LEE, Metric.FORECAST_ACCURACY]
        assert accuracy[date(2026, 11, 16)] == pytest.approx(1 - 10000 / 50000)
        assert accuracy[date(2026, 11, 23)] == pytest.approx(1 - 10000 / 50000)
        assert date(2026, 10, 19) not in accuracy  # September: nothing committed
        assert (SAM, Metric.FORECAST_ACCURACY) not in table

    def test_it_gives_both_rather_than_saying_it_cannot(self) -> None:
        source = self.publish_history(HISTORY)
        assert not {Metric.PIPELINE_COVERAGE, Metric.FORECAST_ACCURACY} & set(source.cannot)
