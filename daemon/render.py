"""Everything people read from cadence comes out of Jinja templates: invite agendas and emails.

The words live in ``templates/`` so an admin can change them without touching code: a file with
the same name in the admin's folder replaces that one built-in template and nothing else. Because
a broken template would otherwise surface as a half-sent batch of emails, ``Renderer.check``
renders every template against realistic sample contexts at startup, and every Jinja failure is
turned into a ``TemplateProblem`` naming the file and the line.

Text (the agenda, plain-text email parts, subjects) and HTML are two environments: HTML escapes
every value, so a name or a commitment a person typed is always shown, never interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    BytecodeCache,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.bccache import Bucket

from daemon.core.agenda import COMMITMENT_LABEL, blocks_for, read_commitment, wrap
from daemon.errors import TemplateProblem

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "templates"

EMAIL_KINDS = (
    "preread_rep",
    "preread_manager",
    "preread_missing",
    "recap",
    "cancellation",
    "week11_skip",
    "series_restored",
    "rate_warning",
    "admin_alert",
)
AGENDA_TEMPLATES = ("coaching", "career")
PAGES = ("prep_form", "prep_gone")  # the pre-read form's pages
REVIEW_AGENDA = "agenda_pipeline_review"  # the deal review's agenda, in its own invite

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _aware(value: object) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise TypeError(f"expected an aware datetime, got {value!r}")
    return value


def day(value: object) -> str:
    """``Tue 24 Nov``, independent of the process locale."""
    dt = _aware(value)
    return f"{_DAYS[dt.weekday()]} {dt.day} {_MONTHS[dt.month - 1]}"


def weekday(value: object) -> str:
    """``Thursday``, independent of the process locale."""
    return _WEEKDAYS[_aware(value).weekday()]


def when(value: object) -> str:
    """``Tue 24 Nov, 10:00 MST``: the datetime is already in the reader's zone."""
    dt = _aware(value)
    return f"{day(dt)}, {dt:%H:%M} {dt:%Z}"


class _CompiledTemplates(BytecodeCache):
    """Compiled templates kept for the life of the process, found by a template's file and the
    checksum of its source: every pass makes a new ``Renderer`` (an admin's edited template is
    read again, and compiled again only when it changed) without compiling every template again,
    which used to cost more than the rest of a quiet pass."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)  # ignored when the source's checksum differs

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


# One per environment kind: the same file compiles differently with and without autoescape.
_COMPILED = {False: _CompiledTemplates(), True: _CompiledTemplates()}


def _environment(loader: BaseLoader, autoescape: bool) -> Environment:
    env = Environment(
        loader=loader,
        autoescape=autoescape,  # noqa: S701 - the text environment renders plain text only
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # what check() rendered at startup is what gets sent
        bytecode_cache=_COMPILED[autoescape],
    )
    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["weekday"] = weekday
    return env


class Renderer:
    """Renders agendas and emails from the built-in templates, or an admin's replacements."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self.override_dir = override_dir.resolve() if override_dir is not None else None
        dirs = [str(p) for p in (self.override_dir, BUILTIN_DIR) if p is not None]
        loader = ChoiceLoader([FileSystemLoader(d) for d in dirs])
        self._text = _environment(loader, autoescape=False)
        self._html = _environment(loader, autoescape=True)

    # --- public -------------------------------------------------------------------------------

    def check(self) -> None:
        """Load and render every template the daemon uses; raise one ``TemplateProblem`` with
        a line per problem, so an admin fixes them all in one go before anything is sent."""
        problems: list[str] = []
        if self.override_dir is not None and not self.override_dir.is_dir():
            problems.append(f"template folder '{self.override_dir}' does not exist")
        for key, ctx in _check_contexts():
            try:
                if key in PAGES:
                    self.page(key, ctx)
                elif key == REVIEW_AGENDA:
                    self.review(ctx)
                elif key.startswith("agenda"):
                    self._check_agenda(ctx)
                else:
                    self.email(key, ctx)
            except TemplateProblem as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        if problems:
            raise TemplateProblem("\n".join(problems))

    def agenda(self, ctx: Mapping[str, object]) -> str:
        """The plain-text agenda body for an invite; the caller wraps it in the markers."""
        kind = ctx.get("template")
        if kind not in AGENDA_TEMPLATES:
            raise TemplateProblem(
                f"no agenda template for {kind!r}; expected one of {', '.join(AGENDA_TEMPLATES)}"
            )
        return self._render(self._text, f"agenda_{kind}.txt.j2", ctx).rstrip("\n")

    def review(self, ctx: Mapping[str, object]) -> str:
        """The plain-text deal-review agenda for a pipeline review's invite."""
        return self._render(self._text, f"{REVIEW_AGENDA}.txt.j2", ctx).rstrip("\n")

    def email(self, kind: str, ctx: Mapping[str, object]) -> RenderedEmail:
        """Subject, plain text and HTML of one email."""
        if kind not in EMAIL_KINDS:
            raise TemplateProblem(
                f"no email template for {kind!r}; expected one of {', '.join(EMAIL_KINDS)}"
            )
        subject = " ".join(self._render(self._text, f"{kind}.subject.j2", ctx).split())
        if not subject:
            raise TemplateProblem(f"template {self._shown(f'{kind}.subject.j2')}: empty subject")
        text = self._render(self._text, f"{kind}.txt.j2", ctx)
        html = self._render(self._html, f"{kind}.html.j2", {**ctx, "subject": subject})
        return RenderedEmail(subject=subject, text=text, html=html)

    def page(self, name: str, ctx: Mapping[str, object]) -> str:
        """One HTML page of the pre-read form, values autoescaped."""
        if name not in PAGES:
            raise TemplateProblem(f"no page template {name!r}; expected one of {', '.join(PAGES)}")
        return self._render(self._html, f"{name}.html.j2", ctx)

    # --- internals ----------------------------------------------------------------------------

    def _check_agenda(self, ctx: Mapping[str, object]) -> None:
        """The daemon reads the commitment back from the agenda: the line must be there, once."""
        body = self.agenda(ctx)
        name = self._shown(f"agenda_{ctx['template']}.txt.j2")
        labelled = [ln for ln in body.splitlines() if ln.lstrip().startswith(COMMITMENT_LABEL)]
        filled = body.replace(COMMITMENT_LABEL, f"{COMMITMENT_LABEL} check", 1)
        if (
            len(labelled) != 1
            or labelled[0].strip() != COMMITMENT_LABEL
            or body.count(COMMITMENT_LABEL) != 1
            or read_commitment(wrap(filled)) != "check"
        ):
            raise TemplateProblem(
                f"template {name}: the agenda needs exactly one empty line starting with "
                f"'{COMMITMENT_LABEL}' for people to fill in, and that label nowhere else"
            )

    def _shown(self, name: str, filename: str | None = None) -> str:
        """How a template is named in a problem: its full path when the admin's file is used."""
        if filename is None:
            try:
                filename = self._text.get_template(name).filename
            except Exception:  # naming a template in a problem must not fail
                filename = None
        if filename and self.override_dir is not None:
            path = Path(filename).resolve()
            if path.is_relative_to(self.override_dir):
                return f"'{path}'"
        return f"'{name}'"

    def _render(self, env: Environment, name: str, ctx: Mapping[str, object]) -> str:
        try:
            return env.get_template(name).render(dict(ctx))
        except TemplateSyntaxError as exc:
            where = self._shown(exc.name or name, exc.filename)
            raise TemplateProblem(f"template {where} line {exc.lineno}: {exc.message}") from None
        except TemplateNotFound as exc:
            if exc.name == name:
                raise TemplateProblem(f"template '{name}' not found") from None
            frame = _template_frame(exc.__traceback__)
            where = self._located(name, frame)
            raise TemplateProblem(f"{where}: uses '{exc.name}', which does not exist") from None
        except Exception as exc:  # an admin's template can raise anything
            frame = _template_frame(exc.__traceback__)
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise TemplateProblem(f"{self._located(name, frame)}: {detail}") from None

    def _located(self, name: str, frame: tuple[str, int] | None) -> str:
        if frame is None:
            return f"template {self._shown(name)}"
        filename, line = frame
        return f"template {self._shown(Path(filename).name, filename)} line {line}"


def _template_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """(file, line) of the innermost template frame: Jinja rewrites tracebacks so a template's
    frames carry the template's file name and the template's line number."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


# --- samples ------------------------------------------------------------------------------------
# One realistic context per template, shaped exactly like the reconcile loop's. ``check`` renders
# them (plus the variants below, so every branch is exercised) and docs/examples shows them.

_DENVER = ZoneInfo("America/Denver")
_CHICAGO = ZoneInfo("America/Chicago")

_SAM = {"name": "Sam Ortiz", "first_name": "Sam", "email": "sam@acme.test"}
_LEE = {"name": "Lee Park", "first_name": "Lee", "email": "lee@acme.test"}
_MAYA = {"name": "Maya Chen", "first_name": "Maya", "email": "maya@acme.test"}
_NEW_SDR = {
    "key": "new_sdr",
    "label": "New SDR",
    "inspection_focus": "activity volume + script delivery",
    "skill_focus": "discovery openers, voicemail scripts",
    "cadence": "twice a week, 25 minutes",
}
_RAMPED_AE = {
    "key": "ramped_ae",
    "label": "Ramped AE",
    "inspection_focus": "win rate + cycle length",
    "skill_focus": "multi-thread, executive presence",
    "cadence": "once a week, 30 minutes",
}
_LAST = "Open every Northwind cold call with their hiring news, not our product"
_SAM_TUE = datetime(2026, 11, 24, 10, 0, tzinfo=_DENVER)
_SAM_WEEK11 = datetime(2027, 1, 12, 10, 0, tzinfo=_DENVER)
_LEE_MON = datetime(2026, 11, 30, 9, 0, tzinfo=_CHICAGO)


_NUMBER = "Activities, week of 16 Nov: 41 (your 4-week baseline 52.5, -22%)."
_PENDING = (
    "Activities, week of 4 Jan: not in yet; cadence fills it in once metrics.csv has that week "
    "(after Sun 10 Jan)."
)


def _blocks(minutes: int) -> dict[str, int]:
    b = blocks_for(minutes)
    return {"number": b.number, "skill": b.skill, "commitment": b.commitment}


_COACHING: dict[str, object] = {
    "rep": _SAM,
    "manager": _MAYA,
    "stage": _NEW_SDR,
    "start": _SAM_TUE,
    "duration_minutes": 25,
    "blocks": _blocks(25),
    "template": "coaching",
    "week_of_quarter": 4,
    "week11": False,
    "last_commitment": _LAST,
    "preread": {"rep": [], "manager": []},
    "number": _NUMBER,
    "metrics_on": True,
}
# What people filed through the pre-read form, as the agenda block shows it.
_FILED = {
    "rep": [
        ("The deal I'm stuck on", "Initech: the champion went dark after the demo"),
        ("The skill I want to sharpen", "Voicemails that get a call back"),
        ("My question for my manager", "Should I go around the champion to the CFO?"),
    ],
    "manager": [
        ("One observation from a call or email", "Tuesday's Globex call: great opener"),
        ("One question", "What would make you pick up a voicemail like yours?"),
    ],
}

SAMPLES: dict[str, dict[str, object]] = {
    "agenda_coaching": _COACHING,
    "agenda_prep": {**_COACHING, "preread": _FILED},
    "agenda_career": {
        "rep": _LEE,
        "manager": _MAYA,
        "stage": _RAMPED_AE,
        "start": _LEE_MON,
        "duration_minutes": 30,
        "blocks": _blocks(30),
        "template": "career",
        "week_of_quarter": 5,
        "week11": False,
        "last_commitment": "Get the Globex CFO on the second call by asking the champion for her",
        "preread": {"rep": [], "manager": []},
        "number": None,
        "metrics_on": True,
    },
    "agenda_week11": {
        "rep": _SAM,
        "manager": _MAYA,
        "stage": _NEW_SDR,
        "start": _SAM_WEEK11,
        "duration_minutes": 25,
        "blocks": _blocks(25),
        "template": "coaching",
        "week_of_quarter": 11,
        "week11": True,
        "last_commitment": None,
        "preread": {"rep": [], "manager": []},
        "number": _PENDING,
        "metrics_on": True,
    },
    "preread_rep": {
        "rep": _SAM,
        "manager": _MAYA,
        "start": _SAM_TUE,
        "duration_minutes": 25,
        "stage": _NEW_SDR,
        "template": "coaching",
        "week11": False,
        "last_commitment": _LAST,
        "prep_url": "https://cadence.acme.test/prep/4q3Xb9vJ0mKc2tTz8wYp1LrNn6sHd5Ge7AaUuFiQo0k",
        "number": _NUMBER,
    },
    "preread_manager": {
        "rep": _SAM,
        "manager": _MAYA,
        "start": _SAM_TUE.astimezone(_CHICAGO),
        "duration_minutes": 25,
        "stage": _NEW_SDR,
        "template": "coaching",
        "week11": False,
        "last_commitment": _LAST,
        "prep_url": "https://cadence.acme.test/prep/Zr8Kd1pQ3vWm6yTb0nLs9HcE2fXa7JgU5oRiNk4tYq",
        "number": _NUMBER,
    },
    "preread_missing": {
        "manager": _MAYA,
        "rep": _SAM,
        "start": _SAM_TUE.astimezone(_CHICAGO),
        "duration_minutes": 25,
        "suggestions": [
            datetime(2026, 11, 26, 10, 0, tzinfo=_CHICAGO),
            datetime(2026, 11, 27, 11, 30, tzinfo=_CHICAGO),
        ],
    },
    "recap": {
        "rep": _SAM,
        "manager": _MAYA,
        "start": _SAM_TUE.astimezone(_CHICAGO),
        "stage": _NEW_SDR,
        "template": "coaching",
        "commitment": (
            "Ask every Initech prospect what a missed quarter costs them, on Thursday's calls"
        ),
        "window_ends": _SAM_TUE + timedelta(minutes=25, hours=72),
        "number": _NUMBER,
    },
    "cancellation": {
        "manager": _MAYA,
        "rep": _SAM,
        "original_start": _SAM_TUE.astimezone(_CHICAGO),
        "reason": "declined by Sam Ortiz",
        "week_of_quarter": 4,
        "suggestions": [
            datetime(2026, 11, 25, 9, 30, tzinfo=_CHICAGO),
            datetime(2026, 11, 27, 10, 0, tzinfo=_CHICAGO),
            datetime(2026, 11, 27, 14, 30, tzinfo=_CHICAGO),
        ],
        "duration_minutes": 25,
    },
    "week11_skip": {
        "manager": _MAYA,
        "rep": _SAM,
        "original_start": _SAM_WEEK11.astimezone(_CHICAGO),
        "reason": "removed from the series",
        "week_of_quarter": 11,
        "suggestions": [
            datetime(2027, 1, 13, 11, 0, tzinfo=_CHICAGO),
            datetime(2027, 1, 15, 9, 0, tzinfo=_CHICAGO),
        ],
        "duration_minutes": 25,
        "escalate_to": "vp@acme.test",
    },
    "series_restored": {
        "manager": _MAYA,
        "rep": _SAM,
        "stage": _NEW_SDR,
        "schedule": "Tue and Thu at 10:00 America/Denver, every week, 25 minutes",
        "ended_early": False,
    },
    "prep_form": {
        "role": "rep",
        "person": "Sam Ortiz",
        "other": "Maya Chen",
        "start": _SAM_TUE,
        "duration_minutes": 25,
        "fields": [
            {
                "name": "stuck_deal",
                "label": "The deal I'm stuck on",
                "value": "Initech: the champion went dark after the demo",
            },
            {"name": "skill", "label": "The skill I want to sharpen", "value": ""},
            {"name": "question", "label": "My question for my manager", "value": ""},
        ],
        "max_chars": 500,
        "csrf": "0" * 64,
        "saved": False,
        "problem": None,
    },
    "prep_gone": {"message": "This link has expired: the 1:1 is over."},
    "rate_warning": {
        "manager": _MAYA,
        "level": "warning",
        "rate_percent": 18,
        "cancelled": 5,
        "scheduled": 28,
        "scope": "your team",
    },
    "admin_alert": {
        "cleared": False,
        "since": datetime(2026, 11, 23, 8, 5, tzinfo=ZoneInfo("America/New_York")),
        "summary": "the roster edit in /etc/cadence/roster.csv is invalid; cadence keeps running "
        "on the last good roster",
        "details": [
            "/etc/cadence/roster.csv:14: reps[12] (zoe@acme.test): timezone: unknown time zone "
            "'Europe/Pariss'",
            "/etc/cadence/roster.csv:15: reps[13] (li@acme.test): manager: unknown manager "
            "'mya@acme.test'",
        ],
        "advice": "Fix the lines above and save: the next pass picks the roster up. "
        "`cadence validate` lists the same problems.",
    },
}

_DEALS = [
    {"name": "Globex renewal", "amount": "48,000", "stage": "Negotiation",
     "close_date": "2026-12-04"},
    {"name": "Initech pilot", "amount": "12,500", "stage": "Proposal", "close_date": "2026-12-18"},
]  # fmt: skip
SAMPLES[REVIEW_AGENDA] = {
    "manager": _MAYA,
    "mode": "team",
    "reps": [{**_SAM, "deals": _DEALS}, {**_LEE, "deals": []}],
    "start": _LEE_MON,
    "duration_minutes": 30,
    "vp": "vp@acme.test",
    "deals_on": True,
}

# Branches the samples above do not reach; check() renders these too.
_VARIANTS: dict[str, list[dict[str, object]]] = {
    "agenda_coaching": [
        {"last_commitment": None},
        {"number": None, "metrics_on": False},
        {"number": None},
    ],
    "agenda_career": [
        {"last_commitment": None, "week11": True},
        {"preread": _FILED},
    ],
    "preread_rep": [
        {"template": "career", "last_commitment": None, "week11": True},
        {"last_commitment": None, "prep_url": None},
        {"template": "career", "prep_url": None},
    ],
    "preread_manager": [
        {"template": "career", "last_commitment": None, "week11": True},
        {"last_commitment": None, "number": None},
        {"last_commitment": None, "prep_url": None},
        {"template": "career", "prep_url": None},
    ],
    "preread_missing": [{"suggestions": []}],
    "prep_form": [
        {"role": "manager", "saved": True},
        {"problem": "\u201cThe skill I want to sharpen\u201d is 612 characters long."},
    ],
    "recap": [
        {"commitment": None, "number": None},
        {"template": "career"},
        {"template": "career", "commitment": None},
    ],
    "cancellation": [{"suggestions": []}],
    "week11_skip": [{"suggestions": [], "escalate_to": None}],
    "series_restored": [{"ended_early": True}],
    "rate_warning": [{"level": "red flag", "rate_percent": 27, "scope": "Sam Ortiz"}],
    "admin_alert": [{"cleared": True}, {"details": []}],
    REVIEW_AGENDA: [
        {
            "start": None,
            "vp": None,
            "deals_on": False,
            "reps": [{**_SAM, "deals": None}, {**_LEE, "deals": None}],
        },
        {"mode": "rep", "vp": None, "reps": [{**_SAM, "deals": _DEALS}]},
    ],
}


def _check_contexts() -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    for key, ctx in SAMPLES.items():
        kind = key if key in EMAIL_KINDS or key in PAGES or key == REVIEW_AGENDA else "agenda"
        out.append((kind, ctx))
        out.extend((kind, {**ctx, **v}) for v in _VARIANTS.get(key, ()))
    return out
