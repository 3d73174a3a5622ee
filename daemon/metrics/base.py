"""The metrics source contract: weekly values per rep and metric, read for all reps at once.

A read gives a ``WeeklyTable``: the values in one flat array of floats, a row of weeks per rep
and metric, rather than an object per value. A big org's export is most of a million values; the
daemon only ever asks for one rep's series at a time, and the ledger keeps the table as one blob.

A source never decides when it is read or what the agenda says: ``daemon.metrics.cache`` reads
it when its data may have changed and keeps the last good read in the ledger; the pure core
(``daemon.core.metrics``) does the arithmetic. Problems leave a source only as
``MetricsUnusable`` (this data cannot be used; keep the last good) or ``MetricsUnavailable``
(try again later).
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


class Row(NamedTuple):  # one weekly value, as a CRM source works them out
    rep: str  # lower-case email
    metric: Metric
    week: date  # the week's Monday
    value: float


METRICS = tuple(Metric)  # a metric's place in each rep's block of the table
ROW = {metric: i for i, metric in enumerate(METRICS)}
ABSENT = -1.0  # no value for that week: a value is never negative


class WeeklyTable(Mapping[tuple[str, Metric], Mapping[date, float]]):
    """Weekly values by (rep email, metric), then week Monday: the core's ``Weekly.values``.

    Each rep has a block of ``len(METRICS)`` rows of ``stride`` slots, one slot per week named
    in ``weeks`` (in the order met, not by date); a slot without a value holds ``ABSENT``.
    ``through`` is the last week the source had figures for, anyone's.
    """

    def __init__(
        self,
        reps: Sequence[str],
        weeks: Sequence[date],
        stride: int,
        grid: array[float],
        through: date | None,
    ) -> None:
        if len(grid) != len(reps) * len(METRICS) * stride or len(weeks) > stride:
            raise ValueError("a metrics table whose grid does not match its reps and weeks")
        self.weeks = tuple(weeks)
        self.stride = stride
        self.grid = grid
        self.through = through
        block = len(METRICS) * stride
        self._base = {rep: i * block for i, rep in enumerate(reps)}
        self._asked: dict[tuple[str, Metric], dict[date, float]] = {}

    @property
    def reps(self) -> tuple[str, ...]:
        return tuple(self._base)

    @classmethod
    def from_rows(
        cls, rows: Iterable[Row], reps: frozenset[str] | None, through: date | None
    ) -> WeeklyTable:
        """The table of ``rows`` for ``reps`` (None: everyone); a later row for the same rep,
        metric and week wins."""
        grid = Grid()
        for rep, metric, week, value in rows:
            if reps is None or rep in reps:
                grid.put(rep, metric, week, value)
        return grid.table(through)

    def _series(self, rep: str, metric: Metric) -> dict[date, float]:
        base = self._base.get(rep)
        if base is None:
            return {}
        start = base + ROW[metric] * self.stride
        row = self.grid[start : start + len(self.weeks)]
        return {week: value for week, value in zip(self.weeks, row, strict=True) if value != ABSENT}

    def __getitem__(self, key: tuple[str, Metric]) -> Mapping[date, float]:
        # A pass asks for the same rep's series for each of its meetings, pass after pass.
        series = self._asked.get(key)
        if series is None:
            series = self._asked[key] = self._series(*key)
        if not series:
            raise KeyError(key)
        return series

    def __iter__(self) -> Iterator[tuple[str, Metric]]:
        return (key for key in ((r, m) for r in self._base for m in METRICS) if self._series(*key))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def rows(self) -> Iterator[Row]:
        """Every value as a ``Row``, by rep, metric and week (for tests and small reads)."""
        for rep, metric in self:
            for week, value in sorted(self[rep, metric].items()):
                yield Row(rep, metric, week, value)

    def to_bytes(self) -> bytes:
        """One blob for the ledger: a JSON line naming reps, weeks and stride, then the grid's
        doubles, little-endian."""
        head = {"reps": list(self._base), "weeks": [w.isoformat() for w in self.weeks],
                "stride": self.stride,
                "through": self.through.isoformat() if self.through else None}  # fmt: skip
        grid = self.grid
        if sys.byteorder == "big":
            grid = array("d", grid)
            grid.byteswap()
        return json.dumps(head).encode() + b"\n" + grid.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> WeeklyTable:
        head_bytes, _, body = blob.partition(b"\n")
        head = json.loads(head_bytes)
        grid = array("d")
        grid.frombytes(body)
        if sys.byteorder == "big":
            grid.byteswap()
        through = date.fromisoformat(head["through"]) if head["through"] else None
        weeks = [date.fromisoformat(w) for w in head["weeks"]]
        return cls(head["reps"], weeks, int(head["stride"]), grid, through)


class Grid:
    """A ``WeeklyTable`` being filled: reps and weeks are added as they are met, the stride
    doubling when the weeks outgrow it (an export spans a few months: it seldom does)."""

    def __init__(self) -> None:
        self.stride = 16
        self.grid: array[float] = array("d")
        self.reps: dict[str, int] = {}  # rep -> the start of its block in ``grid``
        self.weeks: dict[date, int] = {}  # week -> its slot
        self.blank = array("d", [ABSENT]) * (len(METRICS) * self.stride)

    def rep(self, rep: str) -> int:
        base = self.reps.get(rep)
        if base is None:
            base = self.reps[rep] = len(self.grid)
            self.grid.extend(self.blank)
        return base

    def week(self, week: date) -> int:
        slot = self.weeks.get(week)
        if slot is None:
            slot = self.weeks[week] = len(self.weeks)
            if slot == self.stride:
                self._widen()
        return slot

    def _widen(self) -> None:
        old, stride = self.stride, self.stride * 2
        grid = array("d", [ABSENT]) * (len(self.grid) // old * stride)
        for row in range(len(self.grid) // old):
            grid[row * stride : row * stride + old] = self.grid[row * old : (row + 1) * old]
        self.grid, self.stride = grid, stride
        self.reps = {rep: base // old * stride for rep, base in self.reps.items()}
        self.blank = array("d", [ABSENT]) * (len(METRICS) * stride)

    def put(self, rep: str, metric: Metric, week: date, value: float) -> None:
        slot = self.week(week)
        self.grid[self.rep(rep) + ROW[metric] * self.stride + slot] = value

    def filled(self) -> int:
        return len(self.grid) - self.grid.count(ABSENT)

    def table(self, through: date | None, reps: frozenset[str] | None = None) -> WeeklyTable:
        """The table, of ``reps`` only when given: the rest of the grid is dropped."""
        if reps is None:
            return WeeklyTable(list(self.reps), list(self.weeks), self.stride, self.grid, through)
        block = len(METRICS) * self.stride
        kept = [rep for rep in self.reps if rep in reps]
        grid = array("d")
        for rep in kept:
            grid.extend(self.grid[self.reps[rep] : self.reps[rep] + block])
        return WeeklyTable(kept, list(self.weeks), self.stride, grid, through)


class MetricsSource(Protocol):
    label: str  # how people see it named in the agenda: "metrics.csv", "Salesforce"
    # Metrics it cannot give, with why (said in the agenda and by ``cadence doctor``).
    cannot: Mapping[Metric, str]

    def version(self) -> str | None:
        """A token that changes whenever the data may have (a file's digest); None when only
        time tells (a CRM: read every ``refresh_hours``)."""

    def read(self, reps: frozenset[str], quotas: Mapping[str, float]) -> WeeklyTable:
        """Every weekly value of the reps named, read for all at once; the whole source is
        validated, ``MetricsUnusable`` raised when any of it is wrong. ``quotas`` holds the
        ``quarterly_quota`` of the reps who have one, for a source that works out pipeline
        coverage itself."""


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
