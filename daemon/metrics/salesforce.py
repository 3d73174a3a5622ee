"""Salesforce as the metrics source, through ``simple-salesforce``.

Server to server with the OAuth 2.0 JWT bearer flow: a connected app holds the certificate, the
integration user is pre-authorised, and the private key stays in a 0600 file here. The token
exchange is done here (``login_url`` may be a sandbox, a My Domain or, in tests, loopback), then
``simple_salesforce.Salesforce`` runs the queries with the access token.

One read covers every rep at once, a few queries per object with chunked ``OwnerId IN`` lists,
never a query per rep: users by ``Email``; calls and emails from ``Task`` and meetings booked
from ``Event``, counted per owner a week at a time by queries grouped by owner (a grouped answer
has at most 2,000 rows and no next page); closed ``Opportunity`` rows for the win rate and the
open ones for the pipeline review, paged. A query goes in the URL, which Salesforce caps at
16,384 bytes with the headers: 500 owners or emails a query. The read fields are the
standard objects' own, so the integration user needs only read access to them.

What a CRM cannot give without history of its own (pipeline coverage at a past week's end, the
committed amount of a past month) is said in ``cannot`` and so in the agenda.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from daemon.config import SalesforceSettings, read_secret
from daemon.core.deals import Opportunity
from daemon.core.metrics import BASELINE_WEEKS, WEEK, monday_of
from daemon.core.model import Metric
from daemon.metrics.base import MetricsUnavailable, Row
from daemon.metrics.crm import WIN_RATE_WEEKS, CrmSource, win_rates

IN_CHUNK = 500  # emails or owners in one IN list at most
GROUPED_ROWS = 2000  # the most rows a GROUP BY query answers (no next page)
# A query travels in the URL (``GET .../query?q=``), and Salesforce refuses a request whose URL
# and headers pass 16,384 bytes (414, 431), far below SOQL's own 100,000 characters: each IN
# list is cut so that the encoded query stays under this, leaving 1.4 KB for the path and the
# headers. 500 owner ids (28 bytes each, encoded) fit.
QUERY_BYTES = 15_000
# The weeks read: those a pass still shows (its numbers' baselines, recaps a while after).
WEEKS_READ = BASELINE_WEEKS + 3


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, SalesforceError) and exc.status >= 500


class SalesforceSource(CrmSource):
    label = "Salesforce"

    def __init__(
        self,
        settings: SalesforceSettings,
        org_zone: ZoneInfo,
        clock: Callable[[], datetime] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Idempotent reads only: a network error or a 5xx is tried again a few times.
        super().__init__(_retryable, attempts=4, multiplier=0.5, longest_wait=8, sleep=sleep)
        self.settings = settings
        self.zone = org_zone
        self.clock = clock or (lambda: datetime.now(UTC))
        key = read_secret(None, settings.private_key_file, "metrics.salesforce.private_key_file")
        assert key is not None
        self._key = key
        # requests honours REQUESTS_CA_BUNDLE and the proxy variables, as for Graph.
        self.session = session or requests.Session()
        self.api_usage: str | None = None  # Sforce-Limit-Info's api-usage, after a read

    # --- the read ---------------------------------------------------------------------------

    def rows(self, reps: frozenset[str]) -> Iterator[Row]:
        self._through = None
        sf = self._connect()
        today = self.clock().astimezone(self.zone).date()
        end = monday_of(today)  # this week is not over: not read
        start = end - WEEK * WEEKS_READ
        weeks = [start + WEEK * i for i in range(WEEKS_READ)]
        users = self._users(sf, reps)
        if not users:
            return
        counts: dict[tuple[str, Metric], dict[date, float]] = {}
        for user in users.values():
            for metric in (Metric.ACTIVITIES, Metric.MEETINGS_BOOKED):
                counts[(user, metric)] = dict.fromkeys(weeks, 0.0)
        for week in weeks:
            after = week + WEEK
            activities = (
                "SELECT OwnerId, COUNT(Id) n FROM Task WHERE OwnerId IN ({ids}) "  # noqa: S608
                f"AND TaskSubtype IN ('Call', 'Email') AND ActivityDate >= {week} "
                f"AND ActivityDate < {after} GROUP BY OwnerId"
            )
            for owner, n in self._grouped(sf, list(users), activities):
                counts[(users[owner], Metric.ACTIVITIES)][week] += n
            # Booked that week: created between the organisation's Monday midnights.
            since, until = _instant(week, self.zone), _instant(after, self.zone)
            meetings = (
                "SELECT OwnerId, COUNT(Id) n FROM Event WHERE OwnerId IN ({ids}) "  # noqa: S608
                f"AND CreatedDate >= {since} AND CreatedDate < {until} GROUP BY OwnerId"
            )
            for owner, n in self._grouped(sf, list(users), meetings):
                counts[(users[owner], Metric.MEETINGS_BOOKED)][week] += n
        closed: dict[str, list[tuple[date, bool]]] = defaultdict(list)
        first = start - WEEK * (WIN_RATE_WEEKS - 1)
        for record in self._records(
            sf, list(users),
            "SELECT OwnerId, CloseDate, IsWon FROM Opportunity WHERE OwnerId IN ({ids}) "  # noqa: S608
            f"AND IsClosed = true AND CloseDate >= {first} AND CloseDate < {end}",
        ):  # fmt: skip
            closed[record["OwnerId"]].append(
                (date.fromisoformat(record["CloseDate"]), bool(record["IsWon"]))
            )
        self._through = end - WEEK
        for (rep, metric), by_week in counts.items():
            if rep in reps:
                yield from (Row(rep, metric, w, v) for w, v in by_week.items())
        yield from win_rates(closed, weeks, users)

    def open_opportunities(self, reps: frozenset[str]) -> list[Opportunity]:
        """Each rep's open opportunities, closing soonest first."""
        sf = self._connect()
        users = self._users(sf, reps)
        found = [
            Opportunity(
                rep=users[r["OwnerId"]],
                name=r["Name"],
                amount=None if r["Amount"] is None else float(r["Amount"]),
                stage=r["StageName"],
                close_date=date.fromisoformat(r["CloseDate"]),
            )
            for r in self._records(
                sf, list(users),
                "SELECT OwnerId, Name, Amount, StageName, CloseDate FROM Opportunity "
                "WHERE OwnerId IN ({ids}) AND IsClosed = false",
            )
        ]  # fmt: skip
        return sorted(found, key=lambda o: (o.rep, o.close_date, o.name))

    # --- Salesforce ---------------------------------------------------------------------------

    def _connect(self) -> Salesforce:
        """The JWT bearer token exchange, then a client on the instance it names."""
        login = self.settings.login_url.rstrip("/")
        claims = {
            "iss": self.settings.client_id,
            "sub": self.settings.username,
            "aud": login,
            "exp": int(time.time()) + 180,  # the real clock, whatever week a pass pretends
        }
        try:
            assertion = jwt.encode(claims, self._key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise MetricsUnavailable(
                f"Salesforce: {self.settings.private_key_file} is not an RSA private key: {exc}"
            ) from None
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        try:
            answer = self._retry(self.session.post)(
                f"{login}/services/oauth2/token", data=form, timeout=30
            )
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"Salesforce login at {login}: {exc}") from None
        if answer.status_code != 200:
            try:
                body = answer.json()
                why = f"{body.get('error')}: {body.get('error_description')}"
            except ValueError:
                why = answer.text[:200]
            what = "refused the login" if answer.status_code < 500 else "could not log in"
            raise MetricsUnavailable(
                f"Salesforce {what} at {login} (HTTP {answer.status_code}; {why})"
            )
        token = answer.json()
        return Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            version=self.settings.api_version,
            session=self.session,
        )

    def _query(self, sf: Salesforce, soql: str) -> Iterator[dict[str, Any]]:
        """Every record of ``soql``, page after page; errors translated."""
        try:
            result = self._retry(sf.query)(soql)
            while True:
                self._usage(sf)
                yield from result["records"]
                if result["done"]:
                    return
                result = self._retry(sf.query_more)(
                    result["nextRecordsUrl"], identifier_is_url=True
                )
        except SalesforceError as exc:
            raise MetricsUnavailable(f"Salesforce: {_why(exc)}") from None
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"Salesforce: {exc}") from None

    def _usage(self, sf: Salesforce) -> None:
        usage = sf.api_usage.get("api-usage")
        if usage is not None:
            self.api_usage = f"{usage.used}/{usage.total}"

    def _users(self, sf: Salesforce, reps: frozenset[str]) -> dict[str, str]:
        """User Id -> the rep's email (Salesforce compares emails without case)."""
        users: dict[str, str] = {}
        soql = "SELECT Id, Email FROM User WHERE IsActive = true AND Email IN ({ids})"
        for query in _in_lists(soql, sorted(reps), IN_CHUNK):
            for record in self._query(sf, query):
                email = str(record["Email"]).lower()
                if email in reps:
                    users[record["Id"]] = email
        return users

    def _records(self, sf: Salesforce, owners: Sequence[str], soql: str) -> Iterator[Any]:
        for query in _in_lists(soql, owners, IN_CHUNK):
            yield from self._query(sf, query)

    def _grouped(
        self, sf: Salesforce, owners: Sequence[str], soql: str
    ) -> Iterator[tuple[str, int]]:
        """(owner, count) of a query grouped by owner: one row an owner, so as many owners a
        query as its URL holds, never more than a grouped answer (2,000; it has no next page)."""
        for query in _in_lists(soql, owners, GROUPED_ROWS):
            for record in self._query(sf, query):
                yield record["OwnerId"], int(record["n"])


def _in_lists(soql: str, items: Sequence[str], most: int) -> Iterator[str]:
    """``soql`` with its ``{ids}`` filled by consecutive runs of ``items``, quoted, each run at
    most ``most`` long and the query, URL-encoded, at most ``QUERY_BYTES``."""
    size = len(quote_plus(soql.format(ids="")))
    comma = len(quote_plus(", "))
    run: list[str] = []
    for item in items:
        quoted = _quote(item)
        grows = len(quote_plus(quoted)) + (comma if run else 0)
        if run and (len(run) == most or size + grows > QUERY_BYTES):
            yield soql.format(ids=", ".join(run))
            run, size, grows = [], len(quote_plus(soql.format(ids=""))), grows - comma
        run.append(quoted)
        size += grows
    if run:
        yield soql.format(ids=", ".join(run))


def _quote(text: str) -> str:
    """A SOQL string literal: every query here is built from dates, ids and quoted emails."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _instant(day: date, zone: ZoneInfo) -> str:
    """Midnight of ``day`` in the organisation's zone, as a SOQL dateTime literal (UTC)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _why(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return f"{exc.status} {first.get('errorCode')}: {first.get('message')}"
    return f"{exc.status}: {str(content)[:200]}"
