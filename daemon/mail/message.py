"""Build the one kind of email cadence sends, the same way for every transport.

Every email is multipart/alternative (plain text, then HTML, both UTF-8) and says what it is about
in headers a script can read: ``X-Cadence-Kind`` and ``X-Cadence-Occurrence``. Its Message-ID is
derived from (kind, occurrence, recipients) only, never from the clock, so a send retried after a
crash is recognisably the same email: the Maildir transport keeps one copy, and a person's mail
client threads or drops the duplicate.

Headers are built by the ``email`` package from parsed values, never by pasting strings (the
occurrence, checked to be one line of printable ASCII, is stored unfolded so filters see it
whole). Header injection is handled like this: a line break in the *subject* (free text rendered
from a template an admin may edit) is folded into a single space, so a stray newline can neither
add a header nor block the email; a line break in an address, the kind or the occurrence
(identifiers that come from validated configuration and the planner) is a bug and raises
``ValueError``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default

KINDS = frozenset(
    {
        "preread", "recap", "cancellation", "week11_skip", "rate_warning", "series_restored",
        "admin_alert", "preread_missing",
    }
)  # fmt: skip

# Bodies are 7bit, quoted-printable or base64, so no relay without 8BITMIME mangles them.
# refold_source="none" only concerns headers set raw: X-Cadence-Occurrence, which must reach
# scripts and mail filters in one piece (Python's parser keeps the fold's space in the value).
POLICY = default.clone(cte_type="7bit", refold_source="none")

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    text: str,
    html: str,
    kind: str,
    occurrence: str,
    now: datetime,
) -> EmailMessage:
    """The complete message; ``now`` (aware) becomes its Date header.

    Raises ``ValueError`` for an unknown kind, an occurrence that is not one line of printable
    ASCII, a naive ``now``, no To recipient, or an address that is not exactly one valid address
    (a line break in one included).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}; expected one of {sorted(KINDS)}")
    if not (occurrence.isascii() and occurrence.isprintable() and 0 < len(occurrence) < 900):
        raise ValueError(f"an occurrence is one line of printable ASCII, not {occurrence!r}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the Date of an email needs an aware datetime")
    if not to:
        raise ValueError("an email needs at least one To recipient")
    from_address = parse_address(sender)
    to_addresses = [parse_address(a) for a in to]
    cc_addresses = [parse_address(a) for a in cc]

    message = EmailMessage(policy=POLICY)
    message["From"] = from_address
    message["To"] = to_addresses
    if cc_addresses:
        message["Cc"] = cc_addresses
    message["Subject"] = _LINE_BREAKS.sub(" ", subject).strip()
    message["Date"] = now
    message["Message-ID"] = message_id(kind, occurrence, [*to_addresses, *cc_addresses])
    message["X-Cadence-Kind"] = kind
    message.set_raw("X-Cadence-Occurrence", occurrence)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def message_id(kind: str, occurrence: str, recipients: Sequence[Address]) -> str:
    """``<32 hex@cadence>`` from what the email is about and who gets it, never from when."""
    people = sorted({a.addr_spec.lower() for a in recipients})
    key = "\0".join([kind, occurrence, *people])
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@cadence>"


def parse_address(value: str) -> Address:
    """One address, with or without a display name (``Maya Chen <maya@acme.test>``)."""
    _one_line("address", value)
    try:
        header = POLICY.header_factory("To", value)
    except (HeaderParseError, IndexError):  # the stdlib parser trips on some malformed input
        raise ValueError(f"not a single valid email address: {value!r}") from None
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if len(addresses) != 1 or header.defects or not addresses[0].domain:
        raise ValueError(f"not a single valid email address: {value!r}")
    parsed: Address = addresses[0]
    return Address(parsed.display_name, parsed.username, parsed.domain)


def _one_line(what: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {what} of an email: {value!r}")
