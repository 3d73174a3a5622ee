"""A rep's open opportunities as the deal-review agenda lists them.

Seed 003: "2-3 minutes per deal, 8-10 active opportunities". A CRM metrics source may offer
each rep's open deals; the agenda lists the ten closing soonest, one line each. Names and stages
come from a CRM anyone can type into, and land in an invite: they are reduced to one plain line
(no control characters, no line breaks, nothing that reads as cadence's agenda markers) before
any template sees them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

LISTED = 10  # seed 003: 8-10 active opportunities in a 20-minute review
MAX_TEXT = 80

_SPACES = re.compile(r"\s+")


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


def plain(text: str) -> str:
    """One printable line of at most ``MAX_TEXT`` characters."""
    kept = "".join(
        " " if unicodedata.category(ch).startswith(("C", "Z")) else ch for ch in str(text)
    )
    line = _SPACES.sub(" ", kept).replace("===", "= = =").strip()
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 1].rstrip() + "…"


def soonest(deals: Iterable[Opportunity], limit: int = LISTED) -> tuple[Opportunity, ...]:
    """The ``limit`` deals closing soonest (then by name, so the list is stable)."""
    return tuple(sorted(deals, key=lambda d: (d.close_date, plain(d.name).lower()))[:limit])


def amount_text(amount: float | None) -> str:
    if amount is None:
        return "no amount"
    return f"{amount:,.0f}"


def deal_lines(deals: Iterable[Opportunity]) -> list[dict[str, str]]:
    """What the agenda template shows of each deal, already made safe to print."""
    return [
        {
            "name": plain(d.name) or "(no name)",
            "amount": amount_text(d.amount),
            "stage": plain(d.stage) or "(no stage)",
            "close_date": d.close_date.isoformat(),
        }
        for d in soonest(deals)
    ]
