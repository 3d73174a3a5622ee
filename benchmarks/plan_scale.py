"""How fast is `cadence plan` for big rosters? Prints reps/second and peak memory.

    .venv/bin/python benchmarks/plan_scale.py [sizes...]     (default: 1000 10000)

A figure to watch, not a timed test: the target is well under a second for 10,000 reps.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta

from daemon.core.model import Roster
from daemon.core.plan import plan

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "Europe/London", "Asia/Kolkata", "Australia/Sydney", "America/Phoenix"]  # fmt: skip
ROLES = ["sdr", "ae", "senior_ae"]


def roster(size: int) -> Roster:
    managers = [
        {"email": f"m{i}@acme.test", "name": f"Manager {i}", "timezone": ZONES[i % len(ZONES)]}
        for i in range(max(1, size // 8))
    ]
    reps = [
        {
            "email": f"r{i}@acme.test",
            "name": f"Rep {i}",
            "role": ROLES[i % 3],
            "start_date": (date(2026, 1, 5) + timedelta(days=(i * 7) % 330)).isoformat(),
            "manager": f"m{i // 8}@acme.test",
            "timezone": ZONES[(i // 8) % len(ZONES)],
            "forecast_within_5pct": i % 2 == 0,
        }
        for i in range(size)
    ]
    return Roster.model_validate(
        {"organization": {"name": "Bench", "timezone": "America/New_York"},
         "managers": managers, "reps": reps}
    )  # fmt: skip


def main(sizes: list[int]) -> None:
    at = datetime(2026, 11, 22, 14, tzinfo=UTC)
    print("validate = roster models; series = stage, slot, rule per rep (what the daemon needs);")
    print("plan = series + the next 8 occurrences each (what `cadence plan --json` prints)")
    print(f"{'reps':>8} {'validate s':>11} {'series s':>9} {'plan s':>8} {'plan reps/s':>12} "
          f"{'peak MiB':>9}")  # fmt: skip
    for size in sizes:
        t0 = time.perf_counter()
        r = roster(size)
        t1 = time.perf_counter()
        plan(r, at, count=0)
        t_series = time.perf_counter() - t1
        t1 = time.perf_counter()
        plans = plan(r, at)
        t2 = time.perf_counter()
        # Memory is measured on a second run: tracing slows Python down several times.
        tracemalloc.start()
        plan(roster(size), at)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(plans) == size
        print(f"{size:>8} {t1 - t0:>11.3f} {t_series:>9.3f} {t2 - t1:>8.3f} "
              f"{size / (t2 - t1):>12.0f} {peak / 2**20:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
