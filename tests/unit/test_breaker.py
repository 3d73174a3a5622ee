"""The breaker's states and the pass deadline, on a controlled clock and calls that fail on cue.

The system tests (``tests/system/test_endpoint_breakers.py``) show the same against hung
servers; here each transition is pinned on its own: closed to open after ``THRESHOLD`` failures
in a row, refusals without a call, a half-open probe per pass, answers that are not failures.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from daemon.breaker import THRESHOLD, Breakers, deadline_for
from daemon.errors import (
    EndpointDown,
    MailEndpointDown,
    MailUnavailable,
    NotFound,
    RateLimited,
    Skipped,
    Transient,
)

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
    breakers.start_pass(60)
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
    breakers.start_pass(60)
    for _ in range(5):
        for _ in range(THRESHOLD - 1):
            call(breakers, server)
        server.down = False
        call(breakers, server)
        server.down = True
    assert breakers.down() == []


def test_an_answer_that_says_no_is_not_a_failure() -> None:
    breakers = Breakers()
    breakers.start_pass(60)

    def not_found() -> str:
        raise NotFound("gone")

    def slow_down() -> str:
        raise RateLimited("slow down", 5)

    for fn in [not_found, slow_down] * THRESHOLD:
        call(breakers, fn)
    assert breakers.down() == []


def test_the_next_pass_probes_once_and_closes_it_on_an_answer() -> None:
    breakers, server = Breakers(), Server()
    breakers.start_pass(60)
    for _ in range(10):
        call(breakers, server)
    breakers.start_pass(60)  # still down: one probe, then refused again
    outcomes = [call(breakers, server) for _ in range(10)]
    assert server.calls == THRESHOLD + 1
    assert isinstance(outcomes[1], EndpointDown)
    assert "still not answering" in str(outcomes[1])
    assert breakers.opened() == [] and breakers.closed() == []
    breakers.start_pass(60)
    server.down = False
    assert [call(breakers, server) for _ in range(3)] == ["ok"] * 3
    assert breakers.closed() == [SERVER] and breakers.down() == []
    breakers.start_pass(60)
    assert breakers.closed() == []  # said once


def test_a_breaker_remembered_as_down_is_half_open_in_a_new_process() -> None:
    breakers, server = Breakers(), Server()
    breakers.start_pass(60, down=[SERVER])
    assert breakers.untested()[0].endpoint == SERVER  # nothing called yet: still down
    for _ in range(5):
        call(breakers, server)
    assert server.calls == 1
    assert breakers.opened() == []  # down before this pass too: no new opening


def test_the_mail_side_refuses_with_a_mail_error() -> None:
    breakers = Breakers()
    breakers.start_pass(60)

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
    breakers.start_pass(deadline_for(60))
    assert call(breakers, server) == "ok"
    now[0] = 61.0
    late = [call(breakers, server) for _ in range(3)]
    assert server.calls == 1
    assert all(isinstance(o, EndpointDown) for o in late)
    assert breakers.deadline_hit and "deadline (60 s" in breakers.deadline_line()
    assert breakers.down() == []  # the server is fine: no breaker opened
    breakers.start_pass(deadline_for(60))
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
