"""What the CRM metrics sources share: the metrics they cannot give; only time tells when a
CRM's data changed (it is read every ``refresh_hours``); the last week a read covered; and
idempotent reads tried again a few times (tenacity) after the errors each CRM names as passing,
within bounds each source gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from daemon.core.metrics import WEEK
from daemon.core.model import Metric
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


class CrmSource:
    # A CRM keeps today's opportunities, not what they were at a past week's end.
    cannot: Mapping[Metric, str] = {
        Metric.PIPELINE_COVERAGE: "it needs each past week's open pipeline; export it to CSV",
        Metric.FORECAST_ACCURACY: "it needs each month's committed amount; export it to CSV",
    }

    def __init__(
        self,
        retryable: Callable[[BaseException], bool],
        *,
        attempts: int,
        multiplier: float,
        longest_wait: float,
        sleep: Callable[[float], None],
    ) -> None:
        self._through: date | None = None
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

    def rows(self, reps: frozenset[str]) -> Iterator[Row]:
        raise NotImplementedError  # each CRM's own queries

    def read(self, reps: frozenset[str]) -> WeeklyTable:
        """The contract's read: the CRM's rows (a few per rep and week) as one table."""
        rows = list(self.rows(reps))
        return WeeklyTable.from_rows(rows, reps, self.through())
