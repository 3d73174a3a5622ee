"""The agenda blocks the planner writes into invites: one for the series, one per occurrence
inside the horizon (career month, week-11 note, last commitment)."""

from __future__ import annotations

from datetime import datetime

from daemon.core.agenda import blocks_for
from daemon.core.metrics import Number, number_for
from daemon.core.model import Rep, Roster, StageRule
from daemon.core.occurrences import occurrence_key
from daemon.core.plan import Template, occurrences_between
from daemon.core.planner.actions import AgendaView, LedgerView
from daemon.core.planner.identity import Wanted
from daemon.core.schedule import Pattern, zone


def on_rule(pattern: Pattern, start: datetime) -> bool:
    return start.weekday() in pattern.days and start.timetz() == pattern.time.replace(
        tzinfo=start.tzinfo
    )


def number_of(
    roster: Roster, ledger: LedgerView, rep: Rep, rule: StageRule, start: datetime
) -> Number | None:
    """The number the meeting at ``start`` opens with; None without a metrics source."""
    if ledger.metrics is None:
        return None
    org_zone = zone(roster.organization.timezone)
    return number_for(ledger.metrics, rep.email, rule.metric, start, org_zone, rep.start_date)


def master_view(w: Wanted, first: datetime, ledger: LedgerView) -> AgendaView:
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
        metrics_on=ledger.metrics is not None,
    )


def last_commitment(ledger: LedgerView, rep: str, before: datetime) -> str | None:
    best: tuple[datetime, str] | None = None
    for when, text in ledger.commitments.get(rep, ()):
        if when < before and (best is None or when > best[0]):
            best = (when, text)
    return best[1] if best else None


def agenda_views(
    roster: Roster, w: Wanted, uid: str, now: datetime, horizon: datetime, ledger: LedgerView
) -> dict[datetime, AgendaView]:
    views = {}
    for o in occurrences_between(roster, w.p, now, horizon):
        if o.stage != w.stage:
            continue
        filed = ledger.prereads.get(occurrence_key(uid, o.start), {})
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
            preread_rep=filed.get("rep", ()),
            preread_manager=filed.get("manager", ()),
            number=number_of(roster, ledger, w.p.rep, w.rule, o.start),
            metrics_on=ledger.metrics is not None,
        )
    return views
