"""How heavy is the pre-read form page, and how fast does it answer 50 people at once?

    .venv/bin/python benchmarks/prep_form.py [--clients 50] [--requests 20]

Starts the form server (``daemon.web.prep.PrepServer``, as ``cadence run`` does) on a free
loopback port with a fresh ledger holding one link per client, then has ``--clients`` threads
each open their own page ``--requests`` times over keep-alive connections (a real HTTP client,
``http.client``). Prints the page's size (HTML bytes, and that it loads nothing else), the time
to first byte (median, 95th percentile, max) under that load, the throughput, and the median
time of a 404 (unknown link) and a 410 (expired link), which should be alike. Figures to watch,
not a timed test.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon import logs, preread  # noqa: E402
from daemon.config import load  # noqa: E402
from daemon.core.prep import Grant, Role  # noqa: E402
from daemon.render import Renderer  # noqa: E402
from daemon.store import Ledger  # noqa: E402
from daemon.web.prep import PrepServer  # noqa: E402

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def setup(root: Path, clients: int) -> tuple[Path, list[str], str]:
    config = root / "cadence.yaml"
    config.write_text(
        "organization: {name: Acme, timezone: America/New_York}\n"
        "managers: [{email: maya@acme.test, name: Maya Chen, timezone: America/Chicago}]\n"
        "reps:\n"
        + "".join(
            f"  - {{email: rep{i}@acme.test, name: Rep {i}, role: ae, start_date: 2026-01-05,"
            " manager: maya@acme.test}\n"
            for i in range(clients)
        )
        + f"state_dir: {root / 'state'}\n"
        + "prep: {listen: '127.0.0.1:0', public_url: 'https://cadence.acme.test'}\n"
    )
    ledger = Ledger.open(root / "state")
    start = NOW + timedelta(hours=20)
    tokens = []
    with ledger.transaction():
        for i in range(clients):
            rep = f"rep{i}@acme.test"
            grant = Grant(Role.REP, rep, rep, "maya@acme.test", "America/Chicago", start,
                          start + timedelta(minutes=30))  # fmt: skip
            tokens.append(preread.issue(ledger, grant, f"s{i} {start:%Y-%m-%dT%H:%M:%SZ}", NOW))
        old = NOW - timedelta(days=2)
        expired = preread.issue(
            ledger,
            Grant(
                Role.REP,
                "rep0@acme.test",
                "rep0@acme.test",
                "maya@acme.test",
                "America/Chicago",
                old,
                old + timedelta(minutes=30),
            ),  # fmt: skip
            f"s0 {old:%Y-%m-%dT%H:%M:%SZ}",
            old,
        )
    ledger.close()
    return config, tokens, expired


def client(host: str, port: int, path: str, n: int, out: list[float], size: list[int]) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for _ in range(n):
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()  # returns once the status line and headers are in
            first_byte = time.perf_counter() - started
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"GET answered {response.status}")
            out.append(first_byte)
            size.append(len(body))
    finally:
        conn.close()


def timed(host: str, port: int, path: str, want: int, n: int = 200) -> float:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            times.append(time.perf_counter() - started)
            response.read()
            if response.status != want:
                raise SystemExit(f"{path[:12]}... answered {response.status}, not {want}")
    finally:
        conn.close()
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    args = parser.parse_args()
    logs.configure(stream=open("/dev/null", "w"))  # noqa: SIM115 - for the whole run
    with tempfile.TemporaryDirectory() as tmp:
        config_path, tokens, expired = setup(Path(tmp), args.clients)
        config = load(config_path)
        assert config.settings.prep is not None
        with PrepServer(
            lambda: config, config.settings.prep.address, Renderer(), lambda: NOW
        ) as server:
            host, port = server.sock.getsockname()[:2]
            # Warm up: the ledger connection and the templates.
            timed(host, port, f"/prep/{tokens[0]}", 200, n=5)
            ttfb: list[float] = []
            sizes: list[int] = []
            threads = [
                threading.Thread(
                    target=client, args=(host, port, f"/prep/{t}", args.requests, ttfb, sizes)
                )
                for t in tokens
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            unknown = timed(host, port, "/prep/" + "A" * 43, 404)
            gone = timed(host, port, f"/prep/{expired}", 410)
    ttfb.sort()
    total = len(ttfb)
    print(f"form page: {max(sizes)} bytes of HTML (inline CSS, no script, no other request)")
    print(
        f"{args.clients} concurrent clients x {args.requests} GETs = {total} requests in "
        f"{wall:.2f} s ({total / wall:.0f} requests/s)"
    )
    print(
        "time to first byte: "
        f"median {statistics.median(ttfb) * 1000:.1f} ms, "
        f"p95 {ttfb[int(total * 0.95) - 1] * 1000:.1f} ms, max {ttfb[-1] * 1000:.1f} ms"
    )
    print(
        f"unknown link (404): median {unknown * 1000:.2f} ms; expired (410): {gone * 1000:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
