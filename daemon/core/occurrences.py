"""What actually happens to each occurrence of a series on the calendar.

Expands an observed series (the rule, its EXDATEs and overrides) into instances and classifies
each one the way the SPEC counts them: scheduled, rescheduled (moved inside its week), or
cancelled (EXDATE, ``STATUS:CANCELLED``, declined by the rep or the manager, moved out of its
week). Weeks are Monday to Sunday in the organisation's time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from daemon.core.fiscal import week_bounds
from daemon.core.observed import Attendee, ObservedOverride, ObservedSeries
from daemon.core.schedule import Pattern, parse_weekly


class Status(StrEnum):
    SCHEDULED = "scheduled"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Instance:
    uid: str
    original_start: datetime  # the occurrence's place in the rule (RECURRENCE-ID)
    start: datetime  # where it actually is
    end: datetime
    status: Status
    reason: str  # why cancelled, for people: "removed from the series", "declined by Sam Ortiz"
    description: str  # the occurrence's own description (override), else the series'
    has_override: bool

    @property
    def key(self) -> str:
        """``X-Cadence-Occurrence``: the series UID and the original start (UTC)."""
        return occurrence_key(self.uid, self.original_start)


def occurrence_key(uid: str, original_start: datetime) -> str:
    utc = original_start.astimezone(ZoneInfo("UTC"))
    return f"{uid} {utc.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def pattern_of(series: ObservedSeries) -> Pattern | None:
    """The weekly pattern of a series cadence wrote (canonical RRULE), else None."""
    weekly = parse_weekly(series.rrule)
    if weekly is None:
        return None
    days, interval = weekly
    local = series.start.astimezone(ZoneInfo(series.timezone))
    return Pattern(
        days=days,
        time=local.time().replace(tzinfo=None),
        interval_weeks=interval,
        duration_minutes=int(series.duration.total_seconds() // 60),
        zone_name=series.timezone,
        anchor=local.date(),
    )


def _same(a: datetime, b: datetime) -> bool:
    return a.astimezone(ZoneInfo("UTC")) == b.astimezone(ZoneInfo("UTC"))


def _declined(
    attendees: tuple[Attendee, ...], people: dict[str, str]
) -> str | None:  # fmt: skip
    for attendee in attendees:
        if attendee.partstat.upper() == "DECLINED" and attendee.email.lower() in people:
            return f"declined by {people[attendee.email.lower()]}"
    return None


def instances(
    series: ObservedSeries,
    start: datetime,
    end: datetime,
    org_zone: ZoneInfo,
    people: dict[str, str],
) -> Iterator[Instance]:
    """Instances whose original start is in [start, end). ``people`` maps the rep's and the
    manager's emails to their names: only their declines cancel a 1:1."""
    pattern = pattern_of(series)
    if pattern is None:
        return
    local_zone = ZoneInfo(series.timezone)
    first_day = max(start.astimezone(local_zone).date(), series.start.astimezone(local_zone).date())
    last: date | None = None if series.until is None else series.until + timedelta(days=1)
    overrides: dict[datetime, ObservedOverride] = {
        o.recurrence_id.astimezone(ZoneInfo("UTC")): o for o in series.overrides
    }
    exdates = {d.astimezone(ZoneInfo("UTC")) for d in series.exdates}
    master_decline = _declined(series.attendees, people)
    for original in pattern.occurrences(first_day, last):
        if original >= end:
            return
        if original < start or original < series.start:
            continue
        utc = original.astimezone(ZoneInfo("UTC"))
        override = overrides.get(utc)
        begin = override.start if override else original
        finish = override.end if override else original + series.duration
        description = override.description if override else series.description
        status, reason = Status.SCHEDULED, ""
        if utc in exdates:
            status, reason = Status.CANCELLED, "removed from the series"
        elif override is not None and override.cancelled:
            status, reason = Status.CANCELLED, "cancelled"
        elif (why := _declined(override.attendees if override else (), people)) is not None:
            status, reason = Status.CANCELLED, why
        elif override is None and master_decline is not None:
            status, reason = Status.CANCELLED, master_decline
        elif override is not None and not _same(override.start, original):
            if week_bounds(override.start, org_zone) != week_bounds(original, org_zone):
                status, reason = Status.CANCELLED, "moved out of its week"
            else:
                status = Status.RESCHEDULED
        yield Instance(
            uid=series.uid,
            original_start=original,
            start=begin,
            end=finish,
            status=status,
            reason=reason,
            description=description,
            has_override=override is not None,
        )
