"""HubSpot as the metrics source, through ``hubspot-api-client``.

A private app's access token (CRM read scopes only) from an env var or a 0600 file. One read
covers every rep: the account's owners, listed a page at a time and matched by email (one list,
not a request per rep); then the CRM search over calls and emails (activities), meetings (booked:
created that week) and deals (closed, for the win rate; open, for the pipeline review), with the
weeks read in a ``BETWEEN``, page after page. An ``IN`` filter holds 100 owners and a search up
to five filter groups (ORed), so one search covers 500 owners and a refresh costs the pages its
results fill, plus at most one part-filled page per 500 owners and object. A search pages through
at most 10,000 results; past them the same search goes on from the last object id read, sorted
by ``hs_object_id`` (no page asked twice, none thrown away).

Search is limited to a few requests a second per token: a 429 is waited out and tried again
(tenacity); a daily limit ends the read, and the last numbers stay.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hubspot import HubSpot
from hubspot.crm.deals.exceptions import ApiException as DealsError
from hubspot.crm.objects.calls.exceptions import ApiException as CallsError
from hubspot.crm.objects.emails.exceptions import ApiException as EmailsError
from hubspot.crm.objects.meetings.exceptions import ApiException as MeetingsError
from hubspot.crm.owners.exceptions import ApiException as OwnersError
from urllib3.exceptions import HTTPError

from daemon.config import HubspotSettings, read_secret
from daemon.core.deals import Opportunity
from daemon.core.metrics import WEEK, monday_of
from daemon.core.model import JANUARY, Metric, MonthDay
from daemon.errors import ConfigError
from daemon.metrics.base import MetricsUnavailable, Row
from daemon.metrics.crm import WIN_RATE_WEEKS, CrmSource, win_rates
from daemon.metrics.salesforce import WEEKS_READ

IN_VALUES = 100  # owners in one IN filter
GROUPS = 5  # filter groups in one search
PAGE = 200  # the most a search page holds
_API_ERRORS = (CallsError, EmailsError, MeetingsError, DealsError, OwnersError)


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
    # Not yet worked out of the deals' histories.
    cannot: Mapping[Metric, str] = {
        Metric.PIPELINE_COVERAGE: "it needs each past week's open pipeline; export it to CSV",
        Metric.FORECAST_ACCURACY: "it needs each month's committed amount; export it to CSV",
    }
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
        closed: dict[str, list[tuple[date, bool]]] = defaultdict(list)
        first = start - WEEK * (WIN_RATE_WEEKS - 1)
        extra = [{"propertyName": "hs_is_closed", "operator": "EQ", "value": "true"}]
        for props in self._search(
            "deals", list(owners), "closedate", first, end, extra, ["hs_is_closed_won"]
        ):
            if props.get("hubspot_owner_id") in owners:
                won = props.get("hs_is_closed_won") == "true"
                closed[props["hubspot_owner_id"]].append((_day(props["closedate"], self.zone), won))
        self._through = end - WEEK
        for (rep, metric), by_week in counts.items():
            yield from (Row(rep, metric, w, v) for w, v in by_week.items())
        yield from win_rates(closed, weeks, owners)

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
