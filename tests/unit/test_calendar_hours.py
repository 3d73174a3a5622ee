"""Managers' calendar-kept working hours: asked once a day, kept across restarts, and a calendar
that cannot answer leaves the configured hours (a real ledger file; the calendar is a stand-in
that counts questions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from daemon.calendar_hours import kept_hours, known_hours
from daemon.core.model import WorkingHours
from daemon.core.observed import CalendarHours
from daemon.errors import Transient
from daemon.store import Ledger
from tests.unit.rosters import rep, roster

NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
AFTERNOONS = CalendarHours(WorkingHours(start=time(13), end=time(17)), "America/Los_Angeles")


class Calendar:
    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.down = False

    def working_hours(self, managers: Sequence[str]) -> Mapping[str, CalendarHours | None]:
        self.asked.append(list(managers))
        if self.down:
            raise Transient("graph.microsoft.com cannot be reached")
        return {m: AFTERNOONS if m.startswith("maya") else None for m in managers}


TEAM = roster(
    rep(),
    managers=[
        {"email": "maya@acme.test", "name": "Maya", "timezone": "America/Chicago"},
        {"email": "raj@acme.test", "name": "Raj"},
        {"email": "kyo@acme.test", "name": "Kyo", "working_hours": {"start": "08:00", "end": "16:00"}},
    ],
)  # fmt: skip


def test_asked_once_a_day_kept_across_a_restart_and_never_for_roster_hours(
    tmp_path: Path,
) -> None:
    calendar = Calendar()
    ledger = Ledger.open(tmp_path)
    assert known_hours(TEAM, calendar, ledger, NOW) == {"maya@acme.test": AFTERNOONS}
    ledger.close()
    ledger = Ledger.open(tmp_path)  # a restart, later that day
    assert known_hours(TEAM, calendar, ledger, NOW + timedelta(hours=20)) == {
        "maya@acme.test": AFTERNOONS
    }
    assert kept_hours(TEAM, ledger, NOW + timedelta(days=9)) == {"maya@acme.test": AFTERNOONS}
    known_hours(TEAM, calendar, ledger, NOW + timedelta(hours=25))
    ledger.close()
    assert calendar.asked == [["maya@acme.test", "raj@acme.test"]] * 2  # Kyo's are the roster's


def test_a_calendar_that_cannot_answer_leaves_the_configured_hours_and_is_asked_again(
    tmp_path: Path,
) -> None:
    calendar = Calendar()
    calendar.down = True
    ledger = Ledger.open(tmp_path)
    assert known_hours(TEAM, calendar, ledger, NOW) == {}
    calendar.down = False
    assert known_hours(TEAM, calendar, ledger, NOW + timedelta(minutes=1)) == {
        "maya@acme.test": AFTERNOONS
    }
    ledger.close()
    assert len(calendar.asked) == 2
