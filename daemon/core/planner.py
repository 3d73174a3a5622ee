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
from daemon.core.model import (
    DAY_NAMES,
    Manager,
    Policy,
    Rep,
    Roster,
    Stage,
    StageRule,
)
from daemon.core.observed import ObservedSeries, SeriesSpec
from daemon.core.occurrences import Instance, Status, instances, occurrence_key
from daemon.core.plan import SeriesPlan, Template, occurrences_between, plan
from daemon.core.schedule import first_day, parse_weekly, zone

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
    manager: str
    rep: str
    uid: str
    until: date
    reason: str


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


def fingerprint(p: SeriesPlan) -> str:
    """What makes a series "the same series": who, stage, rule, time, zone and length."""
    text = "|".join(
        (p.manager.email, p.rep.email, p.stage.value, p.pattern.rrule(),
         p.pattern.time.strftime("%H:%M"), p.timezone, str(p.pattern.duration_minutes))
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def series_uid(p: SeriesPlan, start: date) -> str:
    """Deterministic from (manager, rep, stage, rule, start): a retried create finds itself.

    Lower-case hex only, so the same id is valid as a Google event id (base32hex).
    """
    text = f"{fingerprint(p)}|{start.isoformat()}"
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


@dataclass(frozen=True)
class _Pair:
    desired: SeriesPlan
    fingerprint: str


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
    sticky = _sticky(roster, ledger)
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
            _series_actions(roster, now, p, records, observed, ledger, render_agenda, blocked)
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
            if rec.uid in observed.get(rec.manager, {}) or rec.state == "active":
                actions.append(EndSeries(rec.manager, rec.rep, rec.uid, until, "rep removed"))

    # Occurrences are read as the calendar will be once this pass's ends are written, so a
    # series ended now sends no pre-read for a meeting its successor takes over.
    ending = {a.uid: a.until for a in actions if isinstance(a, EndSeries)}
    after = {
        manager: {uid: _ended(seen, ending.get(uid)) for uid, seen in series.items()}
        for manager, series in observed.items()
    }
    actions.extend(_occurrence_actions(roster, now, desired, after, ledger, blocked))
    return Plan(tuple(actions), tuple(alarms), desired)


def _ended(seen: ObservedSeries, until: date | None) -> ObservedSeries:
    if until is None or (seen.until is not None and seen.until <= until):
        return seen
    return replace(seen, until=until)


def _zone_of(rec: LedgerSeries, observed: Mapping[str, Mapping[str, ObservedSeries]]) -> str:
    seen = observed.get(rec.manager, {}).get(rec.uid)
    if seen is not None:
        return seen.timezone
    name = getattr(rec.start.tzinfo, "key", None)
    return name if isinstance(name, str) else "UTC"


def _sticky(roster: Roster, ledger: LedgerView) -> dict[str, tuple[int, time]]:
    """Slots already in use by live series: a new rep on the roster never moves anyone."""
    out: dict[str, tuple[int, time]] = {}
    for rec in ledger.series:
        if rec.state == "ended":
            continue
        out[rec.rep] = (_first_day(rec), rec.start.time().replace(tzinfo=None))
    return out


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


def _series_actions(
    roster: Roster,
    now: datetime,
    p: SeriesPlan,
    records: Sequence[LedgerSeries],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    render_agenda: RenderAgenda,
    blocked: frozenset[str],
) -> Iterable[Action]:
    fp = fingerprint(p)
    tz = zone(p.timezone)
    today = now.astimezone(tz).date()
    current = next((r for r in records if r.fingerprint == fp), None)

    if current is not None:
        first = p.pattern.first_on_or_after(current.start.astimezone(tz).date())
    else:
        # A new series starts with its first meeting still ahead: one placed earlier today
        # would be an invite for a meeting that never happened, and would even get a recap.
        first = next(
            s for s in p.pattern.occurrences(max(p.span.start, today)) if s >= now
        )  # fmt: skip
        if p.span.end is not None and first.date() >= p.span.end:
            return  # no meeting left in this stage: the next stage's series starts at the change
    # A live series for another stage, slot or manager ends the day before this one starts; a
    # stage ends the day before the change (the plan's ``until``) unless that is already past
    # (the daemon was down then): the meetings it kept meanwhile stay on the calendar.
    for rec in records:
        if rec is current or rec.manager in blocked:
            continue
        if rec.uid in observed.get(rec.manager, {}) or rec.state == "active":
            old_tz = zone(_zone_of(rec, observed))
            until = first.astimezone(old_tz).date() - timedelta(days=1)
            if rec.stage != p.stage.value:
                yesterday = now.astimezone(old_tz).date() - timedelta(days=1)
                until = min(until, max(p.span.start - timedelta(days=1), yesterday))
            # Before the series' first day: it never took place, and the provider removes it.
            until = max(until, rec.start.astimezone(old_tz).date() - timedelta(days=1))
            reason = "stage change" if rec.stage != p.stage.value else "roster edit"
            yield EndSeries(rec.manager, rec.rep, rec.uid, until, reason)

    uid = current.uid if current is not None else series_uid(p, first.date())
    seen = observed.get(p.manager.email, {}).get(uid)
    horizon = now + timedelta(days=roster.policy.agenda_horizon_days)
    views = _agenda_views(roster, p, now, horizon, ledger)
    master = wrap(render_agenda(_master_view(p, first)))
    blocks = {o: wrap(render_agenda(v)) for o, v in views.items()}

    if seen is None:
        restore = current is not None and current.state == "active"
        yield CreateSeries(
            manager=p.manager.email,
            rep=p.rep.email,
            stage=p.stage.value,
            fingerprint=fp,
            spec=SeriesSpec(
                uid=uid,
                manager_email=p.manager.email,
                manager_name=p.manager.name,
                rep_email=p.rep.email,
                rep_name=p.rep.name,
                summary=f"1:1 {p.rep.name} / {p.manager.name}",
                start=first,
                duration=p.pattern.duration,
                timezone=p.timezone,
                rrule=p.pattern.rrule(),
                until=None,
                description=master,
                occurrence_descriptions={
                    o: b for o, b in blocks.items() if o >= first and _on_rule(p, o)
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
                    "stage": stage_view(p.stage, p.rule, p.pattern.interval_weeks),
                    "schedule": describe_schedule(p),
                },
                rep=p.rep.email,
                manager=p.manager.email,
            )
        return

    # The series is there: bring the agenda blocks up to date, never touching people's text.
    master_block = master if splice(seen.description, master) != seen.description else None
    wanted: dict[datetime, str] = {}
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
            wanted[original] = block
    if master_block is not None or wanted:
        yield WriteAgendas(p.manager.email, p.rep.email, uid, master_block, wanted)


def _on_rule(p: SeriesPlan, start: datetime) -> bool:
    return start.weekday() in p.pattern.days and start.timetz() == p.pattern.time.replace(
        tzinfo=start.tzinfo
    )


def describe_schedule(p: SeriesPlan) -> str:
    names = [f"{DAY_NAMES[d].capitalize()}" for d in p.pattern.days]
    every = "every week" if p.pattern.interval_weeks == 1 else "every other week"
    if p.pattern.interval_weeks > 2:
        every = f"every {p.pattern.interval_weeks} weeks"
    return (
        f"{' and '.join(names)} at {p.pattern.time.strftime('%H:%M')} {p.timezone}, "
        f"{every}, {p.pattern.duration_minutes} minutes"
    )


def _master_view(p: SeriesPlan, first: datetime) -> AgendaView:
    return AgendaView(
        rep=p.rep,
        manager=p.manager,
        stage=p.stage,
        rule=p.rule,
        start=first,
        duration_minutes=p.pattern.duration_minutes,
        blocks=blocks_for(p.pattern.duration_minutes),
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
    roster: Roster, p: SeriesPlan, now: datetime, horizon: datetime, ledger: LedgerView
) -> dict[datetime, AgendaView]:
    views = {}
    for o in occurrences_between(roster, p, now, horizon):
        if o.stage != p.stage:
            continue
        views[o.start] = AgendaView(
            rep=p.rep,
            manager=p.manager,
            stage=p.stage,
            rule=p.rule,
            start=o.start,
            duration_minutes=p.pattern.duration_minutes,
            blocks=blocks_for(p.pattern.duration_minutes),
            template=o.template,
            week_of_quarter=o.week_of_quarter,
            week11=o.week11,
            last_commitment=last_commitment(ledger, p.rep.email, o.start),
        )
    return views


# --- what happened to occurrences: commitments, cancellations, emails ---------------------------


def _occurrence_actions(
    roster: Roster,
    now: datetime,
    desired: Sequence[SeriesPlan],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    blocked: frozenset[str],
) -> Iterable[Action]:
    org_zone = zone(roster.organization.timezone)
    policy = roster.policy
    reps = {r.email: r for r in roster.reps}
    managers = {m.email: m for m in roster.managers}
    by_uid = {rec.uid: rec for rec in ledger.series}
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
        rec_manager = by_uid[found[0].uid].manager if found else rep.manager
        manager = managers.get(rec_manager, managers[rep.manager])
        rec_stage = {i.uid: by_uid[i.uid].stage for i in found}
        for instance in found:
            stage = Stage(rec_stage[instance.uid])
            rule = policy.rule(stage)
            yield from _commitment(instance, rep, now)
            if instance.status is Status.CANCELLED:
                if _replaced(instance, found, org_zone):
                    continue
                yield from _cancellation(
                    roster, now, instance, rep, manager, stage, rule, ledger, busy
                )
                continue
            yield from _prereads(roster, now, instance, rep, manager, stage, rule, ledger)
            yield from _recap(now, instance, rep, manager, stage, rule, ledger, found, policy)


def _commitment(instance: Instance, rep: Rep, now: datetime) -> Iterable[Action]:
    if instance.status is Status.CANCELLED or instance.end > now or not instance.has_override:
        return
    text = read_commitment(instance.description)
    if text:
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
