"""The metrics source contract, one suite for every backend (like ``provider_contract``).

A backend's test module subclasses ``MetricsSourceContract`` and gives ``publish``: put these
weekly values where the source reads them (a CSV file, a CRM fake's data) and return the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from daemon.core.model import Metric
from daemon.metrics.base import MetricsSource, Row

SAM = "sam@acme.test"
LEE = "lee@acme.test"
GONE = "gone@acme.test"
W = date(2026, 11, 16)

DATA = [
    Row(SAM, Metric.ACTIVITIES, date(2026, 11, 9), 180),
    Row(SAM, Metric.ACTIVITIES, W, 214),
    Row(SAM, Metric.MEETINGS_BOOKED, W, 7),
    Row(LEE, Metric.WIN_RATE, W, 0.31),
    Row(GONE, Metric.ACTIVITIES, date(2026, 11, 23), 12),
]


class MetricsSourceContract:
    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        raise NotImplementedError

    def test_gives_every_weekly_value_of_the_reps_asked_for_all_at_once(self) -> None:
        source = self.publish(DATA)
        got = sorted(source.rows(frozenset({SAM, LEE})), key=lambda r: (r.rep, r.metric, r.week))
        want = sorted(DATA[:4], key=lambda r: (r.rep, r.metric, r.week))
        assert got == want

    def test_people_not_on_the_roster_are_dropped_but_their_weeks_count_as_in(self) -> None:
        source = self.publish(DATA)
        assert {r.rep for r in source.rows(frozenset({SAM}))} == {SAM}
        assert source.through() == date(2026, 11, 23)

    def test_no_data_gives_no_rows_and_no_week_in(self) -> None:
        source = self.publish([])
        assert list(source.rows(frozenset({SAM}))) == []
        assert source.through() is None

    def test_its_version_tells_changed_data_from_the_same(self) -> None:
        first = self.publish(DATA).version()
        again = self.publish(DATA).version()
        changed = self.publish([*DATA[:-1], Row(GONE, Metric.ACTIVITIES, W, 13)]).version()
        if first is None:  # a CRM: only time tells, every refresh_hours
            assert again is None and changed is None
        else:
            assert first == again != changed

    def test_a_label_people_recognise(self) -> None:
        assert self.publish(DATA).label
