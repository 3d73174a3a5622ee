"""The reconcile planner: desired (roster + policy + clock), observed (the calendars) and last
applied (the ledger) in, a list of actions out. No I/O: the executor performs the actions.

Three states, not two, is how the daemon tells "the admin changed the roster" (the desired
fingerprint differs from the ledger's) from "a manager moved one meeting" (the calendar differs
from both, and the person's edit wins).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from daemon.core.agenda import Blocks, blocks_for, extract_block, read_commitment, splice, wrap
from daemon.core.fiscal import WEEK11, week_bounds, week_of_quarter_at
from daemon.core.model import DAY_NAMES, Manager, Policy, Rep, Roster, Stage, StageRule
from daemon.core.observed import Attendee, ObservedOverride, ObservedSeries, SeriesSpec
from daemon.core.occurrences import Instance, Status, instances, occurrence_key
from daemon.core.plan import SeriesPlan, Template, occurrences_between, plan
from daemon.core.policy import StageSpan
from daemon.core.schedule import Pattern, first_day, parse_weekly, zone

RECAP_DEADLINE = timedelta(hours=24)  # a recap later than this is dropped (SPEC)
LOOKBACK = timedelta(days=8)  # how far back cancellations, commitments and recaps are read
LOOKAHEAD = timedelta(days=28)  # how far ahead cancellations are read
# Emails about the occurrences a pass reads were all sent inside this window (a cancellation
# warning up to LOOKAHEAD ahead, a pre-read up to a week ahead): older ledger rows are history.
EMAILS_WINDOW = LOOKBACK + LOOKAHEAD + timedelta(days=7)


class Kind:
    PREREAD = "preread"
    RECAP = "recap"
    CANCELLATION = "cancellation"
    WEEK11_SKIP = "week11_skip"
    RATE_WARNING = "rate_warning"
    SERIES_RESTORED = "series_restored"


# --- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerSeries:
    uid: str
    rep: str
    manager: str
    stage: str
    fingerprint: str
    start: datetime
    rrule: str  # as written, without UNTIL: its BYDAY names the slot's days
    until: date | None
    state: (
        str  # "pending" (written to the ledger, maybe not yet on the calendar) | "active" | "ended"
    )


@dataclass(frozen=True)
class LedgerView:
    series: tuple[LedgerSeries, ...] = ()
    # rep -> (original start, commitment) read back after meetings, any order
    commitments: Mapping[str, tuple[tuple[datetime, str], ...]] = field(default_factory=dict)
    # (occurrence key, ledger kind) sent since ``now - EMAILS_WINDOW``; the executor checks the
    # whole ledger again before sending, so this view only needs to be complete for the window.
    emails_sent: frozenset[tuple[str, str]] = frozenset()
    cancellations: frozenset[str] = frozenset()  # keys recorded, of occurrences from LOOKBACK on


@dataclass(frozen=True)
class AgendaView:
    """Everything an agenda template needs about one meeting."""

    rep: Rep
    manager: Manager
    stage: Stage
    rule: StageRule
    start: datetime
    duration_minutes: int
    blocks: Blocks
    template: str
    week_of_quarter: int
    week11: bool
    last_commitment: str | None


RenderAgenda = Callable[[AgendaView], str]


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateSeries:
    manager: str
    rep: str
    stage: str
    fingerprint: str
    spec: SeriesSpec
    restore: bool = False  # a person deleted it; the manager is told


@dataclass(frozen=True)
class EndSeries:
    """Let a series meet up to ``until``. ``write``: the calendar still runs past that day;
    ``retire``: the series is no longer wanted (else its stage's end is only set ahead)."""

    manager: str
    rep: str
    uid: str
    until: date
    reason: str
    write: bool = True
    retire: bool = True


@dataclass(frozen=True)
class WriteAgendas:
    manager: str
    rep: str
    uid: str
    master_block: str | None
    blocks: Mapping[datetime, str]


@dataclass(frozen=True)
class SendEmail:
    kind: str  # X-Cadence-Kind
    ledger_kind: str  # the email ledger's kind: preread goes twice, once per reader
    occurrence: str  # X-Cadence-Occurrence
    template: str  # the renderer's template kind
    to: tuple[str, ...]
    cc: tuple[str, ...]
    context: Mapping[str, Any]
    rep: str
    manager: str


@dataclass(frozen=True)
class RecordCancellation:
    uid: str
    occurrence: str
    original_start: datetime
    rep: str
    manager: str
    reason: str
    week_of_quarter: int
    week11: bool


@dataclass(frozen=True)
class RecordCommitment:
    uid: str
    rep: str
    original_start: datetime
    text: str


@dataclass(frozen=True)
class Alarm:
    """The safety valve tripped: nothing is written for this manager until a person looks."""

    manager: str
    message: str


Action = CreateSeries | EndSeries | WriteAgendas | SendEmail | RecordCancellation | RecordCommitment


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    alarms: tuple[Alarm, ...]
    desired: tuple[SeriesPlan, ...]


# --- identity -----------------------------------------------------------------------------------


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


# --- the planner --------------------------------------------------------------------------------


def make_plan(
    roster: Roster,
    now: datetime,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    render_agenda: RenderAgenda,
    *,
    complete: frozenset[str] = frozenset(),
    unreachable: frozenset[str] = frozenset(),
    restore_missing: bool = False,
) -> Plan:
    """Everything to do at ``now``.

    ``observed`` maps each manager to the owned series on their calendar. ``complete`` names the
    managers whose listing is known to be whole; ``unreachable`` those whose calendar could not
    be read this pass (nothing is planned for them).
    """
    sticky = _sticky(ledger, now)
    desired = plan(roster, now, sticky=sticky)
    actions: list[Action] = []
    alarms: list[Alarm] = []

    by_rep: dict[str, list[LedgerSeries]] = {}
    for rec in ledger.series:
        by_rep.setdefault(rec.rep, []).append(rec)

    valve = _safety_valve(roster, observed, ledger, complete, restore_missing)
    alarms.extend(valve.values())
    blocked = unreachable | frozenset(valve)

    desired_by_rep = {p.rep.email: p for p in desired}
    for p in desired:
        if p.manager.email in blocked:
            continue
        records = [r for r in by_rep.get(p.rep.email, []) if r.state != "ended"]
        actions.extend(
            _rep_actions(roster, now, p, records, observed, ledger, render_agenda, blocked)
        )

    # Reps no longer on the roster: end their series (history stays on the calendar).
    for rep_email, records in by_rep.items():
        if rep_email in desired_by_rep:
            continue
        for rec in records:
            if rec.state == "ended" or rec.manager in blocked:
                continue
            tz = zone(_zone_of(rec, observed))
            until = max(rec.start.astimezone(tz).date(), now.astimezone(tz).date()) - timedelta(
                days=1
            )
            actions.extend(_end(rec, observed, until, "rep removed"))

    # Occurrences are read as the calendar will be once this pass's writes are done: a series
    # ended now sends no pre-read for a meeting its successor takes over, and one created now
    # sends what is already due in this pass, so a second pass at the same instant sends nothing.
    after, records = _projected(observed, ledger.series, actions)
    actions.extend(_occurrence_actions(roster, now, desired, after, records, ledger, blocked))
    return Plan(tuple(actions), tuple(alarms), desired)


def _projected(
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    records: Sequence[LedgerSeries],
    actions: Sequence[Action],
) -> tuple[dict[str, dict[str, ObservedSeries]], list[LedgerSeries]]:
    after = {manager: dict(series) for manager, series in observed.items()}
    records = list(records)
    for action in actions:
        if isinstance(action, EndSeries):
            seen = after.get(action.manager, {}).get(action.uid)
            if seen is not None and (seen.until is None or seen.until > action.until):
                after[action.manager][action.uid] = replace(seen, until=action.until)
        elif isinstance(action, CreateSeries):
            spec = action.spec
            after.setdefault(action.manager, {})[spec.uid] = _as_observed(spec)
            records.append(
                LedgerSeries(
                    uid=spec.uid, rep=action.rep, manager=action.manager, stage=action.stage,
                    fingerprint=action.fingerprint, start=spec.start, rrule=spec.rrule,
                    until=spec.until, state="pending",
                )
            )  # fmt: skip
    return after, records


def _as_observed(spec: SeriesSpec) -> ObservedSeries:
    """The series a create puts on the calendar, as a later read would show it."""
    rep = (Attendee(spec.rep_email, "NEEDS-ACTION", spec.rep_name),)
    return ObservedSeries(
        uid=spec.uid,
        owned=True,
        start=spec.start,
        duration=spec.duration,
        timezone=spec.timezone,
        rrule=spec.rrule,
        until=spec.until,
        organizer=spec.manager_email,
        attendees=rep,
        description=spec.description,
        summary=spec.summary,
        overrides=tuple(
            ObservedOverride(o, o, o + spec.duration, attendees=rep, description=text)
            for o, text in sorted(spec.occurrence_descriptions.items())
        ),
    )


def _zone_of(rec: LedgerSeries, observed: Mapping[str, Mapping[str, ObservedSeries]]) -> str:
    seen = observed.get(rec.manager, {}).get(rec.uid)
    if seen is not None:
        return seen.timezone
    name = getattr(rec.start.tzinfo, "key", None)
    return name if isinstance(name, str) else "UTC"


def _sticky(ledger: LedgerView, now: datetime) -> dict[str, tuple[int, time]]:
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


def _safety_valve(
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


@dataclass(frozen=True)
class _Wanted:
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


def _wanted(roster: Roster, p: SeriesPlan, today: date) -> list[_Wanted]:
    """This stage's series, ending the day before the next stage; and the next stage's as soon
    as it is within the agenda horizon, so its first meetings get agendas and pre-reads on time
    and the change day itself needs no write."""
    spans = [(p.span, p.pattern)]
    nxt = p.next_span
    horizon = roster.policy.agenda_horizon_days
    if nxt is not None and p.next_pattern is not None and (nxt.start - today).days <= horizon:
        spans.append((nxt, p.next_pattern))
    return [
        _Wanted(p, span, roster.policy.rule(span.stage), pattern,
                fingerprint(p.manager.email, p.rep.email, span.stage, pattern))
        for span, pattern in spans
    ]  # fmt: skip


def _rep_actions(
    roster: Roster,
    now: datetime,
    p: SeriesPlan,
    records: Sequence[LedgerSeries],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    render_agenda: RenderAgenda,
    blocked: frozenset[str],
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

    firsts: dict[str, datetime] = {}
    handovers: dict[str, date] = {}  # stage -> the last day a replaced series may meet
    for w in wanted:
        held = claimed.get(w.fingerprint)
        if held is not None:
            firsts[w.fingerprint] = w.pattern.first_on_or_after(held.start.astimezone(tz).date())
            continue
        replaced = [r for r in others if r.stage == w.stage.value]
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
        old_tz = zone(_zone_of(rec, observed))
        yesterday = now.astimezone(old_tz).date() - timedelta(days=1)
        if rec.stage in handovers:
            until, reason = handovers[rec.stage], "roster edit"
        elif rec.start.astimezone(tz).date() < p.span.start:
            until, reason = max(p.span.start - timedelta(days=1), yesterday), "stage change"
        else:
            until, reason = yesterday, "roster edit"
        until = max(until, rec.start.astimezone(old_tz).date() - timedelta(days=1))
        yield from _end(rec, observed, until, reason)

    for w in wanted:
        if w.fingerprint in firsts:
            yield from _series_actions(
                roster, now, w, firsts[w.fingerprint], claimed.get(w.fingerprint), mine, ledger,
                render_agenda,
            )  # fmt: skip


def _still_right(seen: ObservedSeries | None, w: _Wanted) -> bool:
    """A series on the calendar still serves ``w`` unless it stops before ``w`` does (someone
    ended it early, or the stage now lasts longer): then a new one takes over."""
    if seen is None or seen.until is None:
        return True
    return w.until is not None and seen.until >= w.until


def _first_meeting(
    w: _Wanted,
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
            first = next(s for s in w.pattern.occurrences(week_end.date()) if s >= week_end)
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


def _end(
    rec: LedgerSeries,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    until: date,
    reason: str,
    *,
    retire: bool = True,
) -> Iterable[EndSeries]:
    """End ``rec`` at ``until``: a calendar write only where it still runs past that day."""
    seen = observed.get(rec.manager, {}).get(rec.uid)
    write = seen is not None and (seen.until is None or seen.until > until)
    if write or retire:
        yield EndSeries(rec.manager, rec.rep, rec.uid, until, reason, write=write, retire=retire)


def _series_actions(
    roster: Roster,
    now: datetime,
    w: _Wanted,
    first: datetime,
    rec: LedgerSeries | None,
    mine: Mapping[str, ObservedSeries],
    ledger: LedgerView,
    render_agenda: RenderAgenda,
) -> Iterable[Action]:
    p = w.p
    uid = rec.uid if rec is not None else series_uid(w.fingerprint, first.date())
    seen = mine.get(uid)
    horizon = now + timedelta(days=roster.policy.agenda_horizon_days)
    views = _agenda_views(roster, w, now, horizon, ledger)
    master = wrap(render_agenda(_master_view(w, first)))
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
                    o: b for o, b in blocks.items() if o >= first and _on_rule(w.pattern, o)
                },
            ),
            restore=restore,
        )
        if restore:
            yield SendEmail(
                kind=Kind.SERIES_RESTORED,
                ledger_kind=Kind.SERIES_RESTORED,
                occurrence=occurrence_key(uid, first),
                template="series_restored",
                to=(p.manager.email,),
                cc=(),
                context={
                    "manager": person(p.manager),
                    "rep": person(p.rep),
                    "stage": stage_view(w.stage, w.rule, w.pattern.interval_weeks),
                    "schedule": describe_schedule(w.pattern),
                },
                rep=p.rep.email,
                manager=p.manager.email,
            )
        return

    if rec is not None and w.until is not None and (seen.until is None or seen.until > w.until):
        # Made before its stage's end was known (or the start date changed): end it there now.
        yield from _end(rec, {p.manager.email: mine}, w.until, "stage change ahead", retire=False)

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


def _on_rule(pattern: Pattern, start: datetime) -> bool:
    return start.weekday() in pattern.days and start.timetz() == pattern.time.replace(
        tzinfo=start.tzinfo
    )


def describe_schedule(pattern: Pattern) -> str:
    names = [f"{DAY_NAMES[d].capitalize()}" for d in pattern.days]
    every = "every week" if pattern.interval_weeks == 1 else "every other week"
    if pattern.interval_weeks > 2:
        every = f"every {pattern.interval_weeks} weeks"
    return (
        f"{' and '.join(names)} at {pattern.time.strftime('%H:%M')} {pattern.zone_name}, "
        f"{every}, {pattern.duration_minutes} minutes"
    )


def _master_view(w: _Wanted, first: datetime) -> AgendaView:
    return AgendaView(
        rep=w.p.rep,
        manager=w.p.manager,
        stage=w.stage,
        rule=w.rule,
        start=first,
        duration_minutes=w.pattern.duration_minutes,
        blocks=blocks_for(w.pattern.duration_minutes),
        template=Template.COACHING,
        week_of_quarter=0,
        week11=False,
        last_commitment=None,
    )


def last_commitment(ledger: LedgerView, rep: str, before: datetime) -> str | None:
    best: tuple[datetime, str] | None = None
    for when, text in ledger.commitments.get(rep, ()):
        if when < before and (best is None or when > best[0]):
            best = (when, text)
    return best[1] if best else None


def _agenda_views(
    roster: Roster, w: _Wanted, now: datetime, horizon: datetime, ledger: LedgerView
) -> dict[datetime, AgendaView]:
    views = {}
    for o in occurrences_between(roster, w.p, now, horizon):
        if o.stage != w.stage:
            continue
        views[o.start] = AgendaView(
            rep=w.p.rep,
            manager=w.p.manager,
            stage=w.stage,
            rule=w.rule,
            start=o.start,
            duration_minutes=w.pattern.duration_minutes,
            blocks=blocks_for(w.pattern.duration_minutes),
            template=o.template,
            week_of_quarter=o.week_of_quarter,
            week11=o.week11,
            last_commitment=last_commitment(ledger, w.p.rep.email, o.start),
        )
    return views


# --- what happened to occurrences: commitments, cancellations, emails ---------------------------


def _occurrence_actions(
    roster: Roster,
    now: datetime,
    desired: Sequence[SeriesPlan],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    records: Sequence[LedgerSeries],
    ledger: LedgerView,
    blocked: frozenset[str],
) -> Iterable[Action]:
    org_zone = zone(roster.organization.timezone)
    policy = roster.policy
    reps = {r.email: r for r in roster.reps}
    managers = {m.email: m for m in roster.managers}
    by_uid = {rec.uid: rec for rec in records}
    busy = _manager_busy(roster, desired, now)

    pair_instances: dict[str, list[Instance]] = {}
    for manager_email, series_map in observed.items():
        if manager_email in blocked:
            continue
        for uid, seen in series_map.items():
            rec = by_uid.get(uid)
            if rec is None or rec.rep not in reps or manager_email not in managers:
                continue  # not ours, or the rep left: nothing more to say about it
            rep, manager = reps[rec.rep], managers[manager_email]
            people = {rep.email: rep.name, manager.email: manager.name}
            found = list(instances(seen, now - LOOKBACK, now + LOOKAHEAD, org_zone, people))
            pair_instances.setdefault(rep.email, []).extend(found)

    for rep_email, found in pair_instances.items():
        rep = reps[rep_email]
        for instance in found:
            series = by_uid[instance.uid]
            manager = managers[series.manager]  # whose series it is, also after a manager change
            stage = Stage(series.stage)
            rule = policy.rule(stage)
            yield from _commitment(instance, rep, now, ledger)
            if instance.status is Status.CANCELLED:
                if _replaced(instance, found, org_zone):
                    continue
                yield from _cancellation(
                    roster, now, instance, rep, manager, stage, rule, ledger, busy
                )
                continue
            yield from _prereads(roster, now, instance, rep, manager, stage, rule, ledger)
            yield from _recap(now, instance, rep, manager, stage, rule, ledger, found, policy)


def _commitment(
    instance: Instance, rep: Rep, now: datetime, ledger: LedgerView
) -> Iterable[Action]:
    if instance.status is Status.CANCELLED or instance.end > now or not instance.has_override:
        return
    text = read_commitment(instance.description)
    if text and (instance.original_start, text) not in ledger.commitments.get(rep.email, ()):
        yield RecordCommitment(instance.uid, rep.email, instance.original_start, text)


def _replaced(instance: Instance, found: Sequence[Instance], org_zone: ZoneInfo) -> bool:
    """A meeting of the same pair moved into this week from another one replaces it."""
    week = week_bounds(instance.original_start, org_zone)
    return any(
        other is not instance
        and other.reason == "moved out of its week"
        and week_bounds(other.start, org_zone) == week
        for other in found
    )


def _local(dt: datetime, tz: str) -> datetime:
    return dt.astimezone(zone(tz))


def _zone_name(p: Rep | Manager, roster: Roster, fallback: str | None = None) -> str:
    return p.timezone or fallback or roster.organization.timezone


def _prereads(
    roster: Roster,
    now: datetime,
    instance: Instance,
    rep: Rep,
    manager: Manager,
    stage: Stage,
    rule: StageRule,
    ledger: LedgerView,
) -> Iterable[Action]:
    lead = roster.policy.preread_lead
    if not instance.start - lead <= now < instance.start:
        return
    org = roster.organization
    week = week_of_quarter_at(instance.original_start, zone(org.timezone), org.fiscal_year_start)
    manager_tz = _zone_name(manager, roster)
    rep_tz = _zone_name(rep, roster, manager.timezone)
    template = _template_hint(instance)
    for reader, tz, ledger_kind, template_kind in (
        (rep, rep_tz, "preread:rep", "preread_rep"),
        (manager, manager_tz, "preread:manager", "preread_manager"),
    ):
        if (instance.key, ledger_kind) in ledger.emails_sent:
            continue
        yield SendEmail(
            kind=Kind.PREREAD,
            ledger_kind=ledger_kind,
            occurrence=instance.key,
            template=template_kind,
            to=(reader.email,),
            cc=(),
            context={
                "rep": person(rep),
                "manager": person(manager),
                "start": _local(instance.start, tz),
                "duration_minutes": int((instance.end - instance.start).total_seconds() // 60),
                "stage": stage_view(stage, rule, 1),
                "template": template,
                "week11": week == WEEK11,
                "last_commitment": last_commitment(ledger, rep.email, instance.original_start),
            },
            rep=rep.email,
            manager=manager.email,
        )


def _template_hint(instance: Instance) -> str:
    block = extract_block(instance.description) or ""
    return Template.CAREER if "career conversation" in block.lower() else Template.COACHING


def _recap(
    now: datetime,
    instance: Instance,
    rep: Rep,
    manager: Manager,
    stage: Stage,
    rule: StageRule,
    ledger: LedgerView,
    found: Sequence[Instance],
    policy: Policy,
) -> Iterable[Action]:
    due = instance.end + policy.recap_delay
    if not due <= now < instance.end + RECAP_DEADLINE:
        return
    if (instance.key, Kind.RECAP) in ledger.emails_sent:
        return
    manager_tz = manager.timezone or str(getattr(instance.start.tzinfo, "key", "UTC"))
    rep_tz = rep.timezone or manager_tz
    yield SendEmail(
        kind=Kind.RECAP,
        ledger_kind=Kind.RECAP,
        occurrence=instance.key,
        template="recap",
        to=(manager.email, rep.email),
        cc=(),
        context={
            "rep": person(rep),
            "manager": person(manager),
            "start": _local(instance.start, manager_tz),
            "stage": stage_view(stage, rule, 1),
            "template": _template_hint(instance),
            "commitment": read_commitment(instance.description),
            "window_ends": _local(instance.end + timedelta(hours=72), rep_tz),
        },
        rep=rep.email,
        manager=manager.email,
    )


def _cancellation(
    roster: Roster,
    now: datetime,
    instance: Instance,
    rep: Rep,
    manager: Manager,
    stage: Stage,
    rule: StageRule,
    ledger: LedgerView,
    busy: Mapping[str, Sequence[tuple[datetime, datetime]]],
) -> Iterable[Action]:
    org = roster.organization
    week = week_of_quarter_at(instance.original_start, zone(org.timezone), org.fiscal_year_start)
    week11 = week == WEEK11
    if instance.key not in ledger.cancellations:
        yield RecordCancellation(
            uid=instance.uid,
            occurrence=instance.key,
            original_start=instance.original_start,
            rep=rep.email,
            manager=manager.email,
            reason=instance.reason,
            week_of_quarter=week,
            week11=week11,
        )
    kind = Kind.WEEK11_SKIP if week11 else Kind.CANCELLATION
    if (instance.key, kind) in ledger.emails_sent:
        return
    _, week_end = week_bounds(instance.original_start, zone(org.timezone))
    if week_end <= now:
        return  # the week is over: recorded for the rates, too late to reschedule by email
    manager_tz = _zone_name(manager, roster)
    duration = int((instance.end - instance.start).total_seconds() // 60) or rule.duration_minutes
    slots = suggest_slots(
        roster, rep, manager, instance, now, duration, busy.get(manager.email, ())
    )
    cc = (manager.escalate_to,) if week11 and manager.escalate_to else ()
    yield SendEmail(
        kind=kind,
        ledger_kind=kind,
        occurrence=instance.key,
        template=kind,
        to=(manager.email,),
        cc=cc,
        context={
            "manager": person(manager),
            "rep": person(rep),
            "original_start": _local(instance.original_start, manager_tz),
            "reason": instance.reason,
            "week_of_quarter": week,
            "suggestions": [_local(s, manager_tz) for s in slots],
            "duration_minutes": duration,
            **({"escalate_to": manager.escalate_to} if week11 else {}),
        },
        rep=rep.email,
        manager=manager.email,
    )


def _manager_busy(
    roster: Roster, desired: Sequence[SeriesPlan], now: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    busy: dict[str, list[tuple[datetime, datetime]]] = {}
    for p in desired:
        for o in occurrences_between(roster, p, now - timedelta(days=7), now + timedelta(days=14)):
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
) -> list[datetime]:
    """Two or three free times later in the cancelled meeting's week (organisation week),
    inside both people's working hours, clear of the manager's other 1:1s; one per day first."""
    org_zone = zone(roster.organization.timezone)
    week_start, week_end = week_bounds(instance.original_start, org_zone)
    rep_zone = zone(_zone_name(rep, roster, manager.timezone))
    manager_zone = zone(_zone_name(manager, roster))
    rep_hours = rep.working_hours or roster.policy.working_hours
    manager_hours = manager.working_hours or roster.policy.working_hours
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
    cursor = max(week_start, now).astimezone(rep_zone)
    cursor = cursor.replace(minute=0 if cursor.minute == 0 else 30, second=0, microsecond=0)
    if cursor < max(week_start, now):
        cursor += timedelta(minutes=30)
    while cursor + length <= week_end and len(candidates) < 40:
        if (
            inside(cursor, rep_zone, rep_hours.days, rep_hours.start, rep_hours.end)
            and inside(cursor, manager_zone, manager_hours.days, manager_hours.start,
                       manager_hours.end)
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
