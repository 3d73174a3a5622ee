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

Every failure leaves as a ``daemon.errors`` class naming the manager; ``HttpError`` never does.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
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
    Attendee,
    CalendarHours,
    Capabilities,
    Changes,
    ObservedOverride,
    ObservedSeries,
    SeriesSpec,
)

log = logging.getLogger(__name__)

OWNER_KEY = "cadence-series"
# On an instance cadence made an exception (its own agenda): like a CalDAV override, it stays one
# even when its text happens to equal the series'.
OCCURRENCE_KEY = "cadence-occurrence"
_PAGE = 2500
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


def uid_of(google_id: str) -> str | None:
    """The series UID an event id was made from, or None for an id cadence did not make."""
    text = google_id.upper()
    try:
        raw = base64.b32hexdecode(text + "=" * (-len(text) % 8))
        uid = raw.removeprefix(_ID_PREFIX).decode() if raw.startswith(_ID_PREFIX) else None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return uid if uid is not None and event_id(uid) == google_id else None


class GoogleCalendarProvider:
    """A ``CalendarProvider`` over Google Calendar v3 with domain-wide delegation."""

    capabilities = Capabilities(sync_tokens=True, free_busy=True)

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
        watermark, sync = _split_token(token) if token is not None else ("", None)
        items, next_sync = self._list(manager, sync)
        newest = max([watermark, *(str(i.get("updated", "")) for i in items)])
        masters: dict[str, dict[str, Any]] = {}
        exceptions: dict[str, list[dict[str, Any]]] = {}
        removed: list[str] = []
        for item in items:
            if item.get("recurringEventId"):
                exceptions.setdefault(str(item["recurringEventId"]), []).append(item)
            elif item.get("status") == "cancelled":
                uid = _owner_uid(item) or uid_of(str(item.get("id", "")))
                if uid is not None:
                    removed.append(uid)
            elif _owner_uid(item) is not None and item.get("recurrence"):
                masters[str(item["id"])] = item
        changed: dict[str, ObservedSeries] = {}
        if sync is None:
            for master_id, master in masters.items():
                changed_series = self._observe(manager, master, exceptions.get(master_id, []))
                if changed_series is not None:
                    changed[changed_series.uid] = changed_series
        else:
            for master_id in [*masters, *(m for m in exceptions if m not in masters)]:
                found = masters.get(master_id)
                parts = exceptions.get(master_id, [])
                if found is None or str(found.get("created", "")) <= watermark:
                    found, parts = self._whole(manager, found or parts[0])
                    if found is None:
                        continue
                series = self._observe(manager, found, parts)
                if series is not None:
                    changed[series.uid] = series
        return Changes(
            token=f"{newest}|{next_sync}",
            changed=tuple(changed.values()),
            removed=tuple(dict.fromkeys(uid for uid in removed if uid not in changed)),
            complete=sync is None,
        )

    def create_series(self, manager: str, series: SeriesSpec) -> None:
        failed = self.create_many(manager, [series])
        if series.uid in failed:
            raise failed[series.uid]

    def create_many(
        self, manager: str, series: Sequence[SeriesSpec]
    ) -> Mapping[str, ProviderError]:
        """Inserts in batches; a 409 (ours already, or its tombstone) is adopted one by one;
        then every new series' agenda exceptions, again in batches."""
        failed: dict[str, ProviderError] = {}
        bodies: dict[str, dict[str, Any]] = {}
        for spec in series:
            try:
                bodies[spec.uid] = _event_body(spec)
            except ProviderError as err:
                failed[spec.uid] = err
        specs = [spec for spec in series if spec.uid in bodies]
        inserts = [
            partial(
                _events_insert,
                params={
                    "calendarId": self.calendar_id,
                    "sendUpdates": "all",
                    "body": bodies[spec.uid],
                },
            )  # fmt: skip
            for spec in specs
        ]
        masters: dict[str, Mapping[str, Any]] = {}
        for spec, answer in zip(specs, self._batch(manager, inserts), strict=True):
            if isinstance(answer, CallFailed) and answer.status == 409:
                try:
                    masters[spec.uid] = self._adopt(manager, spec, bodies[spec.uid])
                except ProviderError as err:
                    failed[spec.uid] = err
            elif isinstance(answer, CallFailed):
                failed[spec.uid] = self._error(manager, answer, f"series {spec.uid}")
            elif isinstance(answer, dict):
                masters[spec.uid] = answer
            else:
                failed[spec.uid] = self._unexpected(manager, "events.insert")
        wanted = {
            spec.uid: spec.occurrence_descriptions
            for spec in specs
            if spec.uid in masters and spec.occurrence_descriptions
        }
        failed.update(self._write_occurrences_many(manager, masters, wanted))
        return failed

    def _adopt(self, manager: str, spec: SeriesSpec, body: dict[str, Any]) -> Mapping[str, Any]:
        """The id is taken: by our series (kept) or by its tombstone (restored, not copied)."""
        master = self._get(manager, body["id"], spec.uid)
        if master.get("status") == "cancelled":
            log.info("restoring series %s from its tombstone", spec.uid)
            restore = {k: v for k, v in body.items() if k != "id"} | {"status": "confirmed"}
            master = self._patch(manager, body["id"], restore, notify=True)
        return master

    def end_series(self, manager: str, uid: str, until: date) -> None:
        google_id = event_id(uid)
        master = self._live_master(manager, uid)
        zone_name = str(master["start"]["timeZone"])
        zone = ZoneInfo(zone_name)
        start = _time(master["start"]).astimezone(zone)
        if until < start.date():
            self._call(
                manager,
                lambda s: s.events().delete(
                    calendarId=self.calendar_id, eventId=google_id, sendUpdates="all"
                ),
                what=f"series {uid}",
            )
            return
        lines = list(master.get("recurrence", []))
        rule_index = next(i for i, line in enumerate(lines) if line.upper().startswith("RRULE:"))
        rule = vRecur.from_ical(lines[rule_index][len("RRULE:") :])
        _, current = ical.canonical_rrule(rule, zone)
        if current == until and "COUNT" not in rule:
            return
        rule.pop("COUNT", None)
        rule["UNTIL"] = [ical.until_utc(until, zone)]
        lines[rule_index] = "RRULE:" + rule.to_ical().decode()
        self._patch(manager, google_id, {"recurrence": lines}, notify=True)

    def write_agendas(
        self,
        manager: str,
        uid: str,
        master_block: str | None,
        occurrence_blocks: Mapping[datetime, str],
    ) -> None:
        google_id = event_id(uid)
        master = self._live_master(manager, uid)
        if master_block is not None:
            text = str(master.get("description", ""))
            new = splice(text, master_block)
            if new != text:
                self._patch(manager, google_id, {"description": new}, notify=False)
        if occurrence_blocks:
            failed = self._write_occurrences_many(manager, {uid: master}, {uid: occurrence_blocks})
            if uid in failed:
                raise failed[uid]

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

    def _list(self, manager: str, sync: str | None) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            params: dict[str, Any] = {"calendarId": self.calendar_id, "maxResults": _PAGE}
            if sync is not None:
                params["syncToken"] = sync
            if page is not None:
                params["pageToken"] = page
            answer = self._call(manager, partial(_events_list, params=params))
            items.extend(_field(answer, "items", list, default=[]))
            page = answer.get("nextPageToken")
            if not page:
                token = answer.get("nextSyncToken")
                if not isinstance(token, str) or not token:
                    raise self._unexpected(manager, "events.list without nextSyncToken")
                return items, token

    def _whole(
        self, manager: str, any_item: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The master and every exception of the series ``any_item`` belongs to."""
        ical_uid = any_item.get("iCalUID")
        if not ical_uid:
            raise self._unexpected(manager, "event without iCalUID")
        answer = self._call(
            manager,
            lambda s: s.events().list(
                calendarId=self.calendar_id, iCalUID=ical_uid, maxResults=_PAGE
            ),
        )
        master: dict[str, Any] | None = None
        parts: list[dict[str, Any]] = []
        for item in _field(answer, "items", list, default=[]):
            if item.get("recurringEventId"):
                parts.append(item)
            elif item.get("status") != "cancelled" and _owner_uid(item) and item.get("recurrence"):
                master = item
        return master, parts

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

    def _live_master(self, manager: str, uid: str) -> dict[str, Any]:
        master = self._get(manager, event_id(uid), uid)
        if master.get("status") == "cancelled":
            raise NotFound(f"series {uid} was deleted from {manager}'s calendar")
        return master

    def _get(self, manager: str, google_id: str, uid: str) -> dict[str, Any]:
        master = self._call(
            manager,
            lambda s: s.events().get(calendarId=self.calendar_id, eventId=google_id),
            what=f"series {uid}",
        )
        if not isinstance(master, dict) or _owner_uid(master) != uid:
            raise NotFound(f"event {google_id} on {manager}'s calendar was not created by cadence")
        return dict(master)

    # -- writing -----------------------------------------------------------------------------

    def _patch(
        self, manager: str, google_id: str, body: dict[str, Any], *, notify: bool
    ) -> dict[str, Any]:
        answer: dict[str, Any] = self._call(
            manager,
            lambda s: s.events().patch(
                calendarId=self.calendar_id,
                eventId=google_id,
                body=body,
                sendUpdates="all" if notify else "none",
            ),
        )
        return answer

    def _write_occurrences_many(
        self,
        manager: str,
        masters: Mapping[str, Mapping[str, Any]],
        blocks: Mapping[str, Mapping[datetime, str]],
    ) -> dict[str, ProviderError]:
        """Splice each block into its instance, for several series: one batch of
        ``events.instances`` and batches of patches. Cancelled or unproduced instances are left."""
        failed: dict[str, ProviderError] = {}
        uids = [uid for uid in blocks if blocks[uid]]
        reads = []
        for uid in uids:
            originals = sorted(blocks[uid])
            params = {
                "calendarId": self.calendar_id,
                "eventId": str(masters[uid]["id"]),
                "timeMin": _rfc3339(originals[0]),
                "timeMax": _rfc3339(originals[-1] + timedelta(days=1)),
                "showDeleted": True,
                "maxResults": _PAGE,
            }
            reads.append(partial(_events_instances, params=params))
        patches: list[tuple[str, Callable[[Any], Any]]] = []
        for uid, answer in zip(uids, self._batch(manager, reads), strict=True):
            if isinstance(answer, CallFailed):
                failed[uid] = self._error(manager, answer, f"series {uid}")
                continue
            try:
                instances = {
                    _time(item["originalStartTime"]): item
                    for item in _field(answer, "items", list, default=[])
                }
                if any(moment not in instances for moment in blocks[uid]):
                    # Moved away from its original time: found among the series' exceptions.
                    for item in self._whole(manager, masters[uid])[1]:
                        instances.setdefault(_time(item["originalStartTime"]), item)
                marks = {"private": {OWNER_KEY: uid, OCCURRENCE_KEY: "agenda"}}
                for original in sorted(blocks[uid]):
                    instance = instances.get(original)
                    if instance is None or instance.get("status") == "cancelled":
                        continue
                    text = str(instance.get("description", ""))
                    new = splice(text, blocks[uid][original])
                    if new == text and _is_exception(instance):
                        continue
                    params = {"calendarId": self.calendar_id, "eventId": str(instance["id"]),
                              "body": {"description": new, "extendedProperties": marks},
                              "sendUpdates": "none"}  # fmt: skip
                    patches.append((uid, partial(_events_patch, params=params)))
            except ProviderError as err:
                failed[uid] = err
            except (KeyError, TypeError, ValueError):
                failed[uid] = self._unexpected(manager, "events.instances")
        answers = self._batch(manager, [build for _, build in patches])
        for (uid, _), answer in zip(patches, answers, strict=True):
            if isinstance(answer, CallFailed) and uid not in failed:
                failed[uid] = self._error(manager, answer, f"agenda of {uid}")
        return failed

    def _batch(
        self, manager: str, builds: Sequence[Callable[[Any], Any]]
    ) -> list[Any | CallFailed]:
        """Each call's answer or failure; one call goes alone, more in batch requests."""
        if not builds:
            return []
        if len(builds) == 1:
            try:
                return [self.api.call(manager, builds[0])]
            except CallFailed as failed:
                if failed.kind in ("auth", "network"):
                    raise self._error(manager, failed, "") from None
                return [failed]
        try:
            return self.api.batch(manager, builds)
        except CallFailed as failed:
            raise self._error(manager, failed, "batch") from None

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


def open_google(config_path: Path, settings: GoogleSettings | None) -> GoogleCalendarProvider:
    """The provider ``calendar.google`` describes; ``ConfigError`` (one line) when unusable."""
    if settings is None:
        raise ConfigError(
            [f"{config_path}: calendar.google: required when provider is google "
             "(credentials_file, calendar_id)"]
        )  # fmt: skip
    key = load_key(settings.credentials_file)
    return GoogleCalendarProvider(key, settings.calendar_id, root=settings.api_endpoint)


def _events_list(service: Any, params: dict[str, Any]) -> Any:
    return service.events().list(**params)


def _events_insert(service: Any, params: dict[str, Any]) -> Any:
    return service.events().insert(**params)


def _events_instances(service: Any, params: dict[str, Any]) -> Any:
    return service.events().instances(**params)


def _events_patch(service: Any, params: dict[str, Any]) -> Any:
    return service.events().patch(**params)


def _freebusy_query(service: Any, body: dict[str, Any]) -> Any:
    return service.freebusy().query(body=body)


# -- mapping --------------------------------------------------------------------------------------


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
        "attendees": [{"email": spec.rep_email, "displayName": spec.rep_name}],
        "extendedProperties": {"private": {OWNER_KEY: spec.uid}},
        "guestsCanModify": False,
    }
