"""The local Graph checked against what Microsoft documents, so the provider tests rest on a
faithful server: tokens through the real msal, strict bodies, transactionId, delta paging and its
silence about a deleted occurrence, 410 for an unknown token, $batch limits and 429."""

from __future__ import annotations

import base64
from typing import Any

import msal
import pytest
import requests

from tests.fixtures.graph import FakeGraph

SERIES: dict[str, Any] = {
    "subject": "1:1",
    "start": {"dateTime": "2030-10-15T10:00:00", "timeZone": "Mountain Standard Time"},
    "end": {"dateTime": "2030-10-15T10:25:00", "timeZone": "Mountain Standard Time"},
    "recurrence": {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "daysOfWeek": ["tuesday"],
            "firstDayOfWeek": "monday",
        },
        "range": {"type": "noEnd", "startDate": "2030-10-15"},
    },
    "attendees": [{"emailAddress": {"address": "sam@acme.test"}, "type": "required"}],
}
WINDOW = {"startDateTime": "2030-10-01T00:00:00Z", "endDateTime": "2030-12-01T00:00:00Z"}


def _app(graph: FakeGraph, secret: str) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.request = _verified(session.request, str(graph.ca_file))  # type: ignore[method-assign]
    return msal.ConfidentialClientApplication(
        graph.client_id, authority=graph.authority, client_credential=secret,
        http_client=session, instance_discovery=False,
    )  # fmt: skip


def _verified(request: Any, ca: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        kwargs["verify"] = ca
        return request(*args, **kwargs)

    return call


class Client:
    def __init__(self, graph: FakeGraph) -> None:
        token = _app(graph, graph.client_secret).acquire_token_for_client(
            [f"{graph.url}/.default"]
        )["access_token"]
        self.base = f"{graph.url}/v1.0"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ca = str(graph.ca_file)

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("https://") else self.base + path
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, url, headers=headers, verify=self.ca, timeout=60, **kwargs)


@pytest.fixture
def api(graph: FakeGraph) -> Client:
    graph.add_mailbox("maya@acme.test")
    return Client(graph)


def test_msal_gets_a_token_and_a_wrong_secret_is_refused_with_its_aadsts_code(
    graph: FakeGraph,
) -> None:
    good = _app(graph, graph.client_secret).acquire_token_for_client([f"{graph.url}/.default"])
    assert good["token_type"] == "Bearer"
    bad = _app(graph, "wrong").acquire_token_for_client([f"{graph.url}/.default"])
    assert bad["error"] == "invalid_client"
    assert bad["error_description"].startswith("AADSTS7000215")


def test_graph_wants_a_token(graph: FakeGraph) -> None:
    graph.add_mailbox("maya@acme.test")
    answer = requests.get(f"{graph.url}/v1.0/users/maya@acme.test/events", verify=str(graph.ca_file),
                          timeout=10)  # fmt: skip
    assert answer.status_code == 401


def test_a_misspelt_property_is_refused(api: Client) -> None:
    body = {**SERIES, "attendes": SERIES["attendees"]}
    answer = api("POST", "/users/maya@acme.test/events", json=body)
    assert answer.status_code == 400
    assert "attendes" in answer.json()["error"]["message"]
    nested = {**SERIES, "body": {"contentType": "html", "contnet": "x"}}
    assert api("POST", "/users/maya@acme.test/events", json=nested).status_code == 400


def test_an_unknown_mailbox_is_an_invalid_user(api: Client) -> None:
    answer = api("GET", "/users/nobody@acme.test/calendar")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "ErrorInvalidUser"


def test_the_same_transaction_id_gives_back_the_same_event(api: Client, graph: FakeGraph) -> None:
    body = {**SERIES, "transactionId": "t-1"}
    first = api("POST", "/users/maya@acme.test/events", json=body).json()["id"]
    second = api("POST", "/users/maya@acme.test/events", json=body).json()["id"]
    assert first == second
    assert len(graph.live_events("maya@acme.test")) == 1


def test_delta_pages_then_says_nothing_about_a_deleted_occurrence(api: Client) -> None:
    master = api("POST", "/users/maya@acme.test/events", json=SERIES).json()["id"]
    small = {"Prefer": "odata.maxpagesize=3"}
    page = api("GET", "/users/maya@acme.test/calendarView/delta", params=WINDOW,
               headers=small).json()  # fmt: skip
    seen = list(page["value"])
    while "@odata.nextLink" in page:
        page = api("GET", page["@odata.nextLink"], headers=small).json()
        seen += page["value"]
    assert len(seen) == 7  # Tuesdays from Oct 15 to Nov 26
    assert {item["seriesMasterId"] for item in seen} == {master}
    delta_link = page["@odata.deltaLink"]

    assert api("DELETE", f"/users/maya@acme.test/events/{seen[1]['id']}").status_code == 204
    quiet = api("GET", delta_link).json()
    assert quiet["value"] == []
    read = api("GET", f"/users/maya@acme.test/events/{master}",
               params={"$select": "cancelledOccurrences"}).json()  # fmt: skip
    assert read["cancelledOccurrences"] == [f"OID.{master}.2030-10-22"]


def test_an_unknown_delta_token_is_gone(api: Client) -> None:
    answer = api("GET", "/users/maya@acme.test/calendarView/delta",
                 params={"$deltatoken": "never-issued"})  # fmt: skip
    assert answer.status_code == 410


def test_batch_takes_twenty_and_throttles_each_request_alone(api: Client, graph: FakeGraph) -> None:
    one = {"id": "1", "method": "GET", "url": "/users/maya@acme.test/mailboxSettings"}
    many = [{**one, "id": str(i)} for i in range(21)]
    assert api("POST", "/$batch", json={"requests": many}).status_code == 400

    graph.throttle("mailboxSettings", retry_after=7)
    answer = api("POST", "/$batch", json={"requests": many[:2]}).json()["responses"]
    assert [r["status"] for r in answer] == [429, 200]
    assert answer[0]["headers"]["Retry-After"] == "7"


def test_send_mail_takes_mime_and_answers_202(api: Client, graph: FakeGraph) -> None:
    mime = b"From: maya@acme.test\r\nTo: sam@acme.test\r\nSubject: hi\r\n\r\nbody\r\n"
    answer = api("POST", "/users/maya@acme.test/sendMail", data=base64.b64encode(mime),
                 headers={"Content-Type": "text/plain"})  # fmt: skip
    assert answer.status_code == 202
    assert graph.sent[0].message["Subject"] == "hi"
