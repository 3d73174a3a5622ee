"""Salesforce as the metrics source, through ``simple-salesforce``.

Server to server with the OAuth 2.0 JWT bearer flow: a connected app holds the certificate, the
integration user is pre-authorised, and the private key stays in a 0600 file here. The token
exchange is done here (``login_url`` may be a sandbox, a My Domain or, in tests, loopback), then
``simple_salesforce.Salesforce`` runs the queries with the access token.

One read covers every rep at once with chunked ``OwnerId IN`` lists, never a query per rep:
users by ``Email``; calls and emails from ``Task`` and meetings booked from ``Event``, counted
per owner a week at a time by queries grouped by owner; the ``Opportunity`` rows open now or
closing since the first day a figure looks at, and their ``OpportunityHistory`` rows through the
Opportunity lookup, paged: the closed deals give the win rate, each deal's states over time the
pipeline coverage and forecast accuracy (``metrics.crm``), its stage read as open, won or lost
through ``OpportunityStage`` and its ``ForecastCategory`` ``Forecast`` (labelled Commit) as
committed. The pipeline review reads the open ones apart. The read fields are the standard
objects' own, so the integration user needs only read access to them.

What shapes the requests (SOQL and SOSL Reference, "Considerations When Using GROUP BY"; REST
API Developer Guide, "Composite"):
- SOQL has no Monday-based week, so a week is a date range, one grouped query each. Grouping
  by day instead (``DAY_ONLY``) returns seven times the rows, and a grouped answer has no next
  page: at most 2,000 rows, so 2,000 owners a weekly query, a seventh of that a daily one.
- The queries travel in ``composite`` calls, five queries each (the most a composite call
  holds); "the entire series of requests counts as a single call toward your API limits", and
  in a request body a query is bounded by SOQL's 100,000 characters, not by the 16,384 bytes a
  URL may hold. (``composite/batch`` would not do: each of its subrequests counts as a call.)
  Pages past a query's first come from its next records URL, one call each.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from daemon.config import SalesforceSettings, read_secret
from daemon.core.deals import Opportunity
from daemon.core.metrics import BASELINE_WEEKS, WEEK, monday_of
from daemon.core.model import JANUARY, Metric, MonthDay
from daemon.metrics.base import MetricsUnavailable, Row
from daemon.metrics.crm import (
    WIN_RATE_WEEKS,
    CrmSource,
    DealHistory,
    DealState,
    Outcome,
    deal_rows,
    history_start,
    win_rates,
)

GROUPED_ROWS = 2000  # the most rows a GROUP BY query answers (it has no next page)
SOQL_CHARS = 100_000  # the longest SOQL statement Salesforce takes
AROUND = 300  # the characters of every query here but its IN list
COMPOSITE_QUERIES = 5  # the most query subrequests (Query, QueryAll, Query More) a composite holds
K = TypeVar("K")
# Every stage, active or not: what a stage name in a deal's history means.
STAGES = "SELECT ApiName, IsClosed, IsWon FROM OpportunityStage"
COMMIT = "Forecast"  # the ForecastCategory API value labelled Commit (ForecastCategoryName)
_BY_CATEGORY = {"Closed": Outcome.WON, "Omitted": Outcome.LOST}
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
        fiscal_year_start: MonthDay = JANUARY,
    ) -> None:
        # Idempotent reads only: a network error or a 5xx is tried again a few times.
        super().__init__(
            _retryable,
            attempts=4,
            multiplier=0.5,
            longest_wait=8,
            sleep=sleep,
            fiscal_year_start=fiscal_year_start,
        )
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

    def rows(self, reps: frozenset[str], quotas: Mapping[str, float]) -> Iterator[Row]:
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
        first = start - WEEK * (WIN_RATE_WEEKS - 1)
        # The deals whose states can matter: open now, or closing since the first day the win
        # rate or the weeks' coverage and accuracy look at. (A deal closed since with its close
        # date moved back before that day is missed, with what it was in those weeks.)
        oldest = min(first, history_start(weeks, self.fiscal_year_start))
        queries: list[tuple[tuple[str, date], str]] = [(("stages", end), STAGES)]
        for ids in _in_lists(list(users), GROUPED_ROWS):
            for week in weeks:
                after = week + WEEK
                # ActivityDate is a date with no time zone: the week's dates, as they are.
                activities = (
                    f"SELECT OwnerId, COUNT(Id) n FROM Task WHERE OwnerId IN ({ids}) "  # noqa: S608
                    f"AND TaskSubtype IN ('Call', 'Email') AND ActivityDate >= {week} "
                    f"AND ActivityDate < {after} GROUP BY OwnerId"
                )
                # CreatedDate is an instant: booked between the organisation's Monday midnights.
                since, until = _instant(week, self.zone), _instant(after, self.zone)
                meetings = (
                    f"SELECT OwnerId, COUNT(Id) n FROM Event WHERE OwnerId IN ({ids}) "  # noqa: S608
                    f"AND CreatedDate >= {since} AND CreatedDate < {until} GROUP BY OwnerId"
                )
                queries += [((Metric.ACTIVITIES, week), activities),
                            ((Metric.MEETINGS_BOOKED, week), meetings)]  # fmt: skip
            # The deals as they are now: the closed ones give the win rate; and each one's
            # stage history. OpportunityHistory records no owner: a deal counts for the rep
            # who owns it today.
            deals = (
                f"SELECT Id, OwnerId, CreatedDate, Amount, CloseDate, StageName, "  # noqa: S608
                f"ForecastCategory, IsClosed, IsWon FROM Opportunity WHERE OwnerId IN ({ids}) "
                f"AND (IsClosed = false OR CloseDate >= {oldest})"
            )
            history = (
                f"SELECT Id, OpportunityId, CreatedDate, Amount, CloseDate, StageName, "  # noqa: S608
                f"ForecastCategory FROM OpportunityHistory WHERE Opportunity.OwnerId IN ({ids}) "
                f"AND (Opportunity.IsClosed = false OR Opportunity.CloseDate >= {oldest})"
            )
            queries += [(("deals", end), deals), (("history", end), history)]
        closed: dict[str, list[tuple[date, bool]]] = defaultdict(list)
        outcomes: dict[str, Outcome] = {}
        current: dict[str, dict[str, Any]] = {}
        changes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (kind, week), record in self._run(sf, queries):
            if kind == "stages":
                outcomes[record["ApiName"]] = _outcome(record["IsClosed"], record["IsWon"])
            elif kind == "deals":
                current[record["Id"]] = record
                day = _day(record["CloseDate"])
                if record["IsClosed"] and day is not None and first <= day < end:
                    closed[record["OwnerId"]].append((day, bool(record["IsWon"])))
            elif kind == "history":
                changes[record["OpportunityId"]].append(record)
            else:
                counts[(users[record["OwnerId"]], Metric(kind))][week] += int(record["n"])
        self._through = end - WEEK
        for (rep, metric), by_week in counts.items():
            if rep in reps:
                yield from (Row(rep, metric, w, v) for w, v in by_week.items())
        yield from win_rates(closed, weeks, users)
        histories = [
            DealHistory(users[deal["OwnerId"]], _states(deal, changes[key], outcomes))
            for key, deal in current.items()
            if deal["OwnerId"] in users
        ]
        yield from deal_rows(
            histories, users.values(), quotas, weeks, self.zone, self.fiscal_year_start
        )

    def open_opportunities(self, reps: frozenset[str]) -> list[Opportunity]:
        """Each rep's open opportunities, closing soonest first."""
        sf = self._connect()
        users = self._users(sf, reps)
        queries = [
            (None, "SELECT OwnerId, Name, Amount, StageName, CloseDate FROM Opportunity "  # noqa: S608
                   f"WHERE OwnerId IN ({ids}) AND IsClosed = false")
            for ids in _in_lists(list(users), GROUPED_ROWS)
        ]  # fmt: skip
        found = [
            Opportunity(
                rep=users[r["OwnerId"]],
                name=r["Name"],
                amount=None if r["Amount"] is None else float(r["Amount"]),
                stage=r["StageName"],
                close_date=date.fromisoformat(r["CloseDate"]),
            )
            for _, r in self._run(sf, queries)
        ]
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

    def _call(self, sf: Salesforce, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request, tried again after passing errors; errors translated."""
        try:
            answer = self._retry(fn)(*args, **kwargs)
        except SalesforceError as exc:
            raise MetricsUnavailable(f"Salesforce: {_why(exc)}") from None
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"Salesforce: {exc}") from None
        usage = sf.api_usage.get("api-usage")
        if usage is not None:
            self.api_usage = f"{usage.used}/{usage.total}"
        return answer

    def _run(self, sf: Salesforce, queries: Sequence[tuple[K, str]]) -> Iterator[tuple[K, Any]]:
        """Every record of each query with the key it was asked under: the queries sent five a
        composite call (one call toward the daily allowance), then each one's further pages."""
        version = sf.sf_version
        for at in range(0, len(queries), COMPOSITE_QUERIES):
            batch = dict(enumerate(queries[at : at + COMPOSITE_QUERIES]))
            body = {"allOrNone": False, "compositeRequest": [
                {"method": "GET", "referenceId": f"q{i}",
                 "url": f"/services/data/v{version}/query?{urlencode({'q': soql})}"}
                for i, (_, soql) in batch.items()
            ]}  # fmt: skip
            answer = self._call(sf, sf.restful, "composite", method="POST", json=body)
            for sub in answer["compositeResponse"]:
                key = batch[int(sub["referenceId"][1:])][0]
                result = sub["body"]
                if sub["httpStatusCode"] >= 300:
                    first = result[0] if isinstance(result, list) and result else {}
                    raise MetricsUnavailable(
                        f"Salesforce: {sub['httpStatusCode']} {first.get('errorCode')}: "
                        f"{first.get('message')}"
                    )
                while True:
                    yield from ((key, record) for record in result["records"])
                    if result["done"]:
                        break
                    result = self._call(
                        sf, sf.query_more, result["nextRecordsUrl"], identifier_is_url=True
                    )

    def _users(self, sf: Salesforce, reps: frozenset[str]) -> dict[str, str]:
        """User Id -> the rep's email (Salesforce compares emails without case)."""
        queries = [
            (None, f"SELECT Id, Email FROM User WHERE IsActive = true AND Email IN ({emails})")  # noqa: S608
            for emails in _in_lists(sorted(reps), GROUPED_ROWS)
        ]
        users: dict[str, str] = {}
        for _, record in self._run(sf, queries):
            email = str(record["Email"]).lower()
            if email in reps:
                users[record["Id"]] = email
        return users


def _outcome(closed: bool, won: bool) -> Outcome:
    return Outcome.WON if won else Outcome.LOST if closed else Outcome.OPEN


def _states(
    deal: dict[str, Any], changes: list[dict[str, Any]], outcomes: Mapping[str, Outcome]
) -> tuple[DealState, ...]:
    """A deal's states, oldest first, from its stage history. Salesforce writes a history row
    on each save that changes Amount, Probability, Stage, Close Date or Forecast Category, and
    a deal none of these changed on may have none (Object Reference, OpportunityHistory): such
    a deal has been as it is now since its creation. The first state is taken to hold from the
    deal's creation on, also when its first row came later (a deal imported with its original
    CreatedDate)."""
    rows = sorted(changes, key=lambda r: (_moment(r["CreatedDate"]), r["Id"])) or [deal]
    states = [_state(row, outcomes) for row in rows]
    states[0] = states[0]._replace(since=min(states[0].since, _moment(deal["CreatedDate"])))
    return tuple(states)


def _state(row: dict[str, Any], outcomes: Mapping[str, Outcome]) -> DealState:
    stage = row["StageName"]
    category = row["ForecastCategory"]
    # A stage no longer in the picklist: its forecast category tells won and lost apart.
    outcome = outcomes.get(stage) or _BY_CATEGORY.get(category, Outcome.OPEN)
    return DealState(
        since=_moment(row["CreatedDate"]),
        amount=float(row["Amount"] or 0),
        close=_day(row["CloseDate"]) or date.min,  # no close date: in no quarter or month
        outcome=outcome,
        commit=category == COMMIT,
    )


def _moment(text: str) -> datetime:
    """A Salesforce dateTime (``2026-11-18T12:00:00.000+0000``)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _in_lists(items: Sequence[str], most: int) -> Iterator[str]:
    """The items quoted and joined for ``IN (...)``, in consecutive runs of at most ``most``,
    each short enough for a query that wraps it in under ``AROUND`` characters."""
    room = SOQL_CHARS - AROUND
    run: list[str] = []
    size = 0
    for item in items:
        quoted = _quote(item)
        if run and (len(run) == most or size + 2 + len(quoted) > room):
            yield ", ".join(run)
            run, size = [], 0
        size += len(quoted) + (2 if run else 0)
        run.append(quoted)
    if run:
        yield ", ".join(run)


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
