"""A test deployment: a config on a real Radicale, a Maildir outbox, a ledger in tmp, and a
person's hands on the calendar (raw iCalendar edits over HTTP, as a calendar app would make)."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar, vCalAddress

from daemon.config import Config, load
from daemon.core.observed import ObservedSeries
from daemon.errors import NotFound
from daemon.graph_http import GraphClient, GraphSettings
from daemon.providers.base import CalendarProvider
from daemon.providers.caldav import CalDAVProvider
from daemon.providers.graph import GraphCalendarProvider, text_html
from daemon.reconcile import PassResult, run_pass, runtime
from tests.fixtures.graph import FakeGraph, html_to_text

REPO = Path(__file__).resolve().parents[2]

ORG = """\
organization: {name: Acme, timezone: America/New_York, fiscal_year_start: "02-01"}
"""


@dataclass
class Deployment:
    root: Path
    url: str
    managers: list[str]
    first_now: datetime | None = None  # the simulated time of the first pass

    @property
    def config_path(self) -> Path:
        return self.root / "cadence.yaml"

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

    def calendar_config(self) -> str:
        calendar = f"{{url: '{self.url}'}}" if self.url else "{embedded_port: 0}"
        return f"{{caldav: {calendar}}}"

    def config(self) -> Config:
        return load(self.config_path)

    def once(self, now: datetime, restore_missing: bool = False) -> PassResult:
        self.first_now = self.first_now or now
        with runtime(self.config(), restore_missing=restore_missing) as rt:
            return run_pass(rt, now)

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        if "--now" in args:
            self.first_now = self.first_now or datetime.fromisoformat(args[args.index("--now") + 1])
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", *args, "--config", str(self.config_path)],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
        )  # fmt: skip

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

    def untouched(self, manager: str) -> bool:
        """Nothing was ever written for ``manager``: not even the calendar exists."""
        try:
            self.series(manager)
        except NotFound:
            return True
        return False

    # --- a person's hands, the same on every calendar ------------------------------------------

    def edit_descriptions(
        self, manager: str, uid: str, change: Callable[[str], str], only: datetime | None = None
    ) -> None:
        """Retype the series' text (the master and every override), or one occurrence's."""
        with self.edit(manager, uid) as cal:
            events = [occurrence(cal, only)] if only else list(cal.walk("VEVENT"))
            for event in events:
                event["DESCRIPTION"] = change(str(event.get("DESCRIPTION", "")))

    def cancel(self, manager: str, uid: str, original: datetime) -> None:
        """The organiser cancels one occurrence (an override with STATUS:CANCELLED)."""
        with self.edit(manager, uid) as cal:
            occurrence(cal, original)["STATUS"] = "CANCELLED"

    def remove(self, manager: str, uid: str, original: datetime) -> None:
        """One occurrence deleted from the series (EXDATE)."""
        with self.edit(manager, uid) as cal:
            master = next(e for e in cal.walk("VEVENT") if "RECURRENCE-ID" not in e)
            master.add("exdate", original)

    def decline(self, manager: str, uid: str, original: datetime, email: str, name: str) -> None:
        with self.edit(manager, uid) as cal:
            rep = vCalAddress(f"mailto:{email}")
            rep.params["PARTSTAT"] = "DECLINED"
            rep.params["CN"] = name
            occurrence(cal, original)["ATTENDEE"] = rep

    def move(self, manager: str, uid: str, original: datetime, start: datetime) -> None:
        with self.edit(manager, uid) as cal:
            event = occurrence(cal, original)
            length = event["DTEND"].dt - event["DTSTART"].dt
            event["DTSTART"].dt = start
            event["DTEND"].dt = start + length

    # --- the outbox ---------------------------------------------------------------------------

    def mail(self) -> list[Message]:
        box = self.root / "outbox"
        if not box.exists():
            return []
        return [m for m in mailbox.Maildir(box, create=False)]

    def mail_of(self, kind: str) -> list[Message]:
        return [m for m in self.mail() if m["X-Cadence-Kind"] == kind]


@dataclass
class OutlookDeployment(Deployment):
    """The same deployment on Microsoft 365: the local Graph plays the tenant; ``url`` is its
    address (the identity platform's too). People's hands work through Graph as Outlook's would;
    a test that edits iCalendar text directly has no Outlook equivalent and is skipped here."""

    graph: FakeGraph | None = None

    def calendar_config(self) -> str:
        assert self.graph is not None
        return (
            "{provider: outlook, outlook: {"
            f"tenant_id: {self.graph.tenant}, client_id: {self.graph.client_id}, "
            f"authority_host: '{self.url}', graph_endpoint: '{self.url}'}}}}"
        )

    def provider(self) -> CalendarProvider:
        assert self.graph is not None
        # The test's view of the calendar reaches back to the first pass: Graph lists through a
        # window of time, and a series that ended months ago is still there to be counted.
        now = self.first_now or datetime.now(UTC)
        client = GraphClient(
            GraphSettings(
                tenant_id=self.graph.tenant, client_id=self.graph.client_id,
                client_secret=self.graph.client_secret, authority_host=self.graph.url,
                graph_endpoint=self.graph.url, ca_bundle=str(self.graph.ca_file),
            )
        )  # fmt: skip
        return GraphCalendarProvider(client, clock=lambda: now)

    def delete(self, manager: str, uid: str) -> None:
        assert self.graph is not None
        self._call("DELETE", f"/users/{manager}/events/{self.graph.master(manager, uid).id}")

    # Outlook's hands: Graph calls as Outlook makes them (an occurrence deleted, not flagged).

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self.graph is not None
        headers = {"Authorization": f"Bearer {self.graph.issue_token()}",
                   "Prefer": 'outlook.timezone="UTC"'}  # fmt: skip
        raw = json.dumps(body).encode() if body is not None else b""
        status, _, answer = self.graph.handle(method, f"/v1.0{path}", headers, raw)
        assert status < 300, (status, answer)
        return json.loads(answer) if answer else None

    def _instance(self, manager: str, uid: str, original: datetime) -> dict[str, Any]:
        assert self.graph is not None
        master = self.graph.master(manager, uid).id
        window = (
            f"startDateTime={(original - timedelta(days=8)).astimezone(UTC):%Y-%m-%dT%H:%MZ}"
            f"&endDateTime={(original + timedelta(days=8)).astimezone(UTC):%Y-%m-%dT%H:%MZ}"
        )
        instances = self._call("GET", f"/users/{manager}/events/{master}/instances?{window}")
        wanted = original.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        [found] = [i for i in instances["value"] if i["originalStart"] == wanted]
        return dict(found)

    def edit_descriptions(
        self, manager: str, uid: str, change: Callable[[str], str], only: datetime | None = None
    ) -> None:
        assert self.graph is not None
        master = self.graph.master(manager, uid)
        if only is not None:
            ids = [self._instance(manager, uid, only)["id"]]
        else:
            ids = [master.id] + [
                self._instance(manager, uid, datetime.fromisoformat(
                    e["originalStart"].replace("Z", "+00:00")))["id"]
                for e in master.exceptions.values()
            ]  # fmt: skip
        for event_id in ids:
            body = self._call("GET", f"/users/{manager}/events/{event_id}")["body"]["content"]
            text = change(html_to_text(body))
            html = text_html(text)
            self._call("PATCH", f"/users/{manager}/events/{event_id}",
                       {"body": {"contentType": "html", "content": html}})  # fmt: skip

    def cancel(self, manager: str, uid: str, original: datetime) -> None:
        instance = self._instance(manager, uid, original)
        self._call("DELETE", f"/users/{manager}/events/{instance['id']}")

    remove = cancel  # in Outlook, both are the organiser deleting the occurrence

    def decline(self, manager: str, uid: str, original: datetime, email: str, name: str) -> None:
        assert self.graph is not None
        self.graph.respond(manager, self.graph.master(manager, uid).id, email, "declined",
                           original=original)  # fmt: skip

    def move(self, manager: str, uid: str, original: datetime, start: datetime) -> None:
        instance = self._instance(manager, uid, original)
        length = datetime.fromisoformat(instance["end"]["dateTime"][:19]) - datetime.fromisoformat(
            instance["start"]["dateTime"][:19])  # fmt: skip
        utc = start.astimezone(UTC)
        self._call("PATCH", f"/users/{manager}/events/{instance['id']}", {
            "start": {"dateTime": f"{utc:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            "end": {"dateTime": f"{utc + length:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        })  # fmt: skip

    def untouched(self, manager: str) -> bool:
        assert self.graph is not None
        box = self.graph.mailboxes.get(manager)
        return box is None or (not box.events and len(box.calendars) == 1)

    def get_raw(self, manager: str, uid: str) -> bytes:
        pytest.skip("edits iCalendar text directly; Outlook's hands are in test_graph_provider")

    def put(self, manager: str, uid: str, cal: Calendar | bytes) -> None:
        pytest.skip("edits iCalendar text directly; Outlook's hands are in test_graph_provider")


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
