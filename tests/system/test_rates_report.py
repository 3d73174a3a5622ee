"""A quarter of weekly passes on Radicale, with 1:1s cancelled, declined, removed and moved the
way people do it in a calendar app; then the rate_warning emails and ``cadence report`` against
figures counted by hand below."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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

    seen_after: dict[int, list[tuple[str, str, str | None]]] = {}
    for k in range(14):
        edits_before(k)
        now = P0 + timedelta(weeks=k)
        result = d.once(now)
        assert result.errors == [] and result.alarms == []
        again = d.once(now)  # the same pass again sends nothing and writes nothing
        assert (again.emails, again.writes) == (0, 0), k
        seen_after[k] = rate_mail()

    # By hand (Lee weekly from 23 Nov; Sam Tue/Thu 24 and 26 Nov, then Tuesdays from 1 Dec):
    # pass 2: Lee 1 of 2 cancelled (50%, red flag); the team 1 of 5 (20%, warning).
    # pass 3-7: Lee 33%, 25%, 20%, 17%, then 1 of 7 (14%, watch: re-armed); team under 15%.
    # pass 8: Lee 2 of 8 (25%, warning again). pass 10: Lee 3 of 10 (30%, red flag again).
    # pass 11: the team 4 of 23 (17.4%, warning again). Sam never above 8.3%.
    red_lee = ("Red flag: 50% of your 1:1s with Lee Park cancelled in the last 13 weeks",
               maya, "vp@acme.test")  # fmt: skip
    team_warning = ("Warning: 20% of your team's 1:1s cancelled in the last 13 weeks", maya, None)
    assert seen_after[1] == []
    assert seen_after[2] == sorted([red_lee, team_warning])
    assert seen_after[7] == seen_after[2]
    lee_warning = ("Warning: 25% of your 1:1s with Lee Park cancelled in the last 13 weeks",
                   maya, None)  # fmt: skip
    assert seen_after[8] == sorted([red_lee, team_warning, lee_warning])
    red_lee_again = ("Red flag: 30% of your 1:1s with Lee Park cancelled in the last 13 weeks",
                     maya, "vp@acme.test")  # fmt: skip
    team_again = ("Warning: 17.4% of your team's 1:1s cancelled in the last 13 weeks", maya, None)
    assert seen_after[10] == sorted([red_lee, team_warning, lee_warning, red_lee_again])
    assert seen_after[13] == sorted([red_lee, team_warning, lee_warning, red_lee_again, team_again])
    (first,) = [m for m in d.mail_of("rate_warning") if "50%" in str(m["Subject"])]
    assert "1 of the 2 scheduled 1:1s with Lee Park" in text_of(first)

    # The report at the last pass, counted by hand.
    at = (P0 + timedelta(weeks=13)).isoformat()
    out = d.cli("report", "--at", at, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["window"]["start"] == "2026-11-23"
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
