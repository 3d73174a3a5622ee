"""Series lifecycle: which series each rep should have, and the creates, ends and repairs
that bring the calendar there. Slots already in use stay; roster edits hand over at a week
boundary; a stage ends the day before the next begins; a safety valve stops a wiped calendar from
being refilled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta

from daemon.core.agenda import splice, wrap
from daemon.core.fiscal import week_bounds
from daemon.core.model import Roster
from daemon.core.observed import ObservedSeries, SeriesSpec
from daemon.core.occurrences import Status, instances, occurrence_key
from daemon.core.plan import SeriesPlan
from daemon.core.planner.actions import (
    Action,
    Alarm,
    CreateSeries,
    EndSeries,
    Kind,
    LedgerSeries,
    LedgerView,
    RenderAgenda,
    SendEmail,
    WriteAgendas,
)
from daemon.core.planner.agendas import agenda_views, master_view, on_rule
from daemon.core.planner.identity import (
    Wanted,
    describe_schedule,
    fingerprint,
    person,
    series_uid,
    stage_view,
)
from daemon.core.schedule import first_day, parse_weekly, zone


def zone_of(rec: LedgerSeries, observed: Mapping[str, Mapping[str, ObservedSeries]]) -> str:
    seen = observed.get(rec.manager, {}).get(rec.uid)
    if seen is not None:
        return seen.timezone
    name = getattr(rec.start.tzinfo, "key", None)
    return name if isinstance(name, str) else "UTC"


def sticky_slots(ledger: LedgerView, now: datetime) -> dict[str, tuple[int, time]]:
    """Slots already in use by live series: a new rep on the roster never moves anyone. A rep
    with two (this stage's and the next one's, made ahead) keeps the slot of the one in use."""
    chosen: dict[str, LedgerSeries] = {}
    for rec in ledger.series:
        if rec.state == "ended":
            continue
        held = chosen.get(rec.rep)
        if held is None or _in_use_rather(rec, held, now):
            chosen[rec.rep] = rec
    return {
        rep: (_first_day(rec), rec.start.time().replace(tzinfo=None)) for rep, rec in chosen.items()
    }


def _in_use_rather(a: LedgerSeries, b: LedgerSeries, now: datetime) -> bool:
    """Whether ``a`` rather than ``b`` is the series in use at ``now``: the latest to have
    started, else the first to start."""
    if (a.start <= now) != (b.start <= now):
        return a.start <= now
    return a.start > b.start if a.start <= now else a.start < b.start


def _first_day(rec: LedgerSeries) -> int:
    """The slot's (first) day from the rule. Not the weekday of the series' start: a Tue/Thu
    series created on a Wednesday starts on a Thursday, and Thursday first would mean Thu/Sat."""
    weekly = parse_weekly(rec.rrule)
    return first_day(weekly[0]) if weekly and weekly[0] else rec.start.weekday()


def safety_valve(
    roster: Roster,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    complete: frozenset[str],
    restore_missing: bool,
) -> dict[str, Alarm]:
    """A calendar that suddenly shows none of the series cadence put there is more likely a
    wrong URL, a wiped server or a deleted calendar than a dozen people deleting their 1:1s."""
    if restore_missing:
        return {}
    alarms: dict[str, Alarm] = {}
    known: dict[str, list[str]] = {}
    for rec in ledger.series:
        if rec.state == "active":
            known.setdefault(rec.manager, []).append(rec.uid)
    for manager, uids in known.items():
        if manager not in complete or len(uids) < 2:
            continue
        present = observed.get(manager, {})
        if not any(uid in present for uid in uids):
            alarms[manager] = Alarm(
                manager,
                f"safety valve: none of the {len(uids)} series cadence created are on "
                f"{manager}'s calendar any more; refusing to recreate them. If they were "
                "deleted on purpose, run `cadence once --restore-missing`.",
            )
    return alarms


def _wanted(roster: Roster, p: SeriesPlan, today: date) -> list[Wanted]:
    """This stage's series, ending the day before the next stage; and the next stage's as soon
    as it is within the agenda horizon, so its first meetings get agendas and pre-reads on time
    and the change day itself needs no write."""
    spans = [(p.span, p.pattern)]
    nxt = p.next_span
    horizon = roster.policy.agenda_horizon_days
    if nxt is not None and p.next_pattern is not None and (nxt.start - today).days <= horizon:
        spans.append((nxt, p.next_pattern))
    return [
        Wanted(p, span, roster.policy.rule(span.stage), pattern,
                fingerprint(p.manager.email, p.rep.email, span.stage, pattern))
        for span, pattern in spans
    ]  # fmt: skip


def rep_actions(
    roster: Roster,
    now: datetime,
    p: SeriesPlan,
    records: Sequence[LedgerSeries],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    render_agenda: RenderAgenda,
    blocked: frozenset[str],
    ending: Sequence[LedgerSeries] = (),
) -> Iterable[Action]:
    tz = zone(p.timezone)
    today = now.astimezone(tz).date()
    mine = observed.get(p.manager.email, {})
    wanted = _wanted(roster, p, today)
    claimed: dict[str, LedgerSeries] = {}
    for w in wanted:
        for rec in records:
            if rec.fingerprint == w.fingerprint and _still_right(mine.get(rec.uid), w):
                claimed[w.fingerprint] = rec
                break
    others = [r for r in records if r not in claimed.values()]
    # A person ended one early ("this and all following"): it keeps its meetings up to the day
    # they chose, a new one takes over the day after, and the manager is told.
    cut: dict[str, date] = {}
    for w in wanted:
        for rec in others:
            last = _cut_on(rec, mine.get(rec.uid))
            if rec.fingerprint == w.fingerprint and last is not None:
                cut[w.fingerprint] = last

    firsts: dict[str, datetime] = {}
    handovers: dict[str, date] = {}  # stage -> the last day a replaced series may meet
    for w in wanted:
        held = claimed.get(w.fingerprint)
        if held is not None:
            firsts[w.fingerprint] = w.pattern.first_on_or_after(held.start.astimezone(tz).date())
            continue
        if w.fingerprint in cut:
            after = max(cut[w.fingerprint] + timedelta(days=1), today, w.span.start)
            resumed = next(s for s in w.pattern.occurrences(after) if s >= now)
            handovers[w.stage.value] = cut[w.fingerprint]
            if w.span.end is None or resumed.date() < w.span.end:
                firsts[w.fingerprint] = resumed
            continue
        replaced = [r for r in [*others, *ending] if r.stage == w.stage.value]
        if any(r.manager in blocked for r in replaced):
            # The calendar it replaces cannot be read or ended this pass: whether the pair met
            # this week is unknown, and the old series would go on meeting beside the new one.
            continue
        first, handovers[w.stage.value] = _first_meeting(w, now, replaced, observed)
        if first is not None:
            firsts[w.fingerprint] = first

    # Series no longer wanted end, and are kept as history. A roster edit (slot, manager, zone)
    # hands over at a week boundary, so the pair never meets twice or not at all in a week; a
    # stage ends the day before the change (unless the daemon slept through it: the meetings it
    # kept meanwhile stay); anything else ends yesterday. One that never met is removed.
    for rec in others:
        if rec.manager in blocked:
            continue
        old_tz = zone(zone_of(rec, observed))
        yesterday = now.astimezone(old_tz).date() - timedelta(days=1)
        if rec.stage in handovers:
            until, reason = handovers[rec.stage], "roster edit"
        elif rec.start.astimezone(tz).date() < p.span.start:
            until, reason = max(p.span.start - timedelta(days=1), yesterday), "stage change"
        else:
            until, reason = yesterday, "roster edit"
        until = max(until, rec.start.astimezone(old_tz).date() - timedelta(days=1))
        yield from end_series(rec, observed, until, reason)

    for w in wanted:
        if w.fingerprint in firsts:
            yield from _series_actions(
                roster, now, w, firsts[w.fingerprint], claimed.get(w.fingerprint), mine, ledger,
                render_agenda, ended_early=w.fingerprint in cut,
            )  # fmt: skip


def _cut_on(rec: LedgerSeries, seen: ObservedSeries | None) -> date | None:
    """The last day of a series a person ended sooner than cadence did, else None."""
    if seen is None or seen.until is None:
        return None
    return seen.until if rec.until is None or seen.until < rec.until else None


def _still_right(seen: ObservedSeries | None, w: Wanted) -> bool:
    """A series on the calendar still serves ``w`` unless it stops before ``w`` does (someone
    ended it early, or the stage now lasts longer): then a new one takes over."""
    if seen is None or seen.until is None:
        return True
    return w.until is not None and seen.until >= w.until


def _first_meeting(
    w: Wanted,
    now: datetime,
    replaced: Sequence[LedgerSeries],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
) -> tuple[datetime | None, date]:
    """The first meeting of a new series for ``w`` (None when its stage has none left), and the
    last day the series it replaces may still meet.

    A new series starts with its next meeting still ahead (one earlier today would be an invite
    for a meeting that never happened). When it replaces another of the same stage, the week
    (Monday to Sunday, in the series' zone) goes to the old one if the pair already met in it or
    the new slot has no time left in it, else to the new one.
    """
    tz = zone(w.pattern.zone_name)
    today = now.astimezone(tz).date()
    first = next(s for s in w.pattern.occurrences(max(w.span.start, today)) if s >= now)
    week_start, week_end = week_bounds(now, tz)
    replaced_until = today - timedelta(days=1)  # the new series takes this week
    if replaced:
        met = any(_met(observed.get(r.manager, {}).get(r.uid), week_start, now) for r in replaced)
        if met or first >= week_end:
            replaced_until = week_end.date() - timedelta(days=1)  # this Sunday
            start = max(week_end.date(), w.span.start)  # never before its stage begins
            first = next(s for s in w.pattern.occurrences(start) if s >= week_end)
    if w.span.end is not None and first.date() >= w.span.end:
        # No meeting left in this stage (the next stage's series, made ahead, takes over);
        # a series this one would replace keeps its meetings to the end of the stage.
        return None, w.span.end - timedelta(days=1)
    return first, replaced_until


def _met(seen: ObservedSeries | None, start: datetime, end: datetime) -> bool:
    """Whether a series held a meeting in [start, end)."""
    if seen is None:
        return False
    return any(
        i.status is not Status.CANCELLED and i.start < end
        for i in instances(seen, start, end, zone(seen.timezone), {})
    )


def end_series(
    rec: LedgerSeries,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    until: date,
    reason: str,
    *,
    retire: bool = True,
) -> Iterable[EndSeries]:
    """End ``rec`` at ``until``: a calendar write only where it still runs past that day. One
    that already stops sooner keeps its own last day, which is what the ledger then remembers
    (the rates count the meetings the calendar really had)."""
    seen = observed.get(rec.manager, {}).get(rec.uid)
    write = seen is not None and (seen.until is None or seen.until > until)
    if seen is not None and seen.until is not None and not write:
        until = seen.until
    if write or retire:
        yield EndSeries(rec.manager, rec.rep, rec.uid, until, reason, write=write, retire=retire)


def _series_actions(
    roster: Roster,
    now: datetime,
    w: Wanted,
    first: datetime,
    rec: LedgerSeries | None,
    mine: Mapping[str, ObservedSeries],
    ledger: LedgerView,
    render_agenda: RenderAgenda,
    *,
    ended_early: bool = False,
) -> Iterable[Action]:
    p = w.p
    uid = rec.uid if rec is not None else series_uid(w.fingerprint, first.date())
    seen = mine.get(uid)
    horizon = now + timedelta(days=roster.policy.agenda_horizon_days)
    today = now.astimezone(zone(w.pattern.zone_name)).date()
    views = agenda_views(roster, w, uid, now, horizon, ledger)
    master = wrap(render_agenda(master_view(w, first, ledger)))
    blocks = {o: wrap(render_agenda(v)) for o, v in views.items()}

    if seen is None:
        restore = rec is not None and rec.state == "active"
        yield CreateSeries(
            manager=p.manager.email,
            rep=p.rep.email,
            stage=w.stage.value,
            fingerprint=w.fingerprint,
            spec=SeriesSpec(
                uid=uid,
                manager_email=p.manager.email,
                manager_name=p.manager.name,
                rep_email=p.rep.email,
                rep_name=p.rep.name,
                summary=f"1:1 {p.rep.name} / {p.manager.name}",
                start=first,
                duration=w.pattern.duration,
                timezone=w.pattern.zone_name,
                rrule=w.pattern.rrule(),
                until=w.until,
                description=master,
                occurrence_descriptions={
                    o: b for o, b in blocks.items() if o >= first and on_rule(w.pattern, o)
                },
            ),
            restore=restore,
        )
        if restore or ended_early:
            # Keyed by the next meeting the series holds: a series deleted again later is
            # restored again, and the manager told again.
            nxt = next(s for s in w.pattern.occurrences(max(first.date(), today)) if s >= now)
            yield SendEmail(
                kind=Kind.SERIES_RESTORED,
                ledger_kind=Kind.SERIES_RESTORED,
                occurrence=occurrence_key(uid, max(first, nxt)),
                template="series_restored",
                to=(p.manager.email,),
                cc=(),
                context={
                    "manager": person(p.manager),
                    "rep": person(p.rep),
                    "stage": stage_view(w.stage, w.rule, w.pattern.interval_weeks),
                    "schedule": describe_schedule(w.pattern),
                    "ended_early": ended_early,
                },
                rep=p.rep.email,
                manager=p.manager.email,
            )
        return

    if rec is not None and w.until is not None and (seen.until is None or seen.until > w.until):
        # Made before its stage's end was known (or the start date changed): end it there now.
        yield from end_series(
            rec, {p.manager.email: mine}, w.until, "stage change ahead", retire=False
        )

    # The series is there: bring the agenda blocks up to date, never touching people's text.
    master_block = master if splice(seen.description, master) != seen.description else None
    changed: dict[datetime, str] = {}
    live = {
        i.original_start: i
        for i in instances(seen, now, horizon, zone(roster.organization.timezone), {})
    }
    for original, block in blocks.items():
        instance = live.get(original)
        if instance is None or instance.status is Status.CANCELLED or instance.start < now:
            continue
        current_text = instance.description if instance.has_override else ""
        if not instance.has_override or splice(current_text, block) != current_text:
            changed[original] = block
    if master_block is not None or changed:
        yield WriteAgendas(p.manager.email, p.rep.email, uid, master_block, changed)
