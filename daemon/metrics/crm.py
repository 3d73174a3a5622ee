"""What the CRM metrics sources share: the metrics they cannot give; only time tells when a
CRM's data changed (it is read every ``refresh_hours``); the last week a read covered; and
idempotent reads tried again a few times (tenacity) after the errors each CRM names as passing,
within bounds each source gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from daemon.core.model import Metric


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
