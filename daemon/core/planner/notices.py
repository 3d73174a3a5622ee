"""What happened to occurrences: commitments read back after meetings, cancellations
recorded and warned about, pre-reads and recaps due. Read from the calendar as it will be once
the pass's writes are done."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.core.agenda import extract_block, read_commitment
from daemon.core.fiscal import WEEK11, week_bounds, week_of_quarter_at
from daemon.core.model import Manager, Rep, Roster, Stage, StageRule
from daemon.core.observed import CalendarHours, ObservedSeries
from daemon.core.occurrences import Instance, Status, instances, occurrence_key
from daemon.core.plan import SeriesPlan, Template
from daemon.core.planner.actions import (
    LOOKAHEAD,
    LOOKBACK,
    RECAP_DEADLINE,
    Action,
    Kind,
    LedgerSeries,
    LedgerView,
    RecordCancellation,
    RecordCommitment,
    RecordReschedule,
    SendEmail,
)
from daemon.core.planner.agendas import last_commitment, number_of
from daemon.core.planner.identity import in_zone, person, person_zone, stage_view
from daemon.core.planner.slots import BUSY_AHEAD, manager_busy, suggest_slots
from daemon.core.prep import Grant, PrepPolicy, Role, missing_due
from daemon.core.schedule import zone

# a manager's busy times from start to end: (manager, start, end) -> [(start, end)]
_BusyIn = Callable[[str, datetime, datetime], Sequence[tuple[datetime, datetime]]]


def occurrence_actions(
    roster: Roster,
    now: datetime,
    desired: Sequence[SeriesPlan],
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    records: Sequence[LedgerSeries],
    ledger: LedgerView,
    blocked: frozenset[str],
    prep: PrepPolicy | None = None,
    calendar_hours: Mapping[str, CalendarHours] | None = None,
) -> Iterable[Action]:
    org_zone = zone(roster.organization.timezone)
    policy = roster.policy
    reps = {r.email: r for r in roster.reps}
    managers = {m.email: m for m in roster.managers}
    by_uid = {rec.uid: rec for rec in records}
    moved = {occurrence_key(o.uid, o.original_start) for o in ledger.outcomes if not o.cancelled}
    busy = manager_busy(roster, desired, now)

    def busy_in(
        manager: str, start: datetime, end: datetime
    ) -> Sequence[tuple[datetime, datetime]]:
        if end <= now + BUSY_AHEAD:
            return busy.get(manager, ())
        mine = [p for p in desired if p.manager.email == manager]
        return manager_busy(roster, mine, start, end).get(manager, ())

    for rep_email, found in pair_instances(roster, now, observed, records, blocked).items():
        rep = reps[rep_email]
        for instance in found:
            series = by_uid[instance.uid]
            manager = managers[series.manager]  # whose series it is, also after a manager change
            stage = Stage(series.stage)
            o = _Occurrence(roster, now, instance, rep, manager, stage, policy.rule(stage), ledger)
            yield from _commitment(instance, rep, now, ledger)
            if instance.status is Status.RESCHEDULED and instance.key not in moved:
                yield RecordReschedule(
                    instance.uid, instance.key, instance.original_start, instance.start,
                    rep.email, manager.email,
                )  # fmt: skip
            if instance.status is Status.CANCELLED:
                if _replaced(instance, found, org_zone):
                    continue
                yield from _cancellation(o, busy_in, calendar_hours)
                continue
            yield from _prereads(o, prep)
            yield from _preread_missing(o, prep, busy_in, calendar_hours)
            yield from _recap(o)


@dataclass(frozen=True)
class _Occurrence:
    """One occurrence of a rep's series and what every notice about it reads."""

    roster: Roster
    now: datetime
    instance: Instance
    rep: Rep
    manager: Manager  # the series' own, also after a manager change
    stage: Stage
    rule: StageRule
    ledger: LedgerView


def pair_instances(
    roster: Roster,
    now: datetime,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    records: Sequence[LedgerSeries],
    blocked: frozenset[str],
) -> dict[str, list[Instance]]:
    """Each rostered rep's occurrences around ``now`` on the calendars, from every series of
    theirs cadence made (also the old manager's, after a manager change)."""
    org_zone = zone(roster.organization.timezone)
    reps = {r.email: r for r in roster.reps}
    managers = {m.email: m for m in roster.managers}
    by_uid = {rec.uid: rec for rec in records}
    found_by_rep: dict[str, list[Instance]] = {}
    for manager_email, series_map in observed.items():
        if manager_email in blocked:
            continue
        for uid, seen in series_map.items():
            rec = by_uid.get(uid)
            if rec is None or rec.rep not in reps or manager_email not in managers:
                continue  # not ours, or the rep left: nothing more to say about it
            rep, manager = reps[rec.rep], managers[manager_email]
            people = {rep.email: rep.name, manager.email: manager.name}
            end = max(now + LOOKAHEAD, _last_exception(seen))
            found = list(instances(seen, now - LOOKBACK, end, org_zone, people))
            found_by_rep.setdefault(rep.email, []).extend(found)
    return found_by_rep


def new_commitments(
    roster: Roster,
    now: datetime,
    observed: Mapping[str, Mapping[str, ObservedSeries]],
    ledger: LedgerView,
    blocked: frozenset[str],
) -> list[RecordCommitment]:
    """Commitments people wrote into meetings that have ended and the ledger lacks."""
    reps = {r.email: r for r in roster.reps}
    found = pair_instances(roster, now, observed, ledger.series, blocked)
    return [
        action
        for rep_email, rep_instances in found.items()
        for instance in rep_instances
        for action in _commitment(instance, reps[rep_email], now, ledger)
    ]


def with_commitments(ledger: LedgerView, new: Sequence[RecordCommitment]) -> LedgerView:
    if not new:
        return ledger
    merged = {rep: list(items) for rep, items in ledger.commitments.items()}
    for c in new:
        merged.setdefault(c.rep, []).append((c.original_start, c.text))
    return replace(ledger, commitments={rep: tuple(items) for rep, items in merged.items()})


def _last_exception(seen: ObservedSeries) -> datetime:
    """Just past the latest occurrence a person changed or removed: a cancellation months
    ahead is read (and warned about) when it is made, not once it comes inside LOOKAHEAD."""
    changed = [o.recurrence_id for o in seen.overrides] + list(seen.exdates)
    return max(changed) + timedelta(minutes=1) if changed else seen.start


def _commitment(
    instance: Instance, rep: Rep, now: datetime, ledger: LedgerView
) -> Iterable[RecordCommitment]:
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


def _prereads(o: _Occurrence, prep: PrepPolicy | None) -> Iterable[Action]:
    roster, now, instance, rep, manager = o.roster, o.now, o.instance, o.rep, o.manager
    lead = roster.policy.preread_lead
    if not instance.start - lead <= now < instance.start:
        return
    org = roster.organization
    week = week_of_quarter_at(instance.original_start, zone(org.timezone), org.fiscal_year_start)
    manager_tz = person_zone(manager, roster)
    rep_tz = person_zone(rep, roster, manager.timezone)
    template = _template_hint(instance)
    for reader, tz, role in ((rep, rep_tz, Role.REP), (manager, manager_tz, Role.MANAGER)):
        ledger_kind, template_kind = f"preread:{role}", f"preread_{role}"
        if (instance.key, ledger_kind) in o.ledger.emails_sent:
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
                "start": in_zone(instance.start, tz),
                "duration_minutes": int((instance.end - instance.start).total_seconds() // 60),
                "stage": stage_view(o.stage, o.rule, 1),
                "template": template,
                "week11": week == WEEK11,
                "last_commitment": last_commitment(o.ledger, rep.email, instance.original_start),
                "prep_url": None,  # the executor puts the reader's form link here
                "number": _line(o),
            },
            rep=rep.email,
            manager=manager.email,
            grant=None
            if prep is None
            else Grant(
                role, reader.email, rep.email, manager.email, tz, instance.start, instance.end
            ),  # fmt: skip
        )


def _preread_missing(
    o: _Occurrence,
    prep: PrepPolicy | None,
    busy_in: _BusyIn,
    calendar_hours: Mapping[str, CalendarHours] | None,
) -> Iterable[Action]:
    """Seed 001: a rep who filed nothing gets the recovery script, and the 1:1 moves later in
    the week rather than being winged; the manager hears it ``check`` before the start."""
    roster, now, instance, rep, manager = o.roster, o.now, o.instance, o.rep, o.manager
    ledger = o.ledger
    due = missing_due(
        now, instance.start, prep,
        asked_at=ledger.prereads_asked.get(instance.key),
        rep_lines=ledger.prereads.get(instance.key, {}).get(Role.REP),
        warned=(instance.key, Kind.PREREAD_MISSING) in ledger.emails_sent,
    )  # fmt: skip
    if not due:
        return
    org_zone = zone(roster.organization.timezone)
    manager_tz = person_zone(manager, roster)
    duration = int((instance.end - instance.start).total_seconds() // 60)
    week = week_bounds(instance.original_start, org_zone)
    slots = suggest_slots(
        roster, rep, manager, instance, now, duration, busy_in(manager.email, *week),
        not_before=instance.end, calendar_hours=calendar_hours,
    )  # fmt: skip
    yield SendEmail(
        kind=Kind.PREREAD_MISSING,
        ledger_kind=Kind.PREREAD_MISSING,
        occurrence=instance.key,
        template=Kind.PREREAD_MISSING,
        to=(manager.email,),
        cc=(),
        context={
            "manager": person(manager),
            "rep": person(rep),
            "start": in_zone(instance.start, manager_tz),
            "duration_minutes": duration,
            "suggestions": [in_zone(s, manager_tz) for s in slots],
        },
        rep=rep.email,
        manager=manager.email,
    )


def _template_hint(instance: Instance) -> str:
    block = extract_block(instance.description) or ""
    return Template.CAREER if "career conversation" in block.lower() else Template.COACHING


def _line(o: _Occurrence) -> str | None:
    """The number line the occurrence's agenda shows, for the emails about it."""
    number = number_of(o.roster, o.ledger, o.rep, o.rule, o.instance.original_start)
    return None if number is None else number.line()


def _recap(o: _Occurrence) -> Iterable[Action]:
    instance, rep, manager = o.instance, o.rep, o.manager
    due = instance.end + o.roster.policy.recap_delay
    if not due <= o.now < instance.end + RECAP_DEADLINE:
        return
    if (instance.key, Kind.RECAP) in o.ledger.emails_sent:
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
            "start": in_zone(instance.start, manager_tz),
            "stage": stage_view(o.stage, o.rule, 1),
            "template": _template_hint(instance),
            "commitment": read_commitment(instance.description),
            "window_ends": in_zone(instance.end + timedelta(hours=72), rep_tz),
            "number": _line(o),
        },
        rep=rep.email,
        manager=manager.email,
    )


def _cancellation(
    o: _Occurrence, busy_in: _BusyIn, calendar_hours: Mapping[str, CalendarHours] | None
) -> Iterable[Action]:
    roster, now, instance, rep, manager = o.roster, o.now, o.instance, o.rep, o.manager
    ledger, rule = o.ledger, o.rule
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
    manager_tz = person_zone(manager, roster)
    duration = int((instance.end - instance.start).total_seconds() // 60) or rule.duration_minutes
    slots = suggest_slots(
        roster,
        rep,
        manager,
        instance,
        now,
        duration,
        busy_in(manager.email, *week_bounds(instance.original_start, zone(org.timezone))),
        calendar_hours=calendar_hours,
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
            "original_start": in_zone(instance.original_start, manager_tz),
            "reason": instance.reason,
            "week_of_quarter": week,
            "suggestions": [in_zone(s, manager_tz) for s in slots],
            "duration_minutes": duration,
            **({"escalate_to": manager.escalate_to} if week11 else {}),
        },
        rep=rep.email,
        manager=manager.email,
    )
