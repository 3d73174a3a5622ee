"""The Outlook calendar provider: Microsoft 365 mailboxes through Microsoft Graph v1.0.

How the contract's verbs map onto Graph (PROVIDERS.md has the facts):

* ``changes``: ``calendarView/delta`` over a window around today finds the series masters that
  changed or appeared; then every live master cadence knows is read again (``$batch``, 20 per
  round trip) with ``cancelledOccurrences`` selected and ``exceptionOccurrences`` expanded,
  because deleting one occurrence gives no delta signal at all. A master that answers 404 is a
  removed series. The token is ``<window start>~<deltatoken> <ids>``, ``ids`` being the calendar
  and cadence's master ids with their series uids as the delta token found them: the ledger keeps
  the token, so a restarted daemon's first pass is an incremental one too, and the ids can never
  be older or newer than the delta token they go with. A token from an older window, or one
  Graph no longer knows (410), asks the caller for a full resync.
* ``create_series``: ``POST events`` with a ``transactionId`` derived from the uid (a retry after
  a crash gets the existing event back) and the uid in a ``singleValueExtendedProperties`` entry
  (what marks an event as cadence's; foreign events are never read twice nor stored).
* ``end_series``: PATCH the whole ``recurrence`` with ``range.type: endDate``; DELETE when the
  series never met.
* ``write_agendas``: the HTML ``body`` of the master and of occurrences (found through
  ``instances``); only the text between the markers is replaced, escaped.
* ``free_busy``: ``calendar/getSchedule``; ``working_hours``: ``mailboxSettings``.
* ``apply``: many mailboxes' creates, ends and agenda rewrites in three rounds of ``$batch``
  (20 requests each, filled across mailboxes); ``changes_many`` looks up the primary calendars
  not yet known (none after a restart: the tokens carry them) in one ``$batch`` set, reads each
  mailbox's delta, then every mailbox's masters in one more ``$batch`` set, so a quiet pass is
  a delta request per mailbox and a round trip per twenty series. Microsoft Graph hands at most
  four requests of a batch to Exchange at a time, whatever their mailboxes, so a batch filled
  across mailboxes stays within the four per mailbox.

Roster zones are IANA names; Graph is sent the Windows name from the CLDR mapping that tzlocal
maintains, and the IANA name rides along in a second extended property so it reads back exactly.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import tz_win, win_tz

from daemon.checks import Check
from daemon.config import Config
from daemon.core.agenda import BEGIN_MARKER, END_MARKER, splice
from daemon.core.model import RRULE_DAYS, Roster, WorkingHours
from daemon.core.schedule import parse_weekly
from daemon.errors import ConfigError, NotFound, ProviderError, TokenExpired, Transient
from daemon.graph_http import GraphClient, Request, Response, client_for, failure
from daemon.providers.base import (
    Attendee,
    CalendarHours,
    Capabilities,
    Changes,
    Create,
    End,
    ObservedOverride,
    ObservedSeries,
    SeriesSpec,
    Write,
    WritesByApply,
)

log = logging.getLogger(__name__)

# A property set of cadence's own (a fixed GUID) and the names of its two tags.
_PROPERTY_SET = "{5c4d1a7e-2f1b-4c3e-9a0d-cade0c0de001}"
UID_PROPERTY = f"String {_PROPERTY_SET} Name X-CADENCE-SERIES"
ZONE_PROPERTY = f"String {_PROPERTY_SET} Name X-CADENCE-ZONE"
_GRAPH_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_PARTSTAT = {
    "accepted": "ACCEPTED",
    "organizer": "ACCEPTED",
    "declined": "DECLINED",
    "tentativelyAccepted": "TENTATIVE",
}
_MASTER_SELECT = (
    "subject,body,start,end,originalStartTimeZone,recurrence,attendees,organizer,type,"
    "cancelledOccurrences"
)
_READ = {"Prefer": 'outlook.timezone="UTC", outlook.body-content-type="text"'}
_UTC = {"Prefer": 'outlook.timezone="UTC"'}
_DELTA = {"Prefer": 'outlook.timezone="UTC", odata.maxpagesize=100'}
# Delta covers this window; the planner looks 8 days back and a few weeks ahead.
WINDOW_BACK = timedelta(days=35)
WINDOW_AHEAD = timedelta(days=120)  # series are made at most weeks ahead
WINDOW_SLIDE = timedelta(days=14)  # a token whose window started longer ago is renewed
PRIMARY = "primary"


def windows_zone(iana: str) -> str:
    """The Windows name Graph takes for an IANA zone; ``ProviderError`` when there is none."""
    if iana in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        return "UTC"
    name = tz_win.get(iana)
    if name is None:
        raise ProviderError(f"time zone {iana!r} has no Windows equivalent Microsoft Graph accepts")
    return name


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _utc(value: Mapping[str, str] | None) -> datetime:
    """A Graph dateTimeTimeZone that was asked for in UTC."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", str((value or {}).get("dateTime", "")))
    parsed = datetime.fromisoformat(text.replace("Z", ""))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _local(moment: datetime) -> str:
    return moment.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")


def _transaction_id(uid: str) -> str:
    return "cadence-" + hashlib.sha256(uid.encode()).hexdigest()[:40]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("head", "style", "script"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script"):
            self._skip -= 1
        elif tag in ("p", "div"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data.replace("\r\n", "").replace("\n", ""))


def html_text(content: str) -> str:
    parser = _Text()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts).strip("\n")


def text_html(text: str) -> str:
    """Plain text as HTML a mail client shows line for line; everything escaped."""
    return html.escape(text).replace("\n", "<br>")


_BLOCK_HTML = re.compile(re.escape(BEGIN_MARKER) + r".*?" + re.escape(END_MARKER), re.DOTALL)


def splice_html(content: str, block: str) -> str:
    """``content`` (an HTML body) with its agenda block replaced by ``block`` (wrapped text).

    Only the markers and what lies between them change; a commitment someone filled into the
    old block is carried over, as ``agenda.splice`` does for plain text.
    """
    found = _BLOCK_HTML.search(content)
    if found is None:
        fresh = text_html(splice("", block))
        body = re.search(r"<body[^>]*>", content, re.IGNORECASE)
        if body is None:
            return fresh + ("<br><br>" + content if content.strip() else "")
        at = body.end()
        rest = content[at:]
        return content[:at] + fresh + ("<br><br>" + rest if html_text(rest).strip() else rest)
    old = html_text(found.group(0))
    return content[: found.start()] + text_html(splice(old, block)) + content[found.end() :]


@dataclass
class _Mailbox:
    """What one process remembers of a manager's calendar between passes."""

    calendar_id: str | None = None
    masters: dict[str, str] = field(default_factory=dict)  # master id -> uid (cadence's only)
    foreign: set[str] = field(default_factory=set)  # master ids of other people's series
    seen: dict[str, ObservedSeries] = field(default_factory=dict)  # uid -> last reported
    synced: bool = False


@dataclass(frozen=True)
class _Reading:
    """One mailbox between its delta round and the reads of its masters."""

    manager: str
    box: _Mailbox
    window_start: datetime
    link: str  # the new delta token
    ids: list[str]  # the masters to read back
    complete: bool  # a full listing, not the changes since a token


class GraphCalendarProvider(WritesByApply):
    """A ``CalendarProvider`` over Microsoft Graph; a manager's calendar is in their mailbox.

    ``calendar`` is ``primary`` (the mailbox's own calendar) or the name of a calendar cadence
    creates in each mailbox. ``clock`` places the delta window (tests and simulations move it).
    """

    capabilities = Capabilities(sync_tokens=True, free_busy=True, batches=True)

    def __init__(
        self,
        client: GraphClient,
        calendar: str = PRIMARY,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.calendar = calendar
        self._clock = clock or (lambda: datetime.now(UTC))
        self._boxes: dict[str, _Mailbox] = {}
        self._roles: set[str] | None = None  # the token's permissions, once diagnosed

    def _box(self, manager: str) -> _Mailbox:
        return self._boxes.setdefault(manager.lower(), _Mailbox())

    # -- the contract ---------------------------------------------------------------------------

    def ensure_calendar(self, manager: str) -> None:
        if self.calendar == PRIMARY:
            self._calendar_path(manager)
            return
        try:
            self._calendar_path(manager)
        except NotFound as err:
            if "does not exist in the tenant" in str(err):
                raise
            made = self.client.call(
                Request("POST", f"/users/{manager}/calendars", body={"name": self.calendar}),
                ok=(201, 409),
            )
            if made.status == 201:
                self._box(manager).calendar_id = str(made.body["id"])
                log.info("created calendar %r in %s", self.calendar, manager)
            else:
                self._calendar_path(manager)

    def changes(self, manager: str, token: str | None) -> Changes:
        got = self.changes_many({manager: token})[manager]
        if isinstance(got, ProviderError):
            raise got
        return got

    def changes_many(
        self, tokens: Mapping[str, str | None]
    ) -> Mapping[str, Changes | ProviderError]:
        """Each mailbox's delta (its pages follow links of their own), then the masters of every
        mailbox read back in one ``$batch`` set, 20 to a round trip whoever's they are. The
        tokens' ids are recalled first, so a restarted daemon looks up no calendar it knows;
        the primary calendars still unknown are looked up in one ``$batch`` set too."""
        out: dict[str, Changes | ProviderError] = {}
        since: dict[str, tuple[datetime, str] | None] = {}
        for manager, token in tokens.items():
            try:
                since[manager] = self._since(manager, token)
            except TokenExpired as err:
                out[manager] = err
        unknown = [m for m in since if self._box(m).calendar_id is None]
        if self.calendar == PRIMARY and len(unknown) > 1:
            requests = [
                Request("GET", f"/users/{m}/calendar", params={"$select": "id"}) for m in unknown
            ]
            answered: Iterable[tuple[str, Request, Response]] = ()
            try:
                answered = zip(unknown, requests, self.client.batch(requests), strict=True)
            except ProviderError as err:  # Graph did not answer: each of these mailboxes says so
                out.update((m, err) for m in unknown)
            for manager, request, response in answered:
                if response.status == 200:
                    self._box(manager).calendar_id = PRIMARY
                else:
                    out[manager] = failure(request, response)
        readings: list[_Reading] = []
        for manager, start in since.items():
            if manager in out:
                continue
            try:
                readings.append(self._begin(manager, start))
            except ProviderError as err:
                out[manager] = err
        requests = [self._master_request(r.manager, m) for r in readings for m in r.ids]
        try:
            answers = iter(zip(requests, self.client.batch(requests), strict=True))
        except ProviderError as err:  # Graph did not answer: each of these mailboxes says so
            out.update((r.manager, err) for r in readings)
            return out
        for reading in readings:
            mine = [next(answers) for _ in reading.ids]
            try:
                out[reading.manager] = self._finish(reading, mine)
            except ProviderError as err:
                out[reading.manager] = err
        return out

    def apply(self, writes: Sequence[Write]) -> list[ProviderError | None]:
        """Three rounds of ``$batch`` (20 to a round trip) across every mailbox and series:
        the creates (each with its ``transactionId``, so a retry after a crash finds what the
        first made) and the reads of the masters to end or rewrite; then the PATCHes and
        DELETEs those call for, and the reads of the occurrences to rewrite (Graph's
        occurrence ids cannot be computed); then the occurrences' PATCHes."""
        out: list[ProviderError | None] = [None] * len(writes)
        first: list[tuple[int, Request]] = []
        for index, write in enumerate(writes):
            try:
                if isinstance(write, Create):
                    path = self._calendar_path(write.manager) + "/events"
                    first.append(
                        (index, Request("POST", path, body=self._event_body(write.series)))
                    )
                else:
                    master = self._master_id(write.manager, write.uid)
                    request = self._master_request(write.manager, master)
                    first.append(
                        (index, Request("GET", request.path, request.params, headers=_UTC))
                    )
            except ProviderError as err:
                out[index] = err
        second: list[tuple[int, Request]] = []
        occurrences: dict[int, tuple[str, Mapping[datetime, str]]] = {}  # write -> master, blocks
        for (index, request), response in zip(
            first, self.client.batch([r for _, r in first]), strict=True
        ):
            write = writes[index]
            try:
                if isinstance(write, Create):
                    if response.status not in (200, 201):
                        raise failure(request, response)
                    master = _id_of(response.body, write.manager)
                    self._box(write.manager).masters[master] = write.series.uid
                    occurrences[index] = (master, write.series.occurrence_descriptions)
                    continue
                master = request.path.rsplit("/", 1)[1]
                data = self._owned(write.manager, write.uid, master, request, response)
                if isinstance(write, End):
                    second += [(index, r) for r in self._ending(write, master, data)]
                    continue
                if write.master_block is not None:
                    content = str((data.get("body") or {}).get("content") or "")
                    new = splice_html(content, write.master_block)
                    if new != content:
                        body = {"body": {"contentType": "html", "content": new}}
                        path = f"/users/{write.manager}/events/{master}"
                        second.append((index, Request("PATCH", path, body=body)))
                occurrences[index] = (master, write.occurrence_blocks)
            except ProviderError as err:
                out[index] = err
        reads = [
            (index, self._instances_request(writes[index].manager, master, sorted(blocks)))
            for index, (master, blocks) in occurrences.items()
            if blocks
        ]
        answers = self.client.batch([r for _, r in second] + [r for _, r in reads])
        for (index, request), response in zip(second, answers[: len(second)], strict=True):
            if response.status not in (200, 204) and out[index] is None:
                out[index] = failure(request, response)
        third: list[tuple[int, Request]] = []
        for (index, request), response in zip(reads, answers[len(second) :], strict=True):
            if response.status != 200:
                out[index] = out[index] or failure(request, response)
                continue
            manager, blocks = writes[index].manager, occurrences[index][1]
            third += [(index, r) for r in self._occurrence_patches(manager, response, blocks)]
        for (index, request), response in zip(
            third, self.client.batch([r for _, r in third]), strict=True
        ):
            if response.status not in (200, 204) and out[index] is None:
                out[index] = failure(request, response)
        return out

    def _ending(self, write: End, master: str, data: Mapping[str, Any]) -> list[Request]:
        """The DELETE (it never met) or the PATCH of the recurrence that ends the series at
        ``until``; none when it already ends there. A deleted series shows at the next
        ``changes`` as its master answering 404."""
        zone = self._zone_of(data)
        path = f"/users/{write.manager}/events/{master}"
        if write.until < _utc(data["start"]).astimezone(zone).date():
            return [Request("DELETE", path)]
        recurrence = dict(data.get("recurrence") or {})
        rng = dict(recurrence.get("range") or {})
        if rng.get("type") == "endDate" and rng.get("endDate") == write.until.isoformat():
            return []
        rng.update({"type": "endDate", "endDate": write.until.isoformat()})
        rng.pop("numberOfOccurrences", None)
        recurrence["range"] = rng
        return [Request("PATCH", path, body={"recurrence": recurrence})]

    def _occurrence_patches(
        self, manager: str, response: Response, blocks: Mapping[datetime, str]
    ) -> list[Request]:
        """Each block spliced into its occurrence (from an ``instances`` answer); one that is
        not on the calendar is left."""
        by_original = {
            datetime.fromisoformat(str(i["originalStart"]).replace("Z", "+00:00")): i
            for i in (response.body or {}).get("value") or []
            if i.get("originalStart")
        }
        patches = []
        for original, block in sorted(blocks.items()):
            instance = by_original.get(original.astimezone(UTC))
            if instance is None:
                log.debug("occurrence %s of a series of %s is not on the calendar", original,
                          manager)  # fmt: skip
                continue
            content = str((instance.get("body") or {}).get("content") or "")
            new = splice_html(content, block)
            # An occurrence gets its own copy (an exception) even when the text is the same,
            # as the contract asks: series-wide edits then leave this meeting's agenda alone.
            if new != content or instance.get("type") == "occurrence":
                body = {"body": {"contentType": "html", "content": new}}
                patches.append(
                    Request("PATCH", f"/users/{manager}/events/{instance['id']}", body=body)
                )
        return patches

    def diagnose(self, manager: str) -> list[Check]:
        """Token and permissions (once), then this manager's mailbox and calendar: reachable
        (read), writable (the Calendars.ReadWrite application permission, since Graph has no
        write that can be refused on purpose). Nothing is written."""
        rows: list[Check] = []
        if self._roles is None:
            self._roles = self.client.roles()  # raises AuthError with the AADSTS line
            rows.append(Check("token", self.client.settings.tenant_id, True,
                              f"app {self.client.settings.client_id}"))  # fmt: skip
            hours = "MailboxSettings.Read" in self._roles
            rows.append(Check("working hours", "MailboxSettings.Read", hours, "granted" if hours
                              else "grant it (application) and admin-consent it"))  # fmt: skip
        try:
            self._calendar_path(manager)
            rows.append(Check("calendar reachable", manager, True, self.calendar))
        except NotFound as err:
            if self.calendar == PRIMARY or "does not exist in the tenant" in str(err):
                rows.append(Check("calendar reachable", manager, False, str(err)))
                return rows
            detail = f"{self.calendar!r} will be created by the first pass"
            rows.append(Check("calendar reachable", manager, True, detail))
        except ProviderError as err:
            rows.append(Check("calendar reachable", manager, False, str(err)))
            return rows
        writable = "Calendars.ReadWrite" in self._roles
        grant = "grant Calendars.ReadWrite (application) and admin-consent it"
        rows.append(
            Check(
                "calendar writable", manager, writable, "Calendars.ReadWrite" if writable else grant
            )
        )
        return rows

    def set_attendees(
        self,
        manager: str,
        uid: str,
        attendees: Mapping[datetime | None, Sequence[Attendee]],
    ) -> None:
        """PATCH ``attendees`` of the master and of occurrences (found through ``instances``);
        Exchange sends newcomers an invitation."""
        master, data = self._owned_master(manager, uid)
        if None in attendees:
            people = _people(data, attendees[None])
            if people is not None:
                path = f"/users/{manager}/events/{master}"
                self.client.call(Request("PATCH", path, body={"attendees": people}))
        originals = sorted(o for o in attendees if o is not None)
        if not originals:
            return
        read = self._instances_request(manager, master, originals)
        read = Request(read.method, read.path, {**read.params, "$select": "id,originalStart,"
                       "attendees,type,isCancelled"}, headers=read.headers)  # fmt: skip
        found = self.client.call(read, ok=(200,)).body or {}
        by_original = {
            datetime.fromisoformat(str(i["originalStart"]).replace("Z", "+00:00")): i
            for i in found.get("value") or []
            if i.get("originalStart")
        }
        patches = []
        for original in originals:
            instance = by_original.get(original.astimezone(UTC))
            if instance is None or instance.get("isCancelled"):
                continue
            people = _people(instance, attendees[original])
            if people is not None:
                path = f"/users/{manager}/events/{instance['id']}"
                patches.append(Request("PATCH", path, body={"attendees": people}))
        for request, response in zip(patches, self.client.batch(patches), strict=True):
            if response.status not in (200, 204):
                raise failure(request, response)

    def free_busy(
        self, emails: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, Sequence[tuple[datetime, datetime]]]:
        if not emails:
            return {}
        busy: dict[str, list[tuple[datetime, datetime]]] = {e.lower(): [] for e in emails}
        slice_start = start
        while slice_start < end:  # getSchedule takes at most 62 days at a time
            slice_end = min(end, slice_start + timedelta(days=62))
            answer = self.client.call(
                Request(
                    "POST",
                    f"/users/{emails[0]}/calendar/getSchedule",
                    body={
                        "schedules": list(emails),
                        "startTime": {
                            "dateTime": _local(slice_start.astimezone(UTC)),
                            "timeZone": "UTC",
                        },
                        "endTime": {
                            "dateTime": _local(slice_end.astimezone(UTC)),
                            "timeZone": "UTC",
                        },
                        "availabilityViewInterval": 30,
                    },  # fmt: skip
                    headers=_UTC,
                ),
                ok=(200,),
            )
            for item in (answer.body or {}).get("value") or []:
                who = str(item.get("scheduleId", "")).lower()
                for entry in item.get("scheduleItems") or []:
                    if entry.get("status") in ("busy", "oof", "tentative", "workingElsewhere"):
                        busy.setdefault(who, []).append((_utc(entry["start"]), _utc(entry["end"])))
            slice_start = slice_end
        return busy

    def working_hours(self, managers: Sequence[str]) -> Mapping[str, CalendarHours | None]:
        """Each mailbox's ``workingHours`` (``$batch``, 20 to a round trip). A mailbox that
        cannot be read (no MailboxSettings.Read, no mailbox) or holds hours cadence cannot use
        (a custom zone, an end before the start) is None: the configured defaults apply."""
        requests = [
            Request("GET", f"/users/{m}/mailboxSettings", params={"$select": "workingHours"})
            for m in managers
        ]
        out: dict[str, CalendarHours | None] = {}
        for manager, request, response in zip(
            managers, requests, self.client.batch(requests), strict=True
        ):
            out[manager] = None
            if response.status != 200:
                error = failure(request, response)
                if isinstance(error, Transient):
                    raise error
                log.info("working hours of %s not readable: %s", manager, error)
                continue
            hours = (response.body or {}).get("workingHours") or {}
            zone_name = str((hours.get("timeZone") or {}).get("name") or "")
            iana = win_tz.get(zone_name) or (zone_name if zone_name in tz_win else None)
            try:
                days = tuple(sorted(_GRAPH_DAYS.index(d) for d in hours["daysOfWeek"]))
                known = WorkingHours(
                    days=days,
                    start=time.fromisoformat(str(hours["startTime"])[:8]),
                    end=time.fromisoformat(str(hours["endTime"])[:8]),
                )
            except (KeyError, ValueError, TypeError):
                known = None
            if known is None or iana is None:
                log.info("working hours of %s not usable: %r", manager, hours)
                continue
            out[manager] = CalendarHours(known, iana)
        return out

    # -- reading ----------------------------------------------------------------------------------

    def _window_start(self) -> datetime:
        now = self._clock().astimezone(UTC)
        day = (now - WINDOW_BACK).date()
        return datetime.combine(day, time(), tzinfo=UTC)

    def _delta(
        self, manager: str, window_start: datetime, delta_token: str | None
    ) -> tuple[set[str], str]:
        """Master ids delta mentions (occurrences name their master) and the new delta token."""
        path = self._calendar_path(manager) + "/calendarView/delta"
        if delta_token is None:
            params = {
                "startDateTime": window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": (window_start + WINDOW_BACK + WINDOW_AHEAD).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            }
        else:
            params = {"$deltatoken": delta_token}
        items, last = self.client.pages(Request("GET", path, params=params, headers=_DELTA))
        link = str(last.get("@odata.deltaLink") or "")
        found = re.search(r"[?&]\$?deltatoken=([^&]+)", link)
        if not found:
            raise ProviderError(f"Microsoft Graph gave no deltaLink for {manager}'s calendar")
        masters = set()
        for item in items:
            if "@removed" in item:
                continue  # a removed master shows as 404 when it is read below
            if item.get("type") == "seriesMaster":
                masters.add(str(item["id"]))
            elif item.get("seriesMasterId"):
                masters.add(str(item["seriesMasterId"]))
        return masters, found.group(1)

    def _since(self, manager: str, token: str | None) -> tuple[datetime, str] | None:
        """The window start and delta token of ``token`` (None: list in full), the calendar's
        ids recalled from it when this process does not know them yet."""
        if token is None:
            return None
        started, _, rest = token.partition("~")
        delta_token, _, ids = rest.partition(" ")
        try:
            token_start = datetime.fromisoformat(started)
        except ValueError:
            raise TokenExpired(f"delta token for {manager} is not one cadence made") from None
        # The token's window must start no later than this pass needs (a clock set back, as a
        # replay does, would otherwise miss what lies before it) nor too long before.
        moved = self._window_start() - token_start
        if not delta_token or not timedelta(0) <= moved <= WINDOW_SLIDE:
            raise TokenExpired(f"delta window for {manager} has moved; resync")
        box = self._box(manager)
        if not box.synced and ids:
            _recall(box, ids, self.calendar)
        return token_start, delta_token

    def _begin(self, manager: str, since: tuple[datetime, str] | None) -> _Reading:
        """The delta round of one mailbox, and which masters to read back: every live one
        cadence knows (a deleted occurrence is only seen there) and those delta names."""
        box = self._box(manager)
        if since is not None:
            found, link = self._delta(manager, since[0], since[1])
            if box.synced:
                ids = sorted(set(box.masters) | (found - box.foreign))
                return _Reading(manager, box, since[0], link, ids, complete=False)
        window_start = self._window_start()
        found, link = self._delta(manager, window_start, None)
        box.masters.clear()
        box.foreign.clear()
        box.seen.clear()
        return _Reading(manager, box, window_start, link, sorted(found), complete=True)

    def _finish(self, reading: _Reading, answers: Sequence[tuple[Request, Response]]) -> Changes:
        """The mailbox's ``Changes`` from its masters' answers (in ``reading.ids`` order)."""
        box = reading.box
        series = self._read_masters(reading.manager, box, reading.ids, answers)
        if reading.complete:
            box.seen = {s.uid: s for s in series.values() if s is not None}
            box.synced = True
            return Changes(
                token=_token(reading.window_start, reading.link, box, self.calendar),
                changed=tuple(sorted(box.seen.values(), key=lambda s: s.uid)),
                removed=(),
                complete=True,
            )
        changed: list[ObservedSeries] = []
        removed: list[str] = []
        for master in reading.ids:
            read = series[master]
            if read is None:  # gone (404), or someone else's series
                uid = box.masters.pop(master, None)
                if uid is not None:  # what was seen before a restart is in the caller's cache
                    box.seen.pop(uid, None)
                    removed.append(uid)
                continue
            if box.seen.get(read.uid) != read:
                changed.append(read)
                box.seen[read.uid] = read
        return Changes(
            token=_token(reading.window_start, reading.link, box, self.calendar),
            changed=tuple(sorted(changed, key=lambda s: s.uid)),
            removed=tuple(sorted(removed)),
            complete=False,
        )

    def _read_masters(
        self,
        manager: str,
        box: _Mailbox,
        ids: Sequence[str],
        answers: Sequence[tuple[Request, Response]],
    ) -> dict[str, ObservedSeries | None]:
        """Each master as read back (None: gone, or not cadence's); foreign ones are remembered
        by id only, so they are not read again."""
        out: dict[str, ObservedSeries | None] = {}
        for master, (request, response) in zip(ids, answers, strict=True):
            if response.status == 404:
                out[master] = None
                continue
            if response.status != 200:
                raise failure(request, response)
            try:
                read = self._observe(response.body)
            except (KeyError, ValueError, TypeError, AttributeError) as err:
                raise ProviderError(
                    f"Microsoft Graph sent an event of {manager}'s that cadence cannot read"
                    f" ({type(err).__name__}: {err})"
                ) from None
            if read is None:
                box.foreign.add(master)
                box.masters.pop(master, None)
            else:
                box.masters[master] = read.uid
            out[master] = read
        return out

    def _master_request(self, manager: str, master: str) -> Request:
        expand = (
            "exceptionOccurrences,singleValueExtendedProperties($filter=id eq "
            f"'{UID_PROPERTY}' or id eq '{ZONE_PROPERTY}')"
        )
        return Request(
            "GET",
            f"/users/{manager}/events/{master}",
            params={"$select": _MASTER_SELECT, "$expand": expand},
            headers=_READ,
        )

    def _observe(self, data: Mapping[str, Any]) -> ObservedSeries | None:
        props = {
            str(p.get("id", "")).lower(): str(p.get("value", ""))
            for p in data.get("singleValueExtendedProperties") or []
        }
        uid = props.get(UID_PROPERTY.lower())
        recurrence = data.get("recurrence") or {}
        if not uid or data.get("type") != "seriesMaster" or not recurrence:
            return None
        zone_name = props.get(ZONE_PROPERTY.lower()) or win_tz.get(
            str(data.get("originalStartTimeZone")), "UTC"
        )
        zone = _zone(zone_name)
        start = _utc(data["start"]).astimezone(zone)
        pattern, rng = recurrence.get("pattern") or {}, recurrence.get("range") or {}
        days = sorted(_GRAPH_DAYS.index(d) for d in pattern.get("daysOfWeek") or [])
        rule = (
            f"FREQ=WEEKLY;INTERVAL={int(pattern.get('interval') or 1)};"
            f"BYDAY={','.join(RRULE_DAYS[d] for d in days)}"
        )
        until = date.fromisoformat(rng["endDate"]) if rng.get("type") == "endDate" else None
        exdates = tuple(
            datetime.combine(date.fromisoformat(c.rsplit(".", 1)[-1]), start.time(), tzinfo=zone)
            for c in data.get("cancelledOccurrences") or []
        )
        overrides = tuple(
            ObservedOverride(
                recurrence_id=datetime.fromisoformat(
                    str(e["originalStart"]).replace("Z", "+00:00")
                ).astimezone(zone),
                start=_utc(e["start"]).astimezone(zone),
                end=_utc(e["end"]).astimezone(zone),
                cancelled=bool(e.get("isCancelled")),
                attendees=_attendees(e.get("attendees")),
                description=str((e.get("body") or {}).get("content") or ""),
            )
            for e in data.get("exceptionOccurrences") or []
        )
        organizer = ((data.get("organizer") or {}).get("emailAddress") or {}).get("address", "")
        return ObservedSeries(
            uid=uid,
            owned=True,
            start=start,
            duration=_utc(data["end"]) - _utc(data["start"]),
            timezone=zone_name,
            rrule=rule,
            until=until,
            organizer=str(organizer).lower(),
            attendees=_attendees(data.get("attendees")),
            description=str((data.get("body") or {}).get("content") or ""),
            summary=str(data.get("subject") or ""),
            exdates=tuple(sorted(exdates)),
            overrides=tuple(sorted(overrides, key=lambda o: o.recurrence_id)),
        )

    # -- writing ----------------------------------------------------------------------------------

    def _event_body(self, series: SeriesSpec) -> dict[str, Any]:
        weekly = parse_weekly(series.rrule)
        if weekly is None or not weekly[0]:
            raise ProviderError(f"series {series.uid}: rule {series.rrule!r} is not weekly")
        try:
            zone = ZoneInfo(series.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                f"series {series.uid}: unknown time zone {series.timezone!r}"
            ) from None
        windows = windows_zone(series.timezone)
        days, interval = weekly
        start = series.start.astimezone(zone)
        rng: dict[str, Any] = {
            "type": "noEnd",
            "startDate": start.date().isoformat(),
            "recurrenceTimeZone": windows,
        }
        if series.until is not None:
            rng.update({"type": "endDate", "endDate": series.until.isoformat()})
        return {
            "subject": series.summary,
            "body": {"contentType": "html", "content": text_html(series.description)},
            "start": {"dateTime": _local(start), "timeZone": windows},
            "end": {"dateTime": _local(start + series.duration), "timeZone": windows},
            "recurrence": {
                "pattern": {
                    "type": "weekly",
                    "interval": interval,
                    "daysOfWeek": [_GRAPH_DAYS[d] for d in days],
                    "firstDayOfWeek": "monday",
                },
                "range": rng,
            },
            "attendees": [
                {"emailAddress": {"address": a.email, "name": a.name}, "type": "required"}
                for a in series.invitees
            ],
            "transactionId": _transaction_id(series.uid),
            "singleValueExtendedProperties": [
                {"id": UID_PROPERTY, "value": series.uid},
                {"id": ZONE_PROPERTY, "value": series.timezone},
            ],
        }

    def _instances_request(self, manager: str, master: str, originals: list[datetime]) -> Request:
        def utc(moment: datetime) -> str:
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        return Request(
            "GET",
            f"/users/{manager}/events/{master}/instances",
            params={
                "startDateTime": utc(originals[0] - timedelta(days=8)),
                "endDateTime": utc(originals[-1] + timedelta(days=8)),
                "$select": "id,originalStart,body,type",
                "$top": "100",
            },
            headers=_UTC,
        )

    # -- lookups ----------------------------------------------------------------------------------

    def _calendar_path(self, manager: str) -> str:
        if self.calendar == PRIMARY:
            box = self._box(manager)
            if box.calendar_id is None:
                self.client.call(Request("GET", f"/users/{manager}/calendar",
                                         params={"$select": "id"}), ok=(200,))  # fmt: skip
                box.calendar_id = PRIMARY
            return f"/users/{manager}/calendar"
        box = self._box(manager)
        if box.calendar_id is None:
            name = self.calendar.replace("'", "''")
            found = (
                self.client.call(
                    Request(
                        "GET",
                        f"/users/{manager}/calendars",
                        params={"$filter": f"name eq '{name}'", "$select": "id,name"},
                    ),
                    ok=(200,),
                ).body.get("value")
                or []
            )
            if not found:
                raise NotFound(f"{manager} has no calendar named {self.calendar!r} yet")
            box.calendar_id = str(found[0]["id"])
        return f"/users/{manager}/calendars/{box.calendar_id}"

    def _master_id(self, manager: str, uid: str) -> str:
        """The master id of cadence's series ``uid``: remembered, else looked up by its tag."""
        box = self._box(manager)
        master = next((m for m, u in box.masters.items() if u == uid), None)
        if master is not None:
            return master
        value = uid.replace("'", "''")
        listed = (
            self.client.call(
                Request(
                    "GET",
                    f"/users/{manager}/events",
                    params={
                        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq "
                        f"'{UID_PROPERTY}' and ep/value eq '{value}')",
                        "$select": "id,type",
                    },
                ),
                ok=(200,),
            ).body.get("value")
            or []
        )
        masters = [str(e["id"]) for e in listed if e.get("type") == "seriesMaster"]
        if not masters:
            raise NotFound(f"series {uid} is not on {manager}'s calendar")
        return masters[0]

    def _owned_master(self, manager: str, uid: str) -> tuple[str, dict[str, Any]]:
        """The master id of cadence's series ``uid`` and its properties, read alone."""
        master = self._master_id(manager, uid)
        request = self._master_request(manager, master)
        request = Request("GET", request.path, request.params, headers=_UTC)
        response = self.client.call(request, ok=(200, 404))
        return master, self._owned(manager, uid, master, request, response)

    def _owned(
        self, manager: str, uid: str, master: str, request: Request, response: Response
    ) -> dict[str, Any]:
        """The master's properties (HTML body, UTC times) from the answer to its read;
        ``NotFound`` when it is gone or not cadence's."""
        box = self._box(manager)
        if response.status == 404:
            box.masters.pop(master, None)
            raise NotFound(f"series {uid} is not on {manager}'s calendar")
        if response.status != 200:
            raise failure(request, response)
        props = {
            str(p.get("id", "")).lower(): p.get("value")
            for p in (response.body or {}).get("singleValueExtendedProperties") or []
        }
        if props.get(UID_PROPERTY.lower()) != uid:
            raise NotFound(f"event {master} on {manager}'s calendar was not created by cadence")
        box.masters[master] = uid
        return dict(response.body)

    def _zone_of(self, data: Mapping[str, Any]) -> ZoneInfo:
        props = {
            str(p.get("id", "")).lower(): str(p.get("value", ""))
            for p in data.get("singleValueExtendedProperties") or []
        }
        name = props.get(ZONE_PROPERTY.lower()) or win_tz.get(
            str(data.get("originalStartTimeZone")), "UTC"
        )
        return _zone(name)


def _token(window_start: datetime, delta_token: str, box: _Mailbox, name: str) -> str:
    """The sync token: the delta window and token, then (after a space, which a URL's token
    cannot hold) the calendar's name and id and cadence's master ids, compressed."""
    ids = {"name": name, "calendar": box.calendar_id, "masters": box.masters}
    text = json.dumps(ids, sort_keys=True)
    packed = base64.urlsafe_b64encode(zlib.compress(text.encode(), 9)).decode()
    return f"{window_start.isoformat()}~{delta_token} {packed}"


def _recall(box: _Mailbox, packed: str, name: str) -> None:
    """A restarted process's memory of one calendar, from the token. Unreadable, or made for
    another ``calendar`` setting: none, and the caller lists the calendar in full."""
    try:
        ids = json.loads(zlib.decompress(base64.urlsafe_b64decode(packed)))
        masters = {str(m): str(u) for m, u in ids["masters"].items()}
        calendar = ids["calendar"]
        if ids["name"] != name:
            return
    except (ValueError, TypeError, KeyError, AttributeError, zlib.error):
        log.warning("ignoring unreadable calendar ids in a sync token")
        return
    box.calendar_id = None if calendar is None else str(calendar)
    box.masters = masters
    box.synced = True


def _id_of(body: Any, manager: str) -> str:
    if not isinstance(body, dict) or not body.get("id"):
        raise ProviderError(f"Microsoft Graph created an event for {manager} but sent no id")
    return str(body["id"])


def _people(event: Mapping[str, Any], wanted: Sequence[Attendee]) -> list[Any] | None:
    """The ``attendees`` to write so that exactly ``wanted`` are invited (those who stay keep
    their answers), or None when they already are."""
    current = {
        str((p.get("emailAddress") or {}).get("address") or "").lower(): p
        for p in event.get("attendees") or []
    }
    current.pop("", None)
    if sorted(current) == sorted(a.email.lower() for a in wanted):
        return None
    return [
        current.get(a.email.lower())
        or {"emailAddress": {"address": a.email, "name": a.name}, "type": "required"}
        for a in wanted
    ]


def _attendees(values: Any) -> tuple[Attendee, ...]:
    out = []
    for value in values or []:
        address = (value.get("emailAddress") or {}).get("address")
        if not address:
            continue
        response = str((value.get("status") or {}).get("response") or "none")
        out.append(
            Attendee(
                email=str(address).lower(),
                partstat=_PARTSTAT.get(response, "NEEDS-ACTION"),
                name=str((value.get("emailAddress") or {}).get("name") or ""),
            )
        )
    return tuple(out)


def unusable_zones(roster: Roster) -> list[str]:
    """One line per roster entry whose time zone Graph cannot be sent."""
    found: list[tuple[str, str | None]] = [("organization", roster.organization.timezone)]
    found += [(f"managers ({m.email})", m.timezone) for m in roster.managers]
    found += [(f"reps ({r.email})", r.timezone) for r in roster.reps]
    problems = []
    for where, name in found:
        if name is None:
            continue
        try:
            windows_zone(name)
        except ProviderError:
            problems.append(
                f"{where}: timezone: {name!r} has no Windows name Microsoft Graph accepts;"
                " use the canonical IANA name of that zone"
            )
    return problems


def open_outlook(
    config: Config, clock: Callable[[], datetime] | None = None
) -> GraphCalendarProvider:
    """The Outlook provider for a config with ``calendar.provider: outlook``; ``clock`` gives
    the pass's time, around which the delta window is placed."""
    problems = unusable_zones(config.roster)
    if problems:
        raise ConfigError([f"{config.path}: {p}" for p in problems])
    outlook = config.settings.calendar.outlook
    assert outlook is not None  # the config's own validation requires it for outlook
    return GraphCalendarProvider(client_for(config), outlook.calendar, clock=clock)
