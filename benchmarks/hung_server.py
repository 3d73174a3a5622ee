"""What does a pass cost when the calendar server accepts connections and never answers?

    .venv/bin/python benchmarks/hung_server.py [--managers 20 125] [--timeout 10]

A stuck proxy or a frozen server looks like this from the client's side. Before the breakers
(``daemon.breaker``) a pass waited one read timeout per manager, one after the other: 15
managers, 151 s. For each roster size (eight reps a manager, ``plan_scale``'s roster) this runs
two passes against a loopback listener that accepts and never sends a byte, with the CalDAV
timeouts at ``--timeout`` seconds (the default config's 10), and prints the wall time, the
connections the server got and the one line the pass reports. A figure to watch, not a timed
test: the exit status is non-zero only when a pass tried the server more often than the breaker
allows (``THRESHOLD``, then one probe).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from reconcile_scale import config_data

from daemon import logs
from daemon.breaker import THRESHOLD
from daemon.config import load
from daemon.reconcile import run_pass, runtime

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class HungServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()


def measure(managers: int, timeout: float) -> list[str]:
    server = HungServer()
    problems: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cadence-hung-") as tmp:
            root = Path(tmp)
            data = config_data(managers * 8, root, f"http://127.0.0.1:{server.port}/")
            data["calendar"]["caldav"].update(
                connect_timeout_seconds=timeout, read_timeout_seconds=timeout
            )
            path = root / "cadence.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            config = load(path)
            found = len(config.roster.managers)
            for name, limit in (("first pass", THRESHOLD), ("next pass", 1)):
                logs.configure(stream=io.StringIO(), json=True)
                before = server.connections
                started = time.perf_counter()
                with runtime(config) as rt:  # a new runtime: as `cadence once`, run twice
                    result = run_pass(rt, AT)
                seconds = time.perf_counter() - started
                attempts = server.connections - before
                logs.configure()
                print(f"{found:>9} {name:<11} {seconds:>8.1f} {attempts:>9} {result.exit_code:>5}"
                      f"  {result.errors[0] if result.errors else '-'}")  # fmt: skip
                if attempts > limit:
                    problems.append(f"{found} managers, {name}: {attempts} attempts > {limit}")
    finally:
        server.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--managers", type=int, nargs="+", default=[20, 125])
    parser.add_argument("--timeout", type=float, default=10.0, help="CalDAV timeouts, seconds")
    args = parser.parse_args(argv)
    print(f"a calendar server that accepts and never answers; timeouts {args.timeout:g} s; "
          f"breaker threshold {THRESHOLD}")  # fmt: skip
    print(f"{'managers':>9} {'pass':<11} {'wall s':>8} {'attempts':>9} {'exit':>5}  the line")
    problems: list[str] = []
    for managers in args.managers:
        problems += measure(managers, args.timeout)
    if problems:
        print("FAIL: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"OK: at most {THRESHOLD} attempts in a pass, then one probe in the next")
    return 0


if __name__ == "__main__":
    os.environ.pop("CADENCE_TEST_FAULT", None)
    sys.exit(main())
