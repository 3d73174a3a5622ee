from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from daemon.embedded import EmbeddedRadicale
from tests.system.harness import Deployment

_ids = itertools.count(1)


@pytest.fixture
def deployment(tmp_path: Path, radicale: EmbeddedRadicale) -> Deployment:
    """A fresh deployment with its own managers' calendars on the shared Radicale."""
    n = next(_ids)
    return Deployment(tmp_path, radicale.url, [f"maya{n}@acme.test", f"raj{n}@acme.test"])
