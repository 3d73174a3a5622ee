"""What the planner reads (the ledger, as values) and what it returns: actions for the
executor to perform, alarms for people. Plain frozen values, so a plan can be printed, compared
and tested without any I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from daemon.core.agenda import Blocks
from daemon.core.deals import Opportunities
from daemon.core.metrics import Number, Weekly
from daemon.core.model import Manager, Rep, Stage, StageRule
from daemon.core.observed import Attendee, SeriesSpec
from daemon.core.plan import SeriesPlan
from daemon.core.prep import Grant

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
    PREREAD_MISSING = "preread_missing"


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
    timezone: str | None = None  # the series' zone (the rates expand its rule in it)


class Outcome(NamedTuple):
    """A cancellation or a reschedule the ledger remembers, by the occurrence's original start.
    The manager is the series' own, so a rep who changes manager leaves their history behind.
    A named tuple: the report for a big org reads tens of thousands, made in a fifth of the time
    a frozen dataclass takes."""

    uid: str
    original_start: datetime
    rep: str
    manager: str
    cancelled: bool  # else moved inside its week
    week11: bool = False


@dataclass(frozen=True)
class RateAlert:
    """The band a manager was last told about for one subject (``manager:<email>`` or
    ``rep:<email>``), and how many rises into a higher band there have been: the key of each
    rise's email, so a retried email is the same email; and the pass instant of that change."""

    band: str
    crossings: int
    changed_at: datetime | None = None


@dataclass(frozen=True)
class LedgerView:
    series: tuple[LedgerSeries, ...] = ()  # the 1:1 series
    reviews: tuple[LedgerSeries, ...] = ()  # the pipeline-review series (their own planner)
    # rep -> (original start, commitment) read back after meetings, any order
    commitments: Mapping[str, tuple[tuple[datetime, str], ...]] = field(default_factory=dict)
    # (occurrence key, ledger kind) sent since ``now - EMAILS_WINDOW``; the executor checks the
    # whole ledger again before sending, so this view only needs to be complete for the window.
    emails_sent: frozenset[tuple[str, str]] = frozenset()
    cancellations: frozenset[str] = frozenset()  # keys recorded, of occurrences from LOOKBACK on
    # cancellations and reschedules of occurrences from the rate window's start on
    outcomes: tuple[Outcome, ...] = ()
    rate_alerts: Mapping[str, RateAlert] = field(default_factory=dict)
    # occurrence key -> role ("rep" | "manager") -> the lines filed through the pre-read form,
    # for occurrences from LOOKBACK on
    prereads: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # occurrence key -> when the rep's pre-read email (with their form link) went
    prereads_asked: Mapping[str, datetime] = field(default_factory=dict)
    # the metrics source's weekly values as cached in the ledger; None: no source configured
    metrics: Weekly | None = None
    # each rep's open opportunities from a CRM source; None: no source offers them
    opportunities: Opportunities | None = None
    # occurrence keys of pipeline reviews whose cancellation or move is already recorded
    review_outcomes: frozenset[str] = frozenset()
    # manager -> (reviews cancelled, reviews moved) since the rate window's start: the report
    # shows them apart from the 1:1s
    review_tally: Mapping[str, tuple[int, int]] = field(default_factory=dict)


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
    # what the rep and the manager filed for this occurrence (empty: nothing yet)
    preread_rep: tuple[str, ...] = ()
    preread_manager: tuple[str, ...] = ()
    number: Number | None = None  # None: no metrics source, or the series' master block
    metrics_on: bool = False


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
class SetAttendees:
    """Who is invited to a series (key None) and to some of its occurrences (original start):
    a team's pipeline review follows the roster, and the VP joins one review a month."""

    manager: str
    rep: str
    uid: str
    attendees: Mapping[datetime | None, tuple[Attendee, ...]]


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
    # a pre-read with ``prep`` configured: the executor makes the reader's form link
    grant: Grant | None = None


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
class RecordReschedule:
    uid: str
    occurrence: str
    original_start: datetime
    start: datetime
    rep: str
    manager: str


@dataclass(frozen=True)
class RecordReviewOutcome:
    """A pipeline review cancelled, declined or moved: its own kind in the ledger, never a 1:1
    cancellation (no warning, not in the rates). ``subject`` is the rep, or ``team:<manager>``."""

    uid: str
    occurrence: str
    original_start: datetime
    manager: str
    subject: str
    status: str  # "cancelled" | "moved"
    reason: str

    @property
    def rep(self) -> str:
        return self.subject


@dataclass(frozen=True)
class RecordRateBand:
    """Remember the band told (or fallen back to, which re-arms the warning). When it goes with
    an email, ``email`` is that email's (occurrence, ledger kind): the band is only remembered
    once the email went, so an email that could not go stays due."""

    subject: str
    band: str
    crossings: int
    rep: str
    manager: str
    email: tuple[str, str] | None = None


@dataclass(frozen=True)
class Alarm:
    """The safety valve tripped: nothing is written for this manager until a person looks."""

    manager: str
    message: str


Action = (
    CreateSeries | EndSeries | WriteAgendas | SetAttendees | SendEmail | RecordCancellation
    | RecordCommitment | RecordReschedule | RecordRateBand | RecordReviewOutcome
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    alarms: tuple[Alarm, ...]
    desired: tuple[SeriesPlan, ...]
    # manager -> cancellation rate over the rate window (managers with a started 1:1 only)
    manager_rates: Mapping[str, float] = field(default_factory=dict)
