"""Weekly patterns, the slot each pair meets in, and the occurrences a pattern produces.

"Same time every week" (seed 004): a series keeps one wall-clock slot in its own time zone, so a
10:00 1:1 is at 10:00 on both sides of a DST change. Slots are chosen inside both people's
working hours, each read in their own zone on their own weekday (a Tuesday 10:00 in Kolkata is
a Monday evening in Denver), and never on top of another 1:1 of the same manager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

from daemon.core.model import RRULE_DAYS, WorkingHours

GRID_MINUTES = 30


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def second_day(first: int) -> int:
    """Twice-weekly series meet again two days later (Tue/Thu): never on adjacent days."""
    return (first + 2) % 7


def parse_weekly(rrule: str) -> tuple[tuple[int, ...], int] | None:
    """(days, interval) of a ``FREQ=WEEKLY;INTERVAL=n;BYDAY=..`` rule, else None."""
    parts = dict(p.split("=", 1) for p in rrule.split(";") if "=" in p)
    if parts.get("FREQ") != "WEEKLY":
        return None
    try:
        days = tuple(sorted(RRULE_DAYS.index(d) for d in parts.get("BYDAY", "").split(",")))
        interval = int(parts.get("INTERVAL", "1"))
    except ValueError:
        return None
    return days, interval


def first_day(days: tuple[int, ...]) -> int:
    """The first day of a slot's sorted days: a twice-weekly pair across the weekend (Sat and
    Mon, written ``MO,SA``) starts on the later weekday number."""
    if len(days) == 2 and days[1] - days[0] != 2:
        return days[1]
    return days[0]


@dataclass(frozen=True)
class Pattern:
    """A weekly rule: days, wall-clock time, every ``interval_weeks`` weeks counted from the week
    of ``anchor`` (the stage's first day), ``duration_minutes`` long, in ``zone_name``."""

    days: tuple[int, ...]
    time: time
    interval_weeks: int
    duration_minutes: int
    zone_name: str
    anchor: date

    @cached_property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def rrule(self) -> str:
        byday = ",".join(RRULE_DAYS[d] for d in self.days)
        return f"FREQ=WEEKLY;INTERVAL={self.interval_weeks};BYDAY={byday}"

    def occurrences(self, start: date, end: date | None = None) -> Iterator[datetime]:
        """Starts on dates ``start`` <= d < ``end``, as aware wall-clock times in the zone."""
        tz = zone(self.zone_name)
        anchor_week = monday_of(self.anchor)
        week = monday_of(start)
        skew = ((week - anchor_week).days // 7) % self.interval_weeks
        if skew:
            week += timedelta(weeks=self.interval_weeks - skew)
        while end is None or week < end:
            for day in self.days:
                d = week + timedelta(days=day)
                if d < start:
                    continue
                if end is not None and d >= end:
                    return
                yield datetime.combine(d, self.time, tzinfo=tz)
            week += timedelta(weeks=self.interval_weeks)

    def first_on_or_after(self, day: date) -> datetime:
        return next(self.occurrences(day))


@dataclass(frozen=True)
class PairRequest:
    """What slot choice needs to know about one rep and their manager."""

    key: str  # the rep's email
    manager: str
    series_zone: str
    rep_zone: str
    rep_hours: WorkingHours
    manager_zone: str
    manager_hours: WorkingHours
    sessions_per_week: int
    duration_minutes: int
    preferred: tuple[int, time] | None  # (weekday, time) in the series zone
    # The pipeline review's weekday in the manager's zone: a slot cadence chooses (or keeps)
    # stays off it; a slot the rep's ``slot`` names is honoured anyway (``named``).
    avoid_day: int | None = None
    named: bool = False


@dataclass(frozen=True)
class Choice:
    days: tuple[int, ...]
    time: time
    fits: bool  # False: no slot inside both people's hours; the preferred or a fallback is used


@lru_cache(maxsize=65536)
def _utc_interval(
    zone_name: str, week: date, day: int, minute: int, length: int
) -> tuple[int, int]:
    """Minutes since ``week``'s Monday 00:00 UTC of an occurrence (for overlap checks)."""
    d = week + timedelta(days=day)
    local = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=zone(zone_name))
    base = datetime(week.year, week.month, week.day, tzinfo=zone("UTC"))
    start = int((local - base).total_seconds() // 60)
    return start, start + length


@lru_cache(maxsize=65536)
def _inside(
    series_zone: str, week: date, day: int, minute: int, length: int, zone_name: str,
    days: tuple[int, ...], first: time, last: time,
) -> bool:  # fmt: skip
    d = week + timedelta(days=day)
    local = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=zone(series_zone))
    start = local.astimezone(zone(zone_name))
    end = start + timedelta(minutes=length)
    if start.weekday() not in days or end.date() != start.date():
        return False
    return first <= start.time() and end.time() <= last


def fits(request: PairRequest, days: Sequence[int], at: time, week: date) -> bool:
    minute = at.hour * 60 + at.minute
    length = request.duration_minutes
    rh, mh = request.rep_hours, request.manager_hours
    return all(
        _inside(request.series_zone, week, d, minute, length, request.rep_zone,
                rh.days, rh.start, rh.end)
        and _inside(request.series_zone, week, d, minute, length, request.manager_zone,
                    mh.days, mh.start, mh.end)
        for d in days
    )  # fmt: skip


def on_avoided_day(request: PairRequest, days: Sequence[int], at: time, week: date) -> bool:
    """Whether a slot meets on the manager's pipeline-review day, in the manager's zone."""
    if request.avoid_day is None:
        return False
    return any(
        _weekday_in(request.series_zone, week, d, at, request.manager_zone) == request.avoid_day
        for d in days
    )


@lru_cache(maxsize=65536)
def _weekday_in(series_zone: str, week: date, day: int, at: time, other_zone: str) -> int:
    d = week + timedelta(days=day)
    local = datetime(d.year, d.month, d.day, at.hour, at.minute, tzinfo=zone(series_zone))
    return local.astimezone(zone(other_zone)).weekday()


def slot_days(first: int, sessions: int) -> tuple[int, ...]:
    """The sorted days of a slot starting on ``first``, meeting ``sessions`` times a week."""
    return (first,) if sessions == 1 else tuple(sorted((first, second_day(first))))


def choose_slots(requests: Sequence[PairRequest], week: date) -> Mapping[str, Choice]:
    """One slot per pair, evaluated on the week starting Monday ``week``.

    Preferred slots are honoured first (even outside working hours, flagged ``fits=False``),
    then the others, in roster order, take the earliest 30-minute step inside both people's
    working hours that does not overlap another 1:1 of the same manager.
    """
    taken: dict[str, list[tuple[int, int]]] = {}
    chosen: dict[str, Choice] = {}

    def book(request: PairRequest, days: tuple[int, ...], at: time) -> None:
        minute = at.hour * 60 + at.minute
        for d in days:
            interval = _utc_interval(request.series_zone, week, d, minute, request.duration_minutes)
            taken.setdefault(request.manager, []).append(interval)

    def free(request: PairRequest, intervals: tuple[tuple[int, int], ...]) -> bool:
        busy = taken.get(request.manager, ())
        return not any(s < be and bs < e for s, e in intervals for bs, be in busy)

    for request in requests:
        if request.preferred is not None:
            first, at = request.preferred
            days = slot_days(first, request.sessions_per_week)
            if not request.named and on_avoided_day(request, days, at, week):
                continue  # kept from before the review was on its day: it moves off it
            chosen[request.key] = Choice(days, at, fits(request, days, at, week))
            book(request, days, at)

    for request in requests:
        if request.key in chosen:
            continue
        choice = _first_free(request, week, free)
        if choice is None:
            first = 1 if request.avoid_day == 0 else 0
            days = slot_days(first, request.sessions_per_week)
            choice = Choice(days, request.rep_hours.start, fits=False)
        chosen[request.key] = choice
        book(request, choice.days, choice.time)
    return chosen


_Free = Callable[[PairRequest, tuple[tuple[int, int], ...]], bool]
_Candidate = tuple[tuple[int, ...], time, tuple[tuple[int, int], ...]]


def _first_free(request: PairRequest, week: date, free: _Free) -> Choice | None:
    for days, at, intervals in _candidates(
        request.series_zone, request.rep_zone, request.rep_hours, request.manager_zone,
        request.manager_hours, request.sessions_per_week, request.duration_minutes, week,
    ):  # fmt: skip
        if free(request, intervals) and not on_avoided_day(request, days, at, week):
            return Choice(days, at, fits=True)
    return None


@lru_cache(maxsize=4096)
def _candidates(
    series_zone: str, rep_zone: str, rep_hours: WorkingHours, manager_zone: str,
    manager_hours: WorkingHours, sessions: int, duration: int, week: date,
) -> tuple[_Candidate, ...]:  # fmt: skip
    """The slots inside both people's working hours, in the order they are offered, with their
    intervals: the same for every pair of the same zones, hours and length (most of a big
    roster), so worked out once for them all."""
    request = PairRequest(
        "", "", series_zone, rep_zone, rep_hours, manager_zone, manager_hours, sessions,
        duration, None,
    )  # fmt: skip
    first_minute = rep_hours.start.hour * 60 + rep_hours.start.minute
    first_minute += -first_minute % GRID_MINUTES
    last_minute = rep_hours.end.hour * 60 + rep_hours.end.minute - duration
    out: list[_Candidate] = []
    # Twice-weekly pairs need their second day too; prefer early-week first days (Mon/Wed, Tue/Thu).
    for first in range(7):
        days = slot_days(first, sessions)
        if sessions == 2 and second_day(first) < first:
            continue
        for minute in range(first_minute, last_minute + 1, GRID_MINUTES):
            at = time(minute // 60, minute % 60)
            if fits(request, days, at, week):
                intervals = tuple(_utc_interval(series_zone, week, d, minute, duration)
                                  for d in days)  # fmt: skip
                out.append((days, at, intervals))
    return tuple(out)
