"""The reconcile planner: desired (roster + policy + clock), observed (the calendars) and last
applied (the ledger) in, a list of actions out. No I/O: the executor performs the actions.

Three states, not two, is how the daemon tells "the admin changed the roster" (the desired
fingerprint differs from the ledger's) from "a manager moved one meeting" (the calendar differs
from both, and the person's edit wins).

The package is split by concern: ``actions`` (inputs and outputs as values), ``identity``,
``series`` (lifecycle), ``agendas``, ``notices`` (what happened to occurrences), ``slots``
(reschedule suggestions) and ``reviews`` (the pipeline review, a series of its own).
``make_plan`` ties them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from daemon.core.model import Roster
from daemon.core.observed import (
    CalendarHours,
    ObservedOverride,
    ObservedSeries,
    SeriesSpec,
)
from daemon.core.plan import plan
from daemon.core.planner.actions import (
    EMAILS_WINDOW,
    LOOKAHEAD,
    LOOKBACK,
    RECAP_DEADLINE,
    Action,
    AgendaView,
    Alarm,
    CreateSeries,
    EndSeries,
    Kind,
    LedgerSeries,
    LedgerView,
    Outcome,
    Plan,
    RateAlert,
    RecordCancellation,
    RecordCommitment,
    RecordRateBand,
    RecordReschedule,
    RecordReviewOutcome,
    RenderAgenda,
    SendEmail,
    SetAttendees,
    WriteAgendas,
)
from daemon.core.planner.agendas import last_commitment
from daemon.core.planner.identity import (
    describe_schedule,
    fingerprint,
    person,
    series_uid,
    stage_view,
)
from daemon.core.planner.notices import new_commitments, occurrence_actions, with_commitments
from daemon.core.planner.rates import Band, Rates, Tally, percent, rate_actions, rates_of, tally
from daemon.core.planner.reviews import (
    REVIEW,
    RenderReview,
    ReviewPlan,
    ReviewView,
    desired_reviews,
    is_review,
    review_actions,
    review_json,
    review_outcomes,
    sticky_times,
)
from daemon.core.planner.series import end_series, rep_actions, safety_valve, sticky_slots, zone_of
from daemon.core.planner.slots import suggest_slots
from daemon.core.prep import PrepPolicy
from daemon.core.schedule import zone

__all__ = [
    "Action", "AgendaView", "Alarm", "Band", "CreateSeries", "EMAILS_WINDOW", "EndSeries", "Kind",
    "LOOKAHEAD", "LOOKBACK", "LedgerSeries", "LedgerView", "Outcome", "Plan", "RECAP_DEADLINE",
    "REVIEW", "RateAlert", "Rates", "RecordCancellation", "RecordCommitment", "RecordRateBand",
    "RecordReschedule", "RecordReviewOutcome", "RenderAgenda", "RenderReview", "ReviewPlan",
    "ReviewView", "SendEmail", "SetAttendees", "Tally", "WriteAgendas", "describe_schedule",
    "desired_reviews", "fingerprint", "is_review", "last_commitment", "make_plan", "percent",
    "person", "rates_of", "review_json", "series_uid", "stage_view", "sticky_slots",
    "sticky_times", "suggest_slots", "tally",
]  # fmt: skip


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
    prep: PrepPolicy | None = None,
    render_review: RenderReview | None = None,
    calendar_hours: Mapping[str, CalendarHours] | None = None,
) -> Plan:
    """Everything to do at ``now``.

    ``observed`` maps each manager to the owned series on their calendar. ``complete`` names the
    managers whose listing is known to be whole; ``unreachable`` those whose calendar could not
    be read this pass (nothing is planned for them). ``prep``: the pre-read form is configured
    (pre-read emails carry form links, and a missing pre-read is warned about).
    ``render_review``: the deal-review agenda (None: the reviews carry no agenda).
    ``calendar_hours``: managers' working hours from their calendar service (slot choice and
    reschedule suggestions use them where the roster gives none).
    """
    sticky = sticky_slots(ledger, now)
    desired = plan(roster, now, sticky=sticky, calendar_hours=calendar_hours)
    actions: list[Action] = []
    alarms: list[Alarm] = []

    by_rep: dict[str, list[LedgerSeries]] = {}
    for rec in ledger.series:
        by_rep.setdefault(rec.rep, []).append(rec)

    valve = safety_valve(roster, observed, ledger, complete, restore_missing)
    alarms.extend(valve.values())
    blocked = unreachable | frozenset(valve)

    # A commitment people wrote into a meeting that just ended is recorded in this pass; the
    # agendas and pre-reads planned in this pass already open with it (not one pass later).
    commitments = new_commitments(roster, now, observed, ledger, blocked)
    ledger = with_commitments(ledger, commitments)
    actions.extend(commitments)

    desired_by_rep = {p.rep.email: p for p in desired}
    for p in desired:
        if p.manager.email in blocked:
            continue
        records = [r for r in by_rep.get(p.rep.email, []) if r.state != "ended"]
        # Ended by a handover but still meeting this week: the new series must not take it.
        ending = [
            r for r in by_rep.get(p.rep.email, [])
            if r.state == "ended" and r.until is not None
            and r.until >= (now - timedelta(days=7)).date()
        ]  # fmt: skip
        actions.extend(
            rep_actions(roster, now, p, records, observed, ledger, render_agenda, blocked, ending)
        )

    # Reps no longer on the roster: end their series (history stays on the calendar).
    for rep_email, records in by_rep.items():
        if rep_email in desired_by_rep:
            continue
        for rec in records:
            if rec.state == "ended" or rec.manager in blocked:
                continue
            tz = zone(zone_of(rec, observed))
            until = max(rec.start.astimezone(tz).date(), now.astimezone(tz).date()) - timedelta(
                days=1
            )
            actions.extend(end_series(rec, observed, until, "rep removed"))

    # The pipeline reviews: their own series, their own people, never a 1:1.
    reviews = desired_reviews(roster, now, sticky_times(ledger.reviews))
    actions.extend(
        review_actions(roster, now, reviews, ledger.reviews, observed, ledger, render_review,
                       blocked)
    )  # fmt: skip
    actions.extend(review_outcomes(roster, now, observed, ledger.reviews, ledger, blocked))

    # Occurrences are read as the calendar will be once this pass's writes are done: a series
    # ended now sends no pre-read for a meeting its successor takes over, and one created now
    # sends what is already due in this pass, so a second pass at the same instant sends nothing.
    after, records = _projected(observed, ledger.series, actions)
    actions.extend(
        occurrence_actions(
            roster, now, desired, after, records, ledger, blocked, prep, calendar_hours
        )
    )
    # The rates count this pass's news too, so a second pass at the same instant sends nothing.
    counted = replace(
        ledger, series=_recorded(records, actions), outcomes=_outcomes(ledger, actions)
    )
    rates = rates_of(roster, counted, now)
    actions.extend(rate_actions(roster, rates, ledger))
    manager_rates = {m: t.rate for m, t in rates.managers.items() if t.rate is not None}
    return Plan(tuple(actions), tuple(alarms), desired, manager_rates)


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
            if action.stage == REVIEW:
                continue  # a pipeline review is no 1:1: nothing is sent about it
            records.append(
                LedgerSeries(
                    uid=spec.uid, rep=action.rep, manager=action.manager, stage=action.stage,
                    fingerprint=action.fingerprint, start=spec.start, rrule=spec.rrule,
                    until=spec.until, state="pending",
                )
            )  # fmt: skip
    return after, records


def _recorded(
    records: Sequence[LedgerSeries], actions: Sequence[Action]
) -> tuple[LedgerSeries, ...]:
    """The series as the ledger holds them once this pass's writes are recorded, for the rates.
    A restore rewrites the record of the same uid (counted twice, its meetings halved the rate
    and the band crossed one pass late: soak seed 15); an end sets the last day it meets."""
    by_uid = {rec.uid: rec for rec in records}  # a later record of a uid replaces the earlier
    for action in actions:
        if isinstance(action, EndSeries) and (rec := by_uid.get(action.uid)) is not None:
            state = "ended" if action.retire else rec.state
            by_uid[action.uid] = replace(rec, until=action.until, state=state)
    return tuple(by_uid.values())


def _outcomes(ledger: LedgerView, actions: Sequence[Action]) -> tuple[Outcome, ...]:
    news = [
        Outcome(a.uid, a.original_start, a.rep, a.manager, cancelled=True, week11=a.week11)
        if isinstance(a, RecordCancellation)
        else Outcome(a.uid, a.original_start, a.rep, a.manager, cancelled=False)
        for a in actions
        if isinstance(a, RecordCancellation | RecordReschedule)
    ]
    return (*ledger.outcomes, *news)


def _as_observed(spec: SeriesSpec) -> ObservedSeries:
    """The series a create puts on the calendar, as a later read would show it."""
    rep = spec.invitees
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
