"""The pipeline review: deals get a meeting of their own, so the 1:1 stays about skill.

Seeds 001-004 all say it: the 1:1 dies by turning into a pipeline review, and the cure is a
separate deal review, "ideally Monday morning" (seed 001), 20 minutes a rep (seeds 002, 003),
with the VP joining monthly (seed 001 FAQ). ``pipeline_review.mode`` says whether each manager
holds one review with the whole team (``team``) or one per rep (``rep``).

Decisions made here, purely:

* which review series each manager should have (``desired_reviews``), with a per-rep review's
  time kept once in use, as a 1:1's slot is, so a rep joining never moves the others;
* creating, restoring and ending them, with a mode switch (team <-> rep) or a rep's manager
  change handed over at a week boundary, as a 1:1 roster edit is: never two reviews or none in
  a week because of an edit;
* who is invited: a team review's attendees follow the roster (a rep who joins, leaves or
  changes manager changes them, never a second series), and the VP is invited to the first
  review of each calendar month, as an occurrence of its own;
* the deal-review agenda, listing each rep's open opportunities when a CRM source offers them;
* what happened to reviews (cancelled, declined, moved): recorded as their own kind, never a
  1:1 cancellation, so no warning email and nothing in the rates.

Review series live in the same ledger as 1:1 series, under the stage ``pipeline_review`` and
the subject ``team:<manager>`` or the rep's email; the 1:1 planner never sees them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from daemon.core.agenda import splice, wrap
from daemon.core.deals import deal_lines
from daemon.core.fiscal import week_bounds
from daemon.core.model import RRULE_DAYS, Manager, Rep, ReviewMode, Roster
from daemon.core.observed import Attendee, ObservedSeries, SeriesSpec
from daemon.core.occurrences import Instance, Status, instances
from daemon.core.planner.actions import (
    LOOKAHEAD,
    LOOKBACK,
    Action,
    CreateSeries,
    LedgerSeries,
    LedgerView,
    RecordReviewOutcome,
    SetAttendees,
    WriteAgendas,
)
from daemon.core.planner.identity import series_uid
from daemon.core.planner.series import end_series
from daemon.core.schedule import Pattern, zone

REVIEW = "pipeline_review"  # the stage of a review series in the ledger
TEAM = "team:"  # the subject of a team review in the ledger: "team:<manager>"
UPCOMING = 8
# The VP's invitation is on the calendar this far ahead: next month's first review is always
# there, whatever day of the month it is.
VP_AHEAD = timedelta(days=35)


def is_review(rec: LedgerSeries) -> bool:
    return rec.stage == REVIEW


class ReviewOccurrence(NamedTuple):
    start: datetime
    vp: bool  # the first review of its calendar month: the VP is invited


@dataclass(frozen=True)
class ReviewPlan:
    """One review series a manager should hold."""

    manager: Manager
    mode: ReviewMode
    subject: str  # the rep's email (per-rep review) or "team:<manager>"
    reps: tuple[Rep, ...]  # who is invited besides the manager (and the VP, monthly)
    pattern: Pattern
    vp: str | None
    upcoming: tuple[ReviewOccurrence, ...]

    @property
    def timezone(self) -> str:
        return self.pattern.zone_name

    @property
    def fingerprint(self) -> str:
        """Who holds it, for whom, and when; not who attends (that changes in place)."""
        p = self.pattern
        text = "|".join(
            (REVIEW, self.manager.email, self.subject, p.rrule(), p.time.strftime("%H:%M"),
             p.zone_name, str(p.duration_minutes))
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def attendees(self) -> tuple[Attendee, ...]:
        return tuple(Attendee(r.email, name=r.name) for r in self.reps)


@dataclass(frozen=True)
class ReviewView:
    """Everything the deal-review agenda template needs about one review."""

    manager: Manager
    mode: ReviewMode
    reps: tuple[Rep, ...]
    start: datetime | None  # None: the series' own description
    duration_minutes: int
    vp: str | None  # the VP's email when they join this one
    # rep email -> the deals shown (see ``daemon.core.deals``); None: no source offers deals
    deals: Mapping[str, list[dict[str, str]]] | None


RenderReview = Callable[[ReviewView], str]


def first_of_month(start: datetime) -> bool:
    """A weekly review on a fixed day: the first of its month falls on the 1st to the 7th."""
    return start.day <= 7


def sticky_times(ledger_series: Iterable[LedgerSeries]) -> dict[str, tuple[str, time]]:
    """Per-rep reviews already in use: subject -> (manager, time), so they stay put."""
    return {
        rec.rep: (rec.manager, rec.start.time().replace(tzinfo=None))
        for rec in sorted(ledger_series, key=lambda r: r.start)
        if is_review(rec) and rec.state != "ended" and not rec.rep.startswith(TEAM)
    }


def desired_reviews(
    roster: Roster,
    at: datetime,
    sticky: Mapping[str, tuple[str, time]] | None = None,
    count: int = UPCOMING,
) -> tuple[ReviewPlan, ...]:
    """The review series every manager should hold at ``at``; none when the mode is off.

    A team review needs at least one rep. Per-rep reviews of one manager follow each other
    from ``time`` on, each ``minutes`` long, in roster order; one in use keeps its time.
    """
    review = roster.pipeline_review
    if not review.on:
        return ()
    sticky = sticky or {}
    minutes = review.minutes
    plans: list[ReviewPlan] = []
    for manager in roster.managers:
        reps = tuple(r for r in roster.reps if r.manager == manager.email)
        if not reps:
            continue
        tz = manager.timezone or roster.organization.timezone
        today = at.astimezone(zone(tz)).date()

        def pattern(at_time: time, tz: str = tz, today: date = today) -> Pattern:
            return Pattern((review.day,), at_time, 1, minutes, tz, today)

        if review.mode is ReviewMode.TEAM:
            pat = pattern(review.time)
            plans.append(
                ReviewPlan(manager, review.mode, TEAM + manager.email, reps, pat, review.vp,
                           _upcoming(pat, at, count))
            )  # fmt: skip
            continue
        kept = {
            r.email: sticky[r.email][1]
            for r in reps
            if r.email in sticky and sticky[r.email][0] == manager.email
        }
        taken = [_minute(t) for t in kept.values()]
        for rep in reps:
            at_time = kept.get(rep.email)
            if at_time is None:
                at_time = _free_time(review.time, minutes, taken)
                taken.append(_minute(at_time))
            pat = pattern(at_time)
            plans.append(
                ReviewPlan(manager, review.mode, rep.email, (rep,), pat, review.vp,
                           _upcoming(pat, at, count))
            )  # fmt: skip
    return tuple(plans)


def _minute(t: time) -> int:
    return t.hour * 60 + t.minute


def _free_time(first: time, minutes: int, taken: Sequence[int]) -> time:
    """The first start from ``first`` on, in steps of ``minutes``, clear of ``taken``."""
    start = _minute(first)
    while any(start < t + minutes and t < start + minutes for t in taken):
        start += minutes
    start = min(start, 24 * 60 - minutes)
    return time(start // 60, start % 60)


def _upcoming(pattern: Pattern, at: datetime, count: int) -> tuple[ReviewOccurrence, ...]:
    today = at.astimezone(zone(pattern.zone_name)).date()
    out: list[ReviewOccurrence] = []
    for start in pattern.occurrences(today):
        if start < at:
            continue
        if len(out) >= count:
            break
        out.append(ReviewOccurrence(start, first_of_month(start)))
    return tuple(out)


def review_json(r: ReviewPlan) -> dict[str, Any]:
    """One item of ``plan --json``'s ``pipeline_reviews`` (SPEC "Pipeline review")."""
    return {
        "manager": r.manager.email,
        "mode": r.mode.value,
        "attendees": [rep.email for rep in r.reps],
        "rrule": f"FREQ=WEEKLY;BYDAY={RRULE_DAYS[r.pattern.days[0]]}",
        "time": r.pattern.time.strftime("%H:%M"),
        "duration_minutes": r.pattern.duration_minutes,
        "timezone": r.timezone,
        "vp": r.vp,
        "upcoming": [
            {"start": o.start.isoformat(), "vp": o.vp and r.vp is not None} for o in r.upcoming
        ],  # fmt: skip
    }


# --- the series on the calendars ---------------------------------------------------------------


def review_actions(
    roster: Roster,
    now: datetime,
    desired: Sequence[ReviewPlan],
    records: Sequence[LedgerSeries],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    render: RenderReview | None,
    blocked: frozenset[str],
) -> list[Action]:
    """Creates, ends, attendee changes and agendas that bring the reviews to ``desired``."""
    live = [r for r in records if is_review(r) and r.state != "ended"]
    claimed: dict[str, LedgerSeries] = {}
    for d in desired:
        for found in live:
            if found.fingerprint == d.fingerprint and found.manager == d.manager.email:
                claimed[d.fingerprint] = found
                break
    others = [r for r in live if r not in claimed.values()]

    firsts: dict[str, datetime] = {}
    ends: dict[str, tuple[date, str]] = {}
    for d in desired:
        if d.fingerprint in claimed or d.manager.email in blocked:
            continue
        replaced = [r for r in others if _replaces(d, r)]
        first, last_day = _first_review(d, now, replaced, observed)
        firsts[d.fingerprint] = first
        for gone in replaced:
            held = ends.get(gone.uid)
            if held is None or held[0] < last_day:
                ends[gone.uid] = (last_day, "pipeline review handed over")

    actions: list[Action] = []
    for old in others:
        if old.manager in blocked:
            continue
        tz = zone(_zone_of(old, observed))
        today = now.astimezone(tz).date()
        # No longer wanted: it stops after the last review that has begun (history stays).
        held_today = _met(observed.get(old.manager, {}).get(old.uid), _midnight(now, tz), now)
        last = today if held_today else today - timedelta(days=1)
        until, reason = ends.get(old.uid, (last, "pipeline review no longer wanted"))
        until = max(until, old.start.astimezone(tz).date() - timedelta(days=1))
        actions.extend(end_series(old, observed, until, reason))

    for d in desired:
        if d.manager.email in blocked:
            continue
        rec = claimed.get(d.fingerprint)
        mine = observed.get(d.manager.email, {})
        if rec is not None and rec.uid in mine:
            actions.extend(_upkeep(roster, now, d, rec.uid, mine[rec.uid], ledger, render))
            continue
        if rec is not None:
            # Made before a crash (pending), or deleted by a person while the config still asks
            # for it (active): made again as it was, under the same uid.
            first = d.pattern.first_on_or_after(rec.start.astimezone(zone(d.timezone)).date())
            restore = rec.state == "active"
            actions.extend(_create(roster, now, d, first, rec.uid, ledger, render, restore=restore))
        else:
            first = firsts[d.fingerprint]
            uid = series_uid(d.fingerprint, first.date())
            actions.extend(_create(roster, now, d, first, uid, ledger, render, restore=False))
    return actions


def _zone_of(rec: LedgerSeries, observed: Mapping[str, Mapping[str, ObservedSeries]]) -> str:
    seen = observed.get(rec.manager, {}).get(rec.uid)
    if seen is not None:
        return seen.timezone
    return rec.timezone or str(getattr(rec.start.tzinfo, "key", "UTC"))


def _replaces(d: ReviewPlan, rec: LedgerSeries) -> bool:
    """Whether the new review ``d`` takes over from ``rec``: the same rep's review (moved to
    another manager or time), or one of the same manager's in the other mode."""
    if rec.rep == d.subject:
        return True
    if rec.manager != d.manager.email:
        return False
    return d.mode is ReviewMode.TEAM or rec.rep.startswith(TEAM)


def _first_review(
    d: ReviewPlan,
    now: datetime,
    replaced: Sequence[LedgerSeries],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
) -> tuple[datetime, date]:
    """The new series' first review, and the last day the reviews it replaces may meet.

    As for a 1:1 roster edit: the week (Monday to Sunday, the review's zone) stays with the old
    review when it already met in it or the new one has no time left in it; else the new one
    takes it.
    """
    tz = zone(d.timezone)
    today = now.astimezone(tz).date()
    first = next(s for s in d.pattern.occurrences(today) if s >= now)
    week_start, week_end = week_bounds(now, tz)
    last_day = today - timedelta(days=1)
    if replaced:
        met = any(_met(observed.get(r.manager, {}).get(r.uid), week_start, now) for r in replaced)
        if met or first >= week_end:
            last_day = week_end.date() - timedelta(days=1)
            first = next(s for s in d.pattern.occurrences(week_end.date()) if s >= week_end)
    return first, last_day


def _midnight(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tz)


def _met(seen: ObservedSeries | None, start: datetime, end: datetime) -> bool:
    if seen is None:
        return False
    return any(
        i.status is not Status.CANCELLED and i.start < end
        for i in instances(seen, start, end, zone(seen.timezone), {})
    )


def _views(
    roster: Roster, now: datetime, d: ReviewPlan, ledger: LedgerView, first: datetime
) -> tuple[ReviewView, dict[datetime, ReviewView]]:
    """The series' own agenda, and each review's inside the agenda horizon."""
    deals = None
    if ledger.opportunities is not None:
        deals = {r.email: deal_lines(ledger.opportunities.get(r.email, ())) for r in d.reps}
    minutes = d.pattern.duration_minutes
    master = ReviewView(d.manager, d.mode, d.reps, None, minutes, None, None)
    horizon = now + timedelta(days=roster.policy.agenda_horizon_days)
    start_day = max(now, first).astimezone(zone(d.timezone)).date()
    views = {}
    for start in d.pattern.occurrences(start_day):
        if start >= horizon:
            break
        if start < now or start < first:
            continue
        vp = d.vp if first_of_month(start) else None
        views[start] = ReviewView(d.manager, d.mode, d.reps, start, minutes, vp, deals)
    return master, views


def _vp_starts(now: datetime, d: ReviewPlan, first: datetime) -> list[datetime]:
    if d.vp is None:
        return []
    start_day = max(now, first).astimezone(zone(d.timezone)).date()
    out = []
    for start in d.pattern.occurrences(start_day):
        if start >= now + VP_AHEAD:
            break
        if start >= now and start >= first and first_of_month(start):
            out.append(start)
    return out


def _with_vp(d: ReviewPlan) -> tuple[Attendee, ...]:
    team = d.attendees()
    if d.vp is None or d.vp in {a.email for a in team}:
        return team
    return (*team, Attendee(d.vp, name=""))


def _create(
    roster: Roster,
    now: datetime,
    d: ReviewPlan,
    first: datetime,
    uid: str,
    ledger: LedgerView,
    render: RenderReview | None,
    *,
    restore: bool,
) -> Iterable[Action]:
    master, views = _views(roster, now, d, ledger, first)

    def text(view: ReviewView) -> str:
        return wrap(render(view)) if render is not None else ""

    who = "the team" if d.mode is ReviewMode.TEAM else d.reps[0].name
    yield CreateSeries(
        manager=d.manager.email,
        rep=d.subject,
        stage=REVIEW,
        fingerprint=d.fingerprint,
        spec=SeriesSpec(
            uid=uid,
            manager_email=d.manager.email,
            manager_name=d.manager.name,
            rep_email="",
            rep_name="",
            summary=f"Pipeline review: {who} / {d.manager.name}",
            start=first,
            duration=d.pattern.duration,
            timezone=d.timezone,
            rrule=d.pattern.rrule(),
            description=text(master),
            occurrence_descriptions={s: text(v) for s, v in views.items()} if render else {},
            attendees=d.attendees(),
        ),
        restore=restore,
    )
    vp_starts = _vp_starts(now, d, first)
    if vp_starts:
        yield SetAttendees(d.manager.email, d.subject, uid, {s: _with_vp(d) for s in vp_starts})


def _people(attendees: Iterable[Attendee], organiser: str) -> list[str]:
    return sorted({a.email.lower() for a in attendees} - {organiser})


def _upkeep(
    roster: Roster,
    now: datetime,
    d: ReviewPlan,
    uid: str,
    seen: ObservedSeries,
    ledger: LedgerView,
    render: RenderReview | None,
) -> Iterable[Action]:
    """A review on the calendar: its people and its agendas brought up to date, without
    touching what people wrote, their answers, moves or cancellations."""
    organiser = d.manager.email
    team = d.attendees()
    wanted: dict[datetime | None, tuple[Attendee, ...]] = {}
    if _people(seen.attendees, organiser) != _people(team, organiser):
        wanted[None] = team
    overrides = {o.recurrence_id: o for o in seen.overrides}
    vp_starts = set(_vp_starts(now, d, seen.start))
    org_zone = zone(roster.organization.timezone)
    for i in instances(seen, now, now + VP_AHEAD, org_zone, {}):
        if i.status is Status.CANCELLED or i.start < now:
            continue
        people = _with_vp(d) if i.original_start in vp_starts else team
        override = overrides.get(i.original_start)
        if override is None:
            if i.original_start in vp_starts:
                wanted[i.original_start] = people
        elif _people(override.attendees, organiser) != _people(people, organiser):
            wanted[i.original_start] = people
    if wanted:
        yield SetAttendees(d.manager.email, d.subject, uid, wanted)

    if render is None:
        return
    master, views = _views(roster, now, d, ledger, seen.start)
    block = wrap(render(master))
    master_block = block if splice(seen.description, block) != seen.description else None
    live = {i.original_start: i for i in instances(seen, now, now + LOOKAHEAD, org_zone, {})}
    changed: dict[datetime, str] = {}
    for start, view in views.items():
        instance = live.get(start)
        if instance is None or instance.status is Status.CANCELLED or instance.start < now:
            continue
        text = wrap(render(view))
        current = instance.description if instance.has_override else ""
        if not instance.has_override or splice(current, text) != current:
            changed[start] = text
    if master_block is not None or changed:
        yield WriteAgendas(d.manager.email, d.subject, uid, master_block, changed)


# --- what happened to reviews -------------------------------------------------------------------


def review_outcomes(
    roster: Roster,
    now: datetime,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    records: Sequence[LedgerSeries],
    ledger: LedgerView,
    blocked: frozenset[str],
) -> list[RecordReviewOutcome]:
    """Reviews cancelled, declined or moved that the ledger lacks. Nothing is sent about them:
    a review is not a 1:1, and the 1:1 is what cadence protects."""
    names = {r.email: r.name for r in roster.reps} | {m.email: m.name for m in roster.managers}
    org_zone = zone(roster.organization.timezone)
    out: list[RecordReviewOutcome] = []
    for rec in records:
        if not is_review(rec) or rec.manager in blocked:
            continue
        seen = observed.get(rec.manager, {}).get(rec.uid)
        if seen is None:
            continue
        people = {a.email: names.get(a.email, a.name or a.email) for a in seen.attendees}
        people[rec.manager] = names.get(rec.manager, rec.manager)
        for i in instances(seen, now - LOOKBACK, now + LOOKAHEAD, org_zone, people):
            outcome = _outcome(i)
            if outcome is None or i.key in ledger.review_outcomes:
                continue
            out.append(
                RecordReviewOutcome(
                    i.uid, i.key, i.original_start, rec.manager, rec.rep, outcome, i.reason
                )
            )
    return out


def _outcome(i: Instance) -> str | None:
    if i.status is Status.CANCELLED:
        return "cancelled"
    if i.status is Status.RESCHEDULED:
        return "moved"
    return None
