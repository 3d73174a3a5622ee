"""Cancellation rates and the rate_warning email, without I/O: series and outcomes as the ledger
holds them, a clock, and the bands at their exact edges."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.core.model import Roster, Thresholds
from daemon.core.planner import (
    Kind,
    LedgerSeries,
    LedgerView,
    Outcome,
    RateAlert,
    RecordRateBand,
    SendEmail,
)
from daemon.core.planner.rates import (
    WINDOW_WEEKS,
    Band,
    band_of,
    percent,
    rate_actions,
    rates_of,
    tally,
    window_start,
)
from tests.unit.rosters import rep, roster

NY = ZoneInfo("America/New_York")
DENVER = ZoneInfo("America/Denver")
MAYA, RAJ, VP = "maya@acme.test", "raj@acme.test", "vp@acme.test"
SAM = "sam@acme.test"
# A Saturday: the current week (Mon 23 Nov) has had its Tuesday and Thursday.
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=NY)
T = Thresholds()
ANY = Thresholds(min_meetings=1)  # every started meeting judged: the bands' arithmetic alone


def org(**sam_fields: Any) -> Roster:
    return roster(
        rep(SAM, name="Sam Ortiz", role="ae", start_date="2024-01-08", **sam_fields),
        managers=[
            {"email": MAYA, "name": "Maya Chen", "timezone": "America/Chicago",
             "escalate_to": VP},
            {"email": RAJ, "name": "Raj Patel"},
        ],
    )  # fmt: skip


def series(
    uid: str,
    start: datetime,
    *,
    rrule: str = "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU",
    until: date | None = None,
    manager: str = MAYA,
    rep_email: str = SAM,
) -> LedgerSeries:
    return LedgerSeries(
        uid=uid, rep=rep_email, manager=manager, stage="ramped_ae", fingerprint="fp", start=start,
        rrule=rrule, until=until, state="active", timezone="America/Denver",
    )  # fmt: skip


def cancelled(
    uid: str, start: datetime, manager: str = MAYA, week11: bool = False, rep_email: str = SAM
) -> Outcome:
    return Outcome(uid, start, rep_email, manager, cancelled=True, week11=week11)


def tuesdays(first: datetime, n: int) -> list[datetime]:
    return [first + timedelta(weeks=i) for i in range(n)]


# The window: 13 Monday-Sunday weeks in New York ending with this one, Mon 31 Aug - Sun 29 Nov.
FIRST_TUESDAY = datetime(2026, 9, 1, 10, 0, tzinfo=DENVER)


def test_the_window_is_thirteen_whole_organisation_weeks_ending_with_this_one() -> None:
    start = window_start(NOW, NY)
    assert start == datetime(2026, 8, 31, tzinfo=NY)
    assert start.weekday() == 0
    assert (NOW - start) < timedelta(weeks=WINDOW_WEEKS)


@pytest.mark.parametrize(
    ("cancelled_", "scheduled", "band"),
    [
        (0, 10, Band.HEALTHY),
        (1, 11, Band.HEALTHY),  # 9.1%
        (1, 10, Band.WATCH),  # exactly 10%: no longer healthy, not yet a warning
        (2, 15, Band.WATCH),  # 13.3%
        (3, 20, Band.WATCH),  # exactly 15%: "above 15%" is a warning, 15% itself is not
        (4, 26, Band.WARNING),  # 15.4%
        (1, 4, Band.WARNING),  # exactly 25%: "above 25%" is red, 25% itself is a warning
        (5, 19, Band.RED_FLAG),  # 26.3%
        (0, 0, Band.NONE),  # nothing has started: no rate at all
    ],
)
def test_bands_at_their_exact_edges(cancelled_: int, scheduled: int, band: Band) -> None:
    assert band_of(cancelled_, scheduled, ANY) is band


@pytest.mark.parametrize(
    ("cancelled_", "scheduled", "band"),
    [
        (1, 2, Band.NONE),  # a new rep's first cancellation: 50%, but too few to tell
        (2, 7, Band.NONE),  # 28.6% of 7: still too few
        (1, 8, Band.WATCH),  # 12.5%: from 8 on, one cancellation is never a warning
        (2, 8, Band.WARNING),  # exactly 25%
        (3, 8, Band.RED_FLAG),  # seed 001's symptom: "cancelled three of the last eight"
        (0, 8, Band.HEALTHY),
    ],
)
def test_a_rate_is_judged_only_from_eight_started_meetings(
    cancelled_: int, scheduled: int, band: Band
) -> None:
    assert T.min_meetings == 8
    assert band_of(cancelled_, scheduled, T) is band


def test_one_cancellation_alone_never_warns_whatever_the_sample() -> None:
    assert all(band_of(1, n, T).level == 0 for n in range(0, 200))
    assert band_of(1, 3, Thresholds(min_meetings=3)) is Band.RED_FLAG  # the setting is honoured


def test_the_minimum_sample_cannot_be_zero() -> None:
    with pytest.raises(ValueError, match="min_meetings"):
        Thresholds(min_meetings=0)


def test_a_new_reps_first_cancellation_sends_no_rate_warning_until_the_sample_is_there() -> None:
    first = datetime(2026, 11, 17, 10, 0, tzinfo=DENVER)  # two Tuesdays have started by NOW
    s = series("s1", first)
    ledger = LedgerView(series=(s,), outcomes=(cancelled("s1", first + timedelta(weeks=1)),))
    rates = rates_of(org(), ledger, NOW)
    t = rates.reps[SAM]
    assert (t.scheduled, t.cancelled, t.rate, t.band) == (2, 1, 0.5, Band.NONE)
    assert list(rate_actions(org(), rates, ledger)) == []

    # Six weeks on: 8 meetings, the same one cancelled and one more: 25%, a warning (no copy).
    later = NOW + timedelta(weeks=6)
    ledger = replace(
        ledger, outcomes=(*ledger.outcomes, cancelled("s1", first + timedelta(weeks=5)))
    )
    rates = rates_of(org(), ledger, later)
    assert (rates.reps[SAM].scheduled, rates.reps[SAM].band) == (8, Band.WARNING)
    emails = [a for a in rate_actions(org(), rates, ledger) if isinstance(a, SendEmail)]
    assert {(e.context["scope"], e.context["level"], e.cc) for e in emails} == {
        ("Sam Ortiz", "warning", ()),
        ("your team", "warning", ()),
    }


def test_percent_never_rounds_a_warning_down_to_its_threshold() -> None:
    assert percent(4, 26) == "15.4"
    assert percent(1, 4) == "25"
    assert percent(3, 20) == "15"


def test_thirteen_weekly_meetings_three_cancelled_with_a_week11_skip_counted_apart() -> None:
    s = series("s1", FIRST_TUESDAY)
    starts = tuesdays(FIRST_TUESDAY, 13)
    outcomes = [
        cancelled("s1", starts[2]),
        cancelled("s1", starts[5]),
        cancelled("s1", starts[10], week11=True),
        Outcome("s1", starts[7], SAM, MAYA, cancelled=False),  # moved inside its week
    ]
    rates = tally([s], outcomes, NOW, NY, T)
    t = rates.reps[SAM]
    assert (t.scheduled, t.cancelled, t.held, t.rescheduled, t.week11_skips) == (13, 3, 10, 1, 1)
    assert t.band is Band.WARNING  # 23.1%


def test_tally_band_matches_the_numbers() -> None:
    s = series("s1", FIRST_TUESDAY)
    starts = tuesdays(FIRST_TUESDAY, 13)
    rates = tally([s], [cancelled("s1", starts[i]) for i in (1, 4)], NOW, NY, T)
    t = rates.reps[SAM]
    assert (t.scheduled, t.cancelled) == (13, 2)  # 15.4%
    assert t.band is Band.WARNING
    assert [w.scheduled for w in t.weeks] == [1] * 13
    assert [w.cancelled for w in t.weeks] == [0, 1, 0, 0, 1] + [0] * 8
    assert t.weeks[0].start == date(2026, 8, 31) and t.weeks[-1].start == date(2026, 11, 23)


def test_a_twice_weekly_series_at_exactly_fifteen_percent_is_watch_not_warning() -> None:
    # Tue/Thu: 20 started meetings from Tue 22 Sep to Thu 26 Nov (this week's two included).
    first = datetime(2026, 9, 22, 10, 0, tzinfo=DENVER)
    s = series("s1", first, rrule="FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH")
    rates = tally([s], [cancelled("s1", x) for x in tuesdays(first, 3)], NOW, NY, T)
    t = rates.reps[SAM]
    assert (t.scheduled, t.cancelled, t.band) == (20, 3, Band.WATCH)
    fourth = cancelled("s1", first + timedelta(days=2))  # that Thursday
    rates = tally([s], [cancelled("s1", x) for x in tuesdays(first, 3)] + [fourth], NOW, NY, T)
    assert rates.reps[SAM].band is Band.WARNING  # 20%


def test_occurrences_not_yet_started_count_for_nothing() -> None:
    s = series("s1", datetime(2026, 12, 1, 10, 0, tzinfo=DENVER))
    ahead = cancelled("s1", datetime(2026, 12, 1, 10, 0, tzinfo=DENVER))
    rates = tally([s], [ahead], NOW, NY, T)
    assert SAM not in rates.reps and MAYA not in rates.managers
    assert band_of(0, 0, T) is Band.NONE
    assert list(rate_actions(org(), rates, LedgerView())) == []


def test_a_meeting_later_today_is_not_yet_counted() -> None:
    today = datetime(2026, 11, 24, 10, 0, tzinfo=DENVER)  # a Tuesday
    s = series("s1", today)
    assert SAM not in tally([s], [], today - timedelta(minutes=1), NY, T).reps
    assert tally([s], [], today, NY, T).reps[SAM].scheduled == 1


def test_a_rep_who_moved_manager_mid_window_splits_between_managers_and_sums_for_the_rep() -> None:
    # Maya's series until Sun 11 Oct (6 Tuesdays), Raj's from Tue 13 Oct (7 Tuesdays).
    with_maya = series("s-maya", FIRST_TUESDAY, until=date(2026, 10, 11))
    with_raj = series("s-raj", datetime(2026, 10, 13, 10, 0, tzinfo=DENVER), manager=RAJ)
    outcomes = [
        cancelled("s-maya", FIRST_TUESDAY + timedelta(weeks=1)),
        cancelled("s-maya", FIRST_TUESDAY + timedelta(weeks=2)),
        cancelled("s-raj", datetime(2026, 11, 3, 10, 0, tzinfo=DENVER), manager=RAJ),
    ]
    rates = tally([with_maya, with_raj], outcomes, NOW, NY, ANY)
    assert (rates.managers[MAYA].scheduled, rates.managers[MAYA].cancelled) == (6, 2)
    assert rates.managers[MAYA].band is Band.RED_FLAG  # 33%
    assert (rates.managers[RAJ].scheduled, rates.managers[RAJ].cancelled) == (7, 1)
    assert rates.managers[RAJ].band is Band.WATCH  # 14.3%
    assert (rates.reps[SAM].scheduled, rates.reps[SAM].cancelled) == (13, 3)
    assert rates.rep_managers[SAM] == (MAYA, RAJ)
    # With the default sample of 8, each manager's share is too few to judge; the rep's is not.
    rates = tally([with_maya, with_raj], outcomes, NOW, NY, T)
    assert rates.managers[MAYA].band is rates.managers[RAJ].band is Band.NONE
    assert rates.reps[SAM].band is Band.WARNING  # 23.1%


def test_history_older_than_the_window_is_left_out() -> None:
    old = datetime(2026, 6, 2, 10, 0, tzinfo=DENVER)
    s = series("s1", old)
    rates = tally([s], [cancelled("s1", old)], NOW, NY, T)
    assert (rates.reps[SAM].scheduled, rates.reps[SAM].cancelled) == (13, 0)


# --- the rate_warning email -----------------------------------------------------------------


def _ledger(n_cancelled: int, alerts: dict[str, RateAlert] | None = None) -> LedgerView:
    s = series("s1", FIRST_TUESDAY)
    starts = tuesdays(FIRST_TUESDAY, 13)
    return LedgerView(
        series=(s,),
        outcomes=tuple(cancelled("s1", starts[i]) for i in range(n_cancelled)),
        rate_alerts=alerts or {},
    )


def _run(ledger: LedgerView, roster_: Roster | None = None) -> list[object]:
    r = roster_ or org()
    return list(rate_actions(r, rates_of(r, ledger, NOW), ledger))


def _apply(ledger: LedgerView, actions: list[object]) -> LedgerView:
    alerts = dict(ledger.rate_alerts)
    sent = set(ledger.emails_sent)
    for a in actions:
        if isinstance(a, SendEmail):
            sent.add((a.occurrence, a.ledger_kind))
        elif isinstance(a, RecordRateBand):
            alerts[a.subject] = RateAlert(a.band, a.crossings)
    return replace(ledger, rate_alerts=alerts, emails_sent=frozenset(sent))


def test_crossing_into_warning_emails_the_manager_once_for_the_team_and_once_for_the_rep() -> None:
    ledger = _ledger(2)  # 2 of 13: 15.4%
    actions = _run(ledger)
    emails = [a for a in actions if isinstance(a, SendEmail)]
    assert {(e.kind, e.to, e.cc, e.context["scope"]) for e in emails} == {
        (Kind.RATE_WARNING, (MAYA,), (), "your team"),
        (Kind.RATE_WARNING, (MAYA,), (), "Sam Ortiz"),
    }
    assert all(e.context["level"] == "warning" and e.context["rate_percent"] == "15.4"
               for e in emails)  # fmt: skip
    # Told: the next pass, still in warning, says nothing.
    assert _run(_apply(ledger, actions)) == []


def test_red_flag_is_copied_to_escalate_to() -> None:
    emails = [a for a in _run(_ledger(4)) if isinstance(a, SendEmail)]  # 30.8%
    assert emails and all(e.cc == (VP,) and e.context["level"] == "red flag" for e in emails)


def test_warning_then_red_then_back_and_up_again_sends_once_per_crossing() -> None:
    ledger = _apply(_ledger(2), _run(_ledger(2)))  # told: warning
    ledger = replace(ledger, outcomes=_ledger(4).outcomes)
    red = _run(ledger)
    assert [a.context["level"] for a in red if isinstance(a, SendEmail)] == ["red flag"] * 2
    ledger = _apply(ledger, red)
    assert _run(ledger) == []

    ledger = replace(ledger, outcomes=_ledger(0).outcomes)  # healthy again: re-armed, no email
    calm = _run(ledger)
    assert calm and all(isinstance(a, RecordRateBand) and a.email is None for a in calm)
    ledger = _apply(ledger, calm)

    ledger = replace(ledger, outcomes=_ledger(2).outcomes)  # and up again: a new email
    again = [a for a in _run(ledger) if isinstance(a, SendEmail)]
    assert len(again) == 2 and {e.occurrence for e in again}.isdisjoint(
        {e.occurrence for e in red if isinstance(e, SendEmail)}
    )


def test_an_email_that_could_not_go_is_due_again_under_the_same_key() -> None:
    ledger = _ledger(2)
    first = _run(ledger)
    # Nothing applied (the mail server was down): the next pass asks for the same emails.
    assert [a for a in _run(ledger)] == first


def test_a_rep_no_longer_on_the_roster_gets_no_email_but_the_team_rate_keeps_their_history() -> (
    None
):
    r = roster(managers=[{"email": MAYA, "name": "Maya Chen"}])
    emails = [a for a in _run(_ledger(4), r) if isinstance(a, SendEmail)]
    assert [e.context["scope"] for e in emails] == ["your team"]


def test_a_pass_at_an_instant_before_the_last_change_changes_nothing() -> None:
    # Told red at NOW; the same quarter replayed from its start (or a clock stepped back) sees
    # a smaller sample: it neither re-arms the band nor warns again when it climbs back.
    ledger = _ledger(4)
    told = _apply(ledger, _run(ledger))
    told = replace(
        told, rate_alerts={k: replace(v, changed_at=NOW) for k, v in told.rate_alerts.items()}
    )
    r = org()
    for earlier in (NOW - timedelta(weeks=10), NOW - timedelta(weeks=1), NOW - timedelta(hours=1)):
        assert list(rate_actions(r, rates_of(r, told, earlier), told)) == []
    later = rates_of(r, replace(told, outcomes=_ledger(0).outcomes), NOW + timedelta(hours=1))
    assert {a.band for a in rate_actions(r, later, told) if isinstance(a, RecordRateBand)} == {
        "healthy"
    }
