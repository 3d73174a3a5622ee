"""The number a 1:1 opens with: the rep's own metric for the last full week against their own
trailing four-week baseline (seed 000: "no team averages").

Weeks run Monday to Sunday in the organisation's time zone and are named by their Monday. For
an occurrence, W is the last full week that ended before (or as) it starts; ``value`` is W's
value, ``baseline`` the mean of the values present among the four weeks before W when at least
two are, ``change`` = (value - baseline) / baseline. Whatever cannot be known stays None and the
agenda says why: nothing is ever invented.

Pure: the metrics sources (``daemon.metrics``) hand their weekly values in as a ``Weekly``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from daemon.core.model import Metric

BASELINE_WEEKS = 4
MIN_BASELINE_WEEKS = 2
WEEK = timedelta(days=7)


class Shown(StrEnum):
    COUNT = "count"
    RATIO = "ratio"
    PERCENT = "percent"


SHOWN: Mapping[Metric, Shown] = {
    Metric.ACTIVITIES: Shown.COUNT,
    Metric.MEETINGS_BOOKED: Shown.COUNT,
    Metric.PIPELINE_COVERAGE: Shown.RATIO,
    Metric.WIN_RATE: Shown.PERCENT,
    Metric.FORECAST_ACCURACY: Shown.PERCENT,
}

LABEL: Mapping[Metric, str] = {
    Metric.ACTIVITIES: "Activities",
    Metric.MEETINGS_BOOKED: "Meetings booked",
    Metric.PIPELINE_COVERAGE: "Pipeline coverage",
    Metric.WIN_RATE: "Win rate",
    Metric.FORECAST_ACCURACY: "Forecast accuracy",
}


@dataclass(frozen=True)
class Weekly:
    """What a metrics source holds: values by (rep email, metric) and week Monday.

    ``through`` is the last week the source has figures for (for anyone): a later week is not
    in yet, an earlier one without a value for a rep is missing. ``unavailable`` names metrics
    the source cannot compute, with why.
    """

    source: str
    values: Mapping[tuple[str, Metric], Mapping[date, float]]
    through: date | None
    read_at: datetime | None = None
    unavailable: Mapping[Metric, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Number:
    metric: Metric
    week: date
    value: float | None
    baseline: float | None
    change: float | None
    baseline_weeks: tuple[date, ...]  # the weeks present among the four before ``week``
    pending: bool  # ``week`` is not in the source yet
    source: str
    unavailable: str | None = None
    started: date | None = None  # the rep's start date: earlier weeks are not missing

    @property
    def missing_weeks(self) -> tuple[date, ...]:
        first = monday_of(self.started) if self.started is not None else date.min
        weeks = baseline_weeks(self.week)
        return tuple(w for w in weeks if w not in self.baseline_weeks and w >= first)

    def as_json(self) -> dict[str, Any]:
        """The SPEC's ``number`` object of ``plan --json``."""
        return {
            "metric": self.metric.value,
            "week": self.week.isoformat(),
            "value": _plain(self.value, 4),
            "baseline": _plain(self.baseline, 4),
            "change": _plain(self.change, 3),
        }

    def line(self) -> str:
        """The line people read in the agenda, the pre-read and the recap."""
        label = LABEL[self.metric]
        if self.unavailable is not None:
            return f"{label}: {self.source} cannot give it ({self.unavailable}); pull it by hand."
        head = f"{label}, week of {_day(self.week)}"
        if self.pending:
            ends = self.week + timedelta(days=6)
            return (
                f"{head}: not in yet; cadence fills it in once {self.source} has that week "
                f"(after Sun {_day(ends)})."
            )
        shown = (
            f"no figure in {self.source}" if self.value is None else show(self.metric, self.value)
        )
        if self.baseline is None:
            present = len(self.baseline_weeks)
            base = (
                f"no 4-week baseline yet: {present} of the 4 weeks before, "
                f"{MIN_BASELINE_WEEKS} needed"
            )
        else:
            base = f"your 4-week baseline {show(self.metric, self.baseline)}"
            if len(self.baseline_weeks) < BASELINE_WEEKS:
                base += f" from {len(self.baseline_weeks)} weeks"
                if not self.missing_weeks:
                    base += " since starting"
            if self.value is not None:
                compared = "no change to compare with a 0 baseline"
                if self.change is not None:
                    compared = signed_percent(self.change)
                base += ", " + compared
        missing = self.missing_weeks
        tail = (
            " Missing: " + ", ".join(f"week of {_day(w)}" for w in missing) + "."
            if missing and self.baseline is not None
            else ""
        )
        return f"{head}: {shown} ({base}).{tail}"


def _plain(value: float | None, digits: int) -> float | int | None:
    if value is None:
        return None
    rounded = round(value, digits)
    return int(rounded) if rounded == int(rounded) else rounded


def _day(day: date) -> str:
    return f"{day.day} {day.strftime('%b')}"


def show(metric: Metric, value: float) -> str:
    """Counts with at most one decimal, percentages as ``31%``, ratios as ``2.4×``."""
    kind = SHOWN[metric]
    if kind is Shown.PERCENT:
        return f"{round(value * 100)}%"
    if kind is Shown.RATIO:
        return f"{value:.1f}×"
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def signed_percent(change: float) -> str:
    pct = round(change * 100)
    return f"+{pct}%" if pct > 0 else f"{pct}%"


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def number_week(start: datetime, org_zone: ZoneInfo) -> date:
    """W for a meeting starting at ``start``: the Monday of the last full organisation week that
    ended at or before it."""
    return monday_of(start.astimezone(org_zone).date()) - WEEK


def baseline_weeks(week: date) -> tuple[date, ...]:
    return tuple(week - WEEK * i for i in range(BASELINE_WEEKS, 0, -1))


def number_for(
    weekly: Weekly,
    rep: str,
    metric: Metric,
    start: datetime,
    org_zone: ZoneInfo,
    started: date | None = None,
) -> Number:
    """The number of ``rep``'s meeting at ``start``; ``started`` (the rep's start date) tells
    the weeks before it, which are not missing, from weeks without a figure."""
    week = number_week(start, org_zone)
    if metric in weekly.unavailable:
        return Number(metric, week, None, None, None, (), False, weekly.source,
                      unavailable=weekly.unavailable[metric])  # fmt: skip
    series = weekly.values.get((rep, metric), {})
    pending = weekly.through is None or week > weekly.through
    value = None if pending else series.get(week)
    present = tuple(w for w in baseline_weeks(week) if w in series)
    baseline = (
        sum(series[w] for w in present) / len(present)
        if len(present) >= MIN_BASELINE_WEEKS
        else None
    )
    change = (
        (value - baseline) / baseline
        if value is not None and baseline is not None and baseline != 0
        else None
    )
    return Number(metric, week, value, baseline, change, present, pending, weekly.source,
                  started=started)  # fmt: skip
