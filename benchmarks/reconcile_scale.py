"""What does one reconcile pass cost for a big roster against a real CalDAV server?

    .venv/bin/python benchmarks/reconcile_scale.py [--reps N] [--at ISO-8601]

Starts one embedded Radicale on 127.0.0.1 in a temporary directory, writes a config for N reps
(default 1,000; eight per manager, the roster of ``plan_scale.py``) and runs, at one fixed
instant and on one runtime as ``cadence run`` does:

* a cold pass: empty calendars and ledger, so every calendar and every series is created;
* a warm pass: nothing changed since, so nothing may be written or sent;
* a warm pass on a fresh runtime, as a second ``cadence once`` would run it.

For each it prints the wall time, the HTTP requests by kind, the calendar writes and emails the
pass reports, and the peak memory; and beside the request count the floor, the fewest requests
any CalDAV client could make for what the pass did, with the ratio (the goal: at most 1.05).
The floor: for a calendar that does not exist yet, one look that finds it missing, the MKCOL
of its missing parent (a new manager's home, on Radicale), the MKCALENDAR and one REPORT for a
sync token; for one that exists, one REPORT; one PUT per series created; a GET and a PUT per
series ended or agenda rewritten. The promise being checked: "a warm pass must be one
sync-collection request per manager calendar and no writes". A figure to watch, not a timed
test; the exit status is non-zero only when that promise (or a pass without errors) is broken.
"""

from __future__ import annotations

import argparse
import io
import json
import mailbox
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from plan_scale import roster

from daemon import logs
from daemon.config import Config, load
from daemon.embedded import EmbeddedRadicale
from daemon.providers.caldav import CalDAVProvider
from daemon.reconcile import PassResult, Runtime, run_pass, runtime

# A Saturday, 07:00 in New York: every 1:1 falls on a weekday, so the first occurrences are more
# than a day away everywhere (Sydney's Monday 09:00 is 34 hours later) and no pre-read or recap is
# due yet. The figures are then about the calendar, not the outbox.
DEFAULT_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WRITE_METHODS = {"PUT", "DELETE", "MKCALENDAR", "MKCOL", "PROPPATCH", "POST", "MOVE", "COPY"}


def config_data(size: int, root: Path, url: str) -> dict[str, Any]:
    """The YAML config: ``plan_scale``'s roster (8 reps a manager, roles, start dates and zones
    mixed) on this Radicale, with the ledger and the Maildir outbox under ``root``."""
    r = roster(size)
    managers = [m.model_dump(mode="json", exclude_none=True) for m in r.managers]
    known = {m["email"] for m in managers}
    reps = [rep.model_dump(mode="json", exclude_none=True) for rep in r.reps]
    for rep in reps:  # the last team of a size that is not a multiple of 8
        if rep["manager"] not in known:
            known.add(rep["manager"])
            number = rep["manager"].split("@")[0].lstrip("m")
            managers.append(
                {"email": rep["manager"], "name": f"Manager {number}", "timezone": rep["timezone"]}
            )
    return {
        "organization": r.organization.model_dump(mode="json", exclude_none=True),
        "managers": managers,
        "reps": reps,
        "state_dir": str(root / "state"),
        # One whole pass is what is measured: no deadline cuts it on a slow machine.
        "interval_seconds": 3600,
        "calendar": {"caldav": {"url": url}},
        "mail": {"maildir": str(root / "outbox"), "from": "cadence <cadence@bench.test>"},
    }


@dataclass
class Requests:
    """Every HTTP request the provider sends, seen from the session's ``pre_request`` hook."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (kind, collection path)

    def hook(self, request: Any, **_: Any) -> Any:
        method = str(request.method).upper()
        kind = method
        if method == "REPORT":
            body = request.body or b""
            text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
            if "sync-collection" in text:
                kind = "REPORT sync"
            elif "calendar-multiget" in text:
                kind = "REPORT multiget"
        path = unquote(urlsplit(str(request.url)).path)
        collection = path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"
        self.sent.append((kind, collection))
        return request

    def kinds(self) -> Counter[str]:
        return Counter(kind for kind, _ in self.sent)


@dataclass
class Figures:
    name: str
    seconds: float
    cpu_seconds: float  # this process only: planning, iCalendar, HTTP client; not Radicale
    requests: Requests
    result: PassResult
    events: Counter[str]
    mailbox_total: int
    rss_mib: float
    floor: int = 0

    @property
    def ratio(self) -> float:
        return len(self.requests.sent) / self.floor if self.floor else float("nan")


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _radicale_peak_mib(server: EmbeddedRadicale) -> float | None:
    """Radicale's peak resident memory (Linux ``VmHWM``), or None where it cannot be read."""
    process = getattr(server, "_process", None)
    if process is None:
        return None
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**10
    return None


@contextmanager
def observed(rt: Runtime) -> Iterator[Requests]:
    """Record the requests of ``rt``'s provider while the block runs."""
    provider = getattr(rt.provider, "inner", rt.provider)  # behind its breaker
    if not isinstance(provider, CalDAVProvider):
        raise SystemExit("reconcile_scale: the benchmark needs the CalDAV provider")
    requests = Requests()
    hooks = provider._client.session.hooks["pre_request"]
    hooks.append(requests.hook)
    before = provider.requests_made
    try:
        yield requests
    finally:
        hooks.remove(requests.hook)
    if provider.requests_made - before != len(requests.sent):
        raise SystemExit(
            f"reconcile_scale: the provider counted {provider.requests_made - before} requests,"
            f" the benchmark {len(requests.sent)}"
        )


def floor(result: PassResult, calendars: int, new_calendars: int) -> int:
    """The fewest requests for what ``result`` did (the module's docstring says how)."""
    return (
        4 * new_calendars
        + (calendars - new_calendars)
        + result.created
        + 2 * (result.ended + result.agendas)
    )


def one_pass(
    name: str, rt: Runtime, at: datetime, outbox: Path, calendars: int, new_calendars: int = 0
) -> Figures:
    log = io.StringIO()
    logs.configure(stream=log, json=True)
    with observed(rt) as requests:
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_pass(rt, at)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    events: Counter[str] = Counter()
    for line in log.getvalue().splitlines():
        event = json.loads(line)
        label = str(event.get("event"))
        if label == "email sent":
            label = f"email {event.get('kind')}"
        events[label] += 1
    total = len(mailbox.Maildir(outbox, create=False)) if outbox.exists() else 0
    return Figures(
        name, seconds, cpu, requests, result, events, total, _peak_rss_mib(),
        floor(result, calendars, new_calendars),
    )  # fmt: skip


def report(figures: list[Figures], reps: int, managers: int) -> None:
    print("wall s = the pass; cpu s = cadence's own share (the rest is mostly Radicale);")
    print("writes and emails as the pass reports them; peak MiB = this process's peak RSS;")
    print("cold and warm share one runtime, as `cadence run` does; 'warm, new rt' opens a fresh")
    print("one, as a second `cadence once` at the same instant would")
    print(f"{'pass':<16} {'wall s':>8} {'cpu s':>7} {'requests':>9} {'floor':>6} {'ratio':>6} "
          f"{'req/rep':>8} {'writes':>7} {'emails':>7} {'errors':>7} {'peak MiB':>9}")  # fmt: skip
    for f in figures:
        sent = len(f.requests.sent)
        print(f"{f.name:<16} {f.seconds:>8.2f} {f.cpu_seconds:>7.2f} {sent:>9} {f.floor:>6} "
              f"{f.ratio:>6.2f} {sent / reps:>8.2f} {f.result.writes:>7} {f.result.emails:>7} "
              f"{len(f.result.errors):>7} {f.rss_mib:>9.1f}")  # fmt: skip
    for f in figures:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(f.requests.kinds().items())) or "none"
        print(f"  {f.name}: requests: {kinds}")
        actions = {k: n for k, n in f.events.items() if k != "pass done"}
        done = ", ".join(f"{k} {n}" for k, n in sorted(actions.items())) or "nothing"
        print(f"  {f.name}: logged: {done}")
        for error in f.result.errors[:3] + f.result.alarms[:3]:
            print(f"  {f.name}: ! {error}")
    print(f"  outbox after all passes: {figures[-1].mailbox_total} messages; "
          f"{managers} managers, {reps} reps")  # fmt: skip


def warm_problems(f: Figures, calendars: set[str]) -> list[str]:
    """Why ``f`` is not "one sync-collection request per manager calendar and no writes"."""
    problems: list[str] = []
    per_calendar = Counter(c for kind, c in f.requests.sent if kind == "REPORT sync")
    others = Counter(kind for kind, _ in f.requests.sent if kind != "REPORT sync")
    if others:
        listed = ", ".join(f"{n} {k}" for k, n in sorted(others.items()))
        problems.append(f"requests other than sync-collection: {listed}")
    missing = sorted(calendars - per_calendar.keys())
    if missing:
        problems.append(f"{len(missing)} manager calendars not synced, e.g. {missing[0]}")
    repeated = {c: n for c, n in per_calendar.items() if n != 1}
    if repeated:
        c, n = next(iter(repeated.items()))
        problems.append(f"{len(repeated)} calendars synced more than once, e.g. {c} {n} times")
    strangers = sorted(per_calendar.keys() - calendars)
    if strangers:
        problems.append(f"sync-collection on {len(strangers)} unknown collections: {strangers[0]}")
    if f.result.writes:
        problems.append(f"{f.result.writes} calendar writes reported")
    http_writes = sum(n for k, n in f.requests.kinds().items() if k in WRITE_METHODS)
    if http_writes:
        problems.append(f"{http_writes} HTTP write requests")
    if f.result.emails:
        problems.append(f"{f.result.emails} emails sent")
    if f.result.errors or f.result.alarms:
        problems.append(f"{len(f.result.errors)} errors, {len(f.result.alarms)} alarms")
    return [f"{f.name}: {p}" for p in problems]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000, help="roster size (default 1000)")
    parser.add_argument(
        "--at",
        type=datetime.fromisoformat,
        default=DEFAULT_AT,
        help=f"the instant of every pass (default {DEFAULT_AT.isoformat()})",
    )
    args = parser.parse_args(argv)
    at: datetime = args.at if args.at.tzinfo else args.at.replace(tzinfo=UTC)
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
        root = Path(tmp)
        with EmbeddedRadicale(root / "radicale", port=0) as server:
            data = config_data(args.reps, root, server.url)
            config_path = root / "cadence.yaml"
            config_path.write_text(yaml.safe_dump(data, sort_keys=False))
            config: Config = load(config_path)
            outbox = root / "outbox"
            calendar_path = config.settings.calendar.caldav.calendar_path
            calendars = {
                "/" + calendar_path.format(manager=m.email).strip("/") + "/"
                for m in config.roster.managers
            }
            print(f"reconcile pass at {at.isoformat()}: {len(config.roster.reps)} reps, "
                  f"{len(calendars)} manager calendars, Radicale at {server.url}")  # fmt: skip
            figures: list[Figures] = []
            with runtime(config) as rt:  # one runtime across passes, as `cadence run` keeps
                n = len(calendars)
                figures.append(one_pass("cold", rt, at, outbox, n, new_calendars=n))
                figures.append(one_pass("warm", rt, at, outbox, n))
            with runtime(config) as rt:  # a second `cadence once` at the same instant
                figures.append(one_pass("warm, new rt", rt, at, outbox, n))
            radicale_mib = _radicale_peak_mib(server)
        logs.configure()

    report(figures, len(config.roster.reps), len(calendars))
    if radicale_mib is not None:
        print(f"  Radicale peak resident memory: {radicale_mib:.1f} MiB")
    cold = figures[0]
    created = cold.events.get("series created", 0)
    # A rep whose stage changes within the agenda horizon gets the next stage's series too;
    # one whose current stage has no meeting left gets only that one.
    print(f"  series created: {created} for {len(config.roster.reps)} reps")
    problems = [f"cold: {e}" for e in cold.result.errors + cold.result.alarms]
    if cold.ratio > 1.05:
        problems.append(f"cold: {len(cold.requests.sent)} requests, {cold.ratio:.2f}x the floor "
                        f"({cold.floor}); the goal is at most 1.05x")  # fmt: skip
    for warm in figures[1:]:
        problems += warm_problems(warm, calendars)
    if problems:
        sys.stdout.flush()
        print("FAIL: a warm pass must be one sync-collection request per manager calendar "
              "and no writes", file=sys.stderr)  # fmt: skip
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"OK: each warm pass is exactly one sync-collection REPORT per manager calendar "
          f"({len(calendars)}), no writes, no emails")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.pop("CADENCE_TEST_FAULT", None)  # a leftover crash point would kill the run
    sys.exit(main())
