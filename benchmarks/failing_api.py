"""What does a pass cost when Google's or Graph's API answers every request with an error, slowly?

    .venv/bin/python benchmarks/failing_api.py [--managers 20 125] [--slow 20] [--providers ...]

An outage of Google Calendar or Microsoft Graph looks like this from the client: each request
answered after many seconds with a 504 (Google) or a 503 (Graph). The clients retry (Google 5
attempts with back-off, each part of a batch alone; Graph 5 attempts on a 503), so without a
bound one pass would last many minutes. For each provider and roster size (eight reps a
manager, ``plan_scale``'s roster) this starts the test suite's fake (``tests/fixtures``),
makes every API request wait ``--slow`` seconds and then fail, and runs two passes as two
``cadence once`` would (``interval_seconds`` 60: the pass deadline is 60 s), printing the wall
time, the API requests sent, the exit code and the pass's first line. A figure to watch, not a
timed test: the exit status is non-zero when a pass outlived its deadline by more than the
request in flight when it passed (and as much again for the rest of the pass's work).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from reconcile_scale import config_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daemon import logs  # noqa: E402
from daemon.config import load  # noqa: E402
from daemon.reconcile import run_pass, runtime  # noqa: E402
from tests.fixtures import google as google_fixture  # noqa: E402
from tests.fixtures.google import FakeGoogle, Fault  # noqa: E402
from tests.fixtures.graph import FakeGraph  # noqa: E402

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INTERVAL = 60


def slow_google(slow: float) -> FakeGoogle:
    """The fake Calendar API with every API request (not the token endpoint) held ``slow`` s."""

    def held(handle: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(self: Any) -> None:
            if not self.path.startswith("/token"):
                time.sleep(slow)
            handle(self)

        return run

    handler = google_fixture._Handler
    if not getattr(handler, "held", False):
        for verb in ("do_GET", "do_POST", "do_PATCH", "do_PUT", "do_DELETE"):
            setattr(handler, verb, held(getattr(handler, verb)))
        handler.held = True  # type: ignore[attr-defined]
    return FakeGoogle().start()


class Unavailable:
    """A fault plan for the fake Graph: every API request held ``slow`` s, then a 503."""

    def __init__(self, slow: float) -> None:
        self.slow = slow
        self.requests = 0

    def next_fault(self, request: str) -> str | None:
        if " /v1.0/" not in request:
            return None
        self.requests += 1
        time.sleep(self.slow)
        return "http_503"

    def hold(self) -> None:
        pass


def measure(provider: str, managers: int, slow: float, root: Path) -> list[str]:
    data = config_data(managers * 8, root, "")
    data["interval_seconds"] = INTERVAL
    count: Callable[[], int]
    stop: Callable[[], None]
    if provider == "google":
        fake = slow_google(slow)
        key = fake.write_key(root / "key.json")
        data["calendar"] = {
            "provider": "google",
            "google": {"credentials_file": str(key), "api_endpoint": fake.url},
        }
        for manager in data["managers"]:
            fake.add_user(manager["email"])
            fake.fail(Fault(504, "backendError", times=1_000_000, user=manager["email"]))

        def count() -> int:
            return fake.round_trips - len(fake.tokens)

        stop = fake.stop
    else:
        graph = FakeGraph(root)
        graph.start()
        plan = Unavailable(slow)
        graph.faults = plan
        os.environ["CADENCE_GRAPH_SECRET"] = graph.client_secret
        os.environ["REQUESTS_CA_BUNDLE"] = str(graph.ca_file)
        data["calendar"] = graph.calendar_config()
        for manager in data["managers"]:
            graph.add_mailbox(manager["email"])

        def count() -> int:
            return plan.requests

        stop = graph.stop
    problems: list[str] = []
    try:
        path = root / "cadence.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load(path)
        found = len(config.roster.managers)
        for name in ("first pass", "next pass"):
            logs.configure(stream=io.StringIO(), json=True)
            before = count()
            started = time.perf_counter()
            with runtime(config) as rt:  # a new runtime: as `cadence once`, run twice
                result = run_pass(rt, AT)
            seconds = time.perf_counter() - started
            sent = count() - before
            logs.configure()
            print(
                f"{provider:>8} {found:>9} {name:<11} {seconds:>8.1f} {sent:>9}"
                f" {result.exit_code:>5}  {result.errors[0] if result.errors else '-'}"
            )
            if seconds > INTERVAL + 2 * slow:
                problems.append(
                    f"{provider}, {found} managers, {name}: {seconds:.0f} s, {sent} requests"
                )
    finally:
        stop()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--managers", type=int, nargs="+", default=[20, 125])
    parser.add_argument(
        "--slow",
        type=float,
        default=20.0,
        help="seconds each API request takes before failing (default 20)",
    )
    parser.add_argument(
        "--providers", nargs="+", default=["google", "outlook"], choices=["google", "outlook"]
    )
    args = parser.parse_args(argv)
    print(
        f"every API request fails after {args.slow:g} s (Google 504, Graph 503); "
        f"interval_seconds {INTERVAL}: a pass deadline of {INTERVAL} s"
    )
    print(
        f"{'provider':>8} {'managers':>9} {'pass':<11} {'wall s':>8} {'requests':>9} "
        f"{'exit':>5}  the line"
    )
    problems: list[str] = []
    for provider in args.providers:
        for managers in args.managers:
            with tempfile.TemporaryDirectory(prefix="cadence-failing-") as tmp:
                problems += measure(provider, managers, args.slow, Path(tmp))
    if problems:
        print("FAIL: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("OK: every pass within its deadline and the request in flight")
    return 0


if __name__ == "__main__":
    os.environ.pop("CADENCE_TEST_FAULT", None)
    sys.exit(main())
