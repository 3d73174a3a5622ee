"""What does the status endpoint cost a pass? Issue 10's goal: under 1%.

    .venv/bin/python benchmarks/status_cost.py [--reps N] [--passes K] [--scrape-every S]

Runs what ``cadence run`` runs on an embedded Radicale for N reps (default 1,000, the roster of
``reconcile_scale.py``): a cold pass, then K warm passes a minute apart on one runtime, with
the status endpoint off and then on (alternating, so the machine's load falls on both alike).
With it on, the loop does what ``cadence run`` does after each pass (the counters, the open
admin alerts read from the ledger, the health verdict), and a client thread reads ``/metrics``
and ``/healthz`` every S seconds (default 1: Prometheus scrapes every 15 to 60 s and a
kubelet probes every 10 s, so this is many times the real load).

Prints, and asserts nothing:

* the loop's own status work per pass, timed alone, as a share of the median warm pass: the
  cost a pass always pays;
* the median warm pass with the endpoint off and on (scraped meanwhile): the whole cost,
  threads and GIL included, within the noise of a shared machine;
* what one scrape and one probe take, answered on the endpoint's own thread.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import yaml
from reconcile_scale import DEFAULT_AT, config_data

from daemon import logs
from daemon.alerts import open_alerts
from daemon.config import load
from daemon.embedded import EmbeddedRadicale
from daemon.reconcile import run_pass, runtime
from daemon.web.status import Health, Instruments, StatusServer


class Scraper(threading.Thread):
    """Reads /metrics and /healthz every ``every`` seconds until stopped; times each answer."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.stopped = threading.Event()
        self.times: dict[str, list[float]] = {"/metrics": [], "/healthz": []}

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            for path, times in self.times.items():
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(self.url + path, timeout=30) as answer:  # noqa: S310
                        answer.read()
                except OSError:
                    continue  # a 503 from /healthz is an answer too, but not one to time
                times.append(time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=8, help="warm passes with it off and on")
    parser.add_argument("--scrape-every", type=float, default=1.0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
        root = Path(tmp)
        with EmbeddedRadicale(root / "radicale", port=0) as server:
            path = root / "cadence.yaml"
            path.write_text(yaml.safe_dump(config_data(args.reps, root, server.url)))
            config = load(path)
            logs.configure(stream=io.StringIO(), json=True)
            clock_now = [DEFAULT_AT]
            health = Health(float(config.settings.interval_seconds), lambda: clock_now[0])
            instruments = Instruments()
            off: list[float] = []
            on: list[float] = []
            status_work: list[float] = []
            with runtime(config) as rt:
                started = time.perf_counter()
                cold = run_pass(rt, DEFAULT_AT)
                cold_s = time.perf_counter() - started
                status = StatusServer(lambda: rt.config, ("127.0.0.1", 0), health, instruments,
                                      lambda: clock_now[0])  # fmt: skip
                with status:
                    scraper = Scraper(status.url, args.scrape_every)
                    for k in range(1, 2 * args.passes + 1):
                        at = DEFAULT_AT + timedelta(minutes=k)
                        clock_now[0] = at
                        endpoint = k % 2 == 0
                        if endpoint and not scraper.is_alive():
                            scraper.start()
                        started = time.perf_counter()
                        result = run_pass(rt, at)
                        if endpoint:  # what the loop does after a pass (reconcile._loop)
                            work = time.perf_counter()
                            ok = not result.unavailable
                            instruments.record(result, work - started, ok, at)
                            health.passed(at, ok, None, open_alerts(rt.ledger))
                            status_work.append(time.perf_counter() - work)
                        (on if endpoint else off).append(time.perf_counter() - started)
                    scraper.stopped.set()
                    scraper.join()
        logs.configure()

    median_off = statistics.median(off)
    median_on = statistics.median(on)
    work = statistics.median(status_work)
    print(f"{args.reps} reps, {len(config.roster.managers)} managers; cold pass {cold_s:.1f} s "
          f"({cold.writes} writes, {len(cold.errors)} errors)")  # fmt: skip
    print(f"warm pass, endpoint off:        median {median_off:7.3f} s over {len(off)} passes "
          f"(min {min(off):.3f}, max {max(off):.3f})")  # fmt: skip
    print(
        f"warm pass, endpoint on:         median {median_on:7.3f} s over {len(on)} passes "
        f"(min {min(on):.3f}, max {max(on):.3f}), scraped every {args.scrape_every:g} s"
    )
    print(f"the loop's status work a pass:  median {work * 1000:7.2f} ms = "
          f"{100 * work / median_off:.3f}% of a warm pass (goal: under 1%)")  # fmt: skip
    print(f"on vs off, all of it:           {100 * (median_on - median_off) / median_off:+.1f}% "
          f"(the machine's noise included)")  # fmt: skip
    for name, times in scraper.times.items():
        if times:
            print(f"one {name:<9} answer:          median {statistics.median(times) * 1000:7.2f} ms"
                  f" over {len(times)} requests")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.pop("CADENCE_TEST_FAULT", None)
    sys.exit(main())
