"""The agenda block cadence owns inside an event description, and the commitment in it.

People write in invites too. cadence owns only the text between ``BEGIN_MARKER`` and
``END_MARKER``; everything else is theirs and is kept byte for byte. The block carries a
``Commitment:`` line for the manager or rep to fill in; a filled line survives a re-render and is
read back after the meeting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BEGIN_MARKER = "=== cadence agenda: begin (this block is rewritten by cadence) ==="
END_MARKER = "=== cadence agenda: end (write your own notes below) ==="
COMMITMENT_LABEL = "Commitment:"

_BLOCK = re.compile(re.escape(BEGIN_MARKER) + r".*?" + re.escape(END_MARKER), re.DOTALL)
_COMMITMENT = re.compile(r"^[ \t]*" + re.escape(COMMITMENT_LABEL) + r"[ \t]*(.*?)[ \t]*$", re.M)


@dataclass(frozen=True)
class Blocks:
    """Minutes of the 30-60-30 frame (number / skill / commitment) for one meeting length."""

    number: int
    skill: int
    commitment: int


def blocks_for(duration_minutes: int) -> Blocks:
    """Scale 10 / 15 / 5 minutes (seed 000) to the meeting's length, keeping the ratio.

    Every part keeps at least 3 minutes; the skill block absorbs rounding so the parts add up.
    """
    number = max(3, round(duration_minutes * 10 / 30))
    commitment = max(3, round(duration_minutes * 5 / 30))
    skill = max(3, duration_minutes - number - commitment)
    return Blocks(number=number, skill=skill, commitment=commitment)


def extract_block(description: str) -> str | None:
    """The agenda block (markers included), or None when the description has none."""
    match = _BLOCK.search(description)
    return match.group(0) if match else None


def read_commitment(description: str) -> str | None:
    """The filled-in ``Commitment:`` of the agenda block, or None when blank or absent."""
    block = extract_block(description)
    if block is None:
        return None
    match = _COMMITMENT.search(block)
    if match is None:
        return None
    text = match.group(1).strip()
    return text or None


def wrap(body: str) -> str:
    """Put a rendered agenda body between the markers."""
    return f"{BEGIN_MARKER}\n{body.strip()}\n{END_MARKER}"


def splice(description: str, block: str) -> str:
    """Return ``description`` with its agenda block replaced by ``block`` (already wrapped).

    Without a block, ``block`` goes first and the person's text follows after a blank line. A
    commitment someone filled into the old block is carried into the new one.
    """
    kept = read_commitment(description)
    if kept is not None:
        block = _COMMITMENT.sub(lambda _m: f"{COMMITMENT_LABEL} {kept}", block, count=1)
    if _BLOCK.search(description):
        return _BLOCK.sub(lambda _m: block, description, count=1)
    rest = description.strip("\n")
    return f"{block}\n\n{rest}" if rest else block
