"""The metrics source contract: weekly values per rep and metric, read for all reps at once.

A source never decides when it is read or what the agenda says: ``daemon.metrics.cache`` reads
it when its data may have changed and keeps the last good read in the ledger; the pure core
(``daemon.core.metrics``) does the arithmetic. Problems leave a source only as
``MetricsUnusable`` (this data cannot be used; keep the last good) or ``MetricsUnavailable``
(try again later).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import NamedTuple, Protocol

from daemon.core.model import Metric
from daemon.errors import CadenceError


class MetricsUnusable(CadenceError):
    """The data are wrong (a bad row, a missing column); ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class MetricsUnavailable(CadenceError):
    """The source could not be reached or read just now."""


class Row(NamedTuple):  # a named tuple: an export of everyone is a million of them
    rep: str  # lower-case email
    metric: Metric
    week: date  # the week's Monday
    value: float


class Opportunity(NamedTuple):
    """An open deal, for the pipeline review's agenda."""

    rep: str  # lower-case email of its owner
    name: str
    amount: float | None
    stage: str
    close_date: date


class MetricsSource(Protocol):
    label: str  # how people see it named in the agenda: "metrics.csv", "Salesforce"
    # Metrics it cannot give, with why (said in the agenda and by ``cadence doctor``).
    cannot: Mapping[Metric, str]

    def version(self) -> str | None:
        """A token that changes whenever the data may have (a file's digest); None when only
        time tells (a CRM: read every ``refresh_hours``)."""

    def rows(self, reps: frozenset[str]) -> Iterator[Row]:
        """Every weekly value of the reps named, streamed; the whole source is validated, and
        ``MetricsUnusable`` raised at the end when any of it is wrong."""

    def through(self) -> date | None:
        """After ``rows``: the last week the source had figures for, anyone's."""


class OpportunitySource(Protocol):
    """What a CRM source gives besides the numbers (a CSV of weekly values does not)."""

    def opportunities(self, reps: frozenset[str]) -> Iterator[Opportunity]:
        """The open opportunities the reps own, each rep's closing soonest first."""
