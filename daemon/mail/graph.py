"""Deliver emails through Microsoft Graph: ``POST /users/{from}/sendMail`` with the MIME message.

The shared builder's message goes as it is (base64 MIME), so the X-Cadence headers and the
Message-ID arrive unchanged. Graph answers 202 once it has accepted a message, which is not
delivery; it has no idempotency key. A 429/503 is retried after Retry-After (nothing was taken).
A 504 may still have sent: it is reported as unavailable and never resent here; the email
ledger keeps the email due and a later pass decides, so there is no blind resend loop. A
refusal of this message (400: bad recipients or content) is ``MailRejected`` and not retried.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.utils import getaddresses

from daemon.checks import Check
from daemon.errors import AuthError, MailRejected, MailUnavailable, NotFound, ProviderError
from daemon.graph_http import GraphClient, Request, error_of


class GraphMailer:
    """A ``Mailer`` sending as the mailbox of the message's From address."""

    def __init__(self, client: GraphClient, sender: str = "") -> None:
        self.client = client
        self.sender = sender  # mail.from, for ``diagnose``

    def diagnose(self) -> list[Check]:
        """Mail.Send granted and the sending mailbox there; nothing is sent."""
        sender = (getaddresses([self.sender])[0][1] if self.sender else "") or "mail.from"
        granted = "Mail.Send" in self.client.roles()
        rows = [Check("permissions", "Mail.Send", granted,
                      "granted" if granted else "grant Mail.Send (application) and admin-consent"
                      " it, scoped to the sending mailbox")]  # fmt: skip
        try:
            self.client.call(Request("GET", f"/users/{sender}/mailboxSettings"), ok=(200,))
            rows.append(Check("sender mailbox", sender, True, "reachable"))
        except AuthError:
            # Refused rather than unknown: the mailbox is there; reading its settings takes
            # MailboxSettings.Read, which sending does not need.
            rows.append(Check("sender mailbox", sender, True, "exists"))
        except ProviderError as err:
            rows.append(Check("sender mailbox", sender, False, str(err)))
        return rows

    def __repr__(self) -> str:
        return f"GraphMailer({self.client.settings.graph_endpoint})"

    def send(self, message: EmailMessage) -> None:
        senders = getaddresses([str(message["From"] or "")])
        sender = senders[0][1] if senders else ""
        if not sender:
            raise MailRejected("a message without a From address cannot go through Graph")
        request = Request(
            "POST",
            f"/users/{sender}/sendMail",
            body=base64.b64encode(message.as_bytes()),
            headers={"Content-Type": "text/plain"},
        )
        message_id = str(message["Message-ID"])
        try:
            response = self.client.call(request, ok=(200, 202, 400, 504))
        except (AuthError, NotFound) as err:
            raise MailUnavailable(f"Graph cannot send as {sender}: {err}") from None
        except ProviderError as err:  # throttled past the retries, 5xx, unreachable
            raise MailUnavailable(f"Graph did not take {message_id}: {err}") from None
        if response.status == 504:
            raise MailUnavailable(
                f"Graph timed out on {message_id} (504); it may have been sent, so it is not"
                " resent now"
            )
        if response.status == 400:
            code, text = error_of(response)
            raise MailRejected(f"Graph refused {message_id} for good ({code}: {text})")
