"""The status endpoint of `cadence run`, read by a real HTTP client between passes: healthy while
passes succeed, 503 with the reason once the calendar server has been down for three intervals,
metrics that count what happened (including the errors), and the report page."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.embedded import EmbeddedRadicale
from daemon.reconcile import run_forever
from tests.fixtures.smtp import free_port
from tests.system.harness import Deployment
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def metric(text: str, name: str) -> float:
    """The value of one sample line, e.g. ``cadence_passes_total{outcome="ok"}``."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the metrics:\n{text}")


def test_healthz_metrics_and_report_while_the_calendar_server_comes_and_goes(
    tmp_path: Path,
) -> None:
    # Radicale only: the embedded server is started and stopped on a port the config names.
    cal_port, http_port = free_port(), free_port()
    d = Deployment(tmp_path, f"http://127.0.0.1:{cal_port}/", ["maya@acme.test", "raj@acme.test"])
    setup(d, extra=f"interval_seconds: 60\nhttp: {{listen: '127.0.0.1:{http_port}'}}\n")
    base = f"http://127.0.0.1:{http_port}"
    radicale = EmbeddedRadicale(tmp_path / "radicale", port=cal_port)
    now = [T0]
    seen: list[dict[str, object]] = []

    def wait(seconds: float) -> bool:
        status, kind, body = get(f"{base}/healthz")
        assert kind == "application/json"
        _, _, metrics = get(f"{base}/metrics")
        seen.append({"status": status, "health": json.loads(body), "metrics": metrics})
        n = len(seen)
        if n == 1:
            radicale.start()  # the calendar server comes up after the first pass
        if n == 2:
            page_status, page_type, page = get(f"{base}/")
            assert page_status == 200 and page_type.startswith("text/html")
            # Nothing has started yet on this Sunday: the page says so rather than draw charts.
            assert "Maya Chen" in page and "no 1:1s yet" in page and "<script" not in page
            assert get(f"{base}/nothing-here")[0] == 404
            radicale.stop()  # and goes down again
        now[0] += timedelta(seconds=100)
        return n == 4

    try:
        assert run_forever(d.config(), clock=lambda: now[0], wait=wait) == 0
    finally:
        radicale.stop()

    first, second, third, fourth = seen
    # Nothing has worked yet: 503, with the reason and the error.
    assert first["status"] == 503
    health = first["health"]
    assert isinstance(health, dict) and health["why"].startswith("no pass has succeeded yet")
    assert "127.0.0.1" in health["why"]
    m = str(first["metrics"])
    assert metric(m, 'cadence_passes_total{outcome="unavailable"}') == 1
    assert metric(m, 'cadence_api_errors_total{kind="Transient",provider="caldav"}') >= 1

    assert second["status"] == 200 and second["health"]["status"] == "ok"  # type: ignore[index]
    m = str(second["metrics"])
    assert metric(m, 'cadence_passes_total{outcome="ok"}') == 1
    assert metric(m, "cadence_series_created_total") == 4  # Sam (and his next stage), Lee, Ana
    assert metric(m, 'cadence_emails_sent_total{kind="preread"}') == 2
    assert metric(m, "cadence_pass_duration_seconds_count") == 2

    # Down again for one pass: 100 s since the last good one, within 3 intervals of 60 s.
    assert third["status"] == 200
    assert metric(str(third["metrics"]), 'cadence_passes_total{outcome="unavailable"}') == 2

    # Down for 200 s: 503, and the body says why.
    assert fourth["status"] == 503
    health = fourth["health"]
    assert isinstance(health, dict) and health["status"] == "failing"
    assert "200 s ago" in health["why"] and "127.0.0.1" in health["why"]
    assert metric(str(fourth["metrics"]), 'cadence_passes_total{outcome="unavailable"}') == 3
    with pytest.raises(OSError):  # the listener went with the daemon
        urllib.request.urlopen(f"{base}/healthz", timeout=2)
