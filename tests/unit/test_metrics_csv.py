"""The CSV metrics source and the ledger cache behind it: validated like the roster, re-read when
its bytes change, and the last good numbers kept when a new file is wrong."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config import load
from daemon.core.model import Metric
from daemon.metrics import cache
from daemon.metrics.base import MetricsUnusable, WeeklyTable
from daemon.metrics.csvfile import MAX_PROBLEMS, CsvSource
from daemon.store import Ledger

SAM = "sam@acme.test"
CONFIG = """\
organization: {name: Acme, timezone: America/New_York}
managers:
  - {email: maya@acme.test, name: Maya Chen}
reps:
  - {email: sam@acme.test, name: Sam Ortiz, role: sdr, start_date: 2026-09-01,
     manager: maya@acme.test}
metrics: {source: csv, csv: {path: metrics.csv}}
"""
NOW = datetime(2026, 11, 23, 14, tzinfo=UTC)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(MetricsUnusable) as caught:
        CsvSource(path).read(None)
    return caught.value.problems


def test_header_in_any_order_with_extra_columns_a_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("\ufeffValue,Metric,Rep,Owner,Week\n\n7,meetings_booked,SAM@acme.test,x,"
                    "2026-11-16\n0.31,win_rate,lee@acme.test,y,2026-11-09\n")  # fmt: skip
    table = CsvSource(path).read(frozenset({SAM}))
    assert [(r.rep, r.metric, r.week, r.value) for r in table.rows()] == [
        (SAM, Metric.MEETINGS_BOOKED, date(2026, 11, 16), 7.0)
    ]
    assert table.through == date(2026, 11, 16)


def test_a_missing_column_an_empty_file_and_a_short_row_are_named(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("rep,week,value\n")
    assert problems_of(path) == [
        f"{path}:1: header: missing column metric (expected rep,week,metric,value)"
    ]
    path.write_text("")
    assert problems_of(path) == [f"{path}:1: empty file, expected the header rep,week,metric,value"]
    path.write_text("rep,week,metric,value\nsam@acme.test,2026-11-16,activities\n")
    assert problems_of(path) == [f"{path}:2: 3 cells, the header has 4"]
    assert problems_of(tmp_path / "nope.csv")[0].startswith(f"{tmp_path / 'nope.csv'}: cannot read")


def test_negative_and_non_finite_values_and_bad_dates_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("rep,week,metric,value\n"
                    "sam@acme.test,2026-11-16,activities,-1\n"
                    "sam@acme.test,2026-11-09,activities,nan\n"
                    "sam@acme.test,16/11/2026,activities,3\n")  # fmt: skip
    assert problems_of(path) == [
        f"{path}:2: sam@acme.test: value: not a count, ratio or fraction: '-1'",
        f"{path}:3: sam@acme.test: value: not a count, ratio or fraction: 'nan'",
        f"{path}:4: sam@acme.test: week: not a date: '16/11/2026', expected the week's Monday "
        "as YYYY-MM-DD",
    ]


def test_a_wholly_wrong_file_is_named_by_its_first_problems(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("rep,week,metric,value\n" + "nobody,2026-11-16,activities,1\n" * 500)
    found = problems_of(path)
    assert len(found) == MAX_PROBLEMS + 1
    assert found[-1] == f"{path}: and {500 - MAX_PROBLEMS} more problems"


# --- the cache in the ledger --------------------------------------------------------------------


def setup(tmp_path: Path, text: str) -> tuple[Path, Ledger]:
    (tmp_path / "cadence.yaml").write_text(CONFIG)
    (tmp_path / "metrics.csv").write_text(text)
    return tmp_path / "cadence.yaml", Ledger.open(tmp_path / "state")


def test_the_file_is_read_when_its_bytes_change_and_the_last_good_is_kept(tmp_path: Path) -> None:
    good = "rep,week,metric,value\nsam@acme.test,2026-11-16,activities,40\n"
    path, ledger = setup(tmp_path, good)
    config = load(path)
    source = cache.open_source(config)
    assert source is not None
    try:
        assert cache.refresh(config, ledger, source, NOW)
        assert not cache.refresh(config, ledger, source, NOW + timedelta(days=3))  # same bytes
        (tmp_path / "metrics.csv").write_text(good)  # touched, same content
        assert not cache.refresh(config, ledger, source, NOW)
        weekly = cache.weekly(ledger, source)
        assert weekly.values == {(SAM, Metric.ACTIVITIES): {date(2026, 11, 16): 40.0}}
        assert weekly.through == date(2026, 11, 16) and weekly.source == "metrics.csv"

        (tmp_path / "metrics.csv").write_text(good + "sam@acme.test,2026-11-23,activities,oops\n")
        with pytest.raises(MetricsUnusable):
            cache.refresh(config, ledger, source, NOW)
        assert cache.weekly(ledger, source).values == weekly.values  # last good kept

        (tmp_path / "metrics.csv").write_text(good + "sam@acme.test,2026-11-23,activities,44\n")
        assert cache.refresh(config, ledger, source, NOW)
        again = cache.weekly(ledger, source)
        assert again.values[(SAM, Metric.ACTIVITIES)][date(2026, 11, 23)] == 44.0
        assert again.through == date(2026, 11, 23)
    finally:
        ledger.close()


def test_before_any_read_every_week_is_not_in_yet(tmp_path: Path) -> None:
    path, ledger = setup(tmp_path, "rep,week,metric,value\n")
    config = load(path)
    source = cache.open_source(config)
    assert source is not None
    try:
        weekly = cache.weekly(ledger, source)
        assert weekly.values == {} and weekly.through is None
    finally:
        ledger.close()


def test_rows_of_empty_cells_are_skipped_and_old_weeks_are_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("rep,week,metric,value\n,,,\n"
                    "sam@acme.test,1999-12-27,activities,3\n"
                    "sam@acme.test,1999-12-27,activities,4\n")  # fmt: skip
    assert problems_of(path) == [
        f"{path}:4: sam@acme.test: a second row for activities in the week of 1999-12-27"
    ]


def test_doctor_names_each_metric_the_file_has_no_figures_for(tmp_path: Path) -> None:
    from daemon.metrics.check import check

    path, ledger = setup(tmp_path, "rep,week,metric,value\nsam@acme.test,2026-11-16,activities,4\n")
    ledger.close()
    config = load(path)
    # Sam is a new SDR until 30 Nov (activities), then a ramped one (meetings booked).
    assert check(config, date(2026, 11, 23)) == [
        ("metrics.csv", True, "readable; figures up to the week of 2026-11-16")
    ]
    assert check(config, date(2026, 12, 1))[1:] == [
        ("meetings_booked", False, "no figures in metrics.csv for sam@acme.test")
    ]
    (tmp_path / "metrics.csv").write_text("rep,week\n")
    ((subject, ok, detail),) = check(config, date(2026, 12, 1))
    assert (subject, ok) == ("metrics.csv", False) and "missing column" in detail


def test_cadence_doctor_shows_the_metrics_rows(tmp_path: Path) -> None:
    from daemon.doctor import diagnose

    path, ledger = setup(tmp_path, "rep,week,metric,value\nsam@acme.test,2026-11-16,calls,4\n")
    ledger.close()
    rows = [r for r in diagnose(load(path)) if r.check == "metrics"]
    assert [(r.subject, r.ok) for r in rows] == [("metrics.csv", False)]
    assert "metric: unknown metric 'calls'" in rows[0].detail


# --- the quick reading, a column at a time ------------------------------------------------------

FIRST = date(2026, 1, 5)
WEEKS = [FIRST + timedelta(weeks=w) for w in range(20)]  # more weeks than a table's first stride


def export(dialect: str) -> tuple[str, dict[tuple[str, Metric], dict[date, float]]]:
    """A file of 7 reps x 20 weeks x 5 metrics written as ``dialect`` says, and its values."""
    values: dict[tuple[str, Metric], dict[date, float]] = {}
    lines = [
        "Owner,Value,Metric,Rep,Week" if dialect == "extra column" else "rep,week,metric,value"
    ]
    # By week, so that reps and weeks keep being met; or each rep's rows together, as a report
    # grouped by rep lists them.
    order = [(w, i) for w in range(len(WEEKS)) for i in range(7)]
    if dialect.startswith("by rep"):
        order.sort(key=lambda wi: (wi[1], -wi[0] if "newest" in dialect else wi[0]))
    for w, i in order:
        week = WEEKS[w]
        for m, metric in enumerate(Metric):
            if dialect == "by rep, with gaps" and (i * w + m) % 7 == 3:
                continue  # no such row: each rep's rows in a shape of their own
            value = (i * 7 + w * 3 + m) % 11 / 4
            values.setdefault((f"rep{i}@acme.test", metric), {})[week] = value
            rep, cells = f"rep{i}@acme.test", [week.isoformat(), metric.value, str(value)]
            if dialect == "spelt loosely":
                rep, cells[1] = f" Rep{i}@ACME.test", f"{metric.value.upper()} "
            if dialect == "extra column":
                lines.append(f"boss{i}@acme.test,{value},{metric.value},{rep},{cells[0]}")
            elif dialect == "quoted":
                lines.append(",".join(f'"{c}"' for c in [rep, *cells]))
            else:
                lines.append(",".join([rep, *cells]))
        if dialect == "blank lines" and i == 6:
            lines.append("")
    end = "\r\n" if dialect == "crlf" else "\n"
    return end.join(lines) + end, values


@pytest.mark.parametrize(
    "dialect",
    ["plain", "crlf", "quoted", "spelt loosely", "extra column", "blank lines", "by rep",
     "by rep, newest first", "by rep, with gaps"],
)  # fmt: skip
@pytest.mark.parametrize("chunks", ["many", "one"])
def test_the_quick_reading_gives_every_value_of_any_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dialect: str, chunks: str
) -> None:
    from daemon.metrics import csvfile

    if chunks == "many":  # rows cut nowhere; "one": every rep's rows whole in one chunk
        monkeypatch.setattr(csvfile, "CHUNK", 500)
        monkeypatch.setattr(csvfile, "CSV_CHUNK", 37)
    text, values = export(dialect)
    path = tmp_path / "m.csv"
    path.write_text(text, newline="")

    def careful(self: CsvSource, reps: frozenset[str] | None) -> None:
        raise AssertionError(f"{dialect}: read row by row")

    monkeypatch.setattr(CsvSource, "_rows", careful)
    table = CsvSource(path).read(None)
    assert dict(table) == values and table.through == WEEKS[-1]
    kept = CsvSource(path).read(frozenset({"rep3@acme.test", "nobody@acme.test"}))
    assert dict(kept) == {k: v for k, v in values.items() if k[0] == "rep3@acme.test"}
    assert kept.reps == ("rep3@acme.test",) and kept.through == WEEKS[-1]


def test_a_row_among_another_reps_rows_is_its_reps_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lee's run is as long as Sam's, and begins and ends with Lee, but one of Kim's rows is in
    # it, for a week Lee has no figure for.
    weeks = [f"2026-11-{d}" for d in ("02", "09", "16", "23")]
    rows = [("sam", w) for w in weeks] + [("lee", weeks[0]), ("lee", weeks[1]), ("kim", weeks[3]),
            ("lee", weeks[2])] + [("kim", w) for w in weeks[:3]]  # fmt: skip
    path = tmp_path / "m.csv"
    path.write_text("rep,week,metric,value\n" + "".join(
        f"{who}@acme.test,{week},activities,{i}\n" for i, (who, week) in enumerate(rows)))  # fmt: skip

    def careful(self: CsvSource, reps: frozenset[str] | None) -> None:
        raise AssertionError("read row by row")

    monkeypatch.setattr(CsvSource, "_rows", careful)
    table = CsvSource(path).read(None)
    assert {(rep, week.isoformat()): value for rep, _, week, value in table.rows()} == {
        (f"{who}@acme.test", week): float(i) for i, (who, week) in enumerate(rows)
    }


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        (["sam@acme.test,2026-11-16,activities,3", "SAM@acme.test ,2026-11-16,Activities,4"],
         [":3: sam@acme.test: a second row for activities in the week of 2026-11-16"]),
        (["sam@acme.test,2026-11-16,activities", "4,sam@acme.test,2026-11-16,activities,4"],
         [":2: 3 cells, the header has 4", ":3: 5 cells, the header has 4"]),
        (["sam@acme.test,2026-11-16,activities", "4,sam@acme.test,2026-11-09,activities,4"],
         [":2: 3 cells, the header has 4", ":3: 5 cells, the header has 4"]),
        (['sam@acme.test,2026-11-16,"activities",-3'],
         [":2: sam@acme.test: value: not a count, ratio or fraction: '-3'"]),
        (["sam@acme.test,2026-11-16,activities,1e999"],
         [":2: sam@acme.test: value: not a count, ratio or fraction: '1e999'"]),
        (["sam@acme.test,2026-11-17,activities,3"],
         [":2: sam@acme.test: week: 2026-11-17 is a Tuesday, a week is named by its Monday"]),
    ],
)  # fmt: skip
def test_what_the_quick_reading_stops_at_is_named_by_the_careful_one(
    tmp_path: Path, rows: list[str], said: list[str]
) -> None:
    path = tmp_path / "m.csv"
    good = [f"lee@acme.test,2026-11-{d},win_rate,0.3" for d in ("09", "16")]
    path.write_text("\n".join(["rep,week,metric,value", *rows, *good]) + "\n")
    assert problems_of(path) == [f"{path}{text}" for text in said]


def test_a_table_goes_into_the_ledger_and_back_whole(tmp_path: Path) -> None:
    text, values = export("plain")
    (tmp_path / "m.csv").write_text(text)
    table = CsvSource(tmp_path / "m.csv").read(None)
    again = WeeklyTable.from_bytes(table.to_bytes())
    assert dict(again) == values and again.through == table.through
    assert again.reps == table.reps


def test_a_file_the_quick_reading_stops_at_is_still_read_when_it_is_right(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("rep,week,metric,value\n,,,\nsam@acme.test,2026-11-16,activities,4\n")
    table = CsvSource(path).read(frozenset({SAM}))
    assert dict(table) == {(SAM, Metric.ACTIVITIES): {date(2026, 11, 16): 4.0}}
    assert table.through == date(2026, 11, 16)


# --- the quick reading against the careful one, on files of every kind -------------------------

PEOPLE = ["sam@acme.test", "lee@acme.test", "kim@acme.test", "ana@acme.test"]
VALUES = ["0", "3", "0.25", "12.5", " 7", "1e2", "1_0", "40 "]
WRONG = {  # cells that are wrong
    "value": ["-1", "nan", "inf", "1e999", "x", ""],
    "week": ["2026-01-06", "05/01/2026", ""],
    "metric": ["calls", ""],
    "rep": ["nobody", "", "a b@c.d"],
}
# Lines that are wrong, or right in a way the quick reading does not expect.
LINES = ["short", "long", "break moved", "second row", "lone cr", "empty cells", "spaces"]


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bool]:
    """An export's text, and whether it has something the quick reading may stop at."""
    weeks = draw(st.lists(st.integers(0, len(WEEKS) - 1), min_size=1, max_size=6, unique=True))
    metrics = draw(st.lists(st.sampled_from(list(Metric)), min_size=1, max_size=5, unique=True))
    by_week = draw(st.booleans())  # each week's metrics together, else each metric's weeks
    rows = []
    for p in draw(st.lists(st.integers(0, len(PEOPLE) - 1), min_size=1, unique=True)):
        # Each rep's rows in the order of the others', or weeks or metrics the other way.
        ws = weeks[:: draw(st.sampled_from([1, -1]))]
        ms = metrics[:: draw(st.sampled_from([1, -1]))]
        rows += [(p, w, m) for w in ws for m in ms] if by_week else [
            (p, w, m) for m in ms for w in ws]  # fmt: skip
    gone = draw(st.sets(st.integers(0, len(rows) - 1), max_size=3))
    rows = [row for i, row in enumerate(rows) if i not in gone]
    for _ in range(draw(st.integers(0, 2 if rows else 0))):  # a row among another rep's
        rows.insert(draw(st.integers(0, len(rows))), rows.pop(draw(st.integers(0, len(rows) - 1))))
    if draw(st.booleans()):
        rows = draw(st.permutations(rows))
    extra = draw(st.sampled_from([[], ["owner"]]))
    columns = draw(st.permutations(["rep", "week", "metric", "value", *extra]))
    quoted = draw(st.booleans())
    end = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(draw(st.sampled_from([c, c.upper(), f" {c}"])) for c in columns) + end]
    for p, w, m in rows:
        cells = {
            "rep": draw(st.sampled_from([PEOPLE[p], PEOPLE[p].upper(), f" {PEOPLE[p]}"])),
            "week": WEEKS[w].isoformat(),
            "metric": draw(st.sampled_from([m.value, m.value.upper(), f"{m.value} "])),
            "value": draw(st.sampled_from(VALUES)),
            "owner": '"Boss, The"' if quoted and draw(st.booleans()) else "boss@acme.test",
        }
        lines.append(",".join(cells[c] for c in columns) + end)
    stops = False
    for flaw in draw(st.lists(st.sampled_from([*WRONG, *LINES]), max_size=2)):
        at = draw(st.integers(1, len(lines) - 1)) if len(lines) > 1 else 1
        row = lines[at].removesuffix(end) if at < len(lines) else ""
        if flaw in WRONG and len(cells := row.split(",")) == len(columns):
            cells[columns.index(flaw)] = draw(st.sampled_from(WRONG[flaw]))
            lines[at] = ",".join(cells) + end
        elif flaw in ("short", "long"):
            lines.insert(at, ",".join(["x"] * (len(columns) + (flaw == "long") * 2 - 1)) + end)
        elif flaw == "break moved" and "," in row and at < len(lines) - 1:  # short, then long
            first, last = row.rsplit(",", 1)
            lines[at : at + 2] = [first + end, f"{last},{lines[at + 1]}"]
        elif flaw == "second row" and row:
            lines.insert(at, row + end)
        elif flaw == "lone cr" and row:
            lines[at] = row + "\r"
        elif flaw in ("empty cells", "spaces"):
            lines.insert(at, ("," * (len(columns) - 1) if flaw == "empty cells" else "  ") + end)
        else:
            continue
        stops = True
    for _ in range(draw(st.integers(0, 2))):  # blank lines
        lines.insert(draw(st.integers(1, len(lines))), end)
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.removesuffix(end)
    return ("\ufeff" if draw(st.booleans()) else "") + text, stops


def careful_read(source: CsvSource, reps: frozenset[str] | None) -> WeeklyTable | list[str]:
    from daemon.metrics.base import Grid

    grid = Grid()
    try:
        for rep, metric, week, value in source._rows(reps):
            grid.put(rep, metric, week, value)
    except MetricsUnusable as exc:
        return exc.problems
    return grid.table(source._through)


@settings(max_examples=300, deadline=None)
@given(
    file=files(),
    chunk=st.sampled_from([8, 40, 1 << 20]),
    run=st.sampled_from([1, 8]),
    roster=st.booleans(),
)
def test_the_quick_reading_reads_what_the_careful_one_does(
    tmp_path_factory: pytest.TempPathFactory,
    file: tuple[str, bool],
    chunk: int,
    run: int,
    roster: bool,
) -> None:
    from daemon.metrics import csvfile

    text, stops = file
    path = tmp_path_factory.getbasetemp() / "quick.csv"
    path.write_text(text, newline="")
    source = CsvSource(path)
    reps = frozenset(PEOPLE[1:]) if roster else None
    expected = careful_read(source, reps)
    with (
        patch.object(csvfile, "CHUNK", chunk),
        patch.object(csvfile, "CSV_CHUNK", chunk),
        patch.object(csvfile, "RUN", run),  # 1: even a chunk of short runs, a rep at a time
    ):
        try:
            got: WeeklyTable | list[str] = source.read(reps)
        except MetricsUnusable as exc:
            got = exc.problems
        if isinstance(expected, list):
            assert got == expected
            return
        assert isinstance(got, WeeklyTable)
        assert dict(got) == dict(expected) and got.through == expected.through
        assert sorted(got.reps) == sorted(expected.reps)
        if not stops:  # a right file, however written, is read a column at a time
            try:
                source._columns(reps, quoted=False)
            except csvfile._Quoted:
                source._columns(reps, quoted=True)
