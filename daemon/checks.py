"""What ``cadence doctor`` reports: one row per check, made by the part that knows how to check.

Each calendar provider and mailer answers ``diagnose`` with these rows, next to its own code, so
a new provider brings its own checks. A check never writes: probes are reads, token requests,
or writes built to be refused (a CalDAV ``PUT`` with an ``If-Match`` nothing matches).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    check: str  # what was checked, e.g. "calendar writable"
    subject: str  # whom or what: a manager, the sender, the key file
    ok: bool
    detail: str = ""  # what was found, or what to do about it
