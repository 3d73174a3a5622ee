"""The mailer contract, run against the Maildir outbox and a real SMTP server (aiosmtpd).

Both transports must deliver a built message exactly as built: once, multipart text + HTML,
with the cadence headers and every Cc recipient. Then what only one transport can get wrong:
the Maildir layout and its one-file-per-Message-ID promise, and the SMTP server that wants TLS
and a login, refuses, hangs up, or is not there at all, and comes back.
"""

from __future__ import annotations

import logging
import mailbox
import os
import stat
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import MailRejected, MailUnavailable
from daemon.mail.base import Mailer
from daemon.mail.gmail import GmailMailer
from daemon.mail.graph import GraphMailer
from daemon.mail.maildir import MaildirMailer
from daemon.mail.message import build_message
from daemon.mail.smtp import SmtpMailer
from tests.fixtures.google import FakeGoogle, Fault
from tests.fixtures.graph import FakeGraph, graph_client
from tests.fixtures.smtp import (
    SMTP_PASSWORD,
    SMTP_USER,
    Refusing,
    SmtpServer,
    free_port,
    serve_smtp,
)

NOW = datetime(2026, 9, 1, 9, 0, tzinfo=ZoneInfo("America/Chicago"))
OCCURRENCE = "cadence0123456789abcdef0123456789abcd 2026-09-03T15:00:00Z"
TEXT = "Pre-read for Thursday's 1:1 with Lee.\nWhat did you commit to last time? Café ✓\n"
HTML = "<p>Pre-read for Thursday&#39;s 1:1 with Lee.</p><p>Café ✓</p>\n"


def make_message(**changes: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "sender": "cadence <cadence@acme.test>",
        "to": ["Maya Chen <maya@acme.test>"],
        "cc": ["vp@acme.test"],
        "subject": "Pre-read: Lee, Thursday — Café",
        "text": TEXT,
        "html": HTML,
        "kind": "preread",
        "occurrence": OCCURRENCE,
        "now": NOW,
    }
    return build_message(**(fields | changes))


def addresses(message: EmailMessage, *headers: str) -> set[str]:
    values = [str(v) for h in headers for v in message.get_all(h, [])]
    return {addr.lower() for _, addr in getaddresses(values)}


# --- the shared contract ----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    message: EmailMessage
    recipients: frozenset[str]  # the addresses this transport hands the message to


@dataclass
class Transport:
    name: str
    mailer: Mailer
    delivered: Callable[[], list[Delivery]]


def maildir_deliveries(box: Path) -> list[Delivery]:
    found = []
    for sub in ("new", "cur"):
        for path in sorted((box / sub).iterdir()):
            message = BytesParser(policy=default).parsebytes(path.read_bytes())
            assert isinstance(message, EmailMessage)
            found.append(Delivery(message, frozenset(addresses(message, "To", "Cc", "Bcc"))))
    return found


@pytest.fixture(params=["maildir", "smtp", "gmail", "graph"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transport]:
    if request.param == "maildir":
        box = tmp_path / "outbox"
        yield Transport("maildir", MaildirMailer(box), lambda: maildir_deliveries(box))
        return
    if request.param == "gmail":
        yield gmail_transport(request.getfixturevalue("google_server"))
        return
    if request.param == "graph":
        graph: FakeGraph = request.getfixturevalue("graph")
        graph.add_mailbox("cadence@acme.test")
        sent = graph.sent
        yield Transport(
            "graph",
            GraphMailer(graph_client(graph)),
            lambda: [Delivery(s.message, frozenset(addresses(s.message, "To", "Cc", "Bcc")))
                     for s in sent],
        )  # fmt: skip
        return
    server: SmtpServer = request.getfixturevalue("smtp_server")
    mailer = SmtpMailer(server.host, server.port, security="none", timeout=5.0)

    def delivered() -> list[Delivery]:
        return [
            Delivery(r.message, frozenset(a.lower() for a in r.rcpt_tos)) for r in server.received
        ]

    yield Transport("smtp", mailer, delivered)


def gmail_transport(google: FakeGoogle) -> Transport:
    google.add_user("cadence@acme.test")
    mailer = GmailMailer(google.key_info(), "cadence@acme.test", root=google.url)
    first = len(google.sent)

    def delivered() -> list[Delivery]:
        found = []
        for _sender, raw in google.sent[first:]:
            message = BytesParser(policy=default).parsebytes(raw)
            assert isinstance(message, EmailMessage)
            found.append(Delivery(message, frozenset(addresses(message, "To", "Cc", "Bcc"))))
        return found

    return Transport("gmail", mailer, delivered)


def test_a_sent_message_arrives_once_as_text_and_html(transport: Transport) -> None:
    transport.mailer.send(make_message())

    [delivery] = transport.delivered()
    message = delivery.message
    assert message.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content_charset(), p) for p in message.iter_parts()]
    assert [(kind, charset) for kind, charset, _ in parts] == [
        ("text/plain", "utf-8"),
        ("text/html", "utf-8"),
    ]
    # SMTP carries lines as CRLF; a reader sees the same text either way.
    assert parts[0][2].get_content().replace("\r\n", "\n") == TEXT
    assert parts[1][2].get_content().replace("\r\n", "\n") == HTML
    assert message["Subject"] == "Pre-read: Lee, Thursday — Café"
    assert message["From"].addresses[0] == Address("cadence", "cadence", "acme.test")


def test_the_cadence_headers_survive_the_transport(transport: Transport) -> None:
    sent = make_message()
    transport.mailer.send(sent)

    [delivery] = transport.delivered()
    message = delivery.message
    assert message["X-Cadence-Kind"] == "preread"
    assert message["X-Cadence-Occurrence"] == OCCURRENCE
    assert message["Message-ID"] == sent["Message-ID"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == NOW


def test_to_and_cc_recipients_receive_it(transport: Transport) -> None:
    transport.mailer.send(make_message(cc=["vp@acme.test", "Coach <coach@acme.test>"]))

    [delivery] = transport.delivered()
    assert delivery.recipients == {"maya@acme.test", "vp@acme.test", "coach@acme.test"}
    assert addresses(delivery.message, "Cc") == {"vp@acme.test", "coach@acme.test"}


def test_the_same_occurrence_for_two_readers_is_two_emails(transport: Transport) -> None:
    # The pre-read goes to the manager and to the rep: same kind and occurrence, not a duplicate.
    transport.mailer.send(make_message(to=["maya@acme.test"], cc=[]))
    transport.mailer.send(make_message(to=["lee@acme.test"], cc=[]))

    assert sorted(r for d in transport.delivered() for r in d.recipients) == [
        "lee@acme.test",
        "maya@acme.test",
    ]


# --- building the message ---------------------------------------------------------------------


def test_message_id_names_what_the_email_is_about_not_when_it_was_built() -> None:
    first = make_message()
    retried = make_message(now=NOW + timedelta(hours=3), to=["MAYA@acme.test"])
    other_reader = make_message(to=["lee@acme.test"])
    other_kind = make_message(kind="recap")

    assert first["Message-ID"] == retried["Message-ID"]
    assert first["Message-ID"].endswith("@cadence>")
    assert len({first["Message-ID"], other_reader["Message-ID"], other_kind["Message-ID"]}) == 3


def test_a_line_break_in_the_subject_cannot_add_a_header() -> None:
    message = make_message(subject="Recap\r\nBcc: everyone@acme.test\nX-Evil: 1")

    raw = message.as_bytes()
    parsed = BytesParser(policy=default).parsebytes(raw)
    assert parsed["Subject"] == "Recap Bcc: everyone@acme.test X-Evil: 1"
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None


@pytest.mark.parametrize(
    "changes",
    [
        {"to": ["maya@acme.test\r\nBcc: everyone@acme.test"]},
        {"cc": ["vp@acme.test\nX-Evil: 1"]},
        {"sender": "cadence <cadence@acme.test>\r\nBcc: x@acme.test"},
        {"occurrence": OCCURRENCE + "\r\nBcc: x@acme.test"},
        {"to": ["maya@acme.test, lee@acme.test"]},
        {"to": ["not an address"]},
        {"to": []},
        {"kind": "newsletter"},
        {"now": datetime(2026, 9, 1, 9, 0)},
    ],
    ids=["to-crlf", "cc-lf", "from-crlf", "occurrence-crlf", "two-in-one", "junk", "nobody",
         "unknown-kind", "naive-date"],
)  # fmt: skip
def test_bad_fields_are_refused_before_anything_is_sent(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_message(**changes)


# --- Maildir ------------------------------------------------------------------------------------


def test_maildir_writes_the_standard_layout_privately(tmp_path: Path) -> None:
    box = tmp_path / "var" / "outbox"
    MaildirMailer(box).send(make_message())

    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((box / sub).stat().st_mode) == 0o700
    assert list((box / "tmp").iterdir()) == []
    [file] = (box / "new").iterdir()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert file.name.startswith(f"{int(NOW.timestamp())}.") and file.name.endswith(".cadence")
    [message] = mailbox.Maildir(box, create=False)
    assert message["X-Cadence-Kind"] == "preread"


def test_maildir_keeps_one_file_when_a_send_is_retried(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    mailer = MaildirMailer(box)
    mailer.send(make_message())
    mailer.send(make_message())
    # A retry after a crash is built again, later, and handed to a new mailer.
    MaildirMailer(box).send(make_message(now=NOW + timedelta(minutes=5)))

    assert len(list((box / "new").iterdir())) == 1


def test_maildir_counts_a_message_a_client_moved_to_cur_as_sent(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    mailer = MaildirMailer(box)
    mailer.send(make_message())
    [file] = (box / "new").iterdir()
    os.rename(file, box / "cur" / f"{file.name}:2,S")

    mailer.send(make_message())

    assert list((box / "new").iterdir()) == []
    assert [p.name for p in (box / "cur").iterdir()] == [f"{file.name}:2,S"]


def test_maildir_that_cannot_be_written_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the outbox should be")

    with pytest.raises(MailUnavailable) as caught:
        MaildirMailer(blocker).send(make_message())

    assert str(blocker) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_maildir_refuses_a_message_it_cannot_recognise_again(tmp_path: Path) -> None:
    message = make_message()
    del message["Message-ID"]

    with pytest.raises(ValueError, match="Message-ID"):
        MaildirMailer(tmp_path / "outbox").send(message)


# --- SMTP ---------------------------------------------------------------------------------------


def test_smtp_starttls_and_login_deliver_without_leaking_the_password(
    tls_smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    mailer = SmtpMailer(
        tls_smtp_server.host, tls_smtp_server.port, security="starttls", username=SMTP_USER,
        password=SMTP_PASSWORD, timeout=5.0, ssl_context=tls_smtp_server.client_context(),
    )  # fmt: skip

    mailer.send(make_message())

    [received] = tls_smtp_server.received
    assert received.message["X-Cadence-Occurrence"] == OCCURRENCE
    out, err = capfd.readouterr()
    assert SMTP_PASSWORD not in caplog.text + out + err + repr(mailer)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_implicit_tls_delivers(implicit_tls_smtp_server: SmtpServer) -> None:
    server = implicit_tls_smtp_server
    mailer = SmtpMailer(
        server.host, server.port, security="tls", username=SMTP_USER, password=SMTP_PASSWORD,
        timeout=5.0, ssl_context=server.client_context(),
    )  # fmt: skip

    mailer.send(make_message())

    assert len(server.received) == 1


def test_smtp_wrong_password_is_unavailable_and_never_quoted(
    tls_smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-Pa55word-also-secret"
    mailer = SmtpMailer(
        tls_smtp_server.host, tls_smtp_server.port, username=SMTP_USER, password=wrong,
        timeout=5.0, ssl_context=tls_smtp_server.client_context(),
    )  # fmt: skip

    with pytest.raises(MailUnavailable) as caught:
        mailer.send(make_message())

    text = "".join(traceback.format_exception(caught.value))
    assert "login" in str(caught.value) and SMTP_USER in str(caught.value)
    assert wrong not in text + caplog.text
    assert tls_smtp_server.received == []


def test_smtp_without_tls_where_the_server_requires_it_is_unavailable(
    tls_smtp_server: SmtpServer,
) -> None:
    mailer = SmtpMailer(tls_smtp_server.host, tls_smtp_server.port, security="none", timeout=5.0)

    with pytest.raises(MailUnavailable, match=f"{tls_smtp_server.port}"):
        mailer.send(make_message())
    assert tls_smtp_server.received == []


def test_smtp_untrusted_certificate_is_unavailable(tls_smtp_server: SmtpServer) -> None:
    # The system trust store does not know the test certificate: verification must fail.
    mailer = SmtpMailer(
        tls_smtp_server.host, tls_smtp_server.port, username=SMTP_USER, password=SMTP_PASSWORD,
        timeout=5.0,
    )  # fmt: skip

    with pytest.raises(MailUnavailable, match="certificate"):
        mailer.send(make_message())
    assert tls_smtp_server.received == []


@pytest.mark.parametrize("refusing_smtp_server", ["RCPT", "DATA"], indirect=True)
def test_smtp_temporary_refusal_is_unavailable(refusing_smtp_server: SmtpServer) -> None:
    server = refusing_smtp_server
    mailer = SmtpMailer(server.host, server.port, security="none", timeout=5.0)

    with pytest.raises(MailUnavailable, match="451"):
        mailer.send(make_message())
    assert server.received == []

    assert isinstance(server.handler, Refusing)
    server.handler.refuse = False
    mailer.send(make_message())
    assert len(server.received) == 1


def test_smtp_permanent_refusal_of_every_recipient_is_rejected(
    rejecting_smtp_server: SmtpServer,
) -> None:
    server = rejecting_smtp_server
    mailer = SmtpMailer(server.host, server.port, security="none", timeout=5.0)

    with pytest.raises(MailRejected, match="550") as caught:
        mailer.send(make_message())

    assert "maya@acme.test" in str(caught.value)
    assert server.received == []


def test_smtp_refusal_of_some_recipients_still_delivers_to_the_others(
    capfd: pytest.CaptureFixture[str],
) -> None:
    handler = Refusing("550 5.1.1 No such user here", addresses={"vp@acme.test"})
    with serve_smtp(handler) as server:
        mailer = SmtpMailer(server.host, server.port, security="none", timeout=5.0)
        mailer.send(make_message())

    [received] = server.received
    assert received.rcpt_tos == ("maya@acme.test",)
    assert "vp@acme.test" in "".join(capfd.readouterr())


def test_smtp_dropped_connection_is_unavailable_and_the_mailer_recovers(
    dropping_smtp_server: SmtpServer,
) -> None:
    server = dropping_smtp_server
    mailer = SmtpMailer(server.host, server.port, security="none", timeout=5.0)

    with pytest.raises(MailUnavailable, match=f"127.0.0.1:{server.port}"):
        mailer.send(make_message())
    assert server.received == []

    server.handler.drop = False  # type: ignore[attr-defined]
    mailer.send(make_message())
    assert len(server.received) == 1


def test_smtp_server_down_is_unavailable_then_the_same_mailer_sends_when_it_is_back() -> None:
    port = free_port()
    mailer = SmtpMailer("127.0.0.1", port, security="none", timeout=5.0)

    with pytest.raises(MailUnavailable) as caught:
        mailer.send(make_message())
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "\n" not in str(caught.value)

    with serve_smtp(port=port) as server:
        mailer.send(make_message())
    assert [r.message["X-Cadence-Kind"] for r in server.received] == ["preread"]


def test_smtp_bcc_goes_in_the_envelope_not_the_headers(smtp_server: SmtpServer) -> None:
    message = make_message(cc=[])
    message["Bcc"] = "audit@acme.test"
    SmtpMailer(smtp_server.host, smtp_server.port, security="none", timeout=5.0).send(message)

    [received] = smtp_server.received
    assert set(received.rcpt_tos) == {"maya@acme.test", "audit@acme.test"}
    assert received.message["Bcc"] is None
    assert b"audit@acme.test" not in received.raw


# --- Graph ------------------------------------------------------------------------------------


@pytest.fixture
def graph_mailer(graph: FakeGraph) -> GraphMailer:
    graph.add_mailbox("cadence@acme.test")
    return GraphMailer(graph_client(graph))


def test_graph_a_throttled_send_is_retried_after_retry_after(
    graph: FakeGraph, graph_mailer: GraphMailer
) -> None:
    graph.throttle("sendMail", retry_after=2)
    graph_mailer.send(make_message())
    assert len(graph.sent) == 1


def test_graph_504_may_have_sent_and_is_not_resent_by_the_mailer(
    graph: FakeGraph, graph_mailer: GraphMailer
) -> None:
    graph.fail_next_send(504)
    with pytest.raises(MailUnavailable, match="may have been sent"):
        graph_mailer.send(make_message())
    assert len(graph.sent) == 1  # Exchange took it; the mailer did not try again


def test_graph_permanent_refusal_is_rejected(graph: FakeGraph, graph_mailer: GraphMailer) -> None:
    graph.fail_next_send(400)
    with pytest.raises(MailRejected, match="ErrorInvalidRecipients"):
        graph_mailer.send(make_message())
    assert graph.sent == []


def test_graph_without_mail_send_is_unavailable_and_says_what_to_grant(
    graph: FakeGraph, graph_mailer: GraphMailer
) -> None:
    graph.mailboxes["cadence@acme.test"].mail_send = False
    with pytest.raises(MailUnavailable, match="Mail.Send"):
        graph_mailer.send(make_message())


def test_graph_diagnose_checks_mail_send_and_the_sender_without_sending(
    graph: FakeGraph,
) -> None:
    graph.add_mailbox("cadence@acme.test")
    graph.roles = ["Calendars.ReadWrite"]
    rows = GraphMailer(graph_client(graph), "cadence <cadence@acme.test>").diagnose()
    assert [(r.check, r.subject, r.ok) for r in rows] == [
        ("permissions", "Mail.Send", False),
        ("sender mailbox", "cadence@acme.test", True),
    ]
    assert graph.sent == []


# --- Gmail ----------------------------------------------------------------------------------------


def test_gmail_sends_as_the_from_mailbox_with_only_the_send_scope(
    google_server: FakeGoogle,
) -> None:
    transport = gmail_transport(google_server)
    transport.mailer.send(make_message())
    assert google_server.sent[-1][0] == "cadence@acme.test"
    google_server.delegated.discard("https://www.googleapis.com/auth/calendar.events")
    try:  # the mailer never asks for calendar scopes
        transport.mailer.send(make_message(to=["lee@acme.test"]))
    finally:
        google_server.delegated.add("https://www.googleapis.com/auth/calendar.events")
    assert len(transport.delivered()) == 2


def test_gmail_permanent_refusal_is_rejected(google_server: FakeGoogle) -> None:
    transport = gmail_transport(google_server)
    google_server.rejected_recipients.add("gone@acme.test")
    with pytest.raises(MailRejected, match="for good"):
        transport.mailer.send(make_message(to=["gone@acme.test"], cc=[]))
    assert transport.delivered() == []


def test_gmail_rate_limits_are_retried_then_unavailable(google_server: FakeGoogle) -> None:
    waits: list[float] = []
    google_server.add_user("cadence@acme.test")
    mailer = GmailMailer(
        google_server.key_info(), "cadence@acme.test", root=google_server.url, sleep=waits.append
    )
    google_server.fail(Fault(429, "rateLimitExceeded", retry_after=3, path="/messages/send"))
    mailer.send(make_message())
    assert waits == [3]
    google_server.fail(Fault(503, "backendError", times=5, path="/messages/send"))
    with pytest.raises(MailUnavailable):
        mailer.send(make_message())


def test_gmail_without_delegation_is_unavailable_and_says_what_to_grant(
    google_server: FakeGoogle,
) -> None:
    google_server.add_user("noreply@acme.test")
    google_server.no_delegation.add("noreply@acme.test")
    mailer = GmailMailer(google_server.key_info(), "noreply@acme.test", root=google_server.url)
    with pytest.raises(MailUnavailable, match="gmail.send"):
        mailer.send(make_message())
