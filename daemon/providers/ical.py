"""iCalendar in and out for the CalDAV provider: one recurring series per resource.

CalDAV stores a series and its overrides in one VCALENDAR resource. This module reads such a
resource into an ``ObservedSeries`` (or nothing, when it is not a timed recurring event we can
read), builds the resource for a new series, and edits an existing one in place (end the rule,
splice agenda blocks) so that everything cadence does not own survives byte for byte in meaning:
people's notes, their answers, moved and cancelled occurrences, unknown properties.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from icalendar import Calendar, Component, Event, Timezone, vCalAddress, vRecur

from daemon.core.agenda import splice
from daemon.providers.base import (
    OWNER_PROPERTY,
    Attendee,
    ObservedOverride,
    ObservedSeries,
    SeriesSpec,
)

log = logging.getLogger(__name__)

PRODID = "-//cadence//cadence 1:1 series//EN"
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_LEADING = ("FREQ", "INTERVAL", "BYDAY")
# Generated VTIMEZONEs cover this many years after the series starts (Thunderbird needs one).
_VTIMEZONE_YEARS = 15


class Unreadable(ValueError):
    """The resource is not a timed recurring event this module can read."""


# -- reading ---------------------------------------------------------------------------------


def parse_calendar(data: bytes | str) -> Calendar:
    """Parse a resource; ``Unreadable`` on anything icalendar cannot read."""
    try:
        return Calendar.from_ical(data)
    except Exception as err:  # icalendar raises ValueError, KeyError, IndexError...
        raise Unreadable(f"not iCalendar: {err}") from None


def read_series(data: bytes | str) -> ObservedSeries | None:
    """The recurring series in a resource, or None when it is malformed or not recurring."""
    try:
        return observe(parse_calendar(data))
    except Unreadable as err:
        log.debug("skipping calendar resource: %s", err)
        return None
    except Exception as err:  # a resource written by anyone must never break a pass
        log.debug("skipping calendar resource: %s: %s", type(err).__name__, err)
        return None


def master_of(cal: Calendar) -> Component:
    """The recurring master VEVENT (the one with an RRULE and no RECURRENCE-ID)."""
    for event in cal.walk("VEVENT"):
        if "RECURRENCE-ID" not in event and "RRULE" in event:
            return event
    raise Unreadable("no recurring VEVENT")


def overrides_of(cal: Calendar, uid: str) -> list[Component]:
    return [
        event
        for event in cal.walk("VEVENT")
        if "RECURRENCE-ID" in event and str(event.get("UID", "")) == uid
    ]


def series_zone(master: Component) -> tuple[str, ZoneInfo]:
    """The IANA zone of the master's DTSTART."""
    start = master.decoded("DTSTART")
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise Unreadable("DTSTART is not a date-time with a time zone")
    key = getattr(start.tzinfo, "key", None)
    if key is None and start.tzinfo is UTC:
        key = "UTC"
    if key is None:
        key = str(master["DTSTART"].params.get("TZID", ""))
    try:
        return key, ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unreadable(f"unknown time zone {key!r}") from None


def in_zone(value: date | datetime, zone: ZoneInfo, at: time) -> datetime:
    """An aware datetime in ``zone``; floating values are read in it, dates at ``at``."""
    if not isinstance(value, datetime):
        return datetime.combine(value, at, zone)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value.astimezone(zone)


def observe(cal: Calendar) -> ObservedSeries:
    """Read a parsed resource; ``Unreadable`` when it holds no readable recurring series."""
    master = master_of(cal)
    uid = str(master.get("UID", "")).strip()
    if not uid:
        raise Unreadable("VEVENT without UID")
    name, zone = series_zone(master)
    start: datetime = master.decoded("DTSTART").astimezone(zone)
    duration = _duration(master, start, zone)
    rule = _rule(master)
    rrule, until = canonical_rrule(rule, zone)
    overrides = tuple(
        sorted(
            (_override(event, zone, start.timetz(), duration) for event in overrides_of(cal, uid)),
            key=lambda o: o.recurrence_id,
        )
    )
    return ObservedSeries(
        uid=uid,
        owned=OWNER_PROPERTY in master,
        start=start,
        duration=duration,
        timezone=name,
        rrule=rrule,
        until=until,
        organizer=_email(master.get("ORGANIZER")),
        attendees=_attendees(master),
        description=str(master.get("DESCRIPTION", "")),
        summary=str(master.get("SUMMARY", "")),
        exdates=tuple(sorted(exdates(master, zone, start.timetz()))),
        overrides=overrides,
    )


def _rule(master: Component) -> vRecur:
    rule = master["RRULE"]
    if isinstance(rule, list):
        if len(rule) != 1:
            raise Unreadable("more than one RRULE")
        rule = rule[0]
    if not isinstance(rule, vRecur) or "FREQ" not in rule:
        raise Unreadable("RRULE without FREQ")
    return rule


def _duration(event: Component, start: datetime, zone: ZoneInfo) -> timedelta:
    if "DTEND" in event:
        end = event.decoded("DTEND")
        if not isinstance(end, datetime):
            raise Unreadable("DTEND is not a date-time")
        return in_zone(end, zone, start.timetz()) - start
    if "DURATION" in event:
        duration = event.decoded("DURATION")
        if not isinstance(duration, timedelta):
            raise Unreadable("DURATION is not a duration")
        return duration
    return timedelta(0)


def canonical_rrule(rule: Mapping[str, Any], zone: ZoneInfo) -> tuple[str, date | None]:
    """``FREQ=..;INTERVAL=..;BYDAY=..`` (then other parts by name) and UNTIL as a zone date."""
    parts = {str(key).upper(): value for key, value in rule.items()}
    until_values = parts.pop("UNTIL", None)
    until = None
    if until_values:
        value = until_values[0] if isinstance(until_values, list) else until_values
        until = in_zone(value, zone, time(23, 59, 59)).date()
    parts.setdefault("INTERVAL", [1])
    if parts.get("WKST") in (["MO"], "MO"):  # the default week start says nothing
        parts.pop("WKST")
    if "BYDAY" in parts:
        days = parts["BYDAY"] if isinstance(parts["BYDAY"], list) else [parts["BYDAY"]]
        parts["BYDAY"] = sorted((str(d).upper() for d in days), key=_day_order)
    order = [k for k in _LEADING if k in parts] + sorted(k for k in parts if k not in _LEADING)
    text = ";".join(_recur_text({key: parts[key]}) for key in order)
    return text, until


def _recur_text(parts: Mapping[str, Any]) -> str:
    return str(vRecur(parts).to_ical().decode())  # type: ignore[no-untyped-call]


def _day_order(day: str) -> tuple[int, str]:
    code = day[-2:]
    return (_DAYS.index(code) if code in _DAYS else len(_DAYS), day)


def exdates(master: Component, zone: ZoneInfo, at: time) -> list[datetime]:
    values = master.get("EXDATE")
    if values is None:
        return []
    lists = values if isinstance(values, list) else [values]
    return [in_zone(item.dt, zone, at) for group in lists for item in group.dts]


def _override(event: Component, zone: ZoneInfo, at: time, duration: timedelta) -> ObservedOverride:
    recurrence_id = in_zone(event.decoded("RECURRENCE-ID"), zone, at)
    start = in_zone(event.decoded("DTSTART"), zone, at) if "DTSTART" in event else recurrence_id
    if "DTEND" in event:
        end = in_zone(event.decoded("DTEND"), zone, at)
    elif "DURATION" in event:
        end = start + event.decoded("DURATION")
    else:
        end = start + duration
    return ObservedOverride(
        recurrence_id=recurrence_id,
        start=start,
        end=end,
        cancelled=str(event.get("STATUS", "")).upper() == "CANCELLED",
        attendees=_attendees(event),
        description=str(event.get("DESCRIPTION", "")),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _email(address: Any) -> str:
    if address is None:
        return ""
    text = str(address).strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    return text.lower()


def _attendees(event: Component) -> tuple[Attendee, ...]:
    return tuple(
        Attendee(
            email=_email(address),
            partstat=str(address.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
            name=str(address.params.get("CN", "")),
        )
        for address in _as_list(event.get("ATTENDEE"))
    )


# -- writing ---------------------------------------------------------------------------------


def until_utc(until: date, zone: ZoneInfo) -> datetime:
    """The end of ``until`` in ``zone`` as UTC: RFC 5545 wants UNTIL in UTC with a TZID DTSTART."""
    return datetime.combine(until, time(23, 59, 59), zone).astimezone(UTC)


def _address(email: str, name: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = name
    for key, value in params.items():
        address.params[key.replace("_", "-")] = value
    return address


def build_series(spec: SeriesSpec, now: datetime) -> bytes:
    """The resource for a new series: VTIMEZONE, master VEVENT and agenda overrides."""
    zone = ZoneInfo(spec.timezone)
    start = spec.start.astimezone(zone)
    cal = Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    rule = vRecur.from_ical(spec.rrule)
    if spec.until is not None:
        rule["UNTIL"] = [until_utc(spec.until, zone)]
    master = _event(spec, start, now)
    master.add("RRULE", rule)
    master.add("DESCRIPTION", spec.description)
    cal.add_component(master)
    last = until_utc(spec.until, zone) if spec.until is not None else None
    for original, description in sorted(spec.occurrence_descriptions.items()):
        original = original.astimezone(zone)
        if last is not None and original > last:
            continue
        override = _event(spec, original, now)
        override.add("RECURRENCE-ID", original)
        override.add("DESCRIPTION", description)
        cal.add_component(override)
    cal.subcomponents.insert(0, Timezone.from_ical(_vtimezone(spec.timezone, start.year)))
    return bytes(cal.to_ical())


@lru_cache(maxsize=256)
def _vtimezone(name: str, year: int) -> bytes:
    """The VTIMEZONE of series in ``name`` starting in ``year``. The same for all of them, and
    slow to build (about 20 ms for zones without DST, where icalendar probes every year)."""
    cal = Calendar()
    event = Event()
    event.add("DTSTART", datetime(year, 1, 1, tzinfo=ZoneInfo(name)))
    cal.add_component(event)
    cal.add_missing_timezones(
        first_date=date(year, 1, 1), last_date=date(year + _VTIMEZONE_YEARS, 1, 1)
    )
    _split_rdates(cal)
    (timezone,) = cal.walk("VTIMEZONE")
    return bytes(timezone.to_ical())


def _split_rdates(cal: Calendar) -> None:
    """One RDATE per transition: Radicale (vobject) keeps only the first date of an RDATE list."""
    for zone_rule in [*cal.walk("STANDARD"), *cal.walk("DAYLIGHT")]:
        moments = [
            item.dt for group in _as_list(zone_rule.pop("RDATE", None)) for item in group.dts
        ]
        for moment in moments:
            zone_rule.add("RDATE", moment)


def _event(spec: SeriesSpec, start: datetime, now: datetime) -> Component:
    event = Event()
    event.add("UID", spec.uid)
    event.add("DTSTAMP", now.astimezone(UTC))
    event.add("DTSTART", start)
    event.add("DTEND", start + spec.duration)
    event.add("SUMMARY", spec.summary)
    event.add("ORGANIZER", _address(spec.manager_email, spec.manager_name))
    for person in spec.invitees:
        event.add(
            "ATTENDEE",
            _address(person.email, person.name, ROLE="REQ-PARTICIPANT", PARTSTAT="NEEDS-ACTION"),
        )
    event.add(OWNER_PROPERTY, spec.uid)
    return event


def ends_before_start(cal: Calendar, until: date) -> bool:
    """Whether ending the series at ``until`` leaves it no day at all (it never took place)."""
    master = master_of(cal)
    _, zone = series_zone(master)
    start: datetime = master.decoded("DTSTART").astimezone(zone)
    return until < start.date()


def end_rule(cal: Calendar, until: date) -> bool:
    """Set UNTIL to the end of ``until`` and drop overrides after it; False when already so."""
    master = master_of(cal)
    _, zone = series_zone(master)
    rule = _rule(master)
    _, current = canonical_rrule(rule, zone)
    if current == until and "COUNT" not in rule:
        return False
    rule.pop("COUNT", None)
    rule["UNTIL"] = [until_utc(until, zone)]
    start_at = master.decoded("DTSTART").astimezone(zone).timetz()
    uid = str(master.get("UID", ""))
    for event in overrides_of(cal, uid):
        if in_zone(event.decoded("RECURRENCE-ID"), zone, start_at).date() > until:
            cal.subcomponents.remove(event)
    return True


def splice_agendas(
    cal: Calendar,
    master_block: str | None,
    occurrence_blocks: Mapping[datetime, str],
    now: datetime,
) -> bool:
    """Splice agenda blocks into the master and the given occurrences; True when text changed.

    Cancelled overrides, EXDATEd starts and starts the rule does not produce are left alone.
    """
    master = master_of(cal)
    _, zone = series_zone(master)
    start: datetime = master.decoded("DTSTART").astimezone(zone)
    uid = str(master.get("UID", ""))
    changed = False
    if master_block is not None:
        changed |= _set_description(master, splice(_text(master), master_block), now)
    by_start = {
        in_zone(event.decoded("RECURRENCE-ID"), zone, start.timetz()): event
        for event in overrides_of(cal, uid)
    }
    removed = set(exdates(master, zone, start.timetz()))
    produces = _occurs(master, start)
    duration = _duration(master, start, zone)
    for original, block in sorted(occurrence_blocks.items()):
        original = original.astimezone(zone)
        override = by_start.get(original)
        if override is not None:
            if str(override.get("STATUS", "")).upper() != "CANCELLED":
                changed |= _set_description(override, splice(_text(override), block), now)
        elif original not in removed and produces(original):
            text = splice(_text(master), block)
            cal.add_component(_new_override(master, original, duration, text, now))
            changed = True
    return changed


def set_attendees(
    cal: Calendar, wanted: Mapping[datetime | None, Sequence[Attendee]], now: datetime
) -> bool:
    """Make the master's (key None) and the named occurrences' attendees exactly ``wanted``;
    True when anything changed. People who stay keep their answers; an occurrence without an
    override gets one; cancelled overrides and starts the rule does not produce are left."""
    master = master_of(cal)
    _, zone = series_zone(master)
    start: datetime = master.decoded("DTSTART").astimezone(zone)
    uid = str(master.get("UID", ""))
    changed = False
    if None in wanted:
        changed |= _set_people(master, wanted[None], now)
    by_start = {
        in_zone(event.decoded("RECURRENCE-ID"), zone, start.timetz()): event
        for event in overrides_of(cal, uid)
    }
    removed = set(exdates(master, zone, start.timetz()))
    produces = _occurs(master, start)
    duration = _duration(master, start, zone)
    for original, people in sorted((k, v) for k, v in wanted.items() if k is not None):
        original = original.astimezone(zone)
        override = by_start.get(original)
        if override is None:
            if original in removed or not produces(original):
                continue
            override = _new_override(master, original, duration, _text(master), now)
            cal.add_component(override)
            changed = True
        elif str(override.get("STATUS", "")).upper() == "CANCELLED":
            continue
        changed |= _set_people(override, people, now)
    return changed


def _set_people(event: Component, people: Sequence[Attendee], now: datetime) -> bool:
    current = _as_list(event.get("ATTENDEE"))
    by_email = {_email(address): address for address in current}
    wanted = [p.email.lower() for p in people]
    if sorted(by_email) == sorted(wanted) and len(current) == len(wanted):
        return False
    event.pop("ATTENDEE", None)
    for person in people:
        kept = by_email.get(person.email.lower())
        event.add(
            "ATTENDEE",
            kept
            if kept is not None
            else _address(person.email, person.name, ROLE="REQ-PARTICIPANT",
                          PARTSTAT="NEEDS-ACTION"),
        )  # fmt: skip
    event.pop("DTSTAMP", None)
    event.add("DTSTAMP", now.astimezone(UTC))
    return True


def _text(event: Component) -> str:
    return str(event.get("DESCRIPTION", ""))


def _set_description(event: Component, text: str, now: datetime) -> bool:
    if text == _text(event):
        return False
    event.pop("DESCRIPTION", None)
    event.add("DESCRIPTION", text)
    event.pop("DTSTAMP", None)
    event.add("DTSTAMP", now.astimezone(UTC))
    return True


def _occurs(master: Component, start: datetime) -> Callable[[datetime], bool]:
    """Whether the master's rule produces an occurrence starting at a given moment."""
    try:
        recurrence = rrulestr(_recur_text(_rule(master)), dtstart=start, ignoretz=False)
    except (ValueError, TypeError):  # a rule dateutil cannot expand: only reject the obvious
        return lambda moment: moment >= start

    def produces(moment: datetime) -> bool:
        if moment < start:
            return False
        found = recurrence.after(moment - timedelta(seconds=1), inc=True)
        return found is not None and found == moment

    return produces


def _new_override(
    master: Component, original: datetime, duration: timedelta, text: str, now: datetime
) -> Component:
    """An override at the original time carrying the master's people, summary and owner tag."""
    event = Event()
    for name in ("UID", "SUMMARY", "ORGANIZER", "LOCATION", OWNER_PROPERTY):
        if name in master:
            event[name] = master[name]
    for attendee in _as_list(master.get("ATTENDEE")):
        event.add("ATTENDEE", attendee)
    event.add("DTSTAMP", now.astimezone(UTC))
    event.add("RECURRENCE-ID", original)
    event.add("DTSTART", original)
    event.add("DTEND", original + duration)
    event.add("DESCRIPTION", text)
    return event


def serialize(cal: Calendar) -> bytes:
    return bytes(cal.to_ical())
