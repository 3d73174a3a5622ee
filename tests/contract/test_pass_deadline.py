"""Google's and Graph's own retries stop at the pass deadline, and count against the breaker.

Against an API that answers 503 or 504 after 30 s, the clients' retries (Google: 5 attempts
with back-off, every part of a batch retried alone; Graph: 5 attempts on a 503) would hold one
pass for many minutes. Here the real clients talk to the local fakes, which answer every call
with an error at once; the time a request would take is played by an injected clock that
moves 30 s per request sent, plus the waits the clients ask for (their sleep is injected too).
The tests count requests, never time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from daemon.breaker import Breakers, GuardedProvider, deadline_for
from daemon.errors import EndpointDown, Transient
from daemon.providers.base import End
from daemon.providers.google import GoogleCalendarProvider
from daemon.providers.graph import GraphCalendarProvider
from tests.fixtures.google import FakeGoogle, Fault
from tests.fixtures.graph import FakeGraph, graph_client

MANAGERS = 20
SLOW = 30.0  # seconds each request would take: an API answering 504 after 30 s
INTERVAL = 60  # the pass deadline follows interval_seconds
_ids = itertools.count(1)


class SlowClock:
    """Monotonic seconds: ``SLOW`` per request the fake received, plus the clients' waits."""

    def __init__(self, requests: Callable[[], int]) -> None:
        self._requests = requests
        self._start = requests()
        self.slept = 0.0

    @property
    def sent(self) -> int:
        return self._requests() - self._start

    def __call__(self) -> float:
        return SLOW * self.sent + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


@pytest.fixture
def failing_google(google_server: FakeGoogle) -> Iterator[tuple[FakeGoogle, list[str]]]:
    """``MANAGERS`` mailboxes whose every Calendar call answers 504 (inside a batch too)."""
    managers = [f"dl{next(_ids)}-{i}@acme.test" for i in range(MANAGERS)]
    faults = [Fault(504, "backendError", times=10_000, user=m) for m in managers]
    for manager, fault in zip(managers, faults, strict=True):
        google_server.add_user(manager)
        google_server.fail(fault)
    yield google_server, managers
    with google_server.lock:
        for fault in faults:
            if fault in google_server.faults:
                google_server.faults.remove(fault)


def test_google_504s_stop_at_the_pass_deadline_and_open_the_breaker(
    failing_google: tuple[FakeGoogle, list[str]],
) -> None:
    fake, managers = failing_google
    # API requests only: the token endpoint answers at once (each token issued is a request).
    clock = SlowClock(lambda: fake.round_trips - len(fake.tokens))
    provider = GoogleCalendarProvider(fake.key_info(), root=fake.url, sleep=clock.sleep)
    endpoint = f"Google Calendar API at {fake.url}"
    breakers = Breakers(monotonic=clock)
    guarded = GuardedProvider(provider, endpoint, breakers)

    breakers.start_pass(deadline_for(INTERVAL), now=0)
    found = guarded.changes_many(dict.fromkeys(managers))
    # One batch of 20 reads (30 s), every part a 504; the first part retried alone (60 s):
    # the next attempt would start past the deadline, so nothing more is sent. Before, each
    # part was retried alone five times: 101 requests, about 55 minutes on this clock.
    assert clock.sent == 2
    assert all(isinstance(found[m], Transient) and "(504)" in str(found[m]) for m in managers)
    (down,) = breakers.down()
    line = down.line()
    assert line.startswith(endpoint) and "retries ran into the pass deadline" in line
    # The rest of the pass's work for Google is refused without a request.
    writes = [End(m, "uid", datetime(2026, 12, 1, tzinfo=UTC).date()) for m in managers]
    assert all(isinstance(e, EndpointDown) for e in guarded.apply(writes))
    assert clock.sent == 2

    # The next pass (a minute later) probes once: the same batch, no retry, and still down.
    breakers.start_pass(deadline_for(INTERVAL), now=INTERVAL)
    guarded.changes_many(dict.fromkeys(managers))
    assert clock.sent == 3
    assert "still not answering" in breakers.down()[0].line()


@pytest.fixture
def failing_graph(graph: FakeGraph) -> Iterator[tuple[FakeGraph, list[str], list[str]]]:
    """``MANAGERS`` mailboxes on a Graph whose every API request answers 503 (the identity
    platform answers); the list collects the API requests sent."""
    managers = [f"dl-{i}@contoso.test" for i in range(MANAGERS)]
    for manager in managers:
        graph.add_mailbox(manager)
    sent: list[str] = []

    class Unavailable:
        def next_fault(self, request: str) -> str | None:
            if " /v1.0/" not in request:
                return None
            sent.append(request)
            return "http_503"

        def hold(self) -> None:
            pass

    graph.faults = Unavailable()
    yield graph, managers, sent
    graph.faults = None


def test_graph_503s_stop_at_the_pass_deadline_and_open_the_breaker(
    failing_graph: tuple[FakeGraph, list[str], list[str]],
) -> None:
    fake, managers, sent = failing_graph
    clock = SlowClock(lambda: len(sent))
    client = graph_client(fake)
    client._sleep = clock.sleep  # type: ignore[method-assign]
    provider = GraphCalendarProvider(client, "1:1s (cadence)", clock=lambda: datetime.now(UTC))
    endpoint = f"Microsoft Graph at {fake.url}"
    breakers = Breakers(monotonic=clock)
    guarded = GuardedProvider(provider, endpoint, breakers)

    breakers.start_pass(deadline_for(INTERVAL), now=0)
    found = guarded.changes_many(dict.fromkeys(managers))
    # The first mailbox's read: a 503 (30 s), a wait of 2 s, another 503 (62 s); a third
    # attempt would start past the deadline. The other 19 mailboxes are not asked: before,
    # each was tried five times with waits (100 requests, about 54 minutes on this clock).
    assert len(sent) == 2
    assert all(isinstance(found[m], Transient) for m in managers)
    assert "503" in str(found[managers[0]])
    (down,) = breakers.down()
    assert down.line().startswith(endpoint)
    assert "retries ran into the pass deadline" in down.line()
    assert isinstance(guarded.apply([End(managers[0], "uid", datetime(2026, 12, 1).date())])[0],
                      EndpointDown)  # fmt: skip
    assert len(sent) == 2
