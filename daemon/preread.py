"""Form links and filed pre-reads in the ledger: the shell side of ``daemon.core.prep``.

A link ``{public_url}/prep/{token}`` is the only credential a rep or a manager has for their
form, so the token is 256 random bits from ``secrets``, and only its SHA-256 is stored: a copy
of the ledger lets nobody file for anyone. It works until the occurrence ends. The form's CSRF
token is an HMAC of the link's hash under a key kept in the ledger (so forms stay valid across
restarts), which ties a form to the one link it was served for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from daemon.core.prep import Grant
from daemon.store import Ledger, PrepToken, utc_iso

TOKEN_BYTES = 32  # 256 bits; the issue asks for 128 at least
_CSRF_FLAG = "prep_csrf_key"


class Verdict(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue(ledger: Ledger, grant: Grant, occurrence: str, now: datetime) -> str:
    """A new link token for ``grant``; the ledger keeps its hash. Call inside a transaction."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    ledger.add_prep_token(
        PrepToken(
            hash=token_hash(token), occurrence=occurrence, role=grant.role.value,
            person=grant.person, rep=grant.rep, manager=grant.manager, timezone=grant.timezone,
            start=utc_iso(grant.start), expires_at=utc_iso(grant.end), created_at=utc_iso(now),
        )
    )  # fmt: skip
    return token


@dataclass(frozen=True)
class Checked:
    verdict: Verdict
    record: PrepToken | None


def verify(ledger: Ledger, token: str, now: datetime) -> Checked:
    """Unknown and expired tokens cost the same: one lookup by hash, whatever the token."""
    record = ledger.prep_token(token_hash(token))
    if record is None:
        return Checked(Verdict.UNKNOWN, None)
    if utc_iso(now) >= record.expires_at:
        return Checked(Verdict.EXPIRED, record)
    return Checked(Verdict.OK, record)


def csrf_key(ledger: Ledger) -> bytes:
    """The ledger's CSRF key, made on first use."""
    with ledger.transaction():
        stored = ledger.get_flag(_CSRF_FLAG)
        if stored is None:
            stored = secrets.token_hex(32)
            ledger.set_flag(_CSRF_FLAG, stored)
    return bytes.fromhex(stored)


def csrf_token(key: bytes, record: PrepToken) -> str:
    return hmac.new(key, record.hash.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, record: PrepToken, submitted: str) -> bool:
    return hmac.compare_digest(csrf_token(key, record), submitted)


def save(ledger: Ledger, record: PrepToken, lines: tuple[str, ...], now: datetime) -> None:
    with ledger.transaction():
        ledger.put_preread(record.occurrence, record.start, record.role, json.dumps(lines), now)


def filed(ledger: Ledger, record: PrepToken) -> tuple[str, ...]:
    lines = ledger.preread(record.occurrence, record.role)
    return tuple(json.loads(lines)) if lines is not None else ()


def read_filed(ledger: Ledger, since: datetime) -> dict[str, dict[str, tuple[str, ...]]]:
    """occurrence -> role -> lines, of occurrences from ``since`` on (the planner's view)."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for occurrence, role, lines in ledger.prereads(since=since):
        out.setdefault(occurrence, {})[role] = tuple(json.loads(lines))
    return out
