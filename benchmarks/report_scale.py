"""How fast is `cadence report` for a big sales org, and what does the status endpoint cost?

    .venv/bin/python benchmarks/report_scale.py [reps]     (default: 10000)

Prints figures, asserts nothing. Goals (issue 10): the report for 10,000 reps with 13 weeks of
history under 2 s and 200 MiB; the status endpoint under 1% of a pass.

The history is built as the ledger holds it: one weekly series per rep (a third twice weekly),
started 20 weeks ago, with one occurrence in eight cancelled and one in twenty moved.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from zoneinfo import ZoneInfo

import yaml

from daemon import report
from daemon.config import Config, load
from daemon.core.planner import LedgerSeries, LedgerView, Outcome
from daemon.core.planner.rates import scheduled_starts
from daemon.reconcile import PassResult
from daemon.web.status import Health, Instruments

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
    """Wall time of an untraced run, then peak memory of a traced one (tracemalloc slows the
    code it watches several times over, so the two are not taken together)."""
    started = time.perf_counter()
    result = work()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    tracemalloc.start()
    work()  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<34} {seconds:8.3f} s   peak {peak / 2**20:7.1f} MiB")
    return result


def main(size: int) -> None:
    with TemporaryDirectory() as tmp:
        cfg = config(size, Path(tmp))
        view = history(size)
        print(f"{size} reps, {size // 8} managers, {len(view.outcomes)} cancellations and moves")
        data = measure("rates + report object (json)", lambda: report.build(cfg, AT, view))
        assert isinstance(data, dict)
        measure("render text", lambda: report.render_text(data))
        html = measure("render html", lambda: report.render_html(data))
        assert isinstance(html, str)
        measure("all of it (what `report` does)", lambda: report.render_html(
            report.build(cfg, AT, view)))  # fmt: skip
        print(f"html page: {len(html.encode()) / 2**20:.1f} MiB")

        # The status endpoint's share of a pass: what the loop hands it after each pass.
        result = PassResult(created=3, ended=1, agendas=size // 10,
                            sent=Counter(preread=size // 5), api_errors=Counter())  # fmt: skip
        result.manager_rates = {f"m{i}@acme.test": 0.1 for i in range(size // 8)}
        instruments, health = Instruments(), Health(60.0, lambda: AT)
        rounds = 20
        started = time.perf_counter()
        for _ in range(rounds):
            instruments.record(result, 1.0, True, AT)
            health.passed(AT, True, None)
        per_pass = (time.perf_counter() - started) / rounds
        started = time.perf_counter()
        from prometheus_client.exposition import generate_latest

        scrape = generate_latest(instruments.registry)
        scrape_s = time.perf_counter() - started
        print(f"status endpoint, per pass:          {per_pass * 1000:8.2f} ms "
              f"({size // 8} manager rate gauges)")  # fmt: skip
        print(f"one /metrics scrape (own thread):   {scrape_s * 1000:8.2f} ms, "
              f"{len(scrape) / 1024:.0f} KiB")  # fmt: skip
        print("compare with a pass: benchmarks/reconcile_scale.py (seconds for 1,000 reps)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
