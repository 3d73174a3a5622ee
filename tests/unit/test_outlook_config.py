"""calendar.provider: outlook in the config: the example loads, and bad input is one line."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from daemon.config import load
from daemon.errors import ConfigError
from daemon.reconcile import open_calendar

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "outlook.example.yaml"


def test_the_outlook_example_loads() -> None:
    config = load(EXAMPLE)
    assert config.settings.calendar.provider == "outlook"
    outlook = config.settings.calendar.outlook
    assert outlook is not None and outlook.graph_endpoint == "https://graph.microsoft.com"
    assert config.settings.mail.transport == "graph"


def _with(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "cadence.yaml"
    text = EXAMPLE.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("key", ["authority_host", "graph_endpoint"])
def test_an_endpoint_that_is_not_https_is_one_line(tmp_path: Path, key: str) -> None:
    old = f"{key}: https://"
    with pytest.raises(ConfigError) as raised:
        load(_with(tmp_path, old, f"{key}: http://"))
    [problem] = raised.value.problems
    assert f"calendar.outlook.{key}: must be an https:// URL" in problem
    assert problem.startswith(f"{tmp_path / 'cadence.yaml'}:")


def test_outlook_without_its_section_says_what_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "cadence.yaml"
    text = EXAMPLE.read_text()
    path.write_text(text[: text.index("calendar:")] + "calendar: {provider: outlook}\n")
    with pytest.raises(ConfigError, match="provider outlook needs calendar.outlook"):
        load(path)


def test_a_roster_zone_graph_cannot_take_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADENCE_GRAPH_SECRET", "s")
    path = _with(tmp_path, "timezone: America/Denver", "timezone: Antarctica/Troll")
    with pytest.raises(ConfigError) as raised, ExitStack() as stack:
        open_calendar(load(path), stack)
    [problem] = raised.value.problems
    assert "reps (sam@acme.com): timezone: 'Antarctica/Troll' has no Windows name" in problem


def test_a_missing_client_secret_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADENCE_GRAPH_SECRET", raising=False)
    with pytest.raises(ConfigError, match="CADENCE_GRAPH_SECRET"), ExitStack() as stack:
        open_calendar(load(EXAMPLE), stack)
