"""The Outlook provider against the strict local Graph: the shared contract, then what only
Graph shows (a deleted occurrence that delta never mentions, declines, throttling, bad input).

``tests.fixtures.graph`` plays the identity platform and Graph over HTTPS with its own CA;
the real msal gets its token there and the provider's session trusts that CA only.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.core.agenda import wrap
from daemon.core.model import WorkingHours
from daemon.errors import (
    AuthError,
    NotFound,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from daemon.graph_http import Request
from daemon.providers.base import (
    Agendas,
    CalendarHours,
    CalendarProvider,
    Changes,
    Create,
    End,
    Write,
)
from daemon.providers.graph import GraphCalendarProvider
from tests.contract.provider_contract import (
    FIRST_START,
    ZONE,
    ProviderContract,
    occurrence,
    only_series,
    series_spec,
)
from tests.contract.test_graph_fake import Client
from tests.fixtures.graph import FakeGraph, graph_client

CALENDAR = "1:1s (cadence)"
NOW = datetime(2030, 10, 1, 9, 0, tzinfo=UTC)
_managers = itertools.count(1)


@pytest.fixture
def outlook(graph: FakeGraph) -> GraphCalendarProvider:
    return GraphCalendarProvider(graph_client(graph), CALENDAR, clock=lambda: NOW)


@pytest.fixture
def mailbox(graph: FakeGraph) -> str:
    email = f"maya{next(_managers)}@acme.test"
    graph.add_mailbox(email)
    return email


class TestGraphContract(ProviderContract):
    @pytest.fixture
    def provider(self, outlook: GraphCalendarProvider) -> CalendarProvider:
        return outlook

    @pytest.fixture
    def manager(self, mailbox: str) -> str:
        return mailbox


# -- what only Graph shows -------------------------------------------------------------------------


@pytest.fixture
def calendar(outlook: GraphCalendarProvider, mailbox: str) -> GraphCalendarProvider:
    outlook.ensure_calendar(mailbox)
    return outlook


def _series(graph: FakeGraph, outlook: GraphCalendarProvider, mailbox: str, uid: str) -> str:
    outlook.create_series(mailbox, series_spec(mailbox, uid))
    return graph.master(mailbox, uid).id


def _person(graph: FakeGraph) -> Client:
    return Client(graph)


def test_a_deleted_occurrence_is_seen_although_delta_says_nothing(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    master = _series(graph, calendar, mailbox, "graph-deleted")
    token = calendar.changes(mailbox, None).token
    week_two = occurrence(1)
    instance = _instance_id(graph, mailbox, master, week_two)

    assert _person(graph)("DELETE", f"/users/{mailbox}/events/{instance}").status_code == 204

    series = only_series(calendar.changes(mailbox, token), "graph-deleted")
    assert series.exdates == (week_two,)


def test_declines_and_moves_are_read_back(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    master = _series(graph, calendar, mailbox, "graph-states")
    token = calendar.changes(mailbox, None).token
    declined, moved = occurrence(1), occurrence(2, thursday=True)
    graph.respond(mailbox, master, "sam@acme.test", "declined", original=declined)
    instance = _instance_id(graph, mailbox, master, moved)
    later = moved + timedelta(days=1, hours=2)
    body = {
        "start": {"dateTime": later.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": ZONE},
        "end": {"dateTime": (later + timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%S"),
                "timeZone": ZONE},
    }  # fmt: skip
    assert _person(graph)("PATCH", f"/users/{mailbox}/events/{instance}", json=body).ok

    series = only_series(calendar.changes(mailbox, token), "graph-states")
    by_original = {o.recurrence_id: o for o in series.overrides}
    assert [a.partstat for a in by_original[declined].attendees] == ["DECLINED"]
    assert by_original[moved].start == later
    assert series.attendees[0].partstat == "NEEDS-ACTION"


def test_a_retried_create_after_a_crash_makes_no_second_series(
    graph: FakeGraph, outlook: GraphCalendarProvider, mailbox: str
) -> None:
    outlook.ensure_calendar(mailbox)
    spec = series_spec(mailbox, "graph-crash")
    outlook.create_series(mailbox, spec)
    restarted = GraphCalendarProvider(graph_client(graph), CALENDAR, clock=lambda: NOW)
    restarted.create_series(mailbox, spec)
    assert len(graph.live_events(mailbox)) == 1
    # and a fresh process ends it without having listed the calendar first
    restarted.end_series(mailbox, spec.uid, date(2030, 11, 14))
    assert only_series(outlook.changes(mailbox, None), spec.uid).until == date(2030, 11, 14)


def test_a_restarted_process_goes_on_from_the_token_without_a_whole_listing(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    """The ids ride in the token the ledger keeps, so a new process reads the masters it knew:
    a deleted occurrence (no delta signal) and a deleted series are seen on its first pass."""
    kept = _series(graph, calendar, mailbox, "graph-restart")
    gone = _series(graph, calendar, mailbox, "graph-restart-gone")
    token = calendar.changes(mailbox, None).token
    assert _person(graph)("DELETE", f"/users/{mailbox}/events/{gone}").status_code == 204
    week_two = occurrence(1)
    instance = _instance_id(graph, mailbox, kept, week_two)
    assert _person(graph)("DELETE", f"/users/{mailbox}/events/{instance}").status_code == 204
    full_syncs, before = graph.full_syncs, len(graph.requests)

    restarted = GraphCalendarProvider(graph_client(graph), CALENDAR, clock=lambda: NOW)
    changes = restarted.changes(mailbox, token)

    assert not changes.complete and graph.full_syncs == full_syncs
    assert changes.removed == ("graph-restart-gone",)
    assert only_series(changes, "graph-restart").exdates == (week_two,)
    # one delta round and the two masters read; not even the calendar is looked up again
    made = graph.requests[before:]
    assert [p for _, p in made if p.endswith("/calendarView/delta")] == [made[0][1]]
    assert sorted(made[1:]) == [
        ("GET", f"/users/{mailbox}/events/{m}") for m in sorted([kept, gone])
    ]
    again = restarted.changes(mailbox, changes.token)
    assert (again.changed, again.removed) == ((), ())


def test_a_token_without_ids_or_for_another_calendar_gives_a_whole_listing(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    _series(graph, calendar, mailbox, "graph-restart")
    token = calendar.changes(mailbox, None).token
    for older in (token.split(" ")[0], token.split(" ")[0] + " bm90LXppcA=="):
        restarted = GraphCalendarProvider(graph_client(graph), CALENDAR, clock=lambda: NOW)
        listing = restarted.changes(mailbox, older)
        assert listing.complete
        assert [s.uid for s in listing.changed] == ["graph-restart"]
    elsewhere = GraphCalendarProvider(graph_client(graph), "another", clock=lambda: NOW)
    elsewhere.ensure_calendar(mailbox)
    with pytest.raises(TokenExpired):  # that calendar's delta does not know this token
        elsewhere.changes(mailbox, token)


def test_a_token_from_an_old_window_asks_for_a_resync(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    token = calendar.changes(mailbox, None).token
    later = GraphCalendarProvider(
        graph_client(graph), CALENDAR, clock=lambda: NOW + timedelta(days=30)
    )
    with pytest.raises(TokenExpired):
        later.changes(mailbox, token)


def test_foreign_events_are_ignored_and_not_read_again(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    person = _person(graph)
    calendar_id = next(c for c, n in graph.mailboxes[mailbox].calendars.items() if n == CALENDAR)
    foreign = {
        "subject": "Team standup",
        "start": {"dateTime": "2030-10-14T09:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2030-10-14T09:30:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
            "range": {"type": "noEnd", "startDate": "2030-10-14"},
        },
    }
    made = person("POST", f"/users/{mailbox}/calendars/{calendar_id}/events", json=foreign)
    assert made.status_code == 201
    full = calendar.changes(mailbox, None)
    assert full.changed == ()
    before = len(graph.requests)
    calendar.changes(mailbox, full.token)
    assert [m for m, p in graph.requests[before:] if made.json()["id"] in p] == []


def test_what_lands_on_outlook(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    master = _series(graph, calendar, mailbox, "graph-landed")
    data = graph.mailboxes[mailbox].events[master].data
    assert data["start"] == {
        "dateTime": "2030-10-15T10:00:00",
        "timeZone": "Mountain Standard Time",
    }
    assert data["recurrence"]["pattern"]["daysOfWeek"] == ["tuesday", "thursday"]
    assert data["transactionId"]
    assert data["body"]["contentType"] == "html"
    assert "Globex call recording" in data["body"]["content"]
    calendar.write_agendas(mailbox, "graph-landed", wrap("<script>alert(1)</script>"), {})
    content = graph.mailboxes[mailbox].events[master].data["body"]["content"]
    assert "&lt;script&gt;" in content and "<script>" not in content
    assert "Globex call recording" in content


def test_throttling_is_waited_out_as_graph_asks(graph: FakeGraph, mailbox: str) -> None:
    waits: list[float] = []
    client = graph_client(graph)
    client._sleep = waits.append  # type: ignore[method-assign]
    provider = GraphCalendarProvider(client, CALENDAR, clock=lambda: NOW)
    provider.ensure_calendar(mailbox)
    graph.throttle("calendarView", retry_after=3, times=2)
    provider.changes(mailbox, None)
    assert waits == [3, 3]

    graph.throttle("calendarView", retry_after=5, times=10)
    with pytest.raises(RateLimited) as raised:
        provider.changes(mailbox, None)
    assert raised.value.retry_after == 5


def test_a_throttled_request_inside_a_batch_is_retried_alone(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    for n in range(3):
        _series(graph, calendar, mailbox, f"graph-batch-{n}")
    token = calendar.changes(mailbox, None).token
    graph.throttle("/events/", retry_after=1)
    before = len(graph.requests)
    calendar.changes(mailbox, token)
    master_reads = [p for m, p in graph.requests[before:] if "/events/" in p]
    assert len(master_reads) == 4  # three in the batch, the throttled one again


def test_no_more_than_four_requests_at_once_per_mailbox(graph: FakeGraph, mailbox: str) -> None:
    client = graph_client(graph)
    graph.slow = 0.2
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: client.call(Request("GET", f"/users/{mailbox}/calendar")),
                      range(12)))  # fmt: skip
    assert 2 <= graph.max_concurrent[mailbox] <= 4


def test_a_wrong_secret_is_one_line_with_the_aadsts_code(graph: FakeGraph, mailbox: str) -> None:
    provider = GraphCalendarProvider(graph_client(graph, client_secret="nope"), CALENDAR)
    with pytest.raises(AuthError) as raised:
        provider.ensure_calendar(mailbox)
    assert "AADSTS7000215" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert "nope" not in str(raised.value)


def test_a_tenant_that_does_not_exist_is_one_line(graph: FakeGraph, mailbox: str) -> None:
    provider = GraphCalendarProvider(graph_client(graph, tenant_id="no-such-tenant"), CALENDAR)
    with pytest.raises(AuthError) as raised:
        provider.ensure_calendar(mailbox)
    assert str(raised.value).startswith("tenant no-such-tenant is not known at https://127.0.0.1")
    assert "\n" not in str(raised.value)


def test_an_http_authority_is_refused_before_anything_is_sent(graph: FakeGraph) -> None:
    with pytest.raises(AuthError, match="authority_host: must be an https:// URL"):
        graph_client(graph, authority_host="http://127.0.0.1:1")
    assert graph.token_requests == 0


def test_a_mailbox_that_does_not_exist_is_named(outlook: GraphCalendarProvider) -> None:
    with pytest.raises(NotFound, match="mailbox ghost@acme.test does not exist in the tenant"):
        outlook.ensure_calendar("ghost@acme.test")


def test_a_denied_mailbox_says_what_to_grant(
    graph: FakeGraph, outlook: GraphCalendarProvider, mailbox: str
) -> None:
    graph.mailboxes[mailbox].denied = True
    with pytest.raises(AuthError, match=f"denies the app access to {mailbox}.*Calendars"):
        outlook.ensure_calendar(mailbox)


def test_a_zone_graph_cannot_take_writes_nothing(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    spec = series_spec(mailbox, "graph-zone", timezone="Antarctica/Troll")
    spec = replace(spec, start=spec.start.astimezone(ZoneInfo("Antarctica/Troll")))
    with pytest.raises(ProviderError, match="Antarctica/Troll.*no Windows equivalent"):
        calendar.create_series(mailbox, spec)
    assert graph.live_events(mailbox) == []


def test_free_busy_and_working_hours(graph: FakeGraph, calendar: GraphCalendarProvider,
                                     mailbox: str) -> None:  # fmt: skip
    _series(graph, calendar, mailbox, "graph-busy")
    graph.add_mailbox(
        mailbox,
        working_hours={"daysOfWeek": ["monday", "tuesday"], "startTime": "08:30:00.0000000",
                       "endTime": "17:00:00.0000000", "timeZone": {"name": "Mountain Standard Time"}},
    )  # fmt: skip
    busy = calendar.free_busy([mailbox], FIRST_START - timedelta(hours=1),
                              FIRST_START + timedelta(days=1))  # fmt: skip
    assert busy[mailbox] == [(FIRST_START, FIRST_START + timedelta(minutes=25))]
    hours = calendar.working_hours([mailbox])[mailbox]
    assert hours == CalendarHours(
        WorkingHours(days=(0, 1), start=time(8, 30), end=time(17, 0)), "America/Denver"
    )
    graph.roles = ["Calendars.ReadWrite"]  # MailboxSettings.Read not consented: the defaults
    assert calendar.working_hours([mailbox]) == {mailbox: None}


def _instance_id(graph: FakeGraph, mailbox: str, master: str, original: datetime) -> str:
    answer = _person(graph)(
        "GET", f"/users/{mailbox}/events/{master}/instances",
        params={"startDateTime": (original - timedelta(hours=1)).isoformat(),
                "endDateTime": (original + timedelta(hours=1)).isoformat()},
    ).json()  # fmt: skip
    [instance] = answer["value"]
    return str(instance["id"])


def test_creates_fill_each_batch_of_twenty_across_mailboxes_and_report_each_failure(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    other = f"raj{next(_managers)}@acme.test"
    graph.add_mailbox(other)
    calendar.ensure_calendar(other)
    specs = [series_spec(box, f"graph-many-{n}") for box in (mailbox, other) for n in range(12)]
    specs.append(series_spec(mailbox, "graph-many-bad", timezone="Antarctica/Troll"))
    before = graph.round_trips
    outcome = calendar.apply([Create(s.manager_email, s) for s in specs])
    assert outcome[:24] == [None] * 24
    assert isinstance(outcome[24], ProviderError)
    assert graph.round_trips - before == 2  # 24 creates in two mailboxes: batches of 20 and 4
    assert len(calendar.changes(mailbox, None).changed) == 12
    assert len(calendar.changes(other, None).changed) == 12
    again = calendar.apply([Create(s.manager_email, s) for s in specs[:3]])
    assert again == [None] * 3  # a rerun makes no second copy
    assert len(graph.live_events(mailbox)) == 12


def test_ends_and_agenda_rewrites_across_mailboxes_share_their_batches(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    other = f"raj{next(_managers)}@acme.test"
    graph.add_mailbox(other)
    calendar.ensure_calendar(other)
    specs = [series_spec(box, f"graph-both-{box[:4]}-{n}") for box in (mailbox, other)
             for n in range(3)]  # fmt: skip
    assert calendar.apply([Create(s.manager_email, s) for s in specs]) == [None] * 6
    writes: list[Write] = [End(s.manager_email, s.uid, occurrence(3).date()) for s in specs[::2]]
    writes += [
        Agendas(s.manager_email, s.uid, wrap("new master"), {occurrence(1): wrap("week two")})
        for s in specs[1::2]
    ]
    before = graph.round_trips
    assert calendar.apply(writes) == [None] * 6
    # The masters; the ends' and masters' PATCHes with the occurrences' reads; their PATCHes.
    assert graph.round_trips - before == 3
    for spec in specs[::2]:
        listing = calendar.changes(spec.manager_email, None)
        assert only_series(listing, spec.uid).until == occurrence(3).date()
    for spec in specs[1::2]:
        series = only_series(calendar.changes(spec.manager_email, None), spec.uid)
        assert "new master" in series.description
        [week_two] = [o for o in series.overrides if o.recurrence_id == occurrence(1)]
        assert "week two" in week_two.description


def test_masters_of_every_mailbox_are_read_back_together_twenty_to_a_batch(
    graph: FakeGraph, mailbox: str
) -> None:
    """A warm pass is one delta round per mailbox, then every mailbox's masters in shared
    ``$batch`` round trips; a deleted occurrence (no delta signal) is still found in any of
    them, and a restarted process goes on from the tokens without looking up a calendar."""
    boxes = [mailbox] + [f"raj{next(_managers)}@acme.test" for _ in range(2)]
    for box in boxes[1:]:
        graph.add_mailbox(box)
    outlook = GraphCalendarProvider(graph_client(graph), "primary", clock=lambda: NOW)
    specs = [series_spec(box, f"graph-shared-{box[:5]}-{n}") for box in boxes for n in range(7)]
    assert outlook.apply([Create(s.manager_email, s) for s in specs]) == [None] * 21
    listed = outlook.changes_many(dict.fromkeys(boxes))
    tokens = {m: c.token for m, c in listed.items() if not isinstance(c, ProviderError)}
    assert len(tokens) == 3
    last = specs[-1]
    master = graph.master(last.manager_email, last.uid).id
    instance = _instance_id(graph, last.manager_email, master, occurrence(1))
    assert _person(graph)("DELETE", f"/users/{last.manager_email}/events/{instance}").ok
    before, requests = graph.round_trips, len(graph.requests)

    restarted = GraphCalendarProvider(graph_client(graph), "primary", clock=lambda: NOW)
    warm = restarted.changes_many(tokens)

    assert graph.round_trips - before == 3 + 2  # three delta rounds; 21 masters in 20 + 1
    assert not any(p.endswith("/calendar") for _, p in graph.requests[requests:])
    changes = warm[last.manager_email]
    assert not isinstance(changes, ProviderError)
    assert only_series(changes, last.uid).exdates == (occurrence(1),)
    tokens = {m: c.token for m, c in warm.items() if not isinstance(c, ProviderError)}
    before = graph.round_trips
    again = restarted.changes_many(tokens)
    assert graph.round_trips - before == 3 + 2
    assert [(c.changed, c.removed) for c in again.values() if isinstance(c, Changes)] == [
        ((), ())
    ] * 3


def test_diagnose_checks_token_permissions_mailbox_and_calendar_writing_nothing(
    graph: FakeGraph, outlook: GraphCalendarProvider, mailbox: str
) -> None:
    graph.roles = ["Calendars.ReadWrite"]
    rows = outlook.diagnose(mailbox) + outlook.diagnose("ghost@acme.test")
    table = {(r.check, r.subject): (r.ok, r.detail) for r in rows}
    assert table[("token", graph.tenant)][0]
    assert table[("working hours", "MailboxSettings.Read")] == (
        False, "grant it (application) and admin-consent it",
    )  # fmt: skip
    assert table[("calendar reachable", mailbox)] == (
        True, f"{CALENDAR!r} will be created by the first pass",
    )  # fmt: skip
    assert table[("calendar writable", mailbox)] == (True, "Calendars.ReadWrite")
    assert table[("calendar reachable", "ghost@acme.test")] == (
        False, "mailbox ghost@acme.test does not exist in the tenant",
    )  # fmt: skip
    assert [m for m, _ in graph.requests if m != "GET"] == []
    assert graph.mailboxes[mailbox].events == {}


def test_diagnose_a_wrong_secret_raises_the_aadsts_line(graph: FakeGraph, mailbox: str) -> None:
    provider = GraphCalendarProvider(graph_client(graph, client_secret="nope"), CALENDAR)
    with pytest.raises(AuthError, match="AADSTS7000215"):
        provider.diagnose(mailbox)


def test_a_certificate_instead_of_a_secret(graph: FakeGraph, mailbox: str, tmp_path: Path) -> None:
    pem = graph.register_certificate(tmp_path)
    provider = GraphCalendarProvider(
        graph_client(graph, client_secret=None, certificate_file=str(pem)), CALENDAR
    )
    provider.ensure_calendar(mailbox)  # msal signed a client assertion the tenant accepted
    (tmp_path / "other").mkdir()
    other = FakeGraph(tmp_path / "other")  # a certificate this app never uploaded
    other_pem = other.register_certificate(tmp_path / "other")
    stranger = GraphCalendarProvider(
        graph_client(graph, client_secret=None, certificate_file=str(other_pem)), CALENDAR
    )
    with pytest.raises(AuthError, match="AADSTS700027"):
        stranger.ensure_calendar(mailbox)


def test_an_unexpected_answer_is_a_clear_error_not_a_traceback(
    graph: FakeGraph, calendar: GraphCalendarProvider, mailbox: str
) -> None:
    graph.garbage = "calendarView"
    with pytest.raises(ProviderError, match="not JSON"):
        calendar.changes(mailbox, None)


def test_msal_graph_and_mail_go_through_the_proxy_variables(
    graph: FakeGraph, mailbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY carries msal's token requests, the calendar's calls and sendMail through a
    real CONNECT proxy, with REQUESTS_CA_BUNDLE trusted inside the tunnel; with the proxy down,
    nothing reaches Graph another way."""
    from daemon.mail.graph import GraphMailer
    from tests.contract.test_mailers import make_message
    from tests.fixtures.google import ConnectProxy

    graph.add_mailbox("cadence@acme.test")
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_file))
    client = graph_client(graph, ca_bundle=None)  # trusts what the environment names
    client.token()  # obtained directly, before the proxy is set: cached from here on
    target = graph.url.removeprefix("https://")
    proxy = ConnectProxy()
    try:
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, proxy.url)
        provider = GraphCalendarProvider(client, clock=lambda: NOW)
        provider.create_series(mailbox, series_spec(mailbox, "graph-proxied"))
        assert [s.uid for s in provider.changes(mailbox, None).changed] == ["graph-proxied"]
        GraphMailer(client).send(make_message())
        assert len(graph.sent) == 1
        assert proxy.tunnels and set(proxy.tunnels) == {target}  # Graph calls and sendMail
        before = len(proxy.tunnels)
        graph_client(graph, ca_bundle=None).token()  # a new process's msal
        assert len(proxy.tunnels) > before and set(proxy.tunnels) == {target}
    finally:
        proxy.stop()
    # The proxy is gone: a new process's token request fails with one line rather than going
    # around it.
    fresh = GraphCalendarProvider(graph_client(graph, ca_bundle=None), clock=lambda: NOW)
    with pytest.raises(Transient, match="cannot be reached"):
        fresh.changes(mailbox, None)


def test_calendars_looked_up_together_when_graph_does_not_answer_fail_each_mailbox_alone(
    graph: FakeGraph, mailbox: str
) -> None:
    """A fresh process looks up the primary calendars of the mailboxes it does not know in one
    ``$batch``; when that answer is not Graph's, each mailbox reports the error, as a
    mailbox's own failed read would, rather than the whole read of every mailbox failing."""
    other = f"raj{next(_managers)}@acme.test"
    graph.add_mailbox(other)
    fresh = GraphCalendarProvider(graph_client(graph), "primary", clock=lambda: NOW)
    graph.garbage = r"/\$batch$"
    got = fresh.changes_many({mailbox: None, other: None})
    assert set(got) == {mailbox, other}
    assert all(isinstance(answer, ProviderError) for answer in got.values())
    graph.garbage = None
    again = fresh.changes_many({mailbox: None, other: None})
    assert not any(isinstance(answer, ProviderError) for answer in again.values())
