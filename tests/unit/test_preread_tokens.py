"""Form links on a real ledger file: what a token is, what the ledger keeps of it, how long it
works, and the CSRF token that ties a form to its link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon import preread
from daemon.core.prep import Grant, Role
from daemon.store import Ledger

START = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
END = START + timedelta(minutes=25)
OCCURRENCE = "cadence1 2026-11-24T17:00:00Z"


def grant(role: Role = Role.REP, person: str = "sam@acme.test") -> Grant:
    return Grant(role, person, "sam@acme.test", "maya@acme.test", "America/Denver", START, END)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger.open(tmp_path)
    yield led  # type: ignore[misc]
    led.close()


def test_a_token_is_long_random_and_only_its_hash_is_kept(ledger: Ledger, tmp_path: Path) -> None:
    with ledger.transaction():
        tokens = [preread.issue(ledger, grant(), OCCURRENCE, START) for _ in range(50)]
    assert len(set(tokens)) == 50
    assert all(len(t) >= 43 for t in tokens)  # 256 bits in base64url
    record = ledger.prep_token(preread.token_hash(tokens[0]))
    assert record is not None and record.hash != tokens[0]
    assert (record.role, record.person, record.timezone) == ("rep", "sam@acme.test",
                                                             "America/Denver")  # fmt: skip
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cadence.sqlite3*"))
    assert not any(t.encode() in stored for t in tokens)


def test_a_token_works_until_the_occurrence_ends_and_unknown_ones_never(ledger: Ledger) -> None:
    with ledger.transaction():
        token = preread.issue(ledger, grant(), OCCURRENCE, START - timedelta(days=1))
    assert preread.verify(ledger, token, START - timedelta(days=1)).verdict is preread.Verdict.OK
    assert preread.verify(ledger, token, END - timedelta(seconds=1)).verdict is preread.Verdict.OK
    assert preread.verify(ledger, token, END).verdict is preread.Verdict.EXPIRED
    for forged in ("", token[:-1], token + "A", token.upper(), "x" * 43, "\udcff"):
        assert preread.verify(ledger, forged, START).verdict is preread.Verdict.UNKNOWN


def test_a_csrf_token_belongs_to_one_link_and_survives_a_restart(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path)
    with led.transaction():
        rep = preread.issue(led, grant(), OCCURRENCE, START)
        manager = preread.issue(led, grant(Role.MANAGER, "maya@acme.test"), OCCURRENCE, START)
    key = preread.csrf_key(led)
    rep_rec = preread.verify(led, rep, START).record
    manager_rec = preread.verify(led, manager, START).record
    assert rep_rec is not None and manager_rec is not None
    form = preread.csrf_token(key, rep_rec)
    assert preread.csrf_ok(key, rep_rec, form)
    assert not preread.csrf_ok(key, manager_rec, form)
    assert not preread.csrf_ok(key, rep_rec, "") and not preread.csrf_ok(key, rep_rec, form[:-1])
    led.close()
    again = Ledger.open(tmp_path)
    try:
        assert preread.csrf_key(again) == key
    finally:
        again.close()


def test_a_later_save_replaces_the_earlier_one(ledger: Ledger) -> None:
    with ledger.transaction():
        token = preread.issue(ledger, grant(), OCCURRENCE, START)
    record = preread.verify(ledger, token, START).record
    assert record is not None and preread.filed(ledger, record) == ()
    preread.save(ledger, record, ("Initech", "", ""), START)
    preread.save(ledger, record, ("Globex", "openers", ""), START + timedelta(minutes=5))
    assert preread.filed(ledger, record) == ("Globex", "openers", "")
    assert preread.read_filed(ledger, START - timedelta(days=1)) == {
        OCCURRENCE: {"rep": ("Globex", "openers", "")}
    }
