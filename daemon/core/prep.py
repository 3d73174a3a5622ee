"""The pre-read people file through their personal form (seed 001), as values and rules.

The rep files three lines (the deal they are stuck on, the skill to sharpen, the question for
the manager), the manager one observation, one piece of context and one question. What is filed
lands in the invite's agenda block as plain text, so the rules here keep it one line a field,
short, and unable to break the block: control characters go, runs of ``=`` that could forge the
block's markers are shortened. The decision to warn a manager of a missing pre-read lives here
too, so it is tested without a clock or a ledger.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

MAX_FIELD_CHARS = 500


class Role(StrEnum):
    REP = "rep"
    MANAGER = "manager"


# (field name, label shown on the form and in the invite), in the order seed 001 gives them.
FIELDS: Mapping[Role, tuple[tuple[str, str], ...]] = {
    Role.REP: (
        ("stuck_deal", "The deal I'm stuck on"),
        ("skill", "The skill I want to sharpen"),
        ("question", "My question for my manager"),
    ),
    Role.MANAGER: (
        ("observation", "One observation from a call or email"),
        ("context", "One piece of context"),
        ("question", "One question"),
    ),
}

_BREAKS = re.compile(r"[\r\n\t\u2028\u2029\x0b\x0c\x85]+")
_MARKER_RUN = re.compile(r"={3,}")


@dataclass(frozen=True)
class PrepPolicy:
    """``prep:`` as the planner needs it: configured at all, and when to warn the manager."""

    check: timedelta = timedelta(hours=2)


@dataclass(frozen=True)
class Grant:
    """What the executor needs to make one person's form link for one occurrence: the token
    is valid until the occurrence ends."""

    role: Role
    person: str
    rep: str
    manager: str
    timezone: str
    start: datetime
    end: datetime


class FieldTooLong(ValueError):
    def __init__(self, name: str, length: int) -> None:
        super().__init__(f"{name}: {length} characters, at most {MAX_FIELD_CHARS}")
        self.name = name
        self.length = length


def clean(text: str) -> str:
    """One field as it is stored: line breaks and tabs become one space, every other control
    character is removed, runs of three or more ``=`` (the agenda markers' start) are cut to
    two, and the ends are trimmed."""
    text = _BREAKS.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    text = _MARKER_RUN.sub("==", text)
    return text.strip()


def clean_fields(role: Role, submitted: Mapping[str, str]) -> tuple[str, ...]:
    """The role's fields from a submitted form, cleaned, in order; a missing field is empty.
    Raises ``FieldTooLong`` naming the first field over ``MAX_FIELD_CHARS`` once cleaned."""
    out = []
    for name, _label in FIELDS[role]:
        value = clean(submitted.get(name, ""))
        if len(value) > MAX_FIELD_CHARS:
            raise FieldTooLong(name, len(value))
        out.append(value)
    return tuple(out)


def labelled(role: Role, lines: Sequence[str]) -> list[tuple[str, str]]:
    """(label, text) of the fields that were filled, for the agenda."""
    return [(label, text) for (_n, label), text in zip(FIELDS[role], lines, strict=False) if text]


def filed(lines: Sequence[str] | None) -> bool:
    return bool(lines) and any(line.strip() for line in lines or ())


def missing_due(
    now: datetime,
    start: datetime,
    policy: PrepPolicy | None,
    *,
    asked_at: datetime | None,
    rep_lines: Sequence[str] | None,
    warned: bool,
) -> bool:
    """Whether the manager is warned now that the rep's pre-read is missing: ``prep`` is
    configured, the meeting starts within ``check`` and has not started, the rep was sent
    their form link before that window opened (a rep asked an hour before has not had their
    chance), filed nothing, and the manager was not warned about this occurrence before."""
    if policy is None or warned or asked_at is None or filed(rep_lines):
        return False
    opens = start - policy.check
    return asked_at < opens <= now < start
