"""The ledger on real SQLite files: private, versioned, exactly-once, shared across processes."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import CadenceError
from daemon.store import (
    FILENAME,
    MIGRATIONS,
    CancellationRecord,
    EmailRecord,
    Ledger,
    MetricsRead,
    PrepToken,
    RescheduleRecord,
    SeriesRecord,
)

REPO = Path(__file__).resolve().parents[2]
DENVER = ZoneInfo("America/Denver")
KOLKATA = ZoneInfo("Asia/Kolkata")
MAYA = "maya@acme.test"
OMAR = "omar@acme.test"
LEE = "lee@acme.test"
SAM = "sam@acme.test"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def series(
    uid: str = "s-lee-1", rep: str = LEE, manager: str = MAYA, **changes: object
) -> SeriesRecord:
    fields: dict[str, object] = {
        "uid": uid,
        "rep": rep,
        "manager": manager,
        "stage": "new_ae",
        "rrule": "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO",
        "timezone": "America/Denver",
        "start": "2026-11-23T10:00:00-07:00",
        "until": None,
        "fingerprint": "fp-1",
        "state": "active",
        "updated_at": "2026-11-22T16:00:00Z",
    }
    fields.update(changes)
    return SeriesRecord(**fields)  # type: ignore[arg-type]


def cancellation(
    uid: str = "s-lee-1", original_start: str = "2026-11-30T17:00:00Z", **changes: object
) -> CancellationRecord:
    fields: dict[str, object] = {
        "uid": uid,
        "original_start": original_start,
        "rep": LEE,
        "manager": MAYA,
        "reason": "declined by Lee Park",
        "week_of_quarter": 9,
        "week11": False,
        "detected_at": "2026-11-29T08:00:00Z",
    }
    fields.update(changes)
    return CancellationRecord(**fields)  # type: ignore[arg-type]


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def ledger(state: Path) -> Iterator[Ledger]:
    opened = Ledger.open(state)
    yield opened
    opened.close()


def v1_file(state: Path) -> Path:
    """A ledger as the first release left it, written without the Ledger class."""
    state.mkdir()
    path = state / FILENAME
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("s-lee-1", LEE, MAYA, "new_ae", "FREQ=WEEKLY;BYDAY=MO", "America/Denver",
         "2026-11-23T10:00:00-07:00", None, "fp-1", "active", "2026-11-22T16:00:00Z"),
    )  # fmt: skip
    conn.execute("INSERT INTO sync_tokens VALUES (?, ?)", (MAYA, "token-41"))
    conn.execute("INSERT INTO observed VALUES (?, ?, ?)", (MAYA, "s-lee-1", '{"uid": "s-lee-1"}'))
    conn.commit()
    conn.close()
    return path


# --- files on disk ------------------------------------------------------------------------------


def test_a_new_ledger_is_readable_by_its_owner_only_even_under_a_lax_umask(state: Path) -> None:
    with umask(0o000):
        led = Ledger.open(state)
        try:
            led.set_flag("valve", "open")
            path = state / FILENAME
            assert mode(state) == 0o700
            assert mode(path) == 0o600
            companions = [Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal")]
            present = [p for p in companions if p.exists()]
            assert present, "WAL mode leaves -wal/-shm next to an open ledger"
            for companion in present:
                assert mode(companion) == 0o600, companion.name
        finally:
            led.close()


def test_an_existing_state_dir_is_left_as_the_operator_set_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o750)
    Ledger.open(state).close()
    assert mode(state) == 0o750
    assert mode(state / FILENAME) == 0o600


def test_a_ledger_file_others_can_read_is_tightened_on_open(state: Path) -> None:
    v1_file(state)
    path = state / FILENAME
    path.chmod(0o644)
    Ledger.open(state).close()
    assert mode(path) == 0o600


def test_a_wal_file_others_can_read_is_tightened_on_open(state: Path) -> None:
    first = Ledger.open(state)
    try:
        first.set_flag("a", "1")
        wal = state / f"{FILENAME}-wal"
        wal.chmod(0o644)
        second = Ledger.open(state)
        second.close()
        assert mode(wal) == 0o600
    finally:
        first.close()


def test_a_state_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("oops")
    with pytest.raises(CadenceError) as err:
        Ledger.open(state)
    assert FILENAME in str(err.value) and "\n" not in str(err.value)


# --- schema versions ----------------------------------------------------------------------------


def test_a_fresh_ledger_is_at_the_latest_schema(ledger: Ledger) -> None:
    assert ledger.schema_version == len(MIGRATIONS) >= 2


def test_migrating_a_first_release_ledger_keeps_its_rows_and_adds_the_new_tables(
    state: Path,
) -> None:
    v1_file(state)
    led = Ledger.open(state)
    try:
        assert led.schema_version == len(MIGRATIONS)
        kept = led.get_series("s-lee-1")
        assert kept is not None and kept.rep == LEE and kept.start == "2026-11-23T10:00:00-07:00"
        assert led.get_token(MAYA) == "token-41"
        assert led.observed(MAYA) == {"s-lee-1": '{"uid": "s-lee-1"}'}
        # The v2 tables work on the migrated file.
        led.record_email("occ", "preread", LEE, "<m@x>", datetime(2026, 11, 23, tzinfo=DENVER))
        assert led.email_sent("occ", "preread")
    finally:
        led.close()


def test_a_migration_that_fails_leaves_the_file_at_its_old_version(state: Path) -> None:
    path = v1_file(state)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE flags (key TEXT)")  # v2 will try to create it too
    conn.commit()
    conn.close()
    with pytest.raises(CadenceError) as err:
        Ledger.open(state)
    message = str(err.value)
    assert "schema version 2" in message and str(path) in message and "\n" not in message
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "emails" not in tables  # created earlier in the same script, rolled back
        assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 1
    finally:
        conn.close()


def test_a_ledger_from_a_newer_cadence_is_refused_and_left_untouched(state: Path) -> None:
    state.mkdir()
    path = state / FILENAME
    newer = len(MIGRATIONS) + 1
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(CadenceError) as err:
        Ledger.open(state)
    assert str(err.value) == (
        f"ledger {path} has schema version {newer}, "
        f"this cadence knows up to {len(MIGRATIONS)}: upgrade cadence"
    )
    assert path.read_bytes() == before


def test_garbage_bytes_are_a_clear_error_and_the_file_is_not_overwritten(state: Path) -> None:
    state.mkdir()
    path = state / FILENAME
    garbage = b"this is not a ledger\x00\xff" * 500
    path.write_bytes(garbage)
    with pytest.raises(CadenceError) as err:
        Ledger.open(state)
    message = str(err.value)
    assert str(path) in message and "not a readable SQLite database" in message
    assert "\n" not in message
    assert path.read_bytes() == garbage


def test_a_damaged_page_inside_a_real_ledger_is_caught_on_open(state: Path) -> None:
    led = Ledger.open(state)
    with led.transaction():
        for i in range(300):
            led.upsert_series(series(uid=f"s-{i}", rep=f"rep{i}@acme.test"))
    led.close()
    path = state / FILENAME
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096 : 4 * 4096] = b"\xa5" * (2 * 4096)
    path.write_bytes(bytes(data))
    with pytest.raises(CadenceError) as err:
        Ledger.open(state)
    message = str(err.value)
    assert str(path) in message and "not a readable SQLite database" in message
    assert "Page" in message and "\n" not in message
    assert path.read_bytes() == bytes(data)


# --- round trips --------------------------------------------------------------------------------


def test_series_round_trip_update_and_lookups(ledger: Ledger) -> None:
    lee = series()
    lee_later = series(uid="s-lee-2", stage="ramped_ae", start="2027-02-01T10:00:00-07:00")
    sam = series(uid="s-sam-1", rep=SAM, manager=OMAR, timezone="Asia/Kolkata")
    for rec in (lee_later, sam, lee):
        ledger.upsert_series(rec)
    assert ledger.get_series("s-lee-1") == lee
    assert ledger.get_series("nope") is None
    assert ledger.series_for_rep(LEE) == [lee, lee_later]
    assert ledger.all_series() == [lee, lee_later, sam]
    assert ledger.all_series(manager=OMAR) == [sam]

    ended = series(state="ended", until="2027-01-31", fingerprint="fp-2",
                   updated_at="2027-01-20T09:00:00Z")  # fmt: skip
    ledger.upsert_series(ended)
    assert ledger.get_series("s-lee-1") == ended
    assert len(ledger.all_series()) == 3


def test_sync_tokens_are_per_manager_and_can_be_forgotten(ledger: Ledger) -> None:
    assert ledger.get_token(MAYA) is None
    ledger.set_token(MAYA, "t1")
    ledger.set_token(OMAR, "o1")
    ledger.set_token(MAYA, "t2")
    assert (ledger.get_token(MAYA), ledger.get_token(OMAR)) == ("t2", "o1")
    ledger.set_token(MAYA, None)
    assert ledger.get_token(MAYA) is None and ledger.get_token(OMAR) == "o1"


def test_observed_cache_put_replace_delete_clear(ledger: Ledger) -> None:
    ledger.put_observed(MAYA, "a", '{"v": 1}')
    ledger.put_observed(MAYA, "b", '{"v": 2}')
    ledger.put_observed(OMAR, "a", '{"v": 9}')
    ledger.put_observed(MAYA, "a", '{"v": 3}')
    assert ledger.observed(MAYA) == {"a": '{"v": 3}', "b": '{"v": 2}'}
    ledger.delete_observed(MAYA, "b")
    ledger.delete_observed(MAYA, "never-there")
    assert ledger.observed(MAYA) == {"a": '{"v": 3}'}
    ledger.clear_observed(MAYA)
    assert ledger.observed(MAYA) == {}
    assert ledger.observed(OMAR) == {"a": '{"v": 9}'}


def test_an_email_is_recorded_once_in_utc_and_the_first_record_wins(ledger: Ledger) -> None:
    occ = "s-lee-1 2026-11-30T17:00:00Z"
    assert not ledger.email_sent(occ, "preread")
    sent = datetime(2026, 11, 29, 21, 30, 15, tzinfo=KOLKATA)
    ledger.record_email(occ, "preread", "lee@acme.test, maya@acme.test", "<1@cadence>", sent)
    ledger.record_email(occ, "preread", "someone@else", "<2@cadence>", sent + timedelta(hours=1))
    assert ledger.email_sent(occ, "preread")
    assert not ledger.email_sent(occ, "recap")
    assert ledger.emails() == [
        EmailRecord(occ, "preread", "lee@acme.test, maya@acme.test", "<1@cadence>",
                    "2026-11-29T16:00:15Z")
    ]  # fmt: skip


def test_a_naive_datetime_is_refused_rather_than_guessed(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="naive"):
        ledger.record_email("o", "recap", "x", "<m>", datetime(2026, 11, 29, 9, 0))
    assert ledger.emails() == []


def test_cancellations_are_recorded_once_and_filtered(ledger: Ledger) -> None:
    first = cancellation()
    week11 = cancellation(original_start="2026-12-07T17:00:00Z", week_of_quarter=11, week11=True)
    sams = cancellation(uid="s-sam-1", rep=SAM, manager=OMAR, reason="cancelled")
    assert ledger.record_cancellation(first) is True
    assert ledger.record_cancellation(cancellation(reason="moved out of its week")) is False
    assert ledger.record_cancellation(week11) is True
    assert ledger.record_cancellation(sams) is True
    assert ledger.cancellations() == [first, sams, week11]
    assert ledger.cancellations(manager=MAYA) == [first, week11]
    assert ledger.cancellations(rep=SAM) == [sams]
    assert ledger.cancellations(manager=MAYA, rep=SAM) == []
    assert ledger.cancellations()[2].week11 is True
    since = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # the week-11 one starts exactly then
    assert ledger.cancellations(since=since) == [week11]
    assert ledger.cancellations(manager=OMAR, since=since) == []


def test_emails_can_be_read_from_an_instant_on(ledger: Ledger) -> None:
    monday = datetime(2026, 11, 30, 9, 0, tzinfo=DENVER)
    for days in (0, 10, 40):
        ledger.record_email(f"s {days}", "recap", "x", f"<{days}>", monday + timedelta(days=days))
    recent = ledger.emails(since=monday + timedelta(days=10))
    assert [e.message_id for e in recent] == ["<10>", "<40>"]
    assert len(ledger.emails()) == 3


def test_last_commitment_is_the_latest_before_the_meeting_across_the_reps_series(
    ledger: Ledger,
) -> None:
    ledger.upsert_series(series(uid="lee-new"))
    ledger.upsert_series(series(uid="lee-ramped", stage="ramped_ae"))
    ledger.upsert_series(series(uid="sam-1", rep=SAM))
    read = datetime(2026, 12, 1, 9, 0, tzinfo=DENVER)
    ledger.put_commitment("lee-new", "2026-11-23T17:00:00Z", "book 5 demos", read)
    ledger.put_commitment("lee-ramped", "2026-11-30T17:00:00Z", "close Initech", read)
    ledger.put_commitment("sam-1", "2026-12-01T17:00:00Z", "sam's thing", read)
    assert ledger.last_commitment(LEE, "2026-12-07T17:00:00Z") == "close Initech"
    assert ledger.last_commitment(LEE, "2026-11-30T17:00:00Z") == "book 5 demos"
    assert ledger.last_commitment(LEE, "2026-11-23T17:00:00Z") is None
    assert ledger.last_commitment("nobody@acme.test", "2030-01-01T00:00:00Z") is None
    # Read again after the rep edited the agenda: the newer text replaces the old.
    ledger.put_commitment("lee-ramped", "2026-11-30T17:00:00Z", "close Initech + Hooli", read)
    assert ledger.last_commitment(LEE, "2026-12-07T17:00:00Z") == "close Initech + Hooli"
    assert ledger.commitments() == [
        (LEE, "2026-11-23T17:00:00Z", "book 5 demos"),
        (LEE, "2026-11-30T17:00:00Z", "close Initech + Hooli"),
        (SAM, "2026-12-01T17:00:00Z", "sam's thing"),
    ]


def test_flags_set_replace_clear(ledger: Ledger) -> None:
    assert ledger.get_flag("safety_valve") is None
    ledger.set_flag("safety_valve", "tripped")
    ledger.set_flag("safety_valve", "tripped twice")
    assert ledger.get_flag("safety_valve") == "tripped twice"
    ledger.set_flag("safety_valve", None)
    assert ledger.get_flag("safety_valve") is None


# --- transactions -------------------------------------------------------------------------------


def test_an_exception_inside_a_transaction_leaves_nothing_behind(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.upsert_series(series())
        ledger.set_token(MAYA, "t")
        ledger.record_email("o", "recap", "x", "<m>", datetime(2026, 1, 1, tzinfo=UTC))
        raise RuntimeError("provider fell over")
    assert ledger.all_series() == []
    assert ledger.get_token(MAYA) is None
    assert ledger.emails() == []
    # The connection is usable afterwards.
    with ledger.transaction():
        ledger.set_flag("k", "v")
    assert ledger.get_flag("k") == "v"


def test_nested_transactions_commit_together(ledger: Ledger) -> None:
    with ledger.transaction():
        ledger.set_flag("outer", "1")
        with ledger.transaction():
            ledger.set_flag("inner", "1")
            with ledger.transaction():
                ledger.set_flag("innermost", "1")
    assert [ledger.get_flag(k) for k in ("outer", "inner", "innermost")] == ["1", "1", "1"]


def test_a_failed_nested_block_is_undone_alone_when_its_error_is_handled(ledger: Ledger) -> None:
    with ledger.transaction():
        ledger.set_flag("outer", "1")
        try:
            with ledger.transaction():
                ledger.set_flag("inner", "1")
                raise KeyError("handled")
        except KeyError:
            pass
    assert ledger.get_flag("outer") == "1"
    assert ledger.get_flag("inner") is None


def test_a_nested_failure_that_escapes_rolls_back_everything(ledger: Ledger) -> None:
    with pytest.raises(KeyError), ledger.transaction():
        ledger.set_flag("outer", "1")
        with ledger.transaction():
            ledger.set_flag("inner", "1")
            raise KeyError("not handled")
    assert ledger.get_flag("outer") is None and ledger.get_flag("inner") is None


def test_sqlite_errors_become_cadence_errors_naming_the_file(ledger: Ledger) -> None:
    ledger.close()
    with pytest.raises(CadenceError) as err:
        ledger.get_flag("x")
    assert str(ledger.path) in str(err.value) and "\n" not in str(err.value)


# --- durability and other processes -------------------------------------------------------------


def test_everything_survives_close_and_reopen(state: Path) -> None:
    led = Ledger.open(state)
    led.upsert_series(series())
    led.set_token(MAYA, "tok")
    led.put_observed(MAYA, "s-lee-1", "{}")
    led.record_email("o", "recap", "x", "<m>", datetime(2026, 1, 1, tzinfo=UTC))
    led.record_cancellation(cancellation())
    led.put_commitment(
        "s-lee-1", "2026-11-23T17:00:00Z", "call back", datetime(2026, 1, 1, tzinfo=UTC)
    )
    led.set_flag("k", "v")
    led.close()
    again = Ledger.open(state)
    try:
        assert again.get_series("s-lee-1") == series()
        assert again.get_token(MAYA) == "tok"
        assert again.observed(MAYA) == {"s-lee-1": "{}"}
        assert again.email_sent("o", "recap")
        assert again.record_cancellation(cancellation()) is False
        assert again.last_commitment(LEE, "2026-12-01T00:00:00Z") == "call back"
        assert again.get_flag("k") == "v"
    finally:
        again.close()


def run_python(code: str, state: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_another_process_sees_committed_data_while_this_one_holds_the_ledger_open(
    state: Path,
) -> None:
    led = Ledger.open(state)
    try:
        with led.transaction():
            led.set_flag("from_parent", "hello")
            led.upsert_series(series())
        out = run_python(
            "import sys\n"
            "from pathlib import Path\n"
            "from daemon.store import Ledger\n"
            "led = Ledger.open(Path(sys.argv[1]))\n"
            "print(led.get_flag('from_parent'), led.get_series('s-lee-1').rep)\n"
            "with led.transaction():\n"
            "    led.set_flag('from_child', 'hi back')\n"
            "led.close()\n",
            state,
        )
        assert out == f"hello {LEE}"
        assert led.get_flag("from_child") == "hi back"
    finally:
        led.close()


def test_migrating_a_v2_ledger_keeps_its_cancellations_and_adds_the_rate_tables(
    state: Path,
) -> None:
    """A ledger written by the release before the rates: its history is what the rates read."""
    state.mkdir()
    conn = sqlite3.connect(state / FILENAME)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO cancellations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("s-lee-1", "2026-11-23T17:00:00Z", LEE, MAYA, "removed from the series", 11, 1,
         "2026-11-22T16:00:00Z"),
    )  # fmt: skip
    conn.commit()
    conn.close()
    led = Ledger.open(state)
    try:
        assert led.schema_version == len(MIGRATIONS) >= 3
        (kept,) = led.cancellations()
        assert kept.week11 and kept.rep == LEE
        assert led.reschedules() == [] and led.rate_alerts() == {}
        moved = RescheduleRecord(
            uid="s-lee-1", original_start="2026-11-30T17:00:00Z", rep=LEE, manager=MAYA,
            start="2026-12-02T17:00:00Z", detected_at="2026-11-28T16:00:00Z",
        )  # fmt: skip
        with led.transaction():
            assert led.record_reschedule(moved)
            assert not led.record_reschedule(replace(moved, start="2026-12-03T17:00:00Z"))
            led.set_rate_alert(f"manager:{MAYA}", "warning", 1, datetime(2026, 11, 28, tzinfo=UTC))
            led.set_rate_alert(f"manager:{MAYA}", "red_flag", 2, datetime(2026, 11, 29, tzinfo=UTC))
        assert led.reschedules() == [moved]
        assert led.reschedules(since=datetime(2026, 12, 1, tzinfo=UTC)) == []
        assert led.rate_alerts() == {f"manager:{MAYA}": ("red_flag", 2, "2026-11-29T00:00:00Z")}
    finally:
        led.close()
    reopened = Ledger.open(state)  # and all of it survives a restart
    try:
        assert reopened.rate_alerts() == {
            f"manager:{MAYA}": ("red_flag", 2, "2026-11-29T00:00:00Z")
        }
        assert len(reopened.reschedules()) == 1
    finally:
        reopened.close()


def test_migrating_a_ledger_from_before_the_form_keeps_its_history_and_adds_its_tables(
    state: Path,
) -> None:
    """A ledger from the release before the pre-read form: its emails still count as sent (no
    pre-read goes twice), and links and filed lines are kept from then on, across restarts."""
    before = next(i for i, script in enumerate(MIGRATIONS) if "prep_tokens" in script)
    state.mkdir()
    conn = sqlite3.connect(state / FILENAME)
    conn.executescript("".join(MIGRATIONS[:before]))
    conn.execute(f"PRAGMA user_version = {before}")
    conn.execute(
        "INSERT INTO emails VALUES (?, ?, ?, ?, ?)",
        ("s-sam-1 2026-11-24T17:00:00Z", "preread:rep", SAM, "<m1@cadence>",
         "2026-11-23T17:00:00Z"),
    )  # fmt: skip
    conn.commit()
    conn.close()
    token = PrepToken(
        hash="ab" * 32, occurrence="s-sam-1 2026-11-24T17:00:00Z", role="rep", person=SAM,
        rep=SAM, manager=MAYA, timezone="America/Denver", start="2026-11-24T17:00:00Z",
        expires_at="2026-11-24T17:25:00Z", created_at="2026-11-23T17:00:00Z",
    )  # fmt: skip
    led = Ledger.open(state)
    try:
        assert led.schema_version == len(MIGRATIONS) > before
        assert led.email_sent("s-sam-1 2026-11-24T17:00:00Z", "preread:rep")
        assert led.prep_token(token.hash) is None and led.prereads() == []
        with led.transaction():
            led.add_prep_token(token)
            for lines in ('["Initech", "", ""]', '["Globex", "openers", "?"]'):
                led.put_preread(token.occurrence, token.start, "rep", lines,
                                datetime(2026, 11, 23, 18, tzinfo=UTC))  # fmt: skip
    finally:
        led.close()
    reopened = Ledger.open(state)
    try:
        assert reopened.prep_token(token.hash) == token
        assert reopened.prereads() == [(token.occurrence, "rep", '["Globex", "openers", "?"]')]
        assert reopened.prereads(since=datetime(2026, 11, 25, tzinfo=UTC)) == []
        with pytest.raises(CadenceError, match="saving a pre-read link"), reopened.transaction():
            reopened.add_prep_token(token)  # a hash is one link, never two
    finally:
        reopened.close()


def _old_ledger(state: Path, version: int, *rows: tuple[str, tuple[object, ...]]) -> None:
    """A ledger as release ``version`` left it, with a rate alert and ``rows`` (table, values)."""
    state.mkdir()
    conn = sqlite3.connect(state / FILENAME)
    conn.executescript("".join(MIGRATIONS[:version]))
    conn.execute(f"PRAGMA user_version = {version}")
    rows += (("rate_alerts", (f"manager:{MAYA}", "warning", 1, "2026-11-22T16:00:00Z")),)
    for table, values in rows:  # the test's own table names: no outside text reaches the SQL
        marks = ", ".join("?" * len(values))
        conn.execute(f"INSERT INTO {table} VALUES ({marks})", values)  # noqa: S608
    conn.commit()
    conn.close()


def test_migrating_a_v3_ledger_keeps_its_history_and_adds_the_metrics_cache(state: Path) -> None:
    """A ledger written by the release before the number: everything stays, the cache is empty."""
    _old_ledger(state, 3)
    led = Ledger.open(state)
    try:
        assert led.schema_version == len(MIGRATIONS) >= 4
        assert led.rate_alerts() == {f"manager:{MAYA}": ("warning", 1, "2026-11-22T16:00:00Z")}
        assert led.metrics_read() is None and led.metrics_table() is None
        read = MetricsRead("metrics.csv", "abc", "2026-11-16", "2026-11-23T14:00:00Z")
        led.replace_metrics(read, b"first")
        assert led.metrics_table() == b"first"
        # A second read replaces the first whole, and a failing one leaves it.
        led.replace_metrics(replace(read, version="def"), b"second")
        with pytest.raises(CadenceError):
            led.replace_metrics(replace(read, version="ghi"), None)  # type: ignore[arg-type]
    finally:
        led.close()
    reopened = Ledger.open(state)
    try:
        assert reopened.metrics_read() == replace(read, version="def")
        assert reopened.metrics_table() == b"second"
    finally:
        reopened.close()


def test_migrating_a_v6_ledger_drops_the_metric_rows_so_the_next_pass_reads_the_source(
    state: Path,
) -> None:
    """The cache moved from a row per value to one blob: the old rows are not converted, the
    source is read again (a CSV at once; a CRM as soon as it answers)."""
    _old_ledger(
        state, 6,
        ("metric_values", (LEE, "win_rate", "2026-11-16", 0.3)),
        ("metric_reads", ("metrics.csv", "abc", "2026-11-16", "2026-11-23T14:00:00Z")),
    )  # fmt: skip
    led = Ledger.open(state)
    try:
        assert led.schema_version == len(MIGRATIONS) >= 7
        assert led.metrics_read() is None and led.metrics_table() is None
        assert led.rate_alerts() == {f"manager:{MAYA}": ("warning", 1, "2026-11-22T16:00:00Z")}
    finally:
        led.close()
