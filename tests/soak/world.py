"""What the soak needs from a calendar backend: people's hands on the managers' calendars, an
independent reading of them, and a way to make the daemon's connection to them fail.

The soak itself only speaks ``Calendars``; ``CalDAVCalendars`` is the CalDAV implementation
(a real Radicale, raw HTTP for people's edits as a calendar app makes them, a fault proxy in
front of the daemon). A Google or Outlook implementation (their local fake servers) plugs in
by implementing the same few methods.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

from icalendar import Calendar

from daemon.embedded import EmbeddedRadicale
from daemon.providers.base import CalendarProvider
from daemon.providers.caldav import CalDAVProvider
from tests.fixtures.radicale import radicale_server
from tests.soak.proxy import KINDS, FaultProxy


class Calendars(Protocol):
    """One calendar backend as the soak sees it."""

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

    def read(self, manager: str) -> dict[str, Calendar]:
        """Every event on the manager's 1:1 calendar by UID, read without the daemon's code."""

    def raw(self, manager: str, uid: str) -> bytes | None:
        """One event's stored bytes, or None when it is gone."""

    def put(self, manager: str, uid: str, cal: Calendar) -> None:
        """Save an event as a person's calendar app would."""

    def delete(self, manager: str, uid: str) -> None: ...


class CalDAVCalendars:
    """A real Radicale; people edit it directly, the daemon goes through a ``FaultProxy``."""

    fault_kinds = KINDS

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

    def read(self, manager: str) -> dict[str, Calendar]:
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

    def put(self, manager: str, uid: str, cal: Calendar) -> None:
        status, body = self._http("PUT", self._url(manager, uid), cal.to_ical())
        assert status in (201, 204), (status, body[:300])

    def delete(self, manager: str, uid: str) -> None:
        status, body = self._http("DELETE", self._url(manager, uid))
        assert status in (200, 204, 404), (status, body[:200])
