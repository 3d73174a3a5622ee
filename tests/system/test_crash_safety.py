"""SIGKILL the pass at every write step, rerun, and count: nothing duplicated, nothing lost.

The fault points are test-only (``CADENCE_TEST_FAULT``, see ``daemon/faults.py``): the process
kills itself exactly there, as a power cut would, in a real subprocess.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.system.harness import Deployment
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
# Sunday 22 Nov, noon in New York: Lee's Monday 09:00 (Chicago) 1:1 is inside the pre-read window.
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)


def _env(point: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CADENCE_TEST_FAULT"}
    if point:
        env["CADENCE_TEST_FAULT"] = point
    return env


@pytest.mark.parametrize(
    "point",
    ["series-pending#1", "series-created#2", "agendas-written#1", "email-sent#1",
     "series-ended#1"],
)  # fmt: skip
def test_killed_at_a_write_step_then_rerun_leaves_one_of_everything(
    deployment: Deployment, point: str
) -> None:
    maya, _ = setup(deployment)
    # Build up state that makes the write at ``point`` happen in the killed pass: the series
    # exist and a person typed in a block (an agenda rewrite), or Lee, who has met once, leaves
    # the roster (his series is ended). A first pass creates series and sends due pre-reads.
    when = T0
    if point in ("agendas-written#1", "series-ended#1"):
        assert deployment.cli("once", "--now", T0.isoformat(), env=_env(None)).returncode == 0
        sam = deployment.rep_series(maya, "sam@acme.test")[0]
        deployment.edit_texts(maya, sam.uid, lambda text: text.replace("Number", "Numbr"))
        when = T0 + timedelta(hours=1)
    if point == "series-ended#1":
        lines = deployment.config_path.read_text().splitlines(keepends=True)
        deployment.config_path.write_text("".join(x for x in lines if "lee@acme.test" not in x))
        when = T0 + timedelta(days=2)  # Tuesday: Lee's Monday 1:1 is history to keep

    killed = deployment.cli("once", "--now", when.isoformat(), env=_env(point))
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    rerun = deployment.cli("once", "--now", when.isoformat(), env=_env(None))
    assert rerun.returncode == 0, rerun.stderr
    settled = deployment.cli("once", "--now", when.isoformat(), env=_env(None))
    assert settled.returncode == 0

    # One series per rep and stage, each UID once.
    series = list(deployment.series(maya).values())
    per_rep_stage = Counter(
        (next(a.email for a in s.attendees if a.email != maya), s.rrule, s.until is None)
        for s in series
    )
    assert all(n == 1 for n in per_rep_stage.values()), per_rep_stage
    assert {"sam@acme.test", "lee@acme.test", "ana@acme.test"} <= {k[0] for k in per_rep_stage}
    if point == "series-ended#1":
        (lee,) = deployment.rep_series(maya, "lee@acme.test")
        assert lee.until == (T0 + timedelta(days=1)).date()  # ended, kept as history
    # Each email once: (occurrence, kind, recipients) never repeats in the outbox.
    sent = Counter(
        (m["X-Cadence-Occurrence"], m["X-Cadence-Kind"], m["To"]) for m in deployment.mail()
    )
    assert sent and all(n == 1 for n in sent.values()), sent
    # Nothing lost: the pre-reads due at that instant all went.
    prereads = {m["To"] for m in deployment.mail_of("preread")}
    assert {"lee@acme.test", maya} <= prereads
