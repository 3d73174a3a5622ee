"""Each metrics source against the one contract suite."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from daemon.metrics.base import MetricsSource, Row
from daemon.metrics.csvfile import CsvSource
from tests.contract.metrics_contract import MetricsSourceContract


def write_csv(path: Path, rows: Sequence[Row]) -> Path:
    lines = ["rep,week,metric,value"]
    lines += [f"{r.rep},{r.week.isoformat()},{r.metric.value},{r.value}" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


class TestCsvSource(MetricsSourceContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "metrics.csv"

    def publish(self, rows: Sequence[Row]) -> MetricsSource:
        return CsvSource(write_csv(self.path, rows))
