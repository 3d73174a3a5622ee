"""How many API requests does one refresh from a CRM cost a big sales org? Prints them.

    .venv/bin/python benchmarks/crm_scale.py [reps...]     (default: 1000 10000)

Each size reads every rep through the real client libraries against the local fakes of
``tests/fixtures`` (Salesforce over HTTPS, HubSpot CRM v3), with one call, one email, one meeting
a week per rep over the weeks a read covers and a closed deal every other week; in Salesforce
each of those deals was opened three weeks before it was won, and each rep also has an open deal
moved to Commit after three weeks, so every deal has a stage history of two rows. Goal (issue 15):
Salesforce at most metrics x ceil(reps / 500) queries plus their pages, HubSpot only the pages
the data need; none per rep, and none per pass (a pass reads the ledger's cache). A figure to
watch, not a timed test.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.config import HubspotSettings, SalesforceSettings  # noqa: E402
from daemon.core.metrics import WEEK, monday_of  # noqa: E402
from daemon.metrics.hubspot import HubspotSource  # noqa: E402
from daemon.metrics.salesforce import WEEKS_READ, SalesforceSource  # noqa: E402
from tests.fixtures.hubspot import TOKEN, FakeHubspot, iso  # noqa: E402
from tests.fixtures.salesforce import CLIENT_ID, USERNAME, FakeSalesforce  # noqa: E402

ORG = ZoneInfo("America/New_York")
NOW = datetime(2026, 12, 1, 15, tzinfo=UTC)
METRICS = 5  # the metrics a CRM gives: all of them


def weeks() -> list[datetime]:
    end = monday_of(NOW.astimezone(ORG).date())
    return [datetime.combine(end - WEEK * (WEEKS_READ - i), clock_time(10), ORG)
            for i in range(WEEKS_READ)]  # fmt: skip


def salesforce(reps: list[str], tmp: Path) -> str:
    fake = FakeSalesforce(tmp, user_zone=ORG)
    for rep in reps:
        owner = fake.user(rep)
        first = weeks()[0]
        pipeline = fake.opportunity(owner, first, Name="open", StageName="Prospecting",
                                    Amount=2.0, CloseDate=NOW.date() + WEEK)  # fmt: skip
        fake.change(pipeline, first + WEEK * 3, ForecastCategory="Forecast")
        for n, monday in enumerate(weeks()):
            fake.add("Task", OwnerId=owner, TaskSubtype="Call", ActivityDate=monday.date())
            fake.add("Event", OwnerId=owner, CreatedDate=monday + timedelta(days=1))
            if n % 2:
                deal = fake.opportunity(owner, monday - WEEK * 3, Name="deal", Amount=1.0,
                                        StageName="Prospecting",
                                        CloseDate=monday.date())  # fmt: skip
                fake.change(deal, monday, StageName="Closed Won")
    key = fake.register_certificate()
    fake.start()
    try:
        session = requests.Session()
        session.verify, session.trust_env = str(fake.ca_file), False
        settings = SalesforceSettings(login_url=fake.url, client_id=CLIENT_ID, username=USERNAME,
                                      private_key_file=key)  # fmt: skip
        source = SalesforceSource(settings, ORG, lambda: NOW, session)
        started = time.perf_counter()
        rows = sum(1 for _ in source.rows(frozenset(reps), dict.fromkeys(reps, 10.0)))
        took = time.perf_counter() - started
        chunks = math.ceil(len(reps) / 500)
        kinds = {what: sum(f"FROM {what} " in q or q.endswith(f"FROM {what}")
                           for q in fake.queries)
                 for what in ("User", "Task", "Event", "Opportunity", "OpportunityHistory",
                              "OpportunityStage")}  # fmt: skip
        calls = fake.requests - 1 - fake.more  # past the token and the next pages: composites
        deals = len(fake.records["Opportunity"])
        changes = len(fake.records["OpportunityHistory"])
        return (
            f"Salesforce  {fake.requests:>6} requests: 1 token, {calls} composite calls holding "
            f"{len(fake.queries)} queries ({kinds['User']} user look-ups, "
            f"{kinds['Task'] + kinds['Event']} grouped weekly counts, {kinds['Opportunity']} "
            f"deal queries, {kinds['OpportunityHistory']} stage-history queries, "
            f"{kinds['OpportunityStage']} stage list), {fake.more} more pages "
            f"({deals:,} deals, {changes:,} history rows); the goal, {METRICS} metrics x "
            f"{chunks} chunks of 500 = {METRICS * chunks} queries + their pages  "
            f"({rows:,} rows, {took:.1f} s)"
        )
    finally:
        fake.stop()


def hubspot(reps: list[str]) -> str:
    os.environ["CADENCE_HUBSPOT_TOKEN"] = TOKEN
    fake = FakeHubspot(page_size_owners=500)
    records = 0
    for rep in reps:
        owner = fake.owner(rep)
        for n, monday in enumerate(weeks()):
            at = iso(monday)
            fake.add("calls", hubspot_owner_id=owner, hs_timestamp=at)
            fake.add("emails", hubspot_owner_id=owner, hs_timestamp=at)
            fake.add("meetings", hubspot_owner_id=owner, hs_createdate=at, hs_timestamp=at)
            records += 3
            if n % 2:
                fake.add("deals", hubspot_owner_id=owner, closedate=at, hs_is_closed="true",
                         hs_is_closed_won="true", dealstage="closedwon", amount="1000")  # fmt: skip
                records += 1
        # and an open deal that grew and was committed along the way, read with its history
        first, mid = weeks()[0], weeks()[len(weeks()) // 2]
        fake.add("deals", hubspot_owner_id=owner, hs_is_closed="false", history={
            "dealstage": [(first, "qualifiedtobuy"), (mid, "contractsent")],
            "amount": [(first, "40000"), (mid, "60000")],
            "closedate": [(first, iso(NOW + timedelta(days=20)))],
            "hs_manual_forecast_category": [(first, "PIPELINE"), (mid, "COMMIT")],
        })  # fmt: skip
        records += 1
    fake.start()
    try:
        source = HubspotSource(HubspotSettings(api_url=fake.url), ORG, lambda: NOW)
        quotas = dict.fromkeys(reps, 100_000.0)
        started = time.perf_counter()
        rows = sum(1 for _ in source.rows(frozenset(reps), quotas))
        took = time.perf_counter() - started
        pages = math.ceil(len(reps) / 500) + records // 200
        batches = sum(r.endswith("/batch/read") for r in fake.requests)
        return (
            f"HubSpot     {len(fake.requests):>6} requests ({records:,} records: about "
            f"{pages} pages of 200 and the owners' list; of them {batches} history batch reads "
            f"of 50 deals and 1 pipelines read)  {rows:,} rows  {took:5.1f} s"
        )
    finally:
        fake.stop()


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [1000, 10000]:
        reps = [f"r{i}@acme.test" for i in range(n)]
        print(f"{n:>6} reps")
        with tempfile.TemporaryDirectory() as tmp:
            print("  " + salesforce(reps, Path(tmp)))
        print("  " + hubspot(reps))
