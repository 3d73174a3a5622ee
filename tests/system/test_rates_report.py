"""A quarter of weekly passes (on each provider), with 1:1s cancelled, declined, removed and moved
the way people do it in a calendar app; the bands in the report and the rate_warning emails
after each pass against figures counted by hand below; then the whole quarter replayed, which
sends nothing new and reads the same at every pass."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.report import build as build_report
from tests.system.harness import Deployment, text_of

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
DENVER = ZoneInfo("America/Denver")
P0 = datetime(2026, 11, 22, 12, 0, tzinfo=NY)  # Sunday; pass k is k weeks later
LEE = "lee@acme.test"
SAM = "sam@acme.test"


def lee_monday(n: int) -> datetime:
    """Lee's n-th 1:1 (ramped AE, Mondays 09:00 Chicago), n = 1 on 23 Nov."""
    return datetime(2026, 11, 23, 9, 0, tzinfo=CHI) + timedelta(weeks=n - 1)


def in_use(d: Deployment, rep: str) -> str:
    maya = d.managers[0]
    (series,) = [s for s in d.rep_series(maya, rep) if s.until is None]
    return series.uid


def setup(d: Deployment) -> str:
    maya, raj = d.managers
    d.write_config(
        f"""\
        - {{email: {maya}, name: Maya Chen, timezone: America/Chicago, escalate_to: vp@acme.test}}
        - {{email: {raj}, name: Raj Patel, timezone: America/New_York}}
        """,
        f"""\
        - {{email: {SAM}, name: Sam Ortiz, role: sdr, start_date: 2026-09-01, manager: {maya},
           timezone: America/Denver, slot: {{day: tue, time: "10:00"}}}}
        - {{email: {LEE}, name: Lee Park, role: ae, start_date: 2025-01-06, manager: {maya},
           slot: {{day: mon, time: "09:00"}}}}
        """,
    )
    return maya


def test_a_quarter_of_cancellations_gives_the_hand_counted_rates_and_warnings(
    deployment: Deployment,
) -> None:
    d = deployment
    maya = setup(d)

    def edits_before(k: int) -> None:
        """What people do on the calendar in the days before pass k."""
        if k == 1:  # Lee's 30 Nov 1:1 is cancelled
            d.cancel(maya, in_use(d, LEE), lee_monday(2))
        elif k == 7:  # 11 Jan, week 11 of Q4: a week-11 skip
            d.cancel(maya, in_use(d, LEE), lee_monday(8))
        elif k == 9:  # Lee declines 25 Jan
            d.decline(maya, in_use(d, LEE), lee_monday(10), LEE, "Lee Park")
        elif k == 10:
            # Lee's 1 Feb moves to Wednesday (a reschedule, held); Sam's Tue 2 Feb is removed.
            d.move(maya, in_use(d, LEE), lee_monday(11), lee_monday(11) + timedelta(days=2))
            d.remove_occurrence(maya, in_use(d, SAM), datetime(2027, 2, 2, 10, 0, tzinfo=DENVER))

    def rate_mail() -> list[tuple[str, str, str | None]]:
        return sorted(
            (" ".join(str(m["Subject"]).split()), m["To"], m["Cc"])
            for m in d.mail_of("rate_warning")
        )  # fmt: skip

    def bands(k: int) -> tuple[str, str, str]:
        """Lee's, Sam's and the team's band in the report a user opens at pass k."""
        data = build_report(d.config(), P0 + timedelta(weeks=k))
        (team,) = [m for m in data["managers"] if m["email"] == maya]
        reps = {r["email"]: r["band"] for r in team["reps"]}
        return reps[LEE], reps[SAM], team["band"]

    seen_after: dict[int, list[tuple[str, str, str | None]]] = {}
    seen_bands: dict[int, tuple[str, str, str]] = {}
    for k in range(14):
        edits_before(k)
        result = d.once(P0 + timedelta(weeks=k))
        assert result.errors == [] and result.alarms == []
        seen_after[k] = rate_mail()
        seen_bands[k] = bands(k)

    # By hand (Lee weekly from 23 Nov; Sam Tue/Thu 24 and 26 Nov, then Tuesdays from 1 Dec), at
    # pass k Lee has had k 1:1s, Sam k + 1, the team 2k + 1. A rate is judged from 8 on:
    # pass 2: Lee 1 of 2 (50%) and the team 1 of 5: too few, no email (no red flag to the VP).
    # pass 4: the team 1 of 9 (11%, watch); 5-7: 1 of 11, 13, 15 (healthy).
    # pass 8: Lee 2 of 8 (25%, warning: email); the team 2 of 17 (11.8%, watch).
    # pass 10: Lee 3 of 10 (30%, red flag: email copied to the VP); the team 3 of 21 (watch).
    # pass 11: Sam's 2 Feb removed; the team 4 of 23 (17.4%, warning: email).
    # pass 12: Lee 3 of 12 (25%, warning again: red re-armed, no email); the team 4 of 25 (16%).
    # pass 13: Lee 3 of 13 (23.1%); the team 4 of 27 (14.8%, watch: re-armed). Sam 1 of 14.
    assert seen_bands == {
        0: ("none", "none", "none"), 1: ("none", "none", "none"), 2: ("none", "none", "none"),
        3: ("none", "none", "none"), 4: ("none", "none", "watch"),
        5: ("none", "none", "healthy"), 6: ("none", "none", "healthy"),
        7: ("none", "healthy", "healthy"), 8: ("warning", "healthy", "watch"),
        9: ("warning", "healthy", "watch"), 10: ("red_flag", "healthy", "watch"),
        11: ("red_flag", "healthy", "warning"), 12: ("warning", "healthy", "warning"),
        13: ("warning", "healthy", "watch"),
    }  # fmt: skip
    lee_warning = ("Warning: 25% of your 1:1s with Lee Park cancelled in the last 13 weeks",
                   maya, None)  # fmt: skip
    red_lee = ("Red flag: 30% of your 1:1s with Lee Park cancelled in the last 13 weeks",
               maya, "vp@acme.test")  # fmt: skip
    team_warning = ("Warning: 17.4% of your team's 1:1s cancelled in the last 13 weeks", maya, None)
    assert all(seen_after[k] == [] for k in range(8))
    assert seen_after[8] == seen_after[9] == [lee_warning]
    assert seen_after[10] == sorted([lee_warning, red_lee])
    assert seen_after[11] == seen_after[13] == sorted([lee_warning, red_lee, team_warning])
    (first,) = [m for m in d.mail_of("rate_warning") if "25%" in str(m["Subject"])]
    assert "2 of the 8 scheduled 1:1s with Lee Park" in text_of(first)

    # The whole quarter again, pass by pass: nothing new is sent, and every report reads the same.
    mail_before = len(d.mail())
    for k in range(14):
        again = d.once(P0 + timedelta(weeks=k))
        assert (again.errors, again.emails) == ([], 0), k
        assert bands(k) == seen_bands[k], k
    assert len(d.mail()) == mail_before and rate_mail() == seen_after[13]

    # The report at the last pass, counted by hand.
    at = (P0 + timedelta(weeks=13)).isoformat()
    out = d.cli("report", "--at", at, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["window"]["start"] == "2026-11-23"
    pretty = d.cli("report", "--at", at, "--format", "json", "--pretty")
    assert pretty.returncode == 0, pretty.stderr
    assert json.loads(pretty.stdout) == report
    assert out.stdout.count("\n") == 1 and pretty.stdout.startswith('{\n  "schema": 1,\n')
    (team,) = [m for m in report["managers"] if m["email"] == maya]
    reps = {r["email"]: r for r in team["reps"]}

    def figures(row: dict[str, object]) -> tuple[object, ...]:
        keys = ("scheduled", "held", "rescheduled", "cancelled", "week11_skips", "rate", "band")
        return tuple(row[k] for k in keys)

    assert figures(reps[LEE]) == (13, 10, 1, 3, 1, 0.2308, "warning")
    assert figures(reps[SAM]) == (14, 13, 0, 1, 0, 0.0714, "healthy")
    assert figures(team) == (27, 23, 1, 4, 1, 0.1481, "watch")
    assert [w["cancelled"] for w in reps[LEE]["weeks"]] == [0, 1] + [0] * 5 + [1, 0, 1, 0, 0, 0]
    assert [w["week11_skips"] for w in reps[LEE]["weeks"]][7] == 1

    # Nothing was written by the report, and the daemon carries on from the same ledger.
    assert d.once(P0 + timedelta(weeks=13, hours=1)).emails == 0

    text = d.cli("report", "--at", at)
    assert text.returncode == 0, text.stderr
    assert "Lee Park" in text.stdout and "23.1%" in text.stdout and "warning" in text.stdout
    page = d.root / "report.html"
    html = d.cli("report", "--at", at, "--format", "html", "--out", str(page))
    assert html.returncode == 0 and html.stdout == ""
    body = page.read_text()
    assert "<svg" in body and "<script" not in body and "Lee Park" in body
