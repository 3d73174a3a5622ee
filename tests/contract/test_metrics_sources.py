"""Each metrics source against the one contract suite: the CSV file, and Salesforce through the
real ``simple-salesforce`` against the local HTTPS Salesforce (``tests/fixtures/salesforce``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from daemon.config import Config, HubspotSettings, SalesforceSettings
from daemon.core.deals import Opportunity
from daemon.core.model import Metric
from daemon.metrics.base import MetricsSource, OpportunitiesSource, Row, open_opportunities
from daemon.metrics.crm import DealHistory, DealState, Outcome
from daemon.metrics.csvfile import CsvSource
from daemon.metrics.hubspot import HubspotSource
from daemon.metrics.salesforce import SalesforceSource
from tests.contract.metrics_contract import (
    NOW,
    SAM,
    DealHistoryContract,
    MetricsSourceContract,
    OpportunitiesContract,
)
from tests.fixtures.hubspot import TOKEN, FakeHubspot, iso
from tests.fixtures.salesforce import CLIENT_ID, USERNAME, FakeSalesforce

ORG = ZoneInfo("America/New_York")


def write_csv(path: Path, rows: Sequence[Row]) -> Path:
    lines = ["rep,week,metric,value"]
    lines += [f"{r.rep},{r.week.isoformat()},{r.metric.value},{r.value}" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


class TestCsvSource(MetricsSourceContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "metrics.csv"

    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        return CsvSource(write_csv(self.path, rows))

    def test_offers_no_opportunities(self) -> None:
        assert open_opportunities(self.publish([]), frozenset({"sam@acme.test"})) is None


@pytest.fixture
def salesforce(tmp_path: Path) -> Iterator[FakeSalesforce]:
    fake = FakeSalesforce(tmp_path, user_zone=ORG, page_size=50)
    fake.start()
    yield fake
    fake.stop()


def salesforce_source(fake: FakeSalesforce, key: Path, clock=lambda: NOW) -> SalesforceSource:  # noqa: ANN001
    settings = SalesforceSettings(
        login_url=fake.url, client_id=CLIENT_ID, username=USERNAME, private_key_file=key
    )
    session = requests.Session()
    session.verify = str(fake.ca_file)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
    return SalesforceSource(settings, ORG, clock, session)


def put_rows(fake: FakeSalesforce, rows: Sequence[Row]) -> None:
    """CRM records that add up to ``rows``: N calls and emails, N meetings booked, a win rate
    as 100 opportunities closed that week."""
    ids: dict[str, str] = {}
    for row in rows:
        owner = ids.get(row.rep) or ids.setdefault(row.rep, fake.user(row.rep))
        if row.metric is Metric.ACTIVITIES:
            for i in range(int(row.value)):
                fake.add("Task", OwnerId=owner, TaskSubtype=("Call", "Email")[i % 2],
                         ActivityDate=row.week + timedelta(days=i % 5))  # fmt: skip
        elif row.metric is Metric.MEETINGS_BOOKED:
            for i in range(int(row.value)):
                booked = datetime.combine(row.week + timedelta(days=i % 7), time(9), ORG)
                fake.add("Event", OwnerId=owner, CreatedDate=booked)
        elif row.metric is Metric.WIN_RATE:
            won = round(row.value * 100)
            for i in range(100):
                fake.add("Opportunity", OwnerId=owner, Name=f"deal {i}", Amount=1000.0,
                         StageName="Closed Won" if i < won else "Closed Lost",
                         CloseDate=row.week, IsClosed=True, IsWon=i < won)  # fmt: skip


def salesforce_values(state: DealState) -> dict[str, object]:
    """A deal state as the fields a save sets: an open deal in a stage whose default category
    is Best Case, moved to Commit (ForecastCategory ``Forecast``) by hand when committed."""
    if state.outcome is Outcome.OPEN:
        category = "Forecast" if state.commit else "BestCase"
        values: dict[str, object] = {
            "StageName": "Proposal/Price Quote",
            "ForecastCategory": category,
        }
    else:
        values = {"StageName": "Closed Won" if state.outcome is Outcome.WON else "Closed Lost"}
    return {**values, "Amount": state.amount, "CloseDate": state.close}


class TestSalesforceSource(MetricsSourceContract, OpportunitiesContract, DealHistoryContract):
    @pytest.fixture(autouse=True)
    def _fake(self, salesforce: FakeSalesforce) -> None:
        self.fake = salesforce
        self.key = salesforce.register_certificate()

    def _fresh(self) -> None:
        self.fake.clear()

    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        self._fresh()
        put_rows(self.fake, rows)
        return salesforce_source(self.fake, self.key)

    def publish_deals(self, deals: list[tuple[Opportunity, bool]]) -> OpportunitiesSource:
        self._fresh()
        ids: dict[str, str] = {}
        for deal, closed in deals:
            owner = ids.get(deal.rep) or ids.setdefault(deal.rep, self.fake.user(deal.rep))
            self.fake.add("Opportunity", OwnerId=owner, Name=deal.name, Amount=deal.amount,
                          StageName=deal.stage, CloseDate=deal.close_date, IsClosed=closed,
                          IsWon=closed)  # fmt: skip
        return salesforce_source(self.fake, self.key)

    def publish_history(self, deals: Sequence[DealHistory]) -> MetricsSource:
        """Each deal created in its first state and saved again in each later one, so
        Salesforce writes its stage history as it goes."""
        self._fresh()
        ids: dict[str, str] = {}
        for n, deal in enumerate(deals):
            owner = ids.get(deal.rep) or ids.setdefault(deal.rep, self.fake.user(deal.rep))
            first, *later = deal.states
            made = self.fake.opportunity(owner, first.since, Name=f"deal {n}",
                                         **salesforce_values(first))  # fmt: skip
            for state in later:
                self.fake.change(made, state.since, **salesforce_values(state))
        return salesforce_source(self.fake, self.key)


@pytest.fixture
def hubspot(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHubspot]:
    monkeypatch.setenv("CADENCE_HUBSPOT_TOKEN", TOKEN)
    fake = FakeHubspot(page_size_owners=2)
    fake.start()
    yield fake
    fake.stop()


def hubspot_source(fake: FakeHubspot, clock=lambda: NOW) -> HubspotSource:  # noqa: ANN001
    source = HubspotSource(HubspotSettings(api_url=fake.url), ORG, clock, sleep=lambda _: None)
    return source


def put_hubspot(fake: FakeHubspot, rows: Sequence[Row]) -> None:
    """Engagements and deals that add up to ``rows``, as ``put_rows`` does for Salesforce."""
    ids: dict[str, str] = {}
    for row in rows:
        owner = ids.get(row.rep) or ids.setdefault(row.rep, fake.owner(row.rep))
        if row.metric is Metric.ACTIVITIES:
            for i in range(int(row.value)):
                at = iso(datetime.combine(row.week + timedelta(days=i % 5), time(10), ORG))
                fake.add(("calls", "emails")[i % 2], hubspot_owner_id=owner, hs_timestamp=at)
        elif row.metric is Metric.MEETINGS_BOOKED:
            for i in range(int(row.value)):
                at = iso(datetime.combine(row.week + timedelta(days=i % 7), time(9), ORG))
                fake.add("meetings", hubspot_owner_id=owner, hs_createdate=at, hs_timestamp=at)
        elif row.metric is Metric.WIN_RATE:
            won = round(row.value * 100)
            at = iso(datetime.combine(row.week, time(12), ORG))
            for i in range(100):
                fake.add("deals", hubspot_owner_id=owner, dealname=f"deal {i}", amount="1000",
                         dealstage="closedwon" if i < won else "closedlost", closedate=at,
                         hs_is_closed="true", hs_is_closed_won="true" if i < won else "false")  # fmt: skip


STAGE = {Outcome.OPEN: "qualifiedtobuy", Outcome.WON: "closedwon", Outcome.LOST: "closedlost"}


def put_hubspot_history(fake: FakeHubspot, deals: Sequence[DealHistory]) -> None:
    """Deals that went through these states, each property's changes in its history (what a
    rep's edits leave in HubSpot), in the default pipeline's stages."""
    ids: dict[str, str] = {}
    for deal in deals:
        owner = ids.get(deal.rep) or ids.setdefault(deal.rep, fake.owner(deal.rep))
        history: dict[str, list[tuple[datetime, str]]] = {}
        for state in deal.states:
            values = {
                "dealstage": STAGE[state.outcome],
                "amount": f"{state.amount:g}",
                "closedate": iso(datetime.combine(state.close, time(12), ORG)),
                "hs_manual_forecast_category": "COMMIT" if state.commit else "PIPELINE",
            }
            for name, value in values.items():
                past = history.setdefault(name, [])
                if not past or past[-1][1] != value:
                    past.append((state.since, value))
        last = deal.states[-1].outcome
        fake.add("deals", history=history, hubspot_owner_id=owner, pipeline="default",
                 hs_is_closed=str(last is not Outcome.OPEN).lower(),
                 hs_is_closed_won=str(last is Outcome.WON).lower())  # fmt: skip


class TestHubspotSource(MetricsSourceContract, OpportunitiesContract, DealHistoryContract):
    @pytest.fixture(autouse=True)
    def _fake(self, hubspot: FakeHubspot) -> None:
        self.fake = hubspot

    def _fresh(self) -> None:
        self.fake.clear()

    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        self._fresh()
        put_hubspot(self.fake, rows)
        return hubspot_source(self.fake)

    def publish_deals(self, deals: list[tuple[Opportunity, bool]]) -> OpportunitiesSource:
        self._fresh()
        ids: dict[str, str] = {}
        for deal, closed in deals:
            owner = ids.get(deal.rep) or ids.setdefault(deal.rep, self.fake.owner(deal.rep))
            at = iso(datetime.combine(deal.close_date, time(12), ORG))
            self.fake.add("deals", hubspot_owner_id=owner, dealname=deal.name,
                          amount="" if deal.amount is None else str(deal.amount),
                          dealstage=deal.stage, closedate=at,
                          hs_is_closed="true" if closed else "false")  # fmt: skip
        return hubspot_source(self.fake)

    def publish_history(self, deals: Sequence[DealHistory]) -> MetricsSource:
        self._fresh()
        put_hubspot_history(self.fake, deals)
        return hubspot_source(self.fake)


# --- Salesforce beyond the contract -------------------------------------------------------------

CONFIG = """\
organization: {{name: Acme, timezone: America/New_York}}
managers:
  - {{email: maya@acme.test, name: Maya Chen}}
reps:
  - {{email: sam@acme.test, name: Sam Ortiz, role: sdr, start_date: 2026-09-01,
     manager: maya@acme.test}}
  - {{email: ana@acme.test, name: Ana Ruiz, role: ae, start_date: 2025-01-05,
     manager: maya@acme.test}}
metrics:
  source: salesforce
  refresh_hours: 6
  salesforce: {{login_url: "{url}", client_id: {client}, username: {user}, private_key_file: {key}}}
"""


def salesforce_config(tmp_path: Path, fake: FakeSalesforce, key: Path) -> Path:
    path = tmp_path / "cadence.yaml"
    path.write_text(CONFIG.format(url=fake.url, client=CLIENT_ID, user=USERNAME, key=key))
    return path


def test_a_crm_is_read_at_most_every_refresh_hours_and_an_outage_keeps_the_last_numbers(
    tmp_path: Path, salesforce: FakeSalesforce
) -> None:
    from daemon.config import load
    from daemon.metrics import cache
    from daemon.metrics.base import MetricsUnavailable
    from daemon.store import Ledger

    key = salesforce.register_certificate()
    put_rows(salesforce, [Row("sam@acme.test", Metric.ACTIVITIES, NOW.date() - timedelta(8), 3)])
    config = load(salesforce_config(tmp_path, salesforce, key))
    now = NOW
    source = salesforce_source(salesforce, key, clock=lambda: now)
    source._retry.sleep = lambda _: None  # the retries' waits: no sleeping in tests
    ledger = Ledger.open(tmp_path / "state")
    try:
        assert cache.refresh(config, ledger, source, now)
        read = salesforce.requests
        assert read >= 2  # a login and queries
        now = NOW + timedelta(hours=5, minutes=59)
        assert not cache.refresh(config, ledger, source, now)
        assert salesforce.requests == read  # within refresh_hours: Salesforce is not called

        now = NOW + timedelta(hours=6)
        put_rows(
            salesforce, [Row("sam@acme.test", Metric.ACTIVITIES, NOW.date() - timedelta(8), 2)]
        )
        assert cache.refresh(config, ledger, source, now)
        weekly = cache.weekly(ledger, source)
        monday = NOW.date() - timedelta(days=NOW.weekday() + 7)
        assert weekly.values[("sam@acme.test", Metric.ACTIVITIES)][monday] == 5
        assert weekly.read_at == now
        assert not weekly.unavailable  # Salesforce gives every metric

        salesforce.down = True
        now = NOW + timedelta(hours=12)
        with pytest.raises(MetricsUnavailable):
            cache.refresh(config, ledger, source, now)
        kept = cache.weekly(ledger, source)
        assert kept.values == weekly.values and kept.read_at == NOW + timedelta(hours=6)
    finally:
        ledger.close()


def test_doctor_shows_salesforce_readable_its_api_use_and_what_it_cannot_give(
    tmp_path: Path, salesforce: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.config import load
    from daemon.doctor import diagnose

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(salesforce.ca_file))
    key = salesforce.register_certificate()
    salesforce.user("sam@acme.test")
    salesforce.user("ana@acme.test")
    rows = [r for r in diagnose(load(salesforce_config(tmp_path, salesforce, key)))
            if r.check == "metrics"]  # fmt: skip
    assert rows[0].subject == "Salesforce" and rows[0].ok
    assert "API requests today" in rows[0].detail and "/15000" in rows[0].detail
    # Ana is a ramped AE today or a new one: either way her metric is one Salesforce lacks or has.
    assert all(r.ok or "cannot give it" in r.detail or "no figures" in r.detail for r in rows[1:])

    key.chmod(0o644)
    with pytest.raises(Exception, match="readable by others; chmod 600"):
        diagnose(load(salesforce_config(tmp_path, salesforce, key)))


NEW_AES = """\
organization: {{name: Acme, timezone: America/New_York}}
managers:
  - {{email: maya@acme.test, name: Maya Chen}}
reps:
  - {{email: kim@acme.test, name: Kim Lee, role: ae, start_date: {hired}, manager: maya@acme.test,
     quarterly_quota: 120000}}
  - {{email: joe@acme.test, name: Joe Park, role: ae, start_date: {hired},
     manager: maya@acme.test}}
metrics:
  source: salesforce
  salesforce: {{login_url: "{url}", client_id: {client}, username: {user}, private_key_file: {key}}}
"""


def test_doctor_names_the_new_aes_whose_pipeline_coverage_lacks_a_quarterly_quota(
    tmp_path: Path, salesforce: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.config import load
    from daemon.metrics.check import check

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(salesforce.ca_file))
    key = salesforce.register_certificate()
    salesforce.user("kim@acme.test")
    salesforce.user("joe@acme.test")
    today = datetime.now(ZoneInfo("America/New_York")).date()
    path = tmp_path / "cadence.yaml"
    path.write_text(NEW_AES.format(hired=today - timedelta(days=30), url=salesforce.url,
                                   client=CLIENT_ID, user=USERNAME, key=key))  # fmt: skip
    # Both are new AEs, inspected on pipeline coverage; Kim's is 0 (no open deals), Joe has none.
    assert check(load(path), today)[1:] == [
        ("pipeline_coverage", False,
         "no quarterly_quota in the roster for joe@acme.test: Salesforce needs it"),
    ]  # fmt: skip


def test_a_wrong_key_or_user_is_refused_at_login_in_one_line(
    tmp_path: Path, salesforce: FakeSalesforce
) -> None:
    from daemon.metrics.base import MetricsUnavailable

    old = tmp_path / "old.key"
    old.write_bytes(salesforce.register_certificate().read_bytes())
    old.chmod(0o600)
    salesforce.register_certificate()  # the app now holds another certificate
    key = old
    with pytest.raises(MetricsUnavailable, match="refused the login.*invalid_grant"):
        list(salesforce_source(salesforce, key).rows(frozenset({"sam@acme.test"}), {}))


def test_a_query_salesforce_refuses_inside_a_composite_ends_the_read_in_one_line(
    salesforce: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.metrics.base import MetricsUnavailable
    from tests.fixtures import salesforce as fake_module

    key = salesforce.register_certificate()
    put_rows(salesforce, [Row("sam@acme.test", Metric.ACTIVITIES, NOW.date() - timedelta(8), 3)])
    # An org whose Task lacks a field cadence reads: its composite answers 200, that query 400.
    monkeypatch.setitem(fake_module.FIELDS, "Task", fake_module.FIELDS["Task"] - {"TaskSubtype"})
    with pytest.raises(MetricsUnavailable, match=r"^Salesforce: 400 INVALID_FIELD: No such column"):
        list(salesforce_source(salesforce, key).rows(frozenset({"sam@acme.test"}), {}))


def test_thousands_of_reps_take_a_few_composite_calls_never_one_per_rep(
    tmp_path: Path, salesforce: FakeSalesforce
) -> None:
    key = salesforce.register_certificate()
    reps = [f"r{i}@acme.test" for i in range(2100)]
    created = NOW - timedelta(days=20)
    for rep in reps:  # each with a deal moved to Commit a week after it was opened
        deal = salesforce.opportunity(salesforce.user(rep), created, StageName="Prospecting",
                                      Amount=1000.0, CloseDate=NOW.date() + timedelta(days=30))  # fmt: skip
        salesforce.change(deal, created + timedelta(days=7), ForecastCategory="Forecast")
    salesforce.page_size = 2000
    source = salesforce_source(salesforce, key)
    rows = list(source.rows(frozenset(reps), {rep: 4000.0 for rep in reps}))
    assert {r.rep for r in rows} == set(reps)  # a 0 for each week without calls
    covered = {r.rep for r in rows if r.metric is Metric.PIPELINE_COVERAGE}
    assert covered == set(reps)
    users = [q for q in salesforce.queries if "FROM User" in q]
    tasks = [q for q in salesforce.queries if "FROM Task" in q]
    histories = [q for q in salesforce.queries if "FROM OpportunityHistory" in q]
    assert len(users) == 2  # 2,000 emails a query
    # a week at a time, grouped by owner, 2,000 owners a query (each answer under the 2,000
    # rows a grouped query holds), plus the deals and their stage histories, 2,000 owners a
    # query, and the stages once: 2 chunks x (7 x 2 + 2) queries + 1
    assert len(tasks) == 7 * 2 and len(histories) == 2
    assert len(salesforce.queries) == 2 + 2 * (7 * 2 + 2) + 1
    # five queries a composite call, each one call toward the daily allowance: the token,
    # one call for the users, seven for the 33 queries, and the second page of the first
    # 2,000 owners' 4,000 history rows
    assert salesforce.requests == 1 + 1 + 7 + 1 and salesforce.more == 1
    assert source.api_usage == f"{salesforce.requests}/15000"


def test_a_deal_counts_from_its_creation_with_or_without_stage_history_rows(
    salesforce: FakeSalesforce,
) -> None:
    """Salesforce writes a stage history row only when a tracked field changes: a deal may have
    none, or (imported with its original CreatedDate) rows from later only."""
    key = salesforce.register_certificate()
    sam = salesforce.user(SAM)
    october = datetime(2026, 10, 1, 12, tzinfo=ZoneInfo("UTC"))
    december = NOW.date() + timedelta(days=10)
    # no history at all: as it is now since October
    salesforce.add("Opportunity", OwnerId=sam, Name="untouched", Amount=20000.0,
                   StageName="Prospecting", ForecastCategory="Pipeline", CloseDate=december,
                   IsClosed=False, IsWon=False, CreatedDate=october)  # fmt: skip
    # imported on 18 Nov, created in October
    imported = salesforce.opportunity(sam, datetime(2026, 11, 18, 12, tzinfo=ZoneInfo("UTC")),
                                      Name="imported", StageName="Prospecting", Amount=10000.0,
                                      CloseDate=december)  # fmt: skip
    (record,) = [r for r in salesforce.records["Opportunity"] if r["Id"] == imported]
    record["CreatedDate"] = october
    # no amount: nothing to count, nothing broken
    salesforce.opportunity(sam, october, Name="blank", StageName="Qualification", Amount=None,
                           CloseDate=december)  # fmt: skip
    # won in a stage since taken out of the picklist: its forecast category says it was won
    salesforce.add("Opportunity", OwnerId=sam, Name="legacy", Amount=30000.0,
                   StageName="Signed (old)", ForecastCategory="Closed", IsClosed=True,
                   IsWon=True, CloseDate=date(2026, 11, 5), CreatedDate=october)  # fmt: skip
    table = salesforce_source(salesforce, key).read(frozenset({SAM}), {SAM: 100_000.0})
    coverage = table[SAM, Metric.PIPELINE_COVERAGE]
    assert len(coverage) == 7
    assert all(v == pytest.approx(30000 / 70000) for v in coverage.values())


def test_validate_warns_when_salesforce_cannot_be_reached_and_passes_when_it_can(
    tmp_path: Path,
    salesforce: FakeSalesforce,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon.cli import main

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(salesforce.ca_file))
    key = salesforce.register_certificate()
    salesforce.user("sam@acme.test")
    path = salesforce_config(tmp_path, salesforce, key)
    assert main(["validate", "--config", str(path)]) == 0
    salesforce.down = True
    assert main(["validate", "--config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: metrics: Salesforce:" in err and "503" in err


# --- HubSpot beyond the contract ----------------------------------------------------------------


def test_hubspot_waits_out_a_secondly_429_and_stops_at_the_daily_limit(
    hubspot: FakeHubspot,
) -> None:
    from daemon.metrics.base import MetricsUnavailable

    put_hubspot(hubspot, [Row("sam@acme.test", Metric.ACTIVITIES, NOW.date() - timedelta(8), 4)])
    hubspot.throttle(2, "SECONDLY")
    rows = list(hubspot_source(hubspot).rows(frozenset({"sam@acme.test"}), {}))
    monday = NOW.date() - timedelta(days=NOW.weekday() + 7)
    assert Row("sam@acme.test", Metric.ACTIVITIES, monday, 4) in rows
    hubspot.throttle(1, "DAILY")
    with pytest.raises(MetricsUnavailable, match="HTTP 429, DAILY limit"):
        list(hubspot_source(hubspot).rows(frozenset({"sam@acme.test"}), {}))


def test_hubspot_goes_past_10000_results_from_the_last_id_and_asks_once_for_all_owners(
    hubspot: FakeHubspot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.fixtures.hubspot as fake_module

    # The same rule at a smaller scale: a search pages through at most 300 results.
    monkeypatch.setattr(fake_module, "MAX_RESULTS", 300)
    monday = NOW.date() - timedelta(days=NOW.weekday() + 7)
    reps = [f"r{i}@acme.test" for i in range(150)]
    put_hubspot(hubspot, [Row(rep, Metric.ACTIVITIES, monday - timedelta(7 * (i % 3)), 8)
                          for i, rep in enumerate(reps)])  # fmt: skip
    rows = list(hubspot_source(hubspot).rows(frozenset(reps), {}))
    counted = {(r.rep, r.week): r.value for r in rows if r.metric is Metric.ACTIVITIES}
    assert all(counted[(rep, monday - timedelta(7 * (i % 3)))] == 8 for i, rep in enumerate(reps))
    assert sum(counted.values()) == 8 * len(reps)
    owners = [r for r in hubspot.requests if "owners" in r]
    assert len(owners) == 75  # the owners list, 2 a page here: never a request per rep
    calls = [r for r in hubspot.requests if "/calls/" in r]
    # 150 owners in one search (two filter groups of 100 and 50) find 600 calls: pages of 200
    # and 100 fill its 300, then the same search from the last id read gives the other 300.
    assert len(calls) == 4


def test_the_hubspot_fake_refuses_what_hubspot_refuses(hubspot: FakeHubspot) -> None:
    import requests as http

    def search(body: dict) -> http.Response:  # type: ignore[type-arg]
        return http.post(f"{hubspot.url}/crm/v3/objects/calls/search", json=body,
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)  # fmt: skip

    unknown = {"filterGroups": [{"filters": [{"propertyName": "ownerId", "operator": "EQ",
                                              "value": "1"}]}]}  # fmt: skip
    assert search(unknown).status_code == 400
    assert search({"limit": 201}).status_code == 400
    assert search({"after": "10000"}).status_code == 400
    many = {"filterGroups": [{"filters": [{"propertyName": "hubspot_owner_id", "operator": "IN",
                                           "values": [str(i) for i in range(101)]}]}]}  # fmt: skip
    assert search(many).status_code == 400
    one = {"propertyName": "hubspot_owner_id", "operator": "EQ", "value": "1"}
    assert search({"filterGroups": [{"filters": [one] * 11}]}).status_code == 400  # 10 a group
    assert search({"filterGroups": [{"filters": [one] * 6}] * 5}).status_code == 400  # 25 in all
    assert search({"filterGroups": [{"filters": [one]}] * 6}).status_code == 400  # 5 groups
    assert http.get(f"{hubspot.url}/crm/v3/owners/", timeout=5).status_code == 401


def test_the_hubspot_fake_ors_filter_groups_and_pages_on_from_an_object_id(
    hubspot: FakeHubspot,
) -> None:
    import requests as http

    def search(body: dict) -> dict:  # type: ignore[type-arg]
        return http.post(f"{hubspot.url}/crm/v3/objects/calls/search", json=body,
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()  # fmt: skip

    sam, ana = hubspot.owner("sam@acme.test"), hubspot.owner("ana@acme.test")
    for owner in (sam, ana, sam, ana, sam):
        hubspot.add("calls", hubspot_owner_id=owner, hs_timestamp="2026-11-16T10:00:00.000Z")
    by = {"sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]}
    groups = [{"filters": [{"propertyName": "hubspot_owner_id", "operator": "IN",
                            "values": [who]}]} for who in (sam, ana)]  # fmt: skip
    everyone = search({"filterGroups": groups, **by, "limit": 3})
    ids = [int(r["id"]) for r in everyone["results"]]
    assert everyone["total"] == 5 and ids == sorted(ids) and len(ids) == 3
    past = {"propertyName": "hs_object_id", "operator": "GT", "value": str(ids[-1])}
    rest = search({"filterGroups": [{"filters": g["filters"] + [past]} for g in groups], **by})
    assert rest["total"] == 2 and all(int(r["id"]) > ids[-1] for r in rest["results"])
    unsorted = [int(r["id"]) for r in search({"filterGroups": groups})["results"]]
    assert unsorted != sorted(unsorted)  # no order to rely on without sorts


def test_the_hubspot_fake_gives_property_histories_newest_first_and_stage_metadata(
    hubspot: FakeHubspot,
) -> None:
    import requests as http

    auth = {"Authorization": f"Bearer {TOKEN}"}
    opened, won = datetime(2026, 10, 5, 12, tzinfo=UTC), datetime(2026, 11, 19, 12, tzinfo=UTC)
    deal = hubspot.add("deals", history={"dealstage": [(opened, "qualifiedtobuy"), (won, "closedwon")]},
                       amount="30000", hubspot_owner_id=hubspot.owner("sam@acme.test"))  # fmt: skip
    one = http.get(f"{hubspot.url}/crm/v3/objects/deals/{deal}", headers=auth, timeout=5,
                   params={"propertiesWithHistory": "dealstage,amount"}).json()  # fmt: skip
    batch = http.post(f"{hubspot.url}/crm/v3/objects/deals/batch/read", headers=auth, timeout=5,
                      json={"inputs": [{"id": deal}], "properties": [],
                            "propertiesWithHistory": ["dealstage", "amount"]}).json()  # fmt: skip
    for answer in (one, batch["results"][0]):
        stages = answer["propertiesWithHistory"]["dealstage"]
        assert [v["value"] for v in stages] == ["closedwon", "qualifiedtobuy"]  # newest first
        assert stages[0]["timestamp"] == "2026-11-19T12:00:00.000Z" and stages[0]["sourceType"]
        # a value set when the deal was created has one version, from then
        assert answer["propertiesWithHistory"]["amount"] == [{**stages[1], "value": "30000"}]
    assert batch["status"] == "COMPLETE"
    (pipeline,) = http.get(f"{hubspot.url}/crm/v3/pipelines/deals", headers=auth,
                           timeout=5).json()["results"]  # fmt: skip
    meta = {s["id"]: s["metadata"] for s in pipeline["stages"]}
    assert meta["closedwon"] == {"isClosed": "true", "probability": "1.0"}
    assert meta["closedlost"] == {"isClosed": "true", "probability": "0.0"}
    assert meta["qualifiedtobuy"]["isClosed"] == "false"


def test_the_hubspot_fake_refuses_the_batches_hubspot_refuses(hubspot: FakeHubspot) -> None:
    import requests as http

    def read(ids: Sequence[str], history: Sequence[str], kind: str = "deals") -> http.Response:
        return http.post(f"{hubspot.url}/crm/v3/objects/{kind}/batch/read", timeout=5,
                         headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"inputs": [{"id": i} for i in ids], "properties": ["amount"],
                               "propertiesWithHistory": list(history)})  # fmt: skip

    ids = [hubspot.add("deals", amount="1") for _ in range(101)]
    assert read(ids[:50], ["amount"]).status_code == 200
    refused = read(ids[:51], ["amount"])  # 50 a batch when histories are asked
    assert refused.status_code == 400 and "property histories is 50" in refused.json()["message"]
    assert read(ids[:100], []).status_code == 200
    assert read(ids, []).status_code == 400  # 100 a batch
    partly = read([ids[0], "999999"], ["amount"])  # a deal since deleted
    assert partly.status_code == 207
    assert [r["id"] for r in partly.json()["results"]] == [ids[0]]
    assert partly.json()["errors"][0]["context"] == {"ids": ["999999"]}
    assert read(ids[:1], [], kind="dealz").status_code == 400
    pipelines = http.get(f"{hubspot.url}/crm/v3/pipelines/dealz", timeout=5,
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert "Unable to infer object type" in pipelines.json()["message"]


def test_hubspot_reads_deal_histories_50_a_batch_with_stages_from_every_pipeline(
    hubspot: FakeHubspot,
) -> None:
    from daemon.metrics.base import MetricsUnavailable
    from tests.fixtures.hubspot import SALES_PIPELINE

    # A second pipeline whose stages have ids of their own (as any pipeline but the default).
    renewals = {**SALES_PIPELINE, "id": "88", "label": "Renewals", "stages": [
        {**SALES_PIPELINE["stages"][0], "id": "1001"},
        {**SALES_PIPELINE["stages"][3], "id": "1004"},  # closed, probability 1.0: won
    ]}  # fmt: skip
    hubspot.pipelines = [SALES_PIPELINE, renewals]
    reps = [f"r{i}@acme.test" for i in range(30)]
    quarter = datetime(2026, 10, 1, 12, tzinfo=UTC)  # Q4 began; NOW is in its last month
    for rep in reps:
        owner = hubspot.owner(rep)
        for _ in range(4):
            hubspot.add("deals", hubspot_owner_id=owner, hs_is_closed="false", history={
                "dealstage": [(quarter, "1001")], "amount": [(quarter, "10000")],
                "closedate": [(quarter, "2026-12-20T12:00:00.000Z")],
            })  # fmt: skip
        hubspot.add("deals", hubspot_owner_id=owner, hs_is_closed="true", history={
            "dealstage": [(quarter, "1001"), (quarter + timedelta(days=30), "1004")],
            "amount": [(quarter, "20000")], "closedate": [(quarter, "2026-10-31T12:00:00.000Z")],
        })  # fmt: skip
    hubspot.throttle(2, "TEN_SECONDLY_ROLLING", on="/batch/read")  # waited out
    rows = list(hubspot_source(hubspot).rows(frozenset(reps), dict.fromkeys(reps, 100_000.0)))
    last = NOW.date() - timedelta(days=NOW.weekday() + 7)
    coverage = {r.rep: r.value for r in rows
                if r.metric is Metric.PIPELINE_COVERAGE and r.week == last}  # fmt: skip
    # 40,000 open in Q4 against the 80,000 left once October's renewal was won
    assert coverage == {rep: pytest.approx(40000 / 80000) for rep in reps}
    batches = [r for r in hubspot.requests if r.endswith("/batch/read")]
    # 150 deals, 50 a batch (and the two answered 429 tried again): never a request per deal
    assert len(batches) == 3 + 2
    assert hubspot.requests.count("GET /crm/v3/pipelines/deals") == 1

    # A deal deleted after the search indexed it: the batch read answers 207 without it.
    gone = next(d for d in hubspot.objects["deals"] if d["properties"]["hs_is_closed"] == "true")
    hubspot.objects["deals"].remove(gone)
    rows = list(hubspot_source(hubspot).rows(frozenset(reps), dict.fromkeys(reps, 100_000.0)))
    coverage = {r.rep: r.value for r in rows
                if r.metric is Metric.PIPELINE_COVERAGE and r.week == last}  # fmt: skip
    assert coverage.pop("r0@acme.test") == pytest.approx(40000 / 100000)  # nothing won now
    assert coverage == {rep: pytest.approx(40000 / 80000) for rep in reps[1:]}

    hubspot.throttle(1, "DAILY", on="/batch/read")
    with pytest.raises(MetricsUnavailable, match="HTTP 429, DAILY limit"):
        list(hubspot_source(hubspot).rows(frozenset(reps), {}))


def salesforce_with_ledger(
    tmp_path: Path, fake: FakeSalesforce, clock: Callable[[], datetime] = lambda: NOW
) -> tuple[Config, SalesforceSource]:
    """A Salesforce source that never sleeps between retries, its config with a state_dir of its
    own, and Sam's activities of the week before ``NOW`` in the CRM."""
    from daemon.config import load

    key = fake.register_certificate()
    put_rows(fake, [Row("sam@acme.test", Metric.ACTIVITIES, NOW.date() - timedelta(8), 3)])
    path = salesforce_config(tmp_path, fake, key)
    path.write_text(path.read_text() + f"state_dir: {tmp_path / 'state'}\n")
    source = salesforce_source(fake, key, clock=clock)
    source._retry.sleep = lambda _: None  # the retries' waits: no sleeping in tests
    return load(path), source


def test_a_failing_crm_is_asked_again_after_growing_waits_kept_across_a_restart(
    tmp_path: Path, salesforce: FakeSalesforce
) -> None:
    from daemon.doctor import diagnose
    from daemon.metrics import cache
    from daemon.metrics.base import MetricsUnavailable
    from daemon.store import Ledger

    now = NOW
    config, source = salesforce_with_ledger(tmp_path, salesforce, clock=lambda: now)
    ledger = Ledger.open(config.settings.state_dir)
    try:
        assert cache.refresh(config, ledger, source, now)
        good = cache.weekly(ledger, source)
        salesforce.down = True
        waits = []
        now = NOW + timedelta(hours=6)
        while len(waits) < 9:
            asked = salesforce.requests
            with pytest.raises(MetricsUnavailable):
                cache.refresh(config, ledger, source, now)
            assert salesforce.requests > asked
            state = cache.failing(ledger, cache.METRICS)
            assert state is not None and state.since == NOW + timedelta(hours=6)
            waits.append(state.retry_at - now)
            if len(waits) == 2:  # a restart: the wait is in the ledger, not in memory
                ledger.close()
                ledger = Ledger.open(config.settings.state_dir)
            asked = salesforce.requests
            assert not cache.refresh(config, ledger, source, state.retry_at - timedelta(seconds=1))
            assert salesforce.requests == asked  # not asked while the wait runs
            now = state.retry_at
        assert [w / timedelta(minutes=1) for w in waits] == [5, 10, 20, 40, 80, 160, 320, 360, 360]
        assert cache.weekly(ledger, source).values == good.values  # the last kept
        ledger.close()
        (doctor_row,) = [r for r in diagnose(config) if r.subject == "metrics reads"]
        assert not doctor_row.ok and "9 failed reads since" in doctor_row.detail
        assert "the last numbers, read 2026-" in doctor_row.detail
        ledger = Ledger.open(config.settings.state_dir)

        salesforce.down = False
        assert cache.refresh(config, ledger, source, now)
        assert cache.failing(ledger, cache.METRICS) is None
    finally:
        ledger.close()


def test_passes_while_the_crm_is_down_say_it_once_and_ask_it_after_growing_waits(
    tmp_path: Path, salesforce: FakeSalesforce
) -> None:
    from types import SimpleNamespace

    from structlog.testing import capture_logs

    from daemon.reconcile import _metrics
    from daemon.store import Ledger

    config, source = salesforce_with_ledger(tmp_path, salesforce)
    ledger = Ledger.open(config.settings.state_dir)
    rt = SimpleNamespace(config=config, ledger=ledger, metrics_refused=None, metrics_view=None)
    try:
        _metrics(rt, source, NOW)  # type: ignore[arg-type]
        salesforce.down = True
        start, asked = NOW + timedelta(hours=6), salesforce.requests
        with capture_logs() as logged:
            for minute in range(180):  # a pass a minute for three hours
                weekly = _metrics(rt, source, start + timedelta(minutes=minute))  # type: ignore[arg-type]
                assert weekly.values[("sam@acme.test", Metric.ACTIVITIES)]  # the last numbers
        warned = [e for e in logged if e["log_level"] == "warning"]
        assert len(warned) == 1 and "metrics unavailable" in warned[0]["event"]
        # tried at 0, 5, 15, 35, 75 and 155 minutes (each try one refused login), not 180 times
        assert salesforce.requests - asked == 6

        salesforce.down = False
        with capture_logs() as logged:
            _metrics(rt, source, start + timedelta(hours=6))  # type: ignore[arg-type]
        assert [e["event"] for e in logged] == ["metrics read", "metrics readable again"]
        assert logged[1]["failed_reads"] == 6
    finally:
        ledger.close()
