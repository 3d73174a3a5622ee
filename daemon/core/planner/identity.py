"""What makes a series "the same series" (its fingerprint and deterministic UID), and how a
series, a stage and a person are shown to templates. Shared by the lifecycle, the agendas and the
notices."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

from daemon.core.model import DAY_NAMES, Manager, Rep, Roster, Stage, StageRule
from daemon.core.plan import SeriesPlan
from daemon.core.policy import StageSpan
from daemon.core.schedule import Pattern, zone


def fingerprint(manager: str, rep: str, stage: Stage, pattern: Pattern) -> str:
    """What makes a series "the same series": who, stage, rule, time, zone and length."""
    text = "|".join(
        (manager, rep, stage.value, pattern.rrule(), pattern.time.strftime("%H:%M"),
         pattern.zone_name, str(pattern.duration_minutes))
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def series_uid(fingerprint: str, start: date) -> str:
    """Deterministic from (manager, rep, stage, rule, start): a retried create finds itself.

    Lower-case hex only, so the same id is valid as a Google event id (base32hex).
    """
    text = f"{fingerprint}|{start.isoformat()}"
    return "cadence" + hashlib.sha256(text.encode()).hexdigest()[:32]


def person(p: Rep | Manager) -> dict[str, str]:
    return {"name": p.name, "first_name": p.name.split()[0], "email": p.email}


def stage_view(stage: Stage, rule: StageRule, interval: int) -> dict[str, str]:
    times = "twice a week" if rule.sessions_per_week == 2 else "once a week"
    if interval > 1:
        times = f"every {interval} weeks"
    return {
        "key": stage.value,
        "label": rule.label,
        "inspection_focus": rule.inspection_focus,
        "skill_focus": rule.skill_focus,
        "cadence": f"{times}, {rule.duration_minutes} minutes",
    }


def describe_schedule(pattern: Pattern) -> str:
    names = [f"{DAY_NAMES[d].capitalize()}" for d in pattern.days]
    every = "every week" if pattern.interval_weeks == 1 else "every other week"
    if pattern.interval_weeks > 2:
        every = f"every {pattern.interval_weeks} weeks"
    return (
        f"{' and '.join(names)} at {pattern.time.strftime('%H:%M')} {pattern.zone_name}, "
        f"{every}, {pattern.duration_minutes} minutes"
    )


def in_zone(dt: datetime, tz: str) -> datetime:
    return dt.astimezone(zone(tz))


def person_zone(p: Rep | Manager, roster: Roster, fallback: str | None = None) -> str:
    return p.timezone or fallback or roster.organization.timezone


@dataclass(frozen=True)
class Wanted:
    """A series a rep should have on the calendar now (one stage of their timeline)."""

    p: SeriesPlan
    span: StageSpan
    rule: StageRule
    pattern: Pattern
    fingerprint: str

    @property
    def stage(self) -> Stage:
        return self.span.stage

    @property
    def until(self) -> date | None:
        return self.span.last_day
