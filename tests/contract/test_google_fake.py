"""The local Google server checked against Google's documented behaviour (PROVIDERS.md), through
the real google-api-python-client and google-auth, so the provider tests can trust it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import google_auth_httplib2
import httplib2
import pytest
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.fixtures.google import DEFAULT_DELEGATED, SCOPE, FakeGoogle, Fault

EVENTS = [SCOPE + "calendar.events"]
ZONE = "America/Denver"
START = datetime(2030, 10, 15, 10, 0, tzinfo=ZoneInfo(ZONE))


def client(fake: FakeGoogle, user: str, api: str = "calendar", scopes: list[str] = EVENTS) -> Any:
    credentials = service_account.Credentials.from_service_account_info(
        fake.key_info(), scopes=scopes
    ).with_subject(user)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=10))
    version, endpoint = ("v3", fake.calendar_endpoint) if api == "calendar" else ("v1", fake.url)
    return discovery.build(
        api, version, http=http, static_discovery=True, client_options={"api_endpoint": endpoint}
    )


def series(event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "summary": "1:1",
        "start": {"dateTime": START.isoformat(), "timeZone": ZONE},
        "end": {"dateTime": (START + timedelta(minutes=25)).isoformat(), "timeZone": ZONE},
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=TU"],
        "attendees": [{"email": "sam@acme.test"}],
        **extra,
    }


def status_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(HttpError) as caught:
        call()
    error = json.loads(caught.value.content)["error"]
    return caught.value.resp.status, error["errors"][0]["reason"]


def test_token_needs_a_known_mailbox_delegation_and_the_right_key(
    google_server: FakeGoogle, google_user: str
) -> None:
    def refresh(info: dict[str, str], user: str, scopes: list[str] = EVENTS) -> None:
        creds = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        creds.with_subject(user).refresh(google_auth_httplib2.Request(httplib2.Http()))

    refresh(google_server.key_info(), google_user)  # delegated: fine
    with pytest.raises(auth_exceptions.RefreshError, match="Invalid email or User ID"):
        refresh(google_server.key_info(), "ghost@acme.test")
    with pytest.raises(auth_exceptions.RefreshError, match="invalid_grant"):
        refresh(google_server.key_info(other_key=True), google_user)
    with pytest.raises(auth_exceptions.RefreshError, match="unauthorized_client"):
        refresh(google_server.key_info(), google_user, [SCOPE + "calendar"])  # not delegated
    assert SCOPE + "calendar" not in DEFAULT_DELEGATED


def test_client_ids_are_409_on_reuse_and_on_a_tombstone(
    google_server: FakeGoogle, google_user: str
) -> None:
    events = client(google_server, google_user).events()
    events.insert(calendarId="primary", body=series("abcde00001")).execute()
    assert status_of(events.insert(calendarId="primary", body=series("abcde00001")).execute) == (
        409,
        "duplicate",
    )
    events.delete(calendarId="primary", eventId="abcde00001").execute()
    assert events.get(calendarId="primary", eventId="abcde00001").execute()["status"] == "cancelled"
    assert (
        status_of(events.insert(calendarId="primary", body=series("abcde00001")).execute)[0] == 409
    )
    restored = events.patch(
        calendarId="primary", eventId="abcde00001", body={"status": "confirmed"}
    ).execute()
    assert restored["status"] == "confirmed"
    assert status_of(events.insert(calendarId="primary", body=series("UPPER-case")).execute) == (
        400,
        "invalid",
    )


def test_bodies_are_checked_against_the_discovery_schema(
    google_server: FakeGoogle, google_user: str
) -> None:
    events = client(google_server, google_user).events()
    bad = series("abcde00002", colour="red")
    assert status_of(events.insert(calendarId="primary", body=bad).execute) == (400, "invalid")
    no_zone = series("abcde00003")
    del no_zone["start"]["timeZone"]
    assert status_of(events.insert(calendarId="primary", body=no_zone).execute)[0] == 400


def test_sync_tokens_deliver_deletions_refuse_filters_and_expire_with_410(
    google_server: FakeGoogle, google_user: str
) -> None:
    events = client(google_server, google_user).events()
    events.insert(calendarId="primary", body=series("abcde00004")).execute()
    full = events.list(calendarId="primary").execute()
    assert [e["id"] for e in full["items"]] == ["abcde00004"]
    token = full["nextSyncToken"]
    assert events.list(calendarId="primary", syncToken=token).execute()["items"] == []

    events.delete(calendarId="primary", eventId="abcde00004").execute()
    delta = events.list(calendarId="primary", syncToken=token).execute()
    assert [(e["id"], e["status"]) for e in delta["items"]] == [("abcde00004", "cancelled")]
    assert events.list(calendarId="primary").execute()["items"] == []  # deleted: not in full

    with_filter = events.list(calendarId="primary", syncToken=token, timeMin=START.isoformat())
    assert status_of(with_filter.execute)[0] == 400
    google_server.expire_sync_tokens()
    assert status_of(events.list(calendarId="primary", syncToken=token).execute) == (
        410,
        "fullSyncRequired",
    )


def test_pages_carry_the_sync_token_on_the_last_page_only(
    google_server: FakeGoogle, google_user: str
) -> None:
    events = client(google_server, google_user).events()
    for n in range(5):
        events.insert(calendarId="primary", body=series(f"abcdp0000{n}")).execute()
    seen, page, pages = [], None, []
    while True:
        answer = events.list(calendarId="primary", maxResults=2, pageToken=page).execute()
        pages.append(answer)
        seen += [e["id"] for e in answer["items"]]
        page = answer.get("nextPageToken")
        if not page:
            break
    assert len(pages) == 3 and len(seen) == 5
    assert ["nextSyncToken" in p for p in pages] == [False, False, True]


def test_instance_exceptions_carry_the_series_and_original_start(
    google_server: FakeGoogle, google_user: str
) -> None:
    events = client(google_server, google_user).events()
    events.insert(calendarId="primary", body=series("abcde00005")).execute()
    week2 = START + timedelta(weeks=1)
    [instance] = events.instances(
        calendarId="primary", eventId="abcde00005", originalStart=week2.isoformat()
    ).execute()["items"]
    moved = week2 + timedelta(days=1)
    events.patch(
        calendarId="primary",
        eventId=instance["id"],
        body={
            "start": {"dateTime": moved.isoformat()},
            "end": {"dateTime": (moved + timedelta(minutes=25)).isoformat()},
        },
    ).execute()
    week3 = events.instances(
        calendarId="primary",
        eventId="abcde00005",
        originalStart=(START + timedelta(weeks=2)).isoformat(),
    ).execute()["items"][0]
    events.delete(calendarId="primary", eventId=week3["id"]).execute()
    google_server.respond(google_user, "abcde00005", "sam@acme.test", "declined")

    listing = {e["id"]: e for e in events.list(calendarId="primary").execute()["items"]}
    master = listing.pop("abcde00005")
    assert master["attendees"][0]["responseStatus"] == "declined"
    exceptions = sorted(listing.values(), key=lambda e: e["originalStartTime"]["dateTime"])
    assert [(e["recurringEventId"], e["status"]) for e in exceptions] == [
        ("abcde00005", "confirmed"),
        ("abcde00005", "cancelled"),
    ]
    assert datetime.fromisoformat(exceptions[0]["originalStartTime"]["dateTime"]) == week2
    assert datetime.fromisoformat(exceptions[0]["start"]["dateTime"]) == moved
    hidden = events.instances(calendarId="primary", eventId="abcde00005", timeMin=START.isoformat(),
                              timeMax=(START + timedelta(weeks=4)).isoformat()).execute()  # fmt: skip
    assert len(hidden["items"]) == 3  # the cancelled one only with showDeleted


def test_free_busy_answers_per_person_and_at_most_50(
    google_server: FakeGoogle, google_user: str
) -> None:
    client(google_server, google_user).events().insert(
        calendarId="primary", body=series("abcde00006")
    ).execute()
    free_busy = client(google_server, google_user, scopes=[SCOPE + "calendar.freebusy"]).freebusy()
    body = {"timeMin": START.isoformat(), "timeMax": (START + timedelta(days=8)).isoformat(),
            "items": [{"id": google_user}]}  # fmt: skip
    busy = free_busy.query(body=body).execute()["calendars"][google_user]["busy"]
    assert len(busy) == 2
    too_many = dict(body, items=[{"id": f"p{n}@acme.test"} for n in range(51)])
    assert status_of(free_busy.query(body=too_many).execute)[0] == 400
    events_only = client(google_server, google_user).freebusy()
    assert status_of(events_only.query(body=body).execute) == (403, "insufficientPermissions")


def test_batch_runs_each_call_and_answers_each(google_server: FakeGoogle, google_user: str) -> None:
    service = client(google_server, google_user)
    service.events().insert(calendarId="primary", body=series("abcde00007")).execute()
    answers: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        answers[request_id] = exception or response

    batch = BatchHttpRequest(callback=collect, batch_uri=google_server.batch_uri)
    for n, event_id in enumerate(["abcde00007", "abcde00008", "abcde00009"]):
        batch.add(
            service.events().insert(calendarId="primary", body=series(event_id)), request_id=str(n)
        )
    before = google_server.round_trips
    batch.execute(http=service._http)
    assert google_server.round_trips == before + 1
    assert isinstance(answers["0"], HttpError) and answers["0"].resp.status == 409
    assert answers["1"]["id"] == "abcde00008" and answers["2"]["id"] == "abcde00009"


def test_rate_limits_answer_with_retry_after(google_server: FakeGoogle, google_user: str) -> None:
    events = client(google_server, google_user).events()
    google_server.fail(Fault(429, "rateLimitExceeded", retry_after=7, path="/events"))
    with pytest.raises(HttpError) as caught:
        events.list(calendarId="primary").execute()
    assert caught.value.resp.status == 429
    assert caught.value.resp["retry-after"] == "7"
    google_server.fail(Fault(403, "userRateLimitExceeded", path="/events"))
    assert status_of(events.list(calendarId="primary").execute) == (403, "userRateLimitExceeded")
    assert events.list(calendarId="primary").execute()["items"] == []


def test_gmail_send_stores_the_raw_message(google_server: FakeGoogle, google_user: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = google_user, "sam@acme.test", "Hi"
    message.set_content("hello")
    raw = base64.urlsafe_b64encode(message.as_bytes()).decode()
    gmail = client(google_server, google_user, "gmail", [SCOPE + "gmail.send"])
    sent = gmail.users().messages().send(userId="me", body={"raw": raw}).execute()
    assert sent["labelIds"] == ["SENT"]
    assert google_server.sent[-1] == (google_user, message.as_bytes())
    google_server.rejected_recipients.add("ghost@acme.test")
    del message["To"]
    message["To"] = "ghost@acme.test"
    raw = base64.urlsafe_b64encode(message.as_bytes()).decode()
    assert (
        status_of(gmail.users().messages().send(userId="me", body={"raw": raw}).execute)[0] == 400
    )
