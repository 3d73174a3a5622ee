"""The short soak in ``make test``: a quarter of simulated days on CalDAV, every invariant
checked after every day (see ``tests/soak/sim.py``), and the same soak for two weeks on Google
Calendar and on Outlook (their local servers), which is as much as ``make test`` can afford.
``make soak`` runs a year on 20 seeds (``SOAK_PROVIDER=google`` or ``outlook`` for the others).

``CADENCE_SOAK_SEEDS`` (e.g. ``1,2``), ``CADENCE_SOAK_DAYS`` and ``CADENCE_SOAK_OTHER_DAYS``
change what runs here; a failure prints the seed and the command that replays it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.soak.__main__ import describe
from tests.soak.sim import soak

SEEDS = [int(s) for s in os.environ.get("CADENCE_SOAK_SEEDS", "1").split(",") if s]
DAYS = int(os.environ.get("CADENCE_SOAK_DAYS", "91"))
OTHER_DAYS = int(os.environ.get("CADENCE_SOAK_OTHER_DAYS", "14"))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_quarter_of_people_and_faults_breaks_no_invariant(seed: int, tmp_path: Path) -> None:
    figures = soak(seed, DAYS, tmp_path / f"seed{seed}")
    print(describe(figures, f"seed {seed}"))
    replay = f"replay: python -m tests.soak --seed {seed} --days {DAYS} --keep /tmp/soak"
    assert figures.violations == [], "\n".join([*figures.violations[:10], replay])
    assert figures.days == DAYS
    # It really was a soak: people acted, faults fired, and the checks had things to check.
    assert sum(figures.edits.values()) > DAYS // 4
    assert sum(figures.faults.values()) > 0 and figures.sigkills > 0
    assert figures.checks["occurrences"] > 0 and figures.checks["cancellations"] > 0


@pytest.mark.parametrize("provider", ["google", "outlook"])
def test_two_weeks_on_google_and_outlook_break_no_invariant(provider: str, tmp_path: Path) -> None:
    # The same soak, a fortnight on one seed: what `make test` affords on top of the quarter.
    seed = SEEDS[0]
    figures = soak(seed, OTHER_DAYS, tmp_path / provider, provider)
    print(describe(figures, f"seed {seed} on {provider}"))
    replay = (
        f"replay: python -m tests.soak --provider {provider} --seed {seed} --days {OTHER_DAYS}"
        " --keep /tmp/soak"
    )
    assert figures.violations == [], "\n".join([*figures.violations[:10], replay])
    assert figures.days == OTHER_DAYS
    assert sum(figures.edits.values()) > 0 and sum(figures.faults.values()) > 0
    assert figures.checks["occurrences"] > 0 and figures.checks["edits"] > 0
