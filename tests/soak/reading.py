"""An independent reading of a calendar event: what a person sees, computed without the
daemon's own iCalendar code (icalendar for parsing, dateutil for the rule)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from icalendar import Calendar

BEGIN = "=== cadence agenda: begin"
END = "=== cadence agenda: end (write your own notes below) ==="


def key_of(uid: str, original: datetime) -> str:
    """The X-Cadence-Occurrence header value for an occurrence (SPEC)."""
    return f"{uid} {original.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def outside(description: str) -> str:
    """The description without cadence's block: the part people own."""
    start = description.find(BEGIN)
    end = description.find(END)
    if start < 0 or end < 0:
        return description
    return description[:start] + description[end + len(END) :]


def emails_of(value: Any) -> list[str]:
    values = value if isinstance(value, list) else ([value] if value is not None else [])
    return [str(v).lower().removeprefix("mailto:") for v in values]


@dataclass
class Override:
    start: datetime
    cancelled: bool
    declined_by: set[str]
    description: str


@dataclass
class Series:
    uid: str
    manager: str
    owned: bool
    rep: str | None
    start: datetime
    duration: timedelta
    rule: str | None
    until: date | None
    days_per_week: int
    exdates: set[datetime] = field(default_factory=set)
    overrides: dict[datetime, Override] = field(default_factory=dict)
    description: str = ""

    def scheduled(self, start: datetime, end: datetime) -> list[datetime]:
        """Original starts the rule makes in [start, end), ignoring what people did."""
        if self.rule is None:
            return [self.start] if start <= self.start < end else []
        rule = rrulestr(self.rule, dtstart=self.start)
        return [d for d in rule.between(start, end, inc=True) if d < end]

    def happening(self, original: datetime) -> tuple[datetime, bool]:
        """(actual start, cancelled) of one original occurrence, after people's edits."""
        if original in self.exdates:
            return original, True
        found = self.overrides.get(original)
        if found is None:
            return original, False
        return found.start, found.cancelled or bool(found.declined_by)


def read_series(manager: str, uid: str, cal: Calendar) -> Series:
    events = list(cal.walk("VEVENT"))
    master = next((e for e in events if "RECURRENCE-ID" not in e), events[0])
    start = master.decoded("DTSTART")
    if isinstance(start, datetime) and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if "DURATION" in master:
        duration = master.decoded("DURATION")
    elif "DTEND" in master:
        duration = master.decoded("DTEND") - start
    else:
        duration = timedelta(0)
    rule_text = None
    until: date | None = None
    days = 1
    if "RRULE" in master:
        rule = master["RRULE"]
        rule_text = rule.to_ical().decode()
        days = len(rule.get("BYDAY", [])) or 1
        if rule.get("UNTIL"):
            value = rule["UNTIL"][0]
            zone = start.tzinfo if isinstance(start.tzinfo, ZoneInfo) else UTC
            until = value.astimezone(zone).date() if isinstance(value, datetime) else value
    attendees = emails_of(master.get("ATTENDEE"))
    rep = next((a for a in attendees if a != manager), None)
    series = Series(
        uid=uid, manager=manager, owned="X-CADENCE-SERIES" in master, rep=rep, start=start,
        duration=duration, rule=rule_text, until=until, days_per_week=days,
        description=str(master.get("DESCRIPTION", "")),
    )  # fmt: skip
    for value in (
        master.get("EXDATE", [])
        if isinstance(master.get("EXDATE"), list)
        else ([master["EXDATE"]] if "EXDATE" in master else [])
    ):
        for d in value.dts:
            series.exdates.add(d.dt if d.dt.tzinfo else d.dt.replace(tzinfo=start.tzinfo))
    for event in events:
        if "RECURRENCE-ID" not in event:
            continue
        rid = event.decoded("RECURRENCE-ID")
        declined = set()
        for value in (
            event.get("ATTENDEE", [])
            if isinstance(event.get("ATTENDEE"), list)
            else [event.get("ATTENDEE")]
        ):
            if value is not None and str(value.params.get("PARTSTAT", "")).upper() == "DECLINED":
                declined.add(str(value).lower().removeprefix("mailto:"))
        series.overrides[rid] = Override(
            start=event.decoded("DTSTART"),
            cancelled=str(event.get("STATUS", "")).upper() == "CANCELLED",
            declined_by=declined,
            description=str(event.get("DESCRIPTION", "")),
        )
    return series
