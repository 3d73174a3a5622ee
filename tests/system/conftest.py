from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.fixtures.google import FakeGoogle
from tests.fixtures.graph import FakeGraph
from tests.fixtures.radicale import CalDAVServer
from tests.system.harness import Deployment, GoogleDeployment, OutlookDeployment

_ids = itertools.count(1)


@pytest.fixture(params=["caldav", "caldav-xandikos", "google", "outlook"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    """A fresh deployment with its own managers' calendars, on the shared Radicale, on the
    local Google Calendar server or on Microsoft 365 played by the local Graph (whose CA and
    client secret the daemon, in-process or as a subprocess, gets from the environment, as an
    admin would give them); every system test using it runs on all four (CalDAV on Radicale
    and on Xandikos)."""
    if request.param == "outlook":
        n = next(_ids)
        graph: FakeGraph = request.getfixturevalue("graph")
        graph.open_domain = "acme.test"
        monkeypatch.setenv("CADENCE_GRAPH_SECRET", graph.client_secret)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_file))
        return OutlookDeployment(tmp_path, graph.url, [f"omaya{n}@acme.test",
                                 f"oraj{n}@acme.test"], graph=graph)  # fmt: skip
    if request.param == "google":
        n = next(_ids)
        google: FakeGoogle = request.getfixturevalue("google_server")
        return GoogleDeployment(tmp_path, "", [f"gmaya{n}@acme.test", f"graj{n}@acme.test"],
                                google=google)  # fmt: skip
    server: CalDAVServer = request.getfixturevalue(
        "xandikos" if request.param == "caldav-xandikos" else "radicale"
    )
    return caldav_deployment(tmp_path, server)


def caldav_deployment(tmp_path: Path, server: CalDAVServer) -> Deployment:
    n = next(_ids)
    return Deployment(tmp_path, server.url, [f"maya{n}@acme.test", f"raj{n}@acme.test"])
