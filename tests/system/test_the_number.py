"""The number in the invites over a quarter on Radicale, with the metrics CSV growing every week
as a RevOps export would: each meeting shows the rep's own value against their own four-week
baseline, an agenda is rewritten only when its number changes, and nobody is emailed for it."""

from __future__ import annotations

import itertools
import os
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.core.agenda import extract_block
from daemon.embedded import EmbeddedRadicale
from tests.system.harness import Deployment, text_of

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
LEE = "lee@acme.test"
M0 = date(2026, 11, 23)  # the first Monday
WEEKS = 13
_ids = itertools.count(1)


@pytest.fixture
def on_radicale(tmp_path: Path, radicale: EmbeddedRadicale) -> Deployment:
    """A deployment on the shared Radicale, with managers of its own."""
    n = next(_ids)
    return Deployment(tmp_path, radicale.url, [f"nmaya{n}@acme.test", f"nraj{n}@acme.test"])


def win_rate(week: date) -> float:
    """Lee's win rate in a week: a deterministic wobble between 20% and 44%."""
    n = (week - date(2026, 1, 5)).days // 7
    return [0.20, 0.24, 0.28, 0.32, 0.36, 0.40, 0.44][(n * 5) % 7]


def _percent(exact: Fraction) -> int:
    assert exact * 100 % 1 != Fraction(1, 2), "test data on a rounding boundary"
    return round(exact * 100)


def expected_line(w: date) -> str:
    """Worked out apart from the code under test, in exact fractions."""
    value = Fraction(str(win_rate(w)))
    baseline = sum(Fraction(str(win_rate(w - timedelta(weeks=i)))) for i in range(1, 5)) / 4
    pct = _percent((value - baseline) / baseline)
    change = f"+{pct}%" if pct > 0 else f"{pct}%"
    return (
        f"Win rate, week of {w.day} {w.strftime('%b')}: {_percent(value)}% "
        f"(your 4-week baseline {_percent(baseline)}%, {change})."
    )


def write_csv(d: Deployment, through: date, corrections: dict[date, float] | None = None) -> None:
    """The export: every week from eight weeks before M0 up to ``through``."""
    lines = ["rep,week,metric,value"]
    week = M0 - timedelta(weeks=8)
    while week <= through:
        value = (corrections or {}).get(week, win_rate(week))
        lines.append(f"{LEE},{week.isoformat()},win_rate,{value}")
        lines.append(f"someone.else@acme.test,{week.isoformat()},win_rate,0.5")
        week += timedelta(weeks=1)
    path = d.root / "metrics.csv"
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, (1, 1))  # the content, not the time stamp, tells a change


def career(meeting: datetime) -> bool:
    """The last 1:1 of a month is the career conversation: no number in it."""
    return (meeting + timedelta(weeks=1)).month != meeting.month


def agendas(d: Deployment, after: datetime) -> dict[datetime, str]:
    """Lee's agenda block per meeting from ``after`` on, as the calendar has them."""
    (series,) = d.rep_series(d.managers[0], LEE)
    return {
        o.recurrence_id: extract_block(o.description) or ""
        for o in series.overrides
        if o.recurrence_id >= after
    }


def test_a_quarter_of_weekly_exports_fills_each_invite_and_rewrites_only_what_changed(
    on_radicale: Deployment,
) -> None:
    d = on_radicale
    maya = d.managers[0]
    d.write_config(
        f"- {{email: {maya}, name: Maya Chen, timezone: America/Chicago}}\n",
        f"- {{email: {LEE}, name: Lee Park, role: ae, start_date: 2025-01-06, manager: {maya},"
        f" timezone: America/Chicago, slot: {{day: tue, time: '10:00'}}}}\n",
        "metrics: {source: csv, csv: {path: metrics.csv}}\n",
    )
    write_csv(d, M0 - timedelta(weeks=1))
    first = d.once(datetime(2026, 11, 22, 12, tzinfo=NY))
    assert first.errors == []
    tue = datetime(2026, 12, 1, 10, tzinfo=CHI)  # 24 Nov is November's career conversation
    opening = agendas(d, tue - timedelta(weeks=1))
    assert "Win rate" not in opening[tue - timedelta(weeks=1)]
    assert "Win rate, week of 23 Nov: not in yet" in opening[tue]

    told = 0
    for k in range(WEEKS):
        monday = M0 + timedelta(weeks=k)
        meeting = datetime(monday.year, monday.month, monday.day, 10, tzinfo=CHI) + timedelta(1)
        last_week = monday - timedelta(weeks=1)
        at = datetime(monday.year, monday.month, monday.day, 7, tzinfo=NY)
        # Nothing is due by time on a Monday morning; only next week's meeting may come inside
        # the agenda horizon, and it is new, not rewritten.
        before, mail = agendas(d, at), len(d.mail())

        write_csv(d, last_week)  # the export gains the week that just ended
        d.once(at)
        after = agendas(d, at)
        assert set(after) - set(before) <= {meeting + timedelta(weeks=1)}
        changed = {when for when in before if after[when] != before[when]}
        assert changed == ({meeting} if k and not career(meeting) else set()), (k, changed)
        if not career(meeting):
            assert expected_line(last_week) in after[meeting]
        if not career(meeting + timedelta(weeks=1)):
            assert "not in yet" in after[meeting + timedelta(weeks=1)]
        assert len(d.mail()) == mail, "a new number sends nothing"

        if k in (1, 6):
            write_csv(d, last_week)  # exported again, the same bytes
            d.once(at + timedelta(minutes=5))
            assert agendas(d, at) == after and len(d.mail()) == mail

        if k == 6:
            # A correction to an old week changes only the meetings whose baseline holds it.
            fixed = last_week - timedelta(weeks=2)
            write_csv(d, last_week, {fixed: 0.9})
            d.once(at + timedelta(minutes=10))
            now = agendas(d, at)
            assert {w for w in now if now[w] != after[w]} == {meeting}
            assert expected_line(last_week) not in now[meeting]
            assert len(d.mail()) == mail
            write_csv(d, last_week)
            d.once(at + timedelta(minutes=15))
            assert agendas(d, at) == after

        if k % 4 == 2:
            # The manager's pre-read (24 h before) and the recap carry the invite's line.
            d.once(meeting - timedelta(hours=23))
            d.once(meeting + timedelta(hours=1))
            told += 1
            pre = [m for m in d.mail_of("preread") if m["To"] == maya]
            recaps = d.mail_of("recap")
            assert len(pre) == len(recaps) == told
            if not career(meeting):
                assert any(expected_line(last_week) in text_of(m) for m in pre)
                assert any(expected_line(last_week) in text_of(m) for m in recaps)
    assert told == 3


def test_a_broken_export_keeps_the_last_good_numbers_and_the_daemon_running(
    on_radicale: Deployment,
) -> None:
    d = on_radicale
    maya = d.managers[0]
    d.write_config(
        f"- {{email: {maya}, name: Maya Chen, timezone: America/Chicago}}\n",
        f"- {{email: {LEE}, name: Lee Park, role: ae, start_date: 2025-01-06, manager: {maya},"
        f" timezone: America/Chicago, slot: {{day: tue, time: '10:00'}}}}\n",
        "metrics: {source: csv, csv: {path: metrics.csv}}\n",
    )
    write_csv(d, date(2026, 11, 30))
    at = datetime(2026, 11, 30, 7, tzinfo=NY)
    assert d.once(at).errors == []
    meeting = datetime(2026, 12, 1, 10, tzinfo=CHI)
    good = agendas(d, at)
    assert expected_line(date(2026, 11, 23)) in good[meeting]

    path = d.root / "metrics.csv"
    path.write_text(path.read_text().replace("0.5", "half"))  # someone else's rows go bad
    result = d.once(at + timedelta(minutes=5))
    assert result.errors == [] and result.exit_code == 0
    assert agendas(d, at) == good
    check = d.cli("validate")
    assert check.returncode == 2 and f"{path}:3: someone.else@acme.test: value:" in check.stderr
