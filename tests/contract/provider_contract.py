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
from daemon.providers.base import CalendarProvider, Changes, ObservedSeries, SeriesSpec

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
