"""The CalDAV provider against each real CalDAV server: the shared contract plus what only
CalDAV shows (``tests.fixtures.radicale.CALDAV_SERVERS``; the embedded server is Radicale).

Raw HTTP (stdlib ``urllib``) plays the other people on the calendar: Thunderbird users who
decline, cancel or move an occurrence, and foreign or broken resources.
"""

from __future__ import annotations

import itertools
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest
from icalendar import Calendar

from daemon.core.agenda import wrap
from daemon.embedded import EmbeddedRadicale
from daemon.errors import Conflict, NotFound, TokenExpired, Transient
from daemon.providers.base import CalendarProvider
from daemon.providers.caldav import CalDAVProvider
from tests.contract.provider_contract import (
    FIRST_START,
    ProviderContract,
    occurrence,
    only_series,
    series_spec,
)
from tests.fixtures.radicale import CalDAVServer
from tests.fixtures.xandikos import XandikosServer


class TestCalDAVContract(ProviderContract):
    """The contract on each real CalDAV server (``tests.fixtures.radicale.CALDAV_SERVERS``)."""

    @pytest.fixture
    def provider(self, caldav_server: CalDAVServer) -> CalendarProvider:
        return CalDAVProvider(caldav_server.url, timeout=5.0)

    @pytest.fixture
    def manager(self, manager_email: str) -> str:
        return manager_email


# -- raw access, as another client would have it ------------------------------------------------


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _calendar_url(server: CalDAVServer, manager: str) -> str:
    return f"{server.url}{manager}/cadence/"


def _get(server: CalDAVServer, manager: str, name: str) -> tuple[str, bytes]:
    status, headers, body = _http("GET", _calendar_url(server, manager) + name)
    assert status == 200, (status, body)
    return headers["ETag"], body


def _put(server: CalDAVServer, manager: str, name: str, ics: bytes | str) -> None:
    data = ics.encode() if isinstance(ics, str) else ics
    url = _calendar_url(server, manager) + name
    status, _, body = _http("PUT", url, data, {"Content-Type": "text/calendar"})
    assert status in (201, 204), (status, body)


def _hrefs(server: CalDAVServer, manager: str) -> list[str]:
    status, _, body = _http("PROPFIND", _calendar_url(server, manager), None, {"Depth": "1"})
    assert status == 207
    hrefs = ElementTree.fromstring(body).iter("{DAV:}href")  # noqa: S314 - a test server
    return [href.text or "" for href in hrefs]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


FOREIGN = """\
BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN\r
BEGIN:VEVENT\r
UID:{uid}\r
DTSTAMP:20300101T000000Z\r
DTSTART;TZID=Europe/Berlin:20301014T090000\r
DTEND;TZID=Europe/Berlin:20301014T093000\r
RRULE:FREQ=WEEKLY;BYDAY=MO;WKST=MO\r
SUMMARY:Team standup\r
DESCRIPTION:Written by a person.\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.fixture
def calendar(caldav_provider: CalDAVProvider, manager_email: str) -> CalDAVProvider:
    caldav_provider.ensure_calendar(manager_email)
    return caldav_provider


# -- what lands on the calendar -----------------------------------------------------------------


def test_calendar_is_subscribable_at_the_documented_path(
    caldav_provider: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    caldav_provider.ensure_calendar(manager_email)
    status, _, body = _http(
        "PROPFIND",
        _calendar_url(server, manager_email),
        b'<propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>',
        {"Depth": "0", "Content-Type": "application/xml"},
    )
    assert status == 207
    assert b"urn:ietf:params:xml:ns:caldav" in body
    assert b"calendar" in body.split(b"resourcetype")[1]
    # A read-only (webcal) subscription is a plain GET of the same address.
    if isinstance(server, XandikosServer):
        pytest.skip("Xandikos answers a GET of a calendar with an HTML listing, not a feed")
    caldav_provider.create_series(manager_email, series_spec(manager_email, "ics-webcal"))
    status, headers, body = _http("GET", _calendar_url(server, manager_email))
    assert status == 200
    assert headers["Content-Type"].startswith("text/calendar")
    assert b"UID:ics-webcal" in body


def test_stored_event_has_zoned_start_and_utc_until(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    spec = series_spec(manager_email, "ics-shape", until=date(2030, 12, 31))
    calendar.create_series(manager_email, spec)
    _, body = _get(server, manager_email, "ics-shape.ics")
    text = body.decode().replace("\r\n ", "")

    assert "DTSTART;TZID=America/Denver:20301015T100000" in text
    # End of 31 Dec in Denver (MST, UTC-7) is 06:59:59 UTC on 1 Jan.
    assert "UNTIL=20310101T065959Z" in text
    assert "BEGIN:VTIMEZONE" in text and "TZID:America/Denver" in text
    assert "X-CADENCE-SERIES:ics-shape" in text
    # Radicale keeps the text as written; Xandikos writes it again, quoting a CN with a space.
    assert re.search(f'ORGANIZER;CN="?Maya Chen"?:mailto:{re.escape(manager_email)}\r\n', text)
    assert "PARTSTAT=NEEDS-ACTION" in text and "mailto:sam@acme.test" in text


def test_end_series_writes_until_in_utc_and_drops_later_overrides(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    late, early = occurrence(4), occurrence(1)
    spec = series_spec(
        manager_email,
        "ics-end",
        occurrence_descriptions={early: wrap("early"), late: wrap("late")},
    )
    calendar.create_series(manager_email, spec)
    calendar.end_series(manager_email, "ics-end", (FIRST_START + timedelta(weeks=2)).date())

    _, body = _get(server, manager_email, "ics-end.ics")
    text = body.decode().replace("\r\n ", "")
    # 29 Oct 2030 is still MDT (UTC-6): the day ends at 05:59:59 UTC the next day.
    assert "UNTIL=20301030T055959Z" in text
    series = only_series(calendar.changes(manager_email, None), "ics-end")
    assert [o.recurrence_id for o in series.overrides] == [early]


def test_end_series_again_at_the_same_date_writes_nothing(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    calendar.create_series(manager_email, series_spec(manager_email, "ics-end-twice"))
    calendar.end_series(manager_email, "ics-end-twice", date(2030, 11, 30))
    etag, _ = _get(server, manager_email, "ics-end-twice.ics")
    before = calendar.requests_made

    calendar.end_series(manager_email, "ics-end-twice", date(2030, 11, 30))

    assert calendar.requests_made - before == 1  # the GET, no PUT
    assert _get(server, manager_email, "ics-end-twice.ics")[0] == etag


def test_create_on_a_missing_calendar_creates_it(
    caldav_provider: CalDAVProvider, manager_email: str
) -> None:
    caldav_provider.create_series(manager_email, series_spec(manager_email, "ics-new-calendar"))
    assert only_series(caldav_provider.changes(manager_email, None), "ics-new-calendar").owned


# -- other people's events and edits -----------------------------------------------------------


def test_foreign_events_are_reported_unowned_and_never_modified(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    _put(server, manager_email, "standup.ics", FOREIGN.format(uid="standup"))
    etag, before = _get(server, manager_email, "standup.ics")

    foreign = only_series(calendar.changes(manager_email, None), "standup")
    assert not foreign.owned
    assert foreign.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO"
    assert foreign.timezone == "Europe/Berlin"

    calendar.create_series(manager_email, series_spec(manager_email, "standup"))
    with pytest.raises(NotFound):
        calendar.end_series(manager_email, "standup", date(2030, 12, 1))
    with pytest.raises(NotFound):
        calendar.write_agendas(manager_email, "standup", wrap("x"), {occurrence(1): wrap("y")})
    assert _get(server, manager_email, "standup.ics") == (etag, before)


def test_malformed_and_single_events_are_skipped(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    calendar.create_series(manager_email, series_spec(manager_email, "ics-good"))
    # Radicale accepts these; cadence cannot use them (unknown zone, no recurrence, all-day).
    _put(
        server,
        manager_email,
        "mars.ics",
        FOREIGN.format(uid="mars").replace("Europe/Berlin", "Mars/Olympus"),
    )
    single = FOREIGN.format(uid="once").replace("RRULE:FREQ=WEEKLY;BYDAY=MO;WKST=MO\r\n", "")
    _put(server, manager_email, "once.ics", single)
    all_day = (
        FOREIGN.format(uid="allday")
        .replace("DTSTART;TZID=Europe/Berlin:20301014T090000", "DTSTART;VALUE=DATE:20301014")
        .replace("DTEND;TZID=Europe/Berlin:20301014T093000", "DTEND;VALUE=DATE:20301015")
    )
    _put(server, manager_email, "allday.ics", all_day)

    listing = calendar.changes(manager_email, None)
    assert [s.uid for s in listing.changed] == ["ics-good"]


def test_removed_series_is_reported_by_uid(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    calendar.create_series(manager_email, series_spec(manager_email, "ics-deleted"))
    token = calendar.changes(manager_email, None).token
    status, _, _ = _http("DELETE", _calendar_url(server, manager_email) + "ics-deleted.ics")
    assert status in (200, 204)

    delta = calendar.changes(manager_email, token)
    assert delta.removed == ("ics-deleted",)
    assert delta.changed == ()


def test_cancellation_signals_are_readable_and_survive_agenda_writes(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    """What a person does in Thunderbird: delete one, cancel one, decline one, move one."""
    uid = "ics-cancel"
    calendar.create_series(manager_email, series_spec(manager_email, uid))
    removed, cancelled, declined, moved = occurrence(1), occurrence(2), occurrence(3), occurrence(4)
    moved_to = moved + timedelta(days=1, hours=3)  # Wednesday afternoon instead of Tuesday
    _, body = _get(server, manager_email, f"{uid}.ics")
    cal = Calendar.from_ical(body)
    [master] = cal.walk("VEVENT")
    master.add("EXDATE", removed)
    for original, edit in ((cancelled, "cancel"), (declined, "decline"), (moved, "move")):
        override = master.copy()
        for name in ("RRULE", "EXDATE", "DTSTART", "DTEND", "ATTENDEE"):
            override.pop(name, None)
        override.add("RECURRENCE-ID", original)
        start = moved_to if edit == "move" else original
        override.add("DTSTART", start)
        override.add("DTEND", start + timedelta(minutes=25))
        partstat = "DECLINED" if edit == "decline" else "ACCEPTED"
        override.add("ATTENDEE", "mailto:sam@acme.test", parameters={"PARTSTAT": partstat})
        if edit == "cancel":
            override.add("STATUS", "CANCELLED")
        cal.add_component(override)
    _put(server, manager_email, f"{uid}.ics", cal.to_ical())

    series = only_series(calendar.changes(manager_email, None), uid)
    assert series.exdates == (removed,)
    by_start = {o.recurrence_id: o for o in series.overrides}
    assert by_start[cancelled].cancelled
    assert by_start[declined].attendees[0].partstat == "DECLINED"
    assert not by_start[declined].cancelled
    assert by_start[moved].start == moved_to
    assert by_start[moved].end == moved_to + timedelta(minutes=25)

    blocks = {
        start: wrap(f"agenda {n}") for n, start in enumerate([removed, cancelled, declined, moved])
    }
    calendar.write_agendas(manager_email, uid, None, blocks)

    after = only_series(calendar.changes(manager_email, None), uid)
    assert after.exdates == (removed,)
    assert len(after.overrides) == 3  # nothing recreated for the deleted occurrence
    by_start = {o.recurrence_id: o for o in after.overrides}
    assert by_start[cancelled].cancelled and "agenda 1" not in by_start[cancelled].description
    assert by_start[declined].attendees[0].partstat == "DECLINED"
    assert "agenda 2" in by_start[declined].description
    assert by_start[moved].start == moved_to
    assert "agenda 3" in by_start[moved].description


def test_agenda_for_a_start_the_rule_never_produces_is_ignored(
    calendar: CalDAVProvider, manager_email: str
) -> None:
    calendar.create_series(manager_email, series_spec(manager_email, "ics-off-rule"))
    monday = FIRST_START + timedelta(days=6)
    calendar.write_agendas(manager_email, "ics-off-rule", None, {monday: wrap("nope")})
    assert only_series(calendar.changes(manager_email, None), "ics-off-rule").overrides == ()


# -- requests and writes the warm pass must not make -------------------------------------------


def test_quiet_changes_call_is_exactly_one_request(
    calendar: CalDAVProvider, manager_email: str
) -> None:
    calendar.create_series(manager_email, series_spec(manager_email, "ics-one-request"))
    token = calendar.changes(manager_email, None).token
    before = calendar.requests_made

    calendar.changes(manager_email, token)

    assert calendar.requests_made == before + 1


def test_same_agendas_twice_write_once(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    uid = "ics-agenda-twice"
    calendar.create_series(manager_email, series_spec(manager_email, uid))
    blocks = {occurrence(0, thursday=True): wrap("Thursday agenda")}
    calendar.write_agendas(manager_email, uid, wrap("Master agenda"), blocks)
    etag, _ = _get(server, manager_email, f"{uid}.ics")
    token = calendar.changes(manager_email, None).token
    before = calendar.requests_made

    calendar.write_agendas(manager_email, uid, wrap("Master agenda"), blocks)

    assert calendar.requests_made == before + 1  # one GET, no PUT
    assert _get(server, manager_email, f"{uid}.ics")[0] == etag
    assert calendar.changes(manager_email, token).changed == ()


# -- failures ---------------------------------------------------------------------------------


def test_server_down_is_transient_and_names_the_url_without_the_password(
    manager_email: str,
) -> None:
    port = _free_port()
    provider = CalDAVProvider(
        f"http://cadence:hunter2@127.0.0.1:{port}/", username="cadence", password="hunter2"
    )
    with pytest.raises(Transient) as raised:
        provider.changes(manager_email, None)
    message = str(raised.value)
    assert f"http://127.0.0.1:{port}/" in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_expired_token_asks_for_a_full_resync(calendar: CalDAVProvider, manager_email: str) -> None:
    calendar.create_series(manager_email, series_spec(manager_email, "ics-token"))
    token = calendar.changes(manager_email, None).token
    with pytest.raises(TokenExpired):
        calendar.changes(manager_email, token + "0")
    with pytest.raises(TokenExpired):
        calendar.changes(manager_email, "http://radicale.org/ns/sync/" + "0" * 64)


# -- the embedded server -----------------------------------------------------------------------


def test_embedded_server_stops_listening_after_exit(tmp_path: Path) -> None:
    with EmbeddedRadicale(tmp_path) as server:
        port = server.port
        assert _http("PROPFIND", server.url, b"", {"Depth": "0"})[0] == 207
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_embedded_server_on_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Transient, match="did not start") as raised:
            EmbeddedRadicale(tmp_path, port=port).start()
    assert str(port) in str(raised.value)


# -- someone edits between our read and our write ----------------------------------------------


def _interfering_clock(
    server: CalDAVServer, manager: str, uid: str, times: int
) -> Callable[[], datetime]:
    """A clock that, the first ``times`` times it is read, lets a person append a note first.

    The provider reads its clock between GET and PUT, so each edit lands in that window.
    """
    calls = itertools.count(1)

    def now() -> datetime:
        call = next(calls)
        if call <= times:
            _, body = _get(server, manager, f"{uid}.ics")
            cal = Calendar.from_ical(body)
            master = cal.walk("VEVENT")[0]
            text = str(master.get("DESCRIPTION", "")) + f"\nPerson's edit {call}"
            master.pop("DESCRIPTION")
            master.add("DESCRIPTION", text)
            _put(server, manager, f"{uid}.ics", cal.to_ical())
        return datetime(2030, 10, 1, 12, 0, tzinfo=UTC)

    return now


def test_an_edit_between_read_and_write_is_kept(server: CalDAVServer, manager_email: str) -> None:
    uid = "ics-race-once"
    CalDAVProvider(server.url).create_series(manager_email, series_spec(manager_email, uid))
    provider = CalDAVProvider(
        server.url, clock=_interfering_clock(server, manager_email, uid, times=1)
    )

    provider.write_agendas(manager_email, uid, wrap("Fresh agenda"), {})

    series = only_series(provider.changes(manager_email, None), uid)
    assert "Fresh agenda" in series.description
    assert "Person's edit 1" in series.description


def test_an_object_that_keeps_changing_is_a_conflict(
    server: CalDAVServer, manager_email: str
) -> None:
    uid = "ics-race-always"
    CalDAVProvider(server.url).create_series(manager_email, series_spec(manager_email, uid))
    provider = CalDAVProvider(
        server.url, clock=_interfering_clock(server, manager_email, uid, times=99)
    )

    with pytest.raises(Conflict, match=uid):
        provider.write_agendas(manager_email, uid, wrap("Fresh agenda"), {})

    series = only_series(provider.changes(manager_email, None), uid)
    assert "Fresh agenda" not in series.description
    assert "Person's edit 2" in series.description


def test_uids_that_are_not_url_safe_round_trip(
    calendar: CalDAVProvider, server: CalDAVServer, manager_email: str
) -> None:
    uid = "maya@acme.test/sam ortiz#1"
    calendar.create_series(manager_email, series_spec(manager_email, uid))
    listing = calendar.changes(manager_email, None)
    assert only_series(listing, uid).owned
    calendar.end_series(manager_email, uid, date(2030, 12, 31))

    [href] = [h for h in _hrefs(server, manager_email) if h.endswith(".ics")]
    assert _http("DELETE", server.url + href.lstrip("/"))[0] in (200, 204)
    assert calendar.changes(manager_email, listing.token).removed == (uid,)


@pytest.mark.parametrize("home_exists", [True, False])
def test_a_calendar_made_by_someone_else_between_the_look_and_the_mkcalendar_is_used(
    caldav_provider: CalDAVProvider, server: CalDAVServer, manager_email: str,
    home_exists: bool,
) -> None:  # fmt: skip
    # A second client (another daemon, an admin) creates the calendar just before ours asks.
    other = CalDAVProvider(server.url, timeout=5.0)
    if home_exists:
        assert _http("MKCOL", f"{server.url}{manager_email}/")[0] == 201
    request = caldav_provider._request

    def racing(method: str, url: str, *args: object, **kwargs: object) -> object:
        if method == "MKCALENDAR":
            other.ensure_calendar(manager_email)
        return request(method, url, *args, **kwargs)  # type: ignore[arg-type]

    caldav_provider._request = racing  # type: ignore[method-assign,assignment]
    caldav_provider.ensure_calendar(manager_email)
    caldav_provider._request = request  # type: ignore[method-assign]
    caldav_provider.create_series(manager_email, series_spec(manager_email, "ics-raced"))
    assert any(h.endswith("/ics-raced.ics") for h in _hrefs(server, manager_email))
