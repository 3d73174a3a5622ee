"""A breaker per endpoint, and a deadline per pass: a hung server costs a pass seconds, not a
timeout per manager.

Without them, a calendar server that accepts connections and never answers costs one read
timeout per manager, one after the other (15 managers, 151 s), and nothing else happens
meanwhile: no agendas, no emails, no warnings for managers whose calendars live elsewhere.

Each endpoint (a CalDAV server, the Google Calendar or Gmail API, Microsoft Graph, an SMTP
server) has one breaker, and every provider and mailer call of the reconcile loop goes through
it (``GuardedProvider``, ``GuardedMailer``):

* closed: calls go through. ``threshold`` failures in a row (a timeout, a refused or dropped
  connection, a 5xx: ``Transient`` or ``MailUnavailable``; a "slow down" is an answer) open it.
  So does one failure whose retries inside the client ran into the pass deadline
  (``daemon.deadline``): that endpoint has had the pass's time already.
* open: every further call is refused at once with ``EndpointDown`` / ``MailEndpointDown``
  (``daemon.errors.Skipped``), without touching the network. The log says so once; the pass
  summary carries one error naming the endpoint.
* half-open: the first pass after its probe time makes its first call a probe, one attempt
  without the client's retries. An answer closes it (logged once); a failure opens it again
  at once. The probe time follows the breaker's own back-off (5 s from the start of the pass
  it opened in, doubling, at most 5 minutes, on the passes' clock), so a dead server is asked
  less and less often while ``cadence run`` keeps its interval for the endpoints that answer
  (``next_probe`` tells the loop when a probe falls due sooner).

A batched call (``Capabilities.batches``: Google, Graph) is judged whole: when every item of a
batch that was answered failed as the endpoint not answering (a ``$batch`` answered 200 with
every inner response a 503 or 504), that is one failure of the endpoint. When only some items
fail, the endpoint answered the others: those are the items' own failures, not the endpoint's.

Which endpoints are down is kept in the ledger, so that a second ``cadence once`` (a new
process) probes once too, and the admin alert opens once and clears once; the probe's back-off
lives in the process (``cadence run``): a new process probes at its first pass. The deadline:
once a pass has run ``deadline`` seconds, no new call starts (nor a retry inside a call); the
rest waits for the next pass, so ``cadence run`` never falls more than one pass behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, TypeVar

from daemon import deadline as pass_deadline
from daemon import logs
from daemon.checks import Check
from daemon.errors import (
    CadenceError,
    EndpointDown,
    MailEndpointDown,
    MailUnavailable,
    ProviderError,
    RateLimited,
    Skipped,
    Transient,
)
from daemon.mail.base import Mailer
from daemon.providers.base import (
    Attendee,
    CalendarHours,
    CalendarProvider,
    Changes,
    SeriesSpec,
    Write,
    each_changes,
    one_by_one,
)

if TYPE_CHECKING:
    from daemon.store import Ledger

THRESHOLD = 3  # failures in a row that open a breaker
PROBE_FIRST = 5.0  # seconds from a breaker's opening to its first probe, doubling after
PROBE_MAX = 300.0
MIN_DEADLINE = 30.0  # seconds: a short interval never cuts a pass shorter than this
FLAG = "endpoints_down"  # the ledger flag: JSON list of the endpoints whose breaker is open

T = TypeVar("T")


def deadline_for(interval_seconds: float) -> float:
    """A pass stops starting calls after one interval (at least ``MIN_DEADLINE``)."""
    return max(float(interval_seconds), MIN_DEADLINE)


def probe_after(streak: int) -> float:
    """Seconds from the pass a breaker opened in (for the ``streak``-th time in a row) to its
    probe."""
    return min(PROBE_FIRST * 2.0 ** max(streak - 1, 0), PROBE_MAX)


def _is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the endpoint did not answer (as opposed to answering no)."""
    if isinstance(exc, Skipped | RateLimited):
        return False
    return isinstance(exc, Transient | MailUnavailable)


@dataclass
class Breaker:
    endpoint: str
    state: str = "closed"  # closed | open | half-open
    failures: int = 0  # in a row
    last_error: str = ""
    was_down: bool = False  # open at the end of the previous pass
    skipped: int = 0  # calls refused this pass
    failed: list[str] = field(default_factory=list)  # this pass's failure messages
    cut: bool = False  # opened by a call whose retries ran into the pass deadline
    streak: int = 0  # openings since it last closed
    probe_at: float = 0.0  # on the passes' clock: the first pass from then on probes

    @property
    def down(self) -> bool:
        return self.state == "open"

    def line(self) -> str:
        """The one line of the pass summary while it is open."""
        # The failure's own message names the endpoint already, mostly the same way.
        reason = self.last_error.removeprefix(self.endpoint).lstrip(" :") or self.last_error
        if self.was_down and self.failures <= 1:
            why = f"still not answering ({reason})"
        elif self.cut:
            why = f"not answering: its retries ran into the pass deadline ({reason})"
        else:
            why = f"not answering: {self.failures} failures in a row ({reason})"
        return f"{self.endpoint} is {why}; the rest of its work waits for the next pass"


class Breakers:
    """The breakers of one runtime, and the deadline of the pass in progress."""

    def __init__(
        self, threshold: int = THRESHOLD, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self._monotonic = monotonic
        self._breakers: dict[str, Breaker] = {}
        self.deadline = float("inf")
        self._deadline_at = float("inf")
        self.deadline_hit = False
        self._pass_at = 0.0  # the pass's time, on the passes' clock (seconds)
        self.log = logs.get()

    def breaker(self, endpoint: str) -> Breaker:
        found = self._breakers.get(endpoint)
        if found is None:
            found = self._breakers[endpoint] = Breaker(endpoint)
        return found

    def start_pass(self, deadline: float, down: Iterable[str] = (), *, now: float) -> None:
        """A new pass at ``now`` (seconds on the passes' clock): every open breaker whose probe
        time has come (and any the ledger remembers as ``down`` that this process has not
        seen) is half-open, its next call a probe; the others stay open."""
        for endpoint in down:
            if endpoint not in self._breakers:
                self.breaker(endpoint).state = "open"
        for b in self._breakers.values():
            b.was_down = b.down
            if b.down and now >= b.probe_at:
                b.state = "half-open"
            b.failures, b.skipped, b.failed = 0, 0, []
        self._pass_at = now
        self.log = logs.get()
        self.deadline = deadline
        self._deadline_at = self._monotonic() + deadline
        self.deadline_hit = False

    def call(
        self,
        endpoint: str,
        fn: Callable[[], T],
        refuse: Callable[[str, str], CadenceError],
        failed: Callable[[T], Sequence[BaseException]] | None = None,
    ) -> T:
        """``fn()`` through ``endpoint``'s breaker; ``refuse(endpoint, line)`` makes the error
        raised instead of calling when the breaker is open or the deadline has passed.
        ``failed(result)``: the failures a batched call's result holds when they are the
        endpoint's (empty when it answered); they count as one failure, and the result is
        returned all the same."""
        b = self.breaker(endpoint)
        if b.down:
            b.skipped += 1
            raise refuse(endpoint, b.line())
        if self._monotonic() > self._deadline_at:
            if not self.deadline_hit:
                self.deadline_hit = True
                self.log.error("pass deadline reached; the rest waits for the next pass",
                               seconds=self.deadline)  # fmt: skip
            raise refuse(endpoint, self.deadline_line())
        scope = pass_deadline.Deadline(
            self._deadline_at, self._monotonic, retries=b.state != "half-open"
        )
        try:
            with pass_deadline.within(scope):
                result = fn()
        except BaseException as exc:
            if not _is_failure(exc):
                self._answered(b)
                raise
            self._failed(b, [exc], scope.cut)
            raise
        failures = failed(result) if failed is not None else ()
        if failures:
            self._failed(b, failures, scope.cut)
        else:
            self._answered(b)
        return result

    def _failed(self, b: Breaker, failures: Sequence[BaseException], cut: bool) -> None:
        """One failure of ``b``'s endpoint (``failures``: what it raised, or the items of a
        batch that all failed)."""
        b.failures += 1
        b.last_error = str(failures[0])
        b.failed.extend(str(exc) for exc in failures)
        if b.state == "half-open" or cut or b.failures >= self.threshold:
            b.state = "open"
            b.cut = cut
            b.streak += 1
            b.probe_at = self._pass_at + probe_after(b.streak)
            self.log.error(
                "endpoint not answering; its remaining work this pass is skipped",
                endpoint=b.endpoint, failures=b.failures, error=b.last_error,
                deadline_cut=cut, next_probe_seconds=probe_after(b.streak),
            )  # fmt: skip

    def _answered(self, b: Breaker) -> None:
        if b.state == "half-open":
            b.state = "closed"
            b.streak, b.cut = 0, False
            self.log.info("endpoint answering again", endpoint=b.endpoint)
        b.failures = 0

    def next_probe(self) -> float | None:
        """When (on the passes' clock) the earliest open breaker's probe is due; None when
        none is open."""
        return min((b.probe_at for b in self._breakers.values() if b.down), default=None)

    def deadline_line(self) -> str:
        return (
            f"the pass ran into its deadline ({self.deadline:g} s, from interval_seconds); "
            "the rest of its work waits for the next pass"
        )

    def down(self) -> list[Breaker]:
        return [b for b in self._breakers.values() if b.down]

    def opened(self) -> list[str]:
        """Endpoints that went down in this pass (up at the end of the last one)."""
        return [b.endpoint for b in self.down() if not b.was_down]

    def closed(self) -> list[str]:
        """Endpoints that came back in this pass."""
        return [b.endpoint for b in self._breakers.values() if b.was_down and b.state == "closed"]

    def untested(self) -> list[Breaker]:
        """Down at the end of the last pass and not called in this one: still down, as far as
        anyone knows."""
        return [b for b in self._breakers.values() if b.state == "half-open"]

    # -- the ledger's memory of them, across processes ---------------------------------------

    @staticmethod
    def remembered(ledger: Ledger) -> list[str]:
        try:
            value = json.loads(ledger.get_flag(FLAG) or "[]")
        except ValueError:
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    def remember(self, ledger: Ledger) -> None:
        down = sorted(b.endpoint for b in self.down() + self.untested())
        if down != self.remembered(ledger):
            with ledger.transaction():
                ledger.set_flag(FLAG, json.dumps(down) if down else None)


def _all_failed(outcomes: Sequence[object]) -> list[BaseException]:
    """A batch's item failures when every item failed as the endpoint not answering (see the
    module docstring); none when any item was answered, however it was answered."""
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if outcomes and len(failures) == len(outcomes) and all(map(_is_failure, failures)):
        return failures
    return []


class GuardedProvider:
    """A ``CalendarProvider`` whose every call goes through one endpoint's breaker."""

    def __init__(self, inner: CalendarProvider, endpoint: str, breakers: Breakers) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.breakers = breakers
        self.capabilities = inner.capabilities

    def _call(self, fn: Callable[[], T]) -> T:
        return self.breakers.call(self.endpoint, fn, EndpointDown)

    def ensure_calendar(self, manager: str) -> None:
        self._call(lambda: self.inner.ensure_calendar(manager))

    def changes(self, manager: str, token: str | None) -> Changes:
        return self._call(lambda: self.inner.changes(manager, token))

    def changes_many(
        self, tokens: Mapping[str, str | None]
    ) -> Mapping[str, Changes | ProviderError]:
        if not self.capabilities.batches:  # one call a manager: each through the breaker
            return each_changes(self, tokens)
        try:
            return self.breakers.call(
                self.endpoint, lambda: self.inner.changes_many(tokens), EndpointDown,
                lambda found: _all_failed(list(found.values())),
            )  # fmt: skip
        except ProviderError as exc:
            return dict.fromkeys(tokens, exc)

    def apply(self, writes: Sequence[Write]) -> list[ProviderError | None]:
        if not self.capabilities.batches:
            return one_by_one(self, writes)
        try:
            return self.breakers.call(
                self.endpoint, lambda: self.inner.apply(writes), EndpointDown, _all_failed
            )
        except ProviderError as exc:
            return [exc] * len(writes)

    def create_series(self, manager: str, series: SeriesSpec) -> None:
        self._call(lambda: self.inner.create_series(manager, series))

    def end_series(self, manager: str, uid: str, until: date) -> None:
        self._call(lambda: self.inner.end_series(manager, uid, until))

    def write_agendas(
        self,
        manager: str,
        uid: str,
        master_block: str | None,
        occurrence_blocks: Mapping[datetime, str],
    ) -> None:
        self._call(lambda: self.inner.write_agendas(manager, uid, master_block, occurrence_blocks))

    def set_attendees(
        self,
        manager: str,
        uid: str,
        attendees: Mapping[datetime | None, Sequence[Attendee]],
    ) -> None:
        self._call(lambda: self.inner.set_attendees(manager, uid, attendees))

    def free_busy(
        self, emails: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, Sequence[tuple[datetime, datetime]]]:
        return self._call(lambda: self.inner.free_busy(emails, start, end))

    def working_hours(self, managers: Sequence[str]) -> Mapping[str, CalendarHours | None]:
        return self._call(lambda: self.inner.working_hours(managers))

    def diagnose(self, manager: str) -> list[Check]:
        return self.inner.diagnose(manager)


class GuardedMailer:
    """A ``Mailer`` whose sends go through one endpoint's breaker."""

    def __init__(self, inner: Mailer, endpoint: str, breakers: Breakers) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.breakers = breakers

    def send(self, message: EmailMessage) -> None:
        self.breakers.call(self.endpoint, lambda: self.inner.send(message), MailEndpointDown)

    def diagnose(self) -> list[Check]:
        return self.inner.diagnose()
