"""The behaviour every calendar provider owes the reconcile loop, as one reusable test class.

In the manner of vdirsyncer's ``StorageTests``: a backend's test module subclasses
``ProviderContract`` and supplies two fixtures, ``provider`` (a ``CalendarProvider`` talking to a
real or wire-faithful server) and ``manager`` (a manager email whose calendar no other test uses).
The helpers (``series_spec``, ``only_series``) are meant for backend-specific tests too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.core.agenda import wrap
from daemon.errors import NotFound, ProviderError, TokenExpired
from daemon.providers.base import (
    Agendas,
    Attendee,
    CalendarProvider,
    Changes,
    Create,
    End,
    ObservedSeries,
    SeriesSpec,
)

ZONE = "America/Denver"
# A Tuesday in the Mountain zone, three weeks before DST ends; the series runs across the change.
FIRST_START = datetime(2030, 10, 15, 10, 0, tzinfo=ZoneInfo(ZONE))
RULE = "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH"
PERSONAL_NOTE = "Sam: bring the Globex call recording.\nManager: ask about the pricing objection."


def series_spec(manager: str, uid: str, **changes: object) -> SeriesSpec:
    """A twice-weekly 25-minute series for rep Sam, with the agenda block followed by a note."""
    values: dict[str, object] = {
        "uid": uid,
        "manager_email": manager,
        "manager_name": "Maya Chen",
        "rep_email": "sam@acme.test",
        "rep_name": "Sam Ortiz",
        "summary": "1:1 Maya / Sam",
        "start": FIRST_START,
        "duration": timedelta(minutes=25),
        "timezone": ZONE,
        "rrule": RULE,
        "description": wrap("Number: 10 min\nSkill: 12 min\nCommitment: ") + "\n\n" + PERSONAL_NOTE,
    }
    values.update(changes)
    return SeriesSpec(**values)  # type: ignore[arg-type]


def only_series(changes: Changes, uid: str) -> ObservedSeries:
    found = [series for series in changes.changed if series.uid == uid]
    assert len(found) == 1, f"expected exactly one series {uid}, got {changes.changed}"
    return found[0]


def occurrence(weeks: int, thursday: bool = False) -> datetime:
    """The original start of the series' occurrence ``weeks`` weeks after the first Tuesday."""
    return FIRST_START + timedelta(weeks=weeks, days=2 if thursday else 0)


class ProviderContract:
    """Tests every ``CalendarProvider`` must pass; needs fixtures ``provider`` and ``manager``."""

    @pytest.fixture
    def calendar(self, provider: CalendarProvider, manager: str) -> CalendarProvider:
        provider.ensure_calendar(manager)
        return provider

    def test_ensure_calendar_twice_is_harmless(
        self, provider: CalendarProvider, manager: str
    ) -> None:
        provider.ensure_calendar(manager)
        provider.ensure_calendar(manager)
        listing = provider.changes(manager, None)
        assert listing.complete
        assert listing.changed == ()

    def test_create_twice_gives_one_series(self, calendar: CalendarProvider, manager: str) -> None:
        spec = series_spec(manager, "contract-twice")
        calendar.create_series(manager, spec)
        calendar.create_series(manager, spec)

        series = only_series(calendar.changes(manager, None), spec.uid)
        assert series.owned
        assert series.start == FIRST_START
        assert series.timezone == ZONE
        assert series.duration == timedelta(minutes=25)
        assert series.rrule == RULE
        assert series.until is None
        assert series.organizer == manager
        assert [a.email for a in series.attendees] == ["sam@acme.test"]

    def test_full_listing_then_incremental_changes(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        calendar.create_series(manager, series_spec(manager, "contract-first"))
        full = calendar.changes(manager, None)
        assert full.complete
        assert [s.uid for s in full.changed] == ["contract-first"]

        calendar.create_series(manager, series_spec(manager, "contract-second"))
        delta = calendar.changes(manager, full.token)
        assert not delta.complete
        assert [s.uid for s in delta.changed] == ["contract-second"]
        assert delta.removed == ()

    def test_quiet_calendar_reports_nothing(self, calendar: CalendarProvider, manager: str) -> None:
        calendar.create_series(manager, series_spec(manager, "contract-quiet"))
        token = calendar.changes(manager, None).token

        quiet = calendar.changes(manager, token)
        assert quiet.changed == ()
        assert quiet.removed == ()
        assert not quiet.complete

    def test_end_series_makes_until_observable(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        calendar.create_series(manager, series_spec(manager, "contract-end"))
        token = calendar.changes(manager, None).token
        last_day = date(2030, 11, 14)  # a Thursday, after the DST change

        calendar.end_series(manager, "contract-end", last_day)

        series = only_series(calendar.changes(manager, token), "contract-end")
        assert series.until == last_day
        assert series.rrule == RULE  # the rule itself is unchanged, only bounded

    def test_ending_before_the_first_day_removes_the_series(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        calendar.create_series(manager, series_spec(manager, "contract-never-met"))
        token = calendar.changes(manager, None).token

        calendar.end_series(manager, "contract-never-met", FIRST_START.date() - timedelta(days=1))

        delta = calendar.changes(manager, token)
        assert delta.removed == ("contract-never-met",)
        assert calendar.changes(manager, None).changed == ()

    def test_created_with_until_reports_it(self, calendar: CalendarProvider, manager: str) -> None:
        spec = series_spec(manager, "contract-until", until=date(2030, 12, 31))
        calendar.create_series(manager, spec)
        assert only_series(calendar.changes(manager, None), spec.uid).until == date(2030, 12, 31)

    def test_write_agendas_keeps_text_outside_markers(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        calendar.create_series(manager, series_spec(manager, "contract-agenda"))
        new_block = wrap("Number: pipeline coverage 3.1x\nSkill: discovery depth\nCommitment: ")
        week_two = occurrence(1, thursday=True)
        calendar.write_agendas(
            manager, "contract-agenda", new_block, {week_two: wrap("Career conversation")}
        )

        series = only_series(calendar.changes(manager, None), "contract-agenda")
        assert "pipeline coverage 3.1x" in series.description
        assert "Number: 10 min" not in series.description
        assert series.description.endswith(PERSONAL_NOTE)
        [override] = series.overrides
        assert override.recurrence_id == week_two
        assert override.start == week_two
        assert override.end == week_two + timedelta(minutes=25)
        assert "Career conversation" in override.description
        assert not override.cancelled
        assert [a.email for a in override.attendees] == ["sam@acme.test"]

    def test_write_agendas_keeps_a_filled_commitment(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        spec = series_spec(
            manager,
            "contract-commitment",
            description=wrap("Commitment: run two discovery calls with the new opener"),
        )
        calendar.create_series(manager, spec)
        calendar.write_agendas(manager, spec.uid, wrap("Number: new\nCommitment: "), {})

        series = only_series(calendar.changes(manager, None), spec.uid)
        assert "Number: new" in series.description
        assert "Commitment: run two discovery calls with the new opener" in series.description

    def test_a_series_may_invite_several_people(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        team = (Attendee("sam@acme.test", name="Sam Ortiz"), Attendee("ana@acme.test", name="Ana"))
        spec = series_spec(manager, "contract-team", rep_email="", rep_name="", attendees=team)
        calendar.create_series(manager, spec)

        series = only_series(calendar.changes(manager, None), spec.uid)
        assert sorted(a.email for a in series.attendees) == ["ana@acme.test", "sam@acme.test"]

    def test_set_attendees_on_the_series_and_on_occurrences(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        team = (Attendee("sam@acme.test", name="Sam Ortiz"), Attendee("ana@acme.test", name="Ana"))
        spec = series_spec(manager, "contract-people", rep_email="", rep_name="", attendees=team)
        calendar.create_series(manager, spec)
        calendar.write_agendas(manager, spec.uid, None, {occurrence(1): wrap("Week two")})
        now = (Attendee("sam@acme.test", name="Sam Ortiz"), Attendee("lee@acme.test", name="Lee"))
        vp = Attendee("vp@acme.test", name="Val Price")
        wanted = {None: now, occurrence(1): now, occurrence(2): (*now, vp)}
        calendar.set_attendees(manager, spec.uid, wanted)

        listing = calendar.changes(manager, None)
        series = only_series(listing, spec.uid)
        assert sorted(a.email for a in series.attendees) == ["lee@acme.test", "sam@acme.test"]
        people = {o.recurrence_id: sorted(a.email for a in o.attendees) for o in series.overrides}
        assert people == {
            occurrence(1): ["lee@acme.test", "sam@acme.test"],
            occurrence(2): ["lee@acme.test", "sam@acme.test", "vp@acme.test"],
        }
        assert "Week two" in next(
            o.description for o in series.overrides if o.recurrence_id == occurrence(1)
        )
        # Asking again for what is there writes nothing.
        calendar.set_attendees(manager, spec.uid, wanted)
        assert calendar.changes(manager, listing.token).changed == ()

    def test_unknown_series_is_not_found(self, calendar: CalendarProvider, manager: str) -> None:
        with pytest.raises(NotFound):
            calendar.end_series(manager, "contract-never-created", date(2030, 12, 1))
        with pytest.raises(NotFound):
            calendar.write_agendas(manager, "contract-never-created", wrap("x"), {})

    def test_rejected_token_asks_for_a_full_resync(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        with pytest.raises(TokenExpired):
            calendar.changes(manager, "not-a-token-this-server-ever-issued")

    def test_errors_are_project_errors(self, provider: CalendarProvider, manager: str) -> None:
        # The calendar was never created: whatever the backend answers, it is a project error.
        with pytest.raises(ProviderError):
            provider.changes(manager, None)

    def test_an_unusable_spec_is_a_project_error(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        spec = series_spec(manager, "contract-bad-zone", timezone="Mars/Olympus")
        with pytest.raises(ProviderError):
            calendar.create_series(manager, spec)
        assert calendar.changes(manager, None).changed == ()

    def test_apply_does_each_write_as_its_verb_and_answers_for_each(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        specs = [series_spec(manager, f"contract-apply-{n}") for n in range(3)]
        bad = series_spec(manager, "contract-apply-bad", timezone="Mars/Olympus")
        made = calendar.apply([Create(manager, s) for s in [*specs, bad]])
        assert made[:3] == [None, None, None] and isinstance(made[3], ProviderError)
        week_two = occurrence(1, thursday=True)
        outcome = calendar.apply(
            [
                End(manager, specs[0].uid, date(2030, 12, 31)),
                Agendas(manager, specs[1].uid, wrap("Number: new"), {week_two: wrap("Career")}),
                End(manager, specs[2].uid, FIRST_START.date() - timedelta(days=1)),  # removed
                End(manager, "contract-never-created", date(2030, 12, 1)),
            ]
        )
        assert outcome[:3] == [None, None, None] and isinstance(outcome[3], NotFound)
        listing = calendar.changes(manager, None)
        assert sorted(s.uid for s in listing.changed) == [specs[0].uid, specs[1].uid]
        assert only_series(listing, specs[0].uid).until == date(2030, 12, 31)
        agenda = only_series(listing, specs[1].uid)
        assert "Number: new" in agenda.description and agenda.description.endswith(PERSONAL_NOTE)
        [override] = agenda.overrides
        assert override.recurrence_id == week_two and "Career" in override.description

    def test_changes_many_answers_for_each_calendar(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        calendar.create_series(manager, series_spec(manager, "contract-many"))
        first = calendar.changes_many({manager: None})[manager]
        assert isinstance(first, Changes) and first.complete
        assert [s.uid for s in first.changed] == ["contract-many"]
        quiet = calendar.changes_many({manager: first.token})[manager]
        assert isinstance(quiet, Changes) and quiet.changed == () and not quiet.complete
        refused = calendar.changes_many({manager: "not-a-token-this-server-ever-issued"})
        assert isinstance(refused[manager], TokenExpired)  # answered, not raised

    def test_working_hours_are_known_or_none_for_each_manager(
        self, calendar: CalendarProvider, manager: str
    ) -> None:
        """A provider either keeps a manager's hours (a zone the planner can use, an end after
        the start) or answers None, and the configured defaults apply; an unknown mailbox is
        a None too, never an error that would stop the pass."""
        stranger = "nobody-" + manager
        answer = calendar.working_hours([manager, stranger])
        assert set(answer) == {manager, stranger}
        assert answer[stranger] is None
        for known in answer.values():
            if known is not None:
                assert ZoneInfo(known.timezone) and known.hours.end > known.hours.start
