"""The local Salesforce against what Salesforce documents: the JWT bearer token exchange and the
SOQL ``query`` resource with its next records URL, checked with a plain HTTP client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests

from tests.fixtures.salesforce import CLIENT_ID, USERNAME, FakeSalesforce


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSalesforce]:
    server = FakeSalesforce(tmp_path, page_size=3)
    server.start()
    yield server
    server.stop()


def token(fake: FakeSalesforce, key: Path, **claims: Any) -> requests.Response:
    body = {"iss": CLIENT_ID, "sub": USERNAME, "aud": fake.url, "exp": int(time.time()) + 120}
    assertion = jwt.encode({**body, **claims}, key.read_bytes(), algorithm="RS256")
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    return requests.post(f"{fake.url}/services/oauth2/token", verify=str(fake.ca_file),
                         data={"grant_type": grant, "assertion": assertion}, timeout=5)  # fmt: skip


def query(fake: FakeSalesforce, access: str, soql: str) -> requests.Response:
    return requests.get(f"{fake.url}/services/data/v62.0/query", params={"q": soql},
                        headers={"Authorization": f"Bearer {access}"},
                        verify=str(fake.ca_file), timeout=5)  # fmt: skip


def test_the_token_endpoint_checks_signature_audience_issuer_user_and_expiry(
    fake: FakeSalesforce, tmp_path: Path
) -> None:
    key = fake.register_certificate()
    answer = token(fake, key)
    assert answer.status_code == 200
    assert answer.json()["instance_url"] == fake.url and answer.json()["access_token"]
    for claims in ({"aud": "https://login.salesforce.com"}, {"iss": "someone-else"},
                   {"sub": "nobody@acme.test"}, {"exp": int(time.time()) + 3600},
                   {"exp": int(time.time()) - 60}):  # fmt: skip
        refused = token(fake, key, **claims)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    other = tmp_path / "other"
    other.mkdir()
    stranger = FakeSalesforce(other).register_certificate()  # a key the app does not hold
    assert token(fake, stranger).status_code == 400


def test_soql_refuses_fields_the_object_lacks_pages_plain_queries_and_caps_grouped_ones(
    fake: FakeSalesforce,
) -> None:
    access = token(fake, fake.register_certificate()).json()["access_token"]
    owner = fake.user("sam@acme.test")
    for i in range(7):
        fake.add("Task", OwnerId=owner, TaskSubtype="Call", ActivityDate=date(2026, 11, 16 + i % 2))

    bad = query(fake, access, "SELECT Id, CallCount FROM Task")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"

    soql = f"SELECT Id FROM Task WHERE OwnerId IN ('{owner}')"  # noqa: S608
    first = query(fake, access, soql).json()
    assert (first["totalSize"], first["done"], len(first["records"])) == (7, False, 3)
    seen = [r["Id"] for r in first["records"]]
    page = first
    while not page["done"]:
        page = requests.get(f"{fake.url}{page['nextRecordsUrl']}", verify=str(fake.ca_file),
                            headers={"Authorization": f"Bearer {access}"}, timeout=5).json()  # fmt: skip
        seen += [r["Id"] for r in page["records"]]
    assert len(set(seen)) == 7

    grouped = query(fake, access, "SELECT OwnerId, ActivityDate, COUNT(Id) n FROM Task "
                    "GROUP BY OwnerId, ActivityDate").json()  # fmt: skip
    assert grouped["done"] and sorted(r["n"] for r in grouped["records"]) == [3, 4]
    assert query(fake, "forged", "SELECT Id FROM User").status_code == 401

    for i in range(2001):
        fake.add("Task", OwnerId=owner, TaskSubtype="Email", ActivityDate=date(2020, 1, 1),
                 Subject=f"s{i}")  # fmt: skip
    too_many = query(fake, access, "SELECT Subject, COUNT(Id) n FROM Task GROUP BY Subject")
    assert too_many.status_code == 400


def test_a_query_whose_url_passes_16384_bytes_is_refused(fake: FakeSalesforce) -> None:
    access = token(fake, fake.register_certificate()).json()["access_token"]
    ids = ", ".join(f"'005{i:015d}'" for i in range(600))  # 600 ids: about 17 KB encoded
    assert query(fake, access, f"SELECT Id FROM User WHERE Id IN ({ids})").status_code == 414  # noqa: S608
    fewer = ", ".join(f"'005{i:015d}'" for i in range(400))
    assert query(fake, access, f"SELECT Id FROM User WHERE Id IN ({fewer})").status_code == 200  # noqa: S608


def composite(fake: FakeSalesforce, access: str, subrequests: list[dict[str, Any]]) -> Any:
    return requests.post(f"{fake.url}/services/data/v62.0/composite",
                         json={"allOrNone": False, "compositeRequest": subrequests},
                         headers={"Authorization": f"Bearer {access}"},
                         verify=str(fake.ca_file), timeout=5)  # fmt: skip


def sub(ref: str, soql: str) -> dict[str, Any]:
    return {"method": "GET", "referenceId": ref,
            "url": f"/services/data/v62.0/query?{urlencode({'q': soql})}"}  # fmt: skip


def test_composite_runs_five_queries_as_one_call_each_answered_apart(
    fake: FakeSalesforce,
) -> None:
    access = token(fake, fake.register_certificate()).json()["access_token"]
    owner = fake.user("sam@acme.test")
    for i in range(4):
        fake.add("Task", OwnerId=owner, TaskSubtype="Call", ActivityDate=date(2026, 11, 16 + i))
    before = fake.requests
    answer = composite(fake, access, [
        sub("all", "SELECT Id FROM Task"),
        sub("bad", "SELECT CallCount FROM Task"),
        sub("grouped", "SELECT OwnerId, COUNT(Id) n FROM Task GROUP BY OwnerId"),
    ])  # fmt: skip
    assert answer.status_code == 200 and fake.requests == before + 1
    used = int(answer.headers["Sforce-Limit-Info"].split("=")[1].split("/")[0])
    assert used == fake.requests  # the whole composite is one call toward the allowance
    items = {item["referenceId"]: item for item in answer.json()["compositeResponse"]}
    first = items["all"]["body"]
    assert items["all"]["httpStatusCode"] == 200 and len(first["records"]) == 3  # a page of 3
    assert not first["done"]  # the next page is asked for as any query's is
    more = requests.get(f"{fake.url}{first['nextRecordsUrl']}", verify=str(fake.ca_file),
                        headers={"Authorization": f"Bearer {access}"}, timeout=5).json()  # fmt: skip
    assert more["done"] and len(more["records"]) == 1 and fake.more == 1
    assert items["bad"]["httpStatusCode"] == 400  # a failed query leaves the others
    assert items["bad"]["body"][0]["errorCode"] == "INVALID_FIELD"
    assert items["grouped"]["body"]["records"][0]["n"] == 4

    six = [sub(f"q{i}", "SELECT Id FROM Task") for i in range(6)]
    assert composite(fake, access, six).status_code == 400  # five queries at most
    many = [{"method": "GET", "referenceId": f"r{i}", "url": "/services/data/v62.0/limits"}
            for i in range(26)]  # fmt: skip
    assert composite(fake, access, many).status_code == 400  # 25 subrequests at most
    assert composite(fake, "forged", six[:1]).status_code == 401


def test_a_query_in_a_composite_body_may_pass_16384_bytes_but_not_100000_characters(
    fake: FakeSalesforce,
) -> None:
    access = token(fake, fake.register_certificate()).json()["access_token"]
    ids = ", ".join(f"'005{i:015d}'" for i in range(2000))  # 42,000 characters
    long = composite(fake, access, [sub("ok", f"SELECT Id FROM User WHERE Id IN ({ids})")])  # noqa: S608
    assert long.json()["compositeResponse"][0]["httpStatusCode"] == 200
    ids = ", ".join(f"'005{i:015d}'" for i in range(5000))  # 105,000 characters
    too = composite(fake, access, [sub("no", f"SELECT Id FROM User WHERE Id IN ({ids})")])  # noqa: S608
    assert too.json()["compositeResponse"][0]["httpStatusCode"] == 400


def test_each_save_that_changes_a_tracked_field_writes_a_stage_history_row(
    fake: FakeSalesforce,
) -> None:
    access = token(fake, fake.register_certificate()).json()["access_token"]
    owner = fake.user("sam@acme.test")
    at = datetime(2026, 10, 1, 12, tzinfo=UTC)
    deal = fake.opportunity(owner, at, Name="Acme", StageName="Prospecting", Amount=5000.0,
                            CloseDate=date(2026, 12, 15))  # fmt: skip
    fake.change(deal, at + timedelta(days=1), Name="Acme renewal")  # not a tracked field
    fake.change(deal, at + timedelta(days=2), ForecastCategory="Forecast")  # moved to Commit
    fake.change(deal, at + timedelta(days=3), StageName="Closed Won")
    fields = "ForecastCategory, ForecastCategoryName, IsClosed, IsWon"
    now = query(fake, access, f"SELECT {fields} FROM Opportunity WHERE Id = '{deal}'")  # noqa: S608
    assert [(r["ForecastCategory"], r["ForecastCategoryName"], r["IsClosed"], r["IsWon"])
            for r in now.json()["records"]] == [("Closed", "Closed", True, True)]  # fmt: skip
    fields = "CreatedDate, StageName, ForecastCategory, Amount, PrevAmount"
    soql = f"SELECT {fields} FROM OpportunityHistory WHERE OpportunityId = '{deal}'"  # noqa: S608
    rows = query(fake, access, soql).json()
    assert [(r["CreatedDate"][:10], r["StageName"], r["ForecastCategory"]) for r in rows["records"]] == [
        ("2026-10-01", "Prospecting", "Pipeline"),
        ("2026-10-03", "Prospecting", "Forecast"),
        ("2026-10-04", "Closed Won", "Closed"),
    ]  # fmt: skip
    assert rows["records"][1]["PrevAmount"] == 5000.0


def test_history_is_filtered_through_its_opportunity_and_stages_say_closed_and_won(
    fake: FakeSalesforce,
) -> None:
    access = token(fake, fake.register_certificate()).json()["access_token"]
    sam, lee = fake.user("sam@acme.test"), fake.user("lee@acme.test")
    at = datetime(2026, 10, 1, 12, tzinfo=UTC)
    fake.opportunity(sam, at, Name="open", StageName="Prospecting", CloseDate=date(2027, 1, 5))
    fake.opportunity(sam, at, Name="won", StageName="Closed Won", CloseDate=date(2026, 10, 2))
    fake.opportunity(sam, at, Name="old", StageName="Closed Lost", CloseDate=date(2026, 5, 2))
    fake.opportunity(lee, at, Name="lee's", StageName="Prospecting", CloseDate=date(2027, 1, 5))
    fields = "OpportunityId, StageName, Opportunity.OwnerId, Opportunity.CloseDate"
    mine = f"Opportunity.OwnerId IN ('{sam}')"
    relevant = "Opportunity.IsClosed = false OR Opportunity.CloseDate >= 2026-07-01"
    soql = f"SELECT {fields} FROM OpportunityHistory WHERE {mine} AND ({relevant})"  # noqa: S608
    found = query(fake, access, soql).json()["records"]
    assert sorted(r["StageName"] for r in found) == ["Closed Won", "Prospecting"]
    assert {r["Opportunity"]["OwnerId"] for r in found} == {sam}  # nested under its lookup
    assert found[0]["Opportunity"]["attributes"]["type"] == "Opportunity"

    def refused(soql: str) -> str:
        answer = query(fake, access, soql)
        assert answer.status_code == 400
        return str(answer.json()[0]["errorCode"])

    assert refused("SELECT OwnerId FROM OpportunityHistory") == "INVALID_FIELD"  # no owner
    assert refused("SELECT Account.Name FROM OpportunityHistory") == "INVALID_FIELD"
    assert refused("SELECT Opportunity.Owner FROM OpportunityHistory") == "INVALID_FIELD"
    mixed = f"SELECT Id FROM OpportunityHistory WHERE {mine} AND {relevant}"  # noqa: S608
    assert refused(mixed) == "MALFORMED_QUERY"  # SOQL wants parentheses to mix AND and OR

    fields = "ApiName, IsClosed, IsWon, ForecastCategory, ForecastCategoryName"
    some = "ApiName IN ('Closed Won', 'Closed Lost', 'Negotiation/Review')"
    soql = f"SELECT {fields} FROM OpportunityStage WHERE {some}"  # noqa: S608
    stages = query(fake, access, soql).json()["records"]
    by_name = {s["ApiName"]: s for s in stages}
    assert (by_name["Closed Won"]["IsClosed"], by_name["Closed Won"]["IsWon"]) == (True, True)
    assert (by_name["Closed Lost"]["IsClosed"], by_name["Closed Lost"]["IsWon"]) == (True, False)
    commit = by_name["Negotiation/Review"]
    assert (commit["ForecastCategory"], commit["ForecastCategoryName"]) == ("Forecast", "Commit")
    assert refused("SELECT Name FROM OpportunityStage") == "INVALID_FIELD"
