"""The shell around the pure planner: read calendars, plan, perform, remember; and the loop.

One pass: pull each manager calendar's changes since the ledger's sync token, plan against the
roster and the ledger, then perform the actions in order. Every write is made safe to repeat:
a series is put in the ledger as *pending* before it is created under a deterministic UID, an
email is recorded after it goes and the Maildir transport drops a second copy of the same
Message-ID, so a crash between any two steps followed by a rerun duplicates and loses nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from daemon import calendar_hours, faults, logs, observed_cache, preread
from daemon.alerts import Alerts, Problem, open_alerts
from daemon.breaker import Breakers, GuardedMailer, GuardedProvider, deadline_for
from daemon.config import Config, read_secret
from daemon.core.agenda import blocks_for
from daemon.core.deals import Opportunities
from daemon.core.metrics import Weekly
from daemon.core.observed import ObservedSeries
from daemon.core.planner import (
    EMAILS_WINDOW,
    LOOKBACK,
    Action,
    AgendaView,
    CreateSeries,
    EndSeries,
    LedgerSeries,
    LedgerView,
    Plan,
    RateAlert,
    RecordCancellation,
    RecordCommitment,
    RecordRateBand,
    RecordReschedule,
    RecordReviewOutcome,
    ReviewView,
    SendEmail,
    SetAttendees,
    WriteAgendas,
    is_review,
    make_plan,
    person,
    stage_view,
)
from daemon.core.planner import (
    Outcome as Happened,
)
from daemon.core.planner.rates import window_start
from daemon.core.prep import PrepPolicy, Role, labelled
from daemon.errors import (
    AuthError,
    CadenceError,
    ConfigError,
    MailError,
    MailRejected,
    MailUnavailable,
    NotFound,
    ProviderError,
    Skipped,
    TemplateProblem,
    TokenExpired,
    Transient,
)
from daemon.lock import state_lock
from daemon.mail.base import Mailer
from daemon.mail.message import build_message
from daemon.metrics import cache as metrics_cache
from daemon.metrics.base import (
    MetricsSource,
    MetricsUnavailable,
    MetricsUnusable,
    open_opportunities,
)
from daemon.providers.base import Agendas, CalendarProvider, Create, End, Write
from daemon.render import Renderer
from daemon.roster_watch import Outcome, RosterWatch
from daemon.store import (
    CancellationRecord,
    Ledger,
    RescheduleRecord,
    ReviewOutcomeRecord,
    SeriesRecord,
    utc_iso,
)

if TYPE_CHECKING:
    from daemon.web.status import Health, Instruments

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_SAFETY_VALVE = 3


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PassResult:
    errors: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    writes: int = 0
    emails: int = 0
    # A server could not be reached (worth backing off for), and how long it asked us to wait.
    unavailable: bool = False
    # The pass ran into its deadline: the rest is due at once, in the next pass.
    cut_short: bool = False
    retry_after: float | None = None
    # What the admins hear about (admin_alert), beside the log.
    problems: list[Problem] = field(default_factory=list)
    # For the status endpoint's metrics: what this pass did, by kind.
    created: int = 0
    ended: int = 0
    agendas: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    cancellations: Counter[str] = field(default_factory=Counter)
    api_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    manager_rates: Mapping[str, float] = field(default_factory=dict)
    # Breakers that opened and closed in this pass (daemon.breaker), and those open at its end.
    endpoints_opened: list[str] = field(default_factory=list)
    endpoints_closed: list[str] = field(default_factory=list)
    endpoints_down: list[str] = field(default_factory=list)

    def access_denied(self, manager: str, exc: AuthError) -> None:
        self.problems.append(
            Problem(
                _access_key(manager),
                f"cadence cannot use {manager}'s calendar: {exc}",
                advice="Check that the account cadence uses may read and write this manager's "
                "calendar (CalDAV rights, Google domain-wide delegation or Graph application "
                "permissions); `cadence doctor` names what is missing. The other managers go on.",
            )
        )

    def server_down(self, exc: Transient | MailUnavailable) -> None:
        self.errors.append(str(exc))
        self.unavailable = True
        wait = getattr(exc, "retry_after", None)
        if wait is not None:
            self.retry_after = max(self.retry_after or 0.0, float(wait))

    @property
    def exit_code(self) -> int:
        if self.alarms:
            return EXIT_SAFETY_VALVE
        return EXIT_UNREACHABLE if self.errors else EXIT_OK


def _access_key(manager: str) -> str:
    """The admin alert's key for a calendar the credentials cannot use."""
    return f"calendar-access {manager}"


class PassClock:
    """The time of the pass in progress (the simulated ``--now`` included), for providers whose
    change feed covers a window of time around it (Graph's calendarView)."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass
class Runtime:
    config: Config
    provider: CalendarProvider
    mailer: Mailer
    ledger: Ledger
    renderer: Renderer
    restore_missing: bool = False
    # Set by `run` while the roster files hold an invalid edit (the last good roster is used).
    roster_problems: tuple[str, ...] = ()
    metrics: MetricsSource | None = None
    metrics_refused: str | None = None  # the version of a source read and found unusable
    metrics_view: tuple[Any, Weekly] | None = None
    deals: tuple[datetime, Opportunities | None] | None = None  # when read, and what
    clock: PassClock = field(default_factory=PassClock)
    breakers: Breakers = field(default_factory=Breakers)


# --- building the parts from the config ---------------------------------------------------------


def open_calendar(
    config: Config,
    stack: ExitStack,
    clock: Callable[[], datetime] | None = None,
    *,
    starting: bool = False,
) -> CalendarProvider:
    """The configured calendar provider. ``starting`` (``once``/``run``): credentials a
    provider can check up front are checked, so a key refused outright stops the start."""
    settings = config.settings
    if settings.calendar.provider == "outlook":
        from daemon.providers.graph import open_outlook

        return open_outlook(config, clock)
    if settings.calendar.provider == "google":
        from daemon.providers.google import open_google

        managers = config.roster.managers
        check_as = managers[0].email if starting and managers else None
        return open_google(config.path, settings.calendar.google, check_as)
    if settings.calendar.provider != "caldav":
        raise ConfigError(
            [f"{config.path}: calendar.provider: {settings.calendar.provider!r} is not available"
             " in this version yet; use caldav, google or outlook"]
        )  # fmt: skip
    from daemon.providers.caldav import CalDAVProvider

    caldav = settings.calendar.caldav
    url = caldav.url
    if url is None:
        from daemon.embedded import EmbeddedRadicale

        server = EmbeddedRadicale(settings.state_dir / "radicale", port=caldav.embedded_port)
        stack.enter_context(server)
        url = server.url
        logs.get().info("embedded calendar server started", url=url)
    password = read_secret(caldav.password_env, caldav.password_file, "calendar.caldav")
    return CalDAVProvider(
        url, calendar_path=caldav.calendar_path, username=caldav.username, password=password,
        timeout=caldav.connect_timeout_seconds, read_timeout=caldav.read_timeout_seconds,
    )  # fmt: skip


def open_mailer(config: Config) -> Mailer:
    mail = config.settings.mail
    if mail.transport == "maildir":
        from daemon.mail.maildir import MaildirMailer

        return MaildirMailer(Path(mail.maildir))
    if mail.transport == "smtp":
        from daemon.mail.smtp import SmtpMailer

        if mail.smtp is None:
            raise ConfigError([f"{config.path}: mail.smtp: required when transport is smtp"])
        smtp = mail.smtp
        password = read_secret(smtp.password_env, smtp.password_file, "mail.smtp")
        return SmtpMailer(
            smtp.host, smtp.port, security=smtp.security, username=smtp.username,
            password=password, timeout=smtp.connect_timeout_seconds,
            read_timeout=smtp.read_timeout_seconds,
        )  # fmt: skip
    if mail.transport == "graph":
        from daemon.graph_http import client_for
        from daemon.mail.graph import GraphMailer

        return GraphMailer(client_for(config), mail.sender)  # the calendar's app registration
    if mail.transport == "gmail":
        from daemon.mail.gmail import open_gmail

        return open_gmail(config.path, config.settings)
    raise ConfigError(
        [f"{config.path}: mail.transport: {mail.transport!r} is not available in this version"
         " yet; use maildir, smtp, gmail or graph"]
    )  # fmt: skip


def calendar_endpoint(config: Config, provider: CalendarProvider) -> str:
    """The calendar side's endpoint, as its breaker and the messages name it."""
    calendar = config.settings.calendar
    if calendar.provider == "google" and calendar.google is not None:
        return f"Google Calendar API at {calendar.google.api_endpoint}"
    if calendar.provider == "outlook" and calendar.outlook is not None:
        return f"Microsoft Graph at {calendar.outlook.graph_endpoint}"
    return f"calendar server {getattr(provider, 'url', calendar.caldav.url)}"


def mail_endpoint(config: Config) -> str | None:
    """The mail side's endpoint (Graph is the calendar's when both use it); None for the
    local Maildir, which has no server to wait for."""
    settings = config.settings
    mail = settings.mail
    if mail.transport == "smtp" and mail.smtp is not None:
        return f"mail server {mail.smtp.host}:{mail.smtp.port}"
    if mail.transport == "gmail":
        return f"Gmail API at {mail.gmail.api_endpoint}"
    if mail.transport == "graph" and settings.calendar.outlook is not None:
        return f"Microsoft Graph at {settings.calendar.outlook.graph_endpoint}"
    return None


@contextmanager
def runtime(config: Config, restore_missing: bool = False) -> Iterator[Runtime]:
    """Everything a pass needs; templates are checked before anything is touched."""
    renderer = Renderer(config.settings.templates.dir)
    try:
        renderer.check()
    except TemplateProblem as exc:  # an admin's template: bad input, one line per problem
        raise ConfigError(str(exc).splitlines()) from None
    with ExitStack() as stack:
        ledger = Ledger.open(config.settings.state_dir)
        stack.callback(ledger.close)
        breakers = Breakers()
        mailer: Mailer = open_mailer(config)
        endpoint = mail_endpoint(config)
        if endpoint is not None:
            mailer = GuardedMailer(mailer, endpoint, breakers)
        clock = PassClock()
        inner = open_calendar(config, stack, clock, starting=True)
        provider = GuardedProvider(inner, calendar_endpoint(config, inner), breakers)
        yield Runtime(
            config, provider, mailer, ledger, renderer, restore_missing,
            metrics=metrics_cache.open_source(config, clock), clock=clock, breakers=breakers,
        )  # fmt: skip


# --- one pass -----------------------------------------------------------------------------------


def _managers(rt: Runtime) -> list[str]:
    names = [m.email for m in rt.config.roster.managers]
    for rec in rt.ledger.all_series():
        if rec.state != "ended" and rec.manager not in names:
            names.append(rec.manager)
    return names


def _sync(rt: Runtime, managers: Sequence[str]) -> dict[str, ProviderError]:
    """Bring the observed cache of every calendar up to date, all handed to the provider at
    once (a provider with batch requests reads them in a few round trips): a full listing the
    first time (or when the token expired), the changes since the token after; either way the
    cache is then the whole calendar, which is what the safety valve compares with the ledger.
    Returns the calendars that could not be read, with why."""
    found = dict(rt.provider.changes_many({m: rt.ledger.get_token(m) for m in managers}))
    again: dict[str, str | None] = {}
    for manager, got in found.items():
        if isinstance(got, TokenExpired):
            logs.get().info("sync token expired, full resync", manager=manager)
            again[manager] = None
        elif isinstance(got, NotFound):
            # No calendar yet: made now, so this pass's series land in it without a failed
            # write each, and the pass ends holding a sync token for it.
            try:
                rt.provider.ensure_calendar(manager)
                again[manager] = None
            except ProviderError as exc:
                found[manager] = exc
    if again:
        found.update(rt.provider.changes_many(again))
    failed: dict[str, ProviderError] = {}
    for manager in managers:
        changes = found[manager]
        if isinstance(changes, ProviderError):
            failed[manager] = changes
            continue
        with rt.ledger.transaction():
            if changes.complete:
                rt.ledger.clear_observed(manager)
            for series in changes.changed:
                if series.owned:
                    rt.ledger.put_observed(manager, series.uid, observed_cache.dump(series))
                else:
                    rt.ledger.delete_observed(manager, series.uid)
            for uid in changes.removed:
                rt.ledger.delete_observed(manager, uid)
            rt.ledger.set_token(manager, changes.token)
    return failed


def _ledger_view(rt: Runtime, now: datetime) -> LedgerView:
    return read_ledger(rt.ledger, now, rt.config.roster.organization.timezone)


def read_ledger(ledger: Ledger, now: datetime, org_timezone: str) -> LedgerView:
    """The ledger as the planner and the rates read it at ``now``. Only reads."""
    series = ledger_series(ledger)
    reviews = ledger_series(ledger, reviews=True)
    commitments: dict[str, list[tuple[datetime, str]]] = {}
    for rep, original_start, text in ledger.commitments():
        when = datetime.fromisoformat(original_start.replace("Z", "+00:00"))
        commitments.setdefault(rep, []).append((when, text))
    since = window_start(now, ZoneInfo(org_timezone))
    outcomes = [
        Happened(c.uid, _instant(c.original_start), c.rep, c.manager, True, c.week11)
        for c in ledger.cancellations(since=since)
    ]
    outcomes += [
        Happened(r.uid, _instant(r.original_start), r.rep, r.manager, False)
        for r in ledger.reschedules(since=since)
    ]
    emails = ledger.emails(since=now - EMAILS_WINDOW)
    tally: dict[str, tuple[int, int]] = {}
    for r in ledger.review_outcomes(since=since):
        cancelled, moved = tally.get(r.manager, (0, 0))
        tally[r.manager] = (cancelled + (r.status == "cancelled"), moved + (r.status == "moved"))
    return LedgerView(
        series=tuple(series),
        reviews=reviews,
        review_tally=tally,
        review_outcomes=frozenset(
            f"{r.uid} {r.original_start}" for r in ledger.review_outcomes(since=now - LOOKBACK)
        ),
        commitments={k: tuple(v) for k, v in commitments.items()},
        emails_sent=frozenset((e.occurrence, e.kind) for e in emails),
        cancellations=frozenset(
            f"{c.uid} {c.original_start}" for c in ledger.cancellations(since=now - LOOKBACK)
        ),
        outcomes=tuple(outcomes),
        rate_alerts={
            subject: RateAlert(band, crossings, _instant(changed))
            for subject, (band, crossings, changed) in ledger.rate_alerts().items()
        },
        prereads=preread.read_filed(ledger, now - LOOKBACK),
        prereads_asked={
            e.occurrence: _instant(e.sent_at) for e in emails if e.kind == "preread:rep"
        },  # fmt: skip
    )


def ledger_series(ledger: Ledger, *, reviews: bool = False) -> tuple[LedgerSeries, ...]:
    """The 1:1 series cadence made, or (``reviews``) its pipeline-review series."""
    found = (
        LedgerSeries(
            uid=rec.uid, rep=rec.rep, manager=rec.manager, stage=rec.stage,
            fingerprint=rec.fingerprint, start=datetime.fromisoformat(rec.start),
            rrule=rec.rrule, until=date.fromisoformat(rec.until) if rec.until else None,
            state=rec.state, timezone=rec.timezone,
        )
        for rec in ledger.all_series()
    )  # fmt: skip
    return tuple(rec for rec in found if is_review(rec) == reviews)


def _instant(utc: str) -> datetime:
    return datetime.fromisoformat(utc.replace("Z", "+00:00"))


def agenda_context(view: AgendaView) -> dict[str, Any]:
    blocks = blocks_for(view.duration_minutes)
    return {
        "rep": person(view.rep),
        "manager": person(view.manager),
        "stage": stage_view(view.stage, view.rule, 1),
        "start": view.start,
        "duration_minutes": view.duration_minutes,
        "blocks": {"number": blocks.number, "skill": blocks.skill, "commitment": blocks.commitment},
        "template": view.template,
        "week_of_quarter": view.week_of_quarter,
        "week11": view.week11,
        "last_commitment": view.last_commitment,
        "preread": {
            "rep": labelled(Role.REP, view.preread_rep),
            "manager": labelled(Role.MANAGER, view.preread_manager),
        },
        "number": view.number.line() if view.number is not None else None,
        "metrics_on": view.metrics_on,
    }


def review_context(view: ReviewView) -> dict[str, Any]:
    """What the deal-review agenda template sees; deal lines are already plain text."""
    return {
        "manager": person(view.manager),
        "mode": view.mode.value,
        "reps": [
            {**person(rep), "deals": None if view.deals is None else view.deals.get(rep.email)}
            for rep in view.reps
        ],
        "start": view.start,
        "duration_minutes": view.duration_minutes,
        "vp": view.vp,
        "deals_on": view.deals is not None,
    }


def prep_policy(config: Config) -> PrepPolicy | None:
    prep = config.settings.prep
    return None if prep is None else PrepPolicy(check=timedelta(hours=prep.check_hours))


def plan_pass(rt: Runtime, now: datetime, result: PassResult) -> Plan:
    observed: dict[str, dict[str, ObservedSeries]] = {}
    unreachable: set[str] = set()
    log = logs.get()
    managers = _managers(rt)
    failed = _sync(rt, managers)
    known = {a["problem"] for a in open_alerts(rt.ledger)}
    for manager in managers:
        exc = failed.get(manager)
        if isinstance(exc, Skipped):
            unreachable.add(manager)  # its endpoint is down: said once, in the pass summary
            continue
        if exc is not None:
            unreachable.add(manager)
            result.api_errors[(rt.config.settings.calendar.provider, type(exc).__name__)] += 1
            if isinstance(exc, Transient):
                result.server_down(exc)
            else:
                result.errors.append(str(exc))
                if isinstance(exc, AuthError):
                    result.access_denied(manager, exc)
            if not isinstance(exc, AuthError) or _access_key(manager) not in known:
                # An access problem already alerted on is not logged again each pass: the
                # admin alert said it once, and says once when it is over.
                log.warning("calendar unreadable", manager=manager, error=str(exc))
            continue
        observed[manager] = {
            uid: observed_cache.load(text) for uid, text in rt.ledger.observed(manager).items()
        }
    _confirm_pending(rt, observed)

    def render(view: AgendaView) -> str:
        return rt.renderer.agenda(agenda_context(view))

    def render_review(view: ReviewView) -> str:
        return rt.renderer.review(review_context(view))

    view = _ledger_view(rt, now)
    if rt.metrics is not None:
        view = replace(view, metrics=_metrics(rt, rt.metrics, now))
        if rt.config.roster.pipeline_review.on:
            view = replace(view, opportunities=_deals(rt, rt.metrics, now))
    hours = calendar_hours.known_hours(rt.config.roster, rt.provider, rt.ledger, now)
    return make_plan(
        rt.config.roster,
        now,
        observed,
        view,
        render,
        complete=frozenset(observed),  # every calendar read this pass: its cache is whole
        unreachable=frozenset(unreachable),
        restore_missing=rt.restore_missing,
        prep=prep_policy(rt.config),
        render_review=render_review,
        calendar_hours=hours,
    )


def _metrics(rt: Runtime, source: MetricsSource, now: datetime) -> Weekly:
    """Refresh the cache when the source changed or is due, then read it. A source that cannot
    be used leaves the last good numbers, and is said once per version in the log."""
    log = logs.get()
    version: str | None = None
    try:
        version = source.version()
        if version is None or version != rt.metrics_refused:
            was = metrics_cache.failing(rt.ledger, metrics_cache.METRICS)
            if metrics_cache.refresh(rt.config, rt.ledger, source, now):
                log.info("metrics read", source=source.label)
                if was is not None:
                    log.info("metrics readable again", source=source.label,
                             failed_reads=was.failures, since=utc_iso(was.since))  # fmt: skip
            rt.metrics_refused = None
    except MetricsUnusable as exc:
        rt.metrics_refused = version
        log.error(
            "metrics unusable; keeping the last good numbers", source=source.label,
            problems=exc.problems[:5], count=len(exc.problems),
        )  # fmt: skip
    except MetricsUnavailable as exc:
        state = metrics_cache.failing(rt.ledger, metrics_cache.METRICS)
        if state is None or state.failures == 1:  # said once; the waits and doctor say the rest
            log.warning(
                "metrics unavailable; keeping the last numbers, trying again after growing waits",
                source=source.label, error=str(exc),
                retry_at=utc_iso(state.retry_at) if state else None,
            )  # fmt: skip
    read = rt.ledger.metrics_read()
    # The same read: the values already read (a big org's table is megabytes).
    if rt.metrics_view is None or rt.metrics_view[0] != read:
        rt.metrics_view = (read, metrics_cache.weekly(rt.ledger, source))
    return rt.metrics_view[1]


def _deals(rt: Runtime, source: MetricsSource, now: datetime) -> Opportunities | None:
    """Each rep's open opportunities for the pipeline reviews' agendas, read from the source at
    most every ``refresh_hours``; a source that cannot be read leaves the last ones, and is
    asked again after growing waits, as for the metrics."""
    settings = rt.config.settings.metrics
    hours = settings.refresh_hours if settings is not None else 6
    kept = None if rt.deals is None else rt.deals[1]
    if rt.deals is not None and now - rt.deals[0] < timedelta(hours=hours):
        return kept
    if metrics_cache.waiting(rt.ledger, metrics_cache.OPPORTUNITIES, now):
        return kept
    reps = frozenset(r.email for r in rt.config.roster.reps)
    try:
        rt.deals = (now, open_opportunities(source, reps))
    except (MetricsUnavailable, MetricsUnusable) as exc:
        what = metrics_cache.OPPORTUNITIES
        if metrics_cache.failed(rt.ledger, what, now, str(exc), hours).failures == 1:
            logs.get().warning("opportunities unavailable; keeping the last ones",
                               source=source.label, error=str(exc))  # fmt: skip
        return kept
    metrics_cache.recovered(rt.ledger, metrics_cache.OPPORTUNITIES)
    return rt.deals[1]


def _confirm_pending(rt: Runtime, observed: Mapping[str, Mapping[str, ObservedSeries]]) -> None:
    """A pending series the calendar shows was created before a crash: it is active."""
    for rec in rt.ledger.all_series():
        if rec.state == "pending" and rec.uid in observed.get(rec.manager, {}):
            rt.ledger.upsert_series(_with(rec, state="active"))


def _with(rec: SeriesRecord, **changes: Any) -> SeriesRecord:
    return replace(rec, **changes)


def run_pass(rt: Runtime, now: datetime) -> PassResult:
    rt.clock.now = now
    result = PassResult()
    rt.breakers.start_pass(
        deadline_for(rt.config.settings.interval_seconds), Breakers.remembered(rt.ledger),
        now=now.timestamp(),
    )  # fmt: skip
    plan = plan_pass(rt, now, result)
    log = logs.get()
    for alarm in plan.alarms:
        result.alarms.append(alarm.message)
        log.error("safety valve", manager=alarm.manager, message=alarm.message)
        result.problems.append(
            Problem(
                f"safety-valve {alarm.manager}", alarm.message,
                advice="Nothing is written to this calendar until a person looks. If the series "
                "really are gone, `cadence once --restore-missing` puts them back.",
            )
        )  # fmt: skip
    Executor(rt, now, result).run(plan)
    if rt.roster_problems:
        files = ", ".join(str(p) for p in rt.config.sources or (rt.config.path,))
        result.problems.append(
            Problem(
                "roster", f"the roster edit in {files} is invalid; cadence keeps running on the "
                "last good roster", rt.roster_problems,
                advice="Fix the lines above and save: the next pass picks the roster up. "
                "`cadence validate` lists the same problems.",
            )
        )  # fmt: skip
    _endpoints(rt, result)
    settled = not (result.unavailable or result.cut_short)  # the pass saw everything
    result.emails += Alerts(rt).update(result.problems, now, settled=settled)
    result.manager_rates = plan.manager_rates
    log.info(
        "pass done", at=now.isoformat(), writes=result.writes, emails=result.emails,
        errors=len(result.errors), alarms=len(result.alarms),
    )  # fmt: skip
    return result


def _endpoints(rt: Runtime, result: PassResult) -> None:
    """The pass summary's word on the breakers: one error per endpoint down (first, so that
    `once` prints it) in place of the failures that opened it, an admin alert while it is
    down, and the ledger's memory of it for the next pass (in this process or the next)."""
    breakers = rt.breakers
    lines: list[str] = []
    for b in breakers.down() + breakers.untested():
        if b.down:
            for failure in b.failed:
                if failure in result.errors:
                    result.errors.remove(failure)
            lines.append(b.line())
            result.unavailable = True
        result.problems.append(
            Problem(
                f"endpoint {b.endpoint}", f"{b.endpoint} is not answering",
                (b.last_error,) if b.last_error else (),
                advice="cadence skips its work after a few failures in a row and tries it once "
                "per pass; everything else goes on. Check the server, the network or proxy "
                "between, and the timeouts in the config.",
            )
        )  # fmt: skip
    if breakers.deadline_hit:
        lines.append(breakers.deadline_line())
        result.cut_short = True
    result.errors[:0] = lines
    result.endpoints_opened = breakers.opened()
    result.endpoints_closed = breakers.closed()
    result.endpoints_down = [b.endpoint for b in breakers.down() + breakers.untested()]
    breakers.remember(rt.ledger)


class Executor:
    """Performs a plan's actions; one rep's failure never stops the others."""

    def __init__(self, rt: Runtime, now: datetime, result: PassResult) -> None:
        self.rt = rt
        self.now = now
        self.result = result
        # A rep's actions after this plan index wait for another pass (a write of theirs
        # failed, or the write cap was reached); likewise a manager's whose calendar is down.
        self.rep_stop: dict[str, int] = {}
        self.manager_stop: dict[str, int] = {}
        self.mail_down = False
        self.log = logs.get()
        self.alerted = {a["problem"] for a in open_alerts(rt.ledger)}

    def run(self, plan: Plan) -> None:
        """The calendar writes first, in waves handed to the provider at once, then the rest in
        plan order. Each action still acts as if in plan order: one whose rep (or calendar)
        failed at an earlier write is left for the next pass, and so is nothing before it."""
        settings = self.rt.config.settings
        self.write_all(plan.actions)
        for index, action in enumerate(plan.actions):
            if self._stopped(index, action) or _is_write(action):
                continue
            try:
                if isinstance(action, SendEmail):
                    if self.mail_down or self.result.emails >= settings.max_emails_per_pass:
                        continue
                    self.send(action)
                elif isinstance(action, RecordCancellation | RecordCommitment | RecordReschedule):
                    self.record(action)
                elif isinstance(action, RecordRateBand):
                    self.record_band(action)
                elif isinstance(action, EndSeries):
                    self._ended(action, written=False)  # the calendar already stops sooner
                elif isinstance(action, RecordReviewOutcome):
                    self.record_review(action)
                elif isinstance(action, SetAttendees):
                    self.set_attendees(index, action)
            except Skipped as exc:
                # The mail endpoint is down (said once, in the pass summary): the emails stay
                # due, without a line each.
                if isinstance(exc, MailUnavailable):
                    self.mail_down = True
            except MailUnavailable as exc:
                self._count_error(exc)
                # Behind a breaker, the breaker decides when the mail server is down; a
                # Maildir (no server) is down at its first failure.
                self.mail_down = not isinstance(self.rt.mailer, GuardedMailer)
                self.result.server_down(exc)
                self.log.warning("mail unavailable; emails stay due", error=str(exc))
            except (MailError, TemplateProblem) as exc:
                if isinstance(exc, MailError):
                    self._count_error(exc)
                self.log.error("email not sent", rep=action.rep, error=str(exc))
                self.result.errors.append(str(exc))
                if isinstance(exc, MailRejected) and isinstance(action, SendEmail):
                    self.result.problems.append(
                        Problem(
                            f"mail-rejected {action.occurrence} {action.ledger_kind}",
                            f"the mail server refused for good a {action.kind} email to "
                            f"{', '.join(action.to)}: {exc}",
                            advice="Check the address in the roster; cadence will not retry it.",
                            lasting=False,
                        )
                    )

    def _stopped(self, index: int, action: Action) -> bool:
        manager = getattr(action, "manager", None)
        return self.rep_stop.get(action.rep, index) < index or (
            manager is not None and self.manager_stop.get(manager, index) < index
        )

    def write_all(self, actions: Sequence[Action]) -> None:
        """Every calendar write of the plan, within the pass's cap, in waves: each rep's first
        write in the first wave, their second (which may depend on the first: a handover ends
        the old series before the new one is made) in the second, and so on. A wave goes to
        the provider in one ``apply``, which fills its batches across managers."""
        cap = self.rt.config.settings.max_writes_per_pass
        queues: dict[str, list[int]] = {}
        planned = 0
        for index, action in enumerate(actions):
            if not _is_write(action):
                continue
            if planned >= cap:
                if action.rep not in self.rep_stop:
                    self.log.warning("write cap reached", cap=cap, rep=action.rep)
                # The rep's later actions (emails about a series not yet created) wait for
                # the pass that makes this write.
                self.rep_stop[action.rep] = min(self.rep_stop.get(action.rep, index), index)
                continue
            planned += 1
            queues.setdefault(action.rep, []).append(index)
        while queues:
            wave = [queue.pop(0) for queue in queues.values()]
            queues = {rep: queue for rep, queue in queues.items() if queue}
            self._apply(actions, [i for i in wave if not self._stopped(i, actions[i])])

    def _apply(self, actions: Sequence[Action], wave: list[int]) -> None:
        ledger = self.rt.ledger
        creates = [a for i in wave if isinstance(a := actions[i], CreateSeries)]
        if creates:
            # In the ledger as pending before the calendar has them: a crash in between is
            # found by the next pass (the series on the calendar confirms it).
            with ledger.transaction():
                for create in creates:
                    ledger.upsert_series(self._record(create))
            faults.point("series-pending")
        writes = [_provider_write(actions[i]) for i in wave]
        try:
            outcome = self.rt.provider.apply(writes)
        except ProviderError as exc:  # the provider could not take the writes at all
            outcome = [exc] * len(writes)
        for index, error in zip(wave, outcome, strict=True):
            try:
                self._done(actions[index], error)
            except ProviderError as exc:
                self._failed(index, actions[index], exc)

    def _failed(self, index: int, action: Action, exc: ProviderError) -> None:
        rep, manager = action.rep, str(getattr(action, "manager", ""))
        if isinstance(exc, Skipped):
            # The endpoint is down (said once, in the pass summary): the same stops as a
            # failure, without a line each.
            self.rep_stop[rep] = min(self.rep_stop.get(rep, index), index)
            self.manager_stop[manager] = min(self.manager_stop.get(manager, index), index)
            return
        self._count_error(exc)
        # Nothing more for this rep this pass either: after a failed end on the old manager's
        # calendar, a create on the new one would give the rep two series.
        self.rep_stop[rep] = min(self.rep_stop.get(rep, index), index)
        if isinstance(exc, Transient):
            self.manager_stop[manager] = min(self.manager_stop.get(manager, index), index)
            self.result.server_down(exc)
            self.log.warning("calendar unavailable", manager=manager, error=str(exc))
            return
        self.result.errors.append(f"{rep}: {exc}")
        if isinstance(exc, AuthError):
            self.result.access_denied(manager, exc)
            if _access_key(manager) in self.alerted:
                return  # said once, by the admin alert; and said once when it is over
        self.log.error("rep skipped", rep=rep, manager=manager, error=str(exc))

    def _record(self, action: CreateSeries) -> SeriesRecord:
        spec = action.spec
        return SeriesRecord(
            uid=spec.uid, rep=action.rep, manager=action.manager, stage=action.stage,
            rrule=spec.rrule, timezone=spec.timezone, start=spec.start.isoformat(),
            until=spec.until.isoformat() if spec.until else None,
            fingerprint=action.fingerprint, state="active" if action.restore else "pending",
            updated_at=_utc(self.now),
        )  # fmt: skip

    def _count_error(self, exc: ProviderError | MailError) -> None:
        settings = self.rt.config.settings
        side = settings.mail.transport if isinstance(exc, MailError) else settings.calendar.provider
        self.result.api_errors[(side, type(exc).__name__)] += 1

    def _done(self, action: Action, error: ProviderError | None) -> None:
        """What follows a calendar write the provider answered: the ledger, the log."""
        if isinstance(action, EndSeries):
            if isinstance(error, NotFound):
                # Gone already (a person deleted it, or an earlier pass removed it just
                # before a crash): there is nothing left to end; only the ledger catches up.
                self.log.info(
                    "series already gone", action="end", rep=action.rep,
                    manager=action.manager, series=action.uid, detail=str(error),
                )  # fmt: skip
            elif error is not None:
                raise error
            faults.point("series-ended")
            self._ended(action, written=error is None)
            return
        if error is not None:
            raise error
        if isinstance(action, CreateSeries):
            spec = action.spec
            faults.point("series-created")
            with self.rt.ledger.transaction():
                self.rt.ledger.upsert_series(_with(self._record(action), state="active"))
            self.result.writes += 1
            self.result.created += 1
            self.log.info(
                "series restored" if action.restore else "series created",
                action="create", rep=action.rep, manager=action.manager, series=spec.uid,
                stage=action.stage, rrule=spec.rrule, start=spec.start.isoformat(),
            )  # fmt: skip
        elif isinstance(action, WriteAgendas):
            faults.point("agendas-written")
            self.result.writes += 1
            self.result.agendas += 1
            self.log.info(
                "agendas written", action="agenda", rep=action.rep, manager=action.manager,
                series=action.uid, occurrences=len(action.blocks),
            )  # fmt: skip

    def _ended(self, action: EndSeries, *, written: bool) -> None:
        ledger = self.rt.ledger
        rec = ledger.get_series(action.uid)
        if rec is not None:
            state = "ended" if action.retire else rec.state
            with ledger.transaction():
                ledger.upsert_series(
                    _with(rec, state=state, until=action.until.isoformat(),
                          updated_at=_utc(self.now))
                )  # fmt: skip
        if written:
            self.result.writes += 1
            self.result.ended += 1
        if written or action.retire:
            self.log.info(
                "series ended" if action.retire else "series end set", action="end",
                rep=action.rep, manager=action.manager, series=action.uid,
                until=action.until.isoformat(), reason=action.reason,
            )  # fmt: skip

    def set_attendees(self, index: int, action: SetAttendees) -> None:
        """Who a pipeline review invites, after the waves (the series may be this pass's):
        one write under the same cap, and a failure stops the subject's later actions."""
        cap = self.rt.config.settings.max_writes_per_pass
        if self.result.writes >= cap:
            self.log.warning("write cap reached", cap=cap, rep=action.rep)
            self.rep_stop[action.rep] = min(self.rep_stop.get(action.rep, index), index)
            return
        try:
            self.rt.provider.set_attendees(action.manager, action.uid, action.attendees)
        except ProviderError as exc:
            self._failed(index, action, exc)
            return
        faults.point("attendees-set")
        self.result.writes += 1
        self.log.info(
            "attendees set", action="attendees", rep=action.rep, manager=action.manager,
            series=action.uid, occurrences=sum(k is not None for k in action.attendees),
            series_attendees=[a.email for a in action.attendees.get(None, ())] or None,
        )  # fmt: skip

    def record_review(self, action: RecordReviewOutcome) -> None:
        """A pipeline review cancelled or moved: remembered, counted apart, nobody emailed."""
        with self.rt.ledger.transaction():
            new = self.rt.ledger.record_review_outcome(
                ReviewOutcomeRecord(
                    uid=action.uid, original_start=_utc(action.original_start),
                    manager=action.manager, subject=action.subject, status=action.status,
                    reason=action.reason, detected_at=_utc(self.now),
                )
            )  # fmt: skip
        if new:
            if action.status == "cancelled":
                self.result.cancellations["pipeline_review"] += 1
            self.log.info(
                "pipeline review " + action.status, action="review_outcome", rep=action.subject,
                manager=action.manager, series=action.uid,
                original_start=action.original_start.isoformat(), reason=action.reason,
            )  # fmt: skip

    def record_band(self, action: RecordRateBand) -> None:
        ledger = self.rt.ledger
        if action.email is not None and not ledger.email_sent(*action.email):
            return  # the warning did not go: it stays due, and so does this crossing
        with ledger.transaction():
            ledger.set_rate_alert(action.subject, action.band, action.crossings, self.now)
        self.log.info(
            "rate band", action="rate", subject=action.subject, band=action.band,
            manager=action.manager,
        )  # fmt: skip

    def record(self, action: RecordCancellation | RecordCommitment | RecordReschedule) -> None:
        ledger = self.rt.ledger
        with ledger.transaction():
            if isinstance(action, RecordReschedule):
                new = ledger.record_reschedule(
                    RescheduleRecord(
                        uid=action.uid, original_start=_utc(action.original_start),
                        rep=action.rep, manager=action.manager, start=_utc(action.start),
                        detected_at=_utc(self.now),
                    )
                )  # fmt: skip
                if new:
                    self.log.info(
                        "reschedule", action="reschedule", rep=action.rep,
                        manager=action.manager, series=action.uid,
                        original_start=action.original_start.isoformat(),
                        start=action.start.isoformat(),
                    )  # fmt: skip
                return
            if isinstance(action, RecordCommitment):
                ledger.put_commitment(
                    action.uid, _utc(action.original_start), action.text, self.now
                )
                return
            new = ledger.record_cancellation(
                CancellationRecord(
                    uid=action.uid, original_start=_utc(action.original_start), rep=action.rep,
                    manager=action.manager, reason=action.reason,
                    week_of_quarter=action.week_of_quarter, week11=action.week11,
                    detected_at=_utc(self.now),
                )
            )  # fmt: skip
        if new:
            self.result.cancellations["week11_skip" if action.week11 else "cancellation"] += 1
            self.log.info(
                "cancellation", action="cancellation", rep=action.rep, manager=action.manager,
                series=action.uid, original_start=action.original_start.isoformat(),
                reason=action.reason, week11=action.week11,
            )  # fmt: skip

    def send(self, action: SendEmail) -> None:
        ledger = self.rt.ledger
        if ledger.email_sent(action.occurrence, action.ledger_kind):
            return
        context = action.context
        prep = self.rt.config.settings.prep
        if action.grant is not None and prep is not None:
            # A fresh link on every try: one made for a try that never went is harmless, and
            # one that went stays valid even if its email is retried after a crash.
            with ledger.transaction():
                token = preread.issue(ledger, action.grant, action.occurrence, self.now)
            context = {**context, "prep_url": prep.link(token)}
        rendered = self.rt.renderer.email(action.template, context)
        message = build_message(
            sender=self.rt.config.settings.mail.sender, to=action.to, cc=action.cc,
            subject=rendered.subject, text=rendered.text, html=rendered.html, kind=action.kind,
            occurrence=action.occurrence, now=self.now,
        )  # fmt: skip
        recipients = ", ".join(action.to + action.cc)
        try:
            self.rt.mailer.send(message)
        except MailRejected:
            # Refused for good (every recipient unknown): remembered, so that it is not tried
            # again every pass; the error is reported by the caller.
            with ledger.transaction():
                ledger.record_email(
                    action.occurrence, action.ledger_kind, recipients, "rejected", self.now
                )
            raise
        faults.point("email-sent")
        with ledger.transaction():
            ledger.record_email(
                action.occurrence, action.ledger_kind, recipients, str(message["Message-ID"]),
                self.now,
            )  # fmt: skip
        self.result.emails += 1
        self.result.sent[action.kind] += 1
        self.log.info(
            "email sent", action="email", kind=action.kind, rep=action.rep,
            manager=action.manager, occurrence=action.occurrence, to=list(action.to),
            cc=list(action.cc),
        )  # fmt: skip


def _is_write(action: Action) -> bool:
    """Whether the action writes to a calendar (an end the calendar already has does not)."""
    if isinstance(action, EndSeries):
        return action.write
    return isinstance(action, CreateSeries | WriteAgendas)


def _provider_write(action: Action) -> Write:
    if isinstance(action, CreateSeries):
        return Create(action.manager, action.spec)
    if isinstance(action, EndSeries):
        return End(action.manager, action.uid, action.until)
    assert isinstance(action, WriteAgendas)
    return Agendas(action.manager, action.uid, action.master_block, action.blocks)


# --- the commands -------------------------------------------------------------------------------


def run_once(config: Config, now: datetime | None, restore_missing: bool = False) -> int:
    # What the pass did is its output (stdout); stderr carries only the one-line verdict.
    logs.configure(stream=sys.stdout)
    now = now or datetime.now(UTC)
    with state_lock(config.settings.state_dir), runtime(config, restore_missing) as rt:
        result = run_pass(rt, now)
    for alarm in result.alarms:
        print(f"cadence: {alarm}", file=sys.stderr)
    if result.errors:
        print(f"cadence: {result.errors[0]}", file=sys.stderr)
    return result.exit_code


class Stopper:
    """SIGTERM / Ctrl-C: finish the pass in flight, then exit 0. SIGHUP: end the wait now, so
    the next pass (which first looks for roster edits) starts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None
        self.hangup = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hangup)

    def _stop(self, signum: int, _: Any) -> None:
        # Only note it: logging here could deadlock on the logger's lock if the signal lands
        # while the main thread is in the middle of writing a log line.
        self.signal = signal.Signals(signum).name
        self.event.set()

    def _hangup(self, signum: int, _: Any) -> None:
        self.hangup = True
        self.event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep until the next pass is due; True when a stop was asked for meanwhile."""
        self.event.wait(seconds)
        self.event.clear()
        if self.signal is not None:
            logs.get().info("stopping", signal=self.signal)
            return True
        if self.hangup:
            self.hangup = False
            logs.get().info("SIGHUP: looking at the roster now")
        return False


def backoff(failures: int, interval: float) -> float:
    """Seconds to wait after ``failures`` passes in a row that failed as a whole (the ledger,
    a template): 5 s doubling, capped at 5 minutes (or the interval, when that is longer)."""
    if failures == 0:
        return interval
    return float(min(5 * 2 ** (failures - 1), max(interval, 300)))


def pause_after(
    result: PassResult | None, failures: int, interval: float, probe_in: float | None
) -> float:
    """How long ``run`` waits after a pass. An endpoint that does not answer is its breaker's
    business (``daemon.breaker``): it is skipped until its own probe time, which may wake the
    loop sooner, while the endpoints that answer keep the interval. Only a pass that failed
    as a whole (``result`` None), or one that found a server down without a breaker to say so
    (a Maildir; failures under the threshold), backs the loop off, and never beyond the
    interval unless the whole pass failed."""
    if result is None:
        return backoff(failures, interval)
    pause = interval
    if result.unavailable and not result.endpoints_down:
        pause = min(backoff(failures, interval), interval)
    elif result.cut_short and not result.unavailable:
        pause = 0.0  # a big pass on a slow server: go on with the rest now
    if probe_in is not None:
        pause = min(pause, max(probe_in, 0.0))
    return max(pause, result.retry_after or 0.0)


def follow_roster(rt: Runtime, watch: RosterWatch) -> None:
    """Before a pass: switch to an edited roster when it is valid; keep the last good one and
    say why when it is not."""
    log = logs.get()
    check = watch.check()
    if check.outcome is Outcome.SWITCHED:
        before = {r.email for r in rt.config.roster.reps}
        after = {r.email for r in check.config.roster.reps}
        log.info(
            "roster reloaded", managers=len(check.config.roster.managers), reps=len(after),
            added=sorted(after - before), removed=sorted(before - after),
        )  # fmt: skip
        if check.restart_needed:
            log.warning("settings changed; they apply when cadence restarts",
                        settings=list(check.restart_needed))  # fmt: skip
        rt.config = check.config
    elif check.outcome is Outcome.FIXED:
        log.info("roster files back to the last good version")
    elif check.outcome is Outcome.INVALID:
        log.error("roster edit invalid; running on the last good roster",
                  problems=list(check.problems))  # fmt: skip
    rt.roster_problems = check.problems


def _status(
    config: Config,
    current: Callable[[], Config],
    clock: Callable[[], datetime],
    stack: ExitStack,
) -> tuple[Health, Instruments] | None:
    """Start the status endpoint when the config asks for one."""
    http = config.settings.http
    if http is None:
        return None
    from daemon.web.status import Health, Instruments, StatusServer

    health = Health(float(config.settings.interval_seconds), clock)
    instruments = Instruments()
    stack.enter_context(StatusServer(current, http.address, health, instruments, clock))
    return health, instruments


def _prep_form(
    config: Config,
    current: Callable[[], Config],
    renderer: Renderer,
    clock: Callable[[], datetime],
    stack: ExitStack,
) -> None:
    """Start the pre-read form when the config asks for one."""
    prep = config.settings.prep
    if prep is None:
        return
    from daemon.web.prep import PrepServer

    stack.enter_context(PrepServer(current, prep.address, renderer, clock))


def run_forever(
    config: Config,
    *,
    clock: Callable[[], datetime] | None = None,
    wait: Callable[[float], bool] | None = None,
    wait_for_lock: bool = False,
) -> int:
    """The daemon loop. ``clock`` and ``wait`` (sleep ``seconds``; True = stop now) stand in for
    the wall clock and the signal-aware sleep in tests; by default SIGTERM / SIGINT stop it.
    ``wait_for_lock`` waits for another daemon on the same state dir to stop (a rolling
    restart) instead of exiting; while it waits, a signal stops it at once."""
    logs.configure()
    log = logs.get()
    if wait is None:
        # Nothing is in flight while waiting for the lock: SIGTERM stops it as Ctrl-C does
        # (exit 0); the loop installs its own finish-the-pass handler once the lock is held.
        signal.signal(signal.SIGTERM, _interrupt)
    with state_lock(
        config.settings.state_dir,
        wait=wait_for_lock,
        waiting=lambda pid: log.info("waiting for the state dir lock", pid=pid),
    ):
        return _loop(config, log, clock, wait)


def _interrupt(signum: int, _: Any) -> None:
    raise KeyboardInterrupt


def _loop(
    config: Config,
    log: Any,
    clock: Callable[[], datetime] | None,
    wait: Callable[[float], bool] | None,
) -> int:
    if wait is None:
        stopper = Stopper()
        stopper.install()
        wait = stopper.wait
    clock = clock or (lambda: datetime.now(UTC))
    interval = float(config.settings.interval_seconds)
    failures = 0
    watch = RosterWatch(config)
    with runtime(config) as rt, ExitStack() as web:
        status = _status(config, lambda: rt.config, clock, web)
        _prep_form(config, lambda: rt.config, rt.renderer, clock, web)
        log.info("cadence running", interval_seconds=interval,
                 managers=len(config.roster.managers), reps=len(config.roster.reps))  # fmt: skip
        while True:
            now = clock()
            started = time.monotonic()
            result: PassResult | None = None
            problem: str | None = None
            try:
                follow_roster(rt, watch)
                result = run_pass(rt, now)
                failures = failures + 1 if result.unavailable else 0
                problem = result.errors[0] if result.unavailable and result.errors else None
            except CadenceError as exc:  # the ledger or a template failed: retry the pass later
                failures += 1
                problem = str(exc)
                log.error("pass failed", error=str(exc))
            if status is not None:
                health, instruments = status
                ok = result is not None and not result.unavailable
                instruments.record(result, time.monotonic() - started, ok, now)
                try:
                    alerts = open_alerts(rt.ledger)
                except CadenceError:  # the ledger is unreadable: the pass said so already
                    alerts = None
                down = result.endpoints_down if result is not None else None
                health.passed(now, ok, problem, alerts, down)
            probe = rt.breakers.next_probe()
            probe_in = None if probe is None else probe - clock().timestamp()
            pause = pause_after(result, failures, interval, probe_in)
            if failures:
                log.info("next pass after a troubled one", seconds=pause, failures=failures,
                         endpoints_down=result.endpoints_down if result else None)  # fmt: skip
            if wait(pause):
                break
    log.info("cadence stopped")
    return EXIT_OK
