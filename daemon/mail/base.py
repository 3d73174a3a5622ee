"""The mail contract: one verb, ``send``, behind which Maildir, SMTP, Gmail and Graph sit.

A transport never decides whether an email is due or was already sent; the email ledger does.
Errors leave a transport only as ``MailUnavailable`` (try again on a later pass) or
``MailRejected`` (this message will never go).
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from daemon.checks import Check


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver one fully built message (headers, multipart text + HTML)."""

    def diagnose(self) -> list[Check]:
        """Whether messages could go (for ``cadence doctor``), checked without sending."""
