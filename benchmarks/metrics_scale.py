"""How heavy is the metrics CSV for a big sales org? Prints load time and peak memory.

    .venv/bin/python benchmarks/metrics_scale.py [reps...]     (default: 1000 10000)

Each size is 13 weeks x 5 metrics per rep, plus a tenth more rows for people not on the roster
(exports hold everyone). Measured: checking and loading the file the way a pass does
(``CsvSource.rows`` for the roster's reps), what a pass does when the file has changed (those
rows written to the ledger, replacing the last read), and the pure arithmetic of one number per
rep. Goal (issue 15): 10,000 reps under 1 s and 100 MiB. A figure to watch, not a timed test. On
a shared, loaded machine wall time says little: CPU times are printed too, with two yardsticks: a
bare ``csv.reader`` pass over the same file, and the least a row can cost in Python (read, a
week looked up, a ``Row`` made and kept, no checks).
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.core.metrics import Weekly, number_for
from daemon.core.model import Metric
from daemon.metrics.base import Row
from daemon.metrics.cache import ledger_rows
from daemon.metrics.csvfile import CsvSource
from daemon.store import Ledger, MetricsRead

WEEKS = 13
FIRST = date(2026, 8, 31)


def write(path: Path, reps: int) -> None:
    with path.open("w") as out:
        out.write("rep,week,metric,value\n")
        for prefix, count in (("r", reps), ("gone", reps // 10)):  # and people off the roster
            for i in range(count):
                for w in range(WEEKS):
                    week = (FIRST + timedelta(weeks=w)).isoformat()
                    for m, metric in enumerate(Metric):
                        out.write(
                            f"{prefix}{i}@acme.test,{week},{metric.value},{(i + w + m) % 97}\n"
                        )


def load(source: CsvSource, roster: frozenset[str]) -> dict[tuple[str, Metric], dict[date, float]]:
    """What ``plan`` and a pass hold: the roster's values by rep, metric and week."""
    values: dict[tuple[str, Metric], dict[date, float]] = {}
    for row in source.rows(roster):
        values.setdefault((row.rep, row.metric), {})[row.week] = row.value
    return values


def floor(path: Path, roster: frozenset[str]) -> list[Row]:
    """The roster's rows with no checks at all: what any row-at-a-time reading costs."""
    metrics = {m.value: m for m in Metric}
    weeks: dict[str, date] = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [
            Row(
                rep,
                metrics[metric],
                weeks.get(week) or weeks.setdefault(week, date.fromisoformat(week)),
                float(value),
            )
            for rep, week, metric, value in reader
            if rep in roster
        ]


def measure(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.csv"
        write(path, reps)
        size = path.stat().st_size
        rows = (reps + reps // 10) * WEEKS * len(Metric)
        roster = frozenset(f"r{i}@acme.test" for i in range(reps))
        source = CsvSource(path)
        started, cpu = time.perf_counter(), time.process_time()
        values = load(source, roster)
        version = source.version()
        loaded, loaded_cpu = time.perf_counter() - started, time.process_time() - cpu
        cpu = time.process_time()
        with path.open(newline="") as handle:
            for _ in csv.reader(handle):
                pass
        bare = time.process_time() - cpu
        cpu = time.process_time()
        floor(path, roster)
        least = time.process_time() - cpu
        ledger = Ledger.open(Path(tmp) / "state")
        cpu = time.process_time()
        read = MetricsRead(source=source.label, version=version, through=None, read_at="")
        ledger.replace_metrics(read, ledger_rows(source, roster))
        stored = time.process_time() - cpu
        ledger.close()
        tracemalloc.start()  # measured apart: tracing slows every allocation down
        load(source, roster)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        weekly = Weekly(path.name, values, source.through())
        started = time.perf_counter()
        meeting = datetime(2026, 12, 1, 15, tzinfo=UTC)
        org = ZoneInfo("America/New_York")
        for i in range(reps):
            number_for(weekly, f"r{i}@acme.test", Metric.WIN_RATE, meeting, org).line()
        numbers = time.perf_counter() - started
        print(
            f"{reps:>6} reps  {rows:>9,} rows  {size / 2**20:6.1f} MiB file"
            f"  load+check {loaded:6.2f} s (CPU {loaded_cpu:.2f} s; csv.reader alone {bare:.2f} s,"
            f" rows unchecked {least:.2f} s)  peak {peak / 2**20:6.1f} MiB"
            f"  into the ledger CPU {stored:.2f} s"
            f"  one number per rep {numbers * 1000:6.1f} ms  (digest {version[:8]})"
        )


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [1000, 10000]:
        measure(n)
