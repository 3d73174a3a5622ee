"""Deliver emails through an SMTP server (STARTTLS, implicit TLS or plain), with login.

One connection per message, so a server that went away between two sends leaves no stuck
state behind. Every ``smtplib``, ``ssl`` and socket error is translated here: a refusal that may
pass later (4xx, connection refused, reset, timeout, a dropped connection, a failed login) is
``MailUnavailable`` and the email stays due; a permanent refusal of this message (5xx for every
recipient, or for its content) is ``MailRejected``. Messages name the server as ``host:port``
and never carry the password.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Any, Literal

from daemon import logs
from daemon.checks import Check
from daemon.errors import MailError, MailRejected, MailUnavailable

Security = Literal["starttls", "tls", "none"]


class SmtpMailer:
    """A ``Mailer`` talking to ``host:port``; login only when ``username`` is given."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        read_timeout: float | None = None,
    ) -> None:
        """``timeout`` bounds connecting, ``read_timeout`` (default the same) each reply."""
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"unknown SMTP security {security!r}; use starttls, tls or none")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.read_timeout = read_timeout or timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpMailer({self.host}:{self.port}, security={self.security})"

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` to the To, Cc and Bcc addresses in its headers."""
        client: smtplib.SMTP | None = None
        try:
            client = self._connect()
            refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._translate(exc, message) from None
        finally:
            if client is not None:
                _close(client)
        if refused:
            # Delivered to the others; a retry would send them a second copy, so this is logged.
            logs.get().warning(
                "some recipients refused",
                action="email",
                server=self.server,
                message_id=str(message["Message-ID"]),
                refused=_describe_refused(refused),
            )

    def diagnose(self) -> list[Check]:
        """Connect, secure and log in as a send would, then quit without a message."""
        try:
            _close(self._connect())
        except (smtplib.SMTPException, OSError) as exc:
            probe = EmailMessage()
            probe["Message-ID"] = "<doctor>"
            return [Check("mail server", self.server, False, str(self._translate(exc, probe)))]
        return [Check("mail server", self.server, True, f"security {self.security}")]

    def _connect(self) -> smtplib.SMTP:
        context = self._ssl_context or ssl.create_default_context()
        client: smtplib.SMTP
        if self.security == "tls":
            client = _SMTP_SSL(self.host, self.read_timeout, timeout=self.timeout, context=context)
        else:
            client = _SMTP(self.host, self.read_timeout, timeout=self.timeout)
        try:
            client.connect(self.host, self.port)
            if self.security == "starttls":
                client.starttls(context=context)
            if self.username is not None:
                client.login(self.username, self._password or "")
        except BaseException:
            _close(client)
            raise
        return client

    def _translate(self, exc: smtplib.SMTPException | OSError, message: EmailMessage) -> MailError:
        error = self._describe(exc, message)
        if self._password:
            error = error.replace(self._password, "[redacted]")
        permanent = isinstance(exc, smtplib.SMTPRecipientsRefused) and all(
            code >= 500 for code, _ in exc.recipients.values()
        )
        if isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500:
            permanent = True
        cls = MailRejected if permanent else MailUnavailable
        return cls(f"mail server {self.server} {error}")

    def _describe(self, exc: smtplib.SMTPException | OSError, message: EmailMessage) -> str:
        message_id = str(message["Message-ID"])
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            if not exc.recipients:
                return f"got no recipient for {message_id}"
            return f"refused the recipients of {message_id}: {_describe_refused(exc.recipients)}"
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return f"refused the sender {exc.sender}: {_reply(exc.smtp_code, exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPDataError):
            return f"refused {message_id}: {_reply(exc.smtp_code, exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return (
                f"refused the login of {self.username!r}: {_reply(exc.smtp_code, exc.smtp_error)}"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"answered {_reply(exc.smtp_code, exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc):
            return f"did not answer within {max(self.timeout, self.read_timeout):g}s"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"closed the connection: {_one_line(str(exc)) or 'no reason given'}"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return f"cannot be used as configured: {_one_line(str(exc))}"
        if isinstance(exc, smtplib.SMTPException):
            return f"failed: {_one_line(str(exc))}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"has a TLS certificate we do not trust: {exc.verify_message or exc.reason}"
        if isinstance(exc, ssl.SSLError):
            if exc.reason == "WRONG_VERSION_NUMBER":
                return "does not speak TLS on this port (is its security starttls or none?)"
            return f"TLS failed: {exc.reason or _one_line(str(exc))}"
        if isinstance(exc, TimeoutError):
            return f"did not answer within {max(self.timeout, self.read_timeout):g}s"
        if isinstance(exc, ConnectionRefusedError):
            return "refused the connection (is it running?)"
        if isinstance(exc, ConnectionResetError):
            return "reset the connection"
        return f"cannot be reached: {exc.strerror or _one_line(str(exc))}"


class _ReadTimeout:
    """An ``smtplib`` client with one timeout for connecting (its own) and another for each
    reply; mixed in before ``smtplib.SMTP`` or ``smtplib.SMTP_SSL``."""

    def __init__(self, host: str, read_timeout: float, **kwargs: Any) -> None:
        self.read_timeout = read_timeout
        super().__init__(**kwargs)
        self._host = host  # what STARTTLS checks the certificate against, as SMTP(host) sets

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        sock.settimeout(self.read_timeout)
        return sock


class _SMTP(_ReadTimeout, smtplib.SMTP):
    pass


class _SMTP_SSL(_ReadTimeout, smtplib.SMTP_SSL):  # noqa: N801 - smtplib's name
    pass


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the message went or failed already; a bad QUIT changes neither
    finally:
        client.close()


def _describe_refused(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {_reply(code, reply)}" for addr, (code, reply) in refused.items())


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {_one_line(text)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
