"""Reading the metrics source into the ledger, and the ledger's values into the core's ``Weekly``.

A pass never waits on a CRM: the source is read only when its data may have changed (a CSV's
bytes) or every ``refresh_hours`` (a CRM), for all reps at once, and the whole read replaces the
cache in one transaction. A read that fails (a bad row, a CRM down) leaves the last good numbers
in place, and the daemon says so in its log.

A CRM that cannot be read is not asked again at every pass: the waits after failed reads grow
from five minutes, doubling, up to ``refresh_hours``, and are kept in the ledger so that a restart
does not start them over (an org's daily API allowance is shared by all its integrations).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.config import Config, MetricsSettings
from daemon.core.metrics import Weekly
from daemon.metrics.base import MetricsSource, MetricsUnavailable, WeeklyTable
from daemon.metrics.csvfile import CsvSource
from daemon.store import Ledger, MetricsRead, utc_iso

FIRST_WAIT = timedelta(minutes=5)  # after a failed CRM read; doubled after each one
METRICS, OPPORTUNITIES = "metrics", "opportunities"  # the reads a CRM source serves


@dataclass(frozen=True)
class Failing:
    """A CRM read that keeps failing: how often, since when, the last error, the next try."""

    failures: int
    since: datetime
    error: str
    retry_at: datetime


def failing(ledger: Ledger, what: str) -> Failing | None:
    raw = ledger.get_flag(f"failing:{what}")
    if raw is None:
        return None
    data = json.loads(raw)
    return Failing(
        failures=int(data["failures"]),
        since=datetime.fromisoformat(data["since"].replace("Z", "+00:00")),
        error=str(data["error"]),
        retry_at=datetime.fromisoformat(data["retry_at"].replace("Z", "+00:00")),
    )


def waiting(ledger: Ledger, what: str, now: datetime) -> bool:
    """True while a failed read's wait runs: the CRM is not asked."""
    state = failing(ledger, what)
    return state is not None and now < state.retry_at


def failed(ledger: Ledger, what: str, now: datetime, error: str, hours: float) -> Failing:
    """Note one more failed read, and when to try again."""
    last = failing(ledger, what)
    failures = 1 if last is None else last.failures + 1
    wait = min(FIRST_WAIT * 2 ** min(failures - 1, 20), timedelta(hours=hours))
    state = Failing(failures, now if last is None else last.since, error, now + wait)
    value = {"failures": state.failures, "since": utc_iso(state.since), "error": error,
             "retry_at": utc_iso(state.retry_at)}  # fmt: skip
    ledger.set_flag(f"failing:{what}", json.dumps(value))
    return state


def recovered(ledger: Ledger, what: str) -> Failing | None:
    """A read went through: the waits end. Returns how it had been failing, if it had."""
    last = failing(ledger, what)
    if last is not None:
        ledger.set_flag(f"failing:{what}", None)
    return last


def open_source(
    config: Config, clock: Callable[[], datetime] | None = None
) -> MetricsSource | None:
    """The configured source; ``clock`` tells a CRM source which weeks are over."""
    settings = config.settings.metrics
    if settings is None:
        return None
    zone = ZoneInfo(config.roster.organization.timezone)
    fiscal = config.roster.organization.fiscal_year_start
    if settings.source == "salesforce":
        from daemon.metrics.salesforce import SalesforceSource

        assert settings.salesforce is not None
        return SalesforceSource(settings.salesforce, zone, clock, fiscal_year_start=fiscal)
    if settings.source == "hubspot":
        from daemon.metrics.hubspot import HubspotSource

        return HubspotSource(settings.hubspot, zone, clock, fiscal_year_start=fiscal)
    return CsvSource(csv_path(config, settings))


def csv_path(config: Config, settings: MetricsSettings) -> Path:
    path = settings.csv.path
    return path if path.is_absolute() else config.path.parent / path


def asked(config: Config) -> tuple[frozenset[str], dict[str, float]]:
    """What a read asks the source for: the roster's reps, and the quotas of those who have one.
    A CRM is read every ``refresh_hours``, so a quota changed in the roster shows by then."""
    reps = config.roster.reps
    quotas = {r.email: r.quarterly_quota for r in reps if r.quarterly_quota is not None}
    return frozenset(r.email for r in reps), quotas


def refresh(config: Config, ledger: Ledger, source: MetricsSource, now: datetime) -> bool:
    """Read ``source`` into the ledger when it is due (and no failed read's wait runs); True
    when the cache changed. Raises ``MetricsUnusable`` / ``MetricsUnavailable`` with the cache
    left as it was; ``failing`` then tells how often the CRM has failed and when it is tried
    again."""
    assert config.settings.metrics is not None
    last = ledger.metrics_read()
    version = source.version()
    if last is not None and last.source == source.label:
        if version is not None and version == last.version:
            return False
        if version is None:
            read_at = datetime.fromisoformat(last.read_at.replace("Z", "+00:00"))
            if now - read_at < timedelta(hours=config.settings.metrics.refresh_hours):
                return False
    if version is None and waiting(ledger, METRICS, now):
        return False
    # The whole source is checked before the ledger is touched.
    try:
        table = source.read(*asked(config))
    except MetricsUnavailable as exc:
        failed(ledger, METRICS, now, str(exc), config.settings.metrics.refresh_hours)
        raise
    read = MetricsRead(
        source=source.label,
        version=version,
        through=table.through.isoformat() if table.through else None,
        read_at=utc_iso(now),
    )
    ledger.replace_metrics(read, table.to_bytes())
    recovered(ledger, METRICS)
    return True


def weekly(ledger: Ledger, source: MetricsSource) -> Weekly:
    """The cached values. Nothing read yet: no values, every week not in yet."""
    last = ledger.metrics_read()
    blob = ledger.metrics_table() if last is not None else None
    if last is None or blob is None:
        return Weekly(source=source.label, values={}, through=None, unavailable=source.cannot)
    table = WeeklyTable.from_bytes(blob)
    return Weekly(
        source=last.source,
        values=table,
        through=table.through,
        read_at=datetime.fromisoformat(last.read_at.replace("Z", "+00:00")),
        unavailable=source.cannot,
    )


def read_now(source: MetricsSource, config: Config) -> Weekly:
    """The source's values straight from it, for the commands that touch nothing (``plan``);
    raises ``MetricsUnusable`` like a pass would meet it."""
    table = source.read(*asked(config))
    return Weekly(
        source=source.label, values=table, through=table.through, unavailable=source.cannot
    )
