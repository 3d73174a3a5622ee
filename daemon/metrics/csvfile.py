"""The embedded default metrics source: a CSV export from any CRM or BI tool.

``rep,week,metric,value``: ``rep`` an email, ``week`` that week's Monday, ``value`` a decimal
(fractions for percentages). Rows for people not on the roster are validated and dropped.
Problems are named like the roster's: file, line, field.

A big org's export is most of a million rows of a few thousand reps, a dozen weeks and five
metrics, so the file is first read a column at a time, a megabyte of it at once: each distinct
rep, week and metric is checked once, the values are parsed by ``float``, a rep's rows listed
together in an order met before are written to the table as a few slices (others a value at a
time), and a row given twice shows as fewer values in the table than rows read. Anything that
reading does not expect (a bad cell, quoting it cannot split, a short row) sends the file to the
careful reading, row by row, which says what is wrong and where, or reads what is right.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from itertools import chain, islice, repeat
from operator import add, setitem
from pathlib import Path
from struct import pack

from daemon.core.model import Metric
from daemon.metrics.base import ROW, Grid, MetricsUnusable, Row, WeeklyTable

COLUMNS = ("rep", "week", "metric", "value")
MAX_PROBLEMS = 50  # a wholly wrong file is named by its first problems, not a million lines
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_METRICS = {m.value: m for m in Metric}
CHUNK = 1 << 20  # bytes of the file read as columns at once
CSV_CHUNK = 20_000  # rows, when the file has quoted cells


class _Irregular(Exception):
    """The column-at-a-time reading met something it does not handle."""


class _Quoted(_Irregular):
    """A quoted cell: the file is read as columns again, split by the ``csv`` module."""


class CsvSource:
    cannot: Mapping[Metric, str] = {}  # an export can hold any metric

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = path.name
        self._through: date | None = None

    def version(self) -> str:
        """The file's SHA-256: a touched file with the same bytes is not read again."""
        digest = hashlib.sha256()
        try:
            with self.path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise MetricsUnusable([f"{self.path}: cannot read: {exc.strerror or exc}"]) from exc
        return digest.hexdigest()

    def open_opportunities(self, reps: frozenset[str]) -> None:
        """A weekly-values export holds no deals: the review agenda asks reps for theirs."""
        return None

    def read(
        self, reps: frozenset[str] | None, quotas: Mapping[str, float] | None = None
    ) -> WeeklyTable:
        """The values of ``reps`` (None: everyone's), after checking every row of the file. An
        export carries its own pipeline coverage: ``quotas`` play no part."""
        try:
            try:
                return self._columns(reps, quoted=False)
            except _Quoted:
                return self._columns(reps, quoted=True)
        except _Irregular:
            pass
        grid = Grid()
        for rep, metric, week, value in self._rows(reps):
            grid.put(rep, metric, week, value)
        return grid.table(self._through)

    def _columns(self, reps: frozenset[str] | None, quoted: bool) -> WeeklyTable:
        """The quick reading; raises ``_Irregular`` at anything it does not expect."""
        table = _Table()
        for cells, width, (ri, wi, mi, vi) in self._chunks(quoted):
            try:
                values = list(map(float, cells[vi::width]))
            except ValueError:
                raise _Irregular from None
            if values and (min(values) < 0 or not math.isfinite(sum(values))):
                raise _Irregular  # a negative, an infinity or a NaN (or a sum too big)
            table.put(cells[ri::width], cells[wi::width], cells[mi::width], values)
        grid = table.grid
        if grid.filled() != table.count:
            raise _Irregular  # a second row for the same rep, metric and week
        return grid.table(max(grid.weeks, default=None), reps)

    def _chunks(self, quoted: bool) -> Iterator[tuple[list[str], int, tuple[int, ...]]]:
        """The file's cells, a chunk of whole rows at a time, with the row's width and where
        the rep, week, metric and value are in it."""
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as handle:
                if quoted:
                    yield from _csv_chunks(handle)
                    return
                first = handle.readline()
                if '"' in first:
                    raise _Quoted
                header = [h.strip().lower() for h in first.rstrip("\r\n").split(",")]
                if any(c not in header for c in COLUMNS):
                    raise _Irregular
                width = len(header)
                where = tuple(header.index(c) for c in COLUMNS)
                rest = ""
                while block := handle.read(CHUNK):
                    cut = block.rfind("\n") + 1
                    if not cut:  # a line longer than a chunk
                        rest += block
                        continue
                    text, rest = rest + block[:cut], block[cut:]
                    if cells := _cells(text, width):
                        yield cells, width, where
                if rest and (cells := _cells(rest + "\n", width)):
                    yield cells, width, where
        except (OSError, UnicodeDecodeError, csv.Error):
            raise _Irregular from None

    def _rows(self, reps: frozenset[str] | None) -> Iterator[Row]:
        """The careful reading: the rows of ``reps``, after checking every row of the file,
        each problem named by line and field; ``_through`` set at the end."""
        problems: list[str] = []
        extra = 0
        self._through = None

        def problem(line: int, rep: str, text: str) -> None:
            nonlocal extra
            if len(problems) < MAX_PROBLEMS:
                who = f" {rep}:" if rep else ""
                problems.append(f"{self.path}:{line}:{who} {text}")
            else:
                extra += 1

        try:
            handle = self.path.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise MetricsUnusable([f"{self.path}: cannot read: {exc.strerror or exc}"]) from exc
        with handle:
            reader = csv.reader(handle)
            try:
                header = [h.strip().lower() for h in next(reader)]
            except StopIteration:
                raise MetricsUnusable([f"{self.path}:1: empty file, expected the header "
                                       f"{','.join(COLUMNS)}"]) from None  # fmt: skip
            except (csv.Error, UnicodeDecodeError) as exc:
                raise MetricsUnusable([f"{self.path}:1: {exc}"]) from None
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise MetricsUnusable(
                    [f"{self.path}:1: header: missing column {', '.join(missing)} "
                     f"(expected {','.join(COLUMNS)})"]
                )  # fmt: skip
            ri, wi, mi, vi = (header.index(c) for c in COLUMNS)
            width = len(header)
            # A file repeats few distinct reps, weeks and metrics: each is checked once.
            reps_seen: dict[str, str | None] = {}
            weeks: dict[str, date] = {}
            bad_weeks: dict[str, str] = {}  # as written -> what is wrong with it
            numbers: dict[date, int] = {}  # a week's number, counted from the first week met
            # Weeks already given per (rep, metric), as bits of the week's number: small ints,
            # since an export spans months, not decades.
            given: dict[tuple[str, Metric], int] = {}
            old: set[tuple[str, Metric, date]] = set()
            first: int | None = None
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError) as exc:
                    problem(reader.line_num, "", str(exc))
                    continue
                if len(cells) != width:
                    if any(c.strip() for c in cells):
                        problem(reader.line_num, "", f"{len(cells)} cells, the header has {width}")
                    continue
                raw = cells[ri]
                rep = reps_seen.get(raw, "")
                if rep == "":
                    text = raw.strip().lower()
                    rep = reps_seen[raw] = text if _EMAIL.fullmatch(text) else None
                week = weeks.get(cells[wi])
                if week is None and cells[wi] not in bad_weeks:
                    checked = _week(cells[wi].strip())
                    if isinstance(checked, str):
                        bad_weeks[cells[wi]] = checked
                    else:
                        week = weeks[cells[wi]] = checked
                        if first is None:
                            first = week.toordinal() // 7 - 520  # ten years back
                        numbers[week] = week.toordinal() // 7 - first
                metric = _METRICS.get(cells[mi])
                if metric is None:
                    metric = _METRICS.get(cells[mi].strip().lower())
                try:
                    value: float | None = float(cells[vi])
                except ValueError:
                    value = None
                if value is not None and not 0 <= value < math.inf:
                    value = None
                if rep is None or week is None or metric is None or value is None:
                    if not any(c.strip() for c in cells):
                        continue  # a row of empty cells, as spreadsheets export
                    line, who = reader.line_num, rep or ""
                    if rep is None:
                        problem(line, "", f"rep: not an email address: {raw.strip().lower()!r}")
                    if week is None:
                        problem(line, who, f"week: {bad_weeks[cells[wi]]}")
                    if metric is None:
                        problem(line, who, f"metric: unknown metric {cells[mi].strip()!r}, "
                                           f"expected one of {', '.join(_METRICS)}")  # fmt: skip
                    if value is None:
                        problem(line, who, f"value: {_value(cells[vi].strip())}")
                    continue
                key = (rep, metric)
                index = numbers[week]
                if index >= 0:
                    bits = given.get(key, 0)
                    duplicate = bits >> index & 1
                    given[key] = bits | 1 << index
                else:  # a week long before the first, kept apart so that the bits stay short
                    duplicate = (rep, metric, week) in old
                    old.add((rep, metric, week))
                if duplicate:
                    problem(reader.line_num, rep,
                            f"a second row for {metric.value} in the week of {week}")  # fmt: skip
                    continue
                if problems or (reps is not None and rep not in reps):
                    continue
                yield Row(rep, metric, week, value)
        if problems:
            if extra:
                problems.append(f"{self.path}: and {extra} more problems")
            raise MetricsUnusable(problems)
        # Every row was good: each week named in the file had a figure.
        self._through = max(numbers, default=None)


RUN = 8  # rows of one rep in a row, on average, for a chunk to be written a rep at a time
SHAPES = 8  # the shapes of runs kept, latest first
Piece = tuple[int, int, int, int, int, bool]  # rows first, stop, step -> block low, high; reversed


class _Shape:
    """The weeks and metrics of a run of one rep's rows, as written, and where each row goes
    in the rep's block; the slices that write the run, once the shape is met again."""

    __slots__ = ("key", "offsets", "pieces", "planned")

    def __init__(self, key: str, offsets: list[int]) -> None:
        self.key, self.offsets = key, offsets  # key: the weeks, then the metrics, joined
        self.pieces: list[Piece] | None = None
        self.planned = False

    def plan(self) -> None:
        """Cut the rows into slices of rows, a fixed step apart, that go to consecutive slots;
        none when the slices would hold fewer than four rows each (rows in no order)."""
        self.planned = True
        offsets = self.offsets
        rows = sorted(range(len(offsets)), key=offsets.__getitem__)
        pieces: list[Piece] = []
        i = 0
        while i < len(rows):
            j, step = i + 1, 0
            if j < len(rows) and offsets[rows[j]] == offsets[rows[i]] + 1:
                step = rows[j] - rows[i]
                while (j < len(rows) and offsets[rows[j]] == offsets[rows[j - 1]] + 1
                       and rows[j] - rows[j - 1] == step):  # fmt: skip
                    j += 1
            low, high = offsets[rows[i]], offsets[rows[j - 1]] + 1
            if step >= 0:
                pieces.append((rows[i], rows[j - 1] + 1, step or 1, low, high, False))
            else:  # later rows to earlier slots: newest week first
                pieces.append((rows[j - 1], rows[i] + 1, -step, low, high, True))
            i = j
        if len(pieces) * 4 <= len(rows):
            self.pieces = pieces


class _Table:
    """The table the quick reading fills: what each rep, week and metric as written stands
    for, each checked once.

    An export lists a rep's rows together, mostly in the same order of weeks and metrics for
    every rep: a run of rows of a shape met before is written to the rep's block as a few
    slices. Any other run, and a chunk of short runs, is written a row at a time."""

    def __init__(self) -> None:
        self.grid = Grid()
        self.rep_of: dict[str, str] = {}  # as written -> the rep
        self.base: dict[str, int] = {}  # as written -> where the rep's block starts
        self.slot: dict[str, int] = {}  # a week as written -> its slot
        self.metric_of: dict[str, Metric] = {}  # as written -> the metric
        self.offset: dict[str, int] = {}  # as written -> the metric's row in a rep's block
        self.shapes: list[_Shape] = []  # latest first
        self.length = 1  # rows in the last run
        self.count = 0  # rows written

    def put(
        self, people: list[str], weeks: list[str], metrics: list[str], values: list[float]
    ) -> None:
        """Write a chunk's rows, given as columns."""
        n = len(values)
        self.count += n
        # More than 8 reps (and a part run) in the first 8 runs' worth of rows: short runs.
        if len(set(people[: RUN * 8])) > 8 + 1:
            self.learn_reps(people)
            offsets = self.offsets(weeks, metrics)
            self.write(map(add, map(self.base.__getitem__, people), offsets), values)
            return
        column = array("d", pack(f"{n}d", *values))  # array parses each float with PyArg_Parse
        start, length = 0, self.length
        while start < n:
            raw, stop = people[start], start + length
            # Most runs are as long as the last.
            if people[start:stop] != [raw] * length or (stop < n and people[stop] == raw):
                stop = start + 1
                while stop < n and people[stop] == raw:
                    stop += 1
                length = stop - start
            if raw not in self.base:
                self.learn_reps((raw,))
            shape = self.shape(weeks[start:stop], metrics[start:stop])
            base, grid = self.base[raw], self.grid.grid
            if shape.pieces is None:
                self.write(map(add, repeat(base), shape.offsets), values[start:stop])
            else:
                for first, last, step, low, high, back in shape.pieces:
                    part = column[start + first : start + last : step]
                    grid[base + low : base + high] = part[::-1] if back else part
            start = stop
        self.length = length

    def write(self, at: Iterator[int], values: list[float]) -> None:
        # A memoryview takes a float without array's argument parsing; writing a value twice
        # to the same place is harmless.
        with memoryview(self.grid.grid) as view:  # typeshed's is no MutableSequence
            deque(map(setitem, repeat(view), at, values), maxlen=0)  # type: ignore[arg-type]

    def shape(self, weeks: list[str], metrics: list[str]) -> _Shape:
        key = ",".join(weeks + metrics)  # no cell holds a comma
        for shape in self.shapes:
            if shape.key == key:
                if not shape.planned:
                    shape.plan()
                return shape
        shape = _Shape(key, self.offsets(weeks, metrics))
        self.shapes = [shape, *self.shapes[: SHAPES - 1]]
        return shape

    def offsets(self, weeks: list[str], metrics: list[str]) -> list[int]:
        """Where each row goes in its rep's block."""
        while True:
            try:
                return list(map(add, map(self.offset.__getitem__, metrics),
                                map(self.slot.__getitem__, weeks)))  # fmt: skip
            except KeyError:
                self.learn(set(weeks), set(metrics))

    def learn_reps(self, people: Iterable[str]) -> None:
        for raw in set(people).difference(self.rep_of):
            rep = self.rep_of[raw] = raw.strip().lower()
            if not _EMAIL.fullmatch(rep):
                raise _Irregular
            self.base[raw] = self.grid.rep(rep)

    def learn(self, weeks: set[str], metrics: set[str]) -> None:
        """Check the weeks and metrics not met before; move every block if the weeks
        outgrow them."""
        grid, stride = self.grid, self.grid.stride
        for raw in sorted(weeks.difference(self.slot)):
            week = _week(raw.strip())
            if isinstance(week, str):
                raise _Irregular
            self.slot[raw] = grid.week(week)
        for raw in metrics.difference(self.metric_of):
            metric = _METRICS.get(raw) or _METRICS.get(raw.strip().lower())
            if metric is None:
                raise _Irregular
            self.metric_of[raw] = metric
        if grid.stride != stride:
            self.base = {raw: grid.reps[rep] for raw, rep in self.rep_of.items()}
            self.shapes = []
        self.offset.update((raw, ROW[m] * grid.stride) for raw, m in self.metric_of.items())


def _csv_chunks(handle: Iterator[str]) -> Iterator[tuple[list[str], int, tuple[int, ...]]]:
    """``CsvSource._chunks`` of a file with quoted cells, split by the ``csv`` module."""
    reader = csv.reader(handle)
    header = [h.strip().lower() for h in next(reader, [])]
    if any(c not in header for c in COLUMNS):
        raise _Irregular
    width = len(header)
    where = tuple(header.index(c) for c in COLUMNS)
    while chunk := list(islice(reader, CSV_CHUNK)):
        rows = list(filter(None, chunk))  # blank lines dropped
        if not rows:
            continue
        if set(map(len, rows)) != {width}:
            raise _Irregular
        yield list(chain.from_iterable(rows)), width, where


def _cells(text: str, width: int) -> list[str]:
    """The cells of ``text``'s lines, each ended by a newline, row after row (the last cell of
    each row keeps its line's end); raises at anything but rows of ``width`` unquoted cells and
    blank lines."""
    if '"' in text:
        raise _Quoted
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        raise _Irregular  # a line ended by a lone carriage return
    marked = text.replace("\n", "\n,")
    rows = len(marked) - len(text)
    cells = marked.split(",")
    cells.pop()  # after the last newline
    # Each newline ends a cell: when every row's last cell holds one, every row is whole.
    if len(cells) == width * rows and "".join(cells[width - 1 :: width]).count("\n") == rows:
        return cells
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) == rows:
        raise _Irregular  # not a blank line: a row too short or too long
    return _cells("\n".join(lines) + "\n", width) if lines else []


def _week(text: str) -> date | str:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return f"not a date: {text!r}, expected the week's Monday as YYYY-MM-DD"
    if day.weekday() != 0:
        return f"{text} is a {day.strftime('%A')}, a week is named by its Monday"
    return day


def _value(text: str) -> str:
    """What is wrong with a value that is not a count, ratio or fraction."""
    try:
        float(text)
    except ValueError:
        return f"not a number: {text!r}"
    return f"not a count, ratio or fraction: {text!r}"
