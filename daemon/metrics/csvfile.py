"""The embedded default metrics source: a CSV export from any CRM or BI tool.

``rep,week,metric,value``: ``rep`` an email, ``week`` that week's Monday, ``value`` a decimal
(fractions for percentages). Read as a stream, so a 650,000-row export of everyone costs one row
at a time; rows for people not on the roster are validated and dropped. Problems are named like
the roster's: file, line, field.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

from daemon.core.model import Metric
from daemon.metrics.base import MetricsUnusable, Row

COLUMNS = ("rep", "week", "metric", "value")
MAX_PROBLEMS = 50  # a wholly wrong file is named by its first problems, not a million lines
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_METRICS = {m.value: m for m in Metric}


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

    def through(self) -> date | None:
        return self._through

    def open_opportunities(self, reps: frozenset[str]) -> None:
        """A weekly-values export holds no deals: the review agenda asks reps for theirs."""
        return None

    def rows(self, reps: frozenset[str] | None) -> Iterator[Row]:
        """The rows of ``reps`` (None: everyone's), after checking every row of the file."""
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
