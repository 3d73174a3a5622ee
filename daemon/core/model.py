"""The roster and the policy as frozen, typed values.

These are the admin's words after validation: every field checked on its own here (types,
time zones, dates, slots); checks across entries (unknown manager, duplicates) live in
``daemon.config``, which also turns failures into lines people read.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


class Role(StrEnum):
    SDR = "sdr"
    AE = "ae"
    SENIOR_AE = "senior_ae"


class Stage(StrEnum):
    NEW_SDR = "new_sdr"
    RAMPED_SDR = "ramped_sdr"
    NEW_AE = "new_ae"
    RAMPED_AE = "ramped_ae"
    SENIOR_AE = "senior_ae"


class Metric(StrEnum):
    """The number a 1:1 inspects (SPEC "The number in the agenda")."""

    ACTIVITIES = "activities"
    MEETINGS_BOOKED = "meetings_booked"
    PIPELINE_COVERAGE = "pipeline_coverage"
    WIN_RATE = "win_rate"
    FORECAST_ACCURACY = "forecast_accuracy"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Compiled once: a big roster runs them tens of thousands of times.
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _zone(value: object) -> object:
    if isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _clock(value: object) -> object:
    """Accept "09:00" and "9:30"; YAML 1.1 integers like 540 (09:00 read as base 60) are refused
    by the loader already, so only strings and ``time`` arrive here."""
    if isinstance(value, str):
        match = _CLOCK.fullmatch(value.strip())
        if not match:
            raise ValueError(f"malformed time {value!r}, expected HH:MM")
        return time(int(match.group(1)), int(match.group(2)))
    return value


def _email(value: object) -> object:
    if isinstance(value, str):
        value = value.strip().lower()
        if not _EMAIL.fullmatch(value):
            raise ValueError(f"malformed email address {value!r}")
    return value


TimeZoneName = Annotated[str, BeforeValidator(_zone)]
Clock = Annotated[time, BeforeValidator(_clock)]
Email = Annotated[str, BeforeValidator(_email)]


def _day(value: object) -> object:
    if isinstance(value, str):
        key = value.strip().lower()[:3]
        if key not in DAY_NAMES or len(value.strip()) < 3:
            raise ValueError(f"unknown day {value!r}, expected one of {', '.join(DAY_NAMES)}")
        return DAY_NAMES.index(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    raise ValueError(f"unknown day {value!r}, expected one of {', '.join(DAY_NAMES)}")


Weekday = Annotated[int, BeforeValidator(_day)]


class Slot(Frozen):
    """A preferred weekly slot in the rep's (series) time zone: ``{day: tue, time: "10:00"}``."""

    day: Weekday
    time: Clock

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # The CSV roster writes a slot as "tue 10:00".
        if isinstance(value, str):
            parts = value.split()
            if len(parts) != 2:
                raise ValueError(f"malformed slot {value!r}, expected e.g. 'tue 10:00'")
            return {"day": parts[0], "time": parts[1]}
        return value

    def label(self) -> str:
        return f"{DAY_NAMES[self.day]} {self.time.strftime('%H:%M')}"


class WorkingHours(Frozen):
    """When a person takes meetings, in their own time zone."""

    days: tuple[Weekday, ...] = (0, 1, 2, 3, 4)
    start: Clock = time(9, 0)
    end: Clock = time(17, 0)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("working hours must end after they start")
        if not self.days:
            raise ValueError("working hours need at least one day")
        return self

    def minutes(self) -> int:
        return (self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)


class MonthDay(Frozen):
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", value.strip())
            if not match:
                raise ValueError(f"malformed month-day {value!r}, expected MM-DD")
            return {"month": int(match.group(1)), "day": int(match.group(2))}
        return value


JANUARY = MonthDay(month=1, day=1)  # the default fiscal year start


class Organization(Frozen):
    name: str = Field(min_length=1)
    timezone: TimeZoneName = "UTC"
    fiscal_year_start: MonthDay = JANUARY
    admins: tuple[Email, ...] = ()  # told of operational problems (`admin_alert` emails)


class Manager(Frozen):
    email: Email
    name: str = Field(min_length=1)
    timezone: TimeZoneName | None = None
    escalate_to: Email | None = None
    working_hours: WorkingHours | None = None


class Rep(Frozen):
    email: Email
    name: str = Field(min_length=1)
    role: Role
    start_date: date
    manager: Email
    timezone: TimeZoneName | None = None
    slot: Slot | None = None
    forecast_within_5pct: bool = False
    working_hours: WorkingHours | None = None
    quarterly_quota: float | None = Field(default=None, gt=0)  # for pipeline_coverage

    @field_validator("start_date", mode="before")
    @classmethod
    def _strict_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not _DATE.fullmatch(value.strip()):
                raise ValueError(f"bad date {value!r}, expected YYYY-MM-DD")
            try:
                return date.fromisoformat(value.strip())
            except ValueError as exc:
                raise ValueError(f"bad date {value!r}: {exc}") from exc
        return value


class StageRule(Frozen):
    """One row of the cadence table (seed 000)."""

    label: str
    sessions_per_week: int = Field(ge=1, le=2)
    interval_weeks: int = Field(ge=1, le=4)
    duration_minutes: int = Field(ge=10, le=120)
    inspection_focus: str
    skill_focus: str
    # senior_ae only: the interval when the rep's forecast is within 5% (default biweekly).
    interval_weeks_if_forecast_within_5pct: int | None = Field(default=None, ge=1, le=4)
    metric: Metric  # the number the 1:1 opens with


def default_cadence() -> dict[Stage, StageRule]:
    return {
        Stage.NEW_SDR: StageRule(
            label="New SDR",
            sessions_per_week=2,
            interval_weeks=1,
            duration_minutes=25,
            inspection_focus="activity volume + script delivery",
            skill_focus="discovery openers, voicemail scripts",
            metric=Metric.ACTIVITIES,
        ),
        Stage.RAMPED_SDR: StageRule(
            label="Ramped SDR",
            sessions_per_week=1,
            interval_weeks=1,
            duration_minutes=30,
            inspection_focus="meetings booked + conversion",
            skill_focus="objection handling, multi-thread DMs",
            metric=Metric.MEETINGS_BOOKED,
        ),
        Stage.NEW_AE: StageRule(
            label="New AE",
            sessions_per_week=1,
            interval_weeks=1,
            duration_minutes=45,
            inspection_focus="pipeline coverage + stage progression",
            skill_focus="demo storytelling, discovery depth",
            metric=Metric.PIPELINE_COVERAGE,
        ),
        Stage.RAMPED_AE: StageRule(
            label="Ramped AE",
            sessions_per_week=1,
            interval_weeks=1,
            duration_minutes=30,
            inspection_focus="win rate + cycle length",
            skill_focus="multi-thread, executive presence",
            metric=Metric.WIN_RATE,
        ),
        Stage.SENIOR_AE: StageRule(
            label="Senior AE",
            sessions_per_week=1,
            interval_weeks=1,
            duration_minutes=30,
            inspection_focus="account plan + forecast confidence",
            skill_focus="negotiation, board-level outreach",
            metric=Metric.FORECAST_ACCURACY,
            interval_weeks_if_forecast_within_5pct=2,
        ),
    }


class Thresholds(Frozen):
    """Cancellation-rate bands (seed 000): healthy under 10%, warning above 15%, red above 25%;
    and the sample a rate needs before it is read as one: seed 001's symptom is "cancelled three
    of the last eight 1:1s", so from 8 meetings on a single cancellation (12.5%) is never a
    warning, two (25%) are, and three (37.5%) are a red flag."""

    healthy_below: float = Field(default=0.10, gt=0, lt=1)
    warning_above: float = Field(default=0.15, gt=0, lt=1)
    red_flag_above: float = Field(default=0.25, gt=0, lt=1)
    min_meetings: int = Field(default=8, ge=1)


class Policy(Frozen):
    cadence: dict[Stage, StageRule] = Field(default_factory=default_cadence)
    sdr_ramp_days: int = Field(default=90, ge=1)
    ae_ramp_days: int = Field(default=180, ge=1)
    working_hours: WorkingHours = WorkingHours()
    thresholds: Thresholds = Thresholds()
    preread_lead_hours: float = Field(default=24, gt=0, le=168)
    recap_delay_minutes: int = Field(default=30, ge=0, le=24 * 60)
    agenda_horizon_days: int = Field(default=14, ge=1, le=60)
    max_reps_per_manager: int = Field(default=8, ge=1)

    @field_validator("cadence", mode="before")
    @classmethod
    def _merge_cadence(cls, value: Any) -> Any:
        # An override may change one row or one field; the rest keeps the seed's table.
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = {k.value: v.model_dump() for k, v in default_cadence().items()}
        for key, row in value.items():
            if key in merged and isinstance(row, dict):
                merged[key] = {**merged[key], **row}
            else:
                merged[key] = row
        return merged

    def rule(self, stage: Stage) -> StageRule:
        return self.cadence[stage]

    @property
    def preread_lead(self) -> timedelta:
        return timedelta(hours=self.preread_lead_hours)

    @property
    def recap_delay(self) -> timedelta:
        return timedelta(minutes=self.recap_delay_minutes)


class ReviewMode(StrEnum):
    OFF = "off"
    TEAM = "team"  # one series per manager, with all their reps
    REP = "rep"  # one series per rep


class PipelineReview(Frozen):
    """The deal review, a meeting of its own (seeds 001-004), so the 1:1 stays about skill."""

    mode: ReviewMode = ReviewMode.OFF
    day: Weekday = 0  # seed 001: "ideally Monday morning"
    time: Clock = time(9, 0)  # in the manager's time zone
    duration_minutes: int | None = Field(default=None, ge=10, le=120)
    vp: Email | None = None  # invited to the first review of each month (seed 001 FAQ)

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare ``off`` as false.
        return ReviewMode.OFF if value is False else value

    @property
    def on(self) -> bool:
        return self.mode is not ReviewMode.OFF

    @property
    def minutes(self) -> int:
        """Seeds 002 and 003: a per-rep review is 20 minutes; seed 001's team review 30."""
        if self.duration_minutes is not None:
            return self.duration_minutes
        return 20 if self.mode is ReviewMode.REP else 30


class Roster(Frozen):
    organization: Organization
    managers: tuple[Manager, ...]
    reps: tuple[Rep, ...]
    policy: Policy = Policy()
    pipeline_review: PipelineReview = PipelineReview()

    def manager(self, email: str) -> Manager:
        for manager in self.managers:
            if manager.email == email:
                return manager
        raise KeyError(email)
