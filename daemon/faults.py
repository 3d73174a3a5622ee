"""Test-only fault points: crash the process at a chosen write step.

The crash-safety tests set ``CADENCE_TEST_FAULT=<point>`` (optionally ``<point>#<n>`` for the
n-th time the point is reached) and the process SIGKILLs itself there, exactly as a power cut
would. Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CADENCE_TEST_FAULT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
