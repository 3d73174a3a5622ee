"""``cadence doctor``: can cadence do its job with this config, before the first pass?

Builds the calendar provider and the mailer exactly as ``run`` does, asks each to ``diagnose``
(per manager for the calendar), and prints one row per check an admin can act on. Nothing is
written anywhere: the checks are reads, token requests and refused probes (``daemon.checks``).
Exit 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

from daemon.checks import Check
from daemon.config import Config
from daemon.errors import CadenceError, ConfigError


def diagnose(config: Config) -> list[Check]:
    from daemon.reconcile import open_calendar, open_mailer

    settings = config.settings
    provider_name = settings.calendar.provider
    rows: list[Check] = []
    with ExitStack() as stack:
        if provider_name == "caldav" and settings.calendar.caldav.url is None:
            rows.append(Check("calendar", "embedded", True, "Radicale on loopback, started by run"))
        else:
            try:
                provider = open_calendar(config, stack)
            except ConfigError as exc:
                rows += [Check("calendar settings", provider_name, False, p) for p in exc.problems]
            else:
                rows.append(Check("calendar settings", provider_name, True, _credentials(config)))
                for manager in config.roster.managers:
                    rows += _guarded(partial(provider.diagnose, manager.email), manager.email)
        try:
            mailer = open_mailer(config)
        except ConfigError as exc:
            rows += [
                Check("mail settings", settings.mail.transport, False, p) for p in exc.problems
            ]
        else:
            rows += _guarded(mailer.diagnose, settings.mail.transport)
    rows += _metrics(config)
    return rows


def _metrics(config: Config) -> list[Check]:
    """The metrics source readable, and a figure for each metric the stages inspect today."""
    from daemon.metrics.check import check

    today = datetime.now(ZoneInfo(config.roster.organization.timezone)).date()
    rows = [Check("metrics", subject, ok, detail) for subject, ok, detail in check(config, today)]
    return rows + _crm_failing(config)


def _crm_failing(config: Config) -> list[Check]:
    """What the daemon has met: a CRM it keeps failing to read, from the ledger (read only)."""
    from daemon.metrics.cache import METRICS, OPPORTUNITIES, failing
    from daemon.store import Ledger, utc_iso

    if config.settings.metrics is None:
        return []
    try:
        ledger = Ledger.open_readonly(config.settings.state_dir)
    except CadenceError:
        return []  # the ledger's own trouble is not the CRM's; the daemon says it
    if ledger is None:
        return []
    rows = []
    try:
        last = ledger.metrics_read()
        kept = f"the last numbers, read {last.read_at}, stay" if last else "no numbers read yet"
        for what in (METRICS, OPPORTUNITIES):
            state = failing(ledger, what)
            if state is not None:
                rows.append(Check("metrics", f"{what} reads", False,
                                  f"{state.failures} failed reads since {utc_iso(state.since)} "
                                  f"({state.error}); next try {utc_iso(state.retry_at)}; "
                                  f"{kept}"))  # fmt: skip
    finally:
        ledger.close()
    return rows


def _credentials(config: Config) -> str:
    google = config.settings.calendar.google
    if config.settings.calendar.provider == "google" and google is not None:
        return f"key {google.credentials_file} readable (0600)"
    return ""


def _guarded(work: Callable[[], list[Check]], subject: str) -> list[Check]:
    try:
        rows = work()
    except CadenceError as exc:
        return [Check("reachable", subject, False, str(exc))]
    return rows


def render(rows: Sequence[Check]) -> str:
    table = [("CHECK", "SUBJECT", "RESULT", "DETAIL")]
    table += [(r.check, r.subject, "ok" if r.ok else "FAIL", r.detail) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]]).rstrip()
        for row in table
    ]
    failed = sum(not r.ok for r in rows)
    lines.append(f"{failed} to fix" if failed else "all good")
    return "\n".join(lines)
