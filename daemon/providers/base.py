"""The calendar provider contract: the few verbs the reconcile loop needs from any calendar.

Designed for CalDAV, Google Calendar v3 and Microsoft Graph alike:

* ``changes(token)``  CalDAV sync-collection (RFC 6578), Google ``events.list(syncToken)`` (410 ->
  ``TokenExpired``; the caller retries with ``None``), Graph ``calendarView/delta`` following
  ``@odata.nextLink`` to the ``@odata.deltaLink``. Returns whole series (master plus overrides),
  because Google and Graph deliver occurrences separately and the caller needs the series view.
* ``create_series``   idempotent on ``SeriesSpec.uid``: CalDAV ``UID`` + ``If-None-Match: *``;
  Google client-supplied ``id`` (base32hex of the uid) where a 409 means "already there" (also
  for a deleted event's tombstone: un-cancel it); Graph ``transactionId``.
* ``end_series``      ``RRULE UNTIL`` (UTC when DTSTART has a TZID); Graph PATCHes the whole
  ``recurrence`` with ``range.type: endDate``.
* ``write_agendas``   the series' and some occurrences' agenda blocks (overrides with
  ``RECURRENCE-ID`` / instance PATCH); only the text between the markers is owned.
* ``free_busy``       busy intervals for slot choice and reschedule suggestions.

Errors leave a provider only as ``daemon.errors.ProviderError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

# Stamped on every event the daemon creates; events without it are foreign and never touched.
OWNER_PROPERTY = "X-CADENCE-SERIES"


@dataclass(frozen=True)
class Attendee:
    email: str  # lower-cased
    partstat: str = "NEEDS-ACTION"  # ACCEPTED | DECLINED | TENTATIVE | NEEDS-ACTION
    name: str = ""


@dataclass(frozen=True)
class ObservedOverride:
    """One occurrence that differs from the rule (an override / exception)."""

    recurrence_id: datetime  # the original start, aware
    start: datetime
    end: datetime
    cancelled: bool = False  # STATUS:CANCELLED / Google status cancelled / Graph isCancelled
    attendees: tuple[Attendee, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ObservedSeries:
    """A recurring series as it is on the calendar now."""

    uid: str
    owned: bool  # carries OWNER_PROPERTY: created by cadence
    start: datetime  # DTSTART of the master, aware, in the series zone
    duration: timedelta
    timezone: str
    rrule: str  # canonical, without UNTIL, e.g. "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH"
    until: date | None  # last date (series zone) the rule may produce, or None
    organizer: str = ""
    attendees: tuple[Attendee, ...] = ()
    description: str = ""
    summary: str = ""
    exdates: tuple[datetime, ...] = ()  # original starts removed from the series
    overrides: tuple[ObservedOverride, ...] = ()


@dataclass(frozen=True)
class Changes:
    """What changed in one calendar since a token."""

    token: str
    changed: tuple[ObservedSeries, ...] = ()
    removed: tuple[str, ...] = ()  # uids no longer on the calendar
    complete: bool = False  # True when this is a full listing (no token, or it expired)


@dataclass(frozen=True)
class SeriesSpec:
    """A series the daemon wants on the manager's calendar."""

    uid: str
    manager_email: str
    manager_name: str
    rep_email: str
    rep_name: str
    summary: str
    start: datetime  # first occurrence, aware, tzinfo = ZoneInfo(timezone)
    duration: timedelta
    timezone: str
    rrule: str  # without UNTIL
    until: date | None = None
    description: str = ""  # the full description for a new event (agenda block inside markers)
    # Agenda overrides written together with the series: original start -> description.
    occurrence_descriptions: Mapping[datetime, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    sync_tokens: bool = True
    free_busy: bool = False


class CalendarProvider(Protocol):
    """One calendar backend. A manager's 1:1 calendar is addressed by the manager's email."""

    capabilities: Capabilities

    def ensure_calendar(self, manager: str) -> None:
        """Create the manager's 1:1 calendar when missing; no-op otherwise."""

    def changes(self, manager: str, token: str | None) -> Changes:
        """Series changed since ``token``; a full listing when ``token`` is None.

        Raises ``TokenExpired`` when the token is no longer accepted.
        """

    def create_series(self, manager: str, series: SeriesSpec) -> None:
        """Create the series; succeeds without a second copy when the uid already exists."""

    def end_series(self, manager: str, uid: str, until: date) -> None:
        """Let the series occur up to and including ``until`` (series zone), then stop."""

    def write_agendas(
        self,
        manager: str,
        uid: str,
        master_block: str | None,
        occurrence_blocks: Mapping[datetime, str],
    ) -> None:
        """Replace the agenda block (between the markers) of the series and of occurrences.

        Text outside the markers, attendees' answers, moves and cancellations are kept. An
        occurrence without an override gets one at its original time.
        """

    def free_busy(
        self, emails: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, Sequence[tuple[datetime, datetime]]]:
        """Busy intervals per person between ``start`` and ``end``."""
