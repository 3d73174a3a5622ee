"""``cadence plan`` with the daemon's memory, and ``cadence plan --diff``: what the next pass
would do, told before it does it.

A plan computed from the roster alone can disagree with the calendar: the daemon keeps every
slot already in use (so adding or ramping one rep never moves another), and only the ledger
knows which slots those are. So when a ledger exists the plan reads it, read-only. ``--diff``
goes further and runs the whole planner as the next pass would: it reads every manager's
calendar (a full listing, without the sync token, so nothing is consumed), plans against the
ledger, and prints the actions instead of performing them. Nothing is written anywhere.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from typing import Any

from daemon import logs
from daemon.calendar_hours import kept_hours
from daemon.config import Config
from daemon.core.observed import ObservedSeries
from daemon.core.plan import SeriesPlan, plan
from daemon.core.planner import (
    Action,
    AgendaView,
    CreateSeries,
    EndSeries,
    LedgerView,
    RecordCancellation,
    RecordCommitment,
    RecordRateBand,
    RecordReschedule,
    RecordReviewOutcome,
    ReviewPlan,
    ReviewView,
    SendEmail,
    SetAttendees,
    WriteAgendas,
    desired_reviews,
    make_plan,
    sticky_slots,
    sticky_times,
)
from daemon.errors import ConfigError, NotFound, ProviderError, TemplateProblem
from daemon.metrics.base import MetricsUnusable, open_opportunities
from daemon.metrics.cache import open_source, read_now
from daemon.render import Renderer
from daemon.report import read_view
from daemon.store import Ledger


def stateful_plan(config: Config, at: datetime) -> tuple[SeriesPlan, ...]:
    """The desired series at ``at`` as the daemon sees them: slots in use stay. Only the
    series registry is read, which every schema version has."""
    from daemon.reconcile import ledger_series

    ledger = Ledger.open_readonly(config.settings.state_dir)
    if ledger is None:
        return plan(config.roster, at)
    try:
        view = LedgerView(series=ledger_series(ledger))
        hours = kept_hours(config.roster, ledger, at)
    finally:
        ledger.close()
    return plan(config.roster, at, sticky=sticky_slots(view, at), calendar_hours=hours)


def stateful_reviews(config: Config, at: datetime) -> tuple[ReviewPlan, ...]:
    """The pipeline reviews at ``at``; a per-rep review in use keeps its time."""
    from daemon.reconcile import ledger_series

    if not config.roster.pipeline_review.on:
        return ()
    ledger = Ledger.open_readonly(config.settings.state_dir)
    if ledger is None:
        return desired_reviews(config.roster, at)
    try:
        in_use = ledger_series(ledger, reviews=True)
    finally:
        ledger.close()
    return desired_reviews(config.roster, at, sticky_times(in_use))


def diff(config: Config, at: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """The next pass's actions as JSON-able dicts, and the problems met (calendars that could
    not be read are left out of the plan, as a pass would)."""
    from daemon.reconcile import agenda_context, open_calendar, prep_policy, review_context

    renderer = Renderer(config.settings.templates.dir)
    try:
        renderer.check()
    except TemplateProblem as exc:
        raise ConfigError(str(exc).splitlines()) from None
    view = read_view(config, at)
    source = open_source(config)
    if source is not None:
        try:
            view = replace(view, metrics=read_now(source, config))
            if config.roster.pipeline_review.on:
                reps = frozenset(r.email for r in config.roster.reps)
                view = replace(view, opportunities=open_opportunities(source, reps))
        except MetricsUnusable as exc:
            raise ConfigError(exc.problems) from None
    problems: list[str] = []
    observed: dict[str, dict[str, ObservedSeries]] = {}
    unreachable: set[str] = set()
    with ExitStack() as stack:
        logs.configure()  # stderr: stdout carries the diff
        provider = open_calendar(config, stack, clock=lambda: at)  # Graph's window is around `at`
        for manager in _managers(config, view):
            try:
                changes = provider.changes(manager, None)
            except NotFound:
                changes = None  # no calendar yet: the pass would create it, empty
            except ProviderError as exc:
                unreachable.add(manager)
                problems.append(f"{manager}: {exc}")
                continue
            observed[manager] = (
                {s.uid: s for s in changes.changed if s.owned} if changes is not None else {}
            )

        def render(v: AgendaView) -> str:
            return renderer.agenda(agenda_context(v))

        def render_review(v: ReviewView) -> str:
            return renderer.review(review_context(v))

        ledger = Ledger.open_readonly(config.settings.state_dir)
        if ledger is not None:
            stack.callback(ledger.close)
        result = make_plan(
            config.roster, at, observed, view, render, complete=frozenset(observed),
            unreachable=frozenset(unreachable), prep=prep_policy(config),
            render_review=render_review, calendar_hours=kept_hours(config.roster, ledger, at),
        )  # fmt: skip
    problems += [alarm.message for alarm in result.alarms]
    return [_describe(a) for a in result.actions], problems


def _managers(config: Config, view: LedgerView) -> list[str]:
    names = [m.email for m in config.roster.managers]
    for rec in (*view.series, *view.reviews):
        if rec.state != "ended" and rec.manager not in names:
            names.append(rec.manager)
    return names


def _describe(action: Action) -> dict[str, Any]:
    if isinstance(action, CreateSeries):
        spec = action.spec
        return {
            "action": "restore" if action.restore else "create", "rep": action.rep,
            "manager": action.manager, "stage": action.stage, "uid": spec.uid,
            "start": spec.start.isoformat(), "rrule": spec.rrule, "timezone": spec.timezone,
            "until": spec.until.isoformat() if spec.until else None,
        }  # fmt: skip
    if isinstance(action, EndSeries):
        return {
            "action": "end", "rep": action.rep, "manager": action.manager, "uid": action.uid,
            "until": action.until.isoformat(), "reason": action.reason,
            "calendar_write": action.write,
        }  # fmt: skip
    if isinstance(action, WriteAgendas):
        return {
            "action": "agenda", "rep": action.rep, "manager": action.manager, "uid": action.uid,
            "series_description": action.master_block is not None,
            "occurrences": sorted(o.isoformat() for o in action.blocks),
        }  # fmt: skip
    if isinstance(action, SetAttendees):
        people = action.attendees.get(None)
        return {
            "action": "attendees", "rep": action.rep, "manager": action.manager,
            "uid": action.uid,
            "series_attendees": None if people is None else [a.email for a in people],
            "occurrences": {
                o.isoformat(): [a.email for a in action.attendees[o]]
                for o in sorted(k for k in action.attendees if k is not None)
            },
        }  # fmt: skip
    if isinstance(action, RecordReviewOutcome):
        return {
            "action": "record_review_outcome", "rep": action.subject, "manager": action.manager,
            "occurrence": action.occurrence, "status": action.status, "reason": action.reason,
        }  # fmt: skip
    if isinstance(action, SendEmail):
        return {
            "action": "email", "kind": action.kind, "rep": action.rep or None,
            "manager": action.manager, "to": list(action.to), "cc": list(action.cc),
            "occurrence": action.occurrence,
        }  # fmt: skip
    if isinstance(action, RecordCancellation):
        return {
            "action": "record_cancellation", "rep": action.rep, "manager": action.manager,
            "occurrence": action.occurrence, "reason": action.reason, "week11": action.week11,
        }  # fmt: skip
    if isinstance(action, RecordReschedule):
        return {
            "action": "record_reschedule", "rep": action.rep, "manager": action.manager,
            "occurrence": action.occurrence, "start": action.start.isoformat(),
        }  # fmt: skip
    if isinstance(action, RecordCommitment):
        return {
            "action": "record_commitment", "rep": action.rep, "uid": action.uid,
            "original_start": action.original_start.isoformat(),
        }  # fmt: skip
    assert isinstance(action, RecordRateBand)
    return {
        "action": "record_rate_band", "subject": action.subject, "band": action.band,
        "manager": action.manager,
    }  # fmt: skip


def render_diff(at: datetime, actions: list[dict[str, Any]], problems: list[str]) -> str:
    counts: dict[str, int] = {}
    for a in actions:
        counts[a["action"]] = counts.get(a["action"], 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing to do"
    lines = [f"Next pass at {at.isoformat()}: {summary}"]
    for a in actions:
        kind = a["action"]
        who = a.get("rep") or a.get("subject") or ""
        if kind in ("create", "restore"):
            what = f"{a['stage']} {a['rrule']} from {a['start']}"
            what += f" until {a['until']}" if a["until"] else ""
        elif kind == "end":
            what = f"until {a['until']} ({a['reason']})"
            what += "" if a["calendar_write"] else " [ledger only]"
        elif kind == "agenda":
            what = f"{len(a['occurrences'])} occurrence(s)"
            what += " and the series description" if a["series_description"] else ""
        elif kind == "email":
            what = f"{a['kind']} to {', '.join(a['to'])}"
            what += f" cc {', '.join(a['cc'])}" if a["cc"] else ""
        elif kind == "record_cancellation":
            what = f"{a['occurrence']}: {a['reason']}" + (" (week-11 skip)" if a["week11"] else "")
        elif kind == "record_reschedule":
            what = f"{a['occurrence']} moved to {a['start']}"
        elif kind == "record_commitment":
            what = a["original_start"]
        elif kind == "attendees":
            parts = (
                []
                if a["series_attendees"] is None
                else ["series: " + (", ".join(a["series_attendees"]) or "nobody")]
            )
            parts += [f"{o}: {', '.join(people)}" for o, people in a["occurrences"].items()]
            what = "; ".join(parts)
        elif kind == "record_review_outcome":
            what = f"{a['occurrence']}: pipeline review {a['status']} ({a['reason'] or 'moved'})"
        else:
            what = f"band {a['band']}"
        lines.append(f"{kind:<20} {who:<28} {what}")
    lines += [f"(!) {p}" for p in problems]
    return "\n".join(lines)
