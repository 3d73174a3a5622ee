"""What ``cadence doctor`` says about the metrics source: can it be read, and does it have a
figure for every metric the roster's stages inspect today? A metric with no figure for a rep is
named with the reps, so the admin fixes the export before managers see "no figure" in invites.
"""

from __future__ import annotations

from datetime import date

from daemon.config import Config
from daemon.core.model import Metric
from daemon.core.policy import spans_on
from daemon.metrics.base import MetricsUnavailable, MetricsUnusable
from daemon.metrics.cache import open_source, read_now
from daemon.metrics.crm import CrmSource

SHOWN_REPS = 5


def check(config: Config, today: date) -> list[tuple[str, bool, str]]:
    """(subject, ok, detail) rows; reads the source, writes nothing."""
    source = open_source(config)
    if source is None:
        return [("none", True, "no metrics source: the agendas ask managers to pull the number")]
    try:
        weekly = read_now(source, config)
    except MetricsUnusable as exc:
        return [(source.label, False, problem) for problem in exc.problems[:SHOWN_REPS]]
    except MetricsUnavailable as exc:
        return [(source.label, False, str(exc))]
    through = weekly.through.isoformat() if weekly.through else "none"
    usage = getattr(source, "api_usage", None)  # a CRM's daily allowance, where it tells
    used = f"; API requests today {usage}" if usage else ""
    rows = [(source.label, True, f"readable; figures up to the week of {through}{used}")]
    policy = config.roster.policy
    wanting: dict[Metric, list[str]] = {}
    for rep in config.roster.reps:
        span, _ = spans_on(rep, policy, today)
        metric = policy.rule(span.stage).metric
        if not weekly.values.get((rep.email, metric)):
            wanting.setdefault(metric, []).append(rep.email)
    for metric in sorted(set(wanting) & set(source.cannot)):
        why = source.cannot[metric]
        rows.append((metric.value, False, f"{source.label} cannot give it ({why})"))
        del wanting[metric]
    # A CRM works pipeline coverage out against the roster's quarterly_quota: say who lacks one.
    unquoted = {rep.email for rep in config.roster.reps if rep.quarterly_quota is None}
    for metric, reps in sorted(wanting.items()):
        if metric is Metric.PIPELINE_COVERAGE and isinstance(source, CrmSource):
            lacking = [rep for rep in reps if rep in unquoted]
            if lacking:
                why = f"no quarterly_quota in the roster for {_shown(lacking)}"
                rows.append((metric.value, False, f"{why}: {source.label} needs it"))
            reps = [rep for rep in reps if rep not in lacking]
        if reps:
            rows.append((metric.value, False, f"no figures in {source.label} for {_shown(reps)}"))
    return rows


def _shown(reps: list[str]) -> str:
    return ", ".join(reps[:SHOWN_REPS]) + (
        f" and {len(reps) - SHOWN_REPS} more" if len(reps) > SHOWN_REPS else ""
    )
