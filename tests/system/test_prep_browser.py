"""The pre-read form in a real browser (headless Chromium, on a phone-sized screen): the link
from the email opens the page, a person types and saves, the page says so, nothing is fetched
from elsewhere and the CSP blocks nothing the page needs; the lines reach the invite at the next
pass. A screenshot is left in var/ for people to look at.

Run with ``make test-browser`` (marker ``browser``; needs Chromium, /usr/bin/chromium or
CADENCE_CHROMIUM, and the ``browser`` extra)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.core.agenda import extract_block
from daemon.reconcile import run_forever
from tests.fixtures.smtp import free_port
from tests.system.harness import REPO, Deployment, text_of
from tests.system.test_series_lifecycle import setup

pytestmark = pytest.mark.browser

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)
LEE_MEETING = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Chicago"))
CHROMIUM = os.environ.get("CADENCE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_a_rep_files_the_form_in_a_phone_browser_and_it_reaches_the_invite(
    deployment: Deployment,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    d = deployment
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    maya, _ = setup(d, extra=f"prep: {{listen: '127.0.0.1:{port}', public_url: '{base}'}}\n")
    shot = REPO / "var" / "prep-form.png"
    shot.parent.mkdir(exist_ok=True)
    now = [T0]
    seen: dict[str, object] = {}

    def in_browser() -> None:
        (mail,) = [m for m in d.mail_of("preread") if m["To"] == "lee@acme.test"]
        (link,) = set(re.findall(r"http://127\.0\.0\.1:\d+/prep/[A-Za-z0-9_-]+", text_of(mail)))
        requests: list[str] = []
        console: list[str] = []
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 390, "height": 844},
                                        device_scale_factor=2, is_mobile=True,
                                        java_script_enabled=False)  # fmt: skip
                page.on("request", lambda r: requests.append(r.url))
                page.on("console", lambda m: console.append(m.text))
                answer = page.goto(link)
                assert answer is not None and answer.status == 200
                assert page.get_by_text("Your pre-read for your 1:1 with Maya Chen").is_visible()
                # Readable on a phone: nothing wider than the screen.
                width = page.locator("main").bounding_box()
                assert width is not None and width["width"] <= 390
                page.get_by_label("The deal I'm stuck on").fill(
                    "<b>Initech</b>: the champion went dark\nafter the demo"
                )
                page.get_by_label("The skill I want to sharpen").fill(
                    "Voicemails that get a call back"
                )
                page.get_by_label("My question for my manager").fill("Go around the champion?")
                page.get_by_role("button", name="Save my pre-read").click()
                page.wait_for_load_state()
                assert page.get_by_text("Saved.").is_visible()
                assert page.get_by_label("The deal I'm stuck on").input_value() == (
                    "<b>Initech</b>: the champion went dark after the demo"
                )
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
        assert all(url.startswith(base + "/prep/") for url in requests), requests
        assert not [c for c in console if "Content Security Policy" in c], console
        seen["done"] = True

    def wait(_seconds: float) -> bool:
        if "done" not in seen:
            in_browser()
            now[0] = T0 + timedelta(hours=1)
            return False
        return True

    assert run_forever(d.config(), clock=lambda: now[0], wait=wait) == 0
    (lee,) = d.rep_series(maya, "lee@acme.test")
    override = next(o for o in lee.overrides if o.recurrence_id == LEE_MEETING)
    block = extract_block(override.description) or ""
    assert "- The deal I'm stuck on: <b>Initech</b>: the champion went dark after the demo" in block
    assert "- My question for my manager: Go around the champion?" in block
    assert shot.stat().st_size > 10_000
