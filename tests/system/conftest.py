from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from daemon.embedded import EmbeddedRadicale
from tests.fixtures.google import FakeGoogle
from tests.system.harness import Deployment, GoogleDeployment

_ids = itertools.count(1)


@pytest.fixture(params=["caldav", "google"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    """A fresh deployment with its own managers' calendars, on the shared Radicale or on the
    local Google Calendar server; every system test using it runs on both."""
    if request.param == "google":
        n = next(_ids)
        google: FakeGoogle = request.getfixturevalue("google_server")
        return GoogleDeployment(tmp_path, "", [f"gmaya{n}@acme.test", f"graj{n}@acme.test"],
                                google=google)  # fmt: skip
    radicale: EmbeddedRadicale = request.getfixturevalue("radicale")
    return caldav_deployment(tmp_path, radicale)


def caldav_deployment(tmp_path: Path, radicale: EmbeddedRadicale) -> Deployment:
    n = next(_ids)
    return Deployment(tmp_path, radicale.url, [f"maya{n}@acme.test", f"raj{n}@acme.test"])
