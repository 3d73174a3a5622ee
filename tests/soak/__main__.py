"""``python -m tests.soak [--provider caldav|google] [--days 365] [--seeds 20 | --seed N]``: the
long soak (``make soak``).

Prints one line of figures per seed and the totals; exits 1 when any invariant broke, after
printing each failing seed with the command that replays it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.soak.sim import Figures, soak


def summary(results: list[Figures]) -> str:
    total = Figures(seed=-1)
    for f in results:
        total.days += f.days
        total.passes += f.passes
        total.clean_passes += f.clean_passes
        total.subprocess_passes += f.subprocess_passes
        total.sigkills += f.sigkills
        total.down_days += f.down_days
        total.edits += f.edits
        total.roster_changes += f.roster_changes
        total.faults += f.faults
        total.emails += f.emails
        total.checks += f.checks
        total.violations += f.violations
        total.seconds += f.seconds
    return describe(total, f"{len(results)} seeds")


def describe(f: Figures, name: str) -> str:
    def counts(c: Counter[str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

    return "\n".join([
        f"{name}: {f.days} simulated days, {f.passes} passes ({f.clean_passes} clean, "
        f"{f.subprocess_passes} as `cadence once` subprocesses), {f.sigkills} SIGKILLs, "
        f"{f.down_days} days down, {f.emails} emails, {len(f.violations)} invariant violations, "
        f"{f.seconds:.0f} s",
        f"  people's edits: {sum(f.edits.values())} ({counts(f.edits)})",
        f"  roster changes: {sum(f.roster_changes.values())} ({counts(f.roster_changes)})",
        f"  faults injected: {sum(f.faults.values())} ({counts(f.faults)})",
        f"  invariant checks: {counts(f.checks)}",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--keep", type=Path, help="keep each seed's files under this folder")
    parser.add_argument("--provider", choices=("caldav", "google", "outlook"), default="caldav")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else list(range(1, args.seeds + 1))
    results = []
    with tempfile.TemporaryDirectory(prefix="cadence-soak-") as tmp:
        base = args.keep or Path(tmp)
        for seed in seeds:
            figures = soak(seed, args.days, base / f"seed{seed}", args.provider)
            results.append(figures)
            print(describe(figures, f"seed {seed}"), flush=True)
            for line in figures.violations[:5]:
                print(f"  VIOLATION {line}", flush=True)
    print(summary(results))
    failing = [f.seed for f in results if f.violations]
    for seed in failing:
        print(f"replay: python -m tests.soak --provider {args.provider} --seed {seed} "
              f"--days {args.days} --keep /tmp/soak")  # fmt: skip
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
