"""``cadence doctor`` and bad Google input at start-up: one row (or one line) per problem that
an admin can act on, and nothing written."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from daemon import logs
from tests.system.harness import Deployment, GoogleDeployment, OutlookDeployment
from tests.system.test_series_lifecycle import T0, setup


def test_doctor_on_a_good_setup_is_all_ok_and_writes_nothing(deployment: Deployment) -> None:
    maya, raj = setup(deployment)
    for manager in (maya, raj):  # calendars in place (Google: the primary calendar always is)
        deployment.provider().ensure_calendar(manager)
    result = deployment.cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "SUBJECT", "RESULT", "DETAIL"]
    assert lines[-1] == "all good"
    for manager in (maya, raj):
        rows = [line for line in lines if f" {manager} " in f" {line} "]
        assert {line.split()[0] + " " + line.split()[1] for line in rows} >= {
            "calendar reachable",
            "calendar writable",
        }
    assert deployment.series(maya) == {} and deployment.series(raj) == {}
    if isinstance(deployment, GoogleDeployment):
        assert deployment.fake.events(maya) == {}
    elif isinstance(deployment, OutlookDeployment):
        assert deployment.fake.live_events(maya) == [] and deployment.fake.sent == []
    else:
        with pytest.raises(Exception, match="404"):
            deployment.get_raw(maya, "cadence-doctor-probe")


def test_doctor_names_the_manager_without_delegation_and_what_to_grant(
    deployment: Deployment,
) -> None:
    if not isinstance(deployment, GoogleDeployment):
        pytest.skip("delegation is Google's")
    maya, raj = setup(deployment)
    deployment.fake.no_delegation.add(raj)
    result = deployment.cli("doctor")
    assert result.returncode == 1
    (failed,) = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert raj in failed and "domain-wide delegation" in failed and "calendar.events" in failed
    assert result.stdout.splitlines()[-1] == "1 to fix"


def test_doctor_checks_the_gmail_sender(deployment: Deployment) -> None:
    if not isinstance(deployment, GoogleDeployment):
        pytest.skip("gmail goes with Google")
    setup(deployment, mail=f"transport: gmail, gmail: {{api_endpoint: '{deployment.url}'}}")
    deployment.fake.users.discard("cadence@acme.test")  # the mail.from mailbox, not there yet
    result = deployment.cli("doctor")
    assert result.returncode == 1
    (failed,) = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert "gmail send" in failed and "cadence@acme.test" in failed and "no mailbox" in failed
    deployment.fake.add_user("cadence@acme.test")
    assert deployment.cli("doctor").returncode == 0


def test_doctor_reports_an_unreachable_calendar(deployment: Deployment) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    deployment.break_calendar(port)
    setup(deployment)
    result = deployment.cli("doctor")
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(failed) == 2 and all(f"127.0.0.1:{port}" in line for line in failed)


@pytest.mark.parametrize("deployment", ["google"], indirect=True)
@pytest.mark.parametrize("problem", ["world-readable", "missing", "not a key"])
def test_an_unusable_key_file_is_one_line_and_exit_2(deployment: Deployment, problem: str) -> None:
    assert isinstance(deployment, GoogleDeployment)
    maya, _ = setup(deployment)
    if problem == "world-readable":
        deployment.key_file.chmod(0o644)
    elif problem == "missing":
        deployment.key_file.unlink()
    else:
        deployment.key_file.write_text("{}")
    result = deployment.cli("once")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "calendar.google.credentials_file" in line and str(deployment.key_file) in line
    assert deployment.fake.events(maya) == {}
    doctor = deployment.cli("doctor")
    assert doctor.returncode == 1 and "calendar settings" in doctor.stdout


@pytest.mark.parametrize("deployment", ["google"], indirect=True)
def test_a_key_of_another_project_stops_the_start_with_one_line(
    deployment: Deployment,
) -> None:
    assert isinstance(deployment, GoogleDeployment)
    maya, raj = setup(deployment)
    deployment.fake.write_key(deployment.key_file, other_key=True)
    for command in ("once", "run"):
        result = deployment.cli(command)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert str(deployment.key_file) in line and "another project" in line
    assert deployment.fake.events(maya) == {} and deployment.fake.events(raj) == {}


@pytest.mark.parametrize("deployment", ["google"], indirect=True)
def test_a_manager_without_a_mailbox_is_skipped_and_the_others_go_on(
    deployment: Deployment,
) -> None:
    assert isinstance(deployment, GoogleDeployment)
    maya, raj = setup(deployment)
    deployment.fake.users.discard(raj)
    result = deployment.once(T0)
    assert any(raj in e and "no mailbox" in e for e in result.errors)
    assert len(deployment.series(maya)) == 4


@pytest.mark.parametrize("deployment", ["google"], indirect=True)
def test_a_manager_without_delegation_is_told_once_and_its_recovery_once(
    deployment: Deployment,
) -> None:
    assert isinstance(deployment, GoogleDeployment)
    maya, raj = setup(deployment)
    deployment.fake.no_delegation.add(raj)
    stream = io.StringIO()
    logs.configure(stream=stream, json=True)
    try:
        passes = [deployment.once(T0 + timedelta(hours=h)) for h in range(3)]
        deployment.fake.no_delegation.discard(raj)
        passes += [deployment.once(T0 + timedelta(hours=h)) for h in range(3, 5)]
    finally:
        logs.configure()
    about_raj = [
        event["event"]
        for event in map(json.loads, stream.getvalue().splitlines())
        if raj in json.dumps(event) and event.get("level") in ("warning", "error", "info")
        and event["event"] != "email sent"
    ]  # fmt: skip
    assert about_raj == ["calendar unreadable", "admin alert", "admin alert cleared"]
    assert all(any(raj in e for e in p.errors) for p in passes[:3])  # `once` still says it
    assert all(p.errors == [] for p in passes[3:])
    assert len(deployment.series(maya)) == 4  # the other manager went on all along
