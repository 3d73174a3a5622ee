"""Reading the admin's YAML (and CSV roster) into typed values, with errors people can act on.

Every entry is validated on its own so that one run reports every problem, each naming the
file, the line, the entry and the field: ``config/cadence.yaml:14: reps[2] (sam@acme.test):
timezone: unknown time zone 'Mars/Base'``. Nothing here touches a calendar or a mailbox.
"""

from __future__ import annotations

import csv
import gc
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from daemon.core.model import Manager, Organization, PipelineReview, Policy, Rep, Roster
from daemon.errors import ConfigError

DEFAULT_CONFIG = Path("config/cadence.yaml")


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _timeout(default: float) -> Any:
    """A timeout in seconds: more than 0, at most 10 minutes (one pass's whole budget)."""
    return Field(default=default, gt=0, le=600)


class CalDAVSettings(_Settings):
    url: str | None = None  # None: start the embedded Radicale on loopback
    calendar_path: str = "{manager}/cadence/"
    username: str | None = None
    password_env: str = "CADENCE_CALDAV_PASSWORD"  # noqa: S105 - the name of an env var
    password_file: Path | None = None
    embedded_port: int = Field(default=5232, ge=0, le=65535)
    connect_timeout_seconds: float = _timeout(10)
    read_timeout_seconds: float = _timeout(10)  # for each answer, not the whole request


def _https(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https:// URL, got {value!r}")
    return value.rstrip("/")


HttpsUrl = Annotated[str, AfterValidator(_https)]


class OutlookSettings(_Settings):
    """Microsoft 365 through Graph: an app registration with application permissions."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = "CADENCE_GRAPH_SECRET"  # noqa: S105 - an env var's name
    certificate_file: Path | None = None  # PEM: private key and certificate; wins over a secret
    authority_host: HttpsUrl = "https://login.microsoftonline.com"
    graph_endpoint: HttpsUrl = "https://graph.microsoft.com"
    calendar: str = Field(default="primary", min_length=1)  # or a calendar cadence creates
    connect_timeout_seconds: float = _timeout(30)
    read_timeout_seconds: float = _timeout(30)


class GoogleSettings(_Settings):
    credentials_file: Path  # a service-account key with domain-wide delegation (0600)
    calendar_id: str = "primary"  # which calendar of each manager holds the series
    api_endpoint: str = "https://www.googleapis.com/"  # another host: a proxy or a test server
    # httplib2, the Google client's transport, has one socket timeout: for connecting and for
    # each read alike.
    timeout_seconds: float = _timeout(30)


class CalendarSettings(_Settings):
    provider: Literal["caldav", "google", "outlook"] = "caldav"
    caldav: CalDAVSettings = CalDAVSettings()
    google: GoogleSettings | None = None
    outlook: OutlookSettings | None = None

    @model_validator(mode="after")
    def _outlook_needs_its_section(self) -> CalendarSettings:
        if self.provider == "outlook" and self.outlook is None:
            raise ValueError("provider outlook needs calendar.outlook: {tenant_id, client_id, ...}")
        return self


class SmtpSettings(_Settings):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str = "CADENCE_SMTP_PASSWORD"  # noqa: S105 - the name of an env var
    password_file: Path | None = None
    connect_timeout_seconds: float = _timeout(30)
    read_timeout_seconds: float = _timeout(30)  # for each reply of the server


class GmailSettings(_Settings):
    credentials_file: Path | None = None  # None: calendar.google's service account
    api_endpoint: str = "https://gmail.googleapis.com/"
    timeout_seconds: float = _timeout(30)  # httplib2: one timeout, as for calendar.google


class MailSettings(_Settings):
    transport: Literal["maildir", "smtp", "gmail", "graph"] = "maildir"
    maildir: Path = Path("var/outbox")
    sender: str = Field(default="cadence <cadence@localhost>", alias="from")
    smtp: SmtpSettings | None = None
    gmail: GmailSettings = GmailSettings()


class HttpSettings(_Settings):
    """The internal status endpoint of ``cadence run`` (/healthz, /metrics, / the report)."""

    listen: str = Field(pattern=r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class PrepSettings(_Settings):
    """The pre-read form of ``cadence run``: its own listener, reached by people through
    ``public_url`` (the company's TLS proxy in front of it)."""

    listen: str = Field(pattern=r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
    public_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    check_hours: float = Field(default=2, ge=0, le=168)

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def link(self, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/prep/{token}"


class TemplateSettings(_Settings):
    dir: Path | None = None  # an admin's folder; a file there replaces the built-in of that name


class CsvMetricsSettings(_Settings):
    path: Path = Path("metrics.csv")  # relative to the config file


class SalesforceSettings(_Settings):
    """A connected app's JWT bearer flow for one integration user (PROVIDERS "CRMs")."""

    login_url: str = Field(
        default="https://login.salesforce.com", pattern=r"^https://[^\s/?#]+/?$"
    )  # test.salesforce.com for a sandbox, or the org's My Domain URL
    client_id: str = Field(min_length=1)  # the connected app's consumer key
    username: str = Field(min_length=1)  # the pre-authorised integration user
    private_key_file: Path  # PEM, 0600: the key of the certificate uploaded to the app
    api_version: str = Field(default="62.0", pattern=r"^[0-9]{2,3}\.0$")


class HubspotSettings(_Settings):
    """A private app's access token, with the CRM read scopes only."""

    token_env: str = "CADENCE_HUBSPOT_TOKEN"  # noqa: S105 - the name of an env var
    token_file: Path | None = None  # or a 0600 file holding it
    api_url: str = Field(default="https://api.hubapi.com", pattern=r"^https?://[^\s?#]+$")


class MetricsSettings(_Settings):
    """Where the number in each agenda comes from (SPEC "The number in the agenda")."""

    source: Literal["csv", "salesforce", "hubspot"] = "csv"
    csv: CsvMetricsSettings = CsvMetricsSettings()
    refresh_hours: float = Field(default=6, gt=0, le=24 * 7)  # a CRM is read at most this often
    salesforce: SalesforceSettings | None = None
    hubspot: HubspotSettings = HubspotSettings()

    @model_validator(mode="after")
    def _source_configured(self) -> MetricsSettings:
        if self.source == "salesforce" and self.salesforce is None:
            raise ValueError("source salesforce needs a salesforce: section")
        return self


class Settings(_Settings):
    state_dir: Path = Path("var")
    interval_seconds: int = Field(default=60, ge=1)
    max_writes_per_pass: int = Field(default=5000, ge=1)
    max_emails_per_pass: int = Field(default=500, ge=1)
    calendar: CalendarSettings = CalendarSettings()
    mail: MailSettings = MailSettings()
    templates: TemplateSettings = TemplateSettings()
    http: HttpSettings | None = None  # opt-in: no listener unless configured
    prep: PrepSettings | None = None  # opt-in: without it, pre-reads ask people to bring lines
    metrics: MetricsSettings | None = None  # None: the agenda asks the manager to pull it


@dataclass(frozen=True)
class Config:
    path: Path
    roster: Roster
    settings: Settings
    warnings: tuple[str, ...] = field(default=())
    # Every file this config was read from (the YAML, the CSV roster it names): what a running
    # daemon watches for edits.
    sources: tuple[Path, ...] = field(default=())


ROSTER_KEYS = ("organization", "managers", "reps", "policy", "pipeline_review")


# --- YAML with line numbers ---------------------------------------------------------------------


# libyaml's C parser where PyYAML was built with it (it is in PyPI's wheels): several times faster
# on a big roster, with the same marks (lines) on the nodes. The pure-Python one otherwise.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """YAML 1.1 reads ``10:00`` as the integer 600 and ``2026-02-30`` as a crash; both stay
    strings here so the models can explain what is wrong with them.

    The parser asks the resolver about every node of the document (a big roster has a hundred
    thousand): its answers here are PyYAML's own, without the work for path resolvers, which
    this loader has none of."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:  # plain: the implicit resolvers of its first character
                for tag, regexp in _RESOLVERS.get(value[:1], _ANY_START):
                    if regexp.match(value):
                        return tag
            return _STR_TAG
        resolved: str = super().resolve(kind, value, implicit)
        return resolved

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:int",
                                                             "tag:yaml.org,2002:timestamp")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}  # fmt: skip
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9]*)$"), list("-+0123456789")
)
assert not _Loader.yaml_path_resolvers  # what resolve and the two no-ops above rely on
_STR_TAG: str = _Loader.DEFAULT_SCALAR_TAG
_ANY_START: list[tuple[str, re.Pattern[str]]] = _Loader.yaml_implicit_resolvers.get(None, [])
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: resolvers + _ANY_START
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
    if first is not None
}


class _Lines(Mapping[tuple[Any, ...], int]):
    """Line numbers by path in the document (``("reps", 3, "timezone")``), worked out from the
    node tree only when a problem or a warning needs one: a valid roster never pays for it."""

    def __init__(self, node: yaml.Node | None) -> None:
        self._node = node
        self._map: dict[tuple[Any, ...], int] | None = None

    def _built(self) -> dict[tuple[Any, ...], int]:
        if self._map is None:
            self._map = {}
            if self._node is not None:
                _line_map(self._node, (), self._map)
        return self._map

    def __getitem__(self, key: tuple[Any, ...]) -> int:
        return self._built()[key]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


def _line_map(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value
            out[(*path, name)] = key.start_mark.line + 1
            _line_map(value, (*path, name), out)
            out[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out)


_TAG = "tag:yaml.org,2002:"
_SCALARS = {f"{_TAG}str", f"{_TAG}null", f"{_TAG}bool", f"{_TAG}int", f"{_TAG}float"}


class _Unusual(Exception):
    """The document uses more of YAML than a config needs: PyYAML's own constructor builds it."""


def _construct(loader: _Loader, root: yaml.Node) -> Any:
    """The node tree as data, the same as ``loader.construct_document(root)`` makes it, for the
    plain documents configs are (mappings, lists, scalars with the standard tags, anchors): a
    tenth of the time of PyYAML's generic constructor, which is most of a big roster's load.
    Anything else (merge keys, other tags, a recursive anchor, a list as a key, a failing
    scalar) goes to the generic constructor, errors and all."""
    made: dict[int, Any] = {}  # a node an alias names again is the same object again
    building: set[int] = set()
    scalar = {
        f"{_TAG}null": loader.construct_yaml_null,
        f"{_TAG}bool": loader.construct_yaml_bool,
        f"{_TAG}int": loader.construct_yaml_int,
        f"{_TAG}float": loader.construct_yaml_float,
    }
    str_tag, map_tag, seq_tag = f"{_TAG}str", f"{_TAG}map", f"{_TAG}seq"
    ScalarNode, MappingNode, SequenceNode = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode

    def build(node: yaml.Node) -> Any:
        kind, tag = type(node), node.tag
        if kind is ScalarNode:
            if tag == str_tag:
                return node.value
            if tag in _SCALARS:
                return scalar[tag](node)
            raise _Unusual
        key = id(node)
        if key in made:
            return made[key]
        if key in building:
            raise _Unusual
        building.add(key)
        out: Any
        if kind is MappingNode and tag == map_tag:
            out = {}
            for k, v in node.value:
                if k.tag not in _SCALARS:  # merge keys, "=", a collection as a key
                    raise _Unusual
                out[build(k)] = build(v)
        elif kind is SequenceNode and tag == seq_tag:
            out = [build(item) for item in node.value]
        else:
            raise _Unusual
        building.discard(key)
        made[key] = out
        return out

    try:
        return build(root)
    except Exception:  # noqa: BLE001 - the generic constructor decides, and explains
        return loader.construct_document(root)


def _load_yaml(path: Path) -> tuple[Any, Mapping[tuple[Any, ...], int]]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    loader = _Loader(text)
    try:  # parsed once: the node tree gives both the data and, when needed, the lines
        node = loader.get_single_node()
        data = _construct(loader, node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: YAML syntax error: {problem}"]) from exc
    except (ValueError, TypeError, OverflowError) as exc:  # PyYAML's own tags: `!!int abc`
        raise ConfigError([f"{path}: a tagged value YAML cannot convert: {exc}"]) from exc
    finally:
        loader.dispose()
    return data, _Lines(node)


# --- problems -----------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")


def _where(
    path: Path, lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...], label: str
) -> str:
    for cut in range(len(loc), -1, -1):
        line = lines.get(loc[:cut])
        if line is not None:
            return f"{path}:{line}: {label}" if label else f"{path}:{line}"
    return f"{path}: {label}" if label else str(path)


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    if error["type"] == "enum":
        return f"unknown value {error.get('input')!r}: {message.lower()}"
    return message


def _validate(
    model: type[BaseModel],
    data: Any,
    problems: _Problems,
    path: Path,
    lines: Mapping[tuple[Any, ...], int],
    base: tuple[Any, ...],
    label: str,
    reported: frozenset[str] = frozenset(),
) -> Any:
    """``data`` as a ``model``; its problems are added, except for the fields in ``reported``
    (already explained by the checks on people's text)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc and str(loc[0]) in reported:
                continue
            fields = ".".join(str(p) for p in loc)
            where = _where(path, lines, base + loc, label)
            prefix = f"{fields}: " if fields else ""
            problems.add(where, prefix + _describe(error))
    return None


def _by_place(problem: str) -> tuple[str, int]:
    match = re.match(r"(.*?):(\d+): ", problem)
    return (match.group(1), int(match.group(2))) if match else (problem, 0)


def _entry_label(section: str, index: int, item: Any) -> str:
    email = item.get("email") if isinstance(item, dict) else None
    if not isinstance(email, str) or not email or _control(email) or len(email) > MAX_EMAIL:
        return f"{section}[{index}]"  # the label itself must stay one short line
    return f"{section}[{index}] ({email})"


# --- people's text ------------------------------------------------------------------------------

# Names end up in email subjects and headers and in invites' attendee names; an address ends up
# in To/Cc and in ATTENDEE lines. A control character there folds a header or splits a line.
MAX_NAME = 200
MAX_EMAIL = 254  # RFC 5321's limit for a path
NAME_FIELDS = ("name",)
EMAIL_FIELDS = ("email", "manager", "escalate_to")
_BIDI_CONTROLS = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))
_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}")  # host.example.tld
# The usual address, known good without the email package's parser (which costs a big roster
# seconds): a dot-atom of ASCII letters, digits and the other atext characters, then a domain
# for _DOMAIN. The parser reads such an address back exactly as written.
_PLAIN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?P<domain>[A-Za-z0-9.-]+)"
)


def _control(text: str) -> str | None:
    """The first character that has no place in a one-line field, as ``U+XXXX``."""
    if text.isascii() and text.isprintable():  # no control, line or bidi character in there
        return None
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or ord(char) in _BIDI_CONTROLS:
            return f"U+{ord(char):04X}"
    return None


def _name_problem(value: str) -> str | None:
    char = _control(value)
    if char is not None:
        return (
            f"contains a control character ({char}); names go into email subjects and "
            "invites, so keep them to one plain line"
        )
    if len(value) > MAX_NAME:
        return f"{len(value)} characters, more than {MAX_NAME}"
    return None


@lru_cache(maxsize=256)  # a roster has a few domains and thousands of addresses in them
def _host_name(domain: str) -> bool:
    return _DOMAIN.fullmatch(domain.lower()) is not None


def _email_problem(value: str) -> str | None:
    char = _control(value)
    if char is not None:
        return f"contains a control character ({char})"
    text = value.strip()
    if len(text) > MAX_EMAIL:
        return f"{len(text)} characters, more than {MAX_EMAIL} (the longest address mail allows)"
    plain = _PLAIN.fullmatch(text)
    if plain is not None and _host_name(plain["domain"]):
        return None
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        address: Address | None = Address(addr_spec=text)
    # AttributeError: the parser trips over an unclosed domain literal ("maya@[acme.test")
    except (HeaderParseError, ValueError, IndexError, AttributeError):
        address = None
    if (
        address is None
        or address.addr_spec != text  # comments, spaces, a second address
        or '"' in text
        or not _DOMAIN.fullmatch(address.domain.lower())
    ):
        return f"{shown!r} is not an email address (one address, name@domain.tld)"
    return None


def _text_problems(item: Any, fields: tuple[str, ...]) -> dict[str, str]:
    """Problems with the people's text of one entry, by field."""
    found: dict[str, str] = {}
    if not isinstance(item, dict):
        return found
    for key in fields:
        value = item.get(key)
        if not isinstance(value, str):
            continue
        problem = _name_problem(value) if key in NAME_FIELDS else _email_problem(value)
        if problem is not None:
            found[key] = problem
    return found


def _check_text(
    item: Any,
    fields: tuple[str, ...],
    problems: _Problems,
    path: Path,
    lines: Mapping[tuple[Any, ...], int],
    base: tuple[Any, ...],
    label: str,
) -> frozenset[str]:
    """Report the entry's text problems, one line each; return the fields reported."""
    found = _text_problems(item, fields)
    for key, problem in found.items():
        problems.add(_where(path, lines, (*base, key), label), f"{key}: {problem}")
    return frozenset(found)


# --- the CSV roster -----------------------------------------------------------------------------

_CSV_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _read_csv(path: Path, problems: _Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """The CSV roster's rows as they are read (a big roster is never held as text or rows),
    each with its line number."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    with handle:
        reader = csv.DictReader(handle)
        for row in reader:
            item: dict[str, Any] = {}
            for key, value in row.items():
                if key is None:
                    problems.add(f"{path}:{reader.line_num}", "more cells than columns")
                    continue
                text = (value or "").strip()
                if not text:
                    continue
                if key == "forecast_within_5pct":
                    item[key] = _CSV_BOOL.get(text.lower(), text)
                else:
                    item[key] = text
            yield reader.line_num, item


@dataclass(frozen=True, slots=True)
class _Entry:
    """A raw roster entry's keys for the checks across entries, and where it is written."""

    email: str | None
    manager: str | None
    source: Path
    lines: Mapping[tuple[Any, ...], int]
    index: int
    label: str

    def where(self) -> str:
        return _where(self.source, self.lines, ("reps", self.index), self.label)


# --- loading ------------------------------------------------------------------------------------


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading a big roster makes hundreds of thousands of objects (YAML nodes, then values)
    and no reference cycle: Python's cyclic collector would walk the growing tree again and
    again for nothing, most of the time it takes. Paused meanwhile, left as it was found."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load(path: Path, *, now: datetime | None = None) -> Config:
    """Read and validate ``path``; raise ``ConfigError`` listing every problem.

    ``now`` (aware) enables the warnings that depend on the date (working-hours overlap is
    checked on the coming week).
    """
    with _collector_paused():
        return _load(path, now)


def _load(path: Path, now: datetime | None) -> Config:
    data, lines = _load_yaml(path)
    problems = _Problems()
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the config must be a mapping of keys to values"])

    org_data = data.get("organization")
    org_reported = _check_text(
        org_data, NAME_FIELDS, problems, path, lines, ("organization",), "organization"
    )
    org = _validate(
        Organization, org_data, problems, path, lines, ("organization",), "organization",
        org_reported,
    )  # fmt: skip
    policy = _validate(Policy, data.get("policy") or {}, problems, path, lines, ("policy",),
                       "policy")  # fmt: skip
    review = _validate(PipelineReview, data.get("pipeline_review") or {}, problems, path, lines,
                       ("pipeline_review",), "pipeline_review")  # fmt: skip
    settings_data = {k: v for k, v in data.items() if k not in ROSTER_KEYS}
    settings = _validate(Settings, settings_data, problems, path, lines, (), "")

    managers: list[Manager] = []
    raw_managers = data.get("managers")
    if not isinstance(raw_managers, list) or not raw_managers:
        problems.add(_where(path, lines, ("managers",), "managers"), "at least one manager needed")
        raw_managers = []
    for i, item in enumerate(raw_managers):
        label = _entry_label("managers", i, item)
        base = ("managers", i)
        reported = _check_text(item, NAME_FIELDS + EMAIL_FIELDS, problems, path, lines, base, label)
        manager = _validate(Manager, item, problems, path, lines, base, label, reported)
        if manager is not None:
            managers.append(manager)

    reps, rep_entry, entries = _load_reps(data.get("reps"), path, lines, problems)
    _cross_check(raw_managers, entries, path, lines, problems)
    if problems.lines:
        raise ConfigError(sorted(problems.lines, key=_by_place))

    assert org is not None and policy is not None and settings is not None and review is not None
    roster = Roster(
        organization=org, managers=tuple(managers), reps=tuple(reps), policy=policy,
        pipeline_review=review,
    )  # fmt: skip
    warnings = _warnings(roster, rep_entry, now)
    raw_reps = data.get("reps")
    sources = (path, _roster_file(path, raw_reps)) if isinstance(raw_reps, str) else (path,)
    return Config(
        path=path, roster=roster, settings=settings, warnings=tuple(warnings), sources=sources
    )


def _load_reps(
    raw: Any, path: Path, lines: Mapping[tuple[Any, ...], int], problems: _Problems
) -> tuple[list[Rep], dict[str, _Entry], list[_Entry]]:
    """Reps from the YAML list or from the CSV file ``reps:`` names (relative to the config).

    Also returns every raw entry with where it is, for the checks across entries.
    """
    rows: Iterator[tuple[int | None, Any]]
    if isinstance(raw, str):
        source = _roster_file(path, raw)
        rows = iter(_read_csv(source, problems))
    elif isinstance(raw, list):
        source = path
        rows = ((None, item) for item in raw)
    else:
        problems.add(_where(path, lines, ("reps",), "reps"),
                     "a list of reps or the path of a CSV roster needed")  # fmt: skip
        return [], {}, []

    reps: list[Rep] = []
    rep_entry: dict[str, _Entry] = {}
    entries: list[_Entry] = []
    for i, (line, item) in enumerate(rows):
        label = _entry_label("reps", i, item)
        here = lines if line is None else {("reps", i): line}
        entry = _Entry(_key(item, "email"), _key(item, "manager"), source, here, i, label)
        entries.append(entry)
        reported = _check_text(
            item, NAME_FIELDS + EMAIL_FIELDS, problems, source, here, ("reps", i), label
        )
        rep = _validate(Rep, item, problems, source, here, ("reps", i), label, reported)
        if rep is not None:
            reps.append(rep)
            rep_entry.setdefault(rep.email, entry)
    return reps, rep_entry, entries


def _roster_file(path: Path, raw: str) -> Path:
    """The CSV roster ``reps:`` names, relative to the config file."""
    return Path(raw) if Path(raw).is_absolute() else path.parent / raw


def _key(item: Any, name: str) -> str | None:
    value = item.get(name) if isinstance(item, dict) else None
    return value.strip().lower() if isinstance(value, str) else None


def _cross_check(
    raw_managers: list[Any],
    entries: list[_Entry],
    path: Path,
    lines: Mapping[tuple[Any, ...], int],
    problems: _Problems,
) -> None:
    """Checks across entries, on the raw entries so that an entry with another problem is
    still checked here too."""
    manager_emails: set[str] = set()
    for i, item in enumerate(raw_managers):
        email = _key(item, "email")
        if email is None:
            continue
        if email in manager_emails:
            label = _entry_label("managers", i, item)
            problems.add(_where(path, lines, ("managers", i), label),
                         f"email: duplicate email {email!r}")  # fmt: skip
        manager_emails.add(email)
    seen: set[str] = set()
    for entry in entries:
        email, manager = entry.email, entry.manager
        if email is not None:
            if email in seen:
                problems.add(entry.where(), f"email: duplicate email {email!r}")
            seen.add(email)
        if manager is None:
            continue
        if manager == email:
            problems.add(entry.where(), f"manager: {email!r} is listed as their own manager")
        elif manager not in manager_emails and _email_problem(manager) is None:
            problems.add(entry.where(), f"manager: unknown manager {manager!r}")


def _warnings(roster: Roster, rep_entry: Mapping[str, _Entry], now: datetime | None) -> list[str]:
    # Imported here: the plan is only needed for the warnings.
    from daemon.core.plan import plan

    out: list[str] = []
    counts = Counter(rep.manager for rep in roster.reps)
    limit = roster.policy.max_reps_per_manager
    for manager in roster.managers:
        if counts[manager.email] > limit:
            out.append(
                f"warning: manager {manager.email} has {counts[manager.email]} reps; more than "
                f"{limit} leaves too little time for real coaching (span of control, seed 004)"
            )
    if now is not None and roster.reps:
        for p in plan(roster, now, count=0):
            if not p.slot_fits:
                what = (
                    f"slot {p.rep.slot.label()} is outside"
                    if p.rep.slot is not None
                    else "no free slot fits inside"
                )
                out.append(
                    f"warning: {rep_entry[p.rep.email].where()}: {what} both {p.rep.email}'s and "
                    f"{p.manager.email}'s working hours for a {p.rule.duration_minutes}-minute 1:1"
                )
    return out


def read_secret(env_name: str | None, file: Path | None, what: str) -> str | None:
    """A password from the named env var, or from a file only its owner can read (0600)."""
    if file is not None:
        try:
            mode = file.stat().st_mode
        except OSError as exc:
            raise ConfigError([f"{what}: cannot read {file}: {exc.strerror}"]) from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError([f"{what}: {file} is readable by others; chmod 600 it"])
        return file.read_text(encoding="utf-8").strip()
    if env_name:
        return os.environ.get(env_name) or None
    return None
