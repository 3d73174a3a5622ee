"""The pass deadline where the providers' retry loops can see it.

The breaker (``daemon.breaker``) stops starting calls once a pass has run its deadline, but a
call already started may retry inside the client: Google's 5 attempts with back-off, Graph's
waits on 429/503 and its ``$batch`` rounds. Against a server that answers 504 after 30 s, that
is minutes inside one call, past the pass's end. So the breaker runs every call inside
``within(deadline)``, and the retry loops ask ``allows(wait)`` (or use ``stop`` with tenacity)
before waiting for another attempt, and ``expired()`` before sending a request at all: no
attempt starts after the deadline. A call whose retries were cut that way is marked cut,
nothing more of it is sent, and the breaker treats its failure as the endpoint not answering
for the rest of the pass. A breaker's probe (half-open) is one attempt: no retries at all.

Outside a pass (``cadence doctor``, a contract test calling a client) there is no deadline:
every retry the client allows is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from tenacity import RetryCallState
from tenacity.stop import stop_base


@dataclass
class Deadline:
    """``at`` on ``clock`` (monotonic seconds). ``retries`` False: a breaker's probe, one
    attempt and no retry. ``cut`` once a retry was given up for the deadline; ``spent`` once a
    retry was given up for either reason: nothing more is sent in this call."""

    at: float
    clock: Callable[[], float] = time.monotonic
    retries: bool = True
    cut: bool = False
    spent: bool = False


_CURRENT: ContextVar[Deadline | None] = ContextVar("cadence_pass_deadline", default=None)


@contextmanager
def within(deadline: Deadline) -> Iterator[Deadline]:
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def allows(wait: float) -> bool:
    """Whether another attempt after waiting ``wait`` seconds may be made: not in a probe, and
    not when it would start past the pass's deadline (the call is then marked cut)."""
    current = _CURRENT.get()
    if current is None:
        return True
    if current.spent:
        return False
    if current.clock() + wait > current.at:
        current.cut = current.spent = True
        return False
    if not current.retries:
        current.spent = True
        return False
    return True


def expired() -> bool:
    """Whether no request should start any more: the deadline has passed, or a retry was
    given up (one breaker call may hold many requests: a Graph read of many mailboxes,
    Google's batches of 50; after that, the rest is not sent)."""
    current = _CURRENT.get()
    return current is not None and (current.spent or current.clock() > current.at)


class _Stop(stop_base):
    """A tenacity stop condition (combine with ``|``): no retry whose wait ends past the
    deadline (tenacity computes ``upcoming_sleep`` before asking)."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not allows(retry_state.upcoming_sleep)


stop = _Stop()
