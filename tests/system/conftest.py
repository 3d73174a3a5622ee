from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from daemon.embedded import EmbeddedRadicale
from tests.fixtures.graph import FakeGraph
from tests.system.harness import Deployment, OutlookDeployment

_ids = itertools.count(1)


@pytest.fixture(params=["caldav", "outlook"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    """A fresh deployment with its own managers' calendars: on the shared Radicale, or on
    Microsoft 365 played by the local Graph (whose CA and client secret the daemon, in-process
    or as a subprocess, gets from the environment, as an admin would give them)."""
    n = next(_ids)
    managers = [f"maya{n}@acme.test", f"raj{n}@acme.test"]
    if request.param == "caldav":
        radicale: EmbeddedRadicale = request.getfixturevalue("radicale")
        return Deployment(tmp_path, radicale.url, managers)
    graph: FakeGraph = request.getfixturevalue("graph")
    graph.open_domain = "acme.test"
    monkeypatch.setenv("CADENCE_GRAPH_SECRET", graph.client_secret)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_file))
    return OutlookDeployment(tmp_path, graph.url, managers, graph=graph)
