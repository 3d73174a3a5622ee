"""How heavy is the metrics CSV for a big sales org? Prints load time and peak memory.

    .venv/bin/python benchmarks/metrics_scale.py [reps...]     (default: 1000 10000)

Each size is 13 weeks x 5 metrics per rep, plus a tenth more rows for people not on the roster
(exports hold everyone), each rep's rows together as a report grouped by rep lists them; the
same rows listed week by week are loaded too (the quick reading then writes a value at a
time). Measured: checking and loading the file the way a pass does
(``CsvSource.read`` for the roster's reps, and the file's digest), the careful row-by-row reading
a file the quick one stops at costs (a bad row; a right one only when oddly written), what a
pass does when the file has changed (the table written to the ledger, replacing the last read)
and at each pass (the table read back from the ledger), and the pure arithmetic of one number
per rep. Goal (issue 15): 10,000 reps under 1 s and 100 MiB. A figure to watch, not a timed
test. On a shared, loaded machine wall time says little: CPU times are printed too, with a bare
``csv.reader`` pass over the same file as a yardstick.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.core.metrics import Weekly, number_for
from daemon.core.model import Metric
from daemon.metrics import cache
from daemon.metrics.base import Grid
from daemon.metrics.csvfile import CsvSource
from daemon.store import Ledger, MetricsRead

WEEKS = 13
FIRST = date(2026, 8, 31)


def write(path: Path, reps: int, by_week: bool = False) -> None:
    """Each rep's rows together, as a report grouped by rep lists them; or each week's."""
    roster = [("r", i) for i in range(reps)]
    people = roster + [("gone", i) for i in range(reps // 10)]  # and people off the roster
    if by_week:
        order = [(w, p) for w in range(WEEKS) for p in people]
    else:
        order = [(w, p) for p in people for w in range(WEEKS)]
    with path.open("w") as out:
        out.write("rep,week,metric,value\n")
        for w, (prefix, i) in order:
            week = (FIRST + timedelta(weeks=w)).isoformat()
            for m, metric in enumerate(Metric):
                out.write(f"{prefix}{i}@acme.test,{week},{metric.value},{(i + w + m) % 97}\n")


def careful(source: CsvSource, roster: frozenset[str]) -> None:
    """The row-by-row reading alone, as ``CsvSource.read`` falls back on it."""
    grid = Grid()
    for rep, metric, week, value in source._rows(roster):
        grid.put(rep, metric, week, value)


def measure(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.csv"
        write(path, reps)
        size = path.stat().st_size
        rows = (reps + reps // 10) * WEEKS * len(Metric)
        roster = frozenset(f"r{i}@acme.test" for i in range(reps))
        source = CsvSource(path)
        started, cpu = time.perf_counter(), time.process_time()
        table = source.read(roster)
        version = source.version()
        loaded, loaded_cpu = time.perf_counter() - started, time.process_time() - cpu
        cpu = time.process_time()
        with path.open(newline="") as handle:
            for _ in csv.reader(handle):
                pass
        bare = time.process_time() - cpu
        cpu = time.process_time()
        careful(source, roster)
        slow = time.process_time() - cpu
        ledger = Ledger.open(Path(tmp) / "state")
        cpu = time.process_time()
        blob = table.to_bytes()
        read = MetricsRead(
            source=source.label, version=version, through=None, read_at="2026-12-01T15:00:00Z"
        )
        ledger.replace_metrics(read, blob)
        stored = time.process_time() - cpu
        cpu = time.process_time()
        cache.weekly(ledger, source)
        back = time.process_time() - cpu
        ledger.close()
        tracemalloc.start()  # measured apart: tracing slows every allocation down
        source.read(roster)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        weekly = Weekly(path.name, table, table.through)
        started = time.perf_counter()
        meeting = datetime(2026, 12, 1, 15, tzinfo=UTC)
        org = ZoneInfo("America/New_York")
        for i in range(reps):
            number_for(weekly, f"r{i}@acme.test", Metric.WIN_RATE, meeting, org).line()
        numbers = time.perf_counter() - started
        write(path, reps, by_week=True)  # the rows of a rep apart: read a value at a time
        started, cpu = time.perf_counter(), time.process_time()
        CsvSource(path).read(roster)
        CsvSource(path).version()
        by_week, by_week_cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"{reps:>6} reps  {rows:>9,} rows  {size / 2**20:6.1f} MiB file"
            f"  load+check {loaded:5.2f} s (CPU {loaded_cpu:.2f} s; csv.reader alone {bare:.2f} s,"
            f" row by row {slow:.2f} s; rows by week {by_week:.2f} s, CPU {by_week_cpu:.2f} s)"
            f"  peak {peak / 2**20:5.1f} MiB"
            f"  into the ledger CPU {stored:.3f} s ({len(blob) / 2**20:.1f} MiB), back {back:.3f} s"
            f"  one number per rep {numbers * 1000:6.1f} ms  (load {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [1000, 10000]:
        measure(n)
