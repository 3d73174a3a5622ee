"""When does a running daemon switch roster? Real files, the real loader, no daemon."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import Config, load
from daemon.roster_watch import Outcome, RosterWatch

YAML = """\
organization: {name: Acme, timezone: America/New_York}
managers:
  - {email: maya@acme.test, name: Maya Chen, timezone: America/Chicago}
reps: roster.csv
interval_seconds: 60
"""
HEADER = "email,name,role,start_date,manager\n"
SAM = "sam@acme.test,Sam Ortiz,sdr,2026-09-01,maya@acme.test\n"
ZOE = "zoe@acme.test,Zoe Adams,ae,2026-11-16,maya@acme.test\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config, roster = tmp_path / "cadence.yaml", tmp_path / "roster.csv"
    config.write_text(YAML)
    roster.write_text(HEADER + SAM)
    return config, roster


def counting(calls: list[Path]) -> Callable[[Path], Config]:
    def loader(path: Path) -> Config:
        calls.append(path)
        return load(path)

    return loader


def reps(config: Config) -> list[str]:
    return [r.email for r in config.roster.reps]


def test_unchanged_files_are_not_read_again(files: tuple[Path, Path]) -> None:
    calls: list[Path] = []
    watch = RosterWatch(load(files[0]), counting(calls))
    for _ in range(3):
        check = watch.check()
        assert check.outcome is Outcome.UNCHANGED and reps(check.config) == ["sam@acme.test"]
    assert calls == []


def test_a_rep_appended_to_the_csv_is_switched_to(files: tuple[Path, Path]) -> None:
    config, roster = files
    watch = RosterWatch(load(config))
    roster.write_text(HEADER + SAM + ZOE)
    check = watch.check()
    assert check.outcome is Outcome.SWITCHED
    assert reps(check.config) == ["sam@acme.test", "zoe@acme.test"]
    assert check.restart_needed == ()
    assert watch.check().outcome is Outcome.UNCHANGED


def test_an_invalid_edit_keeps_the_last_good_roster_until_fixed(files: tuple[Path, Path]) -> None:
    config, roster = files
    calls: list[Path] = []
    watch = RosterWatch(load(config), counting(calls))
    roster.write_text(HEADER + SAM + ZOE.replace("2026-11-16", "2026-11-31"))

    check = watch.check()
    assert check.outcome is Outcome.INVALID
    assert reps(check.config) == ["sam@acme.test"]  # the last good roster
    (problem,) = check.problems
    assert problem.startswith(f"{roster}:3: reps[1] (zoe@acme.test): start_date")
    # The same broken content is not parsed again, and is still reported.
    again = watch.check()
    assert again.outcome is Outcome.INVALID and again.problems == check.problems
    assert len(calls) == 1

    roster.write_text(HEADER + SAM + ZOE)
    fixed = watch.check()
    assert fixed.outcome is Outcome.SWITCHED and fixed.problems == ()
    assert reps(fixed.config) == ["sam@acme.test", "zoe@acme.test"]


def test_an_invalid_edit_undone_is_back_to_the_last_good(files: tuple[Path, Path]) -> None:
    config, _ = files
    watch = RosterWatch(load(config))
    config.write_text(YAML.replace("reps: roster.csv", "reps: [oops"))
    broken = watch.check()
    assert broken.outcome is Outcome.INVALID
    assert broken.problems[0].startswith(f"{config}:")
    config.write_text(YAML)
    assert watch.check().outcome is Outcome.FIXED
    assert watch.check().outcome is Outcome.UNCHANGED


def test_a_file_missing_for_one_look_is_an_editor_saving(files: tuple[Path, Path]) -> None:
    config, roster = files
    watch = RosterWatch(load(config))
    moved = roster.with_suffix(".bak")
    roster.rename(moved)  # the editor moved the old file away, the new one is not written yet
    assert watch.check().outcome is Outcome.UNCHANGED
    moved.rename(roster)
    assert watch.check().outcome is Outcome.UNCHANGED

    roster.unlink()  # really gone: said on the second look
    assert watch.check().outcome is Outcome.UNCHANGED
    gone = watch.check()
    assert gone.outcome is Outcome.INVALID and reps(gone.config) == ["sam@acme.test"]
    assert str(roster) in gone.problems[0] and "cannot read" in gone.problems[0]


def test_settings_changes_wait_for_a_restart_the_roster_does_not(
    files: tuple[Path, Path],
) -> None:
    config, roster = files
    watch = RosterWatch(load(config))
    config.write_text(YAML.replace("interval_seconds: 60", "interval_seconds: 30"))
    roster.write_text(HEADER + SAM + ZOE)
    check = watch.check()
    assert check.outcome is Outcome.SWITCHED
    assert check.restart_needed == ("interval_seconds",)
    assert check.config.settings.interval_seconds == 60  # the running value
    assert reps(check.config) == ["sam@acme.test", "zoe@acme.test"]
