"""What an admin sees when the config is wrong: every problem, with file, line, entry, field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config import load
from daemon.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "cadence.yaml"
HEAD = """\
organization: {name: Acme, timezone: America/New_York}
managers:
  - {email: maya@acme.test, name: Maya Chen, timezone: America/Chicago}
reps:
"""


def write(tmp_path: Path, body: str, head: str = HEAD) -> Path:
    path = tmp_path / "cadence.yaml"
    path.write_text(head + textwrap.dedent(body))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args], capture_output=True, text=True, cwd=REPO
    )


def test_every_problem_is_reported_at_once_with_line_entry_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-02-30, manager: maya@acme.test}
      - {email: ana@acme.test, name: Ana, role: cto, start_date: 2026-01-01, manager: maya@acme.test}
      - {email: Sam@acme.test, name: Sam2, role: ae, start_date: 2026-01-01, manager: bob@acme.test}
      - {email: lee@acme.test, name: Lee, role: ae, start_date: 2026-01-01, manager: maya@acme.test,
         timezone: Mars/Base, slot: {day: tue, time: "9am"}, colour: red}
      - {email: maya@acme.test, name: Maya, role: ae, start_date: 2026-01-01, manager: maya@acme.test}
    """)  # fmt: skip
    found = problems(path)
    expected = [
        (5, "reps[0] (sam@acme.test): start_date: bad date '2026-02-30'"),
        (6, "reps[1] (ana@acme.test): role: unknown value 'cto'"),
        (7, "reps[2] (Sam@acme.test): email: duplicate email 'sam@acme.test'"),
        (7, "reps[2] (Sam@acme.test): manager: unknown manager 'bob@acme.test'"),
        (9, "reps[3] (lee@acme.test): timezone: unknown time zone 'Mars/Base'"),
        (9, "reps[3] (lee@acme.test): slot.time: malformed time '9am'"),
        (9, "reps[3] (lee@acme.test): colour: unknown key"),
        (10, "reps[4] (maya@acme.test): manager: 'maya@acme.test' is listed as their own manager"),
    ]
    for line, text in expected:
        assert any(p.startswith(f"{path}:{line}: {text}") for p in found), (text, found)
    assert len(found) == len(expected)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "  - {email: sam@acme.test, name: [Sam\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:6: YAML syntax error")


def test_malformed_slot_and_unknown_day(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-09-01,
         manager: maya@acme.test, slot: {day: funday, time: "10:00"}}
    """)  # fmt: skip
    (problem,) = problems(path)
    assert "slot.day: unknown day 'funday'" in problem


def test_csv_roster_errors_name_the_csv_line(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text(
        "email,name,role,start_date,manager,timezone,slot,forecast_within_5pct\n"
        "sam@acme.test,Sam,sdr,2026-09-01,maya@acme.test,,tue 10:00,\n"
        "ana@acme.test,Ana,senior_ae,2021-03-15,maya@acme.test,,tuesday,maybe\n"
    )
    path = write(tmp_path, "", head=HEAD.replace("reps:\n", "reps: roster.csv\n"))
    found = problems(path)
    csv = tmp_path / "roster.csv"
    assert any(p.startswith(f"{csv}:3: reps[1] (ana@acme.test): slot: ") for p in found), found
    assert any(p.startswith(f"{csv}:3: reps[1] (ana@acme.test): forecast_within_5pct")
               for p in found), found  # fmt: skip


def test_anchors_and_merge_keys_read_as_yaml_says(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - &sam {email: sam@acme.test, name: Sam, role: ae, start_date: 2026-01-05,
              manager: maya@acme.test, slot: &tue {day: tue, time: "10:00"}}
      - <<: *sam
        email: lee@acme.test
        name: Lee
      - {email: ana@acme.test, name: Ana, role: sdr, start_date: 2026-09-01,
         manager: maya@acme.test, slot: *tue, forecast_within_5pct: no}
    """)  # fmt: skip
    sam, lee, ana = load(path).roster.reps
    assert (lee.email, lee.name, lee.role, lee.start_date) == (
        "lee@acme.test", "Lee", sam.role, sam.start_date,
    )  # fmt: skip
    assert sam.slot == lee.slot == ana.slot
    assert ana.slot is not None and ana.slot.label() == "tue 10:00"
    assert ana.forecast_within_5pct is False


def test_a_yaml_tag_cadence_cannot_read_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: sam@acme.test, name: Sam, role: ae, start_date: 2026-01-05,
         manager: maya@acme.test}
      - {email: lee@acme.test, name: !!python/name:os.system Lee, role: ae,
         start_date: 2026-01-05, manager: maya@acme.test}
    """)  # fmt: skip
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:7: YAML syntax error: could not determine a constructor")


def test_a_yaml_tag_whose_value_does_not_convert_is_one_clear_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: sam@acme.test, name: Sam, role: ae, start_date: 2026-01-05,
         manager: maya@acme.test, quarterly_quota: !!int abc}
    """)  # fmt: skip
    (problem,) = problems(path)
    assert problem == (
        f"{path}: a tagged value YAML cannot convert: invalid literal for int() with base 10: 'abc'"
    )


def test_the_csv_roster_gives_the_same_plan_as_the_yaml_list(tmp_path: Path) -> None:
    shutil.copy(REPO / "config" / "roster.csv", tmp_path / "roster.csv")
    shutil.copy(REPO / "config" / "metrics.csv", tmp_path / "metrics.csv")
    text = EXAMPLE.read_text()
    head, _, tail = text.partition("\nreps:\n")
    body = tail[tail.index("\n# policy") :]
    (tmp_path / "cadence.yaml").write_text(head + "\nreps: roster.csv\n" + body)
    at = "2026-11-22T09:00:00-05:00"
    from_yaml = cli("plan", "--config", str(EXAMPLE), "--at", at, "--json")
    from_csv = cli("plan", "--config", str(tmp_path / "cadence.yaml"), "--at", at, "--json")
    assert from_yaml.returncode == 0 and from_csv.returncode == 0, from_csv.stderr
    assert json.loads(from_yaml.stdout) == json.loads(from_csv.stdout)


def test_warnings_for_span_of_control_and_no_common_hours(tmp_path: Path) -> None:
    reps = "".join(
        f"  - {{email: r{i}@acme.test, name: R{i}, role: ae, start_date: 2025-01-06, "
        f"manager: maya@acme.test}}\n"
        for i in range(9)
    )
    reps += ("  - {email: kyo@acme.test, name: Kyo, role: ae, start_date: 2025-01-06, "
             "manager: maya@acme.test, timezone: Asia/Tokyo}\n")  # fmt: skip
    path = write(tmp_path, reps)
    config = load(path, now=datetime(2026, 11, 22, tzinfo=UTC))
    assert any("maya@acme.test has 10 reps" in w for w in config.warnings)
    assert any("kyo@acme.test" in w and "working hours" in w for w in config.warnings)


def test_cli_validate_exit_codes_and_stderr(tmp_path: Path) -> None:
    ok = cli("validate", "--config", str(EXAMPLE))
    assert ok.returncode == 0 and "valid: 3 managers, 10 reps" in ok.stdout
    bad = write(tmp_path, "  - {email: sam@acme.test, name: Sam, role: cto, start_date: x, "
                          "manager: nobody@acme.test}\n")  # fmt: skip
    result = cli("validate", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{bad}:5: reps[0]") for line in lines)
    assert "Traceback" not in result.stderr
    missing = cli("validate", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_plan_json_matches_the_spec_example() -> None:
    result = cli("plan", "--config", str(EXAMPLE), "--at", "2026-11-22T09:00:00-05:00", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["at"] == "2026-11-22T09:00:00-05:00"
    sam = next(s for s in data["series"] if s["rep"] == "sam@acme.test")
    assert {k: sam[k] for k in ("manager", "stage", "interval_weeks", "days", "duration_minutes",
                                "timezone", "rrule", "until", "next_stage")} == {
        "manager": "maya@acme.test", "stage": "new_sdr", "interval_weeks": 1,
        "days": ["tue", "thu"], "duration_minutes": 25, "timezone": "America/Denver",
        "rrule": "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH", "until": "2026-11-29",
        "next_stage": {"stage": "ramped_sdr", "on": "2026-11-30"},
    }  # fmt: skip
    first = sam["upcoming"][0]
    assert first["start"] == "2026-11-24T10:00:00-07:00"
    assert (first["week_of_quarter"], first["week11"], first["template"]) == (4, False, "coaching")
    # The example's metrics.csv: Sam's activities in the week of 16 Nov against the 4 before.
    rows = [line.split(",") for line in (REPO / "config" / "metrics.csv").read_text().splitlines()]
    mine = {r[1]: float(r[3]) for r in rows if r[0] == "sam@acme.test" and r[2] == "activities"}
    before = [mine[w] for w in ("2026-10-19", "2026-10-26", "2026-11-02", "2026-11-09")]
    baseline = sum(before) / 4
    assert first["number"] == {
        "metric": "activities", "week": "2026-11-16", "value": mine["2026-11-16"],
        "baseline": baseline, "change": round((mine["2026-11-16"] - baseline) / baseline, 3),
    }  # fmt: skip
    assert all(len(s["upcoming"]) >= 8 for s in data["series"])


def test_plan_table_is_readable_and_bad_at_is_one_line() -> None:
    table = cli("plan", "--config", str(EXAMPLE), "--at", "2026-11-22T09:00:00-05:00")
    assert table.returncode == 0
    assert "sam@acme.test" in table.stdout and "Tue/Thu 10:00 weekly" in table.stdout
    bad = cli("plan", "--config", str(EXAMPLE), "--at", "next tuesday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "ISO-8601" in bad.stderr


def test_the_readme_shows_the_plan_the_example_config_really_gives() -> None:
    readme = (REPO / "README.md").read_text()
    command = "$ cadence plan --config config/cadence.yaml --at 2026-11-22T09:00:00-05:00\n"
    shown = readme.split(command, 1)[1].split("```", 1)[0]
    result = cli("plan", "--config", "config/cadence.yaml", "--at", "2026-11-22T09:00:00-05:00")
    assert result.stdout == shown


@pytest.mark.parametrize(
    ("listen", "address"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)),
     ("status.internal:80", ("status.internal", 80))],
)  # fmt: skip
def test_the_status_endpoint_listens_where_the_config_says(
    tmp_path: Path, listen: str, address: tuple[str, int]
) -> None:
    path = write(tmp_path, f"  []\nhttp: {{listen: '{listen}'}}\n")
    http = load(path).settings.http
    assert http is not None and http.address == address


def test_a_status_listen_without_a_port_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "  []\nhttp: {listen: localhost}\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:6:") and "http.listen" in problem


def test_prep_needs_a_listen_address_and_a_public_url_and_defaults_its_check(
    tmp_path: Path,
) -> None:
    rep = "  - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-09-01, manager: maya@acme.test}\n"
    ok = load(
        write(tmp_path, rep + "prep: {listen: '0.0.0.0:8080', public_url: 'https://c.acme.com/'}\n")
    )
    assert ok.settings.prep is not None and ok.settings.prep.check_hours == 2
    assert ok.settings.prep.address == ("0.0.0.0", 8080)
    assert ok.settings.prep.link("abc") == "https://c.acme.com/prep/abc"
    found = problems(
        write(
            tmp_path, rep + "prep: {listen: 'nowhere', public_url: 'c.acme.com', check_hours: -1}\n"
        )
    )
    fields = [p.split(":6: ", 1)[1].split(":", 1)[0] for p in found]
    assert fields == ["prep.listen", "prep.public_url", "prep.check_hours"], found


def test_without_a_metrics_source_plan_json_has_a_null_number(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    head, _, tail = text.partition("\nmetrics:")
    rest = tail[tail.index("\n# templates") :]
    (tmp_path / "cadence.yaml").write_text(head + rest)
    result = cli("plan", "--config", str(tmp_path / "cadence.yaml"), "--at",
                 "2026-11-22T09:00:00-05:00", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    upcoming = [u for s in json.loads(result.stdout)["series"] for u in s["upcoming"]]
    assert upcoming and all(u["number"] is None for u in upcoming)


def test_validate_names_each_bad_metrics_row_by_file_line_and_field(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "cadence.yaml")
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "rep,week,metric,value\n"
        "sam@acme.test,2026-11-16,activities,40\n"
        "sam@acme.test,2026-11-17,activities,41\n"  # a Tuesday
        "sam@acme.test,2026-11-09,calls,3\n"
        "sam@acme.test,2026-11-09,activities,lots\n"
        "sam@acme.test,2026-11-16,activities,40\n"  # a second row for the same week
        "someone.else@acme.test,2026-11-16,activities,7\n"  # not on the roster: ignored
    )
    result = cli("validate", "--config", str(tmp_path / "cadence.yaml"))
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{metrics}:3: sam@acme.test: week: 2026-11-17 is a Tuesday, a week is named by its Monday",
        f"{metrics}:4: sam@acme.test: metric: unknown metric 'calls', expected one of activities, "
        "meetings_booked, pipeline_coverage, win_rate, forecast_accuracy",
        f"{metrics}:5: sam@acme.test: value: not a number: 'lots'",
        f"{metrics}:6: sam@acme.test: a second row for activities in the week of 2026-11-16",
    ]
    plan = cli("plan", "--config", str(tmp_path / "cadence.yaml"), "--json")
    assert plan.returncode == 2 and f"{metrics}:3:" in plan.stderr


def test_quarterly_quota_is_an_optional_positive_roster_field(tmp_path: Path) -> None:
    ok = write(tmp_path, "  - {email: lee@acme.test, name: Lee, role: ae, start_date: 2026-07-01, "
                         "manager: maya@acme.test, quarterly_quota: 240000}\n")  # fmt: skip
    (lee,) = load(ok).roster.reps
    assert lee.quarterly_quota == 240000
    bad = write(tmp_path, "  - {email: lee@acme.test, name: Lee, role: ae, start_date: 2026-07-01, "
                          "manager: maya@acme.test, quarterly_quota: -5}\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load(bad)
    assert any("quarterly_quota" in p for p in caught.value.problems)


@pytest.mark.parametrize(
    ("entry", "field", "expected"),
    [
        ('name: "Sam\\nOrtiz"', "name", "contains a control character (U+000A)"),
        ('name: "Sam\\tOrtiz"', "name", "contains a control character (U+0009)"),
        ('name: "Sam\\u202eztrO"', "name", "contains a control character (U+202E)"),
        ("name: " + "S" * 201, "name", "201 characters, more than 200"),
        ('manager: "maya@acme.test, bob@acme.test"', "manager", "is not an email address"),
        ('manager: "maya@acme"', "manager", "is not an email address"),
        ('manager: "(x)maya@acme.test"', "manager", "is not an email address"),
        # the email package's parser trips over an unclosed domain literal (AttributeError)
        ('manager: "maya@[acme.test"', "manager", "is not an email address"),
        ('manager: "maya@acme.test\\r\\nBcc: all@acme.test"', "manager",
         "contains a control character (U+000D)"),
        ("manager: " + "m" * 250 + "@acme.test", "manager", "260 characters, more than 254"),
    ],
)  # fmt: skip
def test_peoples_text_that_would_break_an_email_or_invite_is_one_clear_line(
    tmp_path: Path, entry: str, field: str, expected: str
) -> None:
    fields = {"name": "name: Sam", "manager": "manager: maya@acme.test"}
    fields[field] = entry
    path = write(
        tmp_path,
        f"  - {{email: sam@acme.test, {fields['name']}, role: sdr, start_date: 2026-01-01,\n"
        f"     {fields['manager']}}}\n",
    )
    (line,) = problems(path)  # one line, not one per rule it breaks
    at = 5 if field == "name" else 6  # the field's own line
    assert line.startswith(f"{path}:{at}: reps[0] (sam@acme.test): {field}: ")
    assert expected in line
    assert "\n" not in line and "\r" not in line


def test_an_email_with_a_line_break_is_named_without_it(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: "sam@acme.test\\nX: y", name: Sam, role: sdr, start_date: 2026-01-01,
         manager: maya@acme.test}
    """)  # fmt: skip
    assert problems(path) == [f"{path}:5: reps[0]: email: contains a control character (U+000A)"]


def test_a_control_character_in_a_csv_roster_names_the_csv_line(tmp_path: Path) -> None:
    roster = tmp_path / "reps.csv"
    roster.write_text(
        "email,name,role,start_date,manager\n"
        "sam@acme.test,Sam,sdr,2026-01-01,maya@acme.test\n"
        'lee@acme.test,"Lee\x1bPark",ae,2026-01-01,maya@acme.test\n'
    )
    path = write(tmp_path, "", head=HEAD.replace("reps:\n", "reps: reps.csv\n"))
    assert problems(path) == [
        f"{roster}:3: reps[1] (lee@acme.test): name: contains a control character (U+001B);"
        " names go into email subjects and invites, so keep them to one plain line"
    ]


def test_organisation_and_manager_names_are_checked_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-01-01,"
        " manager: maya@acme.test}\n",
        head='organization: {name: "Acme\\u0000", timezone: UTC}\nmanagers:\n'
        '  - {email: maya@acme.test, name: "Maya\\u2028Chen", escalate_to: "vp at acme"}\n'
        "reps:\n",
    )
    found = problems(path)
    assert [p.split(": ", 2)[1:] for p in found] == [
        ["organization", found[0].split(": ", 2)[2]],
        ["managers[0] (maya@acme.test)", found[1].split(": ", 2)[2]],
        ["managers[0] (maya@acme.test)", found[2].split(": ", 2)[2]],
    ]
    assert "name: contains a control character (U+0000)" in found[0]
    assert "name: contains a control character (U+2028)" in found[1]
    assert "escalate_to: 'vp at acme' is not an email address" in found[2]


def test_names_people_really_have_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: jo@acme.test, name: "Jo Ñúñez-O'Brien", role: ae, start_date: 2026-01-01,
         manager: maya@acme.test}
      - {email: priya@acme.test, name: "प्रिया शर्मा", role: sdr, start_date: 2026-01-01,
         manager: maya@acme.test}
      - {email: kai.tanaka+1on1@sub.acme.co.uk, name: 田中 快, role: ae, start_date: 2026-01-01,
         manager: maya@acme.test}
    """)  # fmt: skip
    assert [r.name for r in load(path).roster.reps][0] == "Jo Ñúñez-O'Brien"


def test_pipeline_review_problems_name_the_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """\
      - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-09-01,
         manager: maya@acme.test}
    pipeline_review:
      mode: weekly
      day: funday
      vp: not-an-email
    """)  # fmt: skip
    found = problems(path)
    assert any(":8: pipeline_review: mode: " in p for p in found), found
    assert any(":9: pipeline_review: day: unknown day 'funday'" in p for p in found), found
    assert any(":10: pipeline_review: vp: " in p for p in found), found


def test_pipeline_review_off_is_read_as_off_and_defaults_follow_the_mode(tmp_path: Path) -> None:
    rep = "  - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-09-01, manager: maya@acme.test}\n"  # noqa: E501
    off = load(write(tmp_path, rep + "pipeline_review: {mode: off}\n")).roster.pipeline_review
    assert not off.on
    per_rep = load(write(tmp_path, rep + "pipeline_review: {mode: rep}\n")).roster.pipeline_review
    assert (per_rep.minutes, per_rep.day, str(per_rep.time)) == (20, 0, "09:00:00")


def test_timeouts_default_to_the_clients_values_and_must_be_positive(tmp_path: Path) -> None:
    body = "  - {email: sam@acme.test, name: Sam, role: sdr, start_date: 2026-01-01, manager: maya@acme.test}\n"
    settings = load(write(tmp_path, body)).settings
    assert settings.calendar.caldav.connect_timeout_seconds == 10
    assert settings.calendar.caldav.read_timeout_seconds == 10
    path = write(tmp_path, body + textwrap.dedent("""\
        calendar:
          caldav: {url: 'http://127.0.0.1:5232/', connect_timeout_seconds: 0, read_timeout_seconds: 2.5}
          google: {credentials_file: key.json, timeout_seconds: 601}
        mail: {transport: smtp, smtp: {host: mail.acme.test, read_timeout_seconds: slow}}
    """))  # fmt: skip
    found = problems(path)
    assert any(
        ":7: calendar.caldav.connect_timeout_seconds: Input should be greater than 0" in p
        for p in found
    ), found
    assert any(":8: calendar.google.timeout_seconds: Input should be less than or equal to 600"
               in p for p in found), found  # fmt: skip
    assert any(":9: mail.smtp.read_timeout_seconds: Input should be a valid number" in p
               for p in found), found  # fmt: skip
    assert len(found) == 3
