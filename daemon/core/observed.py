"""What a calendar holds, as plain values: the series the daemon wants and the series it sees.

These live in the core (not with the providers) so that the planner and the cancellation
accounting can reason about observed calendars without importing any provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from daemon.core.model import WorkingHours

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
class CalendarHours:
    """A manager's working hours as their calendar service keeps them (Outlook's mailbox
    settings), in the zone the service gives them in, which need not be the roster's zone for
    that manager. The roster's own ``working_hours`` win over these."""

    hours: WorkingHours
    timezone: str  # IANA


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
    # Everyone invited besides the organiser, when not the rep alone (a team's pipeline review).
    attendees: tuple[Attendee, ...] = ()

    @property
    def invitees(self) -> tuple[Attendee, ...]:
        """The people the series invites: ``attendees``, or else the rep."""
        return self.attendees or (Attendee(self.rep_email, "NEEDS-ACTION", self.rep_name),)
