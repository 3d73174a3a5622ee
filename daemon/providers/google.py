"""The Google Calendar v3 provider: each manager's calendar, acting as the manager.

Google delivers a recurring series as a master event plus, as items of their own, its exceptions
(moved, edited or cancelled instances with ``recurringEventId`` and ``originalStartTime``). The
contract wants whole series, so ``changes`` regroups them: a full listing has everything; a delta
(``syncToken``) names the series that changed, and any of those whose exceptions may predate the
token is re-read with one ``events.list(iCalUID=...)``. The token handed to the caller carries the
newest ``updated`` stamp seen, which is how a series created since the last token is known to be
whole already (so the pass after a cold start is still one call per manager).

Events cadence owns carry ``extendedProperties.private["cadence-series"]`` and an ``id`` derived
from the series UID (base32hex), which makes ``create_series`` idempotent: a 409 means the id is
taken, by our series or by its tombstone, which is restored rather than duplicated. Foreign
events are skipped without being parsed into series. Creating and ending a series notifies the
rep (``sendUpdates=all``); agenda rewrites notify nobody.

Many managers' work goes to Google at once (``changes_many``, ``apply``): batch requests of up
to 50 calls are filled across managers, each call carrying its own manager's token, so a cold
start of a big roster costs a few round trips per fifty calls rather than several per manager.
An occurrence is addressed by its computed instance id (``instance_id``), never looked up.

Every failure leaves as a ``daemon.errors`` class naming the manager; ``HttpError`` never does.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.prop import vRecur

from daemon.checks import Check
from daemon.config import GoogleSettings
from daemon.core.agenda import splice
from daemon.errors import (
    AuthError,
    ConfigError,
    Conflict,
    NotFound,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from daemon.google_api import CALENDAR, CALENDAR_SCOPES, CallFailed, GoogleApi, load_key
from daemon.providers import ical
from daemon.providers.base import (
    Agendas,
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

OWNER_KEY = "cadence-series"
# On an instance cadence made an exception (its own agenda): like a CalDAV override, it stays one
# even when its text happens to equal the series'.
OCCURRENCE_KEY = "cadence-occurrence"
_PAGE = 2500
_MASTER = "master"  # in ``apply``, the answer about the series itself (beside its instances)
_FREEBUSY_LIMIT = 50
_PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
    "needsAction": "NEEDS-ACTION",
}


_ID_PREFIX = b"cadence:"


def event_id(uid: str) -> str:
    """The Google event id of a series: base32hex (``a-v0-9``) of a tagged UID, reversibly."""
    return base64.b32hexencode(_ID_PREFIX + uid.encode()).decode().rstrip("=").lower()


def instance_id(uid: str, original: datetime) -> str:
    """Google's id of one occurrence of a timed series: the series' id, ``_`` and the original
    start in UTC, basic format (``..._20301015T160000Z``); a moved or edited instance keeps it."""
    return f"{event_id(uid)}_{original.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def uid_of(google_id: str) -> str | None:
    """The series UID an event id was made from, or None for an id cadence did not make."""
    text = google_id.upper()
    try:
        raw = base64.b32hexdecode(text + "=" * (-len(text) % 8))
        uid = raw.removeprefix(_ID_PREFIX).decode() if raw.startswith(_ID_PREFIX) else None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return uid if uid is not None and event_id(uid) == google_id else None


class GoogleCalendarProvider(WritesByApply):
    """A ``CalendarProvider`` over Google Calendar v3 with domain-wide delegation."""

    capabilities = Capabilities(sync_tokens=True, free_busy=True, batches=True)

    def __init__(
        self,
        key_info: Mapping[str, Any],
        calendar_id: str = "primary",
        *,
        root: str | None = None,
        api: GoogleApi | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.calendar_id = calendar_id
        self.api = api or GoogleApi(
            key_info, CALENDAR, CALENDAR_SCOPES, root=root, sleep=sleep or time.sleep
        )

    # -- the contract ------------------------------------------------------------------------

    def ensure_calendar(self, manager: str) -> None:
        """The primary calendar always exists; another ``calendar_id`` must already exist (the
        least scopes do not allow creating calendars), which one cheap read checks."""
        if self.calendar_id == "primary":
            return
        try:
            self._call(
                manager, lambda s: s.events().list(calendarId=self.calendar_id, maxResults=1)
            )
        except NotFound:
            raise NotFound(
                f"{manager} has no Google calendar {self.calendar_id!r}: create it in their "
                "account (cadence's scopes cannot) or set calendar.google.calendar_id: primary"
            ) from None

    def changes(self, manager: str, token: str | None) -> Changes:
        found = self.changes_many({manager: token})[manager]
        if isinstance(found, ProviderError):
            raise found
        return found

    def changes_many(
        self, tokens: Mapping[str, str | None]
    ) -> Mapping[str, Changes | ProviderError]:
        """Every calendar's listing in the same batches (next pages too), then, in one more
        round, the series a delta names whose exceptions may predate the token."""
        out: dict[str, Changes | ProviderError] = {}
        parsed: dict[str, tuple[str, str | None]] = {}
        for manager, token in tokens.items():
            try:
                parsed[manager] = _split_token(token) if token is not None else ("", None)
            except TokenExpired as err:
                out[manager] = err
        listed = self._list_many({m: sync for m, (_, sync) in parsed.items()})
        grouped: dict[str, _Listing] = {}
        rereads: list[tuple[str, str, Mapping[str, Any]]] = []  # manager, master id, any item
        for manager, got in listed.items():
            if isinstance(got, ProviderError):
                out[manager] = got
                continue
            watermark, sync = parsed[manager]
            listing = grouped[manager] = _group(*got, watermark=watermark, full=sync is None)
            if sync is None:
                continue
            for master_id in [*listing.masters, *listing.orphans()]:
                found = listing.masters.get(master_id)
                if found is None or str(found.get("created", "")) <= watermark:
                    rereads.append((manager, master_id, found or listing.exceptions[master_id][0]))
        wholes = self._whole_many(rereads)
        for manager, listing in grouped.items():
            changed: dict[str, ObservedSeries] = {}
            try:
                for master_id in [*listing.masters, *listing.orphans()]:
                    master, parts = wholes.get(
                        (manager, master_id),
                        (listing.masters.get(master_id), listing.exceptions.get(master_id, [])),
                    )
                    if isinstance(master, ProviderError):
                        raise master
                    series = self._observe(manager, master, parts) if master else None
                    if series is not None:
                        changed[series.uid] = series
            except ProviderError as err:
                out[manager] = err
                continue
            out[manager] = Changes(
                token=f"{listing.newest}|{listing.sync_token}",
                changed=tuple(changed.values()),
                removed=tuple(dict.fromkeys(u for u in listing.removed if u not in changed)),
                complete=listing.full,
            )
        return out

    def apply(self, writes: Sequence[Write]) -> list[ProviderError | None]:
        """Two rounds of batches across every manager and series: first the inserts and the
        reads (a master to end or rewrite, the instances to rewrite: their ids are computed,
        not looked up), then the patches and deletes those call for. A 409 on insert (ours
        already, or its tombstone) is adopted call by call."""
        out: list[ProviderError | None] = [None] * len(writes)
        bodies: dict[int, dict[str, Any]] = {}
        first: list[tuple[int, object, Callable[[Any], Any]]] = []  # write, what, call
        for index, write in enumerate(writes):
            if isinstance(write, Create):
                try:
                    bodies[index] = _event_body(write.series)
                except ProviderError as err:
                    out[index] = err
                    continue
                params = {"calendarId": self.calendar_id, "sendUpdates": "all",
                          "body": bodies[index]}  # fmt: skip
                first.append((index, _MASTER, partial(_events_insert, params=params)))
                continue
            first.append((index, _MASTER, self._get_call(event_id(write.uid))))
            if isinstance(write, Agendas):
                for original in sorted(write.occurrence_blocks):
                    call = self._get_call(instance_id(write.uid, original))
                    first.append((index, original, call))
        answers: dict[int, dict[object, Any]] = {}
        for (index, what, _), answer in zip(
            first, self._batch([(writes[i].manager, call) for i, _, call in first]), strict=True
        ):
            answers.setdefault(index, {})[what] = answer
        second: list[tuple[int, _Call]] = []
        for index, got in answers.items():
            write = writes[index]
            try:
                if isinstance(write, Create):
                    calls = self._after_insert(write, bodies[index], got)
                elif isinstance(write, End):
                    calls = self._ending(write, got[_MASTER])
                else:
                    calls = self._rewrites(write, got)
            except ProviderError as err:
                out[index] = err
                continue
            second += [(index, call) for call in calls]
        for (index, step), answer in zip(
            second, self._batch([(writes[i].manager, c.call) for i, c in second]), strict=True
        ):
            if not isinstance(answer, CallFailed) or out[index] is not None:
                continue
            # An instance no longer produced is left, as a cancelled one is.
            if not (step.instance and answer.status in (404, 410)):
                out[index] = self._error(writes[index].manager, answer, step.what)
        return out

    def _after_insert(
        self, write: Create, body: dict[str, Any], got: Mapping[object, Any]
    ) -> list[_Call]:
        """The series is there (made now, or adopted): its agenda exceptions to write. A fresh
        series' instances all carry its own description, so nothing needs reading."""
        spec, answer = write.series, got[_MASTER]
        if isinstance(answer, CallFailed) and answer.status == 409:
            self._adopt(write.manager, spec, body)
            if not spec.occurrence_descriptions:
                return []
            blocks = spec.occurrence_descriptions
            instances = {
                original: self._read(write.manager, instance_id(spec.uid, original))
                for original in blocks
            }
            return self._instance_patches(write.manager, spec.uid, blocks, instances)
        if isinstance(answer, CallFailed):
            raise self._error(write.manager, answer, f"series {spec.uid}")
        if not isinstance(answer, dict) or answer.get("id") != body["id"]:
            raise self._unexpected(write.manager, "events.insert")
        fresh = {"description": body["description"]}
        return self._instance_patches(
            write.manager, spec.uid, spec.occurrence_descriptions,
            dict.fromkeys(spec.occurrence_descriptions, fresh),
        )  # fmt: skip

    def _adopt(self, manager: str, spec: SeriesSpec, body: dict[str, Any]) -> None:
        """The id is taken: by our series (kept) or by its tombstone (restored, not copied)."""
        master = self._owned(manager, spec.uid, self._read(manager, body["id"]), live=False)
        if master.get("status") == "cancelled":
            log.info("restoring series %s from its tombstone", spec.uid)
            restore = {k: v for k, v in body.items() if k != "id"} | {"status": "confirmed"}
            self._call(manager, self._patch_call(body["id"], restore, notify=True),
                       what=f"series {spec.uid}")  # fmt: skip

    def _ending(self, write: End, answer: Any) -> list[_Call]:
        """The delete or the patch that ends the series at ``until``; none when it already
        ends there."""
        master = self._owned(write.manager, write.uid, answer)
        google_id = event_id(write.uid)
        zone = ZoneInfo(str(master["start"]["timeZone"]))
        start = _time(master["start"]).astimezone(zone)
        if write.until < start.date():
            params = {"calendarId": self.calendar_id, "eventId": google_id, "sendUpdates": "all"}
            return [_Call(f"series {write.uid}", partial(_events_delete, params=params))]
        lines = list(master.get("recurrence", []))
        rule_index = next(i for i, line in enumerate(lines) if line.upper().startswith("RRULE:"))
        rule = vRecur.from_ical(lines[rule_index][len("RRULE:") :])
        _, current = ical.canonical_rrule(rule, zone)
        if current == write.until and "COUNT" not in rule:
            return []
        rule.pop("COUNT", None)
        rule["UNTIL"] = [ical.until_utc(write.until, zone)]
        lines[rule_index] = "RRULE:" + rule.to_ical().decode()
        patch = self._patch_call(google_id, {"recurrence": lines}, notify=True)
        return [_Call(f"series {write.uid}", patch)]

    def _rewrites(self, write: Agendas, got: Mapping[object, Any]) -> list[_Call]:
        master = self._owned(write.manager, write.uid, got[_MASTER])
        calls = []
        if write.master_block is not None:
            text = str(master.get("description", ""))
            new = splice(text, write.master_block)
            if new != text:
                patch = self._patch_call(event_id(write.uid), {"description": new}, notify=False)
                calls.append(_Call(f"agenda of {write.uid}", patch))
        instances = {original: got[original] for original in write.occurrence_blocks}
        return calls + self._instance_patches(
            write.manager, write.uid, write.occurrence_blocks, instances
        )

    def _instance_patches(
        self,
        manager: str,
        uid: str,
        blocks: Mapping[datetime, str],
        instances: Mapping[datetime, Any],
    ) -> list[_Call]:
        """Each block spliced into its instance (read, or known); an instance that is not
        there (404) or cancelled is left. The instance becomes an exception of cadence's."""
        marks = {"private": {OWNER_KEY: uid, OCCURRENCE_KEY: "agenda"}}
        calls = []
        for original in sorted(blocks):
            instance = instances.get(original)
            if isinstance(instance, CallFailed):
                if instance.status in (404, 410):
                    continue
                raise self._error(manager, instance, f"agenda of {uid}")
            if not isinstance(instance, dict):
                raise self._unexpected(manager, "events.get")
            if instance.get("status") == "cancelled":
                continue
            text = str(instance.get("description", ""))
            new = splice(text, blocks[original])
            if new == text and _is_exception(instance):
                continue
            body = {"description": new, "extendedProperties": marks}
            patch = self._patch_call(instance_id(uid, original), body, notify=False)
            calls.append(_Call(f"agenda of {uid}", patch, instance=True))
        return calls

    def _owned(self, manager: str, uid: str, answer: Any, *, live: bool = True) -> dict[str, Any]:
        """The master cadence made for ``uid`` from a get's answer; ``NotFound`` when it is
        gone (deleted, when ``live``) or not cadence's."""
        if isinstance(answer, CallFailed):
            raise self._error(manager, answer, f"series {uid}")
        if not isinstance(answer, dict) or _owner_uid(answer) != uid:
            raise NotFound(
                f"event {event_id(uid)} on {manager}'s calendar was not created by cadence"
            )
        if live and answer.get("status") == "cancelled":
            raise NotFound(f"series {uid} was deleted from {manager}'s calendar")
        return dict(answer)

    def set_attendees(
        self,
        manager: str,
        uid: str,
        attendees: Mapping[datetime | None, Sequence[Attendee]],
    ) -> None:
        """The event's and its instances' ``attendees``; newcomers get an invitation. The
        master and the instances (their ids computed) are read in one batch; the master is
        patched before its instances, so an instance's own list is the last word."""
        google_id = event_id(uid)
        originals = sorted(o for o in attendees if o is not None)
        reads = [(manager, self._get_call(google_id))] + [
            (manager, self._get_call(instance_id(uid, original))) for original in originals
        ]
        answers = self._batch(reads)
        master = self._owned(manager, uid, answers[0])
        if None in attendees:
            people = _people(master, attendees[None])
            if people is not None:
                patch = self._patch_call(google_id, {"attendees": people}, notify=True)
                self._call(manager, patch, what=f"attendees of {uid}")
        patches = []
        for original, instance in zip(originals, answers[1:], strict=True):
            if isinstance(instance, CallFailed):
                if instance.status in (404, 410):
                    continue
                raise self._error(manager, instance, f"attendees of {uid}")
            if not isinstance(instance, dict) or instance.get("status") == "cancelled":
                continue
            people = _people(instance, attendees[original])
            if people is not None:
                body = {"attendees": people}
                patches.append((manager, self._patch_call(str(instance["id"]), body, notify=True)))
        for answer in self._batch(patches):
            if isinstance(answer, CallFailed):
                raise self._error(manager, answer, f"attendees of {uid}")

    def working_hours(self, managers: Sequence[str]) -> Mapping[str, CalendarHours | None]:
        # ``calendars.get`` shows a Workspace user's ``workingHours``, but only with a calendars
        # scope cadence's least-privilege delegation (events, free/busy) does not grant.
        return {m: None for m in managers}

    def free_busy(
        self, emails: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, Sequence[tuple[datetime, datetime]]]:
        if not emails:
            return {}
        asker = emails[0]
        found: dict[str, list[tuple[datetime, datetime]]] = {}
        for first in range(0, len(emails), _FREEBUSY_LIMIT):
            chunk = list(emails[first : first + _FREEBUSY_LIMIT])
            body = {
                "timeMin": _rfc3339(start),
                "timeMax": _rfc3339(end),
                "items": [{"id": email} for email in chunk],
            }
            answer = self._call(asker, partial(_freebusy_query, body=body))
            calendars = _field(answer, "calendars", dict)
            for email in chunk:
                entry = calendars.get(email) or {}
                try:
                    found[email] = [
                        (_instant(b["start"]), _instant(b["end"])) for b in entry.get("busy", [])
                    ]
                except (KeyError, TypeError, ValueError):
                    raise self._unexpected(asker, "freebusy.query") from None
        return found

    def diagnose(self, manager: str) -> list[Check]:
        try:
            self.api.token(manager)
        except CallFailed as failed:
            return [Check("token", manager, False, str(failed))]
        rows = [
            Check("token", manager, True, ", ".join(s.rsplit("/", 1)[-1] for s in self.api.scopes))
        ]
        try:
            answer = self._call(
                manager, lambda s: s.events().list(calendarId=self.calendar_id, maxResults=1)
            )
            role = str(answer.get("accessRole", "")) if isinstance(answer, dict) else ""
        except ProviderError as err:
            return [*rows, Check("calendar reachable", manager, False, str(err))]
        rows.append(Check("calendar reachable", manager, True, self.calendar_id))
        rows.append(
            Check("calendar writable", manager, role in ("owner", "writer"),
                  f"access role {role or 'unknown'}")
        )  # fmt: skip
        now = datetime.now(UTC)
        try:
            self.free_busy([manager], now, now + timedelta(minutes=1))
            rows.append(Check("free/busy", manager, True, "calendar.freebusy"))
        except ProviderError as err:
            rows.append(Check("free/busy", manager, False, str(err)))
        return rows

    # -- reading -----------------------------------------------------------------------------

    def _list_many(
        self, syncs: Mapping[str, str | None]
    ) -> dict[str, tuple[list[dict[str, Any]], str] | ProviderError]:
        """Each manager's whole listing (since the sync token, when given) and the next sync
        token; every round of pages goes in the same batches."""
        out: dict[str, tuple[list[dict[str, Any]], str] | ProviderError] = {}
        items: dict[str, list[dict[str, Any]]] = {manager: [] for manager in syncs}
        pending: dict[str, str | None] = dict.fromkeys(syncs)  # manager -> page token
        while pending:
            calls = []
            for manager, page in pending.items():
                params: dict[str, Any] = {"calendarId": self.calendar_id, "maxResults": _PAGE}
                if syncs[manager] is not None:
                    params["syncToken"] = syncs[manager]
                if page is not None:
                    params["pageToken"] = page
                calls.append((manager, partial(_events_list, params=params)))
            following: dict[str, str | None] = {}
            for (manager, _), answer in zip(calls, self._batch(calls), strict=True):
                try:
                    if isinstance(answer, CallFailed):
                        raise self._error(manager, answer, "")
                    items[manager].extend(_field(answer, "items", list, default=[]))
                    page = answer.get("nextPageToken")
                    if page:
                        following[manager] = str(page)
                        continue
                    token = answer.get("nextSyncToken")
                    if not isinstance(token, str) or not token:
                        raise self._unexpected(manager, "events.list without nextSyncToken")
                    out[manager] = (items[manager], token)
                except ProviderError as err:
                    out[manager] = err
            pending = following
        return out

    def _whole_many(
        self, wanted: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> dict[tuple[str, str], tuple[Any, list[dict[str, Any]]]]:
        """For (manager, master id, any item of the series): the master (None when gone, or the
        error) and every exception, by one ``events.list(iCalUID=...)`` each, batched."""
        out: dict[tuple[str, str], tuple[Any, list[dict[str, Any]]]] = {}
        calls = []
        keys = []
        for manager, master_id, any_item in wanted:
            ical_uid = any_item.get("iCalUID")
            if not ical_uid:
                out[(manager, master_id)] = (self._unexpected(manager, "event without iCalUID"), [])
                continue
            params = {"calendarId": self.calendar_id, "iCalUID": ical_uid, "maxResults": _PAGE}
            calls.append((manager, partial(_events_list, params=params)))
            keys.append((manager, master_id))
        for key, answer in zip(keys, self._batch(calls), strict=True):
            manager = key[0]
            if isinstance(answer, CallFailed):
                out[key] = (self._error(manager, answer, ""), [])
                continue
            try:
                found = _field(answer, "items", list, default=[])
            except ProviderError as err:
                out[key] = (err, [])
                continue
            master: dict[str, Any] | None = None
            parts: list[dict[str, Any]] = []
            for item in found:
                if item.get("recurringEventId"):
                    parts.append(item)
                elif (
                    item.get("status") != "cancelled"
                    and _owner_uid(item)
                    and item.get("recurrence")
                ):
                    master = item
            out[key] = (master, parts)
        return out

    def _observe(
        self, manager: str, master: Mapping[str, Any], parts: Sequence[Mapping[str, Any]]
    ) -> ObservedSeries | None:
        uid = _owner_uid(master)
        if uid is None:
            return None
        try:
            return _series(uid, master, parts)
        except (KeyError, TypeError, ValueError, ZoneInfoNotFoundError, StopIteration) as err:
            log.warning("series %s on %s's calendar cannot be read: %s", uid, manager, err)
            return None

    def _read(self, manager: str, google_id: str) -> Any | CallFailed:
        """One event's answer, or the failure (a 404 is an answer here, not an error)."""
        return self._batch([(manager, self._get_call(google_id))])[0]

    def _get_call(self, google_id: str) -> Callable[[Any], Any]:
        return partial(_events_get, params={"calendarId": self.calendar_id, "eventId": google_id})

    def _patch_call(
        self, google_id: str, body: dict[str, Any], *, notify: bool
    ) -> Callable[[Any], Any]:
        params = {"calendarId": self.calendar_id, "eventId": google_id, "body": body,
                  "sendUpdates": "all" if notify else "none"}  # fmt: skip
        return partial(_events_patch, params=params)

    def _batch(self, calls: Sequence[tuple[str, Callable[[Any], Any]]]) -> list[Any | CallFailed]:
        """Each call's answer or failure, each as its manager; one call goes alone, more in
        batch requests shared by every manager."""
        if not calls:
            return []
        if len(calls) == 1:
            try:
                return [self.api.call(*calls[0])]
            except CallFailed as failed:
                return [failed]
        return self.api.batch(calls)

    # -- errors ------------------------------------------------------------------------------

    def _call(self, manager: str, build: Callable[[Any], Any], what: str = "") -> Any:
        try:
            return self.api.call(manager, build)
        except CallFailed as failed:
            raise self._error(manager, failed, what) from None

    def _error(self, manager: str, failed: CallFailed, what: str) -> ProviderError:
        where = f"{manager}'s Google calendar" + (f" ({what})" if what else "")
        reason = f": {failed}" if str(failed) else ""
        if failed.kind == "auth":
            return AuthError(f"{where}: {failed}")
        if failed.kind == "network":
            return Transient(f"{where}: {failed}")
        if failed.kind == "bad-response":
            return ProviderError(f"{where}: {failed}")
        status = failed.status or 0
        if failed.rate_limited:
            return RateLimited(f"{where}: Google asks to slow down{reason}", failed.retry_after)
        if status == 410 and failed.reason == "fullSyncRequired":
            return TokenExpired(f"{where}: sync token is no longer valid")
        if status in (404, 410):
            return NotFound(f"{where}: not found{reason}")
        if status in (401, 403):
            return AuthError(
                f"{where}: Google refused ({status}{reason}); check the delegation of "
                f"{', '.join(CALENDAR_SCOPES)} and that {manager} has a Calendar licence"
            )
        if status in (409, 412):
            return Conflict(f"{where}: conflict ({status}){reason}")
        if status >= 500:
            return Transient(f"{where}: Google failed ({status}){reason}")
        return ProviderError(f"{where}: Google rejected the request ({status}){reason}")

    def _unexpected(self, manager: str, what: str) -> ProviderError:
        return ProviderError(
            f"{manager}'s Google calendar: Google answered what the API does not document ({what})"
        )


def open_google(
    config_path: Path, settings: GoogleSettings | None, check_as: str | None = None
) -> GoogleCalendarProvider:
    """The provider ``calendar.google`` describes; ``ConfigError`` (one line) when unusable.
    ``check_as``: a manager to obtain a token for now, so that a key Google refuses stops the
    start (exit 2) instead of failing every manager at every pass."""
    if settings is None:
        raise ConfigError(
            [f"{config_path}: calendar.google: required when provider is google "
             "(credentials_file, calendar_id)"]
        )  # fmt: skip
    key = load_key(settings.credentials_file)
    api = GoogleApi(key, CALENDAR, CALENDAR_SCOPES, root=settings.api_endpoint,
                    timeout=settings.timeout_seconds)  # fmt: skip
    provider = GoogleCalendarProvider(key, settings.calendar_id, api=api)
    if check_as is not None:
        what = f"{config_path}: calendar.google.credentials_file {settings.credentials_file}"
        provider.api.check_key(check_as, what)
    return provider


def _events_list(service: Any, params: dict[str, Any]) -> Any:
    return service.events().list(**params)


def _events_insert(service: Any, params: dict[str, Any]) -> Any:
    return service.events().insert(**params)


def _events_get(service: Any, params: dict[str, Any]) -> Any:
    return service.events().get(**params)


def _events_delete(service: Any, params: dict[str, Any]) -> Any:
    return service.events().delete(**params)


def _events_patch(service: Any, params: dict[str, Any]) -> Any:
    return service.events().patch(**params)


def _freebusy_query(service: Any, body: dict[str, Any]) -> Any:
    return service.freebusy().query(body=body)


# -- mapping --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """A call of ``apply``'s second round: what it writes, for errors; ``instance``: one
    occurrence, left alone when Google no longer has it."""

    what: str
    call: Callable[[Any], Any]
    instance: bool = False


@dataclass
class _Listing:
    """One calendar's listing, grouped: cadence's masters, every series' exceptions by master
    id, the uids of series deleted, the newest ``updated`` stamp and the next sync token."""

    masters: dict[str, dict[str, Any]]
    exceptions: dict[str, list[dict[str, Any]]]
    removed: list[str]
    newest: str
    sync_token: str
    full: bool

    def orphans(self) -> list[str]:
        """Series with exceptions in the listing but no master (a delta names only what
        changed)."""
        return [m for m in self.exceptions if m not in self.masters]


def _group(items: list[dict[str, Any]], sync_token: str, *, watermark: str, full: bool) -> _Listing:
    listing = _Listing({}, {}, [], max([watermark, *(str(i.get("updated", "")) for i in items)]),
                       sync_token, full)  # fmt: skip
    for item in items:
        if item.get("recurringEventId"):
            listing.exceptions.setdefault(str(item["recurringEventId"]), []).append(item)
        elif item.get("status") == "cancelled":
            uid = _owner_uid(item) or uid_of(str(item.get("id", "")))
            if uid is not None:
                listing.removed.append(uid)
        elif _owner_uid(item) is not None and item.get("recurrence"):
            listing.masters[str(item["id"])] = item
    return listing


def _split_token(token: str) -> tuple[str, str]:
    watermark, sep, sync = token.partition("|")
    if not sep or not sync:
        raise TokenExpired("sync token was not issued by the Google provider")
    return watermark, sync


def _is_exception(instance: Mapping[str, Any]) -> bool:
    private = (instance.get("extendedProperties") or {}).get("private") or {}
    return OCCURRENCE_KEY in private


def _owner_uid(event: Mapping[str, Any]) -> str | None:
    props = event.get("extendedProperties")
    if not isinstance(props, dict):
        return None
    private = props.get("private")
    if not isinstance(private, dict):
        return None
    uid = private.get(OWNER_KEY)
    return uid if isinstance(uid, str) and uid else None


def _field(answer: Any, name: str, kind: type, default: Any = None) -> Any:
    if not isinstance(answer, dict):
        raise ProviderError(f"Google answered what the API does not document (no {name})")
    value = answer.get(name, default)
    if not isinstance(value, kind):
        raise ProviderError(f"Google answered what the API does not document ({name})")
    return value


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"date-time without offset: {text}")
    return value


def _time(when: Mapping[str, Any]) -> datetime:
    value = datetime.fromisoformat(str(when["dateTime"]).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(str(when["timeZone"])))
    return value


def _attendees(event: Mapping[str, Any]) -> tuple[Attendee, ...]:
    return tuple(
        Attendee(
            email=str(person["email"]).lower(),
            partstat=_PARTSTAT.get(str(person.get("responseStatus", "")), "NEEDS-ACTION"),
            name=str(person.get("displayName", "")),
        )
        for person in event.get("attendees", [])
        if person.get("email")
    )


def _series(
    uid: str, master: Mapping[str, Any], parts: Sequence[Mapping[str, Any]]
) -> ObservedSeries:
    zone_name = str(master["start"]["timeZone"])
    zone = ZoneInfo(zone_name)
    start = _time(master["start"]).astimezone(zone)
    duration = _time(master["end"]) - start
    lines = [str(line) for line in master.get("recurrence", [])]
    rule_line = next(line for line in lines if line.upper().startswith("RRULE:"))
    rrule, until = ical.canonical_rrule(vRecur.from_ical(rule_line[len("RRULE:") :]), zone)
    overrides = []
    for part in parts:
        original = _time(part["originalStartTime"]).astimezone(zone)
        if until is not None and original.date() > until:
            continue  # Google drops what falls after UNTIL; never read as a cancellation
        cancelled = part.get("status") == "cancelled"
        moved = part.get("start") if not cancelled else None
        begin = _time(moved).astimezone(zone) if moved else original
        end = _time(part["end"]).astimezone(zone) if moved and part.get("end") else begin + duration
        overrides.append(
            ObservedOverride(
                recurrence_id=original,
                start=begin,
                end=end,
                cancelled=cancelled,
                attendees=_attendees(part) if not cancelled else _attendees(master),
                description=str(part.get("description", "")),
            )
        )
    return ObservedSeries(
        uid=uid,
        owned=True,
        start=start,
        duration=duration,
        timezone=zone_name,
        rrule=rrule,
        until=until,
        organizer=str((master.get("organizer") or {}).get("email", "")).lower(),
        attendees=_attendees(master),
        description=str(master.get("description", "")),
        summary=str(master.get("summary", "")),
        exdates=(),
        overrides=tuple(sorted(overrides, key=lambda o: o.recurrence_id)),
    )


def _people(event: Mapping[str, Any], wanted: Sequence[Attendee]) -> list[dict[str, Any]] | None:
    """The ``attendees`` to write so that exactly ``wanted`` are invited (those who stay keep
    their answers), or None when they already are."""
    listed = [p for p in event.get("attendees", []) if p.get("email")]
    organiser = [p for p in listed if p.get("organizer")]  # Google may list the organiser too
    current = {str(p["email"]).lower(): p for p in listed if not p.get("organizer")}
    if sorted(current) == sorted(a.email.lower() for a in wanted):
        return None
    return organiser + [
        current.get(a.email.lower()) or {"email": a.email, "displayName": a.name} for a in wanted
    ]


def _event_body(spec: SeriesSpec) -> dict[str, Any]:
    """The series as a Google event; a bad zone or rule is refused before anything is sent."""
    try:
        zone = ZoneInfo(spec.timezone)
        vRecur.from_ical(spec.rrule)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as err:
        raise ProviderError(f"series {spec.uid} cannot be written: {err}") from None
    rule = spec.rrule
    if spec.until is not None:
        rule += ";UNTIL=" + ical.until_utc(spec.until, zone).strftime("%Y%m%dT%H%M%SZ")
    start = spec.start.astimezone(zone)
    end = start + spec.duration

    def when(moment: datetime) -> dict[str, str]:
        return {"dateTime": moment.isoformat(), "timeZone": spec.timezone}

    return {
        "id": event_id(spec.uid),
        "summary": spec.summary,
        "description": spec.description,
        "start": when(start),
        "end": when(end),
        "recurrence": ["RRULE:" + rule],
        "attendees": [{"email": a.email, "displayName": a.name} for a in spec.invitees],
        "extendedProperties": {"private": {OWNER_KEY: spec.uid}},
        "guestsCanModify": False,
    }
