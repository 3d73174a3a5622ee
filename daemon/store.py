"""The ledger: what cadence last applied, kept in one SQLite file.

The calendar says what is there now and the roster what should be; only the ledger remembers
what cadence itself did (series it created, emails it sent, cancellations it counted). Losing it
means duplicate emails and a daemon that cannot tell a person's edit from a roster change, so it
is treated as precious: schema versioned with tested migrations, written in short immediate
transactions, readable by its owner only. Every ``sqlite3`` or file-system error is turned into a
one-line ``CadenceError`` naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.errors import CadenceError

Params = tuple[object, ...] | dict[str, Any]

FILENAME = "cadence.sqlite3"
COMPANIONS = ("-wal", "-shm", "-journal")
BUSY_TIMEOUT_SECONDS = 10.0

# MIGRATIONS[i] upgrades a ledger from schema version i to i + 1, in one transaction.
# Released entries are never edited: a schema change is a new entry at the end.
MIGRATIONS: list[str] = [
    # v1: the series cadence created, and the observed calendars with their sync tokens.
    """
    CREATE TABLE series (
        uid TEXT PRIMARY KEY,
        rep TEXT NOT NULL,
        manager TEXT NOT NULL,
        stage TEXT NOT NULL,
        rrule TEXT NOT NULL,
        timezone TEXT NOT NULL,
        start TEXT NOT NULL,
        until TEXT,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX series_by_rep ON series (rep);
    CREATE INDEX series_by_manager ON series (manager);
    CREATE TABLE sync_tokens (
        manager TEXT PRIMARY KEY,
        token TEXT NOT NULL
    );
    CREATE TABLE observed (
        manager TEXT NOT NULL,
        uid TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (manager, uid)
    );
    """,
    # v2: emails sent (exactly once), cancellations counted, commitments read back, flags.
    """
    CREATE TABLE emails (
        occurrence TEXT NOT NULL,
        kind TEXT NOT NULL,
        recipients TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        PRIMARY KEY (occurrence, kind)
    );
    CREATE TABLE cancellations (
        uid TEXT NOT NULL,
        original_start TEXT NOT NULL,
        rep TEXT NOT NULL,
        manager TEXT NOT NULL,
        reason TEXT NOT NULL,
        week_of_quarter INTEGER NOT NULL,
        week11 INTEGER NOT NULL CHECK (week11 IN (0, 1)),
        detected_at TEXT NOT NULL,
        PRIMARY KEY (uid, original_start)
    );
    CREATE INDEX cancellations_by_manager ON cancellations (manager);
    CREATE INDEX cancellations_by_rep ON cancellations (rep);
    CREATE TABLE commitments (
        uid TEXT NOT NULL,
        original_start TEXT NOT NULL,
        text TEXT NOT NULL,
        read_at TEXT NOT NULL,
        PRIMARY KEY (uid, original_start)
    );
    CREATE TABLE flags (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v3: what the cancellation rates need besides cancellations: occurrences moved inside their
    # week, and the band each manager was last told about (once per crossing, re-armed on a fall).
    """
    CREATE TABLE reschedules (
        uid TEXT NOT NULL,
        original_start TEXT NOT NULL,
        rep TEXT NOT NULL,
        manager TEXT NOT NULL,
        start TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        PRIMARY KEY (uid, original_start)
    );
    CREATE TABLE rate_alerts (
        subject TEXT PRIMARY KEY,
        band TEXT NOT NULL,
        crossings INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # v4: the metrics source's weekly values, cached so a pass never calls a CRM and an outage
    # leaves the last numbers; one row per source with what was last read and when.
    """
    CREATE TABLE metric_values (
        rep TEXT NOT NULL,
        metric TEXT NOT NULL,
        week TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (rep, metric, week)
    );
    CREATE INDEX metric_values_by_week ON metric_values (week);
    CREATE TABLE metric_reads (
        source TEXT PRIMARY KEY,
        version TEXT,
        through TEXT,
        read_at TEXT NOT NULL
    );
    """,
    # v5: the pre-read form. A token is kept only as its SHA-256 (the link in the email is the
    # only copy), with what its page shows and when it stops working; what people filed is
    # kept per occurrence and role, a later save replacing the earlier one.
    """
    CREATE TABLE prep_tokens (
        hash TEXT PRIMARY KEY,
        occurrence TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('rep', 'manager')),
        person TEXT NOT NULL,
        rep TEXT NOT NULL,
        manager TEXT NOT NULL,
        timezone TEXT NOT NULL,
        start TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE prereads (
        occurrence TEXT NOT NULL,
        original_start TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('rep', 'manager')),
        lines TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (occurrence, role)
    );
    CREATE INDEX prereads_by_start ON prereads (original_start);
    """,
    # v6: what happened to pipeline reviews (cancelled, declined, moved). Their own kind, apart
    # from the 1:1 cancellations: no warning is sent about them and the rates never count them.
    """
    CREATE TABLE review_outcomes (
        uid TEXT NOT NULL,
        original_start TEXT NOT NULL,
        manager TEXT NOT NULL,
        subject TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('cancelled', 'moved')),
        reason TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        PRIMARY KEY (uid, original_start)
    );
    CREATE INDEX review_outcomes_by_manager ON review_outcomes (manager);
    """,
    # v7: the metrics cache as one blob (``daemon.metrics.base.WeeklyTable.to_bytes``) instead of
    # a row per value: a big org's read is most of a million values, which took seconds to write
    # and to read back at each pass. The old rows go; the next pass reads the source again.
    """
    DROP TABLE metric_values;
    DELETE FROM metric_reads;
    CREATE TABLE metric_tables (
        source TEXT PRIMARY KEY REFERENCES metric_reads (source),
        data BLOB NOT NULL
    );
    """,
]


@dataclass(frozen=True)
class MetricsRead:
    """What the metrics source last gave: ``version`` tells a changed file from the same one,
    ``through`` is the last week it had, ``read_at`` when (UTC ISO)."""

    source: str
    version: str | None
    through: str | None
    read_at: str


@dataclass(frozen=True)
class SeriesRecord:
    uid: str
    rep: str
    manager: str
    stage: str
    rrule: str
    timezone: str
    start: str  # ISO of the first occurrence, with its offset
    until: str | None  # ISO date
    fingerprint: str
    state: str  # "pending" | "active" | "ended" | "retired"
    updated_at: str


@dataclass(frozen=True)
class EmailRecord:
    occurrence: str
    kind: str
    recipients: str
    message_id: str
    sent_at: str


@dataclass(frozen=True)
class CancellationRecord:
    uid: str
    original_start: str
    rep: str
    manager: str
    reason: str
    week_of_quarter: int
    week11: bool
    detected_at: str


@dataclass(frozen=True)
class RescheduleRecord:
    uid: str
    original_start: str
    rep: str
    manager: str
    start: str
    detected_at: str


@dataclass(frozen=True)
class ReviewOutcomeRecord:
    uid: str
    original_start: str
    manager: str
    subject: str  # the rep, or "team:<manager>"
    status: str  # "cancelled" | "moved"
    reason: str
    detected_at: str


@dataclass(frozen=True)
class PrepToken:
    """One person's form link for one occurrence, without the token itself."""

    hash: str
    occurrence: str
    role: str  # "rep" | "manager"
    person: str
    rep: str
    manager: str
    timezone: str
    start: str  # UTC, as utc_iso writes it
    expires_at: str  # UTC: the occurrence's end
    created_at: str


def utc_iso(when: datetime) -> str:
    """The ledger's time format: UTC to the second, ``Z``-suffixed, so strings sort as times."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()} given to the ledger")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (``executescript`` would commit on its own)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending.strip()
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:60]}")


def _tighten(path: Path) -> None:
    """Make an existing file owner-only if group or others can touch it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & 0o077:
        path.chmod(0o600)


def _create_private(path: Path) -> None:
    """Create an empty 0600 file before SQLite touches it (SQLite would honour the umask)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process won the race; _tighten checks its mode
    os.close(fd)


class Ledger:
    """One open ledger file. Not shared between threads; open one per process."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._depth = 0

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path) -> Ledger:
        state_dir = Path(state_dir)
        path = state_dir / FILENAME
        old_umask = os.umask(0o077)
        try:
            try:
                if not state_dir.exists():
                    state_dir.mkdir(mode=0o700, parents=True)
                    state_dir.chmod(0o700)
                _create_private(path)
                for name in [FILENAME, *(FILENAME + suffix for suffix in COMPANIONS)]:
                    _tighten(state_dir / name)
            except OSError as exc:
                raise CadenceError(f"ledger {path}: {_one_line(exc)}") from exc
            try:
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            except sqlite3.Error as exc:
                raise CadenceError(f"ledger {path} cannot be opened: {_one_line(exc)}") from exc
            conn.row_factory = sqlite3.Row
            ledger = cls(path, conn)
            try:
                ledger._prepare()
            except BaseException:
                conn.close()
                raise
            return ledger
        finally:
            os.umask(old_umask)

    @classmethod
    def open_readonly(cls, state_dir: Path) -> Ledger | None:
        """The ledger for reading only (``plan``, ``report``, the status page), or None when
        there is none yet. Never creates, migrates or writes anything; the daemon may be
        writing meanwhile (WAL lets readers in). It may be at an older schema version (see
        ``require_latest``)."""
        path = Path(state_dir) / FILENAME
        if not path.exists():
            return None
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise CadenceError(f"ledger {path} cannot be opened: {_one_line(exc)}") from exc
        conn.row_factory = sqlite3.Row
        ledger = cls(path, conn)
        try:
            ledger._check_version(ledger._version())
        except BaseException:
            conn.close()
            raise
        return ledger

    def require_latest(self, why: str) -> None:
        version = self._version()
        if version < len(MIGRATIONS):
            raise CadenceError(
                f"ledger {self.path} has schema version {version}; {why} needs "
                f"{len(MIGRATIONS)}: run the daemon once (`cadence once`) to upgrade it"
            )

    def _prepare(self) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        except sqlite3.OperationalError as exc:  # locked, unreadable file: not corruption
            raise self._error("opening", exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        if problems != ["ok"]:
            raise self._unreadable(problems[0] if problems else "quick_check returned nothing")
        self._check_version(self._version())
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise self._error("setting up", exc) from exc
        self._migrate()

    def _unreadable(self, why: object) -> CadenceError:
        if isinstance(why, BaseException):
            detail = _one_line(why)
        else:  # quick_check's report: a "*** in database main ***" header, one line per problem
            lines = [line for line in str(why).splitlines() if not line.startswith("***")]
            detail = lines[0] if lines else str(why).strip()
            if len(lines) > 1:
                detail += f", and {len(lines) - 1} more problems"
        return CadenceError(
            f"ledger {self.path} is not a readable SQLite database ({detail}): "
            "move it aside and restore it from a backup"
        )

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise CadenceError(
                f"ledger {self.path} has schema version {version}, "
                f"this cadence knows up to {len(MIGRATIONS)}: upgrade cadence"
            )

    def _version(self) -> int:
        try:
            row = self._conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            raise self._error("reading the schema version", exc) from exc
        return int(row[0])

    def _migrate(self) -> None:
        for version, script in enumerate(MIGRATIONS):
            if self._version() > version:
                continue
            # Another process may have migrated since we looked: re-read under the write lock.
            with self.transaction(), self._translate(f"migrating to schema version {version + 1}"):
                current = self._version()
                self._check_version(current)
                if current != version:
                    continue
                for statement in _statements(script):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {version + 1}")

    # --- plumbing --------------------------------------------------------------------------------

    def _error(self, doing: str, exc: BaseException) -> CadenceError:
        return CadenceError(f"ledger {self.path}: {doing} failed: {_one_line(exc)}")

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(doing, exc) from exc

    def _rows(self, doing: str, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        with self._translate(doing):
            return list(self._conn.execute(sql, params).fetchall())

    def _write(self, doing: str, sql: str, params: Params = ()) -> int:
        with self._translate(doing):
            return self._conn.execute(sql, params).rowcount

    def close(self) -> None:
        with self._translate("closing"):
            self._conn.close()

    @property
    def schema_version(self) -> int:
        return self._version()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises.

        Nested calls become savepoints: an exception caught inside the outer block undoes only
        the inner block's writes.
        """
        if self._depth:
            name = f"nested_{self._depth}"
            with self._translate("opening a savepoint"):
                self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                with self._translate("rolling back a savepoint"):
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                raise
            else:
                with self._translate("releasing a savepoint"):
                    self._conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        with self._translate("starting a transaction"):
            self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                with self._translate("committing"):
                    self._conn.execute("COMMIT")
            except CadenceError:
                self._rollback()
                raise
        finally:
            self._depth = 0

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with self._translate("rolling back"):
                self._conn.execute("ROLLBACK")

    # --- series registry -------------------------------------------------------------------------

    def upsert_series(self, rec: SeriesRecord) -> None:
        self._write(
            "saving a series",
            "INSERT INTO series (uid, rep, manager, stage, rrule, timezone, start, until,"
            " fingerprint, state, updated_at) VALUES (:uid, :rep, :manager, :stage, :rrule,"
            " :timezone, :start, :until, :fingerprint, :state, :updated_at)"
            " ON CONFLICT (uid) DO UPDATE SET rep = :rep, manager = :manager, stage = :stage,"
            " rrule = :rrule, timezone = :timezone, start = :start, until = :until,"
            " fingerprint = :fingerprint, state = :state, updated_at = :updated_at",
            asdict(rec),
        )

    def _series(self, sql: str, params: tuple[object, ...]) -> list[SeriesRecord]:
        return [SeriesRecord(**dict(row)) for row in self._rows("reading series", sql, params)]

    def get_series(self, uid: str) -> SeriesRecord | None:
        found = self._series("SELECT * FROM series WHERE uid = ?", (uid,))
        return found[0] if found else None

    def series_for_rep(self, rep: str) -> list[SeriesRecord]:
        return self._series("SELECT * FROM series WHERE rep = ? ORDER BY start, uid", (rep,))

    def all_series(self, manager: str | None = None) -> list[SeriesRecord]:
        if manager is None:
            return self._series("SELECT * FROM series ORDER BY rep, start, uid", ())
        return self._series(
            "SELECT * FROM series WHERE manager = ? ORDER BY rep, start, uid", (manager,)
        )

    # --- sync tokens -----------------------------------------------------------------------------

    def get_token(self, manager: str) -> str | None:
        rows = self._rows(
            "reading a sync token", "SELECT token FROM sync_tokens WHERE manager = ?", (manager,)
        )
        return str(rows[0]["token"]) if rows else None

    def set_token(self, manager: str, token: str | None) -> None:
        if token is None:
            self._write(
                "forgetting a sync token", "DELETE FROM sync_tokens WHERE manager = ?", (manager,)
            )
            return
        self._write(
            "saving a sync token",
            "INSERT INTO sync_tokens (manager, token) VALUES (?, ?)"
            " ON CONFLICT (manager) DO UPDATE SET token = excluded.token",
            (manager, token),
        )

    # --- observed cache --------------------------------------------------------------------------

    def put_observed(self, manager: str, uid: str, data: str) -> None:
        self._write(
            "caching an observed series",
            "INSERT INTO observed (manager, uid, data) VALUES (?, ?, ?)"
            " ON CONFLICT (manager, uid) DO UPDATE SET data = excluded.data",
            (manager, uid, data),
        )

    def delete_observed(self, manager: str, uid: str) -> None:
        self._write(
            "dropping an observed series",
            "DELETE FROM observed WHERE manager = ? AND uid = ?",
            (manager, uid),
        )

    def observed(self, manager: str) -> dict[str, str]:
        rows = self._rows(
            "reading observed series",
            "SELECT uid, data FROM observed WHERE manager = ? ORDER BY uid",
            (manager,),
        )
        return {str(row["uid"]): str(row["data"]) for row in rows}

    def clear_observed(self, manager: str) -> None:
        self._write(
            "clearing observed series", "DELETE FROM observed WHERE manager = ?", (manager,)
        )

    # --- emails ----------------------------------------------------------------------------------

    def email_sent(self, occurrence: str, kind: str) -> bool:
        rows = self._rows(
            "checking an email",
            "SELECT 1 FROM emails WHERE occurrence = ? AND kind = ?",
            (occurrence, kind),
        )
        return bool(rows)

    def record_email(
        self, occurrence: str, kind: str, recipients: str, message_id: str, sent_at: datetime
    ) -> None:
        """Idempotent: the first record of (occurrence, kind) wins."""
        self._write(
            "recording an email",
            "INSERT OR IGNORE INTO emails (occurrence, kind, recipients, message_id, sent_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (occurrence, kind, recipients, message_id, utc_iso(sent_at)),
        )

    def emails(self, since: datetime | None = None) -> list[EmailRecord]:
        """Every email recorded, or those sent at or after ``since``."""
        rows = self._rows(
            "reading emails",
            "SELECT occurrence, kind, recipients, message_id, sent_at FROM emails"
            " WHERE sent_at >= ? ORDER BY sent_at, occurrence, kind",
            (utc_iso(since) if since is not None else "",),
        )
        return [EmailRecord(**dict(row)) for row in rows]

    # --- cancellations ---------------------------------------------------------------------------

    def record_cancellation(self, rec: CancellationRecord) -> bool:
        """True when this is news; False if (uid, original_start) was already recorded."""
        added = self._write(
            "recording a cancellation",
            "INSERT OR IGNORE INTO cancellations (uid, original_start, rep, manager, reason,"
            " week_of_quarter, week11, detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.uid, rec.original_start, rec.rep, rec.manager, rec.reason,
                rec.week_of_quarter, int(rec.week11), rec.detected_at,
            ),
        )  # fmt: skip
        return added == 1

    def cancellations(
        self, manager: str | None = None, rep: str | None = None, since: datetime | None = None
    ) -> list[CancellationRecord]:
        """Cancellations, optionally of one manager or rep, of occurrences from ``since`` on."""
        rows = self._rows(
            "reading cancellations",
            "SELECT * FROM cancellations WHERE (:manager IS NULL OR manager = :manager)"
            " AND (:rep IS NULL OR rep = :rep) AND original_start >= :since"
            " ORDER BY original_start, uid",
            {"manager": manager, "rep": rep, "since": utc_iso(since) if since else ""},
        )
        return [
            CancellationRecord(
                uid=row["uid"], original_start=row["original_start"], rep=row["rep"],
                manager=row["manager"], reason=row["reason"],
                week_of_quarter=int(row["week_of_quarter"]), week11=bool(row["week11"]),
                detected_at=row["detected_at"],
            )
            for row in rows
        ]  # fmt: skip

    # --- reschedules and rate alerts ------------------------------------------------------------

    def record_reschedule(self, rec: RescheduleRecord) -> bool:
        """True when this is news; the first record of (uid, original_start) wins."""
        added = self._write(
            "recording a reschedule",
            "INSERT OR IGNORE INTO reschedules (uid, original_start, rep, manager, start,"
            " detected_at) VALUES (:uid, :original_start, :rep, :manager, :start, :detected_at)",
            asdict(rec),
        )
        return added == 1

    def reschedules(self, since: datetime | None = None) -> list[RescheduleRecord]:
        """Reschedules of occurrences from ``since`` on."""
        rows = self._rows(
            "reading reschedules",
            "SELECT * FROM reschedules WHERE original_start >= ? ORDER BY original_start, uid",
            (utc_iso(since) if since else "",),
        )
        return [RescheduleRecord(**dict(row)) for row in rows]

    def record_review_outcome(self, rec: ReviewOutcomeRecord) -> bool:
        """True when this is news; the first record of (uid, original_start) wins."""
        added = self._write(
            "recording a pipeline review's outcome",
            "INSERT OR IGNORE INTO review_outcomes (uid, original_start, manager, subject, status,"
            " reason, detected_at) VALUES (:uid, :original_start, :manager, :subject, :status,"
            " :reason, :detected_at)",
            asdict(rec),
        )
        return added == 1

    def review_outcomes(self, since: datetime | None = None) -> list[ReviewOutcomeRecord]:
        """Pipeline reviews cancelled or moved, of occurrences from ``since`` on."""
        rows = self._rows(
            "reading pipeline review outcomes",
            "SELECT * FROM review_outcomes WHERE original_start >= ? ORDER BY original_start, uid",
            (utc_iso(since) if since else "",),
        )
        return [ReviewOutcomeRecord(**dict(row)) for row in rows]

    def rate_history(
        self, since: datetime, until: datetime, review_stage: str
    ) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        """What the cancellation rates read, as rows and nothing more (``cadence report`` on a big
        org): the series but the pipeline reviews (``review_stage``) that may have met from
        ``since`` on (one whose ``UNTIL`` is two days or more before it cannot: no two zones
        are 26 hours apart), and the
        cancellations (``week11`` 0 or 1) and reschedules (``week11`` null) of occurrences
        from ``since`` to ``until``."""
        series = self._rows(
            "reading series",
            "SELECT uid, rep, manager, stage, fingerprint, start, rrule, until, state, timezone"
            " FROM series WHERE stage != :review AND (until IS NULL OR until >= :first)"
            " ORDER BY rep, start, uid",
            {"review": review_stage, "first": (since - timedelta(days=2)).date().isoformat()},
        )
        outcomes = self._rows(
            "reading cancellations and reschedules",
            "SELECT uid, original_start, rep, manager, week11 FROM cancellations"
            " WHERE original_start BETWEEN :since AND :until"
            " UNION ALL SELECT uid, original_start, rep, manager, NULL FROM reschedules"
            " WHERE original_start BETWEEN :since AND :until",
            {"since": utc_iso(since), "until": utc_iso(until)},
        )
        return series, outcomes

    def rate_alerts(self) -> dict[str, tuple[str, int, str]]:
        """subject -> (band last told or fallen back to, crossings so far, the pass instant of
        that change, UTC ISO)."""
        rows = self._rows("reading rate alerts", "SELECT * FROM rate_alerts ORDER BY subject")
        return {
            str(r["subject"]): (str(r["band"]), int(r["crossings"]), str(r["updated_at"]))
            for r in rows
        }

    def set_rate_alert(self, subject: str, band: str, crossings: int, now: datetime) -> None:
        self._write(
            "saving a rate alert",
            "INSERT INTO rate_alerts (subject, band, crossings, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (subject) DO UPDATE SET band = excluded.band,"
            " crossings = excluded.crossings, updated_at = excluded.updated_at",
            (subject, band, crossings, utc_iso(now)),
        )

    # --- commitments -----------------------------------------------------------------------------

    def put_commitment(self, uid: str, original_start: str, text: str, read_at: datetime) -> None:
        """Remember what was committed in one meeting; a later read of it replaces the text."""
        self._write(
            "saving a commitment",
            "INSERT INTO commitments (uid, original_start, text, read_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (uid, original_start) DO UPDATE SET text = excluded.text,"
            " read_at = excluded.read_at",
            (uid, original_start, text, utc_iso(read_at)),
        )

    def last_commitment(self, rep: str, before: str) -> str | None:
        """The latest commitment of any of the rep's series from a meeting before ``before``."""
        rows = self._rows(
            "reading a commitment",
            "SELECT c.text FROM commitments AS c JOIN series AS s ON s.uid = c.uid"
            " WHERE s.rep = ? AND c.original_start < ?"
            " ORDER BY c.original_start DESC, c.read_at DESC LIMIT 1",
            (rep, before),
        )
        return str(rows[0]["text"]) if rows else None

    def commitments(self) -> list[tuple[str, str, str]]:
        """Every commitment as (rep, original_start, text), through the series it was read from."""
        rows = self._rows(
            "reading commitments",
            "SELECT s.rep, c.original_start, c.text FROM commitments AS c"
            " JOIN series AS s ON s.uid = c.uid ORDER BY s.rep, c.original_start, c.uid",
        )
        return [(str(row["rep"]), str(row["original_start"]), str(row["text"])) for row in rows]

    # --- the pre-read form ---------------------------------------------------------------------

    def add_prep_token(self, rec: PrepToken) -> None:
        self._write(
            "saving a pre-read link",
            "INSERT INTO prep_tokens (hash, occurrence, role, person, rep, manager, timezone,"
            " start, expires_at, created_at) VALUES (:hash, :occurrence, :role, :person, :rep,"
            " :manager, :timezone, :start, :expires_at, :created_at)",
            asdict(rec),
        )

    def prep_token(self, token_hash: str) -> PrepToken | None:
        rows = self._rows(
            "reading a pre-read link", "SELECT * FROM prep_tokens WHERE hash = ?", (token_hash,)
        )
        return PrepToken(**dict(rows[0])) if rows else None

    def put_preread(
        self, occurrence: str, original_start: str, role: str, lines: str, now: datetime
    ) -> None:
        """What one person filed for one occurrence (``lines`` as JSON); replaces the last."""
        self._write(
            "saving a pre-read",
            "INSERT INTO prereads (occurrence, original_start, role, lines, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (occurrence, role) DO UPDATE SET"
            " lines = excluded.lines, updated_at = excluded.updated_at",
            (occurrence, original_start, role, lines, utc_iso(now)),
        )

    def preread(self, occurrence: str, role: str) -> str | None:
        rows = self._rows(
            "reading a pre-read",
            "SELECT lines FROM prereads WHERE occurrence = ? AND role = ?",
            (occurrence, role),
        )
        return str(rows[0]["lines"]) if rows else None

    def prereads(self, since: datetime | None = None) -> list[tuple[str, str, str]]:
        """(occurrence, role, lines as JSON) of occurrences from ``since`` on."""
        rows = self._rows(
            "reading pre-reads",
            "SELECT occurrence, role, lines FROM prereads WHERE original_start >= ?"
            " ORDER BY occurrence, role",
            (utc_iso(since) if since else "",),
        )
        return [(str(r["occurrence"]), str(r["role"]), str(r["lines"])) for r in rows]

    # --- flags -----------------------------------------------------------------------------------

    def get_flag(self, key: str) -> str | None:
        rows = self._rows("reading a flag", "SELECT value FROM flags WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_flag(self, key: str, value: str | None) -> None:
        if value is None:
            self._write("clearing a flag", "DELETE FROM flags WHERE key = ?", (key,))
            return
        self._write(
            "saving a flag",
            "INSERT INTO flags (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- metrics cache ---------------------------------------------------------------------------

    def metrics_read(self) -> MetricsRead | None:
        rows = self._rows("reading the metrics cache", "SELECT * FROM metric_reads")
        return MetricsRead(**dict(rows[0])) if rows else None

    def replace_metrics(self, read: MetricsRead, table: bytes) -> None:
        """Swap the whole cache for a new read, in one transaction: a read that fails half way
        leaves the last good numbers."""
        with self.transaction(), self._translate("saving metrics"):
            self._conn.execute("DELETE FROM metric_tables")
            self._conn.execute("DELETE FROM metric_reads")
            self._conn.execute(
                "INSERT INTO metric_reads (source, version, through, read_at) VALUES (?, ?, ?, ?)",
                (read.source, read.version, read.through, read.read_at),
            )
            self._conn.execute(
                "INSERT INTO metric_tables (source, data) VALUES (?, ?)", (read.source, table)
            )

    def metrics_table(self) -> bytes | None:
        """The last read's values as ``replace_metrics`` was given them."""
        rows = self._rows("reading metrics", "SELECT data FROM metric_tables")
        return bytes(rows[0]["data"]) if rows else None
