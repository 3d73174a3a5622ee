"""The daemon against a real calendar server (Radicale, and the local Google Calendar): series
created, moved on the ramp day, kept, repaired.

Time is simulated with ``now`` (the CLI's ``--now``); nothing sleeps.
"""

from __future__ import annotations

import json
import socket
import textwrap
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Event

from daemon.core.agenda import BEGIN_MARKER, END_MARKER, extract_block
from tests.system.harness import Deployment, OutlookDeployment

NY = ZoneInfo("America/New_York")
DENVER = ZoneInfo("America/Denver")
CHICAGO = ZoneInfo("America/Chicago")
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=NY)  # a Sunday


def setup(
    d: Deployment,
    extra_reps: str = "",
    sam_manager: str | None = None,
    *,
    extra: str = "",
    mail: str | None = None,
    sam_start: date = date(2026, 9, 1),
) -> tuple[str, str]:
    """Maya (Chicago) with Sam (new SDR, Denver, Tue 10:00), Lee (ramped AE) and Ana (senior AE,
    biweekly); Raj (New York) with nobody yet. ``extra`` and ``mail`` go to ``write_config``.

    Sam starts on 1 Sep 2026 and ramps on 30 Nov, which the tests at ``T0`` rely on; a test on
    the real clock passes a ``sam_start`` relative to today instead."""
    maya, raj = d.managers
    d.write_config(
        f"""\
        - {{email: {maya}, name: Maya Chen, timezone: America/Chicago, escalate_to: vp@acme.test}}
        - {{email: {raj}, name: Raj Patel, timezone: America/New_York}}
        """,
        textwrap.dedent(f"""\
        - {{email: sam@acme.test, name: Sam Ortiz, role: sdr, start_date: {sam_start.isoformat()},
           manager: {sam_manager or maya}, timezone: America/Denver, slot: {{day: tue, time: "10:00"}}}}
        - {{email: lee@acme.test, name: Lee Park, role: ae, start_date: 2025-01-06, manager: {maya}}}
        - {{email: ana@acme.test, name: Ana Ruiz, role: senior_ae, start_date: 2021-03-15,
           manager: {maya}, forecast_within_5pct: true}}
        """)
        + textwrap.dedent(extra_reps),
        extra,
        mail,
    )
    return maya, raj


def test_first_pass_puts_every_series_on_the_calendar_and_a_second_changes_nothing(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    first = deployment.once(T0)
    assert first.errors == [] and first.writes == 4

    # Sam ramps on 30 Nov, inside the agenda horizon: both stages' series are there already.
    sam, sam_ramped = deployment.rep_series(maya, "sam@acme.test")
    assert sam.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH"
    assert sam.timezone == "America/Denver" and sam.until == date(2026, 11, 29)
    assert sam.start == datetime(2026, 11, 24, 10, 0, tzinfo=DENVER)
    assert sam.duration == timedelta(minutes=25)
    assert sam.organizer == maya
    assert BEGIN_MARKER in sam.description and END_MARKER in sam.description
    # Occurrences in the next 14 days carry their own agenda as overrides.
    starts = sorted(o.recurrence_id for o in sam.overrides)
    assert [s.date() for s in starts] == [
        date(2026, 11, 24),
        date(2026, 11, 26),
    ]  # fmt: skip  (the ramped series takes over on 30 Nov)
    assert all(extract_block(o.description) for o in sam.overrides)
    assert sam_ramped.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU" and sam_ramped.until is None
    assert sam_ramped.start == datetime(2026, 12, 1, 10, 0, tzinfo=DENVER)
    assert sam_ramped.duration == timedelta(minutes=30)
    assert [o.recurrence_id for o in sam_ramped.overrides] == [sam_ramped.start]

    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    (ana,) = deployment.rep_series(maya, "ana@acme.test")
    assert lee.rrule.startswith("FREQ=WEEKLY;INTERVAL=1;BYDAY=")
    assert ana.rrule.startswith("FREQ=WEEKLY;INTERVAL=2;BYDAY=")

    again = deployment.once(T0)
    assert (again.writes, again.emails, again.errors) == (0, 0, [])
    assert len(deployment.series(maya)) == 4


def test_half_a_year_of_passes_moves_sam_on_the_exact_day_without_gap_or_duplicate(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    eve = datetime(2026, 11, 29, 23, 30, tzinfo=DENVER)
    assert deployment.once(eve).errors == []

    change_day = datetime(2026, 11, 30, 0, 30, tzinfo=DENVER)
    result = deployment.once(change_day)
    assert (result.errors, result.writes) == ([], 0)  # all set up ahead: nothing to write
    old, new = deployment.rep_series(maya, "sam@acme.test")
    assert old.until == date(2026, 11, 29) and old.rrule.endswith("BYDAY=TU,TH")
    assert new.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU" and new.until is None
    assert new.start == datetime(2026, 12, 1, 10, 0, tzinfo=DENVER)
    assert new.duration == timedelta(minutes=30)

    now = change_day
    for _ in range(26):
        now += timedelta(days=7)
        assert deployment.once(now).errors == []
    uids = list(deployment.series(maya))
    assert len(uids) == len(set(uids)) == 4  # sam's two, lee's and ana's
    # Across the March DST change the ramped series still says 10:00 Denver time.
    final = deployment.rep_series(maya, "sam@acme.test")[-1]
    assert final.start.astimezone(DENVER).hour == 10 and final.timezone == "America/Denver"
    assert deployment.once(now).writes == 0


def test_a_twice_weekly_series_created_between_its_days_keeps_them(deployment: Deployment) -> None:
    maya, _ = setup(
        deployment,
        f"""\
        - {{email: jo@acme.test, name: Jo Kim, role: sdr, start_date: 2026-11-02,
           manager: {deployment.managers[0]}}}
        """,
    )
    tuesday = datetime(2026, 11, 24, 12, 0, tzinfo=NY)  # after Monday, before Wednesday
    assert deployment.once(tuesday).errors == []
    (jo,) = deployment.rep_series(maya, "jo@acme.test")
    assert jo.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,WE"
    assert jo.start.date() == date(2026, 11, 25)  # the Wednesday: Monday is past
    again = deployment.once(tuesday)
    assert (again.writes, again.errors) == (0, [])  # still Mon/Wed, not Wed/Fri
    assert [s.uid for s in deployment.rep_series(maya, "jo@acme.test")] == [jo.uid]


def test_roster_edits_converge_in_one_pass(deployment: Deployment) -> None:
    maya, raj = setup(deployment)
    deployment.once(T0)
    ana_before = deployment.rep_series(maya, "ana@acme.test")[0]

    # New rep, Lee removed, Ana's slot changed, Sam moved to Raj.
    maya_cfg, raj_cfg = deployment.managers
    deployment.write_config(
        f"""\
        - {{email: {maya_cfg}, name: Maya Chen, timezone: America/Chicago}}
        - {{email: {raj_cfg}, name: Raj Patel, timezone: America/New_York}}
        """,
        f"""\
        - {{email: sam@acme.test, name: Sam Ortiz, role: sdr, start_date: 2026-09-01,
           manager: {raj}, timezone: America/Denver, slot: {{day: tue, time: "10:00"}}}}
        - {{email: ana@acme.test, name: Ana Ruiz, role: senior_ae, start_date: 2021-03-15,
           manager: {maya}, forecast_within_5pct: true, slot: {{day: wed, time: "14:00"}}}}
        - {{email: zoe@acme.test, name: Zoe Adams, role: ae, start_date: 2026-11-16, manager: {maya}}}
        """,
    )
    t1 = T0 + timedelta(days=9)  # Tuesday 1 Dec: Lee, Ana and Sam have all met Maya by now
    result = deployment.once(t1)
    assert result.errors == []

    (zoe,) = deployment.rep_series(maya, "zoe@acme.test")
    assert zoe.duration == timedelta(minutes=45)
    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    assert lee.until is not None and lee.until < t1.date()  # ended, not deleted
    ana_old, ana_new = deployment.rep_series(maya, "ana@acme.test")
    assert ana_old.uid == ana_before.uid and ana_old.until is not None
    assert ana_new.rrule == "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE"
    assert ana_new.start.astimezone(ZoneInfo("America/Chicago")).hour == 14
    assert ana_old.until < ana_new.start.date()
    (sam_at_maya,) = deployment.rep_series(maya, "sam@acme.test")
    (sam_at_raj,) = deployment.rep_series(raj, "sam@acme.test")
    assert sam_at_maya.until is not None and sam_at_raj.until is None
    assert sam_at_raj.organizer == raj

    assert deployment.once(t1).writes == 0


def test_a_series_ended_before_its_first_meeting_is_removed(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    assert lee.start == datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Chicago"))
    lines = deployment.config_path.read_text().splitlines(keepends=True)
    # Lee is taken off the roster before his first 1:1.
    deployment.config_path.write_text("".join(x for x in lines if "lee@acme.test" not in x))
    before_first = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("America/Chicago"))
    result = deployment.once(before_first)
    assert result.errors == [] and result.writes == 1
    assert deployment.rep_series(maya, "lee@acme.test") == []  # nothing to keep: it never met
    assert len(deployment.series(maya)) == 3  # Sam's two and Ana's
    assert deployment.once(before_first).writes == 0


def test_peoples_text_outside_the_markers_is_kept_when_the_block_is_rewritten(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    sam = deployment.rep_series(maya, "sam@acme.test")[0]

    def mangle(text: str) -> str:
        block = extract_block(text) or ""
        mangled = text.replace(block, block.replace("Commitment:", "Comitment (typo):"))
        return "Zoom: https://zoom.example/j/1\n" + mangled + "\n\nBring the renewal deck."

    deployment.edit_texts(maya, sam.uid, mangle)
    result = deployment.once(T0 + timedelta(hours=1))
    assert result.writes == 1  # the one series' blocks, in one write
    sam = deployment.rep_series(maya, "sam@acme.test")[0]
    for text in [sam.description, *(o.description for o in sam.overrides)]:
        assert text.startswith("Zoom: https://zoom.example/j/1\n")
        assert text.endswith("Bring the renewal deck.")
        assert "Comitment (typo)" not in text and "Commitment:" in text


def test_a_deleted_series_is_restored_and_the_manager_told(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    sam = deployment.rep_series(maya, "sam@acme.test")[0]
    deployment.delete(maya, sam.uid)
    result = deployment.once(T0 + timedelta(hours=1))
    assert result.errors == [] and result.alarms == []
    back = deployment.rep_series(maya, "sam@acme.test")[0]
    assert back.uid == sam.uid and back.rrule == sam.rrule
    (notice,) = deployment.mail_of("series_restored")
    assert notice["To"] == maya and sam.uid in notice["X-Cadence-Occurrence"]
    assert deployment.once(T0 + timedelta(hours=1)).emails == 0


def test_safety_valve_when_every_series_vanishes_at_once(deployment: Deployment) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    for uid in deployment.series(maya):
        deployment.delete(maya, uid)
    later = T0 + timedelta(hours=1)
    cli = deployment.cli("once", "--now", later.isoformat())
    assert cli.returncode == 3
    assert "safety valve" in cli.stderr and maya in cli.stderr
    assert deployment.series(maya) == {}  # nothing recreated
    assert deployment.mail_of("series_restored") == []
    restored = deployment.cli("once", "--now", later.isoformat(), "--restore-missing")
    assert restored.returncode == 0, restored.stderr
    assert len(deployment.series(maya)) == 4


# Raw iCalendar, so CalDAV only (Google and Outlook: their contract suites).
@pytest.mark.parametrize("deployment", ["caldav", "caldav-xandikos"], indirect=True)
def test_foreign_and_malformed_events_are_ignored_and_never_touched(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    cal = Calendar()
    cal.add("prodid", "-//someone//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", "team-standup")
    event.add("summary", "Team stand-up")
    event.add("dtstart", datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Chicago")))
    event.add("duration", timedelta(minutes=15))
    event.add("rrule", {"freq": "daily"})
    cal.add_component(event)
    deployment.put(maya, "team-standup", cal)
    # Valid iCalendar the daemon cannot use: a one-off copy of a 1:1 that still carries the
    # daemon's tag, and a tagged series in a zone nobody knows (Radicale refuses unparsable data).
    one_off = Event()
    one_off.add("uid", "copied-1on1")
    one_off.add("x-cadence-series", "copied-1on1")
    one_off.add("summary", "1:1 Sam Ortiz / Maya Chen (extra)")
    one_off.add("dtstart", datetime(2026, 11, 25, 15, 0, tzinfo=ZoneInfo("America/Chicago")))
    one_off.add("duration", timedelta(minutes=25))
    copied = Calendar()
    copied.add("prodid", "-//someone//EN")
    copied.add("version", "2.0")
    copied.add_component(one_off)
    deployment.put(maya, "copied-1on1", copied)
    mars = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//someone//EN\r\nBEGIN:VEVENT\r\n"
        b"UID:mars\r\nX-CADENCE-SERIES:mars\r\nDTSTAMP:20261101T000000Z\r\n"
        b"DTSTART;TZID=Mars/Olympus:20261124T100000\r\nDURATION:PT30M\r\n"
        b"RRULE:FREQ=WEEKLY;BYDAY=TU\r\nSUMMARY:1:1 on Mars\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    deployment.put(maya, "mars", mars)
    before = {uid: deployment.get(maya, uid).to_ical() for uid in ("team-standup", "copied-1on1")}

    for hours in (1, 30, 150):  # before Sam ramps on 30 Nov
        result = deployment.once(T0 + timedelta(hours=hours))
        assert result.errors == []
    assert {uid: deployment.get(maya, uid).to_ical() for uid in before} == before
    assert b"Mars/Olympus" in deployment.get_raw(maya, "mars")
    assert len(deployment.series(maya)) == 4


def test_once_with_the_calendar_server_down_exits_non_zero_with_one_line(
    deployment: Deployment,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    deployment.break_calendar(port)
    setup(deployment)
    result = deployment.cli("once", "--now", T0.isoformat())
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("cadence: ") and f"127.0.0.1:{port}" in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("deployment", ["outlook"], indirect=True)
def test_on_outlook_a_mailbox_the_app_may_not_use_is_reported_and_the_others_go_on(
    deployment: Deployment,
) -> None:
    assert isinstance(deployment, OutlookDeployment)
    maya, raj = setup(deployment)
    deployment.fake.add_mailbox(raj).denied = True  # outside the app's access policy
    result = deployment.once(T0)
    [error] = result.errors
    assert raj in error and "Calendars.ReadWrite" in error and "\n" not in error
    assert len(deployment.series(maya)) == 4  # Maya's reps are not held up
    assert [p.key for p in result.problems] == [f"calendar-access {raj}"]


def test_a_series_ended_early_in_a_calendar_app_is_put_back_and_the_manager_told(
    deployment: Deployment,
) -> None:
    maya, _ = setup(deployment)
    deployment.once(T0)
    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    # "Delete this and all following" from 7 Dec.
    deployment.end_early(maya, lee.uid, datetime(2026, 12, 6, 23, 59, 59, tzinfo=ZoneInfo("UTC")))
    result = deployment.once(T0 + timedelta(hours=1))
    assert result.errors == []
    old, new = deployment.rep_series(maya, "lee@acme.test")
    assert old.uid == lee.uid and old.until == date(2026, 12, 6)
    assert new.start.date() == date(2026, 12, 7) and new.until is None
    (notice,) = deployment.mail_of("series_restored")
    assert notice["To"] == maya and new.uid in notice["X-Cadence-Occurrence"]
    assert deployment.once(T0 + timedelta(hours=2)).emails == 0


def test_a_managers_working_hours_from_their_calendar_place_new_1on1s(
    deployment: Deployment,
) -> None:
    """Maya's calendar service keeps afternoons, 13:00-17:00 Los Angeles (15:00-19:00 in her
    roster zone, Chicago); the roster gives her no hours. Where cadence can read them (Outlook's
    mailbox settings), Lee's new 1:1 lands inside them, and so does `plan`'s slot for a rep who
    joins later; elsewhere the configured 09:00-17:00 apply. A restarted daemon does not ask
    again the same day."""
    maya, _ = setup(deployment)
    weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday"]
    kept = deployment.keep_working_hours(maya, weekdays, "13:00", "17:00", "America/Los_Angeles")
    assert deployment.once(T0).errors == []
    (lee,) = deployment.rep_series(maya, "lee@acme.test")
    chicago = lee.start.astimezone(CHICAGO)
    assert chicago.weekday() == 0  # the first weekday both can meet
    assert chicago.time() == (time(15) if kept else time(9))
    # Kim joins: `plan`, which asks no calendar, places her with the hours the pass kept.
    setup(deployment, "- {email: kim@acme.test, name: Kim Lo, role: ae, start_date: 2025-02-03,"
                      f" manager: {maya}}}\n")  # fmt: skip
    shown = deployment.cli("plan", "--at", (T0 + timedelta(hours=1)).isoformat(), "--json")
    assert shown.returncode == 0, shown.stderr
    (kim,) = [s for s in json.loads(shown.stdout)["series"] if s["rep"] == "kim@acme.test"]
    first = datetime.fromisoformat(kim["upcoming"][0]["start"]).astimezone(CHICAGO)
    assert (first.time() >= time(15)) is kept
    if isinstance(deployment, OutlookDeployment):
        asked = [p for _, p in deployment.fake.requests if p.endswith("/mailboxSettings")]
        assert deployment.once(T0 + timedelta(hours=2)).errors == []
        assert [p for _, p in deployment.fake.requests if p.endswith("/mailboxSettings")] == asked
        assert len(asked) == 2  # Maya and Raj, once each
