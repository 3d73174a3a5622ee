"""Each metrics source against the one contract suite: the CSV file, and Salesforce through the
real ``simple-salesforce`` against the local HTTPS Salesforce (``tests/fixtures/salesforce``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from daemon.config import SalesforceSettings
from daemon.core.model import Metric
from daemon.metrics.base import MetricsSource, Opportunity, OpportunitySource, Row
from daemon.metrics.csvfile import CsvSource
from daemon.metrics.salesforce import SalesforceSource
from tests.contract.metrics_contract import NOW, MetricsSourceContract, OpportunitiesContract
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


class TestSalesforceSource(MetricsSourceContract, OpportunitiesContract):
    @pytest.fixture(autouse=True)
    def _fake(self, salesforce: FakeSalesforce) -> None:
        self.fake = salesforce
        self.key = salesforce.register_certificate()

    def _fresh(self) -> None:
        integration = self.fake.records["User"][0]
        self.fake.records = {name: [] for name in self.fake.records}
        self.fake.records["User"].append(integration)

    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        self._fresh()
        put_rows(self.fake, rows)
        return salesforce_source(self.fake, self.key)

    def publish_deals(self, deals: list[tuple[Opportunity, bool]]) -> OpportunitySource:
        self._fresh()
        ids: dict[str, str] = {}
        for deal, closed in deals:
            owner = ids.get(deal.rep) or ids.setdefault(deal.rep, self.fake.user(deal.rep))
            self.fake.add("Opportunity", OwnerId=owner, Name=deal.name, Amount=deal.amount,
                          StageName=deal.stage, CloseDate=deal.close_date, IsClosed=closed,
                          IsWon=closed)  # fmt: skip
        return salesforce_source(self.fake, self.key)
