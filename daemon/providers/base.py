"""The calendar provider contract: the few verbs the reconcile loop needs from any calendar.

Designed for CalDAV, Google Calendar v3 and Microsoft Graph alike:

* ``changes(token)``  CalDAV sync-collection (RFC 6578), Google ``events.list(syncToken)`` (410 ->
  ``TokenExpired``; the caller retries with ``None``), Graph ``calendarView/delta`` following
  ``@odata.nextLink`` to the ``@odata.deltaLink``. Returns whole series (master plus overrides),
  because Google and Graph deliver occurrences separately and the caller needs the series view.
* ``create_series``   idempotent on ``SeriesSpec.uid``: CalDAV ``UID`` + ``If-None-Match: *``;
  Google client-supplied ``id`` (base32hex of the uid) where a 409 means "already there" (also
  for a deleted event's tombstone: un-cancel it); Graph ``transactionId``.
* ``create_many``     several ``create_series`` for one manager, answering per uid, so that a
  provider with batch requests (Google, Graph ``$batch``) makes a cold start cost a few round
  trips per manager instead of several per series; CalDAV creates them one by one.
* ``end_series``      ``RRULE UNTIL`` (UTC when DTSTART has a TZID); Graph PATCHes the whole
  ``recurrence`` with ``range.type: endDate``.
* ``write_agendas``   the series' and some occurrences' agenda blocks (overrides with
  ``RECURRENCE-ID`` / instance PATCH); only the text between the markers is owned.
* ``free_busy``       busy intervals for slot choice and reschedule suggestions.
* ``working_hours``   managers' working hours as the calendar service keeps them (Graph
  ``mailboxSettings``), None where it keeps none cadence can read (CalDAV; Google, whose
  ``calendars.get`` shows them only with a wider scope than cadence's): the configured
  defaults then apply.
* ``diagnose``        ``cadence doctor``'s rows for one manager: reachable, writable, permitted;
  writes nothing.

Errors leave a provider only as ``daemon.errors.ProviderError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from daemon.checks import Check
from daemon.core.observed import OWNER_PROPERTY as OWNER_PROPERTY
from daemon.core.observed import Attendee as Attendee
from daemon.core.observed import CalendarHours as CalendarHours
from daemon.core.observed import Changes as Changes
from daemon.core.observed import ObservedOverride as ObservedOverride
from daemon.core.observed import ObservedSeries as ObservedSeries
from daemon.core.observed import SeriesSpec as SeriesSpec
from daemon.errors import ProviderError


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

    def create_many(
        self, manager: str, series: Sequence[SeriesSpec]
    ) -> Mapping[str, ProviderError]:
        """``create_series`` for each; the uids that failed, with why. A ``Transient`` failure
        of the whole calendar is raised instead."""

    def end_series(self, manager: str, uid: str, until: date) -> None:
        """Let the series occur up to and including ``until`` (series zone), then stop.

        An ``until`` before the series' first day means it never took place: the provider
        removes it (servers refuse an end before the start, and there is no history to keep).
        """

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

    def working_hours(self, managers: Sequence[str]) -> Mapping[str, CalendarHours | None]:
        """Each manager's working hours from their calendar service; None: not known there.
        One manager's refusal is a None, not an error; a ``Transient`` for all is raised."""

    def diagnose(self, manager: str) -> list[Check]:
        """Whether cadence can work on this manager's calendar, checked without writing."""
