"""HubSpot as the metrics source, through ``hubspot-api-client``.

A private app's access token (CRM read scopes only) from an env var or a 0600 file. One read
covers every rep: the account's owners, listed a page at a time and matched by email (one list,
not a request per rep); then the CRM search over calls and emails (activities), meetings (booked:
created that week) and deals (closed, for the win rate, and the histories below; open, for the
pipeline review), with the weeks read in a ``BETWEEN``, page after page. An ``IN`` filter holds
100 owners and a search up to five filter groups (ORed), so one search covers 500 owners and a
refresh costs the pages its results fill, plus at most one part-filled page per 500 owners and
object. A search pages through at most 10,000 results; past them the same search goes on from
the last object id read, sorted by ``hs_object_id`` (no page asked twice, none thrown away).

Pipeline coverage and forecast accuracy look at each deal as it was at a past moment. The deals
that can matter to the weeks read (open now, or closing on or after ``history_start``) are found
by the win rate's searches (their ids), then read 50 at a time (the most a batch read holds when it
asks for property histories) with the histories of their stage, amount, close date and forecast
category; each stage is open, won or lost by the pipelines' stage metadata (read once a refresh).
The forecast category is ``hs_manual_forecast_category``, the "Forecast category" a rep sets on
the deal record (or the forecast tool sets from the stage): Commit there is the rep's commit.

Search is limited to a few requests a second per token, the other endpoints to the account's
burst limit: a 429 is waited out and tried again (tenacity); a daily limit ends the read, and the
last numbers stay.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

from hubspot import HubSpot
from hubspot.crm.deals.exceptions import ApiException as DealsError
from hubspot.crm.objects.calls.exceptions import ApiException as CallsError
from hubspot.crm.objects.emails.exceptions import ApiException as EmailsError
from hubspot.crm.objects.meetings.exceptions import ApiException as MeetingsError
from hubspot.crm.owners.exceptions import ApiException as OwnersError
from hubspot.crm.pipelines.exceptions import ApiException as PipelinesError
from urllib3.exceptions import HTTPError

from daemon.config import HubspotSettings, read_secret
from daemon.core.deals import Opportunity
from daemon.core.metrics import WEEK, monday_of
from daemon.core.model import JANUARY, Metric, MonthDay
from daemon.errors import ConfigError
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
from daemon.metrics.salesforce import WEEKS_READ

IN_VALUES = 100  # owners in one IN filter
GROUPS = 5  # filter groups in one search
PAGE = 200  # the most a search page holds
HISTORY_BATCH = 50  # the deals a batch read holds when it asks for property histories
FORECAST = "hs_manual_forecast_category"
COMMIT = "COMMIT"
HISTORY = ("dealstage", "amount", "closedate", FORECAST)
FOUND = ("hs_object_id", "hs_is_closed", "hs_is_closed_won")  # what a deal search reads
_API_ERRORS = (CallsError, EmailsError, MeetingsError, DealsError, OwnersError, PipelinesError)


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "status", 0) or 0)


def _policy(exc: BaseException) -> str:
    try:
        return str(json.loads(getattr(exc, "body", None) or "{}").get("policyName", ""))
    except (ValueError, AttributeError):
        return ""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, HTTPError):
        return True
    if not isinstance(exc, _API_ERRORS):
        return False
    return (_status(exc) == 429 and _policy(exc) != "DAILY") or _status(exc) >= 500


class HubspotSource(CrmSource):
    label = "HubSpot"

    def __init__(
        self,
        settings: HubspotSettings,
        org_zone: ZoneInfo,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fiscal_year_start: MonthDay = JANUARY,
    ) -> None:
        # A secondly 429 or a 5xx is waited out, a little longer than Salesforce's errors.
        super().__init__(
            _retryable,
            attempts=5,
            multiplier=1,
            longest_wait=10,
            sleep=sleep,
            fiscal_year_start=fiscal_year_start,
        )
        token = read_secret(settings.token_env, settings.token_file, "metrics.hubspot")
        if not token:
            raise ConfigError(
                [f"metrics.hubspot: no token: set {settings.token_env} or token_file"]
            )
        self.zone = org_zone
        self.clock = clock or (lambda: datetime.now(UTC))
        # The client's own urllib3 transport; a company CA as for the other providers.
        self.client = HubSpot(
            access_token=token,
            host=settings.api_url.rstrip("/"),
            ssl_ca_cert=os.environ.get("REQUESTS_CA_BUNDLE"),
        )

    def rows(self, reps: frozenset[str], quotas: Mapping[str, float]) -> Iterator[Row]:
        self._through = None
        today = self.clock().astimezone(self.zone).date()
        end = monday_of(today)
        start = end - WEEK * WEEKS_READ
        weeks = [start + WEEK * i for i in range(WEEKS_READ)]
        owners = self._owners(reps)
        if not owners:
            return
        counts: dict[tuple[str, Metric], dict[date, float]] = {}
        for email in owners.values():
            for metric in (Metric.ACTIVITIES, Metric.MEETINGS_BOOKED):
                counts[(email, metric)] = dict.fromkeys(weeks, 0.0)
        for kind, stamp, metric in (
            ("calls", "hs_timestamp", Metric.ACTIVITIES),
            ("emails", "hs_timestamp", Metric.ACTIVITIES),
            ("meetings", "hs_createdate", Metric.MEETINGS_BOOKED),
        ):
            for props in self._search(kind, list(owners), stamp, start, end, []):
                day = _day(props[stamp], self.zone)
                owner = props.get("hubspot_owner_id")
                if owner in owners:
                    counts[(owners[owner], metric)][monday_of(day)] += 1
        first = start - WEEK * (WIN_RATE_WEEKS - 1)
        since = history_start(weeks, self.fiscal_year_start)
        closed, deals = self._deals(owners, first, since, end)
        self._through = end - WEEK
        for (rep, metric), by_week in counts.items():
            yield from (Row(rep, metric, w, v) for w, v in by_week.items())
        yield from win_rates(closed, weeks, owners)
        yield from deal_rows(
            deals, owners.values(), quotas, weeks, self.zone, self.fiscal_year_start
        )

    def open_opportunities(self, reps: frozenset[str]) -> list[Opportunity]:
        owners = self._owners(reps)
        extra = [{"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"}]
        found = []
        for props in self._search(
            "deals", list(owners), None, None, None, extra, ["dealname", "amount", "dealstage"]
        ):
            if props.get("hubspot_owner_id") not in owners or not props.get("closedate"):
                continue
            amount = props.get("amount")
            found.append(Opportunity(
                rep=owners[props["hubspot_owner_id"]],
                name=props.get("dealname") or "",
                amount=float(amount) if amount not in (None, "") else None,
                stage=props.get("dealstage") or "",
                close_date=_day(props["closedate"], self.zone),
            ))  # fmt: skip
        return sorted(found, key=lambda o: (o.rep, o.close_date, o.name))

    # --- HubSpot ------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return self._retry(fn)(**kwargs)
        except _API_ERRORS as exc:
            policy = _policy(exc)
            why = f"HTTP {_status(exc)}" + (f", {policy} limit" if policy else "")
            raise MetricsUnavailable(f"HubSpot: {why}: {exc.reason}") from None
        except HTTPError as exc:
            raise MetricsUnavailable(f"HubSpot: {exc}") from None

    def _owners(self, reps: frozenset[str]) -> dict[str, str]:
        """Owner id -> the rep's email, from one paged list of the account's owners."""
        owners: dict[str, str] = {}
        after = None
        while True:
            page = self._call(self.client.crm.owners.owners_api.get_page, limit=500, after=after)
            for owner in page.results:
                email = (owner.email or "").lower()
                if email in reps:
                    owners[str(owner.id)] = email
            if page.paging is None or page.paging.next is None:
                return owners
            after = page.paging.next.after

    def _deals(
        self, owners: Mapping[str, str], first: date, since: date, end: date
    ) -> tuple[dict[str, list[tuple[date, bool]]], list[DealHistory]]:
        """The owners' deals open now or closing since the earlier of ``first`` and ``since``,
        found by two searches (disjoint, so no deal is found twice) that serve the win rate and
        the histories alike: for the win rate, each owner's (close day, won) of the deals closed
        in [first, end); and the deals open now or closing on or after ``since``, with the
        states they went through, read ``HISTORY_BATCH`` at a time."""
        low = str(_millis(min(first, since), self.zone))
        closed: dict[str, list[tuple[date, bool]]] = defaultdict(list)
        owner_of: dict[str, str] = {}
        for extra in (
            [{"propertyName": "closedate", "operator": "GTE", "value": low}],
            [{"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"},
             {"propertyName": "closedate", "operator": "LT", "value": low}],
        ):  # fmt: skip
            for props in self._search("deals", list(owners), None, None, None, extra, FOUND):
                owner = props.get("hubspot_owner_id") or ""
                if owner not in owners:
                    continue
                day = _day(props["closedate"], self.zone) if props.get("closedate") else None
                is_open = props.get("hs_is_closed") != "true"
                if not is_open and day is not None and first <= day < end:
                    closed[owner].append((day, props.get("hs_is_closed_won") == "true"))
                if is_open or (day is not None and day >= since):
                    owner_of[props["hs_object_id"]] = owners[owner]
        if not owner_of:
            return closed, []
        outcomes = self._outcomes()
        ids = list(owner_of)
        found = []
        for i in range(0, len(ids), HISTORY_BATCH):
            body = {
                "inputs": [{"id": x} for x in ids[i : i + HISTORY_BATCH]],
                "properties": [],
                "propertiesWithHistory": list(HISTORY),
            }
            answer = self._call(
                self.client.crm.deals.batch_api.read, batch_read_input_simple_public_object_id=body
            )  # a deal removed since the search is an error in a 207: it is simply not there
            for deal in answer.results:
                versions = {
                    name: [(v.timestamp, v.value) for v in past]
                    for name, past in (deal.properties_with_history or {}).items()
                }
                states = _states(versions, outcomes, self.zone)
                if states:
                    found.append(DealHistory(owner_of[str(deal.id)], states))
        return closed, found

    def _outcomes(self) -> dict[str, Outcome]:
        """Each deal stage of every pipeline as open, won or lost: a closed stage with
        probability 1.0 is Closed Won, any other closed stage Closed Lost."""
        pipelines = self._call(self.client.crm.pipelines.pipelines_api.get_all, object_type="deals")
        outcomes = {}
        for pipeline in pipelines.results:
            for stage in pipeline.stages:
                meta = stage.metadata or {}
                if str(meta.get("isClosed", "false")).lower() != "true":
                    outcomes[stage.id] = Outcome.OPEN
                elif float(meta.get("probability") or 0) >= 1:
                    outcomes[stage.id] = Outcome.WON
                else:
                    outcomes[stage.id] = Outcome.LOST
        return outcomes

    def _search(
        self,
        kind: str,
        owners: Sequence[str],
        stamp: str | None,
        start: date | None,
        end: date | None,
        extra: list[dict[str, str]],
        more: Sequence[str] = (),
    ) -> Iterator[dict[str, str]]:
        """The properties of every ``kind`` object the owners own, ``stamp`` in [start, end)
        (organisation days): 500 owners a search, five filter groups of 100."""
        api = (
            self.client.crm.deals.search_api
            if kind == "deals"
            else getattr(self.client.crm.objects, kind).search_api
        )
        props = ["hubspot_owner_id", *([stamp] if stamp else ["closedate"]), *more]
        common: list[dict[str, Any]] = list(extra)
        if stamp and start and end:
            low, high = _millis(start, self.zone), _millis(end, self.zone) - 1
            common.append({"propertyName": stamp, "operator": "BETWEEN",
                           "value": str(low), "highValue": str(high)})  # fmt: skip
        size = IN_VALUES * GROUPS
        for i in range(0, len(owners), size):
            chunk = owners[i : i + size]
            groups: list[list[dict[str, Any]]] = [
                [{"propertyName": "hubspot_owner_id", "operator": "IN",
                  "values": list(chunk[j : j + IN_VALUES])}, *common]
                for j in range(0, len(chunk), IN_VALUES)
            ]  # fmt: skip
            yield from self._pages(api, groups, props)

    def _pages(
        self, api: Any, groups: list[list[dict[str, Any]]], props: list[str]
    ) -> Iterator[dict[str, str]]:
        """Every result of a search, page after page, in ``hs_object_id`` order; once a search
        has given the 10,000 it pages through, the same search again past the last id read."""
        last: str | None = None  # the last id read when a search ran out of pages
        after: str | None = None
        read = 0  # by the current search
        while True:
            past = [{"propertyName": "hs_object_id", "operator": "GT", "value": last}]
            body = {
                "filterGroups": [{"filters": g + (past if last else [])} for g in groups],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": props, "limit": PAGE, **({"after": after} if after else {}),
            }  # fmt: skip
            page = self._call(api.do_search, public_object_search_request=body)
            for result in page.results:
                yield dict(result.properties)
            read += len(page.results)
            if page.paging is not None and page.paging.next is not None:
                after = page.paging.next.after
            elif read < page.total and page.results:  # the 10,000 a search pages through
                last, after, read = str(page.results[-1].id), None, 0
            else:
                return


def _states(
    versions: Mapping[str, Iterable[tuple[datetime, str]]],
    outcomes: Mapping[str, Outcome],
    zone: ZoneInfo,
) -> tuple[DealState, ...]:
    """A deal's states, oldest first, out of its properties' versions: at each instant one of
    them changed, every property's value as of then. A stage no pipeline has now (one since
    deleted) counts as open; a blank amount as 0; a blank close date closes in no period."""
    changes = sorted(
        ((at, name, value) for name, past in versions.items() for at, value in past),
        key=lambda change: change[0],
    )
    now: dict[str, str] = {}
    states: list[DealState] = []
    for at, together in groupby(changes, key=lambda change: change[0]):
        now.update((name, value) for _, name, value in together)
        if not now.get("dealstage"):
            continue
        state = DealState(
            since=at,
            amount=float(now.get("amount") or 0),
            close=_day(now["closedate"], zone) if now.get("closedate") else date.max,
            outcome=outcomes.get(now["dealstage"], Outcome.OPEN),
            commit=now.get(FORECAST) == COMMIT,
        )
        if not states or states[-1][1:] != state[1:]:
            states.append(state)
    return tuple(states)


def _millis(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def _day(value: str, zone: ZoneInfo) -> date:
    """A HubSpot datetime property (ISO 8601, or epoch milliseconds) as the organisation's day."""
    if value.isdigit():
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).date()
