"""What does one reconcile pass cost on Microsoft 365, for 1,000 reps under 125 managers?

    .venv/bin/python benchmarks/graph_scale.py [--reps N] [--at ISO-8601]

Starts the local identity platform and Graph of the tests (``tests/fixtures/graph.py``: HTTPS
on 127.0.0.1 with a throwaway CA, every body checked against the msgraph-sdk models), writes a
config for N reps (``plan_scale.py``'s roster, 8 per manager) with ``calendar.provider:
outlook``, and runs on one runtime, as ``cadence run`` does:

* a cold pass: empty mailboxes and ledger, every series created;
* a warm pass: nothing changed since;
* a warm pass after one occurrence per manager was deleted in Outlook (no delta signal);
* the first pass of a restarted daemon (a new process on the same ledger): warm too.

For each: Graph round trips (a ``$batch`` counts once), the Graph calls they carry, the most
requests one mailbox had in flight at once, and cadence's own CPU (the main thread: planning,
JSON, the HTTP client; not the local Graph, which runs in other threads). The goals: a warm
pass is one delta request per manager plus ⌈series ÷ 20⌉ batched master reads (a deleted
occurrence is only seen there); a cold pass within 1.2 × (managers + ⌈calls ÷ 20⌉) round
trips; never more than 4 concurrent requests per mailbox. Figures, not a timed test.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from plan_scale import roster

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon import logs  # noqa: E402
from daemon.config import load  # noqa: E402
from daemon.reconcile import PassResult, run_pass, runtime  # noqa: E402
from tests.fixtures.graph import FakeGraph  # noqa: E402

DEFAULT_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday: nothing due in the outbox


def config_data(size: int, root: Path, graph: FakeGraph) -> dict[str, Any]:
    r = roster(size)
    managers = [m.model_dump(mode="json", exclude_none=True) for m in r.managers]
    known = {m["email"] for m in managers}
    reps = [rep.model_dump(mode="json", exclude_none=True) for rep in r.reps]
    for rep in reps:
        if rep["manager"] not in known:
            known.add(rep["manager"])
            managers.append({"email": rep["manager"], "name": rep["manager"].split("@")[0]})
    return {
        "organization": r.organization.model_dump(mode="json", exclude_none=True),
        "managers": managers,
        "reps": reps,
        "state_dir": str(root / "state"),
        "calendar": {
            "provider": "outlook",
            "outlook": {
                "tenant_id": graph.tenant,
                "client_id": graph.client_id,
                "authority_host": graph.url,
                "graph_endpoint": graph.url,
            },
        },
        "mail": {"maildir": str(root / "outbox"), "from": "cadence <cadence@acme.test>"},
    }


def measure(name: str, graph: FakeGraph, work: Any) -> tuple[PassResult, dict[str, Any]]:
    trips, calls = graph.round_trips, len(graph.requests)
    graph.max_concurrent.clear()
    cpu, wall = time.thread_time(), time.perf_counter()
    result: PassResult = work()
    figures = {
        "pass": name,
        "round trips": graph.round_trips - trips,
        "calls": len(graph.requests) - calls,
        "by kind": Counter(
            f"{m} {p.split('/')[3] if p.count('/') > 2 else p}" for m, p in graph.requests[calls:]
        ),
        "max in flight per mailbox": max(graph.max_concurrent.values(), default=0),
        "cadence CPU s": round(time.thread_time() - cpu, 2),
        "wall s": round(time.perf_counter() - wall, 2),
        "writes": result.writes,
        "errors": len(result.errors),
    }
    return result, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--at", type=datetime.fromisoformat, default=DEFAULT_AT)
    args = parser.parse_args()
    logs.configure(stream=io.StringIO())  # the passes' own log lines are not the figures
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        graph = FakeGraph(root)
        graph.open_domain = "acme.test"
        graph.start()
        try:
            os.environ["CADENCE_GRAPH_SECRET"] = graph.client_secret
            os.environ["REQUESTS_CA_BUNDLE"] = str(graph.ca_file)
            path = root / "cadence.yaml"
            path.write_text(yaml.safe_dump(config_data(args.reps, root, graph)))
            config = load(path)
            managers = len(config.roster.managers)
            rows = []
            with runtime(config) as rt:
                cold, figures = measure("cold", graph, lambda: run_pass(rt, args.at))
                rows.append(figures)
                _, figures = measure("warm", graph, lambda: run_pass(rt, args.at))
                rows.append(figures)
                series = sum(len(graph.live_events(m.email)) for m in config.roster.managers)
                for m in config.roster.managers:  # a person deletes one occurrence each
                    stored = graph.live_events(m.email)[0]
                    stored.cancelled.add((args.at + timedelta(days=9)).date())
                _, figures = measure("warm, deletions", graph, lambda: run_pass(rt, args.at))
                rows.append(figures)
            with runtime(config) as rt:  # a new process on the same ledger
                _, figures = measure("warm, restarted", graph, lambda: run_pass(rt, args.at))
                rows.append(figures)
        finally:
            graph.stop()
    for row in rows:
        kinds = row.pop("by kind")
        print("  ".join(f"{k}: {v}" for k, v in row.items()))
        print("    " + ", ".join(f"{k} {n}" for k, n in kinds.most_common(8)))
    floor_warm = managers + sum(
        math.ceil(len(graph.live_events(m.email)) / 20) for m in config.roster.managers
    )
    cold_goal = 1.2 * (managers + math.ceil(rows[0]["calls"] / 20))
    print(f"managers {managers}, series {series}")
    print(f"warm floor (delta + batched master reads per manager): {floor_warm} round trips;"
          f" warm measured {rows[1]['round trips']}")  # fmt: skip
    print(f"cold goal 1.2 x (managers + calls/20) = {cold_goal:.0f}; measured"
          f" {rows[0]['round trips']}")  # fmt: skip
    broken = rows[1]["writes"] or rows[1]["errors"] or cold.errors
    broken = broken or any(r["max in flight per mailbox"] > 4 for r in rows)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
