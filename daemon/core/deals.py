"""A rep's open opportunities, as a CRM metrics source gives them for the pipeline review.

The same definitions as on the pipeline-review branch (issue 17), which builds the agenda that
lists them; the metrics sources only produce them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Opportunity:
    """One open deal of a rep, as a CRM source gives it."""

    rep: str  # lower-case email
    name: str
    amount: float | None
    stage: str
    close_date: date


# rep -> their open opportunities; None: no source offers opportunities
Opportunities = Mapping[str, tuple[Opportunity, ...]]
