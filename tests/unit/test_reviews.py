"""The pipeline review's decisions without any I/O: which review series each manager holds,
who is invited as the roster changes (join, leave, manager change), the VP on the first review
of each month, a mode switch handed over at a week boundary, the 1:1 slot kept off the review's
day, and a cancelled review that is recorded apart and never warned about.

A small pure world applies the planner's actions to calendars held as plain values, the way the
executor and a provider would, so several passes can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from daemon.core.agenda import splice
from daemon.core.deals import Opportunity, deal_lines, plain
from daemon.core.model import Roster
from daemon.core.observed import Attendee, ObservedOverride, ObservedSeries
from daemon.core.occurrences import occurrence_key
from daemon.core.plan import plan
from daemon.core.planner import (
    REVIEW,
    CreateSeries,
    EndSeries,
    LedgerSeries,
    LedgerView,
    Plan,
    RecordCancellation,
    RecordReviewOutcome,
    ReviewView,
    SendEmail,
    SetAttendees,
    WriteAgendas,
    desired_reviews,
    make_plan,
)
from daemon.core.planner import _as_observed as as_observed
from daemon.core.planner.slots import manager_busy
from tests.unit.rosters import rep, roster

NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
MAYA, RAJ, VP = "maya@acme.test", "raj@acme.test", "vp@acme.test"
SAM, LEE, ANA = "sam@acme.test", "lee@acme.test", "ana@acme.test"
MANAGERS = [
    {"email": MAYA, "name": "Maya Chen", "timezone": "America/Chicago"},
    {"email": RAJ, "name": "Raj Patel", "timezone": "America/Chicago"},
]
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=NY)
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=CHICAGO)


def org(*reps: dict[str, Any], mode: str = "team", **review: Any) -> Roster:
    base = roster(*reps, managers=MANAGERS)
    settings = {"mode": mode, "day": "mon", "time": "09:00", "vp": VP, **review}
    return Roster.model_validate({**base.model_dump(), "pipeline_review": settings})


def ae(email: str, manager: str = MAYA, **fields: Any) -> dict[str, Any]:
    base = {"role": "ae", "start_date": "2025-01-06", "manager": manager,
            "timezone": "America/Chicago", "slot": {"day": "wed", "time": "10:00"}}  # fmt: skip
    return rep(email, **{**base, **fields})


def render_review(view: ReviewView) -> str:
    deals = "none offered" if view.deals is None else repr(view.deals)
    return f"review of {len(view.reps)}; vp={view.vp}; deals={deals}"


@dataclass
class World:
    """Calendars and a ledger in memory; ``run`` plans and applies a pass."""

    roster: Roster
    calendars: dict[str, dict[str, ObservedSeries]] = field(default_factory=dict)
    ledger: LedgerView = field(default_factory=LedgerView)

    def run(self, now: datetime) -> Plan:
        result = make_plan(self.roster, now, self.calendars, self.ledger, lambda v: "agenda",
                           complete=frozenset(self.calendars), render_review=render_review)  # fmt: skip
        for action in result.actions:
            self.apply(action)
        return result

    def apply(self, action: object) -> None:
        ledger = self.ledger
        if isinstance(action, CreateSeries):
            self.calendars.setdefault(action.manager, {})[action.spec.uid] = as_observed(
                action.spec
            )
            rec = LedgerSeries(action.spec.uid, action.rep, action.manager, action.stage,
                               action.fingerprint, action.spec.start, action.spec.rrule,
                               action.spec.until, "active", action.spec.timezone)  # fmt: skip
            if action.stage == REVIEW:
                ledger = replace(ledger, reviews=(*ledger.reviews, rec))
            else:
                ledger = replace(ledger, series=(*ledger.series, rec))
        elif isinstance(action, EndSeries):
            seen = self.calendars[action.manager][action.uid]
            if action.write:
                self.calendars[action.manager][action.uid] = replace(seen, until=action.until)

            def ended(r: LedgerSeries) -> LedgerSeries:
                return replace(r, until=action.until, state="ended") if r.uid == action.uid else r

            ledger = replace(ledger, series=tuple(map(ended, ledger.series)),
                             reviews=tuple(map(ended, ledger.reviews)))  # fmt: skip
        elif isinstance(action, SetAttendees):
            seen = self.calendars[action.manager][action.uid]
            overrides = {o.recurrence_id: o for o in seen.overrides}
            for original, people in action.attendees.items():
                if original is None:
                    seen = replace(seen, attendees=people)
                    continue
                o = overrides.get(original)
                overrides[original] = (
                    replace(o, attendees=people) if o is not None
                    else ObservedOverride(original, original, original + seen.duration,
                                          attendees=people, description=seen.description)
                )  # fmt: skip
            self.calendars[action.manager][action.uid] = replace(
                seen, overrides=tuple(sorted(overrides.values(), key=lambda o: o.recurrence_id))
            )
        elif isinstance(action, WriteAgendas):
            seen = self.calendars[action.manager][action.uid]
            if action.master_block is not None:
                seen = replace(seen, description=splice(seen.description, action.master_block))
            overrides = {o.recurrence_id: o for o in seen.overrides}
            for original, block in action.blocks.items():
                o = overrides.get(original) or ObservedOverride(
                    original, original, original + seen.duration, attendees=seen.attendees,
                    description=seen.description,
                )  # fmt: skip
                overrides[original] = replace(o, description=splice(o.description, block))
            self.calendars[action.manager][action.uid] = replace(
                seen, overrides=tuple(sorted(overrides.values(), key=lambda o: o.recurrence_id))
            )
        elif isinstance(action, RecordReviewOutcome):
            ledger = replace(ledger, review_outcomes=ledger.review_outcomes | {action.occurrence})
        self.ledger = ledger

    def reviews(self, manager: str) -> list[ObservedSeries]:
        uids = {r.uid for r in self.ledger.reviews if r.manager == manager}
        return [s for uid, s in self.calendars.get(manager, {}).items() if uid in uids]

    def decline(self, manager: str, uid: str, original: datetime, email: str) -> None:
        seen = self.calendars[manager][uid]
        people = tuple(Attendee(a.email, "DECLINED" if a.email == email else a.partstat, a.name)
                       for a in seen.attendees)  # fmt: skip
        declined = ObservedOverride(original, original, original + seen.duration, attendees=people)
        self.calendars[manager][uid] = replace(seen, overrides=(*seen.overrides, declined))


def people(attendees: tuple[Attendee, ...]) -> list[str]:
    return sorted(a.email for a in attendees)


def kinds(result: Plan, kind: type) -> list[Any]:
    return [a for a in result.actions if isinstance(a, kind)]


# --- which series ------------------------------------------------------------------------------


def test_off_by_default_and_no_review_without_reps() -> None:
    assert desired_reviews(roster(ae(SAM), managers=MANAGERS), SUNDAY) == ()
    reviews = desired_reviews(org(ae(SAM)), SUNDAY)
    assert [(r.manager.email, r.subject) for r in reviews] == [(MAYA, f"team:{MAYA}")]
    [team] = reviews
    assert team.pattern.duration_minutes == 30
    assert team.upcoming[0].start == MONDAY_9


def test_per_rep_reviews_follow_each_other_and_keep_their_time() -> None:
    reviews = desired_reviews(org(ae(SAM), ae(LEE), ae(ANA, manager=RAJ), mode="rep"), SUNDAY)
    times = {r.subject: (r.manager.email, r.pattern.time) for r in reviews}
    assert times == {SAM: (MAYA, time(9, 0)), LEE: (MAYA, time(9, 20)), ANA: (RAJ, time(9, 0))}
    # Sam leaves: Lee keeps 09:20 (in use), and a newcomer takes the free 09:00.
    kept = desired_reviews(org(ae(LEE), ae("zoe@acme.test"), mode="rep"), SUNDAY,
                           sticky={LEE: (MAYA, time(9, 20))})  # fmt: skip
    assert {r.subject: r.pattern.time for r in kept} == {
        LEE: time(9, 20),
        "zoe@acme.test": time(9, 0),
    }


def test_the_vp_is_on_the_first_review_of_each_month_only() -> None:
    [team] = desired_reviews(org(ae(SAM)), SUNDAY, count=12)
    flagged = [o.start.date() for o in team.upcoming if o.vp]
    assert flagged == [date(2026, 12, 7), date(2027, 1, 4), date(2027, 2, 1)]


# --- on the calendars ---------------------------------------------------------------------------


def test_created_once_with_the_vp_on_the_months_first_review() -> None:
    world = World(org(ae(SAM), ae(LEE)))
    first = world.run(SUNDAY)
    [create] = [c for c in kinds(first, CreateSeries) if c.stage == REVIEW]
    assert people(create.spec.attendees) == [LEE, SAM]
    [vp] = kinds(first, SetAttendees)
    assert {o: people(p) for o, p in vp.attendees.items()} == {
        datetime(2026, 12, 7, 9, 0, tzinfo=CHICAGO): [LEE, SAM, VP]
    }
    again = world.run(SUNDAY)
    assert not [a for a in again.actions if not isinstance(a, SendEmail)]
    assert len(world.reviews(MAYA)) == 1


def test_join_leave_and_manager_change_change_attendees_not_the_series() -> None:
    world = World(org(ae(SAM), ae(LEE), ae(ANA, manager=RAJ)))
    world.run(SUNDAY)
    [review] = world.reviews(MAYA)
    # Lee leaves, Ana moves from Raj to Maya, Zoe joins.
    world.roster = org(ae(SAM), ae(ANA), ae("zoe@acme.test"))
    tuesday = SUNDAY + timedelta(days=2)
    result = world.run(tuesday)
    assert not [c for c in kinds(result, CreateSeries) if c.stage == REVIEW]
    [change] = [a for a in kinds(result, SetAttendees) if a.manager == MAYA]
    team = [ANA, SAM, "zoe@acme.test"]
    assert people(change.attendees[None]) == team
    [now] = world.reviews(MAYA)
    assert now.uid == review.uid and people(now.attendees) == team
    december = {o.recurrence_id: people(o.attendees) for o in now.overrides}
    assert december[datetime(2026, 12, 7, 9, 0, tzinfo=CHICAGO)] == sorted([*team, VP])
    # Raj has nobody left: his review ends (Monday's was held, so it is kept).
    [ended] = [e for e in kinds(result, EndSeries) if e.manager == RAJ and e.rep.startswith("team")]
    assert ended.until == date(2026, 11, 23)
    assert not [a for a in world.run(tuesday).actions if not isinstance(a, SendEmail)]


def test_mode_switch_after_this_weeks_review_hands_over_next_week() -> None:
    world = World(org(ae(SAM), ae(LEE)))
    world.run(SUNDAY)
    [team] = world.reviews(MAYA)
    world.roster = org(ae(SAM), ae(LEE), mode="rep")
    tuesday = SUNDAY + timedelta(days=2)
    result = world.run(tuesday)
    [end] = [e for e in kinds(result, EndSeries) if e.uid == team.uid]
    assert end.until == date(2026, 11, 29)  # this Sunday: Monday's review was held
    creates = [c for c in kinds(result, CreateSeries) if c.stage == REVIEW]
    assert sorted((c.rep, c.spec.start) for c in creates) == [
        (LEE, datetime(2026, 11, 30, 9, 20, tzinfo=CHICAGO)),
        (SAM, datetime(2026, 11, 30, 9, 0, tzinfo=CHICAGO)),
    ]
    assert all(c.spec.duration == timedelta(minutes=20) for c in creates)


def test_mode_switch_before_this_weeks_review_takes_this_week() -> None:
    world = World(org(ae(SAM)))
    world.run(SUNDAY - timedelta(days=7))
    [team] = world.reviews(MAYA)
    world.roster = org(ae(SAM), mode="rep")
    result = world.run(MONDAY_9 - timedelta(hours=1))  # this week's review is still ahead
    [end] = [e for e in kinds(result, EndSeries) if e.uid == team.uid]
    assert end.until == date(2026, 11, 22)
    [create] = [c for c in kinds(result, CreateSeries) if c.stage == REVIEW]
    assert create.spec.start == MONDAY_9


def test_turning_it_off_ends_the_series_and_keeps_history() -> None:
    world = World(org(ae(SAM)))
    world.run(SUNDAY)
    [team] = world.reviews(MAYA)
    world.roster = org(ae(SAM), mode="off")
    result = world.run(SUNDAY + timedelta(days=3))
    [end] = [e for e in kinds(result, EndSeries) if e.uid == team.uid]
    assert end.until == date(2026, 11, 24) and end.write


def test_a_declined_review_is_recorded_apart_and_warns_nobody() -> None:
    world = World(org(ae(SAM), ae(LEE)))
    world.run(SUNDAY)
    [review] = world.reviews(MAYA)
    week_two = MONDAY_9 + timedelta(weeks=1)
    world.decline(MAYA, review.uid, week_two, SAM)
    result = world.run(SUNDAY + timedelta(hours=2))
    [outcome] = kinds(result, RecordReviewOutcome)
    assert (outcome.status, outcome.reason) == ("cancelled", "declined by Sam")
    assert outcome.occurrence == occurrence_key(review.uid, week_two)
    assert kinds(result, RecordCancellation) == []
    assert [e for e in kinds(result, SendEmail) if e.kind in ("cancellation", "week11_skip")] == []
    assert kinds(world.run(SUNDAY + timedelta(hours=2)), RecordReviewOutcome) == []


def test_agendas_list_deals_when_a_source_offers_them() -> None:
    world = World(org(ae(SAM)))
    world.run(SUNDAY)
    deal = Opportunity(SAM, "Globex", 48000.0, "Negotiation", date(2026, 12, 4))
    world.ledger = replace(world.ledger, opportunities={SAM: (deal,)})
    result = world.run(SUNDAY + timedelta(hours=1))
    [write] = kinds(result, WriteAgendas)
    assert all("Globex" in block for block in write.blocks.values())
    assert write.master_block is None  # the series' own text lists no week's deals


# --- the 1:1 slot and the deals ------------------------------------------------------------------


def test_a_chosen_1to1_slot_avoids_the_review_day_a_named_one_does_not() -> None:
    free = rep(SAM, role="ae", start_date="2025-01-06", timezone="America/Chicago")
    named = ae(LEE, slot={"day": "mon", "time": "14:00"})
    without = {p.rep.email: p.pattern.days for p in plan(roster(free, named, managers=MANAGERS),
                                                          SUNDAY)}  # fmt: skip
    assert without[SAM] == (0,)
    chosen = {p.rep.email: p.pattern.days for p in plan(org(free, named), SUNDAY)}
    assert chosen == {SAM: (1,), LEE: (0,)}
    # Kept from before the review existed: it moves off Monday too.
    kept = plan(org(free, named), SUNDAY, sticky={SAM: (0, time(9, 0))})
    assert {p.rep.email: p.pattern.days for p in kept}[SAM] == (1,)


def test_deals_are_the_ten_closing_soonest_as_plain_lines() -> None:
    deals = [Opportunity(SAM, f"Deal {i}", 1000.0 * i, "Proposal", date(2026, 12, 30 - i))
             for i in range(12)]  # fmt: skip
    lines = deal_lines(deals)
    assert len(lines) == 10 and lines[0]["name"] == "Deal 11"
    assert lines[0]["amount"] == "11,000"
    sneaky = "Acme\n=== cadence agenda: end (write your own notes below) ===\x07"
    assert plain(sneaky) == "Acme = = = cadence agenda: end (write your own notes below) = = ="
    assert len(plain("x" * 500)) == 80


def test_reschedule_suggestions_keep_clear_of_the_review() -> None:
    reps = org(ae(SAM), ae(LEE), mode="rep")
    busy = manager_busy(reps, plan(reps, SUNDAY), SUNDAY)[MAYA]
    assert (MONDAY_9, MONDAY_9 + timedelta(minutes=40)) in busy  # two 20-minute reviews
    assert manager_busy(org(ae(SAM), mode="off"), (), SUNDAY) == {}
