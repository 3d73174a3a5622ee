"""The desired state at an instant: one series per rep, with its stage, slot and next occurrences.

``plan`` is what ``cadence plan`` prints and what the reconcile loop converges the calendars to.
It is a pure function of the roster, the instant and (optionally) the slots the daemon already
uses, so the same inputs always give the same plan.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from daemon.core.fiscal import WEEK11
from daemon.core.fiscal import week_of_quarter as _week
from daemon.core.metrics import Weekly, number_for
from daemon.core.model import DAY_NAMES, Manager, Rep, Roster, Stage, StageRule, WorkingHours
from daemon.core.observed import CalendarHours
from daemon.core.policy import StageSpan, interval_weeks, spans_on
from daemon.core.schedule import (
    Choice,
    PairRequest,
    Pattern,
    choose_slots,
    first_day,
    monday_of,
    slot_days,
    zone,
)

UPCOMING = 8


class Template:
    COACHING = "coaching"
    CAREER = "career"


class Occurrence(NamedTuple):
    """One planned meeting (a named tuple: a plan for 10,000 reps builds 80,000 of them)."""

    start: datetime  # aware, series zone
    end: datetime
    stage: Stage
    week_of_quarter: int
    week11: bool
    template: str  # Template.COACHING | Template.CAREER


@dataclass(frozen=True)
class SeriesPlan:
    rep: Rep
    manager: Manager
    span: StageSpan
    rule: StageRule
    pattern: Pattern
    next_span: StageSpan | None
    next_pattern: Pattern | None
    slot_fits: bool
    upcoming: tuple[Occurrence, ...]

    @property
    def stage(self) -> Stage:
        return self.span.stage

    @property
    def until(self) -> date | None:
        """Last date (series zone) the current stage's series may occur."""
        return self.span.last_day

    @property
    def timezone(self) -> str:
        return self.pattern.zone_name


def series_zone(rep: Rep, manager: Manager, roster: Roster) -> str:
    return rep.timezone or manager.timezone or roster.organization.timezone


def _hours(hours: WorkingHours | None, roster: Roster) -> WorkingHours:
    return hours or roster.policy.working_hours


def manager_hours(
    manager: Manager, roster: Roster, calendar_hours: Mapping[str, CalendarHours] | None = None
) -> tuple[str, WorkingHours]:
    """The zone and hours a manager takes 1:1s in: the roster's, else what their calendar
    service keeps (in its own zone), else the policy's default in the manager's zone."""
    own_zone = manager.timezone or roster.organization.timezone
    if manager.working_hours is not None:
        return own_zone, manager.working_hours
    known = (calendar_hours or {}).get(manager.email)
    if known is not None:
        return known.timezone, known.hours
    return own_zone, roster.policy.working_hours


def pattern_for(rep: Rep, span: StageSpan, rule: StageRule, choice: Choice, tz: str) -> Pattern:
    return Pattern(
        days=slot_days(first_day(choice.days), rule.sessions_per_week),
        time=choice.time,
        interval_weeks=interval_weeks(rep, rule),
        duration_minutes=rule.duration_minutes,
        zone_name=tz,
        anchor=span.start,
    )


def plan(
    roster: Roster,
    at: datetime,
    sticky: Mapping[str, tuple[int, time]] | None = None,
    count: int = UPCOMING,
    calendar_hours: Mapping[str, CalendarHours] | None = None,
) -> tuple[SeriesPlan, ...]:
    """The desired series of every rep at ``at`` (aware).

    ``sticky`` maps a rep's email to the (weekday, time) their live series already uses, so
    adding a rep to the roster never moves anyone else's meeting. ``calendar_hours``: managers'
    working hours from their calendar service, for those the roster gives none.
    """
    if at.tzinfo is None:
        raise ValueError("plan needs an aware instant")
    sticky = sticky or {}
    managers = {m.email: m for m in roster.managers}
    policy = roster.policy
    requests: list[PairRequest] = []
    spans: dict[str, tuple[StageSpan, StageSpan | None, str]] = {}
    review = roster.pipeline_review
    avoid_day = review.day if review.on else None  # seed 002: pipeline Monday, coaching later
    for rep in roster.reps:
        manager = managers[rep.manager]
        tz = series_zone(rep, manager, roster)
        span, nspan = spans_on(rep, policy, at.astimezone(zone(tz)).date())
        spans[rep.email] = (span, nspan, tz)
        rule = policy.rule(span.stage)
        preferred = sticky.get(rep.email)
        if rep.slot is not None:
            preferred = (rep.slot.day, rep.slot.time)
        manager_zone, hours = manager_hours(manager, roster, calendar_hours)
        requests.append(
            PairRequest(
                key=rep.email,
                manager=manager.email,
                series_zone=tz,
                rep_zone=tz,
                rep_hours=_hours(rep.working_hours, roster),
                manager_zone=manager_zone,
                manager_hours=hours,
                sessions_per_week=rule.sessions_per_week,
                duration_minutes=rule.duration_minutes,
                preferred=preferred,
                avoid_day=avoid_day,
                named=rep.slot is not None,
            )
        )
    week = monday_of(at.date()) + timedelta(weeks=1)
    choices = choose_slots(requests, week)

    plans = []
    # Reps whose next meetings fall on the same instants share one computation of them.
    shared: dict[tuple[object, ...], tuple[Occurrence, ...]] = {}
    for rep in roster.reps:
        manager = managers[rep.manager]
        span, nspan, tz = spans[rep.email]
        rule = policy.rule(span.stage)
        choice = choices[rep.email]
        pattern = pattern_for(rep, span, rule, choice, tz)
        npattern = None
        if nspan is not None:
            npattern = pattern_for(rep, nspan, policy.rule(nspan.stage), choice, tz)
        key = _upcoming_key(at, span, pattern, nspan, npattern)
        upcoming = shared.get(key)
        if upcoming is None:
            upcoming = tuple(_upcoming(roster, at, span, pattern, nspan, npattern, count))
            shared[key] = upcoming
        plans.append(
            SeriesPlan(rep, manager, span, rule, pattern, nspan, npattern, choice.fits, upcoming)
        )
    return tuple(plans)


_EPOCH_MONDAY = date(2001, 1, 1)


def _upcoming_key(
    at: datetime,
    span: StageSpan,
    pattern: Pattern,
    nspan: StageSpan | None,
    npattern: Pattern | None,
) -> tuple[object, ...]:
    """What ``_upcoming`` depends on: a stage start already past is the same as today, and a
    pattern's anchor counts only through its phase in the ``interval_weeks`` cycle."""
    local_day = at.astimezone(zone(pattern.zone_name)).date()

    def clip(s: StageSpan) -> tuple[object, ...]:
        return (s.stage, max(s.start, local_day), s.end)

    def phase(p: Pattern) -> tuple[object, ...]:
        weeks = (monday_of(p.anchor) - _EPOCH_MONDAY).days // 7 % p.interval_weeks
        return (p.days, p.time, p.interval_weeks, p.duration_minutes, p.zone_name, weeks)

    later = None if nspan is None or npattern is None else (clip(nspan), phase(npattern))
    return (clip(span), phase(pattern), later)


def timeline_starts(
    at: datetime,
    span: StageSpan,
    pattern: Pattern,
    nspan: StageSpan | None,
    npattern: Pattern | None,
) -> Iterator[tuple[datetime, Stage, Pattern]]:
    """The pair's meetings from ``at`` on, across the coming stage change."""
    local_day = at.astimezone(zone(pattern.zone_name)).date()
    for start in pattern.occurrences(max(local_day, span.start), span.end):
        if start >= at:
            yield start, span.stage, pattern
    if nspan is not None and npattern is not None:
        for start in npattern.occurrences(max(local_day, nspan.start), nspan.end):
            if start >= at:
                yield start, nspan.stage, npattern


def _upcoming(
    roster: Roster,
    at: datetime,
    span: StageSpan,
    pattern: Pattern,
    nspan: StageSpan | None,
    npattern: Pattern | None,
    count: int,
) -> Iterator[Occurrence]:
    org = roster.organization
    org_zone = zone(org.timezone)
    starts = timeline_starts(at, span, pattern, nspan, npattern)
    current = next(starts, None)
    produced = 0
    while current is not None and produced < count:
        following = next(starts, None)
        start, stage, pat = current
        local = start if start.tzinfo is org_zone else start.astimezone(org_zone)
        week = _week(local.date(), org.fiscal_year_start)
        # The last 1:1 of a calendar month is the career conversation (seed 001).
        last_of_month = following is None or following[0].month != start.month
        yield Occurrence(
            start,
            start + pat.duration,
            stage,
            week,
            week == WEEK11,
            Template.CAREER if last_of_month else Template.COACHING,
        )
        produced += 1
        current = following


def occurrences_between(
    roster: Roster, series: SeriesPlan, start: datetime, end: datetime
) -> tuple[Occurrence, ...]:
    """The pair's desired occurrences starting in [start, end), with template and week flags."""
    out = []
    for occurrence in _upcoming(
        roster, start, series.span, series.pattern, series.next_span, series.next_pattern, 10_000
    ):
        if occurrence.start >= end:
            break
        out.append(occurrence)
    return tuple(out)


def to_json(
    at: datetime,
    plans: tuple[SeriesPlan, ...],
    roster: Roster | None = None,
    metrics: Weekly | None = None,
) -> dict[str, Any]:
    """The SPEC's ``cadence plan --json`` object. Each upcoming meeting's ``number`` is null
    without a metrics source (``metrics`` None)."""
    return {"at": at.isoformat(), "series": [series_json(p, roster, metrics) for p in plans]}


def series_json(
    p: SeriesPlan, roster: Roster | None = None, metrics: Weekly | None = None
) -> dict[str, Any]:
    """One item of the plan's ``series`` (the CLI writes them one by one for big rosters)."""

    def number(o: Occurrence) -> dict[str, Any] | None:
        if metrics is None or roster is None:
            return None
        metric = roster.policy.rule(o.stage).metric
        org_zone = zone(roster.organization.timezone)
        return number_for(
            metrics, p.rep.email, metric, o.start, org_zone, p.rep.start_date
        ).as_json()

    return {
        "rep": p.rep.email,
        "manager": p.manager.email,
        "stage": p.stage.value,
        "interval_weeks": p.pattern.interval_weeks,
        "days": [DAY_NAMES[d] for d in p.pattern.days],
        "time": p.pattern.time.strftime("%H:%M"),
        "duration_minutes": p.pattern.duration_minutes,
        "timezone": p.timezone,
        "rrule": p.pattern.rrule(),
        "until": p.until.isoformat() if p.until else None,
        "next_stage": (
            {"stage": p.next_span.stage.value, "on": p.next_span.start.isoformat()}
            if p.next_span
            else None
        ),
        "slot_fits_working_hours": p.slot_fits,
        "upcoming": [
            {
                "start": o.start.isoformat(),
                "stage": o.stage.value,
                "week_of_quarter": o.week_of_quarter,
                "week11": o.week11,
                "template": o.template,
                "number": number(o),
            }
            for o in p.upcoming
        ],
    }
