"""Deliver emails through Gmail (``users.messages.send``), as the ``mail.from`` mailbox.

The same service account as the calendar, acting (domain-wide delegation) as the sending
mailbox with only the ``gmail.send`` scope. The message the shared builder made is sent as is
(``raw``, base64url of its RFC 5322 bytes), so the multipart body and the X-Cadence headers
arrive unchanged. Gmail has no idempotency key: the email ledger is what keeps a send to once.
A refusal of this message (400: a bad recipient or header) is ``MailRejected`` and not retried;
rate limits and server errors are retried with back-off (``daemon.google_api``), then
``MailUnavailable`` keeps the email due, as does a missing delegation.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from daemon.checks import Check
from daemon.config import Settings
from daemon.errors import ConfigError, MailError, MailRejected, MailUnavailable
from daemon.google_api import GMAIL, GMAIL_SCOPES, CallFailed, GoogleApi, load_key
from daemon.mail.message import parse_address


class GmailMailer:
    """A ``Mailer`` sending as ``sender`` (an address of the Workspace domain)."""

    def __init__(
        self,
        key_info: Mapping[str, Any],
        sender: str,
        *,
        root: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self.sender = sender
        self.api = GoogleApi(key_info, GMAIL, GMAIL_SCOPES, root=root, sleep=sleep, timeout=timeout)

    def __repr__(self) -> str:
        return f"GmailMailer({self.sender})"

    def send(self, message: EmailMessage) -> None:
        raw = base64.urlsafe_b64encode(message.as_bytes()).decode()
        try:
            self.api.call(
                self.sender,
                lambda s: s.users().messages().send(userId="me", body={"raw": raw}),
            )
        except CallFailed as failed:
            raise self._translate(failed, message) from None

    def diagnose(self) -> list[Check]:
        try:
            self.api.token(self.sender)
        except CallFailed as failed:
            return [Check("gmail send", self.sender, False, str(failed))]
        return [Check("gmail send", self.sender, True, "gmail.send granted")]

    def _translate(self, failed: CallFailed, message: EmailMessage) -> MailError:
        where = f"Gmail as {self.sender}"
        if failed.kind == "http" and not failed.transient and failed.status in (400, 404):
            return MailRejected(
                f"{where} refused {message['Message-ID']} for good ({failed.status}: {failed})"
            )
        if failed.kind == "http" and failed.status in (401, 403) and not failed.rate_limited:
            return MailUnavailable(
                f"{where}: not allowed ({failed.status}: {failed}); grant the service account "
                f"domain-wide delegation for {', '.join(GMAIL_SCOPES)}"
            )
        return MailUnavailable(f"{where}: {failed}")


def open_gmail(config_path: Path, settings: Settings) -> GmailMailer:
    """The mailer ``mail.transport: gmail`` describes: the key of ``mail.gmail`` or, by default,
    the calendar's service account; ``ConfigError`` (one line) when there is none."""
    gmail = settings.mail.gmail
    key_file = gmail.credentials_file
    what = "mail.gmail.credentials_file"
    if key_file is None and settings.calendar.google is not None:
        key_file, what = (
            settings.calendar.google.credentials_file,
            "calendar.google.credentials_file",
        )
    if key_file is None:
        raise ConfigError(
            [f"{config_path}: mail.transport: gmail needs a service-account key: set "
             "calendar.google.credentials_file or mail.gmail.credentials_file"]
        )  # fmt: skip
    try:
        sender = parse_address(settings.mail.sender).addr_spec
    except ValueError as exc:
        raise ConfigError([f"{config_path}: mail.from: {exc}"]) from None
    return GmailMailer(
        load_key(key_file, what), sender, root=gmail.api_endpoint, timeout=gmail.timeout_seconds
    )
