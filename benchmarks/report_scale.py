"""How fast is `cadence report` for a big sales org?

    .venv/bin/python benchmarks/report_scale.py [reps]     (default: 10000)

Prints figures, asserts nothing. Goal (issue 10): the report for 10,000 reps with 13 weeks of
history under 2 s and 200 MiB. (The status endpoint's cost on a pass: ``status_cost.py``.)

The history is built as the ledger holds it: one weekly series per rep (a third twice weekly),
started 20 weeks ago, with one occurrence in eight cancelled and one in twenty moved. First the
parts in this process (wall and CPU time, then peak memory of a traced run); then the whole
`cadence report` command on that history in a real ledger, as a user runs it, in each format:
the best of three runs, each process's own CPU time and peak RSS. The package is byte-compiled
first, as an installed cadence is (``PYTHONDONTWRITEBYTECODE`` would otherwise have every run
compile it). On a shared machine the wall time stretches with the load; the CPU time is what
the command costs, and what its wall time is on an idle machine.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from zoneinfo import ZoneInfo

import yaml

from daemon import report
from daemon.config import Config, load
from daemon.core.planner import LedgerSeries, LedgerView, Outcome
from daemon.core.planner.rates import scheduled_starts
from daemon.store import CancellationRecord, Ledger, RescheduleRecord, SeriesRecord, utc_iso

NY = ZoneInfo("America/New_York")
AT = datetime(2027, 2, 21, 12, 0, tzinfo=NY)
ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]


def config(size: int, folder: Path) -> Config:
    data = {
        "organization": {"name": "Bench", "timezone": "America/New_York"},
        "managers": [
            {"email": f"m{i}@acme.test", "name": f"Manager {i}", "timezone": ZONES[i % 4]}
            for i in range(max(1, size // 8))
        ],
        "reps": [
            {
                "email": f"r{i}@acme.test",
                "name": f"Rep {i}",
                "role": "ae",
                "start_date": "2024-01-08",
                "manager": f"m{i // 8}@acme.test",
            }
            for i in range(size)
        ],  # fmt: skip
        "state_dir": str(folder / "state"),
        "policy": {"max_reps_per_manager": 8},
    }
    path = folder / "cadence.yaml"
    path.write_text(yaml.safe_dump(data))
    return load(path)


def history(size: int) -> LedgerView:
    series, outcomes = [], []
    first = AT - timedelta(weeks=20)
    for i in range(size):
        tz = ZoneInfo(ZONES[(i // 8) % 4])
        start = first.astimezone(tz).replace(hour=9 + i % 8, minute=0, second=0, microsecond=0)
        start += timedelta(days=(7 - start.weekday()) % 7)  # a Monday
        rec = LedgerSeries(
            uid=f"s{i}", rep=f"r{i}@acme.test", manager=f"m{i // 8}@acme.test",
            stage="ramped_ae", fingerprint=f"f{i}", start=start,
            rrule="FREQ=WEEKLY;INTERVAL=1;BYDAY=" + ("MO,WE" if i % 3 == 0 else "MO"),
            until=None, state="active", timezone=str(tz),
        )  # fmt: skip
        series.append(rec)
        for n, when in enumerate(scheduled_starts(rec, AT - timedelta(weeks=14), AT)):
            if (i + n) % 8 == 0:
                outcomes.append(Outcome(rec.uid, when, rec.rep, rec.manager, True, n % 13 == 10))
            elif (i + n) % 20 == 0:
                outcomes.append(Outcome(rec.uid, when, rec.rep, rec.manager, False))
    return LedgerView(series=tuple(series), outcomes=tuple(outcomes))


def measure(label: str, work: object) -> object:
    """Wall and CPU time of an untraced run, then peak memory of a traced one (tracemalloc slows
    the code it watches several times over, so the two are not taken together)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = work()  # type: ignore[operator]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    tracemalloc.start()
    work()  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<34} {seconds:8.3f} s  cpu {cpu:7.3f} s   peak {peak / 2**20:7.1f} MiB")
    return result


def write_ledger(cfg: Config, view: LedgerView) -> None:
    """The history into a real ledger, as the daemon would have left it."""
    ledger = Ledger.open(cfg.settings.state_dir)
    stamp = utc_iso(AT)
    try:
        with ledger.transaction():
            for rec in view.series:
                ledger.upsert_series(SeriesRecord(
                    uid=rec.uid, rep=rec.rep, manager=rec.manager, stage=rec.stage,
                    rrule=rec.rrule, timezone=rec.timezone or "UTC",
                    start=rec.start.isoformat(), until=None, fingerprint=rec.fingerprint,
                    state=rec.state, updated_at=stamp,
                ))  # fmt: skip
            for o in view.outcomes:
                if o.cancelled:
                    ledger.record_cancellation(CancellationRecord(
                        uid=o.uid, original_start=utc_iso(o.original_start), rep=o.rep,
                        manager=o.manager, reason="cancelled", week_of_quarter=11 if o.week11
                        else 3, week11=o.week11, detected_at=stamp,
                    ))  # fmt: skip
                else:
                    ledger.record_reschedule(RescheduleRecord(
                        uid=o.uid, original_start=utc_iso(o.original_start), rep=o.rep,
                        manager=o.manager, start=utc_iso(o.original_start), detected_at=stamp,
                    ))  # fmt: skip
    finally:
        ledger.close()


# Runs the command and reports its own figures. From this small process rather than from the
# benchmark's: a child's peak RSS starts from its parent's size at the fork.
_RUNNER = """import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE, text=True)
problem = child.stderr.read()
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - started,
      usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**10)
sys.stderr.write(problem)
"""


def command(fmt: str, folder: Path, runs: int = 3) -> None:
    """`cadence report` as a user runs it: the best wall and CPU time of ``runs`` runs, and the
    largest peak RSS, each of that process alone."""
    best_wall, best_cpu, peak = float("inf"), float("inf"), 0.0
    out = folder / f"report.{fmt}"
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _RUNNER, sys.executable, "-m", "daemon.cli", "report",
             "--config", str(folder / "cadence.yaml"), "--at", AT.isoformat(), "--format", fmt,
             "--out", str(out)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        code, wall, cpu, rss = done.stdout.split()
        if code != "0":
            raise SystemExit(f"cadence report --format {fmt} failed: {done.stderr.strip()}")
        best_wall, best_cpu = min(best_wall, float(wall)), min(best_cpu, float(cpu))
        peak = max(peak, float(rss))
    print(f"`cadence report --format {fmt:<4}`      {best_wall:8.3f} s  cpu {best_cpu:7.3f} s   "
          f"peak RSS {peak:6.1f} MiB, {out.stat().st_size / 2**20:.1f} MiB out")  # fmt: skip


def main(size: int) -> None:
    with TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = config(size, folder)
        view = history(size)
        print(f"{size} reps, {size // 8} managers, {len(view.outcomes)} cancellations and moves")
        data = measure("rates + report object (json)", lambda: report.build(cfg, AT, view))
        assert isinstance(data, dict)
        measure("render text", lambda: report.render_text(data))
        html = measure("render html", lambda: report.render_html(data))
        assert isinstance(html, str)
        measure("build + html, in process", lambda: report.render_html(
            report.build(cfg, AT, view)))  # fmt: skip
        write_ledger(cfg, view)
        compileall.compile_dir(Path(report.__file__).parent, quiet=1)
        for fmt in ("text", "json", "html"):
            command(fmt, folder)
        print("load average:", " ".join(f"{n:.1f}" for n in os.getloadavg()))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
