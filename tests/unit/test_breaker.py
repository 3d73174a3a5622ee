"""The breaker's states and the pass deadline, on a controlled clock and calls that fail on cue.

The system tests (``tests/system/test_endpoint_breakers.py``) show the same against hung
servers; here each transition is pinned on its own: closed to open after ``THRESHOLD`` failures
in a row, refusals without a call, a half-open probe per pass, answers that are not failures.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from daemon import deadline
from daemon.breaker import PROBE_MAX, THRESHOLD, Breakers, GuardedProvider, deadline_for
from daemon.errors import (
    EndpointDown,
    MailEndpointDown,
    MailUnavailable,
    NotFound,
    ProviderError,
    RateLimited,
    Skipped,
    Transient,
)
from daemon.providers.base import Capabilities, End, Write

SERVER = "calendar server http://dav.acme.test/"


class Server:
    """A server that times out while ``down``; ``calls`` counts what reached it."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise Transient(f"{SERVER} cannot be reached: timed out")
        return "ok"


def call(breakers: Breakers, fn: Callable[[], str]) -> str | Exception:
    try:
        return breakers.call(SERVER, fn, EndpointDown)
    except (Transient, NotFound) as exc:
        return exc


def test_threshold_failures_open_it_and_the_rest_is_refused_without_a_call() -> None:
    breakers, server = Breakers(), Server()
    breakers.start_pass(60, now=60)
    outcomes = [call(breakers, server) for _ in range(20)]
    assert server.calls == THRESHOLD
    assert all(isinstance(o, Transient) and not isinstance(o, Skipped)
               for o in outcomes[:THRESHOLD])  # fmt: skip
    refused = outcomes[THRESHOLD:]
    assert all(isinstance(o, EndpointDown) and o.endpoint == SERVER for o in refused)
    assert breakers.opened() == [SERVER]
    (down,) = breakers.down()
    assert down.line().startswith(f"{SERVER} is not answering: {THRESHOLD} failures in a row")


def test_a_success_between_failures_starts_the_count_again() -> None:
    breakers, server = Breakers(), Server()
    breakers.start_pass(60, now=120)
    for _ in range(5):
        for _ in range(THRESHOLD - 1):
            call(breakers, server)
        server.down = False
        call(breakers, server)
        server.down = True
    assert breakers.down() == []


def test_an_answer_that_says_no_is_not_a_failure() -> None:
    breakers = Breakers()
    breakers.start_pass(60, now=180)

    def not_found() -> str:
        raise NotFound("gone")

    def slow_down() -> str:
        raise RateLimited("slow down", 5)

    for fn in [not_found, slow_down] * THRESHOLD:
        call(breakers, fn)
    assert breakers.down() == []


def test_the_next_pass_probes_once_and_closes_it_on_an_answer() -> None:
    breakers, server = Breakers(), Server()
    breakers.start_pass(60, now=240)
    for _ in range(10):
        call(breakers, server)
    breakers.start_pass(60, now=300)  # still down: one probe, then refused again
    outcomes = [call(breakers, server) for _ in range(10)]
    assert server.calls == THRESHOLD + 1
    assert isinstance(outcomes[1], EndpointDown)
    assert "still not answering" in str(outcomes[1])
    assert breakers.opened() == [] and breakers.closed() == []
    breakers.start_pass(60, now=360)
    server.down = False
    assert [call(breakers, server) for _ in range(3)] == ["ok"] * 3
    assert breakers.closed() == [SERVER] and breakers.down() == []
    breakers.start_pass(60, now=420)
    assert breakers.closed() == []  # said once


def test_a_breaker_remembered_as_down_is_half_open_in_a_new_process() -> None:
    breakers, server = Breakers(), Server()
    breakers.start_pass(60, down=[SERVER], now=60)
    assert breakers.untested()[0].endpoint == SERVER  # nothing called yet: still down
    for _ in range(5):
        call(breakers, server)
    assert server.calls == 1
    assert breakers.opened() == []  # down before this pass too: no new opening


def test_the_mail_side_refuses_with_a_mail_error() -> None:
    breakers = Breakers()
    breakers.start_pass(60, now=480)

    def hung() -> None:
        raise MailUnavailable("mail server smtp.acme.test:587 did not answer within 30s")

    for _ in range(THRESHOLD):
        with pytest.raises(MailUnavailable):
            breakers.call("mail server smtp.acme.test:587", hung, MailEndpointDown)
    with pytest.raises(MailEndpointDown):
        breakers.call("mail server smtp.acme.test:587", hung, MailEndpointDown)


def test_after_the_deadline_no_call_starts_and_it_is_said_once() -> None:
    now = [0.0]
    breakers, server = Breakers(monotonic=lambda: now[0]), Server()
    server.down = False
    breakers.start_pass(deadline_for(60), now=540)
    assert call(breakers, server) == "ok"
    now[0] = 61.0
    late = [call(breakers, server) for _ in range(3)]
    assert server.calls == 1
    assert all(isinstance(o, EndpointDown) for o in late)
    assert breakers.deadline_hit and "deadline (60 s" in breakers.deadline_line()
    assert breakers.down() == []  # the server is fine: no breaker opened
    breakers.start_pass(deadline_for(60), now=600)
    assert call(breakers, server) == "ok" and not breakers.deadline_hit


def test_the_deadline_follows_the_interval_with_a_floor() -> None:
    assert deadline_for(600) == 600
    assert deadline_for(5) == 30


def test_the_status_endpoint_counts_an_opening_once_and_a_closing_once() -> None:
    from datetime import UTC, datetime

    from prometheus_client.exposition import generate_latest

    from daemon.reconcile import PassResult
    from daemon.web.status import Health, Instruments

    at = datetime(2026, 11, 22, 12, tzinfo=UTC)
    instruments, health = Instruments(), Health(60, lambda: at)
    passes = [
        PassResult(unavailable=True, endpoints_opened=[SERVER], endpoints_down=[SERVER]),
        PassResult(unavailable=True, endpoints_down=[SERVER]),
        PassResult(endpoints_closed=[SERVER]),
        PassResult(),
    ]
    bodies = []
    for result in passes:
        instruments.record(result, 1.0, not result.unavailable, at)
        health.passed(at, not result.unavailable, None, [], result.endpoints_down)
        bodies.append(health.verdict()[1]["endpoints_down"])
    assert bodies == [[SERVER], [SERVER], [], []]
    text = generate_latest(instruments.registry).decode()
    label = f'endpoint="{SERVER}"'
    assert f'cadence_breaker_changes_total{{{label},to="open"}} 1.0' in text
    assert f'cadence_breaker_changes_total{{{label},to="closed"}} 1.0' in text
    assert f"cadence_endpoint_down{{{label}}} 0.0" in text


def test_an_open_breaker_is_probed_on_its_own_back_off_not_every_pass() -> None:
    """Passes every second (``cadence run`` woken for other work): the dead server is asked at
    its opening, then once 5 s later, 10 s after that... never more often, and at most every
    ``PROBE_MAX`` seconds; an answer closes it and starts the back-off afresh."""
    breakers, server = Breakers(), Server()
    asked_at: list[int] = []
    for t in range(0, 2000):
        before = server.calls
        breakers.start_pass(60, now=t)
        for _ in range(5):
            call(breakers, server)
        if server.calls > before:
            asked_at.append(t)
    assert server.calls == THRESHOLD + len(asked_at) - 1
    gaps = [b - a for a, b in zip(asked_at, asked_at[1:], strict=False)]
    assert gaps == [5, 10, 20, 40, 80, 160] + [int(PROBE_MAX)] * (len(gaps) - 6)
    assert breakers.next_probe() == asked_at[-1] + PROBE_MAX

    server.down = False
    breakers.start_pass(60, now=asked_at[-1] + PROBE_MAX)
    assert call(breakers, server) == "ok" and breakers.next_probe() is None
    server.down = True
    breakers.start_pass(60, now=5000)
    for _ in range(THRESHOLD):
        call(breakers, server)
    assert breakers.next_probe() == 5000 + 5


class Batching:
    """A provider with batch requests whose ``apply`` answers each write as told."""

    capabilities = Capabilities(batches=True)

    def __init__(self) -> None:
        self.answers: list[ProviderError | None] = []

    def apply(self, writes: list[Write]) -> list[ProviderError | None]:
        return list(self.answers)


def test_a_batch_whose_every_item_failed_is_one_failure_of_the_endpoint() -> None:
    breakers, inner = Breakers(), Batching()
    guarded = GuardedProvider(inner, SERVER, breakers)  # type: ignore[arg-type]
    writes: list[Write] = [End("m@acme.test", f"uid-{i}", date(2026, 12, 1)) for i in range(4)]
    breakers.start_pass(60, now=0)
    # Some items answered (a 404, a throttled one, one that went through): the endpoint is up.
    inner.answers = [Transient("503"), NotFound("gone"), RateLimited("slow", 1), None]
    for _ in range(THRESHOLD):
        assert guarded.apply(writes) == inner.answers
    assert breakers.down() == []
    # Every item a 503/504 inside a $batch answered 200: one failure per batch.
    inner.answers = [Transient(f"Google failed (504) for item {i}") for i in range(4)]
    for _ in range(THRESHOLD):
        assert guarded.apply(writes) == inner.answers  # the items keep their own errors
    (down,) = breakers.down()
    assert f"{THRESHOLD} failures in a row" in down.line()
    assert down.failed == [str(e) for e in inner.answers] * THRESHOLD
    refused = guarded.apply(writes)
    assert all(isinstance(e, EndpointDown) for e in refused)


def test_a_call_whose_retries_ran_into_the_pass_deadline_opens_the_breaker_at_once() -> None:
    """A server answering 503 after 30 s, retried every 20 s: inside a pass with 60 s left the
    client stops after two attempts (a third would start at 100 s), and that one failure opens
    the breaker; its probe in the next pass is one attempt; outside a pass (``cadence
    doctor``) the client makes all five."""
    now = [0.0]

    def attempt() -> str:
        now[0] += 30.0
        raise Transient(f"{SERVER} failed (503)")

    def retried() -> str:
        retrying = Retrying(
            stop=stop_after_attempt(5) | deadline.stop, wait=wait_fixed(20),
            retry=retry_if_exception_type(Transient), reraise=True,
            sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
        )  # fmt: skip
        return retrying(attempt)

    breakers = Breakers(monotonic=lambda: now[0])
    breakers.start_pass(60, now=0)
    assert isinstance(call(breakers, retried), Transient)
    assert now[0] == 80.0  # two attempts and the wait between
    (down,) = breakers.down()
    assert "its retries ran into the pass deadline" in down.line()
    assert isinstance(call(breakers, retried), EndpointDown) and now[0] == 80.0

    # The next pass's probe is one attempt, however much of the pass is left.
    breakers.start_pass(3600, now=60)
    before = now[0]
    assert isinstance(call(breakers, retried), Transient)
    assert now[0] == before + 30
    assert "still not answering" in breakers.down()[0].line()

    now[0] = 0.0
    with pytest.raises(Transient):
        retried()
    assert now[0] == 5 * 30 + 4 * 20
