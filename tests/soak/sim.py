"""The soak: the real daemon through simulated months, people on the calendars, faults at random.

Every simulated day (org time zone):

* the roster may change (a rep joins, leaves, changes manager, a senior AE's forecast flips),
* the daemon runs its passes at random times (``run_pass`` in process, through a proxy that
  fails requests; or, now and then, ``cadence once`` in a subprocess that SIGKILLs itself at a
  write step; some days it is down altogether),
* people act on the calendars between passes: decline, cancel, remove (EXDATE), move inside or
  outside the week, write notes outside the agenda, fill in a commitment, delete a series, put
  their own events on the calendar,

and after the day the invariants are checked against an independent reading of the calendars
(``tests.soak.reading``), the outbox and the ledger file. Everything random comes from one seed,
so a failing seed replays exactly: ``python -m tests.soak --seed N --days D``.
"""

from __future__ import annotations

import email
import logging
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from daemon.config import load
from daemon.mail.base import Mailer
from daemon.reconcile import PassClock, PassResult, Runtime, open_mailer, run_pass
from daemon.render import Renderer
from daemon.store import Ledger
from tests.fixtures.smtp import Recording, serve_smtp
from tests.soak.reading import Series, key_of, outside
from tests.soak.world import HOWS, CalDAVCalendars, Calendars, GoogleCalendars, OutlookCalendars

REPO = Path(__file__).resolve().parents[2]
ORG_TZ = ZoneInfo("America/New_York")
# Monday 19 Oct 2026: a quarter from here crosses both DST ends (Europe 25 Oct, US 1 Nov), the
# fiscal quarter boundary (1 Nov, fiscal year from 1 Feb) and week 11 of that quarter (Jan).
START = date(2026, 10, 19)
KILL_POINTS = ("series-pending", "series-created", "agendas-written", "email-sent", "series-ended")
PROVIDER_TIMEOUT = 0.5  # seconds: a held request (the timeout fault) costs this much wall time
RECAP_DELAY = timedelta(minutes=30)
RECAP_DEADLINE = timedelta(hours=24)
PREREAD_LEAD = timedelta(hours=24)
LOOKBACK = timedelta(days=8)

MANAGERS = {
    "maya@acme.test": ("Maya Chen", "America/Chicago", "vp@acme.test"),
    "raj@acme.test": ("Raj Patel", "Europe/London", None),
}


@dataclass
class Rep:
    email: str
    name: str
    role: str
    start_date: date
    manager: str
    timezone: str | None = None
    slot: str | None = None
    forecast: bool = False

    def yaml(self) -> str:
        extra = ""
        if self.timezone:
            extra += f", timezone: {self.timezone}"
        if self.slot:
            day, at = self.slot.split()
            extra += f', slot: {{day: {day}, time: "{at}"}}'
        if self.role == "senior_ae":
            extra += f", forecast_within_5pct: {str(self.forecast).lower()}"
        return (
            f"- {{email: {self.email}, name: {self.name}, role: {self.role}, "
            f"start_date: {self.start_date.isoformat()}, manager: {self.manager}{extra}}}"
        )


def initial_roster(start: date) -> list[Rep]:
    return [
        Rep("sam@acme.test", "Sam Ortiz", "sdr", start - timedelta(days=60), "maya@acme.test",
            "America/Denver", "tue 10:00"),
        Rep("lee@acme.test", "Lee Park", "ae", start - timedelta(days=120), "maya@acme.test"),
        Rep("ana@acme.test", "Ana Ruiz", "senior_ae", date(2021, 3, 15), "maya@acme.test",
            forecast=True),
        Rep("priya@acme.test", "Priya Shah", "sdr", start - timedelta(days=10), "raj@acme.test",
            "Asia/Kolkata"),
        Rep("tom@acme.test", "Tom Hale", "ae", date(2024, 1, 8), "raj@acme.test"),
        Rep("kai@acme.test", "Kai Moana", "senior_ae", date(2020, 6, 1), "raj@acme.test",
            "Pacific/Auckland"),
    ]  # fmt: skip


@dataclass
class Figures:
    seed: int
    days: int = 0
    passes: int = 0
    clean_passes: int = 0
    subprocess_passes: int = 0
    sigkills: int = 0
    down_days: int = 0
    edits: Counter[str] = field(default_factory=Counter)
    roster_changes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    emails: int = 0
    checks: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Cancelled:
    uid: str
    manager: str
    rep: str
    original: datetime
    at: datetime
    how: str


@dataclass
class Edit:
    """What a person changed on one occurrence (or the master), to be found there later."""

    uid: str
    manager: str
    original: datetime | None
    how: str
    start: datetime | None = None
    note: str | None = None


class TroubledSMTP(Recording):
    """Records what it accepts; refuses (451) or hangs up while ``mode`` says so."""

    def __init__(self) -> None:
        super().__init__()
        self.mode: str | None = None
        self.faults: Counter[str] = Counter()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mode == "smtp_refuse":
            self.faults["smtp_refuse"] += 1
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.mode == "smtp_drop":
            self.faults["smtp_drop"] += 1
            server.transport.close()
            return "250 never sent: the connection is closed"
        return await super().handle_DATA(server, session, envelope)


def local(day: date, hours: float) -> datetime:
    return datetime.combine(day, datetime.min.time(), ORG_TZ) + timedelta(hours=hours)


def week_of(moment: datetime, zone: Any) -> date:
    d = moment.astimezone(zone).date()
    return d - timedelta(days=d.weekday())


class Soak:
    def __init__(
        self, seed: int, days: int, root: Path, calendars: Calendars, *, smtp: Any = None
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.days = days
        self.root = root
        self.cal = calendars
        self.smtp = smtp  # the TroubledSMTP handler when mail goes by SMTP, else None
        self.fig = Figures(seed)
        self.roster = initial_roster(START)
        self.roster_by_day: dict[date, dict[str, str]] = {}
        self.joined = 0
        self.clean: list[datetime] = []
        self.first_seen: dict[str, datetime] = {}
        self.touched: set[str] = set()  # occurrence keys a person edited
        self.diverted: set[str] = set()  # ... moved, declined, cancelled or removed
        self.cancelled: list[Cancelled] = []
        self.moved_into: set[tuple[str, date]] = set()  # (rep, org week) a meeting moved into
        self.edits: list[Edit] = []
        self.deleted: dict[str, datetime] = {}  # uid -> when a person deleted it
        self.foreign: dict[tuple[str, str], bytes] = {}
        self.checked: set[str] = set()
        self.series: dict[str, Series] = {}
        self.renderer = Renderer(None)
        self.parsed: dict[str, tuple[str, str, str]] = {}
        self.rt: Runtime | None = None
        self.stack = ExitStack()
        self.log = (root / "daemon.log").open("a")
        structlog.configure(
            processors=[structlog.processors.TimeStamper(fmt="iso", utc=True),
                        structlog.processors.JSONRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(file=self.log),
        )  # fmt: skip

    # -- the deployment ----------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "cadence.yaml"

    def write_config(self) -> None:
        managers = "\n".join(
            f"- {{email: {m}, name: {n}, timezone: {tz}"
            + (f", escalate_to: {esc}}}" if esc else "}")
            for m, (n, tz, esc) in MANAGERS.items()
        )
        if self.smtp is not None:
            mail = f"transport: smtp, smtp: {{host: 127.0.0.1, port: {self.smtp_port}, security: none}}"
        else:
            mail = f"maildir: {self.root / 'outbox'}"
        self.config_path.write_text(
            'organization: {name: Acme, timezone: America/New_York, fiscal_year_start: "02-01"}\n'
            + "managers:\n" + textwrap.indent(managers, "  ") + "\n"
            + "reps:\n" + textwrap.indent("\n".join(r.yaml() for r in self.roster), "  ") + "\n"
            + f"state_dir: {self.root / 'state'}\n"
            + f"calendar: {self.cal.config_block()}\n"
            + f"mail: {{from: 'cadence <cadence@acme.test>', {mail}}}\n"
        )  # fmt: skip

    smtp_port = 0

    def runtime(self) -> Runtime:
        """The daemon's parts, built again after each roster change (as a restart would)."""
        if self.rt is None:
            self.stack.close()
            config = load(self.config_path)
            ledger = Ledger.open(config.settings.state_dir)
            self.stack.callback(ledger.close)
            mailer: Mailer = open_mailer(config)
            clock = PassClock()
            provider = self.cal.daemon_provider(PROVIDER_TIMEOUT, clock)
            self.rt = Runtime(config, provider, mailer, ledger, self.renderer, clock=clock)
        return self.rt

    # -- a day ---------------------------------------------------------------------------------

    def run(self) -> Figures:
        began = time.monotonic()
        self.write_config()
        for n in range(self.days):
            day = START + timedelta(days=n)
            self.fig.days += 1
            self.change_roster(day)
            self.roster_by_day[day] = {r.email: r.manager for r in self.roster}
            passes = [] if self.rng.random() < 0.03 else [
                local(day, self.rng.uniform(1, 12)), local(day, self.rng.uniform(13, 23.5))
            ]  # fmt: skip
            if not passes:
                self.fig.down_days += 1
            clean_today = bool(passes)
            self.people_act(local(day, 12.5))
            for at in passes:
                clean_today &= self.one_pass(at)
            self.read_all(local(day, 24))
            self.check(day, settled=clean_today)
            if self.fig.violations:
                break
        self.fig.seconds = time.monotonic() - began
        self.stack.close()
        self.log.close()
        structlog.reset_defaults()
        return self.fig

    def one_pass(self, at: datetime) -> bool:
        self.fig.passes += 1
        kill = self.rng.random() < 0.05
        repeat = self.rng.random() < 0.05
        if kill:
            return self.subprocess_pass(at)
        before = sum(self.cal.injected().values()) + self.mail_faults()
        if self.rng.random() < 0.2:
            kind = self.rng.choice(self.cal.fault_kinds)
            self.cal.arm(self.rng.randint(0, 5), kind, self.rng.choice((1, 1, 1, 2, 3)))
        if self.smtp is not None and self.rng.random() < 0.08:
            self.smtp.mode = self.rng.choice(("smtp_refuse", "smtp_drop"))
        result: PassResult | None = None
        try:
            rt = self.runtime()
            result = run_pass(rt, at)
            if repeat:  # the same instant again: a retry must change nothing
                again = run_pass(rt, at)
                if not (result.errors or again.errors) and (again.writes or again.emails):
                    self.violation(at, f"a repeated pass wrote {again.writes} and sent "
                                       f"{again.emails} emails")  # fmt: skip
        except Exception as exc:  # the daemon must never raise out of a pass
            self.violation(at, f"the pass raised {type(exc).__name__}: {exc}")
        finally:
            self.cal.disarm()
            if self.smtp is not None:
                self.smtp.mode = None
        fired = sum(self.cal.injected().values()) + self.mail_faults() > before
        if result is not None and result.alarms:
            self.violation(at, f"safety valve: {result.alarms}")
        ok = result is not None and not result.errors and not result.alarms and not fired
        if ok:
            self.clean.append(at)
            self.fig.clean_passes += 1
        return ok

    def mail_faults(self) -> int:
        return sum(self.smtp.faults.values()) if self.smtp is not None else 0

    def subprocess_pass(self, at: datetime) -> bool:
        self.fig.subprocess_passes += 1
        points = [p for p in KILL_POINTS if not (self.smtp is not None and p == "email-sent")]
        # Agendas and emails are written on most passes, series created and ended rarely: the
        # frequent points get the first hit, the rare ones any of the first three.
        name = self.rng.choice(points)
        nth = 1 if name in ("agendas-written", "email-sent") else self.rng.randint(1, 3)
        point = f"{name}#{nth}"
        env = {**os.environ, "CADENCE_TEST_FAULT": point}
        done = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "once", "--now", at.isoformat(),
             "--config", str(self.config_path)],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
        )  # fmt: skip
        if done.returncode == -9:
            self.fig.sigkills += 1
            self.fig.faults[f"sigkill@{point.split('#')[0]}"] += 1
            return False
        if done.returncode != 0:
            self.violation(at, f"cadence once exited {done.returncode}: {done.stderr.strip()}")
            return False
        self.clean.append(at)
        self.fig.clean_passes += 1
        return True

    def violation(self, at: datetime, text: str) -> None:
        self.fig.violations.append(f"seed {self.seed} {at.isoformat()}: {text}")

    # -- the roster ----------------------------------------------------------------------------

    def change_roster(self, day: date) -> None:
        rng = self.rng
        changed = False
        if rng.random() < 0.04 and len(self.roster) < 10:
            self.joined += 1
            role = rng.choice(("sdr", "ae", "senior_ae"))
            self.roster.append(Rep(
                f"new{self.joined}@acme.test", f"New Hire{self.joined}", role,
                day - timedelta(days=rng.randint(0, 200)), rng.choice(list(MANAGERS)),
                rng.choice((None, "America/Los_Angeles", "Asia/Kolkata", "Europe/Berlin")),
                forecast=rng.random() < 0.5,
            ))  # fmt: skip
            self.fig.roster_changes["join"] += 1
            changed = True
        if rng.random() < 0.03 and len(self.roster) > 3:
            self.roster.remove(rng.choice(self.roster))
            self.fig.roster_changes["leave"] += 1
            changed = True
        if rng.random() < 0.03:
            rep = rng.choice(self.roster)
            others = [m for m in MANAGERS if m != rep.manager]
            rep.manager = rng.choice(others)
            rep.slot = None  # a new manager: a new slot is chosen
            self.fig.roster_changes["change_manager"] += 1
            changed = True
        seniors = [r for r in self.roster if r.role == "senior_ae"]
        if seniors and rng.random() < 0.02:
            rep = rng.choice(seniors)
            rep.forecast = not rep.forecast
            self.fig.roster_changes["forecast_flip"] += 1
            changed = True
        if changed:
            self.write_config()
            self.rt = None

    # -- people on the calendars ---------------------------------------------------------------

    def read_all(self, at: datetime) -> None:
        self.series = {}
        for manager in MANAGERS:
            for uid, s in self.cal.read(manager).items():
                self.series[uid] = s
                if s.owned:
                    self.first_seen.setdefault(uid, at)

    def owned(self) -> list[Series]:
        return [s for s in self.series.values() if s.owned and s.rep]

    def people_act(self, at: datetime) -> None:
        rng = self.rng
        if rng.random() < 0.02:
            manager = rng.choice(list(MANAGERS))
            n = len(self.foreign) + 1
            uid = f"foreign-{n}"
            self.cal.put_foreign(manager, uid, at, n)
            body = self.cal.raw(manager, uid)
            assert body is not None
            self.foreign[(manager, uid)] = body
            self.fig.edits["own_event"] += 1
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            self.one_edit(at)
        if rng.random() < 0.02:
            self.delete_one(at)

    def candidates(self, at: datetime) -> list[tuple[Series, datetime]]:
        rostered = {r.email for r in self.roster}
        out = []
        for s in self.owned():
            if s.rep not in rostered or s.uid in self.deleted:
                continue
            for original in s.scheduled(at + timedelta(hours=2), at + timedelta(days=10)):
                if key_of(s.uid, original) in self.touched:
                    continue
                if s.happening(original) != (original, False):
                    continue
                out.append((s, original))
        return out

    def one_edit(self, at: datetime) -> None:
        rng = self.rng
        found = self.candidates(at)
        if not found:
            return
        s, original = rng.choice(found)
        how = rng.choice(HOWS)
        if self.cal.raw(s.manager, s.uid) is None:
            return
        key = key_of(s.uid, original)
        zone = original.tzinfo
        rep = s.rep or ""
        note: str | None = None
        new: datetime | None = None
        if how == "master_note":
            note = f"Note for the whole series #{len(self.edits)}"
        elif how == "note":
            note = f"Note from a person #{len(self.edits)}"
        elif how == "commitment":
            note = f"call 5 prospects #{key}"
        elif how == "move_out":
            new = original + timedelta(days=7)
        elif how == "move_in":
            new = original + timedelta(hours=rng.choice((-2, -1, 1, 2)))
            if week_of(new, zone) != week_of(original, zone) or week_of(new, ORG_TZ) != week_of(
                original, ORG_TZ
            ):
                return
        self.cal.edit(s.manager, s.uid, original, how, rep=rep, duration=s.duration, note=note,
                      start=new)  # fmt: skip
        if how == "master_note":
            self.edits.append(Edit(s.uid, s.manager, None, how, note=note))
        elif how in ("decline", "cancel", "exdate", "move_out"):
            self.cancelled.append(Cancelled(s.uid, s.manager, rep, original, at, how))
        if how in ("decline", "cancel"):
            self.edits.append(Edit(s.uid, s.manager, original, how))
        elif how in ("move_in", "move_out"):
            self.edits.append(Edit(s.uid, s.manager, original, how, start=new))
            if how == "move_out":
                assert new is not None
                self.moved_into.add((rep, week_of(new, ORG_TZ)))
        elif how == "note":
            self.edits.append(Edit(s.uid, s.manager, original, how, note=note))
        self.touched.add(key)
        if how in ("decline", "cancel", "exdate", "move_in", "move_out"):
            self.diverted.add(key)
        self.fig.edits[how] += 1

    def delete_one(self, at: datetime) -> None:
        by_manager: dict[str, list[Series]] = {}
        for s in self.owned():
            if s.until is None or s.until >= at.date():
                by_manager.setdefault(s.manager, []).append(s)
        choices = [ss for ss in by_manager.values() if len(ss) >= 3]
        if not choices:
            return
        victim = self.rng.choice(self.rng.choice(choices))
        self.cal.delete(victim.manager, victim.uid)
        self.deleted[victim.uid] = at
        self.fig.edits["delete_series"] += 1

    # -- the invariants ------------------------------------------------------------------------

    def outbox(self) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        if self.smtp is not None:
            for r in self.smtp.received:
                m = r.message
                found.append(
                    (str(m["X-Cadence-Occurrence"]), str(m["X-Cadence-Kind"]), str(m["To"]))
                )
            return found
        box = self.root / "outbox"
        for sub in ("new", "cur"):
            folder = box / sub
            if not folder.exists():
                continue
            for path in folder.iterdir():
                name = path.name.split(":", 1)[0]
                if name not in self.parsed:
                    with path.open("rb") as handle:
                        m = email.message_from_binary_file(handle, policy=default)
                    self.parsed[name] = (
                        str(m["X-Cadence-Occurrence"]),
                        str(m["X-Cadence-Kind"]),
                        str(m["To"]),
                    )
                found.append(self.parsed[name])
        return found

    def ledger_cancellations(self) -> list[tuple[str, str]]:
        path = self.root / "state" / "cadence.sqlite3"
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT uid, original_start FROM cancellations").fetchall()
        return [(str(a), str(b)) for a, b in rows]

    def clean_between(self, start: datetime, end: datetime) -> bool:
        return any(start <= t < end for t in self.clean)

    def stable(self, rep: str, manager: str, start: datetime, end: datetime) -> bool:
        d = start.astimezone(ORG_TZ).date() - timedelta(days=1)
        last = end.astimezone(ORG_TZ).date() + timedelta(days=1)
        while d <= last:
            roster = self.roster_by_day.get(d)
            if roster is not None and roster.get(rep) != manager:
                return False
            if roster is None and d <= max(self.roster_by_day):
                return False
            d += timedelta(days=1)
        return True

    def deleted_near(self, uid: str, start: datetime, end: datetime) -> bool:
        when = self.deleted.get(uid)
        return when is not None and start - timedelta(days=3) <= when <= end + timedelta(days=2)

    def check(self, day: date, *, settled: bool) -> None:
        now = local(day, 24)
        self.fig.checks["days"] += 1
        self.check_weeks(now)
        if settled:
            self.check_every_rep_has_meetings(now)
        sent = self.outbox()
        self.fig.emails = len(sent)
        twice = [k for k, n in Counter(sent).items() if n > 1]
        if twice:
            self.violation(now, f"emails sent twice: {twice[:3]}")
        kinds: dict[str, set[str]] = {}
        for occurrence, kind, _ in sent:
            kinds.setdefault(occurrence, set()).add(kind)
        for occurrence, found in kinds.items():
            if {"cancellation", "week11_skip"} <= found:
                self.violation(now, f"both a cancellation and a week-11 warning for {occurrence}")
        self.check_emails_due(now, sent)
        self.check_cancellations(now, sent)
        self.check_people_edits(now)
        for (manager, uid), body in self.foreign.items():
            self.fig.checks["foreign"] += 1
            if self.cal.raw(manager, uid) != body:
                self.violation(now, f"a person's own event {uid} on {manager} was changed")

    def check_weeks(self, now: datetime) -> None:
        """Never two 1:1s for a rep in a week because of cadence (the rules, not people)."""
        per_week: dict[tuple[str, date], list[tuple[datetime, Series]]] = {}
        for s in self.owned():
            for original in s.scheduled(now - timedelta(days=7), now + timedelta(days=28)):
                zone = original.tzinfo
                per_week.setdefault((s.rep or "", week_of(original, zone)), []).append(
                    (original, s)
                )
        for (rep, week), found in per_week.items():
            self.fig.checks["rep_weeks"] += 1
            limit = max(s.days_per_week for _, s in found)
            if len(found) > limit:
                what = sorted(f"{o.isoformat()} {s.uid[:14]}" for o, s in found)
                self.violation(now, f"{rep} has {len(found)} 1:1s in the week of {week}: {what}")

    def check_every_rep_has_meetings(self, now: datetime) -> None:
        """After a day of clean passes: every rep on the roster meets in the next two weeks,
        and nobody who left still has meetings beyond the week's end."""
        rostered = {r.email: r.manager for r in self.roster}
        ahead: Counter[str] = Counter()
        stray: list[str] = []
        for s in self.owned():
            upcoming = s.scheduled(now, now + timedelta(days=15))
            ahead[s.rep or ""] += len(upcoming)
            late = s.scheduled(now + timedelta(days=8), now + timedelta(days=60))
            if late and rostered.get(s.rep or "") != s.manager:
                stray.append(f"{s.rep} on {s.manager} ({s.uid[:14]})")
        for rep in rostered:
            self.fig.checks["rep_days"] += 1
            if ahead[rep] == 0:
                self.violation(now, f"{rep} is on the roster but has no 1:1 in the next 2 weeks")
        if stray:
            self.violation(now, f"series still running for reps no longer theirs: {stray}")

    def check_emails_due(self, now: datetime, sent: list[tuple[str, str, str]]) -> None:
        """Every pre-read and recap due at a clean pass went (checked once the window closed)."""
        have = {(o, k, to.lower()) for o, k, to in sent}
        have_kind = {(o, k) for o, k, _ in sent}
        for s in self.owned():
            seen = self.first_seen.get(s.uid)
            if seen is None:
                continue
            for original in s.scheduled(now - timedelta(days=3), now - RECAP_DEADLINE):
                key = key_of(s.uid, original)
                if key in self.checked or key in self.diverted:
                    continue
                self.checked.add(key)
                if s.happening(original) != (original, False):
                    continue
                end = original + s.duration
                rep = s.rep or ""
                if original < seen or not self.stable(rep, s.manager, original - PREREAD_LEAD,
                                                        end + RECAP_DEADLINE):  # fmt: skip
                    continue
                if self.deleted_near(s.uid, original, end):
                    continue
                self.fig.checks["occurrences"] += 1
                if self.clean_between(max(original - PREREAD_LEAD, seen), original):
                    for reader in (rep, s.manager):
                        if (key, "preread", reader) not in have:
                            self.violation(now, f"pre-read to {reader} for {key} never went")
                recap_due = self.clean_between(max(end + RECAP_DELAY, seen), end + RECAP_DEADLINE)
                if recap_due and (key, "recap") not in have_kind:
                    self.violation(now, f"recap for {key} ({rep}) never went")

    def check_cancellations(self, now: datetime, sent: list[tuple[str, str, str]]) -> None:
        """Each cancellation a person made is recorded once and warned about once."""
        warned = Counter(o for o, k, _ in sent if k in ("cancellation", "week11_skip"))
        recorded = Counter(f"{uid} {start}" for uid, start in self.ledger_cancellations())
        made = {key_of(c.uid, c.original) for c in self.cancelled}
        for key, n in recorded.items():
            if key not in made:
                self.violation(now, f"a cancellation nobody made was recorded: {key}")
            if n > 1:
                self.violation(now, f"cancellation recorded {n} times: {key}")
        for key in warned:
            if key not in made:
                self.violation(now, f"a cancellation warning for a meeting nobody cancelled: {key}")
        for c in self.cancelled:
            key = key_of(c.uid, c.original)
            week_start = week_of(c.original, ORG_TZ)
            week_end = datetime.combine(week_start + timedelta(days=7), datetime.min.time(), ORG_TZ)
            closes = max(week_end, c.original + LOOKBACK)
            if now < closes or key in self.checked:
                continue
            self.checked.add(key)
            s = self.series.get(c.uid)
            if s is None or (s.until is not None and c.original.date() > s.until):
                continue
            if self.deleted_near(c.uid, c.at, closes) or not self.stable(
                c.rep, c.manager, c.at, closes
            ):
                continue
            self.fig.checks["cancellations"] += 1
            if self.clean_between(c.at, c.original + LOOKBACK) and recorded[key] != 1:
                self.violation(now, f"{c.how} of {key} recorded {recorded[key]} times")
            replaced = (c.rep, week_start) in self.moved_into
            if self.clean_between(c.at, week_end) and not replaced and warned[key] != 1:
                self.violation(now, f"{c.how} of {key} warned about {warned[key]} times")

    def check_people_edits(self, now: datetime) -> None:
        """Nothing outside the agenda markers, and no move, decline or cancel, is undone."""
        for e in self.edits:
            s = self.series.get(e.uid)
            if s is None or e.uid in self.deleted:
                continue
            if e.original is not None and s.until is not None and e.original.date() > s.until:
                continue
            self.fig.checks["edits"] += 1
            if e.original is None:
                if e.note and e.note not in outside(s.description):
                    self.violation(now, f"a person's note on series {e.uid} was lost")
                continue
            found = s.overrides.get(e.original)
            if found is None:
                self.violation(now, f"a person's {e.how} of {key_of(e.uid, e.original)} is gone")
                continue
            if e.note and e.note not in outside(found.description):
                self.violation(now, f"a person's note on {key_of(e.uid, e.original)} was lost")
            if e.start is not None and found.start != e.start:
                self.violation(now, f"a person's move of {key_of(e.uid, e.original)} was undone")
            if e.how == "cancel" and not found.cancelled:
                self.violation(now, f"a person's cancel of {key_of(e.uid, e.original)} was undone")
            if e.how == "decline" and not found.declined_by:
                self.violation(now, f"a decline of {key_of(e.uid, e.original)} was undone")
        for c in self.cancelled:
            s = self.series.get(c.uid)
            if c.how != "exdate" or s is None or c.uid in self.deleted:
                continue
            if s.until is not None and c.original.date() > s.until:
                continue
            if c.original not in s.exdates:
                self.violation(now, f"an EXDATE of {key_of(c.uid, c.original)} was undone")


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def soak(seed: int, days: int, root: Path, provider: str = "caldav") -> Figures:
    """One seed on one provider (``caldav``, ``google`` or ``outlook``): its own calendar server, fault proxy,
    outbox (Maildir on even seeds, SMTP on odd) and ledger."""
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        calendars: Calendars
        if provider == "google":
            calendars = stack.enter_context(
                GoogleCalendars.started(root, list(MANAGERS), PROVIDER_TIMEOUT)
            )
        elif provider == "outlook":
            outlook = stack.enter_context(
                OutlookCalendars.started(root, list(MANAGERS), PROVIDER_TIMEOUT)
            )
            for name, value in outlook.environment().items():  # for `cadence once` too
                stack.callback(_restore, name, os.environ.get(name))
                os.environ[name] = value
            calendars = outlook
        else:
            calendars = stack.enter_context(
                CalDAVCalendars.started(root / "radicale", PROVIDER_TIMEOUT)
            )
        handler = None
        port = 0
        if seed % 2:
            handler = TroubledSMTP()
            port = stack.enter_context(serve_smtp(handler)).port
        runner = Soak(seed, days, root, calendars, smtp=handler)
        runner.smtp_port = port
        figures = runner.run()
        for kind, n in calendars.injected().items():
            figures.faults[kind] += n
        if handler is not None:
            for kind, n in handler.faults.items():
                figures.faults[kind] += n
        return figures
