"""The HTML report in a real headless browser (Debian's ``chromium``), at a phone's width: it
renders, nothing spills sideways, every name is shown as typed and none is interpreted. A
screenshot is left in ``var/`` for people to look at. Run by ``make test-browser``."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon import report
from daemon.config import load
from daemon.core.planner import LedgerSeries, LedgerView, Outcome
from tests.system.harness import REPO

pytestmark = pytest.mark.browser

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
AT = datetime(2027, 2, 21, 12, 0, tzinfo=NY)
PHONE = (500, 900)  # headless chromium's narrowest window is 500 px wide
NARROW = 360  # a small phone: the page is laid out at this width inside that window
TRICKY = 'Zoë <b>O\'Neil</b> & "Co"'


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium)")
    return found


def run_browser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={PHONE[0]},{PHONE[1]}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def the_report(tmp_path: Path) -> str:
    config_path = tmp_path / "cadence.yaml"
    config_path.write_text(
        'organization: {name: "Acme & Sons", timezone: America/New_York}\n'
        "managers:\n"
        "  - {email: maya@acme.test, name: Maya Chen, timezone: America/Chicago}\n"
        "  - {email: raj.with.a.very.long.address@subsidiary.acme.test, name: Raj Patel}\n"
        "reps:\n"
        "  - {email: lee@acme.test, name: Lee Park, role: ae, start_date: 2025-01-06,"
        " manager: maya@acme.test}\n"
        f"  - {{email: zoe@acme.test, name: '{TRICKY.replace(chr(39), chr(39) * 2)}', role: ae,"
        " start_date: 2025-01-06, manager: maya@acme.test}\n"
        "  - {email: new@acme.test, name: New Hire, role: sdr, start_date: 2027-02-15,"
        " manager: raj.with.a.very.long.address@subsidiary.acme.test}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    config = load(config_path)

    def weekly(uid: str, rep: str, first: datetime) -> LedgerSeries:
        return LedgerSeries(
            uid=uid, rep=rep, manager="maya@acme.test", stage="ramped_ae", fingerprint=uid,
            start=first, rrule="FREQ=WEEKLY;INTERVAL=1;BYDAY=MO", until=None, state="active",
            timezone="America/Chicago",
        )  # fmt: skip

    lee0 = datetime(2026, 11, 23, 9, 0, tzinfo=CHI)
    zoe0 = datetime(2026, 11, 23, 10, 0, tzinfo=CHI)
    view = LedgerView(
        series=(weekly("s-lee", "lee@acme.test", lee0), weekly("s-zoe", "zoe@acme.test", zoe0)),
        outcomes=(
            Outcome("s-lee", lee0 + timedelta(weeks=1), "lee@acme.test", "maya@acme.test", True),
            Outcome(
                "s-lee",
                lee0 + timedelta(weeks=7),
                "lee@acme.test",
                "maya@acme.test",
                True,
                week11=True,
            ),  # fmt: skip
            Outcome("s-lee", lee0 + timedelta(weeks=9), "lee@acme.test", "maya@acme.test", True),
            Outcome("s-zoe", zoe0 + timedelta(weeks=3), "zoe@acme.test", "maya@acme.test", False),
        ),
    )
    return report.render_html(report.build(config, AT, view))


def test_the_html_report_reads_on_a_phone_and_shows_names_as_typed(tmp_path: Path) -> None:
    html = the_report(tmp_path)
    page = tmp_path / "report.html"
    page.write_text(html)

    # What the browser built from it: every name as text, no element a name could inject.
    dom = run_browser("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<script" not in dom.stdout and "<b>O'Neil</b>" not in dom.stdout
    assert 'Zoë &lt;b&gt;O\'Neil&lt;/b&gt; &amp; "Co"' in dom.stdout
    assert len(re.findall(r"<svg\b", dom.stdout)) == 3  # Maya, Lee, Zoë: the others have none
    assert "23.1% cancelled · warning" in dom.stdout  # Lee: 3 of 13
    assert "no 1:1s yet" in dom.stdout  # the new hire and Raj

    # At a small phone's width nothing sticks out to the side. The report has no script, so a
    # copy gets one that lays the page out NARROW px wide and writes the right edge of the
    # widest element into the DOM for us to read.
    probe = tmp_path / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            f"<script>document.documentElement.style.width = '{NARROW}px';"
            " let right = 0; for (const e of document.querySelectorAll('body *'))"
            " right = Math.max(right, e.getBoundingClientRect().right);"
            " document.body.dataset.right = Math.ceil(right);</script></body>",
        )
    )
    measured = run_browser("--dump-dom", "--virtual-time-budget=2000", probe.as_uri())
    right = re.search(r'data-right="(\d+)"', measured.stdout)
    assert right is not None, measured.stdout[:500]
    assert 0 < int(right.group(1)) <= NARROW

    # And a picture of it, for people.
    shot = REPO / "var" / "report-phone.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    taken = run_browser(f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == PHONE[0]
