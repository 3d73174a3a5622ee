"""What the CRM metrics sources share: only time tells when a CRM's data changed (it is read
every ``refresh_hours``); the last week a read covered; idempotent reads tried again a few times
(tenacity) after the errors each CRM names as passing, within bounds each source gives; and the
weekly values worked out of deals, the same way for every CRM.

Pipeline coverage and forecast accuracy are about a past moment (a week's end, a month's start),
and a deal record holds only today's values, so they are worked out of each deal's history: the
states it went through, each with the instant it took them (Salesforce's ``OpportunityHistory``,
HubSpot's ``propertiesWithHistory``). SPEC does not say what "committed" is; here it is the
amount of the deals in the Commit forecast category at the start of the month, closing in that
month (the number a rep committed to as the month began).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from daemon.core.fiscal import quarter_start
from daemon.core.metrics import WEEK
from daemon.core.model import Metric, MonthDay
from daemon.metrics.base import Row, WeeklyTable

WIN_RATE_WEEKS = 13  # the trailing window of the win rate (SPEC)


def win_rates(
    closed: Mapping[str, Sequence[tuple[date, bool]]],
    weeks: Sequence[date],
    emails: Mapping[str, str],
) -> Iterator[Row]:
    """Each owner's win rate per week: deals won among those closed in the trailing
    ``WIN_RATE_WEEKS`` up to that week's end; no row for a week without a closed deal."""
    for owner, deals in closed.items():
        for week in weeks:
            window = [won for day, won in deals
                      if week - WEEK * (WIN_RATE_WEEKS - 1) <= day < week + WEEK]  # fmt: skip
            if window:
                yield Row(emails[owner], Metric.WIN_RATE, week, sum(window) / len(window))


class Outcome(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealState(NamedTuple):
    """What a deal was from ``since`` until its next state."""

    since: datetime  # aware: when the deal took these values (for the first, its creation)
    amount: float  # 0 when blank
    close: date  # its close date then (expected while open, actual once closed)
    outcome: Outcome
    commit: bool  # in the Commit forecast category then


class DealHistory(NamedTuple):
    rep: str  # today's owner's email, lower-case (neither CRM keeps a deal's past owners)
    states: tuple[DealState, ...]  # oldest first


def history_start(weeks: Sequence[date], fiscal_year_start: MonthDay) -> date:
    """The first day whose deal states the values of ``weeks`` look at: the start of the fiscal
    quarter, and of the month before, of the first week's end. A deal closed before it (and
    not open now) plays no part."""
    sunday = weeks[0] + timedelta(days=6)
    return min(quarter_start(sunday, fiscal_year_start), _closed_month(sunday)[0])


def pipeline_coverage(
    deals: Iterable[DealHistory],
    quotas: Mapping[str, float],
    weeks: Sequence[date],
    zone: ZoneInfo,
    fiscal_year_start: MonthDay,
) -> Iterator[Row]:
    """Each week's coverage for every rep in ``quotas`` (the reps the CRM knows, with a quota):
    at the week's end, the amount of open deals closing in that fiscal quarter ÷ what is left of
    the quota once the deals won closing in it are counted. No row once the quota is met: there
    is nothing left to cover."""
    histories = _by_rep(deals, quotas)
    for week in weeks:
        end = _midnight(week + WEEK, zone)
        first = quarter_start(week + timedelta(days=6), fiscal_year_start)
        after = quarter_start(first + timedelta(days=100), fiscal_year_start)
        for rep, quota in quotas.items():
            pipeline = won = 0.0
            for states in histories.get(rep, ()):
                state = _at(states, end)
                if state is not None and first <= state.close < after:
                    if state.outcome is Outcome.OPEN:
                        pipeline += state.amount
                    elif state.outcome is Outcome.WON:
                        won += state.amount
            if quota > won:
                yield Row(rep, Metric.PIPELINE_COVERAGE, week, pipeline / (quota - won))


def forecast_accuracy(
    deals: Iterable[DealHistory], reps: Iterable[str], weeks: Sequence[date], zone: ZoneInfo
) -> Iterator[Row]:
    """Each week's forecast accuracy for ``reps`` (those the CRM knows): for the last month over
    by the week's end, 1 - |committed - won| ÷ committed, where committed is the amount in the
    Commit category at the month's start closing in that month and won the amount won closing
    in it, as known at the week's end. At least 0 (a forecast can miss by more than itself); no
    row for a month nothing was committed in."""
    wanted = set(reps)
    histories = _by_rep(deals, wanted)
    for week in weeks:
        end = _midnight(week + WEEK, zone)
        first, after = _closed_month(week + timedelta(days=6))
        start = _midnight(first, zone)
        for rep in wanted:
            committed = won = 0.0
            for states in histories.get(rep, ()):
                then = _at(states, start)
                if (then is not None and then.outcome is Outcome.OPEN and then.commit
                        and first <= then.close < after):  # fmt: skip
                    committed += then.amount
                now = _at(states, end)
                if now is not None and now.outcome is Outcome.WON and first <= now.close < after:
                    won += now.amount
            if committed > 0:
                value = max(0.0, 1 - abs(committed - won) / committed)
                yield Row(rep, Metric.FORECAST_ACCURACY, week, value)


def deal_rows(
    deals: Sequence[DealHistory],
    known: Iterable[str],
    quotas: Mapping[str, float],
    weeks: Sequence[date],
    zone: ZoneInfo,
    fiscal_year_start: MonthDay,
) -> Iterator[Row]:
    """Pipeline coverage and forecast accuracy out of ``deals`` for the reps the CRM ``known``
    (a rep it does not know has no figures, not zeros); coverage for those with a quota."""
    known = set(known)
    with_quota = {rep: quota for rep, quota in quotas.items() if rep in known}
    yield from pipeline_coverage(deals, with_quota, weeks, zone, fiscal_year_start)
    yield from forecast_accuracy(deals, known, weeks, zone)


def _by_rep(
    deals: Iterable[DealHistory], reps: Iterable[str]
) -> dict[str, list[tuple[list[datetime], tuple[DealState, ...]]]]:
    wanted = set(reps)
    found: dict[str, list[tuple[list[datetime], tuple[DealState, ...]]]] = defaultdict(list)
    for deal in deals:
        if deal.rep in wanted and deal.states:
            found[deal.rep].append(([s.since for s in deal.states], deal.states))
    return found


def _at(
    history: tuple[list[datetime], tuple[DealState, ...]], instant: datetime
) -> DealState | None:
    """The deal's state just before ``instant``; None before it existed."""
    times, states = history
    at = bisect_left(times, instant)
    return states[at - 1] if at else None


def _closed_month(day: date) -> tuple[date, date]:
    """The first day of the last month over by the end of ``day``, and of the month after."""
    after = day + timedelta(days=1)
    if after.day == 1:
        return (day.replace(day=1), after)
    this = day.replace(day=1)
    return ((this - timedelta(days=1)).replace(day=1), this)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


class CrmSource:
    # What the CRM cannot give, with why (each source says its own).
    cannot: Mapping[Metric, str] = {}

    def __init__(
        self,
        retryable: Callable[[BaseException], bool],
        *,
        attempts: int,
        multiplier: float,
        longest_wait: float,
        sleep: Callable[[float], None],
        fiscal_year_start: MonthDay,
    ) -> None:
        self._through: date | None = None
        self.fiscal_year_start = fiscal_year_start
        self._retry = retry(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=multiplier, max=longest_wait),
            reraise=True,
            sleep=sleep,
        )

    def version(self) -> None:
        return None  # only time tells: read every refresh_hours

    def through(self) -> date | None:
        return self._through

    def rows(self, reps: frozenset[str], quotas: Mapping[str, float]) -> Iterator[Row]:
        raise NotImplementedError  # each CRM's own queries

    def read(self, reps: frozenset[str], quotas: Mapping[str, float]) -> WeeklyTable:
        """The contract's read: the CRM's rows (a few per rep and week) as one table."""
        rows = list(self.rows(reps, quotas))
        return WeeklyTable.from_rows(rows, reps, self.through())
