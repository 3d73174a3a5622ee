"""The Google Calendar provider against the local Calendar v3 server: the shared contract plus
what only Google shows (tombstones, instance exceptions, declines, rate limits, notifications).

The real google-api-python-client and google-auth do every request; the fake's helpers play the
people on the calendar (a rep declining, a manager deleting or moving an occurrence).
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.core.agenda import wrap
from daemon.errors import AuthError, NotFound, ProviderError, RateLimited, Transient
from daemon.providers.base import Agendas, CalendarProvider, Changes, Create, End, Write
from daemon.providers.google import GoogleCalendarProvider, event_id
from tests.contract.provider_contract import (
    FIRST_START,
    PERSONAL_NOTE,
    ProviderContract,
    occurrence,
    only_series,
    series_spec,
)
from tests.fixtures.google import FakeGoogle, Fault
from tests.fixtures.graph import make_certificates


def make_provider(fake: FakeGoogle, waits: list[float] | None = None) -> GoogleCalendarProvider:
    sleeps = waits if waits is not None else []
    return GoogleCalendarProvider(fake.key_info(), root=fake.url, sleep=sleeps.append)


@pytest.fixture
def google(google_server: FakeGoogle) -> GoogleCalendarProvider:
    return make_provider(google_server)


class TestGoogleContract(ProviderContract):
    @pytest.fixture
    def provider(self, google: GoogleCalendarProvider) -> CalendarProvider:
        return google

    @pytest.fixture
    def manager(self, google_user: str) -> str:
        return google_user

    def test_errors_are_project_errors(self, provider: CalendarProvider, manager: str) -> None:
        # A Google user's primary calendar always exists; what cannot be read is the calendar
        # of someone without a mailbox in the domain.
        with pytest.raises(ProviderError):
            provider.changes("nobody-" + manager, None)


# -- what only Google shows ----------------------------------------------------------------------


@pytest.fixture
def manager(google_user: str) -> str:
    return google_user


def test_the_stored_event_is_what_spec_describes(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    spec = series_spec(manager, "g-shape", until=FIRST_START.date() + timedelta(days=60))
    google.create_series(manager, spec)
    stored = google_server.events(manager)[event_id("g-shape")]
    assert stored["extendedProperties"] == {"private": {"cadence-series": "g-shape"}}
    assert stored["start"]["timeZone"] == "America/Denver"
    assert stored["recurrence"] == [
        "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH;UNTIL=20301215T065959Z"
    ]
    assert [a["email"] for a in stored["attendees"]] == ["sam@acme.test"]


def test_notifications_go_for_create_and_end_and_never_for_agendas(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    google.create_series(manager, series_spec(manager, "g-notify"))
    google.write_agendas(manager, "g-notify", wrap("new"), {occurrence(1): wrap("week two")})
    google.end_series(manager, "g-notify", FIRST_START.date() + timedelta(days=30))
    mine = [n for n in google_server.notifications if n[1].startswith(event_id("g-notify"))]
    assert [(verb, send) for verb, _, send in mine] == [
        ("insert", "all"),
        ("patch", "none"),
        ("patch", "none"),
        ("patch", "all"),
    ]


def test_a_deleted_series_is_restored_from_its_tombstone_not_duplicated(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    spec = series_spec(manager, "g-tombstone")
    google.create_series(manager, spec)
    token = google.changes(manager, None).token
    google_server.delete(manager, event_id("g-tombstone"))
    assert google.changes(manager, token).removed == ("g-tombstone",)

    google.create_series(manager, spec)
    series = only_series(google.changes(manager, None), "g-tombstone")
    assert series.overrides == ()
    assert list(google_server.events(manager)) == [event_id("g-tombstone")]


def test_people_cancelling_declining_and_moving_are_observed(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    google.create_series(manager, series_spec(manager, "g-people"))
    token = google.changes(manager, None).token
    master = event_id("g-people")
    deleted, declined, moved = occurrence(1), occurrence(2), occurrence(3)
    google_server.delete(manager, google_server.instance_id(manager, master, deleted))
    google_server.respond(
        manager, google_server.instance_id(manager, master, declined), "sam@acme.test", "declined"
    )
    new_start = moved + timedelta(days=1, hours=2)
    google_server.edit(
        manager,
        google_server.instance_id(manager, master, moved),
        start={"dateTime": new_start.isoformat(), "timeZone": "America/Denver"},
        end={
            "dateTime": (new_start + timedelta(minutes=25)).isoformat(),
            "timeZone": "America/Denver",
        },
    )

    series = only_series(google.changes(manager, token), "g-people")
    by_start = {o.recurrence_id: o for o in series.overrides}
    assert by_start[deleted].cancelled
    assert [a.partstat for a in by_start[declined].attendees] == ["DECLINED"]
    assert by_start[moved].start == new_start and not by_start[moved].cancelled


def test_a_delta_of_one_exception_still_gives_the_whole_series(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    google.create_series(manager, series_spec(manager, "g-whole"))
    master = event_id("g-whole")
    google_server.delete(manager, google_server.instance_id(manager, master, occurrence(1)))
    token = google.changes(manager, None).token
    google_server.respond(
        manager,
        google_server.instance_id(manager, master, occurrence(2)),
        "sam@acme.test",
        "declined",
    )

    series = only_series(google.changes(manager, token), "g-whole")
    assert [o.recurrence_id for o in series.overrides] == [occurrence(1), occurrence(2)]
    assert series.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH"


def test_a_quiet_pass_after_our_own_writes_costs_one_list(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    token = google.changes(manager, None).token
    spec = series_spec(manager, "g-cheap", occurrence_descriptions={occurrence(0): wrap("first")})
    google.create_series(manager, spec)
    before = google_server.calls_by_user_minute.copy()
    series = only_series(google.changes(manager, token), "g-cheap")
    assert [o.description for o in series.overrides][0].startswith(wrap("first"))
    calls = sum(google_server.calls_by_user_minute.values()) - sum(before.values())
    assert calls == 1


def test_foreign_events_are_neither_reported_nor_touched(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    from tests.contract.test_google_fake import client, series

    events = client(google_server, manager).events()
    events.insert(calendarId="primary", body=series("fore1gn000")).execute()
    events.insert(calendarId="primary", body=series(event_id("copied"), description="x")).execute()
    assert google.changes(manager, None).changed == ()
    with pytest.raises(NotFound):
        google.write_agendas(manager, "copied", wrap("mine now"), {})
    assert google_server.events(manager)[event_id("copied")]["description"] == "x"


def test_agendas_reach_a_moved_occurrence_and_skip_a_cancelled_one(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    google.create_series(manager, series_spec(manager, "g-moved"))
    master = event_id("g-moved")
    far = occurrence(1) + timedelta(days=3)
    google_server.edit(
        manager,
        google_server.instance_id(manager, master, occurrence(1)),
        start={"dateTime": far.isoformat(), "timeZone": "America/Denver"},
        end={"dateTime": (far + timedelta(minutes=25)).isoformat(), "timeZone": "America/Denver"},
    )
    google_server.delete(manager, google_server.instance_id(manager, master, occurrence(2)))
    google.write_agendas(
        manager, "g-moved", None, {occurrence(1): wrap("moved one"), occurrence(2): wrap("gone")}
    )
    series = only_series(google.changes(manager, None), "g-moved")
    by_start = {o.recurrence_id: o for o in series.overrides}
    assert "moved one" in by_start[occurrence(1)].description
    assert by_start[occurrence(1)].start == far
    assert by_start[occurrence(2)].cancelled and "gone" not in by_start[occurrence(2)].description


def test_rate_limits_are_retried_honouring_retry_after(
    google_server: FakeGoogle, manager: str
) -> None:
    waits: list[float] = []
    provider = make_provider(google_server, waits)
    google_server.fail(Fault(429, "rateLimitExceeded", retry_after=7, user=manager))
    google_server.fail(Fault(403, "userRateLimitExceeded", user=manager))
    google_server.fail(Fault(503, "backendError", user=manager))
    assert provider.changes(manager, None).complete
    assert waits[0] == 7
    assert len(waits) == 3 and all(0 < w <= 60 for w in waits)


def test_a_rate_limit_that_lasts_is_reported_as_such(
    google_server: FakeGoogle, manager: str
) -> None:
    waits: list[float] = []
    provider = make_provider(google_server, waits)
    google_server.fail(Fault(429, "rateLimitExceeded", retry_after=30, times=5, user=manager))
    with pytest.raises(RateLimited) as caught:
        provider.changes(manager, None)
    assert caught.value.retry_after == 30
    assert waits == [30, 30, 30, 30]


def test_a_manager_without_delegation_is_an_auth_error_naming_what_to_grant(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    google_server.no_delegation.add(manager)
    with pytest.raises(AuthError, match=r"domain-wide delegation for .*calendar\.events"):
        google.changes(manager, None)


def test_an_undocumented_answer_is_a_project_error(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    google_server.fail(Fault(200, "", user=manager))  # a 200 that is not the documented body
    with pytest.raises(ProviderError):
        google.changes(manager, None)


def test_free_busy_answers_for_each_person(
    google: GoogleCalendarProvider, manager: str, google_server: FakeGoogle
) -> None:
    google.create_series(manager, series_spec(manager, "g-busy"))
    busy = google.free_busy([manager], FIRST_START, FIRST_START + timedelta(days=7))
    assert busy[manager] == [
        (FIRST_START, FIRST_START + timedelta(minutes=25)),
        (occurrence(0, thursday=True), occurrence(0, thursday=True) + timedelta(minutes=25)),
    ]


def test_the_per_user_budget_waits_instead_of_tripping_googles_limit() -> None:
    from daemon.google_api import Budget

    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    budget = Budget(limit=500, clock=lambda: clock[0], sleep=sleep)
    for _ in range(500):
        budget.take("maya@acme.test")
        clock[0] += 0.01  # 500 calls in 5 s
    budget.take("raj@acme.test", 50)  # another manager has a budget of his own
    assert waits == []
    budget.take("maya@acme.test", 10)  # must wait until the first 10 are a minute old
    assert waits == [pytest.approx(60.0 - 5.0 + 0.09)]
    assert budget.waited == pytest.approx(55.09)


def test_a_cold_start_fills_each_batch_across_managers(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    other = "other-" + manager
    google_server.add_user(other)
    specs = [
        series_spec(boss, f"g-batch-{n}", occurrence_descriptions={occurrence(0): wrap(f"{n}")})
        for boss in (manager, other)
        for n in range(8)
    ]
    listings = google.changes_many({manager: None, other: None})  # one batch; tokens obtained
    assert all(isinstance(found, Changes) and found.complete for found in listings.values())
    before = google_server.round_trips
    assert google.apply([Create(spec.manager_email, spec) for spec in specs]) == [None] * 16
    # Two managers, one batch of inserts and one of agenda patches: instance ids are computed.
    assert google_server.round_trips - before == 2
    for boss in (manager, other):
        listing = google.changes(boss, None)
        assert sorted(s.uid for s in listing.changed) == [f"g-batch-{n}" for n in range(8)]
        assert all(len(s.overrides) == 1 for s in listing.changed)
    google_server.fail(Fault(503, "backendError", user=manager, path="/events", method="POST"))
    extra = series_spec(manager, "g-batch-new")
    again = google.apply([Create(s.manager_email, s) for s in [*specs, extra]])
    assert again == [None] * 17  # the one insert that failed in the batch was retried alone
    assert len(google.changes(manager, None).changed) == 9
    assert len(google.changes(other, None).changed) == 8


def test_ends_and_agenda_rewrites_of_many_series_take_two_round_trips(
    google: GoogleCalendarProvider, google_server: FakeGoogle, manager: str
) -> None:
    other = "other-" + manager
    google_server.add_user(other)
    specs = [series_spec(b, f"g-many-{b[:5]}-{n}") for b in (manager, other) for n in range(3)]
    assert google.apply([Create(s.manager_email, s) for s in specs]) == [None] * 6
    google_server.delete(manager, event_id(specs[0].uid))  # gone meanwhile: NotFound, alone
    writes: list[Write] = [End(s.manager_email, s.uid, occurrence(3).date()) for s in specs[:3]]
    writes += [
        Agendas(s.manager_email, s.uid, wrap("new master"), {occurrence(1): wrap("week two")})
        for s in specs[3:]
    ]
    before = google_server.round_trips
    outcome = google.apply(writes)
    assert google_server.round_trips - before == 2  # the reads, then the patches
    assert isinstance(outcome[0], NotFound)
    assert outcome[1:] == [None] * 5
    for spec in specs[1:3]:
        assert only_series(google.changes(manager, None), spec.uid).until == occurrence(3).date()
    for spec in specs[3:]:
        series = only_series(google.changes(other, None), spec.uid)
        assert "new master" in series.description and PERSONAL_NOTE in series.description
        [week_two] = series.overrides
        assert week_two.recurrence_id == occurrence(1)
        assert "week two" in week_two.description and PERSONAL_NOTE in week_two.description


def test_the_proxy_variables_carry_the_api_and_the_token_requests(
    google_server: FakeGoogle, manager: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.google import ConnectProxy

    proxy = ConnectProxy()
    try:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        # The local server speaks plain HTTP, so it is http_proxy that applies; Google's https
        # addresses take HTTPS_PROXY the same way.
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        provider = make_provider(google_server)
        assert provider.changes(manager, None).complete
        port = google_server.url.rstrip("/").rsplit(":", 1)[1]
        assert proxy.tunnels and all(t == f"127.0.0.1:{port}" for t in proxy.tunnels)
    finally:
        proxy.stop()


def test_a_calendar_id_that_does_not_exist_is_one_clear_error(
    google_server: FakeGoogle, manager: str
) -> None:
    provider = GoogleCalendarProvider(
        google_server.key_info(), "c_1on1s@group.calendar.google.com", root=google_server.url
    )
    with pytest.raises(NotFound, match="has no Google calendar 'c_1on1s@group"):
        provider.ensure_calendar(manager)
    google_server.add_calendar(manager, "c_1on1s@group.calendar.google.com")
    provider.ensure_calendar(manager)
    provider.create_series(manager, series_spec(manager, "g-secondary"))
    assert list(google_server.events(manager, "c_1on1s@group.calendar.google.com"))
    assert google_server.events(manager) == {}


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_ca_variables_make_a_private_ca_trusted_for_the_api_and_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    ca_file, cert, key = make_certificates(tmp_path)
    fake = FakeGoogle()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake.server.socket = context.wrap_socket(fake.server.socket, server_side=True)
    fake.url = fake.url.replace("http://", "https://")
    fake.token_uri = fake.url + "token"
    fake.start()
    try:
        fake.add_user("maya@acme.test")
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTPLIB2_CA_CERTS"):
            monkeypatch.delenv(name, raising=False)
        untrusted = GoogleCalendarProvider(fake.key_info(), root=fake.url, sleep=lambda _: None)
        with pytest.raises(Transient, match="cannot be reached"):
            untrusted.changes("maya@acme.test", None)
        monkeypatch.setenv(variable, str(ca_file))
        trusted = GoogleCalendarProvider(fake.key_info(), root=fake.url, sleep=lambda _: None)
        assert trusted.changes("maya@acme.test", None).complete  # the token, then the listing
    finally:
        fake.stop()
