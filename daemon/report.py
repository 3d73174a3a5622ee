"""``cadence report``: the cancellation rates a VP of Sales and a RevOps admin open this tool for.

Per manager and per rep: held, rescheduled, cancelled, week-11 skips, the rate and its band, and
the last 13 weeks as a small chart. The figures come from the pure core (``planner.rates``) over
the ledger opened read-only, so the report is the same numbers the daemon warns on, and running
it next to the daemon touches nothing. Three faces: text for a terminal, JSON for other tools
(schema in README), and one self-contained HTML file (inline CSS and SVG, autoescaped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from markupsafe import Markup

from daemon.config import Config
from daemon.core.planner.actions import LedgerSeries, LedgerView, Outcome
from daemon.core.planner.rates import (
    WINDOW_WEEKS,
    Band,
    Rates,
    Tally,
    percent,
    rates_of,
    window_start,
)
from daemon.core.planner.reviews import REVIEW
from daemon.core.schedule import zone
from daemon.store import Ledger

if TYPE_CHECKING:
    from jinja2 import Environment
    from jinja2.runtime import Macro

SCHEMA_VERSION = 1
BAND_LABELS = {
    Band.NONE: "too few 1:1s yet",
    Band.HEALTHY: "healthy",
    Band.WATCH: "watch",
    Band.WARNING: "warning",
    Band.RED_FLAG: "red flag",
}


def read_view(config: Config, at: datetime) -> LedgerView:
    """The ledger as a pass reads it, opened read-only; empty when there is none yet."""
    from daemon.reconcile import read_ledger

    ledger = Ledger.open_readonly(config.settings.state_dir)
    if ledger is None:
        return LedgerView()
    try:
        ledger.require_latest("the report")
        return read_ledger(ledger, at, config.roster.organization.timezone)
    finally:
        ledger.close()


def read_rates(config: Config, at: datetime) -> LedgerView:
    """Only what the rates read from the ledger (opened read-only): the 1:1 series that may
    have met in the window, the cancellations and reschedules in it, and the pipeline reviews'
    tally. A pass reads much more (``read_view``); a report for a big org should not."""
    ledger = Ledger.open_readonly(config.settings.state_dir)
    if ledger is None:
        return LedgerView()
    try:
        ledger.require_latest("the report")
        since = window_start(at, zone(config.roster.organization.timezone))
        series_rows, outcome_rows = ledger.rate_history(since, at, REVIEW)
        reviews = ledger.review_outcomes(since=since)
    finally:
        ledger.close()
    tally: dict[str, tuple[int, int]] = {}
    for r in reviews:
        cancelled, moved = tally.get(r.manager, (0, 0))
        tally[r.manager] = (cancelled + (r.status == "cancelled"), moved + (r.status == "moved"))
    instant = datetime.fromisoformat
    return LedgerView(
        series=tuple(map(_series, series_rows)),
        outcomes=tuple(
            Outcome(uid, instant(start), rep, manager, week11 is not None, bool(week11))
            for uid, start, rep, manager, week11 in outcome_rows
        ),
        review_tally=tally,
    )


def _series(row: Sequence[Any]) -> LedgerSeries:
    uid, rep, manager, stage, fingerprint, start, rrule, until, state, timezone = row
    return LedgerSeries(
        uid=uid, rep=rep, manager=manager, stage=stage, fingerprint=fingerprint,
        start=datetime.fromisoformat(start), rrule=rrule,
        until=date.fromisoformat(until) if until else None, state=state, timezone=timezone,
    )  # fmt: skip


@lru_cache(maxsize=8)
def _week_starts(first: date) -> tuple[str, ...]:
    return tuple((first + timedelta(weeks=i)).isoformat() for i in range(WINDOW_WEEKS))


_Weeks = dict[tuple[date | None, tuple[tuple[int, int, int, int], ...]], list[dict[str, Any]]]


def _weeks_json(t: Tally, made: _Weeks) -> list[dict[str, Any]]:
    """One row's ``weeks``. Most rows have the same as many others (every week held, say), so
    each is made once per report and shared: nothing changes a report once it is built."""
    key = (t.first_week, t.counts)
    found = made.get(key)
    if found is None:
        starts = _week_starts(t.first_week) if t.first_week is not None else ()
        found = made[key] = [
            {
                "start": start, "scheduled": sched, "held": sched - gone, "rescheduled": moved,
                "cancelled": gone, "week11_skips": skips,
            }
            for start, (sched, gone, moved, skips) in zip(starts, t.counts, strict=True)
        ]  # fmt: skip
    return found


_Tallies = dict[int, tuple[Tally, dict[str, Any]]]


def _tally_json(t: Tally, made: _Weeks, tallies: _Tallies) -> dict[str, Any]:
    """A row's figures, made once for each tally (the rates share a tally among the people
    who have the same) and copied into each row that has it."""
    found = tallies.get(id(t))
    if found is None:  # the tally is kept with its figures, so its id is not reused meanwhile
        found = tallies[id(t)] = (t, {
            "scheduled": t.scheduled,
            "held": t.held,
            "rescheduled": t.rescheduled,
            "cancelled": t.cancelled,
            "week11_skips": t.week11_skips,
            "rate": round(t.rate, 4) if t.rate is not None else None,
            "band": t.band.value,
            "weeks": _weeks_json(t, made),
        })  # fmt: skip
    return found[1]


def build(config: Config, at: datetime, view: LedgerView | None = None) -> dict[str, Any]:
    """The report as one JSON-able object (the ``--format json`` output)."""
    roster = config.roster
    if view is None:
        view = read_rates(config, at)
    rates = rates_of(roster, view, at)
    out = to_json(config, at, rates)
    if roster.pipeline_review.on or view.review_tally:
        # The deal reviews, apart: never in a 1:1 rate.
        for manager in out["managers"]:
            cancelled, moved = view.review_tally.get(manager["email"], (0, 0))
            manager["pipeline_reviews"] = {"cancelled": cancelled, "moved": moved}
    return out


def to_json(config: Config, at: datetime, rates: Rates) -> dict[str, Any]:
    roster = config.roster
    names = {m.email: m.name for m in roster.managers} | {r.email: r.name for r in roster.reps}
    current = {r.email: r.manager for r in roster.reps}
    managers = [m.email for m in roster.managers]
    listed = set(managers)
    managers += [m for m in rates.managers if m not in listed]
    reps_of: dict[str, list[str]] = {m: [] for m in managers}
    for rep in rates.reps:
        home = current.get(rep) or rates.rep_managers[rep][-1]
        reps_of.setdefault(home, []).append(rep)
    for r in roster.reps:  # on the roster, nothing started yet: shown as such
        if r.email not in rates.reps:
            reps_of.setdefault(r.manager, []).append(r.email)

    empty = Tally(first_week=None, counts=(), band=Band.NONE)
    made: _Weeks = {}
    tallies: _Tallies = {}
    thresholds = roster.policy.thresholds
    return {
        "schema": SCHEMA_VERSION,
        "organization": roster.organization.name,
        "at": at.isoformat(),
        "window": {
            "start": rates.window_start.date().isoformat(),
            "weeks": 13,
            "timezone": roster.organization.timezone,
        },
        "thresholds": {
            "healthy_below": thresholds.healthy_below,
            "warning_above": thresholds.warning_above,
            "red_flag_above": thresholds.red_flag_above,
            "min_meetings": thresholds.min_meetings,
        },
        "managers": [
            {
                "email": m,
                "name": names.get(m, m),
                "on_roster": m in names,
                **_tally_json(rates.managers.get(m, empty), made, tallies),
                "reps": [
                    {
                        "email": r,
                        "name": names.get(r, r),
                        "on_roster": r in current,
                        "managers": list(rates.rep_managers.get(r, ())),
                        **_tally_json(rates.reps.get(r, empty), made, tallies),
                    }
                    for r in sorted(reps_of.get(m, []))
                ],
            }
            for m in managers
        ],
    }


# --- text -----------------------------------------------------------------------------------


def _chart(weeks: list[dict[str, Any]]) -> str:
    """One character a week, oldest first: ``.`` no 1:1, ``o`` all held, ``x`` some cancelled,
    ``!`` a week-11 skip."""
    out = []
    for w in weeks:
        if w["week11_skips"]:
            out.append("!")
        elif w["cancelled"]:
            out.append("x")
        elif w["scheduled"]:
            out.append("o")
        else:
            out.append(".")
    return "".join(out) or "-"


def _rate_text(row: dict[str, Any]) -> str:
    if row["rate"] is None:
        return "-"
    return f"{percent(row['cancelled'], row['scheduled'])}%"


def render_text(data: dict[str, Any]) -> str:
    header = ("", "HELD", "MOVED", "CANCELLED", "WK11", "RATE", "BAND", "LAST 13 WEEKS")
    rows: list[tuple[str, ...]] = [header]
    charts: dict[int, tuple[object, str]] = {}  # by ``weeks`` list, which ``build`` shares
    for m in data["managers"]:
        rows.append(_text_row(f"{m['name']} <{m['email']}>", m, charts))
        for r in m["reps"]:
            rows.append(_text_row(f"  {r['name']} <{r['email']}>", r, charts))
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    lines = [
        f"Cancellation rates, {data['organization']}: the 13 weeks from "
        f"{data['window']['start']} to {data['at'][:10]}",
    ]
    lines += [line(*r).rstrip() for r in rows]
    lines.append(
        "Chart, oldest week first: o held, x cancelled, ! week-11 skip, . no 1:1. Healthy under "
        f"{_pct(data['thresholds']['healthy_below'])}, warning above "
        f"{_pct(data['thresholds']['warning_above'])}, red flag above "
        f"{_pct(data['thresholds']['red_flag_above'])}, judged from "
        f"{data['thresholds']['min_meetings']} 1:1s on."
    )
    reviews = [
        f"  {m['name']} <{m['email']}>: {m['pipeline_reviews']['cancelled']} cancelled, "
        f"{m['pipeline_reviews']['moved']} moved"
        for m in data["managers"]
        if "pipeline_reviews" in m
    ]
    if reviews:
        lines += ["Pipeline reviews (their own meetings, not in the rates):", *reviews]
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{value * 100:g}%"


def _text_row(
    label: str, row: dict[str, Any], charts: dict[int, tuple[object, str]]
) -> tuple[str, ...]:
    weeks = row["weeks"]
    chart = charts.get(id(weeks))
    if chart is None:  # the list is kept with its chart, so its id is not reused meanwhile
        chart = charts[id(weeks)] = (weeks, _chart(weeks))
    return (
        label, str(row["held"]), str(row["rescheduled"]), str(row["cancelled"]),
        str(row["week11_skips"]), _rate_text(row), BAND_LABELS[Band(row["band"])], chart[1],
    )  # fmt: skip


# --- HTML -----------------------------------------------------------------------------------


_BAR, _STEP, _HEIGHT = 9, 12, 28
_COLOURS = (("held", "#4c8c6a"), ("cancelled", "#d1242f"), ("skip", "#8b0000"), ("none", "#d0d7de"))


def chart_svg(row: dict[str, Any]) -> Markup:
    """The 13 weeks as bars, oldest on the left: green held, red cancelled (dark red for a
    week-11 skip), a grey tick for a week without a 1:1. One path per colour keeps a page for
    thousands of reps small. Only numbers go into it, so it is safe markup by construction."""
    return _svg(tuple((w["scheduled"], w["cancelled"], w["week11_skips"]) for w in row["weeks"]))


@lru_cache(maxsize=4096)
def _svg(weeks: tuple[tuple[int, int, int], ...]) -> Markup:
    """The chart of one row's weekly (scheduled, cancelled, week-11 skips): most reps share
    theirs with others (every week held, say), so each shape is drawn once."""
    peak = max([scheduled for scheduled, _, _ in weeks] + [1])
    paths: dict[str, list[str]] = {name: [] for name, _ in _COLOURS}
    for i, (scheduled, cancelled, skips) in enumerate(weeks):
        x = i * _STEP + 1
        if not scheduled:
            paths["none"].append(f"M{x} 30h{_BAR}v2h-{_BAR}z")
            continue
        total = round(_HEIGHT * scheduled / peak, 1)
        lost = round(_HEIGHT * cancelled / peak, 1)
        if total > lost:
            paths["held"].append(f"M{x} {32 - total}h{_BAR}v{round(total - lost, 1)}h-{_BAR}z")
        if lost:
            kind = "skip" if skips else "cancelled"
            paths[kind].append(f"M{x} {32 - lost}h{_BAR}v{lost}h-{_BAR}z")
    gone = sum(cancelled for _, cancelled, _ in weeks)
    label = (
        f"1:1s each week for the last 13 weeks: "
        f"{sum(scheduled for scheduled, _, _ in weeks) - gone} held, {gone} cancelled"
    )
    body = "".join(
        f'<path fill="{colour}" d="{"".join(paths[name])}"></path>'
        for name, colour in _COLOURS
        if paths[name]
    )
    return Markup(  # noqa: S704 - numbers only, see above
        f'<svg class="chart" viewBox="0 0 {13 * _STEP} 32" width="{13 * _STEP}" height="32"'
        f' role="img" aria-label="{label}"><title>{label}</title>{body}</svg>'
    )


def _environment() -> Environment:
    # Imported here: only the HTML face needs Jinja, and text or JSON for a big org should not
    # wait for it.
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    from daemon.render import BUILTIN_DIR

    env = Environment(
        loader=FileSystemLoader(BUILTIN_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    made: dict[tuple[Any, ...], Any] = {}

    def shared(macro: Macro, *args: Any) -> Any:
        """``macro(*args)``, written once per page for each distinct ``args``."""
        key = (macro.name, *args)
        found = made.get(key)
        if found is None:
            found = made[key] = macro(*args)
        return found

    charts: dict[int, tuple[object, Markup]] = {}

    def chart(row: dict[str, Any]) -> Markup:
        """``chart_svg``, once per distinct ``weeks`` list (``build`` shares them among rows)."""
        weeks = row["weeks"]
        found = charts.get(id(weeks))
        if found is None:  # the list is kept with its chart, so its id is not reused meanwhile
            found = charts[id(weeks)] = (weeks, chart_svg(row))
        return found[1]

    env.filters["band_label"] = lambda band: BAND_LABELS[Band(band)]
    env.filters["rate"] = _rate_text
    env.filters["pct"] = _pct
    env.filters["chart_svg"] = chart
    env.filters["shared"] = shared
    return env


def render_html(data: dict[str, Any]) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(data=data)


def render_json(data: dict[str, Any], *, pretty: bool = False) -> bytes:
    """Compact unless asked, in UTF-8 (JSON's own encoding). orjson writes a big org's report
    (15 MiB, 150,000 small objects) a tenth of the time json's encoder takes."""
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 if pretty else 0)
    except orjson.JSONEncodeError:  # a lone surrogate ("\ud800" in YAML read by pure PyYAML)
        return json.dumps(data, indent=2 if pretty else None, separators=None if pretty else
                          (",", ":")).encode()  # fmt: skip


def render(data: dict[str, Any], fmt: str, *, pretty: bool = False) -> bytes:
    """The report in ``fmt``, as the UTF-8 bytes written out."""
    if fmt == "json":
        return render_json(data, pretty=pretty)
    if fmt == "html":
        return render_html(data).encode()
    return render_text(data).encode()
