"""The calendar provider contract: the few verbs the reconcile loop needs from any calendar.

Designed for CalDAV, Google Calendar v3 and Microsoft Graph alike:

* ``changes(token)``  CalDAV sync-collection (RFC 6578), Google ``events.list(syncToken)`` (410 ->
  ``TokenExpired``; the caller retries with ``None``), Graph ``calendarView/delta`` following
  ``@odata.nextLink`` to the ``@odata.deltaLink``. Returns whole series (master plus overrides),
  because Google and Graph deliver occurrences separately and the caller needs the series view.
* ``create_series``   idempotent on ``SeriesSpec.uid``: CalDAV ``UID`` + ``If-None-Match: *``;
  Google client-supplied ``id`` (base32hex of the uid) where a 409 means "already there" (also
  for a deleted event's tombstone: un-cancel it); Graph ``transactionId``.
* ``changes_many``    ``changes`` of several calendars at once, and
* ``apply``           several writes (``Create``, ``End``, ``Agendas``) on any managers' calendars
  at once: a provider with batch requests (Google 50 calls, Graph ``$batch`` 20) fills each
  round trip across managers and series, so a cold start of a big roster costs a few round trips
  per fifty series rather than several per manager; CalDAV does the work one by one.
* ``end_series``      ``RRULE UNTIL`` (UTC when DTSTART has a TZID); Graph PATCHes the whole
  ``recurrence`` with ``range.type: endDate``.
* ``write_agendas``   the series' and some occurrences' agenda blocks (overrides with
  ``RECURRENCE-ID`` / instance PATCH); only the text between the markers is owned.
* ``set_attendees``   who is invited to the series and to some occurrences (a team's pipeline
  review follows the roster; the VP joins one occurrence a month): CalDAV ``ATTENDEE`` lines on
  the master and on overrides, Google ``attendees`` on the event and on instance exceptions, Graph
  ``attendees`` on the master and on occurrences. People who stay keep their answers.
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

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from daemon.errors import ProviderError, Transient


@dataclass(frozen=True)
class Capabilities:
    sync_tokens: bool = True
    free_busy: bool = False
    # ``changes_many`` and ``apply`` go out as a few batch requests (not one call per item),
    # so a breaker in front judges the endpoint by the whole call.
    batches: bool = False


@dataclass(frozen=True)
class Create:
    """``create_series(manager, series)`` as one of several writes."""

    manager: str
    series: SeriesSpec


@dataclass(frozen=True)
class End:
    """``end_series(manager, uid, until)`` as one of several writes."""

    manager: str
    uid: str
    until: date


@dataclass(frozen=True)
class Agendas:
    """``write_agendas(manager, uid, master_block, occurrence_blocks)`` as one of several."""

    manager: str
    uid: str
    master_block: str | None
    occurrence_blocks: Mapping[datetime, str] = field(default_factory=dict)


Write = Create | End | Agendas


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

    def changes_many(
        self, tokens: Mapping[str, str | None]
    ) -> Mapping[str, Changes | ProviderError]:
        """``changes(manager, token)`` for each manager: its ``Changes``, or the error (a
        ``TokenExpired``, a ``NotFound`` calendar...) that it would have raised."""

    def apply(self, writes: Sequence[Write]) -> list[ProviderError | None]:
        """Each write done as its single verb would do it: its error, or None, in order.

        The writes name different series, so their order is free. A calendar that is down
        answers a ``Transient`` for each of its writes.
        """

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

    def set_attendees(
        self,
        manager: str,
        uid: str,
        attendees: Mapping[datetime | None, Sequence[Attendee]],
    ) -> None:
        """Make the attendees (besides the organiser) of the series (key None) and of the
        occurrences named by their original start exactly these people; newcomers are invited.

        People who stay keep their answers. An occurrence without an override gets one at its
        original time (as ``write_agendas`` makes them); cancelled occurrences, and occurrences
        not named, are left alone.
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


class WritesByApply(ABC):
    """The single write verbs as one-write ``apply`` calls, for a provider whose ``apply``
    batches (Google, Graph): one code path for a write, whichever way it is asked for."""

    @abstractmethod
    def apply(self, writes: Sequence[Write]) -> list[ProviderError | None]: ...

    def create_series(self, manager: str, series: SeriesSpec) -> None:
        done(self.apply([Create(manager, series)]))

    def end_series(self, manager: str, uid: str, until: date) -> None:
        done(self.apply([End(manager, uid, until)]))

    def write_agendas(
        self,
        manager: str,
        uid: str,
        master_block: str | None,
        occurrence_blocks: Mapping[datetime, str],
    ) -> None:
        done(self.apply([Agendas(manager, uid, master_block, occurrence_blocks)]))


def one_by_one(provider: CalendarProvider, writes: Sequence[Write]) -> list[ProviderError | None]:
    """``apply`` by the single verbs, for a provider without batch requests. After a calendar
    answered ``Transient``, its other writes get the same answer without being tried."""
    down: dict[str, ProviderError] = {}
    out: list[ProviderError | None] = []
    for write in writes:
        if write.manager in down:
            out.append(down[write.manager])
            continue
        try:
            if isinstance(write, Create):
                provider.create_series(write.manager, write.series)
            elif isinstance(write, End):
                provider.end_series(write.manager, write.uid, write.until)
            else:
                provider.write_agendas(
                    write.manager, write.uid, write.master_block, write.occurrence_blocks
                )
            out.append(None)
        except Transient as err:
            down[write.manager] = err
            out.append(err)
        except ProviderError as err:
            out.append(err)
    return out


def each_changes(
    provider: CalendarProvider, tokens: Mapping[str, str | None]
) -> dict[str, Changes | ProviderError]:
    """``changes_many`` by ``changes``, for a provider without batch requests."""
    out: dict[str, Changes | ProviderError] = {}
    for manager, token in tokens.items():
        try:
            out[manager] = provider.changes(manager, token)
        except ProviderError as err:
            out[manager] = err
    return out


def done(outcome: Sequence[ProviderError | None]) -> None:
    """A single verb built on ``apply``: raise its one error."""
    for error in outcome:
        if error is not None:
            raise error
