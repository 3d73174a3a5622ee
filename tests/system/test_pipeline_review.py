"""The pipeline review end to end, on Radicale and on the Google and Outlook servers: its own
series on each manager's calendar, made once; attendees that follow roster edits; the VP on the
first review of each month only; a declined review that sends nothing and counts nowhere; and a
1:1 that cadence places off the review's Monday."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.core.observed import ObservedSeries
from daemon.store import Ledger
from tests.system.harness import Deployment

NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # a Sunday
FIRST = datetime(2026, 11, 23, 9, 0, tzinfo=CHICAGO)  # the first review: Monday 09:00, Chicago
VP_DAY = datetime(2026, 12, 7, 9, 0, tzinfo=CHICAGO)  # the first review of December
VP = "vp@acme.test"
REVIEW = "pipeline_review: {mode: team, day: mon, time: '09:00', vp: vp@acme.test}\n"


def setup(d: Deployment, reps: str) -> None:
    maya, raj = d.managers
    d.write_config(
        f"""\
        - {{email: {maya}, name: Maya Chen, timezone: America/Chicago}}
        - {{email: {raj}, name: Raj Patel, timezone: America/Chicago}}
        """,
        reps,
        extra=REVIEW,
    )


def sam(d: Deployment) -> str:
    # No slot: cadence chooses it. Its first free slot would be Monday 09:00 without a review.
    return (f"- {{email: sam@acme.test, name: Sam Ortiz, role: ae, start_date: 2025-01-06, "
            f"manager: {d.managers[0]}, timezone: America/Chicago}}\n")  # fmt: skip


def lee(d: Deployment) -> str:
    # A slot named on Monday: honoured, review or not.
    return (f"- {{email: lee@acme.test, name: Lee Park, role: ae, start_date: 2025-01-06, "
            f"manager: {d.managers[0]}, timezone: America/Chicago, "
            f"slot: {{day: mon, time: '14:00'}}}}\n")  # fmt: skip


def priya(d: Deployment, manager: int = 1) -> str:
    return (f"- {{email: priya@acme.test, name: Priya Shah, role: ae, start_date: 2025-01-06, "
            f"manager: {d.managers[manager]}, timezone: America/Chicago, "
            f"slot: {{day: wed, time: '10:00'}}}}\n")  # fmt: skip


def zoe(d: Deployment) -> str:
    return (f"- {{email: zoe@acme.test, name: Zoe Adams, role: ae, start_date: 2025-03-03, "
            f"manager: {d.managers[0]}, timezone: America/Chicago, "
            f"slot: {{day: thu, time: '10:00'}}}}\n")  # fmt: skip


def reviews(d: Deployment, manager: str) -> list[ObservedSeries]:
    return [s for s in d.series(manager).values() if s.summary.startswith("Pipeline review")]


def emails(series: ObservedSeries, manager: str) -> list[str]:
    return sorted(a.email for a in series.attendees if a.email != manager)


def override_people(series: ObservedSeries, manager: str) -> dict[datetime, list[str]]:
    return {
        o.recurrence_id: sorted(a.email for a in o.attendees if a.email != manager)
        for o in series.overrides
    }


def test_one_review_series_per_manager_with_the_vp_once_a_month(deployment: Deployment) -> None:
    d = deployment
    maya, raj = d.managers
    setup(d, sam(d) + lee(d) + priya(d))

    first = d.once(T0)
    assert first.errors == []
    [review] = reviews(d, maya)
    assert review.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO"
    assert review.start == FIRST
    assert review.duration == timedelta(minutes=30)
    assert emails(review, maya) == ["lee@acme.test", "sam@acme.test"]
    assert len(reviews(d, raj)) == 1
    # The VP is on the first review of December only: not on the series, not on November's.
    by_start = override_people(review, maya)
    assert by_start[VP_DAY] == ["lee@acme.test", "sam@acme.test", VP]
    assert [s for s, who in by_start.items() if VP in who] == [VP_DAY]
    # The agenda is a deal review, not a 1:1's.
    assert "Pipeline review, 30 minutes: deals only." in review.description
    assert "Commitment:" not in review.description

    # The 1:1 cadence chose for Sam stays off the review's Monday; Lee's named Monday stays.
    one_to_ones = [s for s in d.series(maya).values() if s.uid != review.uid]
    sams = [s for s in one_to_ones if emails(s, maya) == ["sam@acme.test"]]
    lees = [s for s in one_to_ones if emails(s, maya) == ["lee@acme.test"]]
    assert len(sams) == 1 and "MO" not in sams[0].rrule.split("BYDAY=")[1]
    assert len(lees) == 1 and lees[0].rrule.endswith("BYDAY=MO")
    plan = json.loads(d.cli("plan", "--json", "--at", T0.isoformat()).stdout)
    [maya_review] = [r for r in plan["pipeline_reviews"] if r["manager"] == maya]
    assert maya_review["rrule"] == "FREQ=WEEKLY;BYDAY=MO"
    assert [o["vp"] for o in maya_review["upcoming"][:4]] == [False, False, True, False]

    # Again at the same instant: nothing to do. A fortnight on: still one series each.
    again = d.once(T0)
    assert (again.writes, again.emails) == (0, 0)
    later = d.once(T0 + timedelta(days=14))
    assert later.errors == []
    assert len(reviews(d, maya)) == 1 and len(reviews(d, raj)) == 1
    assert [r.uid for r in reviews(d, maya)] == [review.uid]


def test_attendees_follow_roster_edits_never_a_second_series(deployment: Deployment) -> None:
    d = deployment
    maya, raj = d.managers
    setup(d, sam(d) + lee(d) + priya(d))
    d.once(T0)
    [before] = reviews(d, maya)

    # Lee leaves, Zoe joins, Priya moves from Raj to Maya.
    setup(d, sam(d) + zoe(d) + priya(d, manager=0))
    monday = T0 + timedelta(days=1)  # Monday noon: today's review has been held
    result = d.once(monday)
    assert result.errors == []
    [after] = reviews(d, maya)
    assert after.uid == before.uid
    team = ["priya@acme.test", "sam@acme.test", "zoe@acme.test"]
    assert emails(after, maya) == team
    assert override_people(after, maya)[VP_DAY] == sorted([*team, VP])
    # Raj has no reps left: his review ends after today's, and stays as history.
    [rajs] = reviews(d, raj)
    assert rajs.until == monday.date()
    assert d.once(monday).writes == 0


def test_a_declined_review_sends_nothing_and_is_no_cancellation(deployment: Deployment) -> None:
    d = deployment
    maya, _ = d.managers
    setup(d, sam(d) + lee(d))
    d.once(T0)
    [review] = reviews(d, maya)
    week_two = FIRST + timedelta(weeks=1)
    d.decline(maya, review.uid, week_two, "sam@acme.test", "Sam Ortiz")
    d.remove_occurrence(maya, review.uid, FIRST + timedelta(weeks=3))

    result = d.once(T0 + timedelta(hours=1))
    assert result.errors == []
    assert d.mail_of("cancellation") == [] and d.mail_of("week11_skip") == []
    ledger = Ledger.open(d.root / "state")
    try:
        outcomes = {o.original_start: (o.status, o.reason) for o in ledger.review_outcomes()}
        assert len(outcomes) == 2
        assert ("cancelled", "declined by Sam Ortiz") in outcomes.values()
        assert all(status == "cancelled" for status, _ in outcomes.values())
        assert ledger.cancellations() == []
    finally:
        ledger.close()
    report = json.loads(d.cli("report", "--format", "json", "--at",
                              (T0 + timedelta(days=30)).isoformat()).stdout)  # fmt: skip
    assert all(m["cancelled"] == 0 for m in report["managers"])
    [mayas] = [m for m in report["managers"] if m["email"] == maya]
    assert mayas["pipeline_reviews"] == {"cancelled": 2, "moved": 0}
