"""Admin alerts: one email per distinct operational problem, one when it clears, never a storm.

The people who can fix what goes wrong in operation (an invalid roster edit, the safety valve,
a calendar the credentials cannot reach, mail refused for good) are the RevOps admins, not the
managers. ``organization.admins`` get an ``admin_alert`` email when such a problem starts and
another when it is over; without admins the log carries the same two lines.

A lasting problem is known by a stable key ("roster", "safety-valve <manager>", ...). While it
lasts, later passes that see it again say nothing new, even when its details change; once a pass
that could see it no longer does, it is cleared. The open problems live in the ledger (one flag),
so a restart neither repeats nor forgets them, and each email is recorded in the email ledger
under an id made from the key and the time it opened: a crash between sending and recording
sends nothing twice. An event (mail refused for good) is alerted once and has no "cleared".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from daemon import logs
from daemon.errors import MailRejected, MailUnavailable, TemplateProblem
from daemon.mail.message import build_message

if TYPE_CHECKING:
    from daemon.reconcile import Runtime
    from daemon.store import Ledger

FLAG = "admin_alerts"  # JSON: {key: {"opened": ISO instant, "summary": text}}
KIND = "admin_alert"
CLEARED = "admin_alert_cleared"  # the email ledger's kind for the "resolved" email
MAX_DETAILS = 20


@dataclass(frozen=True)
class Problem:
    key: str  # what makes two sightings the same problem
    summary: str  # one line
    details: tuple[str, ...] = ()
    advice: str = ""
    lasting: bool = True  # False: an event, alerted once and never cleared


def open_alerts(ledger: Ledger) -> list[dict[str, str]]:
    """The lasting problems open now, for the status endpoint: problem, summary, since."""
    opened: dict[str, dict[str, str]] = json.loads(ledger.get_flag(FLAG) or "{}")
    return [
        {"problem": key, "summary": value["summary"], "since": value["opened"]}
        for key, value in sorted(opened.items())
    ]


def _occurrence(key: str, opened: str) -> str:
    """The email ledger's id for this problem's emails (printable ASCII, whatever the key)."""
    return f"admin/{hashlib.sha256(key.encode()).hexdigest()[:16]}/{opened}"


class Alerts:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.log = logs.get()

    def update(self, problems: Sequence[Problem], now: datetime, *, settled: bool) -> int:
        """Open what is new, clear what is gone (only when ``settled``: a pass that could not
        reach a server cannot tell a problem is over). Returns the emails sent."""
        ledger = self.rt.ledger
        opened: dict[str, dict[str, str]] = json.loads(ledger.get_flag(FLAG) or "{}")
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        current = {p.key: p for p in problems if p.lasting}
        new = [p for key, p in current.items() if key not in opened]
        gone = [key for key in opened if key not in current] if settled else []
        if new or gone:
            for p in new:
                opened[p.key] = {"opened": stamp, "summary": p.summary}
                self.log.error(
                    "admin alert", problem=p.key, summary=p.summary, details=list(p.details)
                )
            for key in gone:
                self.log.info("admin alert cleared", problem=key, summary=opened[key]["summary"])
            with ledger.transaction():  # remembered first: the emails below are then due
                ledger.set_flag(FLAG, json.dumps({k: v for k, v in opened.items()
                                                  if k not in gone}))  # fmt: skip
        sent = 0
        for key, p in current.items():
            sent += self._send(p, opened[key]["opened"], cleared=False, now=now)
        for key in gone:
            summary = opened[key]["summary"]
            sent += self._send(Problem(key, summary), opened[key]["opened"], cleared=True, now=now)
        for p in problems:
            if not p.lasting and not ledger.email_sent(_occurrence(p.key, "event"), KIND):
                self.log.error("admin alert", problem=p.key, summary=p.summary)
                sent += self._send(p, "event", cleared=False, now=now)
        return sent

    def _send(self, p: Problem, opened: str, *, cleared: bool, now: datetime) -> int:
        admins = self.rt.config.roster.organization.admins
        occurrence = _occurrence(p.key, opened)
        kind = CLEARED if cleared else KIND
        ledger = self.rt.ledger
        if not admins or ledger.email_sent(occurrence, kind):
            return 0
        zone = ZoneInfo(self.rt.config.roster.organization.timezone)
        since = now if opened == "event" else datetime.strptime(opened, "%Y%m%dT%H%M%SZ")
        context = {
            "cleared": cleared,
            "since": since.replace(tzinfo=since.tzinfo or UTC).astimezone(zone),
            "summary": p.summary,
            "details": list(p.details[:MAX_DETAILS]),
            "advice": p.advice,
        }
        recipients = ", ".join(admins)
        try:
            rendered = self.rt.renderer.email(KIND, context)
            message = build_message(
                sender=self.rt.config.settings.mail.sender, to=list(admins),
                subject=rendered.subject, text=rendered.text, html=rendered.html, kind=KIND,
                occurrence=occurrence + ("/cleared" if cleared else ""), now=now,
            )  # fmt: skip
            self.rt.mailer.send(message)
        except MailRejected as exc:
            with ledger.transaction():
                ledger.record_email(occurrence, kind, recipients, "rejected", now)
            self.log.error("admin alert not delivered", problem=p.key, error=str(exc))
            return 0
        except (MailUnavailable, TemplateProblem) as exc:  # stays due: the next pass tries again
            self.log.warning("admin alert not sent yet", problem=p.key, error=str(exc))
            return 0
        with ledger.transaction():
            ledger.record_email(occurrence, kind, recipients, str(message["Message-ID"]), now)
        self.log.info("email sent", action="email", kind=KIND, to=list(admins), problem=p.key,
                      cleared=cleared)  # fmt: skip
        return 1
