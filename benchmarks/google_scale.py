"""What does one reconcile pass cost on Google Calendar for a big roster?

    .venv/bin/python benchmarks/google_scale.py [--reps N] [--at ISO-8601]

Starts the local Calendar v3 server of the test suite (``tests/fixtures/google.py``) in this
process, writes a config for N reps (default 1,000, eight a manager: ``plan_scale``'s roster)
with ``calendar.provider: google`` and runs, at one instant:

* a cold pass: empty calendars and ledger, every series created with its agendas;
* a warm pass on the same runtime (as ``cadence run`` keeps it): nothing changed since;
* a warm pass on a fresh runtime, as a second ``cadence once`` would run it.

For each it prints HTTP round trips (a batch is one), API calls (a batch of n is n, as Google's
quota counts them) by method, the most calls one user made in any minute (Google allows 600),
and cadence's own CPU time (the main thread's; the server runs in other threads). The goal from
issue 8: a warm pass is exactly one ``events.list`` per manager; a cold pass needs no more than
1.2 x (managers + ceil(calls / 50)) round trips. A figure to watch, not a timed test; the exit
status is non-zero only when a warm pass makes more than one call per manager or a pass errs.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from reconcile_scale import DEFAULT_AT, config_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daemon import logs  # noqa: E402
from daemon.config import load  # noqa: E402
from daemon.reconcile import PassResult, Runtime, run_pass, runtime  # noqa: E402
from tests.fixtures.google import FakeGoogle  # noqa: E402


@dataclass
class Figures:
    name: str
    seconds: float
    cpu_seconds: float
    round_trips: int
    api_calls: int
    by_method: dict[str, int]
    peak_user_minute: int
    result: PassResult


def one_pass(name: str, rt: Runtime, at: datetime, google: FakeGoogle) -> Figures:
    logs.configure(stream=io.StringIO(), json=True)
    google.reset_counters()
    t0, c0 = time.perf_counter(), time.thread_time()
    result = run_pass(rt, at)
    seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
    with google.lock:
        return Figures(
            name, seconds, cpu, google.round_trips, google.api_calls,
            dict(google.calls_by_method), max(google.calls_by_user_minute.values(), default=0),
            result,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000, help="roster size (default 1000)")
    parser.add_argument("--at", type=datetime.fromisoformat, default=DEFAULT_AT)
    args = parser.parse_args(argv)
    google = FakeGoogle().start()
    try:
        with tempfile.TemporaryDirectory(prefix="cadence-gbench-") as tmp:
            root = Path(tmp)
            data = config_data(args.reps, root, "")
            key = google.write_key(root / "key.json")
            data["calendar"] = {
                "provider": "google",
                "google": {"credentials_file": str(key), "api_endpoint": google.url},
            }
            for manager in data["managers"]:
                google.add_user(manager["email"])
            path = root / "cadence.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            config = load(path)
            managers = len(config.roster.managers)
            print(f"reconcile pass at {args.at.isoformat()} on Google: "
                  f"{len(config.roster.reps)} reps, {managers} managers")  # fmt: skip
            figures = []
            with runtime(config) as rt:
                figures.append(one_pass("cold", rt, args.at, google))
                figures.append(one_pass("warm", rt, args.at, google))
            with runtime(config) as rt:
                figures.append(one_pass("warm, new rt", rt, args.at, google))
    finally:
        google.stop()
        logs.configure()

    print(f"{'pass':<14} {'wall s':>7} {'cpu s':>6} {'round trips':>12} {'API calls':>10} "
          f"{'max/user/min':>13} {'writes':>7} {'errors':>7}")  # fmt: skip
    for f in figures:
        print(f"{f.name:<14} {f.seconds:>7.1f} {f.cpu_seconds:>6.1f} {f.round_trips:>12} "
              f"{f.api_calls:>10} {f.peak_user_minute:>13} {f.result.writes:>7} "
              f"{len(f.result.errors):>7}")  # fmt: skip
    for f in figures:
        calls = ", ".join(f"{k} {n}" for k, n in sorted(f.by_method.items()))
        print(f"  {f.name}: {calls}")
        for error in f.result.errors[:3]:
            print(f"  {f.name}: ! {error}")
    cold = figures[0]
    goal = 1.2 * (managers + math.ceil(cold.api_calls / 50))
    print(f"  cold goal: <= {goal:.0f} round trips (1.2 x (managers + ceil(calls / 50))); "
          f"measured {cold.round_trips} (token requests included)")  # fmt: skip
    problems = [f"{f.name}: {len(f.result.errors)} errors" for f in figures if f.result.errors]
    for warm in figures[1:]:
        if warm.api_calls != managers or set(warm.by_method) != {"GET events"}:
            problems.append(f"{warm.name}: {warm.api_calls} calls, not one events.list a manager")
    if problems:
        print("FAIL:", "; ".join(problems), file=sys.stderr)
        return 1
    print(f"OK: each warm pass is exactly one events.list per manager ({managers})")
    return 0


if __name__ == "__main__":
    os.environ.pop("CADENCE_TEST_FAULT", None)
    sys.exit(main())
