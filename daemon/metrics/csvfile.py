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
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from daemon.core.model import Metric
from daemon.metrics.base import MetricsUnusable, Row

COLUMNS = ("rep", "week", "metric", "value")
MAX_PROBLEMS = 50  # a wholly wrong file is named by its first problems, not a million lines
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_METRICS = {m.value: m for m in Metric}


class CsvSource:
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

    def rows(self, reps: frozenset[str] | None) -> Iterator[Row]:
        """The rows of ``reps`` (None: everyone's), after checking every row of the file."""
        problems: list[str] = []
        extra = 0
        seen: set[tuple[str, int, Metric]] = set()
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
            at = [header.index(c) for c in COLUMNS]
            width = len(header)
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError) as exc:
                    problem(reader.line_num, "", str(exc))
                    continue
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != width:
                    problem(line, "", f"{len(cells)} cells, the header has {width}")
                    continue
                rep, week_text, metric_text, value_text = (cells[i].strip() for i in at)
                rep = rep.lower()
                ok = True
                if not _EMAIL.fullmatch(rep):
                    problem(line, "", f"rep: not an email address: {rep!r}")
                    ok = False
                week = _week(week_text)
                if isinstance(week, str):
                    problem(line, rep, f"week: {week}")
                    ok = False
                metric = _METRICS.get(metric_text.lower())
                if metric is None:
                    problem(line, rep, f"metric: unknown metric {metric_text!r}, expected one of "
                                       f"{', '.join(_METRICS)}")  # fmt: skip
                    ok = False
                value = _value(value_text)
                if isinstance(value, str):
                    problem(line, rep, f"value: {value}")
                    ok = False
                if not ok:
                    continue
                assert isinstance(week, date) and metric is not None
                assert not isinstance(value, str)
                key = (rep, week.toordinal(), metric)
                if key in seen:
                    problem(line, rep, f"a second row for {metric.value} in the week of {week}")
                    continue
                seen.add(key)
                if self._through is None or week > self._through:
                    self._through = week
                if problems or (reps is not None and rep not in reps):
                    continue
                yield Row(rep, metric, week, value)
        if problems:
            if extra:
                problems.append(f"{self.path}: and {extra} more problems")
            raise MetricsUnusable(problems)


def _week(text: str) -> date | str:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return f"not a date: {text!r}, expected the week's Monday as YYYY-MM-DD"
    if day.weekday() != 0:
        return f"{text} is a {day.strftime('%A')}, a week is named by its Monday"
    return day


def _value(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return f"not a number: {text!r}"
    if not math.isfinite(value) or value < 0:
        return f"not a count, ratio or fraction: {text!r}"
    return value
