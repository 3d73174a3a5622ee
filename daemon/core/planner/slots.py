"""Free times to offer a manager whose 1:1 was cancelled ("reschedule, never skip"):
later in the same week, inside both people's working hours, clear of the manager's other 1:1s
and of their pipeline review."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from daemon.core.fiscal import week_bounds
from daemon.core.model import Manager, Rep, ReviewMode, Roster
from daemon.core.observed import CalendarHours
from daemon.core.occurrences import Instance
from daemon.core.plan import SeriesPlan, manager_hours, occurrences_between
from daemon.core.planner.identity import person_zone
from daemon.core.schedule import Pattern, zone

BUSY_AHEAD = timedelta(days=14)  # the manager's 1:1s known without asking: this far ahead


def review_hours(
    roster: Roster, start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each manager's pipeline-review time between ``start`` and ``end``: busy for the times
    offered to reschedule a 1:1 (the per-rep reviews taken as one block, back to back)."""
    review = roster.pipeline_review
    if not review.on:
        return {}
    counts: dict[str, int] = {}
    for r in roster.reps:
        counts[r.manager] = counts.get(r.manager, 0) + 1
    busy: dict[str, list[tuple[datetime, datetime]]] = {}
    for manager in roster.managers:
        if not counts.get(manager.email):
            continue
        tz = manager.timezone or roster.organization.timezone
        length = review.minutes * (counts[manager.email] if review.mode is ReviewMode.REP else 1)
        pattern = Pattern((review.day,), review.time, 1, length, tz, start.date())
        for begin in pattern.occurrences(start.astimezone(zone(tz)).date()):
            if begin >= end:
                break
            busy.setdefault(manager.email, []).append((begin, begin + pattern.duration))
    return busy


def manager_busy(
    roster: Roster, desired: Sequence[SeriesPlan], now: datetime, end: datetime | None = None
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each manager's 1:1s and pipeline reviews from a week before ``now`` to ``end``
    (default BUSY_AHEAD on)."""
    stop = end if end is not None else now + BUSY_AHEAD
    busy = review_hours(roster, now - timedelta(days=7), stop)
    for p in desired:
        for o in occurrences_between(roster, p, now - timedelta(days=7), stop):
            busy.setdefault(p.manager.email, []).append((o.start, o.end))
    return busy


def suggest_slots(
    roster: Roster,
    rep: Rep,
    manager: Manager,
    instance: Instance,
    now: datetime,
    duration: int,
    busy: Sequence[tuple[datetime, datetime]],
    want: int = 3,
    not_before: datetime | None = None,
    calendar_hours: Mapping[str, CalendarHours] | None = None,
) -> list[datetime]:
    """Two or three free times later in the meeting's week (organisation week), from
    ``not_before`` (default now) on, inside both people's working hours (the manager's from
    ``calendar_hours`` when the roster gives none), clear of the manager's other 1:1s; one
    per day first."""
    org_zone = zone(roster.organization.timezone)
    week_start, week_end = week_bounds(instance.original_start, org_zone)
    rep_zone = zone(person_zone(rep, roster, manager.timezone))
    hours_zone, hours = manager_hours(manager, roster, calendar_hours)
    manager_zone = zone(hours_zone)
    rep_hours = rep.working_hours or roster.policy.working_hours
    length = timedelta(minutes=duration)
    others = [(s, e) for s, e in busy if s != instance.start]

    def inside(start: datetime, tz: ZoneInfo, days: tuple[int, ...], a: time, b: time) -> bool:
        local = start.astimezone(tz)
        end = local + length
        return (
            local.weekday() in days
            and end.date() == local.date()
            and a <= local.time()
            and end.time() <= b
        )

    candidates: list[datetime] = []
    earliest = max(week_start, now, not_before or now)
    cursor = earliest.astimezone(rep_zone)
    cursor = cursor.replace(minute=0 if cursor.minute == 0 else 30, second=0, microsecond=0)
    if cursor < earliest:
        cursor += timedelta(minutes=30)
    while cursor + length <= week_end and len(candidates) < 40:
        if (
            inside(cursor, rep_zone, rep_hours.days, rep_hours.start, rep_hours.end)
            and inside(cursor, manager_zone, hours.days, hours.start, hours.end)
            and not any(cursor < e and s < cursor + length for s, e in others)
        ):  # fmt: skip
            candidates.append(cursor)
        cursor = (cursor + timedelta(minutes=30)).astimezone(rep_zone)
    picked: list[datetime] = []
    days_used: set[date] = set()
    for c in candidates:
        if c.date() not in days_used:
            picked.append(c)
            days_used.add(c.date())
        if len(picked) == want:
            break
    for c in candidates:
        if len(picked) >= want:
            break
        if c not in picked:
            picked.append(c)
    return sorted(picked)[:want]
