"""Which stage of the cadence table a rep is in, and when that changes.

Tenure is counted in whole days in the series' time zone: a rep hired on day D is on day 0 on
D, and moves on the morning of day 90 (SDR) or day 180 (AE). A senior AE has a single stage
whose interval follows the ``forecast_within_5pct`` flag; a flip of the flag is a roster edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from daemon.core.model import Policy, Rep, Role, Stage, StageRule


@dataclass(frozen=True)
class StageSpan:
    """A stage and the dates (series zone) it covers: ``start`` inclusive, ``end`` exclusive."""

    stage: Stage
    start: date
    end: date | None

    @property
    def last_day(self) -> date | None:
        """The last date the stage's series may meet: the day before the next stage."""
        return None if self.end is None else self.end - timedelta(days=1)


def timeline(rep: Rep, policy: Policy) -> tuple[StageSpan, ...]:
    """Every stage the rep goes through, from the start date on."""
    if rep.role is Role.SDR:
        change = rep.start_date + timedelta(days=policy.sdr_ramp_days)
        return (
            StageSpan(Stage.NEW_SDR, rep.start_date, change),
            StageSpan(Stage.RAMPED_SDR, change, None),
        )
    if rep.role is Role.AE:
        change = rep.start_date + timedelta(days=policy.ae_ramp_days)
        return (
            StageSpan(Stage.NEW_AE, rep.start_date, change),
            StageSpan(Stage.RAMPED_AE, change, None),
        )
    return (StageSpan(Stage.SENIOR_AE, rep.start_date, None),)


def spans_on(rep: Rep, policy: Policy, day: date) -> tuple[StageSpan, StageSpan | None]:
    """The stage span covering ``day`` (before the start date, the first) and the one after it
    (None when it is the last)."""
    spans = timeline(rep, policy)
    for index, span in enumerate(spans):
        if span.end is None or day < span.end:
            return span, spans[index + 1] if index + 1 < len(spans) else None
    return spans[-1], None


def interval_weeks(rep: Rep, rule: StageRule) -> int:
    if rep.forecast_within_5pct and rule.interval_weeks_if_forecast_within_5pct is not None:
        return rule.interval_weeks_if_forecast_within_5pct
    return rule.interval_weeks


def tenure_days(rep: Rep, day: date) -> int:
    return (day - rep.start_date).days
