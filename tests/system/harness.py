"""A test deployment: a config on a real calendar server, a Maildir outbox, a ledger in tmp, and a
person's hands on the calendar.

``Deployment`` is CalDAV on a real Radicale (raw iCalendar edits over HTTP, as a calendar app
would make them); ``GoogleDeployment`` is Google Calendar on the local Calendar v3 server (edits
as the Google Calendar UI makes them: instance exceptions, deletions, attendees' answers). The
system tests speak only the provider-neutral verbs (``cancel``, ``decline``, ``move``,
``edit_texts``...), so each runs on both."""

from __future__ import annotations

import email
import json
import mailbox
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

from icalendar import Calendar, vCalAddress

from daemon.config import Config, load
from daemon.core.observed import ObservedSeries
from daemon.graph_http import GraphClient, GraphSettings
from daemon.providers.base import CalendarProvider
from daemon.providers.caldav import CalDAVProvider
from daemon.providers.google import GoogleCalendarProvider, event_id
from daemon.providers.graph import GraphCalendarProvider, text_html, windows_zone
from daemon.reconcile import PassResult, run_pass, runtime
from tests.fixtures.google import FakeGoogle
from tests.fixtures.graph import FakeGraph, html_to_text
from tests.fixtures.graph import zone_of as graph_zone_of

REPO = Path(__file__).resolve().parents[2]
SENDER = "cadence@acme.test"

ORG = """\
organization: {name: Acme, timezone: America/New_York, fiscal_year_start: "02-01"}
"""


@dataclass
class Deployment:
    root: Path
    url: str
    managers: list[str]

    @property
    def config_path(self) -> Path:
        return self.root / "cadence.yaml"

    kind = "caldav"

    def calendar_config(self) -> str:
        calendar = f"{{url: '{self.url}'}}" if self.url else "{embedded_port: 0}"
        return f"{{caldav: {calendar}}}"

    def break_calendar(self, port: int) -> None:
        """Point the config at a port where nothing listens."""
        self.url = f"http://127.0.0.1:{port}/"

    def write_config(
        self, managers: str, reps: str, extra: str = "", mail: str | None = None
    ) -> None:
        """The config on this deployment's calendar (the embedded one when ``url`` is empty)
        and outbox; ``mail`` (e.g. ``"transport: smtp, smtp: {...}"``) replaces the outbox."""
        mail = mail or f"maildir: {self.root / 'outbox'}"
        self.config_path.write_text(
            ORG
            + "managers:\n" + textwrap.indent(textwrap.dedent(managers), "  ")
            + "reps:\n" + textwrap.indent(textwrap.dedent(reps), "  ")
            + f"state_dir: {self.root / 'state'}\n"
            + f"calendar: {self.calendar_config()}\n"
            + f"mail: {{from: 'cadence <cadence@acme.test>', {mail}}}\n"
            + extra
        )  # fmt: skip

    def config(self) -> Config:
        return load(self.config_path)

    def once(self, now: datetime, restore_missing: bool = False) -> PassResult:
        with runtime(self.config(), restore_missing=restore_missing) as rt:
            return run_pass(rt, now)

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.saw(args)
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", *args, "--config", str(self.config_path)],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
        )  # fmt: skip

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """``cadence ARGS`` started and left running; its stderr is a pipe to read."""
        self.saw(args)
        return subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", *args, "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, cwd=REPO,
        )  # fmt: skip

    def saw(self, args: Sequence[str]) -> None:
        """A command line about to run (a provider's view may depend on its ``--now``)."""

    # --- the calendar, as people and apps see it ------------------------------------------

    def provider(self) -> CalendarProvider:
        return CalDAVProvider(self.url)

    def series(self, manager: str) -> dict[str, ObservedSeries]:
        changes = self.provider().changes(manager, None)
        return {s.uid: s for s in changes.changed if s.owned}

    def rep_series(self, manager: str, rep: str) -> list[ObservedSeries]:
        found = [
            s for s in self.series(manager).values() if any(a.email == rep for a in s.attendees)
        ]
        return sorted(found, key=lambda s: s.start)

    def resource(self, manager: str, uid: str) -> str:
        return f"{self.url.rstrip('/')}/{manager}/cadence/{uid}.ics"

    def get_raw(self, manager: str, uid: str) -> bytes:
        with urllib.request.urlopen(self.resource(manager, uid), timeout=10) as response:
            body: bytes = response.read()
            return body

    def get(self, manager: str, uid: str) -> Calendar:
        return Calendar.from_ical(self.get_raw(manager, uid))

    def put(self, manager: str, uid: str, cal: Calendar | bytes) -> None:
        body = cal if isinstance(cal, bytes) else cal.to_ical()
        request = urllib.request.Request(
            self.resource(manager, uid), data=body, method="PUT",
            headers={"Content-Type": "text/calendar; charset=utf-8"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10):
            pass

    def delete(self, manager: str, uid: str) -> None:
        request = urllib.request.Request(self.resource(manager, uid), method="DELETE")
        with urllib.request.urlopen(request, timeout=10):
            pass

    @contextmanager
    def edit(self, manager: str, uid: str) -> Iterator[Calendar]:
        cal = self.get(manager, uid)
        yield cal
        self.put(manager, uid, cal)

    # --- what people do, on any provider ------------------------------------------------------

    def edit_texts(self, manager: str, uid: str, change: Callable[[str], str]) -> None:
        """Someone edits the description of the series and of every occurrence with its own."""
        with self.edit(manager, uid) as cal:
            for event in cal.walk("VEVENT"):
                event["DESCRIPTION"] = change(str(event.get("DESCRIPTION", "")))

    def edit_occurrence_text(
        self, manager: str, uid: str, original: datetime, change: Callable[[str], str]
    ) -> None:
        with self.edit(manager, uid) as cal:
            event = occurrence(cal, original)
            event["DESCRIPTION"] = change(str(event.get("DESCRIPTION", "")))

    def remove_occurrence(self, manager: str, uid: str, original: datetime) -> None:
        """The occurrence deleted from the series (CalDAV: an EXDATE on the master)."""
        with self.edit(manager, uid) as cal:
            master = next(e for e in cal.walk("VEVENT") if "RECURRENCE-ID" not in e)
            master.add("exdate", original)

    def cancel(self, manager: str, uid: str, original: datetime) -> None:
        """The occurrence cancelled (CalDAV: an override with STATUS:CANCELLED)."""
        with self.edit(manager, uid) as cal:
            occurrence(cal, original)["STATUS"] = "CANCELLED"

    def decline(self, manager: str, uid: str, original: datetime, email: str, name: str) -> None:
        with self.edit(manager, uid) as cal:
            address = vCalAddress(f"mailto:{email}")
            address.params["PARTSTAT"] = "DECLINED"
            address.params["CN"] = name
            occurrence(cal, original)["ATTENDEE"] = address

    def move(self, manager: str, uid: str, original: datetime, start: datetime) -> None:
        with self.edit(manager, uid) as cal:
            event = occurrence(cal, original)
            length = event["DTEND"].dt - event["DTSTART"].dt
            event["DTSTART"].dt = start
            event["DTEND"].dt = start + length

    def keep_working_hours(
        self, manager: str, days: list[str], start: str, end: str, timezone: str
    ) -> bool:
        """The manager sets working hours in their calendar service (``days`` as ``monday``...,
        ``start``/``end`` HH:MM in the IANA ``timezone``); False where cadence cannot read
        them (CalDAV, and Google with cadence's scopes)."""
        return False

    def end_early(self, manager: str, uid: str, until: datetime) -> None:
        """A person deletes "this and all following": the rule ends at ``until`` (UTC)."""
        with self.edit(manager, uid) as cal:
            master = next(e for e in cal.walk("VEVENT") if "RECURRENCE-ID" not in e)
            master["RRULE"]["UNTIL"] = [until]

    # --- the outbox ---------------------------------------------------------------------------

    def mail(self) -> list[Message]:
        box = self.root / "outbox"
        if not box.exists():
            return []
        return [m for m in mailbox.Maildir(box, create=False)]

    def mail_of(self, kind: str) -> list[Message]:
        return [m for m in self.mail() if m["X-Cadence-Kind"] == kind]


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload: Any = part.get_payload(decode=True)
            return str(payload.decode(part.get_content_charset() or "utf-8"))
    return ""


def html_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload: Any = part.get_payload(decode=True)
            return str(payload.decode(part.get_content_charset() or "utf-8"))
    return ""


def occurrence(cal: Calendar, original: datetime) -> Any:
    """The override for ``original`` (its RECURRENCE-ID), created from the master if missing —
    what a calendar app does when someone edits "only this event"."""
    from datetime import timedelta

    from icalendar import Event

    master = next(e for e in cal.walk("VEVENT") if "RECURRENCE-ID" not in e)
    for event in cal.walk("VEVENT"):
        rid = event.get("RECURRENCE-ID")
        if rid is not None and rid.dt == original:
            return event
    event = Event()
    duration = master.get("DURATION")
    length = duration.dt if duration is not None else master["DTEND"].dt - master["DTSTART"].dt
    for key in ("UID", "SUMMARY", "DESCRIPTION", "ORGANIZER", "X-CADENCE-SERIES"):
        if key in master:
            event[key] = master[key]
    attendees = master.get("ATTENDEE")
    if attendees is not None:
        event["ATTENDEE"] = attendees
    event.add("recurrence-id", original)
    event.add("dtstart", original)
    event.add("dtend", original + (length if isinstance(length, timedelta) else length))
    event.add("dtstamp", original)
    cal.add_component(event)
    return event


@dataclass
class GoogleDeployment(Deployment):
    """The same deployment on Google Calendar: the local Calendar v3 server, a 0600 key file."""

    google: FakeGoogle | None = None

    kind = "google"

    def __post_init__(self) -> None:
        assert self.google is not None
        for manager in self.managers:
            self.google.add_user(manager)
        self.google.add_user(SENDER)  # mail.from, for a config with ``transport: gmail``
        self.key_file = self.google.write_key(self.root / "service-account.json")
        self.url = self.google.url
        with self.google.lock:
            self.sent_before = len(self.google.sent)  # the server outlives one test

    def mail(self) -> list[Message]:
        """The Maildir outbox and what went through Gmail since this deployment began."""
        with self.fake.lock:
            sent = [raw for _, raw in self.fake.sent[self.sent_before :]]
        return super().mail() + [email.message_from_bytes(raw) for raw in sent]

    @property
    def fake(self) -> FakeGoogle:
        assert self.google is not None
        return self.google

    def calendar_config(self) -> str:
        return (
            f"{{provider: google, google: {{credentials_file: '{self.key_file}', "
            f"api_endpoint: '{self.url}'}}}}"
        )

    def break_calendar(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/"

    def provider(self) -> CalendarProvider:
        return GoogleCalendarProvider(self.fake.key_info(), root=self.fake.url)

    def _instance(self, manager: str, uid: str, original: datetime) -> str:
        return self.fake.instance_id(manager, event_id(uid), original)

    def delete(self, manager: str, uid: str) -> None:
        self.fake.delete(manager, event_id(uid))

    def edit_texts(self, manager: str, uid: str, change: Callable[[str], str]) -> None:
        master = event_id(uid)
        for google_id, event in list(self.fake.events(manager).items()):
            if google_id == master or event.get("recurringEventId") == master:
                self.fake.edit(manager, google_id, description=change(event.get("description", "")))

    def edit_occurrence_text(
        self, manager: str, uid: str, original: datetime, change: Callable[[str], str]
    ) -> None:
        instance = self._instance(manager, uid, original)
        with self.fake.lock:
            text = self.fake.edit(manager, instance).get("description", "")
            self.fake.edit(manager, instance, description=change(text))

    def remove_occurrence(self, manager: str, uid: str, original: datetime) -> None:
        self.fake.delete(manager, self._instance(manager, uid, original))

    def cancel(self, manager: str, uid: str, original: datetime) -> None:
        self.fake.delete(manager, self._instance(manager, uid, original))

    def decline(self, manager: str, uid: str, original: datetime, email: str, name: str) -> None:
        self.fake.respond(manager, self._instance(manager, uid, original), email, "declined")

    def move(self, manager: str, uid: str, original: datetime, start: datetime) -> None:
        instance = self._instance(manager, uid, original)
        with self.fake.lock:
            event = self.fake.edit(manager, instance)
            begin = datetime.fromisoformat(event["start"]["dateTime"])
            length = datetime.fromisoformat(event["end"]["dateTime"]) - begin
            zone = event["start"].get("timeZone")
            self.fake.edit(
                manager,
                instance,
                start={"dateTime": start.isoformat(), "timeZone": zone},
                end={"dateTime": (start + length).isoformat(), "timeZone": zone},
            )

    def end_early(self, manager: str, uid: str, until: datetime) -> None:
        master = event_id(uid)
        with self.fake.lock:
            rules = self.fake.edit(manager, master)["recurrence"]
            stamp = until.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            ended = [f"{r};UNTIL={stamp}" if r.startswith("RRULE:") else r for r in rules]
            self.fake.edit(manager, master, recurrence=ended)


@dataclass
class OutlookDeployment(Deployment):
    """The same deployment on Microsoft 365: the local Graph plays the tenant and ``url`` is its
    address (the identity platform's too). Each manager's series go to a calendar cadence makes
    in the mailbox. People's hands act through Graph as Outlook's would: an occurrence deleted
    (which delta never mentions), an answer arriving in the organiser's copy, an instance
    PATCHed."""

    graph: FakeGraph | None = None
    first_now: datetime | None = None  # the simulated time of the first pass

    kind = "outlook"
    CALENDAR = "1:1s (cadence)"

    @property
    def fake(self) -> FakeGraph:
        assert self.graph is not None
        return self.graph

    def calendar_config(self) -> str:
        return (
            "{provider: outlook, outlook: {"
            f"tenant_id: {self.fake.tenant}, client_id: {self.fake.client_id}, "
            f"authority_host: '{self.url}', graph_endpoint: '{self.url}', "
            f"calendar: '{self.CALENDAR}'}}}}"
        )

    def break_calendar(self, port: int) -> None:
        self.url = f"https://127.0.0.1:{port}/"

    def once(self, now: datetime, restore_missing: bool = False) -> PassResult:
        self.first_now = self.first_now or now
        return super().once(now, restore_missing)

    def saw(self, args: Sequence[str]) -> None:
        if "--now" in args and self.first_now is None:
            self.first_now = datetime.fromisoformat(args[args.index("--now") + 1])

    def provider(self) -> CalendarProvider:
        # The test's view reaches back to the first pass: Graph lists through a window of time,
        # and a series that ended months ago is still there to be counted.
        now = self.first_now or datetime.now(UTC)
        client = GraphClient(
            GraphSettings(
                tenant_id=self.fake.tenant, client_id=self.fake.client_id,
                client_secret=self.fake.client_secret, authority_host=self.fake.url,
                graph_endpoint=self.fake.url, ca_bundle=str(self.fake.ca_file),
            )
        )  # fmt: skip
        return GraphCalendarProvider(client, self.CALENDAR, clock=lambda: now)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.fake.issue_token()}",
                   "Prefer": 'outlook.timezone="UTC"'}  # fmt: skip
        raw = json.dumps(body).encode() if body is not None else b""
        status, _, answer = self.fake.handle(method, f"/v1.0{path}", headers, raw)
        assert status < 300, (status, answer)
        return json.loads(answer) if answer else None

    def _instance(self, manager: str, uid: str, original: datetime) -> dict[str, Any]:
        master = self.fake.master(manager, uid).id
        start = (original - timedelta(days=8)).astimezone(UTC)
        end = (original + timedelta(days=8)).astimezone(UTC)
        window = f"startDateTime={start:%Y-%m-%dT%H:%MZ}&endDateTime={end:%Y-%m-%dT%H:%MZ}"
        instances = self._call("GET", f"/users/{manager}/events/{master}/instances?{window}")
        wanted = original.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        [found] = [i for i in instances["value"] if i["originalStart"] == wanted]
        return dict(found)

    def _retype(self, manager: str, graph_id: str, change: Callable[[str], str]) -> None:
        body = self._call("GET", f"/users/{manager}/events/{graph_id}")["body"]["content"]
        html = text_html(change(html_to_text(body)))
        self._call("PATCH", f"/users/{manager}/events/{graph_id}",
                   {"body": {"contentType": "html", "content": html}})  # fmt: skip

    def delete(self, manager: str, uid: str) -> None:
        self._call("DELETE", f"/users/{manager}/events/{self.fake.master(manager, uid).id}")

    def edit_texts(self, manager: str, uid: str, change: Callable[[str], str]) -> None:
        master = self.fake.master(manager, uid)
        originals = [
            datetime.fromisoformat(e["originalStart"].replace("Z", "+00:00"))
            for e in master.exceptions.values()
        ]
        ids = [master.id] + [self._instance(manager, uid, o)["id"] for o in originals]
        for graph_id in ids:
            self._retype(manager, graph_id, change)

    def edit_occurrence_text(
        self, manager: str, uid: str, original: datetime, change: Callable[[str], str]
    ) -> None:
        self._retype(manager, self._instance(manager, uid, original)["id"], change)

    def remove_occurrence(self, manager: str, uid: str, original: datetime) -> None:
        instance = self._instance(manager, uid, original)
        self._call("DELETE", f"/users/{manager}/events/{instance['id']}")

    cancel = remove_occurrence  # in Outlook, both are the organiser deleting the occurrence

    def decline(self, manager: str, uid: str, original: datetime, email: str, name: str) -> None:
        master = self.fake.master(manager, uid).id
        self.fake.respond(manager, master, email, "declined", original=original)

    def move(self, manager: str, uid: str, original: datetime, start: datetime) -> None:
        instance = self._instance(manager, uid, original)
        begin = datetime.fromisoformat(instance["start"]["dateTime"][:19])
        length = datetime.fromisoformat(instance["end"]["dateTime"][:19]) - begin
        utc = start.astimezone(UTC)
        self._call("PATCH", f"/users/{manager}/events/{instance['id']}", {
            "start": {"dateTime": f"{utc:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            "end": {"dateTime": f"{utc + length:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        })  # fmt: skip

    def keep_working_hours(
        self, manager: str, days: list[str], start: str, end: str, timezone: str
    ) -> bool:
        self.fake.add_mailbox(manager, working_hours={
            "daysOfWeek": days, "startTime": f"{start}:00.0000000",
            "endTime": f"{end}:00.0000000", "timeZone": {"name": windows_zone(timezone)},
        })  # fmt: skip
        return True

    def end_early(self, manager: str, uid: str, until: datetime) -> None:
        """Outlook's "delete this and all following": the range ends on ``until``'s date."""
        master = self.fake.master(manager, uid)
        recurrence = json.loads(json.dumps(master.data["recurrence"]))
        zone = graph_zone_of(master.data["start"]["timeZone"])
        assert zone is not None
        recurrence["range"].update(
            {"type": "endDate", "endDate": until.astimezone(zone).date().isoformat()}
        )
        self._call("PATCH", f"/users/{manager}/events/{master.id}", {"recurrence": recurrence})
