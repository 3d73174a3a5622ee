"""``cadence report`` reads only what the rates need from the ledger: the same figures as from
the whole ledger a pass reads, on a real SQLite file, with series and outcomes on both sides of
the window and a series that ended the day before the window yet met inside it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon import report
from daemon.config import Config, load
from daemon.core.planner.rates import window_start
from daemon.core.planner.reviews import REVIEW
from daemon.store import (
    CancellationRecord,
    Ledger,
    RescheduleRecord,
    ReviewOutcomeRecord,
    SeriesRecord,
)

TOKYO = ZoneInfo("Asia/Tokyo")
# A Saturday. The window starts on Monday 31 August, 00:00 in Tokyo: Sunday 15:00 UTC.
AT = datetime(2026, 11, 28, 12, 0, tzinfo=TOKYO)
MAYA, SAM, LEE = "maya@acme.test", "sam@acme.test", "lee@acme.test"
STAMP = "2026-11-28T03:00:00Z"


def config(tmp_path: Path) -> Config:
    path = tmp_path / "cadence.yaml"
    path.write_text(f"""\
organization: {{name: Acme, timezone: Asia/Tokyo}}
managers:
  - {{email: {MAYA}, name: Maya Chen, timezone: America/Los_Angeles}}
reps:
  - {{email: {SAM}, name: Sam Ortiz, role: ae, start_date: 2024-01-08, manager: {MAYA},
     timezone: America/Denver}}
  - {{email: {LEE}, name: Lee Park, role: ae, start_date: 2024-01-08, manager: {MAYA}}}
state_dir: {tmp_path / "state"}
""")
    return load(path)


def series(uid: str, rep: str, rrule: str, zone: str, start: str, until: str | None,
           stage: str = "ramped_ae", state: str = "active") -> SeriesRecord:  # fmt: skip
    return SeriesRecord(
        uid=uid, rep=rep, manager=MAYA, stage=stage, rrule=rrule, timezone=zone, start=start,
        until=until, fingerprint=f"fp-{uid}", state=state, updated_at=STAMP,
    )  # fmt: skip


def cancelled(uid: str, rep: str, original_start: str, week11: bool = False) -> CancellationRecord:
    return CancellationRecord(
        uid=uid, original_start=original_start, rep=rep, manager=MAYA, reason="declined",
        week_of_quarter=11 if week11 else 3, week11=week11, detected_at=STAMP,
    )  # fmt: skip


def history(cfg: Config) -> None:
    ledger = Ledger.open(cfg.settings.state_dir)
    try:
        with ledger.transaction():
            for rec in (
                series("s-sam", SAM, "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO", "America/Denver",
                       "2026-06-01T10:00:00-06:00", None),
                # Ended long before the window: nothing of it is read.
                series("s-lee-old", LEE, "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU", "America/Denver",
                       "2025-09-02T10:00:00-06:00", "2026-03-03", state="ended"),
                # Its last day (Los Angeles) is the Sunday before the window starts in Tokyo,
                # yet that Sunday's 09:00 in Los Angeles is Monday 01:00 in Tokyo: inside.
                series("s-lee-edge", LEE, "FREQ=WEEKLY;INTERVAL=1;BYDAY=SU",
                       "America/Los_Angeles", "2026-06-07T09:00:00-07:00", "2026-08-30",
                       state="ended"),
                series("s-lee", LEE, "FREQ=WEEKLY;INTERVAL=1;BYDAY=WE", "America/Los_Angeles",
                       "2026-09-02T09:00:00-07:00", None),
                series("r-maya", MAYA, "FREQ=WEEKLY;BYDAY=MO", "America/Los_Angeles",
                       "2026-06-01T09:00:00-07:00", None, stage=REVIEW),
            ):  # fmt: skip
                ledger.upsert_series(rec)
            for c in (
                cancelled("s-sam", SAM, "2026-08-24T16:00:00Z"),  # the week before the window
                cancelled("s-sam", SAM, "2026-09-14T16:00:00Z"),
                cancelled("s-sam", SAM, "2026-11-16T17:00:00Z", week11=True),
                cancelled("s-sam", SAM, "2026-11-30T17:00:00Z"),  # recorded ahead: not yet
                cancelled("s-lee-edge", LEE, "2026-08-30T16:00:00Z"),
            ):
                ledger.record_cancellation(c)
            ledger.record_reschedule(RescheduleRecord(
                uid="s-lee", original_start="2026-09-09T16:00:00Z", rep=LEE, manager=MAYA,
                start="2026-09-10T16:00:00Z", detected_at=STAMP,
            ))  # fmt: skip
            ledger.record_review_outcome(ReviewOutcomeRecord(
                uid="r-maya", original_start="2026-09-07T16:00:00Z", manager=MAYA,
                subject=f"team:{MAYA}", status="cancelled", reason="declined", detected_at=STAMP,
            ))  # fmt: skip
    finally:
        ledger.close()


def test_the_report_reads_only_the_window_and_counts_as_a_pass_would(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    history(cfg)

    ledger = Ledger.open_readonly(cfg.settings.state_dir)
    assert ledger is not None
    try:
        rows, outcomes = ledger.rate_history(window_start(AT, TOKYO), AT, REVIEW)
    finally:
        ledger.close()
    assert sorted(row["uid"] for row in rows) == ["s-lee", "s-lee-edge", "s-sam"]
    assert sorted((o["original_start"], o["week11"]) for o in outcomes) == [
        ("2026-08-30T16:00:00Z", 0),
        ("2026-09-09T16:00:00Z", None),
        ("2026-09-14T16:00:00Z", 0),
        ("2026-11-16T17:00:00Z", 1),
    ]

    data = report.build(cfg, AT)
    assert data == report.build(cfg, AT, report.read_view(cfg, AT))
    (maya,) = data["managers"]
    assert maya["pipeline_reviews"] == {"cancelled": 1, "moved": 0}
    reps = {r["email"]: r for r in maya["reps"]}
    # Sam: Mondays 10:00 Denver from 31 Aug to 23 Nov, 13 of them; two cancelled, one in week 11.
    assert [reps[SAM][k] for k in ("scheduled", "cancelled", "week11_skips")] == [13, 2, 1]
    # Lee: the edge series' last Sunday, then Wednesdays from 2 Sep to 25 Nov; one moved.
    assert [reps[LEE][k] for k in ("scheduled", "cancelled", "rescheduled")] == [14, 1, 1]
    assert reps[LEE]["weeks"][0]["scheduled"] == 2


def test_the_json_face_is_utf8_and_reads_back_as_the_report(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    text = cfg.path.read_text().replace("Sam Ortiz", "Zoë Ōtani 山田").replace("Acme", "Açme")
    cfg.path.write_text(text, encoding="utf-8")
    cfg = load(cfg.path)
    history(cfg)
    data = report.build(cfg, AT)

    compact = report.render(data, "json")
    pretty = report.render(data, "json", pretty=True)
    assert json.loads(compact) == data == json.loads(pretty)
    assert b"\n" not in compact and pretty.startswith(b'{\n  "schema": 1,\n')
    assert "Zoë Ōtani 山田".encode() in compact and b'"organization":"A\xc3\xa7me"' in compact
    # A lone surrogate (pure PyYAML reads "\ud800") is written escaped rather than refused.
    odd = {"name": "Zo\ud800"}
    assert json.loads(report.render(odd, "json")) == odd
    assert json.loads(report.render(odd, "json", pretty=True)) == odd
