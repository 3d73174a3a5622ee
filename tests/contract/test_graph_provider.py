"""The Outlook provider against the strict local Graph: the shared contract, then what only
Graph shows (a deleted occurrence that delta never mentions, declines, throttling, bad input).

``tests.fixtures.graph`` plays the identity platform and Graph over HTTPS with its own CA;
the real msal gets its token there and the provider's session trusts that CA only.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from daemon.graph_http import GraphClient, GraphSettings
from daemon.providers.base import CalendarProvider
from daemon.providers.graph import GraphCalendarProvider
from tests.contract.provider_contract import ProviderContract
from tests.fixtures.graph import FakeGraph

CALENDAR = "1:1s (cadence)"
NOW = datetime(2030, 10, 1, 9, 0, tzinfo=UTC)
_managers = itertools.count(1)


def graph_client(graph: FakeGraph, **changes: object) -> GraphClient:
    values: dict[str, object] = {
        "tenant_id": graph.tenant,
        "client_id": graph.client_id,
        "client_secret": graph.client_secret,
        "authority_host": graph.url,
        "graph_endpoint": graph.url,
        "ca_bundle": str(graph.ca_file),
    }
    values.update(changes)
    return GraphClient(GraphSettings(**values), sleep=lambda seconds: None)  # type: ignore[arg-type]


@pytest.fixture
def outlook(graph: FakeGraph) -> GraphCalendarProvider:
    return GraphCalendarProvider(graph_client(graph), CALENDAR, clock=lambda: NOW)


@pytest.fixture
def mailbox(graph: FakeGraph) -> str:
    email = f"maya{next(_managers)}@acme.test"
    graph.add_mailbox(email)
    return email


class TestGraphContract(ProviderContract):
    @pytest.fixture
    def provider(self, outlook: GraphCalendarProvider) -> CalendarProvider:
        return outlook

    @pytest.fixture
    def manager(self, mailbox: str) -> str:
        return mailbox
