"""The pre-read form end to end: `cadence run` (in-process, on the embedded Radicale, with a
clock the test moves) sends pre-read emails with personal links; a real HTTP client opens them,
files and refiles; the lines land in that occurrence's agenda in the invite at the next pass;
forged, expired and other people's tokens are refused; the manager of the rep who filed nothing
hears it once, and the manager of the rep who filed does not. Nothing of a token or of what was
filed reaches the logs."""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.core.agenda import extract_block
from daemon.reconcile import run_forever
from daemon.store import Ledger
from tests.fixtures.smtp import free_port
from tests.system.harness import Deployment, html_of, text_of
from tests.system.test_series_lifecycle import setup

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # Sunday; Lee meets Monday 09:00 Chicago
LINK = re.compile(r"http://127\.0\.0\.1:\d+/prep/[A-Za-z0-9_-]+")
TYPED = '<script>alert("x")</script> Initech\r\nlegal redline'


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def request(url: str, method: str = "GET", form: dict[str, str] | None = None,
            raw: bytes | None = None) -> Answer:  # fmt: skip
    """One real HTTP exchange, redirects not followed (the test checks them)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = raw if raw is not None else (urlencode(form).encode() if form is not None else None)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body,
                     headers)  # fmt: skip
        response = conn.getresponse()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read().decode(),
        )
    finally:
        conn.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


def link_in(d: Deployment, kind: str, to: str) -> str:
    (mail,) = [m for m in d.mail_of("preread") if m["To"] == to]
    links = set(LINK.findall(text_of(mail)))
    assert len(links) == 1 and links == set(LINK.findall(html_of(mail))), kind
    return links.pop()


def lee_block(d: Deployment, maya: str, at: datetime) -> str:
    (lee,) = d.rep_series(maya, "lee@acme.test")
    override = next(o for o in lee.overrides if o.recurrence_id == at)
    block = extract_block(override.description)
    assert block is not None
    return block


def test_people_file_through_their_links_and_the_invite_and_the_manager_hear_it(
    deployment: Deployment,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    d, tmp_path = deployment, deployment.root
    form_port = free_port()
    # The form on its own port, and the links in the emails pointing at it.
    maya, _raj = setup(
        d,
        extra=f"prep: {{listen: '127.0.0.1:{form_port}', public_url: 'http://127.0.0.1:{form_port}'}}\n",
    )
    lee_meeting = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Chicago"))
    passes = [
        T0,  # series made; Lee's pre-reads go (his 1:1 is 21 hours away)
        T0 + timedelta(hours=1),  # Lee's lines in the invite
        T0 + timedelta(hours=2),  # Lee's second save replaces them
        datetime(2026, 11, 23, 8, 30, tzinfo=NY),  # Lee's check: he filed, Maya hears nothing
        datetime(2026, 11, 23, 12, 30, tzinfo=NY),  # Sam's pre-reads go (Tue 10:00 Denver)
        datetime(2026, 11, 24, 10, 0, tzinfo=NY),  # Sam's check: nothing filed, Maya is warned
        datetime(2026, 11, 24, 11, 0, tzinfo=NY),  # and only once
    ]
    now = [passes[0]]
    seen: dict[str, object] = {}
    caplog.set_level(logging.INFO)  # what a deployment logs (DEBUG would show HTTP bodies)

    def after_pass(n: int) -> None:
        if n == 1:
            assert not d.mail_of("preread_missing")
            rep_link = link_in(d, "rep", "lee@acme.test")
            manager_link = link_in(d, "manager", maya)
            seen["links"] = (rep_link, manager_link)
            page = request(rep_link)
            assert page.status == 200
            assert "Your pre-read for your 1:1 with Maya Chen" in page.body
            assert "Mon 23 Nov, 09:00 CST" in page.body  # Lee's own zone (Maya's: he has none)
            assert page.body.count("<textarea") == 3 and "<script" not in page.body
            for name, value in {
                "x-frame-options": "DENY",
                "referrer-policy": "no-referrer",
            }.items():
                assert page.headers[name] == value
            csp = page.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "style-src 'sha256-" in csp
            assert "script-src" not in csp and "http" not in csp

            # No CSRF token, the manager's CSRF token on Lee's link, a forged token, a body
            # over 16 KiB: refused, and nothing is filed.
            fields = {"stuck_deal": "forged", "skill": "", "question": ""}
            assert request(rep_link, "POST", fields).status == 403
            manager_csrf = csrf_of(request(manager_link).body)
            assert request(rep_link, "POST", {**fields, "csrf": manager_csrf}).status == 403
            forged = rep_link[:-4] + ("AAAA" if not rep_link.endswith("AAAA") else "BBBB")
            assert request(forged).status == 404
            assert request(forged, "POST", {**fields, "csrf": csrf_of(page.body)}).status == 404
            big = {**fields, "csrf": csrf_of(page.body), "skill": "a" * 17000}
            answer = request(rep_link, "POST", big)
            assert answer.status == 413 and "content-security-policy" in answer.headers
            too_long = {**fields, "csrf": csrf_of(page.body), "skill": "b" * 501}
            refused = request(rep_link, "POST", too_long)
            assert refused.status == 400 and "Nothing was saved" in refused.body
            assert "forged" not in request(rep_link).body

            saved = request(rep_link, "POST", {"csrf": csrf_of(page.body),
                                               "stuck_deal": TYPED, "skill": "openers",
                                               "question": "Go around the champion?"})  # fmt: skip
            assert saved.status == 303 and saved.headers["location"].endswith("?saved=1")
            again = request(rep_link + "?saved=1")
            assert "Saved." in again.body
            # Shown inert: escaped HTML, the CRLF gone.
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Initech legal redline" in (
                again.body
            )
            assert "<script>" not in again.body
            manager_page = request(manager_link)
            manager_saved = request(
                manager_link, "POST",
                {"csrf": csrf_of(manager_page.body), "observation": "Great opener on Globex"},
            )  # fmt: skip
            assert manager_saved.status == 303
        if n == 2:
            block = lee_block(d, maya, lee_meeting)
            assert '<script>alert("x")</script> Initech legal redline' in block
            assert "\r" not in block
            rep_part = block.index("Lee's pre-read:")
            assert block.index("Open with last session's commitment") < rep_part
            assert rep_part < block.index("Maya's pre-read:") < block.index("1. Number")
            assert "Great opener on Globex" in block
            rep_link = str(seen["links"][0])  # type: ignore[index]
            page = request(rep_link)
            second = {"csrf": csrf_of(page.body), "stuck_deal": "Globex procurement",
                      "skill": "openers", "question": ""}  # fmt: skip
            assert request(rep_link, "POST", second).status == 303
        if n == 3:
            block = lee_block(d, maya, lee_meeting)
            assert "Globex procurement" in block and "Initech" not in block
            assert "My question for my manager" not in block  # left empty this time
        if n == 4:
            assert not d.mail_of("preread_missing")  # Lee filed
        if n == 5:
            rep_link, _ = seen["links"]  # type: ignore[misc]
            expired = request(str(rep_link))
            assert expired.status == 410 and "expired" in expired.body
            assert request(str(rep_link), "POST", {"stuck_deal": "late"}).status == 410
        if n == 6:
            (warning,) = d.mail_of("preread_missing")
            assert warning["To"] == maya
            text = text_of(warning)
            assert "Sam Ortiz" in text and "You didn't file a pre-read." in text
            assert "Anything urgent right now I should know about?" in text
            slots = re.findall(r"^- (\w{3} \d+ Nov, \d\d:\d\d C[SD]T)$", text, re.M)
            assert 2 <= len(slots) <= 3, text
            assert all(s.split()[0] in {"Tue", "Wed", "Thu", "Fri"} for s in slots)

    def wait(_seconds: float) -> bool:
        n = len(seen.setdefault("passes", [])) + 1  # type: ignore[arg-type]
        seen["passes"].append(n)  # type: ignore[union-attr]
        after_pass(n)
        if n == len(passes):
            return True
        now[0] = passes[n]
        return False

    assert run_forever(d.config(), clock=lambda: now[0], wait=wait) == 0
    assert len(d.mail_of("preread_missing")) == 1
    with pytest.raises(OSError):  # the form went with the daemon
        request(f"http://127.0.0.1:{form_port}/prep/x")

    # The ledger holds hashes, never the tokens themselves.
    rep_link, manager_link = seen["links"]  # type: ignore[misc]
    tokens = [str(link).rsplit("/", 1)[1] for link in (rep_link, manager_link)]
    assert all(len(t) >= 22 for t in tokens)  # 128 bits at least, base64url
    ledger_bytes = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("cadence.sqlite3*"))
    assert not any(t.encode() in ledger_bytes for t in tokens)
    ledger = Ledger.open(tmp_path / "state")
    try:
        assert ledger.schema_version >= 4
    finally:
        ledger.close()

    # Nothing of a token or of what was filed in the logs.
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "pre-read filed" in logged
    for secret in [*tokens, "Initech", "Globex procurement", "Great opener", "forged"]:
        assert secret not in logged, secret
