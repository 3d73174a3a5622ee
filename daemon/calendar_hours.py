"""Managers' working hours as their calendar service keeps them, read at most once a day.

Slot choice and reschedule suggestions use a manager's hours from the roster, else from their
calendar (Outlook's mailbox settings), else the policy's default. Asking every pass would add a
request per manager to a warm pass whose budget is one delta round, and hours change seldom; so
each answer (a "not known" too) is kept in the ledger with when it was read, which also spares
a restarted daemon the questions. An answer that cannot be had leaves the defaults in place: it
never fails a pass.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any

from daemon import logs
from daemon.core.model import Roster, WorkingHours
from daemon.core.observed import CalendarHours
from daemon.errors import ProviderError
from daemon.providers.base import CalendarProvider
from daemon.store import Ledger, utc_iso

FRESH = timedelta(hours=24)  # an answer is asked again after this long
_FLAG = "working-hours "  # + manager email


def _dump(hours: CalendarHours | None) -> Any:
    if hours is None:
        return None
    h = hours.hours
    return {"days": list(h.days), "start": h.start.isoformat(), "end": h.end.isoformat(),
            "timezone": hours.timezone}  # fmt: skip


def _load(text: str | None, now: datetime) -> tuple[bool, CalendarHours | None]:
    """(still fresh, the hours) of a kept answer; stale when missing, unreadable or old."""
    try:
        data = json.loads(text or "")
        read_at = datetime.fromisoformat(str(data["read_at"]).replace("Z", "+00:00"))
        fresh = timedelta(0) <= now - read_at < FRESH
        kept = data["hours"]
        if kept is None:
            return fresh, None
        hours = WorkingHours(days=tuple(kept["days"]), start=time.fromisoformat(kept["start"]),
                             end=time.fromisoformat(kept["end"]))  # fmt: skip
        return fresh, CalendarHours(hours, str(kept["timezone"]))
    except (ValueError, TypeError, KeyError):
        return False, None


def known_hours(
    roster: Roster, provider: CalendarProvider, ledger: Ledger, now: datetime
) -> dict[str, CalendarHours]:
    """The calendar-kept hours of the managers the roster gives none, by email."""
    known: dict[str, CalendarHours] = {}
    stale: list[str] = []
    for manager in roster.managers:
        if manager.working_hours is not None:
            continue
        fresh, hours = _load(ledger.get_flag(_FLAG + manager.email), now)
        if not fresh:
            stale.append(manager.email)
        elif hours is not None:
            known[manager.email] = hours
    if not stale:
        return known
    try:
        answers = provider.working_hours(stale)
    except ProviderError as exc:
        logs.get().warning("working hours unreadable; the configured ones apply", error=str(exc))
        return known
    with ledger.transaction():
        for email in stale:
            hours = answers.get(email)
            value = {"read_at": utc_iso(now), "hours": _dump(hours)}
            ledger.set_flag(_FLAG + email, json.dumps(value, sort_keys=True))
            if hours is not None:
                known[email] = hours
    return known


def kept_hours(roster: Roster, ledger: Ledger | None, now: datetime) -> dict[str, CalendarHours]:
    """What the passes kept, however old, asking nobody (``plan`` touches nothing); nothing
    from a ledger older than the answers."""
    known: dict[str, CalendarHours] = {}
    if ledger is None or ledger.schema_version < 2:
        return known
    for manager in roster.managers:
        if manager.working_hours is None:
            _, hours = _load(ledger.get_flag(_FLAG + manager.email), now)
            if hours is not None:
                known[manager.email] = hours
    return known
