"""What people receive, over simulated weeks against Radicale or the local Google Calendar and a
real Maildir: pre-reads,
recaps with the commitment read back from the invite, and every way of cancelling."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.core.agenda import extract_block
from daemon.providers.google import event_id
from tests.system.harness import (
    SENDER,
    Deployment,
    GoogleDeployment,
    OutlookDeployment,
    html_of,
    text_of,
)
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
DENVER = ZoneInfo("America/Denver")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # Sunday noon
LEE_MON = datetime(2026, 11, 23, 9, 0, tzinfo=CHI)  # Lee's first 1:1 (ramped AE, 30 min)


def uid_of(d: Deployment, rep: str) -> str:
    maya = d.managers[0]
    return d.rep_series(maya, rep)[0].uid  # the series in use (not one made ahead of a ramp)


def test_prereads_go_once_to_each_side_in_their_own_zone(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    early = deployment.once(LEE_MON - timedelta(hours=25))
    assert early.emails == 0  # 25 hours before: not yet
    deployment.once(T0)
    prereads = deployment.mail_of("preread")
    assert sorted(m["To"] for m in prereads) == sorted(["lee@acme.test", maya])
    for message in prereads:
        assert message.is_multipart()
        assert uid_of(deployment, "lee@acme.test") in message["X-Cadence-Occurrence"]
    assert deployment.once(T0 + timedelta(hours=2)).emails == 0
    assert len(deployment.mail_of("preread")) == 2
    # Never after the start: a daemon that was down until after the meeting sends none.
    late = deployment.once(LEE_MON + timedelta(minutes=5))
    assert [m for m in deployment.mail_of("preread") if "sam" in m["To"]] == []
    assert late.errors == []


def test_commitment_is_read_back_into_the_recap_and_opens_the_next_agenda(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    uid = uid_of(deployment, "lee@acme.test")
    deployment.edit_occurrence_text(
        maya,
        uid,
        LEE_MON,
        lambda text: text.replace(
            "Commitment:", "Commitment: <script>alert(1)</script> Multi-thread Acme by Friday"
        ),
    )
    during = deployment.once(LEE_MON + timedelta(minutes=20))
    assert deployment.mail_of("recap") == [] and during.errors == []

    deployment.once(LEE_MON + timedelta(minutes=60))
    (recap,) = deployment.mail_of("recap")
    assert {a.strip() for a in recap["To"].split(",")} == {maya, "lee@acme.test"}
    assert "Multi-thread Acme by Friday" in text_of(recap)
    html = html_of(recap)
    assert "&lt;script&gt;" in html and "<script>" not in html

    deployment.once(LEE_MON + timedelta(hours=2))
    assert len(deployment.mail_of("recap")) == 1
    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    nxt = next(o for o in lee.overrides if o.recurrence_id == LEE_MON + timedelta(days=7))
    block = extract_block(nxt.description) or ""
    assert "Multi-thread Acme by Friday" in block
    # ...and its own Commitment line is still blank for the next session.
    assert block.rstrip().splitlines()[-2].strip() == "Commitment:" or "Commitment:\n" in block


def test_recap_more_than_a_day_late_is_dropped(deployment: Deployment) -> None:
    setup(deployment)
    deployment.once(T0)
    deployment.once(LEE_MON + timedelta(hours=25))
    assert deployment.mail_of("recap") == []


def test_every_way_of_cancelling_is_detected_and_a_move_inside_the_week_is_not(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    sam_uid, lee_uid = uid_of(deployment, "sam@acme.test"), uid_of(deployment, "lee@acme.test")
    sam_tue = datetime(2026, 11, 24, 10, 0, tzinfo=DENVER)
    sam_thu = datetime(2026, 11, 26, 10, 0, tzinfo=DENVER)
    deployment.remove_occurrence(maya, sam_uid, sam_thu)
    deployment.move(maya, sam_uid, sam_tue, sam_tue + timedelta(days=1))  # a reschedule
    deployment.decline(maya, lee_uid, LEE_MON + timedelta(days=7), "lee@acme.test", "Lee Park")
    deployment.cancel(maya, lee_uid, LEE_MON + timedelta(days=14))
    deployment.move(maya, lee_uid, LEE_MON + timedelta(days=21), LEE_MON + timedelta(days=29))

    result = deployment.once(T0 + timedelta(hours=1))
    assert result.errors == []
    warnings = deployment.mail_of("cancellation")
    by_when = {m["X-Cadence-Occurrence"].split()[1]: m for m in warnings}
    utc = ZoneInfo("UTC")

    def key(dt: datetime) -> str:
        return dt.astimezone(utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert set(by_when) == {
        key(sam_thu),
        key(LEE_MON + timedelta(days=7)),
        key(LEE_MON + timedelta(days=14)),
        key(LEE_MON + timedelta(days=21)),
    }  # fmt: skip  (Sam's Tuesday moved to Wednesday is not among them)
    assert "declined by Lee Park" in text_of(by_when[key(LEE_MON + timedelta(days=7))])
    assert "moved out of its week" in text_of(by_when[key(LEE_MON + timedelta(days=21))])
    for message in warnings:
        assert message["To"] == maya and message["Cc"] is None

    # Later passes send nothing again; each cancellation is in the ledger once.
    assert deployment.once(T0 + timedelta(hours=5)).emails == 0
    from daemon.store import Ledger

    ledger = Ledger.open(deployment.root / "state")
    try:
        assert len(ledger.cancellations(manager=maya)) == 4
    finally:
        ledger.close()


def test_cancellation_offers_free_slots_in_the_same_week(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    lee_uid = uid_of(deployment, "lee@acme.test")
    deployment.cancel(maya, lee_uid, LEE_MON)
    deployment.once(T0 + timedelta(hours=1))
    (warning,) = deployment.mail_of("cancellation")
    body = text_of(warning)
    # Two or three suggestions, all later in the week of 23 Nov, in Maya's (Chicago) time.
    days = [d for d in ("Mon 23 Nov", "Tue 24 Nov", "Wed 25 Nov", "Thu 26 Nov", "Fri 27 Nov")
            if d in body]  # fmt: skip
    assert 2 <= len(days) <= 3
    assert "Sat 28 Nov" not in body and "Mon 30 Nov" not in body.split("Lee")[0]


def test_a_week_11_skip_says_so_and_is_escalated(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    # Fiscal year from 02-01: week 11 of Q4 is 10-16 January 2027.
    before = datetime(2027, 1, 8, 12, 0, tzinfo=NY)
    deployment.once(before)
    lee_uid = uid_of(deployment, "lee@acme.test")
    week11_monday = datetime(2027, 1, 11, 9, 0, tzinfo=CHI)
    deployment.cancel(maya, lee_uid, week11_monday)
    deployment.once(before + timedelta(hours=1))
    assert deployment.mail_of("cancellation") == []
    (skip,) = deployment.mail_of("week11_skip")
    assert skip["Subject"].startswith("Week-11 skip")
    assert skip["To"] == maya and skip["Cc"] == "vp@acme.test"
    assert deployment.once(before + timedelta(hours=2)).emails == 0
    # The agenda of a week-11 occurrence carries the note.
    (sam,) = [s for s in deployment.rep_series(maya, "sam@acme.test") if s.until is None]
    wk11 = [o for o in sam.overrides if o.recurrence_id.date().isoformat() == "2027-01-12"]
    assert wk11 and "even at 25 minutes" in wk11[0].description


def test_a_series_created_after_todays_slot_starts_next_time_and_sends_no_recap(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    evening = datetime(2026, 11, 23, 17, 0, tzinfo=CHI)  # Lee's Monday 09:00 slot is past
    deployment.once(evening)
    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    assert lee.start == LEE_MON + timedelta(days=7)
    assert deployment.once(evening + timedelta(minutes=5)).errors == []
    assert deployment.mail_of("recap") == []  # no recap for a meeting that was never on it


@pytest.mark.parametrize("deployment", ["outlook"], indirect=True)
def test_on_microsoft_365_the_emails_go_through_graph_once(deployment: Deployment) -> None:
    assert isinstance(deployment, OutlookDeployment)
    maya, _ = setup(deployment, mail="transport: graph")
    deployment.fake.fail_next_send(504)  # Exchange took the first one but timed out answering
    first = deployment.once(T0)
    sent = deployment.fake.sent
    assert all(s.sender == "cadence@acme.test" for s in sent)
    assert all(s.message["X-Cadence-Kind"] == "preread" for s in sent)
    assert all("may have been sent" in e for e in first.errors)
    deployment.once(T0 + timedelta(hours=2))
    deployment.once(T0 + timedelta(hours=3))
    # Both sides got their pre-read; the one that met the 504 may be there twice, never more.
    recipients = Counter(str(s.message["To"]) for s in sent)
    assert set(recipients) == {"lee@acme.test", maya}
    assert sum(recipients.values()) <= 3


@pytest.mark.parametrize("deployment", ["google"], indirect=True)
def test_a_decline_of_the_whole_series_on_google_cancels_each_meeting(
    deployment: Deployment,
) -> None:
    assert isinstance(deployment, GoogleDeployment)
    maya, _ = setup(deployment)
    deployment.once(T0)  # Lee's next meetings carry cadence's agenda: exceptions of their own
    lee_uid = uid_of(deployment, "lee@acme.test")
    deployment.fake.respond_series(maya, event_id(lee_uid), "lee@acme.test", "declined")
    result = deployment.once(T0 + timedelta(hours=1))
    assert result.errors == []
    warnings = [
        m for m in deployment.mail_of("cancellation") if lee_uid in m["X-Cadence-Occurrence"]
    ]
    when = {m["X-Cadence-Occurrence"].split()[1] for m in warnings}
    assert LEE_MON.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ") in when
    assert all("declined by Lee Park" in text_of(m) for m in warnings)
    assert deployment.once(T0 + timedelta(hours=2)).emails == 0


@pytest.mark.parametrize("deployment", ["google"], indirect=True)
def test_gmail_sends_each_email_once_and_a_refused_one_is_not_retried(
    deployment: Deployment,
) -> None:
    assert isinstance(deployment, GoogleDeployment)
    maya, _ = setup(
        deployment, mail=f"transport: gmail, gmail: {{api_endpoint: '{deployment.url}'}}"
    )
    deployment.fake.rejected_recipients.add("lee@acme.test")
    try:
        first = deployment.once(T0)
        assert any("lee@acme.test" in e for e in first.errors)  # refused for good, said once
        [preread] = deployment.mail_of("preread")  # Lee's was refused; Maya's went
        assert preread["To"] == maya and preread.is_multipart()
        assert uid_of(deployment, "lee@acme.test") in preread["X-Cadence-Occurrence"]
        assert "cadence" in str(preread["From"])
        again = deployment.once(T0 + timedelta(hours=1))
        assert again.emails == 0 and again.errors == []
        assert len(deployment.mail_of("preread")) == 1
        with deployment.fake.lock:
            senders = {user for user, _ in deployment.fake.sent[deployment.sent_before :]}
        assert senders == {SENDER}  # as mail.from, through domain-wide delegation
    finally:
        deployment.fake.rejected_recipients.discard("lee@acme.test")


@pytest.mark.parametrize("deployment", ["outlook"], indirect=True)
def test_on_microsoft_365_a_restarted_daemon_reads_on_from_the_ledger_not_from_scratch(
    deployment: Deployment,
) -> None:
    """Each pass here is a new process. After the first, none lists a calendar again: one delta
    round per manager and a read of each series it made, and an occurrence deleted while the
    daemon was down (delta says nothing of it) still gets its warning."""
    assert isinstance(deployment, OutlookDeployment)
    maya, raj = setup(deployment)
    deployment.once(T0)
    lee_uid = uid_of(deployment, "lee@acme.test")
    deployment.remove_occurrence(maya, lee_uid, LEE_MON + timedelta(days=7))
    graph = deployment.fake
    full_syncs, before = graph.full_syncs, len(graph.requests)

    result = deployment.once(T0 + timedelta(hours=1))

    assert result.errors == []
    assert graph.full_syncs == full_syncs
    made = graph.requests[before:]
    deltas = sorted(p.split("/")[2] for _, p in made if p.endswith("/calendarView/delta"))
    assert deltas == sorted([maya, raj])
    reads = [p for m, p in made if m == "GET" and "/events/" in p and "/instances" not in p]
    assert len(reads) == len(set(reads)) == len(deployment.series(maya))
    (warning,) = deployment.mail_of("cancellation")
    assert warning["To"] == maya and lee_uid in warning["X-Cadence-Occurrence"]
