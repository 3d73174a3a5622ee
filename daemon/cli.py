"""The ``cadence`` command: validate, plan, once, run, report.

One place turns errors into lines for people (vdirsyncer's ``handle_cli_error``): bad input
exits 2 with one line per problem on stderr, an unreachable server exits 1 with one line, and a
traceback is a bug.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from daemon.config import DEFAULT_CONFIG, Config, load
from daemon.core.metrics import Weekly
from daemon.core.model import DAY_NAMES, Roster
from daemon.core.plan import SeriesPlan, series_json, to_json
from daemon.core.planner.reviews import ReviewPlan, review_json
from daemon.errors import CadenceError, ConfigError, Locked

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence", description="Keeps sales 1:1s on the calendar at the right cadence."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the YAML config")
        return p

    with_config(sub.add_parser("validate", help="check the config; touch nothing"))
    p = with_config(sub.add_parser("plan", help="the desired series at an instant; touch nothing"))
    p.add_argument("--at", help="ISO-8601 instant (default: now)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--pretty", action="store_true", help="indent the JSON for people")
    p.add_argument(
        "--diff",
        action="store_true",
        help="the next pass as a dry run: what it would create, end, write and send",
    )
    p = with_config(sub.add_parser("once", help="one reconcile pass, then exit"))
    p.add_argument("--now", help="ISO-8601 instant to run the pass as if at (default: now)")
    p.add_argument(
        "--restore-missing",
        action="store_true",
        help="recreate series even when a whole calendar lost them (overrides the safety valve)",
    )
    p = with_config(sub.add_parser("run", help="the daemon: a pass every interval_seconds"))
    p.add_argument(
        "--wait-for-lock",
        action="store_true",
        help="wait for another cadence on the same state_dir to stop instead of exiting 4",
    )
    with_config(
        sub.add_parser("doctor", help="check credentials, calendars and mail; write nothing")
    )
    p = with_config(sub.add_parser("report", help="cancellation rates; reads the ledger only"))
    p.add_argument("--at", help="ISO-8601 instant the 13 weeks end at (default: now)")
    p.add_argument("--format", choices=("text", "json", "html"), default="text")
    p.add_argument("--out", type=Path, help="write to this file instead of stdout")
    p.add_argument("--pretty", action="store_true", help="indent the JSON for people")
    return parser


def _instant(text: str | None, config: Config) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError([f"--at/--now: not an ISO-8601 instant: {text!r}"]) from exc
    if value.tzinfo is None:
        # A bare local time is read in the organisation's zone.
        value = value.replace(tzinfo=ZoneInfo(config.roster.organization.timezone))
    return value


def _validate(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    config = load(args.config, now=now)
    _check_metrics(config)
    warnings = list(config.warnings) + _metrics_warnings(config, now)
    for warning in warnings:
        print(warning, file=sys.stderr)
    roster = config.roster
    print(
        f"{args.config}: valid: {len(roster.managers)} managers, {len(roster.reps)} reps"
        + (f", {len(warnings)} warnings" if warnings else "")
    )
    return EXIT_OK


def _check_metrics(config: Config) -> None:
    """The metrics file is part of what ``validate`` checks: every row, named by line. A CRM
    that cannot be reached is a warning (``_metrics_warnings``), not an invalid config."""
    from daemon.metrics.base import MetricsUnavailable, MetricsUnusable
    from daemon.metrics.cache import open_source

    source = open_source(config)
    if source is None:
        return
    try:
        source.read(frozenset(), {})
    except MetricsUnusable as exc:
        raise ConfigError(exc.problems) from None
    except MetricsUnavailable:
        pass


def _metrics_warnings(config: Config, now: datetime) -> list[str]:
    """Metrics the roster's stages inspect today that the source has no figures for."""
    from daemon.metrics.check import check

    today = now.astimezone(ZoneInfo(config.roster.organization.timezone)).date()
    return [f"warning: metrics: {subject}: {detail}" for subject, ok, detail in
            check(config, today) if not ok]  # fmt: skip


def _plan_metrics(config: Config) -> Weekly | None:
    """What the daemon would read from the metrics source, read now; None without one."""
    from daemon.metrics.base import MetricsUnavailable, MetricsUnusable
    from daemon.metrics.cache import open_source, read_now

    source = open_source(config)
    if source is None:
        return None
    try:
        return read_now(source, config)
    except MetricsUnusable as exc:
        raise ConfigError(exc.problems) from None
    except MetricsUnavailable as exc:
        raise ConfigError([f"metrics: {exc}"]) from None


def _cadence_text(p: SeriesPlan) -> str:
    days = "/".join(DAY_NAMES[d].capitalize() for d in p.pattern.days)
    every = "weekly" if p.pattern.interval_weeks == 1 else f"every {p.pattern.interval_weeks} wks"
    return f"{days} {p.pattern.time.strftime('%H:%M')} {every}"


def render_table(at: datetime, plans: Sequence[SeriesPlan]) -> str:
    """The plan for people: one row per rep."""
    header = ("REP", "MANAGER", "STAGE", "WHEN", "MIN", "TIME ZONE", "CHANGES", "NEXT 1:1")
    rows = [header]
    for p in plans:
        change = f"{p.next_span.stage.value} on {p.next_span.start}" if p.next_span else "-"
        nxt = "-"
        if p.upcoming:
            o = p.upcoming[0]
            notes = [f"wk {o.week_of_quarter}"]
            if o.template == "career":
                notes.append("career")
            if o.week11:
                notes.append("WEEK 11")
            nxt = f"{o.start.strftime('%a %d %b %H:%M')} ({', '.join(notes)})"
        when = _cadence_text(p) + ("" if p.slot_fits else " (!)")
        rows.append(
            (p.rep.email, p.manager.email, p.stage.value, when,
             str(p.pattern.duration_minutes), p.timezone, change, nxt)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"Plan at {at.isoformat()}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if any(not p.slot_fits for p in plans):
        lines.append("(!) outside someone's working hours: see `cadence validate`")
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    from daemon import dryrun

    config = load(args.config)
    at = _instant(args.at, config)
    if args.diff:
        actions, problems = dryrun.diff(config, at)
        if args.json:
            print(json.dumps({"at": at.isoformat(), "actions": actions, "problems": problems},
                             indent=2))  # fmt: skip
        else:
            print(dryrun.render_diff(at, actions, problems))
        return EXIT_FAILED if problems else EXIT_OK
    plans = dryrun.stateful_plan(config, at)
    reviews = dryrun.stateful_reviews(config, at)
    if args.pretty:
        metrics = _plan_metrics(config)
        whole = to_json(at, plans, config.roster, metrics)
        whole["pipeline_reviews"] = [review_json(r) for r in reviews]
        print(json.dumps(whole, indent=2))
    elif args.json:
        write_json(sys.stdout, at, plans, config.roster, _plan_metrics(config), reviews)
    else:
        print(render_table(at, plans))
        if reviews:
            print("\n" + render_reviews(reviews))
    return EXIT_OK


def render_reviews(reviews: Sequence[ReviewPlan]) -> str:
    """The pipeline reviews for people: one row per series, apart from the 1:1s."""
    header = ("PIPELINE REVIEW", "MANAGER", "WHEN", "MIN", "TIME ZONE", "ATTENDEES", "NEXT (VP)")
    rows = [header]
    for r in reviews:
        when = f"{DAY_NAMES[r.pattern.days[0]].capitalize()} {r.pattern.time:%H:%M} weekly"
        vp = next((o.start for o in r.upcoming if o.vp), None) if r.vp else None
        rows.append(
            (r.mode.value, r.manager.email, when, str(r.pattern.duration_minutes), r.timezone,
             ", ".join(rep.email for rep in r.reps),
             f"{r.upcoming[0].start:%a %d %b %H:%M}" if r.upcoming else "-")
        )  # fmt: skip
        if vp is not None:
            rows[-1] = (*rows[-1][:-1], rows[-1][-1] + f" ({r.vp} {vp:%a %d %b})")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def write_json(
    out: TextIO,
    at: datetime,
    plans: Sequence[SeriesPlan],
    roster: Roster | None = None,
    metrics: Weekly | None = None,
    reviews: Sequence[ReviewPlan] = (),
) -> None:
    """The plan as compact JSON, written a series at a time: a big roster's plan is never one
    string in memory."""
    out.write(f'{{"at":{json.dumps(at.isoformat())},"series":[')
    for i, p in enumerate(plans):
        item = series_json(p, roster, metrics)
        out.write(("," if i else "") + json.dumps(item, separators=(",", ":")))
    listed = [review_json(r) for r in reviews]
    out.write('],"pipeline_reviews":' + json.dumps(listed, separators=(",", ":")) + "}\n")


def _once(args: argparse.Namespace) -> int:
    from daemon.reconcile import run_once

    config = load(args.config)
    now = _instant(args.now, config) if args.now else None
    code: int = run_once(config, now, restore_missing=args.restore_missing)
    return code


def _run(args: argparse.Namespace) -> int:
    from daemon.reconcile import run_forever

    code: int = run_forever(load(args.config), wait_for_lock=args.wait_for_lock)
    return code


def _doctor(args: argparse.Namespace) -> int:
    from daemon.doctor import diagnose, render

    rows = diagnose(load(args.config))
    print(render(rows))
    return EXIT_OK if all(r.ok for r in rows) else EXIT_FAILED


def _report(args: argparse.Namespace) -> int:
    from daemon import report

    # One short-lived tree of acyclic objects (tens of thousands of rows for a big org): the
    # cyclic collector would walk it again and again for nothing, a third of the run.
    gc.disable()
    config = load(args.config)
    at = _instant(args.at, config)
    out = report.render(report.build(config, at), args.format, pretty=args.pretty) + b"\n"
    if args.out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(out)
        return EXIT_OK
    try:
        args.out.write_bytes(out)
    except OSError as exc:
        raise CadenceError(f"--out {args.out}: {exc.strerror or exc}") from exc
    return EXIT_OK


COMMANDS = {
    "validate": _validate, "plan": _plan, "once": _once, "run": _run, "report": _report,
    "doctor": _doctor,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except Locked as exc:
        print(f"cadence: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except CadenceError as exc:
        print(f"cadence: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # a bug: say so in one line rather than a traceback
        print(f"cadence: internal error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
