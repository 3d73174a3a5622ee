"""The metrics source contract: weekly values per rep and metric, read for all reps at once.

A source never decides when it is read or what the agenda says: ``daemon.metrics.cache`` reads
it when its data may have changed and keeps the last good read in the ledger; the pure core
(``daemon.core.metrics``) does the arithmetic. Problems leave a source only as
``MetricsUnusable`` (this data cannot be used; keep the last good) or ``MetricsUnavailable``
(try again later).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import NamedTuple, Protocol, runtime_checkable

from daemon.core.deals import Opportunities, Opportunity
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


@runtime_checkable
class OpportunitiesSource(Protocol):
    """The optional part of the contract, for the pipeline review's agenda: a CRM source that
    also knows each rep's open opportunities. A source without it (or answering None) leaves
    the agenda asking reps to bring their deals."""

    def open_opportunities(self, reps: frozenset[str]) -> Sequence[Opportunity] | None:
        """The open opportunities owned by the reps named, read for all of them at once; None
        when this source has no opportunities to offer."""


def open_opportunities(source: object, reps: frozenset[str]) -> Opportunities | None:
    """Each rep's open opportunities from ``source``, or None when it offers none."""
    if not isinstance(source, OpportunitiesSource):
        return None
    found = source.open_opportunities(reps)
    if found is None:
        return None
    by_rep: dict[str, list[Opportunity]] = {rep: [] for rep in reps}
    for deal in found:
        if deal.rep in by_rep:
            by_rep[deal.rep].append(deal)
    return {rep: tuple(deals) for rep, deals in by_rep.items()}
