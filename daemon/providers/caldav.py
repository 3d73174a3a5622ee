"""The CalDAV calendar provider: Radicale, Nextcloud, Fastmail, iCloud... through one protocol.

Each series is one resource ``<calendar>/<uid>.ics`` (the uid base32-encoded when it is not
path-safe) holding the master VEVENT and its overrides, so a removed href maps back to a uid.
The ``caldav`` library's ``DAVClient`` carries every request (session, timeouts, Basic/Digest
negotiation, 429 detection); the WebDAV verbs are spelled out here because the reconcile loop
needs control that the high-level objects hide: exactly one REPORT for a quiet ``changes`` call
(calendar data comes inside the sync-collection answer), ``If-None-Match: *`` / ``If-Match`` on
every write, and no write at all when nothing changed.
iCalendar reading and editing lives in ``daemon.providers.ical``.

Every failure leaves as a ``daemon.errors`` class with one line naming the server (never a
password); no caldav, niquests or lxml exception escapes.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from caldav.davclient import DAVClient
from caldav.lib import error as dav_error
from icalendar import Calendar
from lxml import etree

from daemon.checks import Check
from daemon.errors import (
    AuthError,
    Conflict,
    NotFound,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from daemon.providers import ical
from daemon.providers.base import (
    OWNER_PROPERTY,
    Attendee,
    CalendarHours,
    Capabilities,
    Changes,
    ObservedSeries,
    SeriesSpec,
    Write,
    each_changes,
    one_by_one,
)

log = logging.getLogger(__name__)

_DAV = "DAV:"
_CALDAV = "urn:ietf:params:xml:ns:caldav"
_SYNC_TOKEN_PRECONDITION = f"{{{_DAV}}}valid-sync-token"
_XML = {"Content-Type": 'application/xml; charset="utf-8"'}
_ICS = {"Content-Type": "text/calendar; charset=utf-8"}
_SAFE_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]*")
_ENCODED_PREFIX = "b32-"
_MAX_SYNC_PAGES = 50  # a server truncating sync-collection (507) is followed this many times

_SYNC_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<D:sync-collection xmlns:D="{_DAV}" xmlns:C="{_CALDAV}">'
    "<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
    "<D:prop><D:getetag/><C:calendar-data/></D:prop></D:sync-collection>"
)
_MULTIGET_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<C:calendar-multiget xmlns:D="{_DAV}" xmlns:C="{_CALDAV}">'
    "<D:prop><D:getetag/><C:calendar-data/></D:prop>{hrefs}</C:calendar-multiget>"
)
_MKCALENDAR_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<C:mkcalendar xmlns:D="{_DAV}" xmlns:C="{_CALDAV}"><D:set><D:prop>'
    "<D:displayname>1:1s (cadence)</D:displayname>"
    '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
    "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
)


_PROBE_NAME = "cadence-doctor-probe.ics"
_PROBE_BODY = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cadence//doctor//EN\r\nBEGIN:VEVENT\r\n"
    "UID:cadence-doctor-probe\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300101T000000Z\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


_PROPFIND_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<D:propfind xmlns:D="{_DAV}"><D:prop><D:resourcetype/></D:prop></D:propfind>'
)


class _Found(Enum):
    CALENDAR = "calendar"
    MISSING_CALENDAR = "missing calendar"  # its parent is there
    MISSING_PARENT = "missing parent"


class _Remove:
    """What an edit returns to have the whole resource deleted instead of rewritten."""


_REMOVE = _Remove()


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class _Entry:
    """One response of a multistatus: an href with its data, or gone (404)."""

    href: str
    gone: bool
    etag: str | None
    data: str | None


def _public(url: str) -> str:
    """``url`` without user:password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _reason(err: BaseException) -> str:
    """A short human reason for a network failure, e.g. ``Connection refused``."""
    text = str(err)
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return str(found[-1]).strip()
    if "timed out" in text.lower() or "timeout" in type(err).__name__.lower():
        return "timed out"
    return type(err).__name__


class CalDAVProvider:
    """A ``CalendarProvider`` over CalDAV; each manager's calendar at ``url + calendar_path``.

    ``requests_made`` counts HTTP requests sent (a quiet ``changes`` call costs exactly one).
    Free/busy is not offered: CalDAV scheduling (RFC 6638) outbox queries are rarely enabled and
    Radicale has none, so ``capabilities.free_busy`` is False and ``free_busy`` returns nothing.
    """

    capabilities = Capabilities(sync_tokens=True, free_busy=False)

    def __init__(
        self,
        url: str,
        calendar_path: str = "{manager}/cadence/",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        *,
        read_timeout: float | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``timeout`` bounds connecting, ``read_timeout`` (default the same) each read."""
        self.url = url if url.endswith("/") else url + "/"
        self.calendar_path = calendar_path
        self.timeout = timeout
        self.requests_made = 0
        self._clock = clock or (lambda: datetime.now(UTC))
        # Calendars seen or made by this provider, and those its last look found missing (with
        # whether their parent was missing too): what spares a cold pass a second look.
        self._known: set[str] = set()
        self._missing: dict[str, bool] = {}
        self._server = _public(self.url)
        try:
            self._client = DAVClient(
                url=self.url,
                username=username,
                password=password,
                timeout=(timeout, read_timeout or timeout),  # type: ignore[arg-type]
                rate_limit_handle=False,
                enable_rfc6764=False,
            )
        except Exception as err:  # a malformed url or option; say which server, not how
            raise ProviderError(
                f"calendar server {self._server} cannot be used: {type(err).__name__}"
            ) from None
        self._client.session.hooks["pre_request"].append(self._count)
        self.url = self._server  # credentials now live in the client, not in request urls

    def _count(self, request: Any, **_: Any) -> Any:
        self.requests_made += 1
        return request

    # -- the contract ------------------------------------------------------------------------

    def ensure_calendar(self, manager: str) -> None:
        url = self._calendar_url(manager)
        if url in self._known:
            return
        # Found missing by the look ``changes`` just took: no second look.
        found = _Found.MISSING_PARENT if self._missing.pop(url, False) else self._look(url)
        if found is _Found.CALENDAR:
            self._known.add(url)
            return
        # The order that succeeds: the parent (the manager's home) first when it is missing, so
        # that no MKCALENDAR is refused for want of it.
        if found is _Found.MISSING_PARENT:
            self._request("MKCOL", _parent(url), "", None, ok={201, 405, 409})
        # Someone (a second daemon, an admin, a calendar app) may create it between the look
        # and the MKCALENDAR: a refusal is checked against the calendar itself, and a calendar
        # that is there now is used, whoever made it (Radicale refuses with 405 or 409,
        # Xandikos with 403 resource-must-be-null).
        made = self._mkcalendar(url)
        if made.status == 409 and self._look(url) is not _Found.CALENDAR:
            # A parent further up is missing too (a deeper calendar_path): make it, then retry.
            self._request("MKCOL", _parent(url), "", None, ok={201, 405, 409})
            made = self._mkcalendar(url)
        if made.status != 201 and self._look(url) is not _Found.CALENDAR:
            self._fail("MKCALENDAR", url, made)
        if made.status == 201:
            log.info("created calendar %s", _public(url))
        self._known.add(url)

    def _mkcalendar(self, url: str) -> _Response:
        return self._request("MKCALENDAR", url, _MKCALENDAR_BODY, _XML, ok={201, 403, 405, 409})

    def _look(self, url: str) -> _Found:
        """Whether the calendar at ``url`` exists, and if not whether its parent does: one
        PROPFIND of the parent (Depth 1: the parent and its children), or of the calendar when
        its parent is the server's base url. A missing collection is whatever the server says
        it is: a 404, or a 207 whose response for it is a 404 (Xandikos)."""
        parent = _parent(url)
        found = None
        if len(parent) > len(self.url):
            found = self._request(
                "PROPFIND", parent, _PROPFIND_BODY, {"Depth": "1", **_XML}, ok={207, 403, 404}
            )
        if found is None or found.status == 403:  # a parent we may not list: the calendar
            found = self._request(
                "PROPFIND", url, _PROPFIND_BODY, {"Depth": "0", **_XML}, ok={207, 404}
            )
            present = _present(found, url)
            return _Found.CALENDAR if _path(url) in present else _Found.MISSING_CALENDAR
        present = _present(found, parent)
        if _path(url) in present:
            return _Found.CALENDAR
        return _Found.MISSING_CALENDAR if _path(parent) in present else _Found.MISSING_PARENT

    def changes(self, manager: str, token: str | None) -> Changes:
        url = self._calendar_url(manager)
        collection = urlsplit(url).path
        if token is None and url not in self._known:
            # A first listing: look before the REPORT, which cannot succeed on a calendar that
            # does not exist (and some servers answer it with something else than a 404).
            found = self._look(url)
            if found is not _Found.CALENDAR:
                self._missing[url] = found is _Found.MISSING_PARENT
                raise NotFound(f"{_public(url)} does not exist")
            self._known.add(url)
        entries: list[_Entry] = []
        current = token
        for _page in range(_MAX_SYNC_PAGES):
            body = _SYNC_BODY.format(token=_xml_escape(current or ""))
            try:
                response = self._request("REPORT", url, body, {"Depth": "0", **_XML}, ok={207})
            except NotFound:
                self._known.discard(url)  # deleted since: the next look finds out
                raise
            page, current, truncated = _parse_sync(response.body, collection)
            entries.extend(page)
            if not truncated:
                break
        if current is None:
            raise Transient(f"calendar server {self._server} sent no sync token for {_public(url)}")
        missing = [e.href for e in entries if not e.gone and e.data is None]
        fetched = {e.href: e for e in self._multiget(url, missing)} if missing else {}
        changed: dict[str, ObservedSeries] = {}
        removed: list[str] = []
        for entry in entries:
            if entry.gone:
                removed.append(_uid_of(entry.href))
                continue
            data = entry.data if entry.data is not None else fetched.get(entry.href, entry).data
            series = ical.read_series(data) if data else None
            if series is not None:
                changed[series.uid] = series
        return Changes(
            token=current,
            changed=tuple(changed.values()),
            removed=tuple(removed),
            complete=token is None,
        )

    def create_series(self, manager: str, series: SeriesSpec) -> None:
        url = self._resource_url(manager, series.uid)
        try:
            data = ical.build_series(series, self._clock()).decode()
        except (ValueError, KeyError, TypeError) as err:  # bad zone or rule in the spec
            raise ProviderError(f"series {series.uid} cannot be written: {err}") from None
        headers = {"If-None-Match": "*", **_ICS}
        status = self._request("PUT", url, data, headers, ok={201, 204, 404, 409, 412}).status
        if status in (404, 409):  # no calendar (any more)
            self._known.discard(self._calendar_url(manager))
            self.ensure_calendar(manager)
            status = self._request("PUT", url, data, headers, ok={201, 204, 412}).status
        if status == 412:
            log.debug("series %s already on the calendar", series.uid)

    def changes_many(
        self, tokens: Mapping[str, str | None]
    ) -> Mapping[str, Changes | ProviderError]:
        return each_changes(self, tokens)

    def apply(self, writes: Sequence[Write]) -> list[ProviderError | None]:
        """One by one: CalDAV has no batch write (each resource is its own conditional PUT)."""
        return one_by_one(self, writes)

    def end_series(self, manager: str, uid: str, until: date) -> None:
        def change(cal: Calendar) -> bool | _Remove:
            # A series ended before its first day never took place: there is no history to
            # keep, and servers refuse an RRULE whose UNTIL precedes DTSTART (Radicale: 400).
            if ical.ends_before_start(cal, until):
                return _REMOVE
            return ical.end_rule(cal, until)

        self._edit(manager, uid, change)

    def write_agendas(
        self,
        manager: str,
        uid: str,
        master_block: str | None,
        occurrence_blocks: Mapping[datetime, str],
    ) -> None:
        self._edit(
            manager,
            uid,
            lambda cal: ical.splice_agendas(cal, master_block, occurrence_blocks, self._clock()),
        )

    def set_attendees(
        self,
        manager: str,
        uid: str,
        attendees: Mapping[datetime | None, Sequence[Attendee]],
    ) -> None:
        self._edit(manager, uid, lambda cal: ical.set_attendees(cal, attendees, self._clock()))

    def free_busy(
        self, emails: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, Sequence[tuple[datetime, datetime]]]:
        return {}

    def working_hours(self, managers: Sequence[str]) -> Mapping[str, CalendarHours | None]:
        # RFC 7953 availability is not something CalDAV servers commonly keep (Radicale doesn't).
        return {m: None for m in managers}

    def diagnose(self, manager: str) -> list[Check]:
        url = self._calendar_url(manager)
        where = _public(url)
        try:
            found = self._look(url)
        except ProviderError as err:
            return [Check("calendar reachable", manager, False, str(err))]
        if found is not _Found.CALENDAR:
            return [
                Check(
                    "calendar reachable", manager, True, f"{where} missing: made on the first pass"
                )
            ]
        rows = [Check("calendar reachable", manager, True, where)]
        # A PUT whose If-Match nothing matches: the server checks the right to write, then
        # refuses the precondition (412), and nothing is written.
        probe = url + _PROBE_NAME
        headers = {"If-Match": '"cadence-doctor-probe"', **_ICS}
        try:
            sent = self._request("PUT", probe, _PROBE_BODY, headers, ok={201, 204, 412})
        except ProviderError as err:
            return [*rows, Check("calendar writable", manager, False, str(err))]
        if sent.status != 412:  # a server that ignored If-Match: take the probe back
            self._request("DELETE", probe, "", None, ok={200, 204, 404})
        return [*rows, Check("calendar writable", manager, True, "write permitted")]

    # -- helpers -----------------------------------------------------------------------------

    def _calendar_url(self, manager: str) -> str:
        path = self.calendar_path.format(manager=quote(manager, safe="@+"))
        if not path.endswith("/"):
            path += "/"
        return urljoin(self.url, path.lstrip("/"))

    def _resource_url(self, manager: str, uid: str) -> str:
        return self._calendar_url(manager) + _resource_name(uid)

    def _edit(self, manager: str, uid: str, change: Callable[[Calendar], bool | _Remove]) -> None:
        """GET, change, PUT (or DELETE) with If-Match; re-read once on 412, then ``Conflict``.

        ``change`` edits the calendar in place and says whether it changed, or asks for the
        resource to be removed with ``_REMOVE``.
        """
        url = self._resource_url(manager, uid)
        for attempt in range(2):
            response = self._request("GET", url, "", None, ok={200})
            etag = response.headers.get("ETag") or response.headers.get("etag")
            try:
                cal = ical.parse_calendar(response.body)
                master = ical.master_of(cal)
            except ical.Unreadable as err:
                raise NotFound(f"series {uid} on {self._server} cannot be read: {err}") from None
            if OWNER_PROPERTY not in master:
                raise NotFound(f"event {uid} on {self._server} was not created by cadence")
            try:
                outcome = change(cal)
            except (ValueError, KeyError, TypeError) as err:  # Unreadable is a ValueError
                raise NotFound(f"series {uid} on {self._server} cannot be edited: {err}") from None
            if outcome is False:
                return
            match = {"If-Match": etag} if etag else {}
            if outcome is _REMOVE:
                sent = self._request("DELETE", url, "", match, ok={200, 204, 404, 412})
            else:
                body = ical.serialize(cal).decode()
                sent = self._request("PUT", url, body, {**_ICS, **match}, ok={201, 204, 412})
            if sent.status != 412:
                return
            log.debug("series %s changed while we edited it (attempt %d)", uid, attempt + 1)
        raise Conflict(f"series {uid} on {self._server} keeps changing; will try next pass")

    def _multiget(self, calendar_url: str, hrefs: list[str]) -> list[_Entry]:
        body = _MULTIGET_BODY.format(
            hrefs="".join(f"<D:href>{_xml_escape(h)}</D:href>" for h in hrefs)
        )
        response = self._request("REPORT", calendar_url, body, {"Depth": "1", **_XML}, ok={207})
        return _parse_sync(response.body, urlsplit(calendar_url).path)[0]

    def _request(
        self,
        method: str,
        url: str,
        body: str,
        headers: Mapping[str, str] | None,
        ok: set[int],
    ) -> _Response:
        """One request; statuses outside ``ok`` become project errors."""
        try:
            raw = self._client.request(url, method, body, dict(headers or {}))
            response = _Response(raw.status, dict(raw.headers), _body_of(raw))
        except dav_error.RateLimitError as err:
            raise RateLimited(
                f"calendar server {self._server} asks to slow down", err.retry_after_seconds
            ) from None
        except dav_error.AuthorizationError as err:
            if _SYNC_TOKEN_PRECONDITION in (err.preconditions or []):
                raise TokenExpired(f"sync token for {_public(url)} is no longer valid") from None
            if err.status == 403 and 403 in ok:  # an answer the caller reads (the client raises)
                refusal = err.body.encode() if isinstance(err.body, str) else err.body or b""
                return _Response(403, {}, refusal)
            if err.status == 403:
                raise AuthError(
                    f"calendar server {self._server} forbids {method} {urlsplit(url).path}"
                ) from None
            raise AuthError(f"calendar server {self._server} refused the credentials") from None
        except Exception as err:  # niquests/urllib3/lxml/caldav: the server is not usable now
            raise Transient(
                f"calendar server {self._server} cannot be reached: {_reason(err)}"
            ) from None
        if response.status in ok:
            return response
        self._fail(method, url, response)

    def _fail(self, method: str, url: str, response: _Response) -> NoReturn:
        where = f"{method} {_public(url)}"
        status = response.status
        if _SYNC_TOKEN_PRECONDITION.encode() in _clark_preconditions(response.body):
            raise TokenExpired(f"sync token for {_public(url)} is no longer valid")
        if status in (401, 403):
            raise AuthError(f"calendar server {self._server} refused {where} ({status})")
        if status == 404:
            raise NotFound(f"{_public(url)} does not exist")
        if status in (409, 412):
            raise Conflict(f"{where} conflicts with the calendar's current state ({status})")
        if status == 429:
            raise RateLimited(f"calendar server {self._server} asks to slow down", None)
        if status >= 500:
            raise Transient(f"calendar server {self._server} failed {where} ({status})")
        raise ProviderError(f"calendar server {self._server} rejected {where} ({status})")


def _parent(url: str) -> str:
    return urljoin(url, "..")


def _path(url: str) -> str:
    """The path of a collection's url, unquoted, with one trailing slash: how hrefs compare."""
    return unquote(urlsplit(url).path).rstrip("/") + "/"


def _present(response: _Response, base: str) -> set[str]:
    """The paths (``_path``) a PROPFIND answer shows to exist: none for a 404, and none for a
    response whose status, or every propstat's, says 404."""
    if response.status != 207:
        return set()
    try:
        root = _xml(response.body)
    except Exception as err:
        raise Transient(f"calendar server sent unreadable XML: {type(err).__name__}") from None
    present: set[str] = set()
    for node in root.findall(f"{{{_DAV}}}response"):
        if " 404 " in (node.findtext(f"{{{_DAV}}}status") or ""):
            continue
        statuses = [
            propstat.findtext(f"{{{_DAV}}}status") or ""
            for propstat in node.findall(f"{{{_DAV}}}propstat")
        ]
        if statuses and all(" 404 " in status for status in statuses):
            continue
        href = (node.findtext(f"{{{_DAV}}}href") or "").strip()
        present.add(_path(urljoin(base, href)))
    return present


def _body_of(response: Any) -> bytes:
    return str(response.raw or "").encode()


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _resource_name(uid: str) -> str:
    """``<uid>.ics``; a uid servers would mangle in a path is base32-encoded, reversibly."""
    if _SAFE_UID.fullmatch(uid):
        return f"{uid}.ics"
    encoded = base64.b32encode(uid.encode()).decode().rstrip("=").lower()
    return f"{_ENCODED_PREFIX}{encoded}.ics"


def _uid_of(href: str) -> str:
    name = unquote(href.rstrip("/").rsplit("/", 1)[-1])
    stem = name[: -len(".ics")] if name.endswith(".ics") else name
    if stem.startswith(_ENCODED_PREFIX):
        encoded = stem[len(_ENCODED_PREFIX) :].upper()
        try:
            return base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode()
        except (ValueError, UnicodeDecodeError):
            return stem
    return stem


def _xml(body: bytes) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    return etree.fromstring(body, parser=parser)


def _clark_preconditions(body: bytes) -> bytes:
    """The Clark names of a DAV:error body's children, joined, or b'' when it is no such body."""
    try:
        root = _xml(body)
    except Exception:
        return b""
    if root.tag != f"{{{_DAV}}}error":
        return b""
    return b" ".join(str(child.tag).encode() for child in root)


def _parse_sync(body: bytes, collection: str) -> tuple[list[_Entry], str | None, bool]:
    """Entries, the new sync token and whether the server truncated the answer (507)."""
    try:
        root = _xml(body)
    except Exception as err:
        raise Transient(f"calendar server sent unreadable XML: {type(err).__name__}") from None
    token_node = root.find(f"{{{_DAV}}}sync-token")
    token = token_node.text.strip() if token_node is not None and token_node.text else None
    entries: list[_Entry] = []
    truncated = False
    for node in root.findall(f"{{{_DAV}}}response"):
        href = unquote((node.findtext(f"{{{_DAV}}}href") or "").strip())
        status = node.findtext(f"{{{_DAV}}}status") or ""
        if href.rstrip("/") == unquote(collection).rstrip("/"):
            truncated = truncated or " 507 " in status
            continue
        if " 404 " in status:
            entries.append(_Entry(href, gone=True, etag=None, data=None))
            continue
        etag: str | None = None
        data: str | None = None
        for propstat in node.findall(f"{{{_DAV}}}propstat"):
            if " 200 " not in (propstat.findtext(f"{{{_DAV}}}status") or ""):
                continue
            prop = propstat.find(f"{{{_DAV}}}prop")
            if prop is None:
                continue
            etag = prop.findtext(f"{{{_DAV}}}getetag") or etag
            data = prop.findtext(f"{{{_CALDAV}}}calendar-data") or data
        if href.endswith("/"):
            continue  # a sub-collection, not a calendar object
        entries.append(_Entry(href, gone=False, etag=etag, data=data))
    return entries, token, truncated
