"""The project's own errors.

Every third-party exception (HTTP, socket, SMTP, SQLite) is translated into one of these at the
boundary where it is raised, so the reconcile loop and the CLI decide what to do from a small,
stable vocabulary: back off, skip this rep, or stop and tell a person.
"""

from __future__ import annotations


class CadenceError(Exception):
    """Base class; ``str(err)`` is one line a person can act on."""


class ConfigError(CadenceError):
    """The configuration cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ProviderError(CadenceError):
    """Raised by a calendar provider; never a third-party exception."""


class Transient(ProviderError):
    """Worth retrying later: server down, 5xx, connection reset, timeout."""


class RateLimited(Transient):
    """The server asked us to slow down; ``retry_after`` is in seconds when it said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(ProviderError):
    """The calendar, series or occurrence does not exist (any more)."""


class Conflict(ProviderError):
    """Someone changed the object since we read it (412), or the id already exists (409)."""


class AuthError(ProviderError):
    """Credentials missing, wrong or without the needed permission (401/403)."""


class TokenExpired(ProviderError):
    """A sync token is no longer valid (Google 410, CalDAV valid-sync-token); resync in full."""


class MailError(CadenceError):
    """Base class for mail transport errors."""


class MailUnavailable(MailError):
    """The mail server refused or dropped us; the email stays due and goes on a later pass."""


class MailRejected(MailError):
    """The server refused this message for good (bad recipient); retrying will not help."""


class Locked(CadenceError):
    """Another process holds the state dir's lock (one writer per state dir)."""


class TemplateProblem(CadenceError):
    """A template cannot be loaded or rendered; the message names the template and line."""


class SafetyValve(CadenceError):
    """A write that would be destructive or mass-scale was refused; a person must look."""


class Skipped(CadenceError):
    """Mixed into the error an open breaker (or the pass deadline) raises instead of calling the
    server: the work is skipped, not failed, and the one line saying why is in the pass summary
    already, so whoever catches it says nothing more."""

    endpoint: str


class EndpointDown(Skipped, Transient):
    """A calendar endpoint's breaker is open: its remaining work waits for the next pass."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class MailEndpointDown(Skipped, MailUnavailable):
    """The mail endpoint's breaker is open: the emails stay due for the next pass."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint
