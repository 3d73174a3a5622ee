"""What the planner reads (the ledger, as values) and what it returns: actions for the
executor to perform, alarms for people. Plain frozen values, so a plan can be printed, compared
and tested without any I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from daemon.core.agenda import Blocks
from daemon.core.model import Manager, Rep, Stage, StageRule
from daemon.core.observed import SeriesSpec
from daemon.core.plan import SeriesPlan

RECAP_DEADLINE = timedelta(hours=24)  # a recap later than this is dropped (SPEC)
LOOKBACK = timedelta(days=8)  # how far back cancellations, commitments and recaps are read
LOOKAHEAD = timedelta(days=28)  # how far ahead cancellations are read
# Emails about the occurrences a pass reads were all sent inside this window (a cancellation
# warning up to LOOKAHEAD ahead, a pre-read up to a week ahead): older ledger rows are history.
EMAILS_WINDOW = LOOKBACK + LOOKAHEAD + timedelta(days=7)


class Kind:
    PREREAD = "preread"
    RECAP = "recap"
    CANCELLATION = "cancellation"
    WEEK11_SKIP = "week11_skip"
    RATE_WARNING = "rate_warning"
    SERIES_RESTORED = "series_restored"


# --- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerSeries:
    uid: str
    rep: str
    manager: str
    stage: str
    fingerprint: str
    start: datetime
    rrule: str  # as written, without UNTIL: its BYDAY names the slot's days
    until: date | None
    state: (
        str  # "pending" (written to the ledger, maybe not yet on the calendar) | "active" | "ended"
    )


@dataclass(frozen=True)
class LedgerView:
    series: tuple[LedgerSeries, ...] = ()
    # rep -> (original start, commitment) read back after meetings, any order
    commitments: Mapping[str, tuple[tuple[datetime, str], ...]] = field(default_factory=dict)
    # (occurrence key, ledger kind) sent since ``now - EMAILS_WINDOW``; the executor checks the
    # whole ledger again before sending, so this view only needs to be complete for the window.
    emails_sent: frozenset[tuple[str, str]] = frozenset()
    cancellations: frozenset[str] = frozenset()  # keys recorded, of occurrences from LOOKBACK on


@dataclass(frozen=True)
class AgendaView:
    """Everything an agenda template needs about one meeting."""

    rep: Rep
    manager: Manager
    stage: Stage
    rule: StageRule
    start: datetime
    duration_minutes: int
    blocks: Blocks
    template: str
    week_of_quarter: int
    week11: bool
    last_commitment: str | None


RenderAgenda = Callable[[AgendaView], str]


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateSeries:
    manager: str
    rep: str
    stage: str
    fingerprint: str
    spec: SeriesSpec
    restore: bool = False  # a person deleted it; the manager is told


@dataclass(frozen=True)
class EndSeries:
    """Let a series meet up to ``until``. ``write``: the calendar still runs past that day;
    ``retire``: the series is no longer wanted (else its stage's end is only set ahead)."""

    manager: str
    rep: str
    uid: str
    until: date
    reason: str
    write: bool = True
    retire: bool = True


@dataclass(frozen=True)
class WriteAgendas:
    manager: str
    rep: str
    uid: str
    master_block: str | None
    blocks: Mapping[datetime, str]


@dataclass(frozen=True)
class SendEmail:
    kind: str  # X-Cadence-Kind
    ledger_kind: str  # the email ledger's kind: preread goes twice, once per reader
    occurrence: str  # X-Cadence-Occurrence
    template: str  # the renderer's template kind
    to: tuple[str, ...]
    cc: tuple[str, ...]
    context: Mapping[str, Any]
    rep: str
    manager: str


@dataclass(frozen=True)
class RecordCancellation:
    uid: str
    occurrence: str
    original_start: datetime
    rep: str
    manager: str
    reason: str
    week_of_quarter: int
    week11: bool


@dataclass(frozen=True)
class RecordCommitment:
    uid: str
    rep: str
    original_start: datetime
    text: str


@dataclass(frozen=True)
class Alarm:
    """The safety valve tripped: nothing is written for this manager until a person looks."""

    manager: str
    message: str


Action = CreateSeries | EndSeries | WriteAgendas | SendEmail | RecordCancellation | RecordCommitment


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    alarms: tuple[Alarm, ...]
    desired: tuple[SeriesPlan, ...]
