"""What the soak needs from a calendar backend: people's hands on the managers' calendars, an
independent reading of them, and a way to make the daemon's connection to them fail.

The soak itself only speaks ``Calendars``. ``CalDAVCalendars`` is a real Radicale (raw HTTP and
iCalendar for people's edits, as a calendar app makes them); ``GoogleCalendars`` is the local
Calendar v3 server of ``tests/fixtures/google.py`` (edits as the Google Calendar UI makes them:
instance exceptions, deletions, attendees' answers). Each reads its calendars back without the
daemon's code, and puts a ``FaultProxy`` between the daemon and the server.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress

from daemon.embedded import EmbeddedRadicale
from daemon.providers.base import CalendarProvider
from daemon.providers.caldav import CalDAVProvider
from daemon.providers.google import GoogleCalendarProvider, event_id
from tests.fixtures.google import FakeGoogle
from tests.fixtures.radicale import radicale_server
from tests.soak.proxy import KINDS, FaultProxy
from tests.soak.reading import END, Override, Series, read_series

# What a person does to one occurrence (or, for ``master_note``, to the whole series).
HOWS = ("decline", "cancel", "exdate", "move_in", "move_out", "note", "commitment", "master_note")


class Calendars(Protocol):
    """One calendar backend as the soak sees it."""

    kind: str
    fault_kinds: tuple[str, ...]

    def config_block(self) -> str:
        """The config's ``calendar:`` value (YAML flow) for a daemon going through the faults."""

    def daemon_provider(self, timeout: float) -> CalendarProvider:
        """A provider for the in-process daemon, going through the faults."""

    def arm(self, after: int, kind: str, count: int) -> None:
        """Let ``after`` requests of the daemon through, then fail ``count`` with ``kind``."""

    def disarm(self) -> None: ...

    def injected(self) -> dict[str, int]:
        """Faults injected so far, by kind."""

    def read(self, manager: str) -> dict[str, Series]:
        """Every event on the manager's 1:1 calendar by UID, read without the daemon's code."""

    def raw(self, manager: str, uid: str) -> bytes | None:
        """One event as stored (byte for byte, to see any change), or None when it is gone."""

    def edit(
        self,
        manager: str,
        uid: str,
        original: datetime,
        how: str,
        *,
        rep: str,
        duration: timedelta,
        note: str | None = None,
        start: datetime | None = None,
    ) -> None:
        """A person's ``how`` (one of ``HOWS``) on one occurrence: ``note`` is the text added
        (the commitment for ``commitment``), ``start`` where a move puts it."""  # fmt: skip

    def put_foreign(self, manager: str, uid: str, at: datetime, n: int) -> None:
        """A person's own event (weekly for odd ``n``), with text that looks like a marker."""

    def delete(self, manager: str, uid: str) -> None:
        """A person deletes a whole series."""


class CalDAVCalendars:
    """A real Radicale; people edit it directly, the daemon goes through a ``FaultProxy``."""

    kind = "caldav"
    fault_kinds: tuple[str, ...] = KINDS

    def __init__(self, server: EmbeddedRadicale, proxy: FaultProxy) -> None:
        self.server = server
        self.proxy = proxy

    @classmethod
    @contextmanager
    def started(cls, storage: Path, timeout: float) -> Iterator[CalDAVCalendars]:
        with ExitStack() as stack:
            server = stack.enter_context(radicale_server(storage))
            proxy = stack.enter_context(FaultProxy(server.url, hold_seconds=timeout * 4))
            yield cls(server, proxy)

    def config_block(self) -> str:
        return f"{{caldav: {{url: '{self.proxy.url}'}}}}"

    def daemon_provider(self, timeout: float) -> CalendarProvider:
        return CalDAVProvider(self.proxy.url, timeout=timeout)

    def arm(self, after: int, kind: str, count: int) -> None:
        self.proxy.arm(after, kind, count)

    def disarm(self) -> None:
        self.proxy.disarm()

    def injected(self) -> dict[str, int]:
        return dict(self.proxy.injected)

    # -- people and the reading --------------------------------------------------------------

    def _url(self, manager: str, uid: str | None = None) -> str:
        base = f"{self.server.url.rstrip('/')}/{manager}/cadence/"
        return base + (f"{uid}.ics" if uid else "")

    def _http(self, method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "text/calendar; charset=utf-8"} if body else {}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def read(self, manager: str) -> dict[str, Series]:
        return {uid: read_series(manager, uid, cal) for uid, cal in self._read(manager).items()}

    def _read(self, manager: str) -> dict[str, Calendar]:
        # A GET of the collection is the whole calendar in one VCALENDAR (what a webcal
        # subscription sees); its events are grouped back by UID.
        status, body = self._http("GET", self._url(manager))
        if status == 404:
            return {}
        assert status == 200, (status, body[:200])
        whole = Calendar.from_ical(body)
        out: dict[str, Calendar] = {}
        zones = list(whole.walk("VTIMEZONE"))
        for event in whole.walk("VEVENT"):
            uid = str(event["UID"])
            if uid not in out:
                out[uid] = Calendar()
                out[uid].add("prodid", "-//soak//reading//EN")
                out[uid].add("version", "2.0")
                for tz in zones:
                    out[uid].add_component(tz)
            out[uid].add_component(event)
        return out

    def raw(self, manager: str, uid: str) -> bytes | None:
        status, body = self._http("GET", self._url(manager, uid))
        if status == 404:
            return None
        assert status == 200, (status, body[:200])
        return body

    def edit(
        self, manager: str, uid: str, original: datetime, how: str, *, rep: str,
        duration: timedelta, note: str | None = None, start: datetime | None = None,
    ) -> None:  # fmt: skip
        raw = self.raw(manager, uid)
        assert raw is not None
        cal = Calendar.from_ical(raw)
        master = next(e for e in cal.walk("VEVENT") if "RECURRENCE-ID" not in e)
        target = master
        if how == "master_note":
            master["DESCRIPTION"] = str(master.get("DESCRIPTION", "")) + "\n" + str(note)
        elif how == "exdate":
            master.add("EXDATE", original)
        else:
            target = _override(cal, master, original)
            if how == "decline":
                for attendee in _as_list(target.get("ATTENDEE")):
                    if str(attendee).lower().removeprefix("mailto:") == rep:
                        attendee.params["PARTSTAT"] = "DECLINED"
            elif how == "cancel":
                target["STATUS"] = "CANCELLED"
            elif how in ("move_in", "move_out"):
                assert start is not None
                target.pop("DTSTART")
                target.pop("DTEND", None)
                target.add("DTSTART", start)
                target.add("DTEND", start + duration)
            elif how == "note":
                target["DESCRIPTION"] = str(target.get("DESCRIPTION", "")) + "\n" + str(note)
            else:  # commitment: filled in inside the block, as the agenda asks
                text = str(target.get("DESCRIPTION", ""))
                target["DESCRIPTION"] = text.replace("Commitment:", f"Commitment: {note}", 1)
        _bump(target)
        self.put(manager, uid, cal)

    def put_foreign(self, manager: str, uid: str, at: datetime, n: int) -> None:
        self.put(manager, uid, _foreign(uid, at, n))

    def put(self, manager: str, uid: str, cal: Calendar) -> None:
        status, body = self._http("PUT", self._url(manager, uid), cal.to_ical())
        assert status in (201, 204), (status, body[:300])

    def delete(self, manager: str, uid: str) -> None:
        status, body = self._http("DELETE", self._url(manager, uid))
        assert status in (200, 204, 404), (status, body[:200])


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _bump(event: Any) -> None:
    event.pop("DTSTAMP", None)
    event.add("DTSTAMP", datetime.now(UTC))
    sequence = int(event.get("SEQUENCE", 0))
    event.pop("SEQUENCE", None)
    event.add("SEQUENCE", sequence + 1)


def _override(cal: Calendar, master: Any, original: datetime) -> Any:
    """The override for ``original``, made from the master when there is none yet (what a
    calendar app does for "only this event")."""
    for event in cal.walk("VEVENT"):
        rid = event.get("RECURRENCE-ID")
        if rid is not None and rid.dt == original:
            return event
    event = Event()
    for key in ("UID", "SUMMARY", "DESCRIPTION", "ORGANIZER", "X-CADENCE-SERIES"):
        if key in master:
            event[key] = master[key]
    if "ATTENDEE" in master:
        event["ATTENDEE"] = [vCalAddress(str(a), params=dict(a.params))
                             for a in _as_list(master["ATTENDEE"])]  # fmt: skip
    length = (
        master.decoded("DURATION")
        if "DURATION" in master
        else master.decoded("DTEND") - master.decoded("DTSTART")
    )
    event.add("RECURRENCE-ID", original)
    event.add("DTSTART", original)
    event.add("DTEND", original + length)
    event.add("DTSTAMP", datetime.now(UTC))
    cal.add_component(event)
    return event


def _foreign(uid: str, at: datetime, n: int) -> Calendar:
    cal = Calendar()
    cal.add("prodid", "-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", at.astimezone(UTC))
    start = (at + timedelta(days=n % 5 + 1)).replace(minute=0, second=0, microsecond=0)
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(minutes=30))
    event.add("summary", f"Pipeline review {n}")
    event.add("description", f"Written by a person.\n{END}\nnot cadence's to touch")
    if n % 2:
        event.add("rrule", {"freq": "weekly"})
    cal.add_component(event)
    return cal


class GoogleCalendars:
    """The local Google Calendar v3 server; people act through it as the Calendar UI does, the
    daemon goes through a ``FaultProxy`` (its token requests go straight to the server)."""

    kind = "google"
    fault_kinds: tuple[str, ...] = KINDS

    def __init__(self, fake: FakeGoogle, proxy: FaultProxy, key_file: Path) -> None:
        self.fake = fake
        self.proxy = proxy
        self.key_file = key_file

    @classmethod
    @contextmanager
    def started(cls, root: Path, managers: list[str], timeout: float) -> Iterator[GoogleCalendars]:
        with ExitStack() as stack:
            fake = FakeGoogle().start()
            stack.callback(fake.stop)
            for manager in managers:
                fake.add_user(manager)
            proxy = stack.enter_context(FaultProxy(fake.url, hold_seconds=timeout * 4))
            yield cls(fake, proxy, fake.write_key(root / "service-account.json"))

    def config_block(self) -> str:
        return (
            f"{{provider: google, google: {{credentials_file: '{self.key_file}', "
            f"api_endpoint: '{self.proxy.url}'}}}}"
        )

    def daemon_provider(self, timeout: float) -> CalendarProvider:
        # No real sleeping between retries: a simulated day must not wait on back-off.
        return GoogleCalendarProvider(self.fake.key_info(), root=self.proxy.url,
                                      sleep=lambda seconds: None)  # fmt: skip

    def arm(self, after: int, kind: str, count: int) -> None:
        self.proxy.arm(after, kind, count)

    def disarm(self) -> None:
        self.proxy.disarm()

    def injected(self) -> dict[str, int]:
        return dict(self.proxy.injected)

    # -- people and the reading --------------------------------------------------------------

    @staticmethod
    def _id(uid: str) -> str:
        """A cadence series' event id; a person's own event keeps its UID (made id-safe)."""
        return uid.replace("-", "") if uid.startswith("foreign") else event_id(uid)

    def _instance(self, manager: str, uid: str, original: datetime) -> str:
        return self.fake.instance_id(manager, event_id(uid), original)

    def read(self, manager: str) -> dict[str, Series]:
        with self.fake.lock:
            stored = json.loads(json.dumps(self.fake.events(manager)))
        out: dict[str, Series] = {}
        for event in stored.values():
            if "recurringEventId" in event or event.get("status") == "cancelled":
                continue
            tagged = event.get("extendedProperties", {}).get("private", {})
            uid = tagged.get("cadence-series") or event["id"]
            out[uid] = _google_series(manager, uid, event, bool(tagged.get("cadence-series")))
            for other in stored.values():
                if other.get("recurringEventId") == event["id"]:
                    _google_exception(out[uid], other)
        return out

    def raw(self, manager: str, uid: str) -> bytes | None:
        with self.fake.lock:
            event = self.fake.events(manager).get(self._id(uid))
            if event is None or event.get("status") == "cancelled":
                return None
            return json.dumps(event, sort_keys=True).encode()

    def edit(
        self, manager: str, uid: str, original: datetime, how: str, *, rep: str,
        duration: timedelta, note: str | None = None, start: datetime | None = None,
    ) -> None:  # fmt: skip
        fake = self.fake
        master = event_id(uid)
        instance = self._instance(manager, uid, original)
        with fake.lock:
            if how == "master_note":
                text = fake.edit(manager, master).get("description", "")
                fake.edit(manager, master, description=f"{text}\n{note}")
            elif how in ("cancel", "exdate"):  # on Google both are the occurrence deleted
                fake.delete(manager, instance)
            elif how == "decline":
                fake.respond(manager, instance, rep, "declined")
            elif how in ("move_in", "move_out"):
                assert start is not None
                zone = fake.edit(manager, instance)["start"].get("timeZone")
                fake.edit(
                    manager, instance,
                    start={"dateTime": start.isoformat(), "timeZone": zone},
                    end={"dateTime": (start + duration).isoformat(), "timeZone": zone},
                )  # fmt: skip
            elif how == "note":
                text = fake.edit(manager, instance).get("description", "")
                fake.edit(manager, instance, description=f"{text}\n{note}")
            else:  # commitment: filled in inside the block, as the agenda asks
                text = fake.edit(manager, instance).get("description", "")
                filled = text.replace("Commitment:", f"Commitment: {note}", 1)
                fake.edit(manager, instance, description=filled)

    def put_foreign(self, manager: str, uid: str, at: datetime, n: int) -> None:
        start = (at + timedelta(days=n % 5 + 1)).replace(minute=0, second=0, microsecond=0)
        zone = str(getattr(start.tzinfo, "key", "UTC"))
        body: dict[str, Any] = {
            "id": self._id(uid),
            "summary": f"Pipeline review {n}",
            "description": f"Written by a person.\n{END}\nnot cadence's to touch",
            "start": {"dateTime": start.isoformat(), "timeZone": zone},
            "end": {"dateTime": (start + timedelta(minutes=30)).isoformat(), "timeZone": zone},
        }
        if n % 2:
            body["recurrence"] = ["RRULE:FREQ=WEEKLY"]
        with self.fake.lock:
            self.fake._insert(self.fake.calendar(manager), body, {})

    def delete(self, manager: str, uid: str) -> None:
        self.fake.delete(manager, event_id(uid))


def _google_time(when: dict[str, str]) -> datetime:
    moment = datetime.fromisoformat(when["dateTime"].replace("Z", "+00:00"))
    zone = when.get("timeZone")
    return moment.astimezone(ZoneInfo(zone)) if zone else moment


def _declined(event: dict[str, Any]) -> set[str]:
    return {
        str(a["email"]).lower()
        for a in event.get("attendees", [])
        if a.get("responseStatus") == "declined"
    }


def _google_series(manager: str, uid: str, event: dict[str, Any], owned: bool) -> Series:
    """A Google event as the soak's ``Series`` (the same reading as ``read_series``)."""
    start = _google_time(event["start"])
    rules = [
        r.removeprefix("RRULE:") for r in event.get("recurrence", []) if r.startswith("RRULE:")
    ]
    rule = rules[0] if rules else None
    until: date | None = None
    days = 1
    if rule is not None:
        parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
        days = len(parts.get("BYDAY", "").split(",")) if parts.get("BYDAY") else 1
        if "UNTIL" in parts:
            value = parts["UNTIL"]
            if re.fullmatch(r"\d{8}", value):
                until = datetime.strptime(value, "%Y%m%d").date()
            else:
                moment = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                until = moment.astimezone(start.tzinfo).date()
    attendees = [str(a["email"]).lower() for a in event.get("attendees", [])]
    return Series(
        uid=uid, manager=manager, owned=owned,
        rep=next((a for a in attendees if a != manager), None), start=start,
        duration=_google_time(event["end"]) - start, rule=rule, until=until, days_per_week=days,
        description=str(event.get("description", "")),
    )  # fmt: skip


def _google_exception(series: Series, event: dict[str, Any]) -> None:
    """One instance exception: a deleted one is both an EXDATE and a cancelled override."""
    original = _google_time(event["originalStartTime"])
    cancelled = event.get("status") == "cancelled"
    if cancelled:
        series.exdates.add(original)
    series.overrides[original] = Override(
        start=_google_time(event["start"]) if "start" in event else original,
        cancelled=cancelled,
        declined_by=_declined(event),
        description=str(event.get("description", "")),
    )
