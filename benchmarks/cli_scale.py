"""What do `cadence validate` and `cadence plan --json` cost for a big company, as processes?

    .venv/bin/python benchmarks/cli_scale.py [sizes...]     (default: 1000 10000 50000)

Writes the config an admin of a large company would have (every manager in the YAML, eight reps
each, the reps in a CSV roster) and runs each command as its own process, the way an admin or a
CI job does, printing the wall time and the peak resident memory of the whole process: start-up,
imports, parsing, validation, planning and writing the output, not just the core that
``plan_scale.py`` times. Then the cost of the live-roster check a running daemon makes before
each pass when nothing changed. Goals (issue 12): 10,000 reps plan in under 1 s and 120 MiB,
50,000 in under 4 s and 400 MiB, validate 50,000 in under 1.5 s, a reload check of an unchanged
10,000-rep roster under 50 ms. Figures to watch, not a timed test.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from plan_scale import roster

from daemon.config import load
from daemon.roster_watch import RosterWatch

AT = "2026-11-22T09:00:00-05:00"


def write_config(size: int, root: Path) -> Path:
    r = roster(size)
    managers = [m.model_dump(mode="json", exclude_none=True) for m in r.managers]
    known = {m["email"] for m in managers}
    with (root / "roster.csv").open("w", newline="") as handle:
        fields = ["email", "name", "role", "start_date", "manager", "timezone",
                  "forecast_within_5pct"]  # fmt: skip
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for rep in r.reps:
            row = rep.model_dump(mode="json", include=set(fields))
            writer.writerow(row)
            if row["manager"] not in known:  # the last team of a size that is not a multiple
                known.add(row["manager"])
                managers.append({"email": row["manager"], "name": "Manager", "timezone": "UTC"})
    config = root / "cadence.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "organization": r.organization.model_dump(mode="json", exclude_none=True),
                "managers": managers,
                "reps": "roster.csv",
                "policy": {"max_reps_per_manager": 8},
            },
            sort_keys=False,
        )
    )
    return config


def run(args: list[str]) -> tuple[float, float, float, int]:
    """Wall and CPU seconds, peak RSS in MiB and the exit code of one command as a process
    (CPU time moves less than wall time when other work shares the machine)."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 and process.stderr is not None:
        sys.stderr.write(process.stderr.read().decode()[-2000:])
    if process.stderr is not None:
        process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode


def main(sizes: list[int]) -> int:
    cadence = str(Path(sys.executable).with_name("cadence"))
    print(f"{'reps':>7} {'command':<24} {'wall s':>7} {'CPU s':>6} {'peak MiB':>9}")
    failed = 0
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(size, Path(tmp))
            for name, args in [
                ("validate", ["validate"]),
                ("plan --json", ["plan", "--json", "--at", AT]),
            ]:
                wall, cpu, mib, code = run([cadence, *args, "--config", str(config)])
                failed += code != 0
                status = "" if code == 0 else f"  exit {code}"
                print(f"{size:>7} {name:<24} {wall:>7.2f} {cpu:>6.2f} {mib:>9.0f}{status}")
            watch = RosterWatch(load(config))
            rounds = 20
            start = time.perf_counter()
            for _ in range(rounds):
                watch.check()
            per = (time.perf_counter() - start) / rounds
            print(f"{size:>7} {'reload check, unchanged':<24} {per * 1000:>6.1f}ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [1000, 10000, 50000]))
