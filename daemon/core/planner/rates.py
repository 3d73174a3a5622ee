"""Cancellation rates (SPEC "Cancellations"; seed 000's headline number): per manager and per rep,
cancelled ÷ scheduled occurrences that have started, over the trailing 13 weeks; and the
``rate_warning`` email a manager gets once per crossing into warning or red flag.

Everything is read from the ledger, never from the calendar: the series cadence wrote (their
rule, start and ``UNTIL``) say what was scheduled, and the cancellations and reschedules it
recorded say what happened. So the history survives restarts, roster edits, stage changes and
calendars that no longer show old series.

The rules, decided where the seed is silent:

- The window is the 13 Monday-to-Sunday weeks (organisation zone) ending with the current one;
  an occurrence counts once its original start has passed (a cancellation recorded ahead counts
  when its day comes).
- An occurrence belongs to the series' manager at the time: a rep who changed manager counts
  in the old manager's rate for the weeks before and in the new one's after. The rep's own rate
  covers both.
- A week-11 skip is a cancellation (it is in the rate) and is also counted apart.
- Bands, with ``t`` the policy thresholds (0.10 / 0.15 / 0.25): ``healthy`` when the rate is
  below ``t.healthy_below``; ``watch`` from there up to and including ``t.warning_above``
  (between healthy and warning the seed names nothing, so no email goes); ``warning`` above
  that up to and including ``t.red_flag_above``; ``red_flag`` above. Exactly 10% is watch,
  exactly 15% is watch, exactly 25% is warning. Rates are compared as exact fractions, so 3 of
  20 is exactly 15%.
- A rate gets a band only once ``t.min_meetings`` (default 8) occurrences have started in the
  window; before that the band is ``none`` (too few to tell) and no email goes. Without it, a
  new rep's first cancellation (1 of 2, 50%) would be a red flag copied to ``escalate_to``. A
  biweekly rep never reaches 8 in 13 weeks on their own: their meetings still count in their
  manager's rate, and a lower ``min_meetings`` judges them alone too.
- Crossing up into warning or red flag sends one email to the manager (the rep's current
  manager for a rep's rate), copied to ``escalate_to`` for red flag. Falling back to a lower
  band re-arms that band: the next rise into it sends again.
- A pass at an instant before the last recorded change of a band (passes replayed, a clock
  stepped back) changes nothing: the earlier window's smaller sample would otherwise re-arm
  every band, and the same quarter replayed would warn a second time.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache
from zoneinfo import ZoneInfo

from daemon.core.fiscal import week_bounds
from daemon.core.model import Roster, Thresholds
from daemon.core.planner.actions import (
    Action,
    Kind,
    LedgerSeries,
    LedgerView,
    Outcome,
    RateAlert,
    RecordRateBand,
    SendEmail,
)
from daemon.core.planner.identity import person
from daemon.core.schedule import Pattern, monday_of, parse_weekly, zone

WINDOW_WEEKS = 13


class Band(StrEnum):
    NONE = "none"
    HEALTHY = "healthy"
    WATCH = "watch"
    WARNING = "warning"
    RED_FLAG = "red_flag"

    @property
    def level(self) -> int:
        """0 below warning, 1 warning, 2 red flag: what a crossing is measured in."""
        return {Band.WARNING: 1, Band.RED_FLAG: 2}.get(self, 0)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


@lru_cache(maxsize=64)
def _fraction(threshold: float) -> tuple[int, int]:
    """0.15 as 3/20 exactly, not the nearest binary float: (numerator, denominator)."""
    exact = Fraction(repr(threshold))
    return exact.numerator, exact.denominator


def _above(cancelled: int, scheduled: int, threshold: float) -> bool:
    num, den = _fraction(threshold)
    return cancelled * den > num * scheduled


def band_of(cancelled: int, scheduled: int, thresholds: Thresholds) -> Band:
    if scheduled < thresholds.min_meetings:
        return Band.NONE
    if _above(cancelled, scheduled, thresholds.red_flag_above):
        return Band.RED_FLAG
    if _above(cancelled, scheduled, thresholds.warning_above):
        return Band.WARNING
    num, den = _fraction(thresholds.healthy_below)
    if cancelled * den < num * scheduled:
        return Band.HEALTHY
    return Band.WATCH


@lru_cache(maxsize=4096)  # a report asks for the same few fractions thousands of times
def percent(cancelled: int, scheduled: int) -> str:
    """``18`` or ``15.4``: one decimal where it matters, so 15.4% never reads as 15%."""
    value = round(Fraction(1000 * cancelled, scheduled)) / 10
    return f"{value:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class Week:
    start: date  # Monday, organisation zone
    scheduled: int
    cancelled: int
    rescheduled: int
    week11_skips: int

    @property
    def held(self) -> int:
        return self.scheduled - self.cancelled


@dataclass(frozen=True)
class Tally:
    first_week: date | None  # the Monday the window starts on; None for an empty tally
    # per week, oldest first: (scheduled, cancelled, rescheduled, week-11 skips)
    counts: tuple[tuple[int, int, int, int], ...]
    band: Band
    scheduled: int = 0
    cancelled: int = 0
    rescheduled: int = 0
    week11_skips: int = 0

    @property
    def weeks(self) -> tuple[Week, ...]:
        if self.first_week is None:
            return ()
        start = self.first_week
        return tuple(Week(start + timedelta(weeks=i), *c) for i, c in enumerate(self.counts))

    @property
    def held(self) -> int:
        return self.scheduled - self.cancelled

    @property
    def rate(self) -> float | None:
        return self.cancelled / self.scheduled if self.scheduled else None


@dataclass(frozen=True)
class Rates:
    window_start: datetime
    now: datetime
    managers: Mapping[str, Tally]  # by the series' manager
    reps: Mapping[str, Tally]
    rep_managers: Mapping[str, tuple[str, ...]]  # each rep's managers in the window, in order


def window_start(now: datetime, org_zone: ZoneInfo) -> datetime:
    monday, _ = week_bounds(now, org_zone)
    start = (monday.date() - timedelta(weeks=WINDOW_WEEKS - 1)).isoformat()
    return datetime.fromisoformat(start).replace(tzinfo=org_zone)


def _zone_name(rec: LedgerSeries) -> str:
    if rec.timezone:
        return rec.timezone
    name = getattr(rec.start.tzinfo, "key", None)
    return name if isinstance(name, str) else "UTC"


def scheduled_starts(rec: LedgerSeries, since: datetime, now: datetime) -> Iterable[datetime]:
    """The original starts of ``rec`` in [since, now]: its rule from its start to its UNTIL."""
    weekly = parse_weekly(rec.rrule)
    if weekly is None:
        return
    days, interval = weekly
    tz_name = _zone_name(rec)
    local = rec.start.astimezone(zone(tz_name))
    pattern = Pattern(
        days=days, time=local.time().replace(tzinfo=None), interval_weeks=interval,
        duration_minutes=0, zone_name=tz_name, anchor=local.date(),
    )  # fmt: skip
    first = max(local.date(), since.astimezone(local.tzinfo).date())
    last = now.astimezone(local.tzinfo).date()
    if rec.until is not None:
        last = min(last, rec.until)
    if last < first:
        return
    for start in pattern.occurrences(first, last + timedelta(days=1)):
        if rec.start <= start and since <= start <= now:
            yield start


class _Counter:
    """One rep's or manager's weeks as they are counted: the weekly schedules of their series
    (shared with every other series of the same rule and bounds, and added up once at the end),
    then the cancellations and reschedules; a list is made only when something lands in it."""

    __slots__ = ("cancelled", "extra", "rescheduled", "schedules", "week11")

    def __init__(self) -> None:
        self.schedules: list[tuple[int, ...]] = []
        self.extra: list[int] | None = None  # cancelled occurrences no series rule accounts for
        self.cancelled: list[int] | None = None
        self.rescheduled: list[int] | None = None
        self.week11: list[int] | None = None


_NO_WEEKS = (0,) * WINDOW_WEEKS


def _weeks_of(found: list[int] | None) -> tuple[int, ...]:
    return _NO_WEEKS if found is None else tuple(found)


@lru_cache(maxsize=256)
def _weekly(rrule: str) -> tuple[tuple[int, ...], int] | None:
    return parse_weekly(rrule)


_EPOCH_MONDAY = date(2001, 1, 1)

# A series' occurrences in the window: its rule's sorted start instants, the slice [lo:hi] of
# them that are its own, and how many of those fall in each week of the window.
_Span = tuple[list[float], int, int, tuple[int, ...]]


class _Window:
    """The window's occurrences of each distinct weekly rule, worked out once: thousands of
    series share a handful of (days, time, zone) rules, and each series is then a slice of its
    rule's sorted start instants, bounded by its own start and ``UNTIL``. Series created the
    same day share their whole span too."""

    def __init__(self, since: datetime, now: datetime, bounds: list[float]) -> None:
        self.since, self.now, self.bounds = since, now, bounds
        self.since_ts, self.now_ts = since.timestamp(), now.timestamp()
        self._rules: dict[tuple[object, ...], tuple[list[float], list[int]]] = {}
        self._counts: dict[tuple[object, ...], tuple[int, ...]] = {}
        self._spans: dict[tuple[object, ...], _Span | None] = {}

    def span(self, rec: LedgerSeries) -> _Span | None:
        tz_name = _zone_name(rec)
        # the instant and the zone, not the start's own offset: the same start written in
        # another offset is the same span
        key = (rec.rrule, tz_name, rec.start, rec.until)
        if key in self._spans:
            return self._spans[key]
        found = self._spans[key] = self._span(rec, tz_name)
        return found

    def _span(self, rec: LedgerSeries, tz_name: str) -> _Span | None:
        weekly = _weekly(rec.rrule)
        if weekly is None:
            return None
        days, interval = weekly
        tz = zone(tz_name)
        local = rec.start.astimezone(tz)
        at = local.time().replace(tzinfo=None)
        parity = ((monday_of(local.date()) - _EPOCH_MONDAY).days // 7) % interval
        key = (days, interval, at, tz_name, parity)
        found = self._rules.get(key)
        if found is None:
            pattern = Pattern(
                days=days, time=at, interval_weeks=interval, duration_minutes=0,
                zone_name=tz_name, anchor=local.date(),
            )  # fmt: skip
            first = self.since.astimezone(tz).date()
            last = self.now.astimezone(tz).date()
            starts = [
                ts
                for start in pattern.occurrences(first, last + timedelta(days=1))
                if self.since_ts <= (ts := start.timestamp()) <= self.now_ts
            ]
            found = (starts, [bisect_right(self.bounds, ts) for ts in starts])
            self._rules[key] = found
        starts, weeks = found
        lo = bisect_left(starts, rec.start.timestamp())
        hi = len(starts)
        if rec.until is not None:
            end = datetime.combine(rec.until + timedelta(days=1), time(), tz).timestamp()
            hi = bisect_left(starts, end)
        counts = self._counts.get((key, lo, hi))
        if counts is None:
            tally = [0] * WINDOW_WEEKS
            for week in weeks[lo:hi]:
                tally[week] += 1
            counts = self._counts[(key, lo, hi)] = tuple(tally)
        return starts, lo, hi, counts


def tally(
    series: Sequence[LedgerSeries],
    outcomes: Sequence[Outcome],
    now: datetime,
    org_zone: ZoneInfo,
    thresholds: Thresholds,
) -> Rates:
    since = window_start(now, org_zone)
    first_monday = since.date()
    # Week boundaries as timestamps: an occurrence's week is a bisection, not a zone lookup.
    bounds = [
        datetime.combine(first_monday + timedelta(weeks=i), time(), org_zone).timestamp()
        for i in range(1, WINDOW_WEEKS)
    ]
    window = _Window(since, now, bounds)
    by_rep: dict[str, _Counter] = {}
    by_manager: dict[str, _Counter] = {}
    rep_managers: dict[str, dict[str, float]] = {}

    def counters(rep: str, manager: str, ts: float) -> tuple[_Counter, _Counter]:
        firsts = rep_managers.get(rep)
        if firsts is None:
            firsts = rep_managers[rep] = {}
        if ts < firsts.get(manager, ts + 1):
            firsts[manager] = ts
        return (
            by_rep.get(rep) or by_rep.setdefault(rep, _Counter()),
            by_manager.get(manager) or by_manager.setdefault(manager, _Counter()),
        )

    # uid -> (its rule's start instants, lo, hi, its rep's and manager's counters): what the
    # series scheduled, and whose it was
    spans: dict[str, tuple[list[float], int, int, tuple[_Counter, _Counter]]] = {}
    for rec in series:
        span = window.span(rec)
        if span is None:
            continue
        starts, lo, hi, weekly = span
        if lo >= hi:
            continue
        pair = counters(rec.rep, rec.manager, starts[lo])
        spans[rec.uid] = (starts, lo, hi, pair)
        pair[0].schedules.append(weekly)
        pair[1].schedules.append(weekly)

    def scheduled_by(uid: str, ts: float) -> tuple[_Counter, _Counter] | None:
        """The counters of the series that scheduled this occurrence, if one did (its first
        occurrence in the window came no later, so the rep's managers stay in order)."""
        found = spans.get(uid)
        if found is None:
            return None
        starts, lo, hi, pair = found
        i = bisect_left(starts, ts, lo, hi)
        return pair if i < hi and starts[i] == ts else None

    cancelled: dict[tuple[str, float], Outcome] = {}
    rescheduled: set[tuple[str, float]] = set()
    since_ts, now_ts = window.since_ts, window.now_ts
    for o in outcomes:
        ts = o.original_start.timestamp()
        if not since_ts <= ts <= now_ts:
            continue
        if o.cancelled:
            cancelled[(o.uid, ts)] = o
        else:
            rescheduled.add((o.uid, ts))
    for (uid, ts), gone in cancelled.items():
        week = bisect_right(bounds, ts)
        owner = scheduled_by(uid, ts)
        for counter in owner or counters(gone.rep, gone.manager, ts):
            if owner is None:  # a cancelled occurrence was scheduled, even if the ledger
                if counter.extra is None:  # lost its series' rule
                    counter.extra = [0] * WINDOW_WEEKS
                counter.extra[week] += 1
            if counter.cancelled is None:
                counter.cancelled = [0] * WINDOW_WEEKS
            counter.cancelled[week] += 1
            if gone.week11:
                if counter.week11 is None:
                    counter.week11 = [0] * WINDOW_WEEKS
                counter.week11[week] += 1
    for uid, ts in rescheduled - cancelled.keys():
        owner = scheduled_by(uid, ts)
        if owner is not None:
            week = bisect_right(bounds, ts)
            for counter in owner:
                if counter.rescheduled is None:
                    counter.rescheduled = [0] * WINDOW_WEEKS
                counter.rescheduled[week] += 1

    made: dict[tuple[tuple[int, ...], ...], Tally] = {}

    def finish(counter: _Counter) -> Tally:
        """Most people's weeks are the same as many others' (every week held, say): each
        distinct tally is made once and shared, as nothing changes a tally once made."""
        schedules = counter.schedules
        if counter.extra is not None:
            schedules = [*schedules, tuple(counter.extra)]
        if len(schedules) == 1:
            scheduled = schedules[0]
        else:  # none (only cancellations the ledger lost the rule of, or nothing at all) or more
            scheduled = tuple(map(sum, zip(_NO_WEEKS, *schedules, strict=True)))
        key = (
            scheduled, _weeks_of(counter.cancelled), _weeks_of(counter.rescheduled),
            _weeks_of(counter.week11),
        )  # fmt: skip
        found = made.get(key)
        if found is None:
            total, gone = sum(key[0]), sum(key[1])
            found = made[key] = Tally(
                first_monday, tuple(zip(*key, strict=True)), band_of(gone, total, thresholds),
                total, gone, sum(key[2]), sum(key[3]),
            )  # fmt: skip
        return found

    return Rates(
        window_start=since,
        now=now,
        managers={m: finish(c) for m, c in sorted(by_manager.items())},
        reps={r: finish(c) for r, c in sorted(by_rep.items())},
        rep_managers={
            r: tuple(sorted(ms, key=ms.__getitem__)) for r, ms in sorted(rep_managers.items())
        },
    )


def rates_of(roster: Roster, ledger: LedgerView, now: datetime) -> Rates:
    return tally(
        ledger.series, ledger.outcomes, now, zone(roster.organization.timezone),
        roster.policy.thresholds,
    )  # fmt: skip


def rate_actions(roster: Roster, rates: Rates, ledger: LedgerView) -> Iterable[Action]:
    """The ``rate_warning`` emails due and the bands to remember, for everyone on the roster."""
    managers = {m.email: m for m in roster.managers}
    subjects: list[tuple[str, Tally, str, str, str]] = []  # subject, tally, manager, rep, scope
    for m in roster.managers:
        if m.email in rates.managers:
            subjects.append(
                (f"manager:{m.email}", rates.managers[m.email], m.email, "", "your team")
            )
    for r in roster.reps:
        if r.email in rates.reps and r.manager in managers:
            subjects.append((f"rep:{r.email}", rates.reps[r.email], r.manager, r.email, r.name))
    for subject, t, manager_email, rep_email, scope in subjects:
        told = ledger.rate_alerts.get(subject, RateAlert(Band.HEALTHY.value, 0))
        if told.changed_at is not None and rates.now < told.changed_at:
            continue
        before = Band(told.band)
        if t.band.level == before.level:
            continue
        if t.band.level < before.level:  # fallen back: re-arm the band(s) above
            yield RecordRateBand(subject, t.band.value, told.crossings, rep_email, manager_email)
            continue
        crossings = told.crossings + 1
        manager = managers[manager_email]
        red = t.band is Band.RED_FLAG
        occurrence = f"rate {subject} {crossings}"
        ledger_kind = Kind.RATE_WARNING
        if (occurrence, ledger_kind) not in ledger.emails_sent:
            yield SendEmail(
                kind=Kind.RATE_WARNING,
                ledger_kind=ledger_kind,
                occurrence=occurrence,
                template=Kind.RATE_WARNING,
                to=(manager.email,),
                cc=(manager.escalate_to,) if red and manager.escalate_to else (),
                context={
                    "manager": person(manager),
                    "level": t.band.label,
                    "rate_percent": percent(t.cancelled, t.scheduled),
                    "cancelled": t.cancelled,
                    "scheduled": t.scheduled,
                    "week11_skips": t.week11_skips,
                    "scope": scope,
                },
                rep=rep_email,
                manager=manager.email,
            )
        yield RecordRateBand(
            subject, t.band.value, crossings, rep_email, manager.email, (occurrence, ledger_kind)
        )
