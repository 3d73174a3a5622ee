"""What the soak needs from a calendar backend: people's hands on the managers' calendars, an
independent reading of them, and a way to make the daemon's connection to them fail.

The soak itself only speaks ``Calendars``. ``CalDAVCalendars`` is a real Radicale (raw HTTP and
iCalendar for people's edits, as a calendar app makes them); ``GoogleCalendars`` is the local
Calendar v3 server of ``tests/fixtures/google.py`` (edits as the Google Calendar UI makes them:
instance exceptions, deletions, attendees' answers); ``OutlookCalendars`` is the local Graph of
``tests/fixtures/graph.py`` (edits as Outlook makes them). Each reads its calendars back without
the daemon's code, and fails the daemon's requests on cue: through a ``FaultProxy``, or for
Graph (HTTPS, absolute links) inside the fake server, from the same ``FaultPlan``.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress

from daemon.embedded import EmbeddedRadicale
from daemon.graph_http import GraphClient, GraphSettings
from daemon.providers.base import CalendarProvider
from daemon.providers.caldav import CalDAVProvider
from daemon.providers.google import GoogleCalendarProvider, event_id
from daemon.providers.graph import GraphCalendarProvider, text_html
from tests.fixtures.google import FakeGoogle
from tests.fixtures.graph import FakeGraph, html_to_text
from tests.fixtures.graph import zone_of as graph_zone_of
from tests.fixtures.radicale import radicale_server
from tests.soak.proxy import KINDS, FaultPlan, FaultProxy
from tests.soak.reading import END, Override, Series, read_series

# What a person does to one occurrence (or, for ``master_note``, to the whole series).
HOWS = ("decline", "cancel", "exdate", "move_in", "move_out", "note", "commitment", "master_note")


class Calendars(Protocol):
    """One calendar backend as the soak sees it."""

    kind: str
    fault_kinds: tuple[str, ...]

    def config_block(self) -> str:
        """The config's ``calendar:`` value (YAML flow) for a daemon going through the faults."""

    def daemon_provider(self, timeout: float, clock: Callable[[], datetime]) -> CalendarProvider:
        """A provider for the in-process daemon, going through the faults; ``clock`` is the
        pass's simulated time (Graph reads a window of time around it)."""

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

    def daemon_provider(self, timeout: float, clock: Callable[[], datetime]) -> CalendarProvider:
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

    def daemon_provider(self, timeout: float, clock: Callable[[], datetime]) -> CalendarProvider:
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


class OutlookCalendars:
    """The local Graph (HTTPS); people act through it as Outlook does, the daemon's requests
    fail inside the server on the soak's ``FaultPlan`` (identity requests included)."""

    kind = "outlook"
    fault_kinds: tuple[str, ...] = KINDS
    CALENDAR = "1:1s (cadence)"

    def __init__(self, fake: FakeGraph, plan: FaultPlan) -> None:
        self.fake = fake
        self.plan = plan
        self.foreign: dict[tuple[str, str], str] = {}  # (manager, uid) -> Graph id

    @classmethod
    @contextmanager
    def started(cls, root: Path, managers: list[str], timeout: float) -> Iterator[OutlookCalendars]:
        (root / "graph").mkdir(parents=True, exist_ok=True)
        fake = FakeGraph(root / "graph")
        for manager in managers:
            fake.add_mailbox(manager)
        fake.open_domain = "acme.test"
        plan = FaultPlan(hold_seconds=timeout * 4)
        fake.faults = plan
        fake.start()
        try:
            yield cls(fake, plan)
        finally:
            plan.disarm()
            fake.stop()

    def environment(self) -> dict[str, str]:
        """What a `cadence once` of this config needs in its environment: the secret, the CA."""
        return {"CADENCE_GRAPH_SECRET": self.fake.client_secret,
                "REQUESTS_CA_BUNDLE": str(self.fake.ca_file)}  # fmt: skip

    def config_block(self) -> str:
        return (
            "{provider: outlook, outlook: {"
            f"tenant_id: {self.fake.tenant}, client_id: {self.fake.client_id}, "
            f"authority_host: '{self.fake.url}', graph_endpoint: '{self.fake.url}', "
            f"calendar: '{self.CALENDAR}'}}}}"
        )

    def daemon_provider(self, timeout: float, clock: Callable[[], datetime]) -> CalendarProvider:
        client = GraphClient(
            GraphSettings(
                tenant_id=self.fake.tenant, client_id=self.fake.client_id,
                client_secret=self.fake.client_secret, authority_host=self.fake.url,
                graph_endpoint=self.fake.url, ca_bundle=str(self.fake.ca_file), timeout=timeout,
            ),
            sleep=lambda seconds: None,
        )  # fmt: skip
        return GraphCalendarProvider(client, self.CALENDAR, clock=clock)

    def arm(self, after: int, kind: str, count: int) -> None:
        self.plan.arm(after, kind, count)

    def disarm(self) -> None:
        self.plan.disarm()

    def injected(self) -> dict[str, int]:
        return dict(self.plan.injected)

    # -- people and the reading --------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.fake.issue_token()}",
                   "Prefer": 'outlook.timezone="UTC"'}  # fmt: skip
        raw = json.dumps(body).encode() if body is not None else b""
        status, _, answer = self.fake.handle(method, f"/v1.0{path}", headers, raw)
        assert status < 300, (method, path, status, answer)
        return json.loads(answer) if answer else None

    def _calendar(self, manager: str) -> str:
        """The id of the manager's cadence calendar; a person's event made first creates it."""
        with self.fake.lock:
            box = self.fake.mailboxes[manager]
            for calendar_id, name in box.calendars.items():
                if name == self.CALENDAR:
                    return calendar_id
        made = self._call("POST", f"/users/{manager}/calendars", {"name": self.CALENDAR})
        return str(made["id"])

    def _instance(self, manager: str, uid: str, original: datetime) -> str:
        master = self.fake.master(manager, uid).id
        start = (original - timedelta(days=8)).astimezone(UTC)
        end = (original + timedelta(days=8)).astimezone(UTC)
        window = f"startDateTime={start:%Y-%m-%dT%H:%MZ}&endDateTime={end:%Y-%m-%dT%H:%MZ}"
        instances = self._call("GET", f"/users/{manager}/events/{master}/instances?{window}")
        wanted = original.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        (found,) = [i for i in instances["value"] if i["originalStart"] == wanted]
        return str(found["id"])

    def _retype(self, manager: str, graph_id: str, change: Callable[[str], str]) -> None:
        body = self._call("GET", f"/users/{manager}/events/{graph_id}")["body"]["content"]
        html = text_html(change(html_to_text(body)))
        self._call("PATCH", f"/users/{manager}/events/{graph_id}",
                   {"body": {"contentType": "html", "content": html}})  # fmt: skip

    def read(self, manager: str) -> dict[str, Series]:
        out: dict[str, Series] = {}
        with self.fake.lock:
            box = self.fake.mailboxes[manager]
            calendars = {i for i, name in box.calendars.items() if name == self.CALENDAR}
            for stored in list(box.events.values()):
                if stored.deleted_seq is not None or stored.calendar not in calendars:
                    continue
                props = stored.data.get("singleValueExtendedProperties") or []
                tag = next((str(p["value"]) for p in props if p.get("value")), None)
                uid = tag or next(
                    (u for (m, u), i in self.foreign.items() if m == manager and i == stored.id),
                    stored.id,
                )
                out[uid] = self._series(manager, uid, stored, tag is not None)
        return out

    def _series(self, manager: str, uid: str, stored: Any, owned: bool) -> Series:
        data = stored.data
        zone = graph_zone_of(data["start"]["timeZone"]) or ZoneInfo("UTC")
        start = datetime.fromisoformat(data["start"]["dateTime"][:19]).replace(tzinfo=zone)
        end = datetime.fromisoformat(data["end"]["dateTime"][:19]).replace(
            tzinfo=graph_zone_of(data["end"]["timeZone"]) or zone
        )
        rule = None
        until: date | None = None
        days = 1
        recurrence = data.get("recurrence")
        if recurrence:
            pattern, span = recurrence["pattern"], recurrence["range"]
            byday = [d[:2].upper() for d in pattern["daysOfWeek"]]
            days = len(byday)
            first = str(pattern.get("firstDayOfWeek", "sunday"))[:2].upper()
            rule = (f"FREQ=WEEKLY;INTERVAL={pattern.get('interval', 1)};BYDAY={','.join(byday)}"
                    f";WKST={first}")  # fmt: skip
            if span["type"] == "endDate":
                until = date.fromisoformat(span["endDate"])
                last = datetime.combine(until, datetime.max.time(), zone).astimezone(UTC)
                rule += f";UNTIL={last:%Y%m%dT%H%M%SZ}"
        attendees = [str(a["emailAddress"]["address"]).lower() for a in data.get("attendees") or []]
        series = Series(
            uid=uid, manager=manager, owned=owned,
            rep=next((a for a in attendees if a != manager), None), start=start,
            duration=end - start, rule=rule, until=until, days_per_week=days,
            description=html_to_text((data.get("body") or {}).get("content", "")),
        )  # fmt: skip
        originals = {o.date(): o for o in self.fake._originals(stored, _last_day(stored))}
        for day in stored.cancelled:
            original = originals[day]
            series.exdates.add(original)
            series.overrides[original] = Override(original, True, set(), "")
        for day, exception in stored.exceptions.items():
            original = originals[day]
            moved = datetime.fromisoformat(exception["start"]["dateTime"][:19]).replace(
                tzinfo=graph_zone_of(exception["start"]["timeZone"]) or UTC
            )
            declined = {
                str(a["emailAddress"]["address"]).lower()
                for a in exception.get("attendees") or []
                if (a.get("status") or {}).get("response") == "declined"
            }
            body = html_to_text((exception.get("body") or {}).get("content", ""))
            series.overrides[original] = Override(moved, False, declined, body)
        return series

    def raw(self, manager: str, uid: str) -> bytes | None:
        with self.fake.lock:
            graph_id = self.foreign.get((manager, uid))
            try:
                stored = (
                    self.fake.mailboxes[manager].events.get(graph_id)
                    if graph_id
                    else self.fake.master(manager, uid)
                )
            except KeyError:
                return None
            if stored is None or stored.deleted_seq is not None:
                return None
            state = {"data": stored.data, "cancelled": sorted(map(str, stored.cancelled)),
                     "exceptions": {str(d): e for d, e in stored.exceptions.items()}}  # fmt: skip
            return json.dumps(state, sort_keys=True).encode()

    def edit(
        self, manager: str, uid: str, original: datetime, how: str, *, rep: str,
        duration: timedelta, note: str | None = None, start: datetime | None = None,
    ) -> None:  # fmt: skip
        if how == "master_note":
            self._retype(manager, self.fake.master(manager, uid).id, lambda t: f"{t}\n{note}")
            return
        if how == "decline":
            self.fake.respond(manager, self.fake.master(manager, uid).id, rep, "declined",
                              original=original)  # fmt: skip
            return
        instance = self._instance(manager, uid, original)
        if how in ("cancel", "exdate"):  # in Outlook both are the organiser deleting it
            self._call("DELETE", f"/users/{manager}/events/{instance}")
        elif how in ("move_in", "move_out"):
            assert start is not None
            utc = start.astimezone(UTC)
            self._call("PATCH", f"/users/{manager}/events/{instance}", {
                "start": {"dateTime": f"{utc:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
                "end": {"dateTime": f"{utc + duration:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            })  # fmt: skip
        elif how == "note":
            self._retype(manager, instance, lambda t: f"{t}\n{note}")
        else:  # commitment: filled in inside the block, as the agenda asks
            self._retype(manager, instance,
                         lambda t: t.replace("Commitment:", f"Commitment: {note}", 1))  # fmt: skip

    def put_foreign(self, manager: str, uid: str, at: datetime, n: int) -> None:
        start = (at + timedelta(days=n % 5 + 1)).replace(minute=0, second=0, microsecond=0)
        utc = start.astimezone(UTC)
        body: dict[str, Any] = {
            "subject": f"Pipeline review {n}",
            "body": {"contentType": "text",
                     "content": f"Written by a person.\n{END}\nnot cadence's to touch"},
            "start": {"dateTime": f"{utc:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            "end": {"dateTime": f"{utc + timedelta(minutes=30):%Y-%m-%dT%H:%M:%S}",
                    "timeZone": "UTC"},
        }  # fmt: skip
        if n % 2:
            body["recurrence"] = {
                "pattern": {"type": "weekly", "interval": 1,
                            "daysOfWeek": [utc.strftime("%A").lower()]},
                "range": {"type": "noEnd", "startDate": utc.date().isoformat()},
            }  # fmt: skip
        calendar = self._calendar(manager)
        made = self._call("POST", f"/users/{manager}/calendars/{calendar}/events", body)
        self.foreign[(manager, uid)] = str(made["id"])

    def delete(self, manager: str, uid: str) -> None:
        self._call("DELETE", f"/users/{manager}/events/{self.fake.master(manager, uid).id}")


def _last_day(stored: Any) -> date:
    """The last day whose occurrences the reading needs: its exceptions' and cancellations'."""
    days = [*stored.cancelled, *stored.exceptions]
    return max(days) if days else date.min
