"""What people read: agendas and emails rendered from the real templates, an admin's overrides,
and the problems a broken template reports before anything is sent."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.core.agenda import COMMITMENT_LABEL, blocks_for, read_commitment, splice, wrap
from daemon.errors import TemplateProblem
from daemon.render import (
    BUILTIN_DIR,
    EMAIL_KINDS,
    PAGES,
    SAMPLES,
    RenderedEmail,
    Renderer,
    _check_contexts,
)

ROOT = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script>"
CAREER_QUESTIONS = (
    "Where do you want to be in 12 months — title, comp, kind of work?",
    "Which skill, if you doubled it in the next 90 days, would compound the most toward that?",
    "Who in the company should I put you in front of this month?",
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def line_of(template: str, needle: str) -> int:
    lines = (BUILTIN_DIR / template).read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, start=1) if needle in text)


def assert_well_formed(html: str) -> ET.Element:
    root = ET.fromstring(html)  # noqa: S314 - our own output; raises on a mismatched tag
    assert root.tag == "html"
    assert root.find("body") is not None
    assert not list(root.iter("script"))
    return root


# --- emails -------------------------------------------------------------------------------------


def test_built_in_templates_pass_the_startup_check(renderer: Renderer) -> None:
    renderer.check()


@pytest.mark.parametrize("kind,ctx", [(k, c) for k, c in _check_contexts() if k in EMAIL_KINDS])
def test_every_email_is_well_formed_html_with_a_one_line_subject(
    renderer: Renderer, kind: str, ctx: dict[str, object]
) -> None:
    email = renderer.email(kind, ctx)
    assert isinstance(email, RenderedEmail)
    assert email.subject and "\n" not in email.subject and email.subject == email.subject.strip()
    root = assert_well_formed(email.html)
    assert root.findtext("head/title") == email.subject
    assert email.text.strip()
    assert "<" not in email.text  # the plain part is plain


def test_typed_script_in_commitments_names_and_reasons_is_escaped_in_html(
    renderer: Renderer,
) -> None:
    evil = {"name": XSS, "first_name": XSS, "email": "evil@acme.test"}
    cases: list[tuple[str, dict[str, object]]] = []
    for kind in EMAIL_KINDS:
        ctx = dict(SAMPLES[kind])
        ctx["manager"] = evil
        if "rep" in ctx:
            ctx["rep"] = evil
        for key in ("commitment", "last_commitment", "reason", "scope", "escalate_to", "summary"):
            if key in ctx:
                ctx[key] = XSS
        if "details" in ctx:  # an admin alert quotes the roster lines a person wrote
            ctx["details"] = [XSS]
        cases.append((kind, ctx))
    for kind, ctx in cases:
        email = renderer.email(kind, ctx)
        assert "&lt;script&gt;" in email.html, kind
        assert "<script" not in email.html, kind
        assert_well_formed(email.html)
        # The plain-text part shows what the person typed, as typed.
        assert XSS in email.text or XSS in email.subject, kind


def test_recap_carries_the_written_commitment_and_the_72_hour_window(renderer: Renderer) -> None:
    email = renderer.email("recap", SAMPLES["recap"])
    commitment = str(SAMPLES["recap"]["commitment"])
    assert commitment in email.text
    assert "Thursday&#39;s calls" in email.html  # apostrophe escaped, not dropped
    assert f"Number discussed: {SAMPLES['recap']['number']}" in email.text
    without = renderer.email("recap", {**SAMPLES["recap"], "number": None})
    assert "Number discussed: activity volume + script delivery" in without.text
    assert "Skill worked: discovery openers, voicemail scripts" in email.text
    assert "72 hours, by Fri 27 Nov, 10:25 MST" in email.text


def test_recap_without_a_commitment_asks_for_one(renderer: Renderer) -> None:
    email = renderer.email("recap", {**SAMPLES["recap"], "commitment": None})
    assert "none was written in the invite" in email.text
    assert "write it now" in email.text
    assert "None" not in email.text and "None" not in email.html


def test_cancellation_lists_the_open_times_or_says_there_are_none(renderer: Renderer) -> None:
    email = renderer.email("cancellation", SAMPLES["cancellation"])
    assert "declined by Sam Ortiz" in email.text
    for slot in ("Wed 25 Nov, 09:30 CST", "Fri 27 Nov, 10:00 CST", "Fri 27 Nov, 14:30 CST"):
        assert f"- {slot}" in email.text
        assert slot in email.html
    assert "Reschedule" in email.subject + email.text or "reschedule" in email.subject

    empty = renderer.email("cancellation", {**SAMPLES["cancellation"], "suggestions": []})
    assert "no 25-minute slot left this week" in empty.text
    assert "<ul" not in empty.html


def test_week11_skip_says_so_and_why(renderer: Renderer) -> None:
    email = renderer.email("week11_skip", SAMPLES["week11_skip"])
    assert email.subject.startswith("Week-11 skip:")
    assert "Hold it at 25 minutes if you have to, but hold it." in email.text
    assert "vp@acme.test gets a copy" in email.text
    quiet = renderer.email("week11_skip", {**SAMPLES["week11_skip"], "escalate_to": None})
    assert "gets a copy" not in quiet.text


def test_rate_warning_names_the_level_and_the_thresholds(renderer: Renderer) -> None:
    warning = renderer.email("rate_warning", SAMPLES["rate_warning"])
    assert warning.subject.startswith("Warning: 18% of your team's 1:1s")
    assert "5 of the 28" in warning.text and "under 10%" in warning.text
    red = renderer.email(
        "rate_warning",
        {**SAMPLES["rate_warning"], "level": "red flag", "rate_percent": 27, "scope": "Sam Ortiz"},
    )
    assert red.subject.startswith("Red flag: 27% of your 1:1s with Sam Ortiz")


def test_dates_read_like_a_calendar_in_the_readers_zone(renderer: Renderer) -> None:
    kolkata = datetime(2026, 12, 3, 9, 5, tzinfo=ZoneInfo("Asia/Kolkata"))
    email = renderer.email("preread_rep", {**SAMPLES["preread_rep"], "start": kolkata})
    assert "Thu 3 Dec, 09:05 IST" in email.subject


def test_a_naive_datetime_is_a_template_problem_not_a_crash(renderer: Renderer) -> None:
    with pytest.raises(TemplateProblem, match=r"preread_rep\.subject\.j2' line 1: .*aware"):
        renderer.email("preread_rep", {**SAMPLES["preread_rep"], "start": datetime(2026, 1, 1)})


def test_unknown_kinds_are_template_problems(renderer: Renderer) -> None:
    with pytest.raises(TemplateProblem, match="no email template for 'birthday'"):
        renderer.email("birthday", {})
    with pytest.raises(TemplateProblem, match="no agenda template for 'standup'"):
        renderer.agenda({**SAMPLES["agenda_coaching"], "template": "standup"})


# --- StrictUndefined ----------------------------------------------------------------------------


def test_a_missing_key_names_the_template_and_line(renderer: Renderer) -> None:
    ctx = {k: v for k, v in SAMPLES["series_restored"].items() if k != "schedule"}
    line = line_of("series_restored.txt.j2", "{{ schedule }}")
    with pytest.raises(TemplateProblem) as err:
        renderer.email("series_restored", ctx)
    assert f"template 'series_restored.txt.j2' line {line}: 'schedule' is undefined" == str(
        err.value
    )


def test_a_missing_attribute_in_an_agenda_names_the_template_and_line(renderer: Renderer) -> None:
    ctx = {**SAMPLES["agenda_coaching"], "blocks": {"number": 8, "skill": 13}}
    line = line_of("agenda_coaching.txt.j2", "blocks.commitment")
    with pytest.raises(TemplateProblem, match=rf"'agenda_coaching\.txt\.j2' line {line}: .*"):
        renderer.agenda(ctx)


# --- agendas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["agenda_coaching", "agenda_career", "agenda_week11"])
def test_the_commitment_line_is_there_once_and_reads_back(renderer: Renderer, key: str) -> None:
    body = renderer.agenda(SAMPLES[key])
    assert body.splitlines()[-1] == f"{COMMITMENT_LABEL} "
    assert body.count(COMMITMENT_LABEL) == 1
    assert "<" not in body  # plain text for the invite
    assert read_commitment(wrap(body)) is None
    filled = body.replace(COMMITMENT_LABEL, f"{COMMITMENT_LABEL} Call the Initech CFO by Friday")
    assert read_commitment(wrap(filled)) == "Call the Initech CFO by Friday"
    # A re-render keeps what the person wrote.
    assert read_commitment(splice(wrap(filled), wrap(body))) == "Call the Initech CFO by Friday"


def test_coaching_agenda_opens_with_the_last_commitment(renderer: Renderer) -> None:
    body = renderer.agenda(SAMPLES["agenda_coaching"])
    last = str(SAMPLES["agenda_coaching"]["last_commitment"])
    assert body.index(last) < body.index("Number")
    none = renderer.agenda({**SAMPLES["agenda_coaching"], "last_commitment": None})
    assert "None on record yet, so start with the number." in none
    assert "pipeline review" in body
    assert "career conversation" not in body.lower()  # the planner tells agendas apart by it


@pytest.mark.parametrize("minutes", [25, 30, 45])
def test_the_blocks_minutes_appear(renderer: Renderer, minutes: int) -> None:
    b = blocks_for(minutes)
    blocks = {"number": b.number, "skill": b.skill, "commitment": b.commitment}
    ctx = {**SAMPLES["agenda_coaching"], "duration_minutes": minutes, "blocks": blocks}
    body = renderer.agenda(ctx)
    assert f"{minutes} minutes" in body.splitlines()[0]
    for name, value in (("Number", b.number), ("Skill", b.skill), ("Commitment", b.commitment)):
        (line,) = [ln for ln in body.splitlines() if re.match(rf"\d\. {name}\b", ln)]
        assert f" {value} min" in line


def test_career_agenda_asks_the_three_questions(renderer: Renderer) -> None:
    body = renderer.agenda(SAMPLES["agenda_career"])
    for question in CAREER_QUESTIONS:
        assert question in body
    assert "career conversation" in body.lower()
    assert "Number" not in body and "90-second" not in body
    prereads = [renderer.email(k, {**SAMPLES[k], "template": "career"}) for k in
                ("preread_rep", "preread_manager")]  # fmt: skip
    for email in prereads:
        for question in CAREER_QUESTIONS:
            assert question in email.text and question in email.html


def test_week11_note_only_in_week11(renderer: Renderer) -> None:
    note = "Week 11: hold it, even at 25 minutes."
    assert note in renderer.agenda(SAMPLES["agenda_week11"])
    assert note not in renderer.agenda(SAMPLES["agenda_coaching"])
    assert note in renderer.agenda({**SAMPLES["agenda_career"], "week11": True})
    assert note not in renderer.agenda(SAMPLES["agenda_career"])


# --- an admin's templates -----------------------------------------------------------------------


def test_a_broken_override_stops_startup_naming_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "recap.txt.j2"
    broken.write_text("Hi {{ rep.first_name }},\n\nYour commitment: {{ commitment }\n")
    with pytest.raises(TemplateProblem) as err:
        Renderer(tmp_path).check()
    assert str(err.value).startswith(f"template '{broken.resolve()}' line 3: ")


def test_the_startup_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    (tmp_path / "recap.txt.j2").write_text("{% if commitment %}\nno end\n")
    (tmp_path / "cancellation.html.j2").write_text("<p>{{ rep.nickname }}</p>\n")
    (tmp_path / "agenda_coaching.txt.j2").write_text("Talk about anything.\n")
    with pytest.raises(TemplateProblem) as err:
        Renderer(tmp_path).check()
    problems = str(err.value).splitlines()
    assert len(problems) == 3, problems
    text = str(err.value)
    assert f"'{(tmp_path / 'recap.txt.j2').resolve()}' line 2" in text
    assert f"'{(tmp_path / 'cancellation.html.j2').resolve()}' line 1: " in text
    assert "nickname" in text
    assert f"'{(tmp_path / 'agenda_coaching.txt.j2').resolve()}': the agenda needs" in text


def test_an_override_replaces_only_that_template(tmp_path: Path, renderer: Renderer) -> None:
    (tmp_path / "recap.subject.j2").write_text("Recap for {{ rep.first_name }}\n")
    (tmp_path / "recap.html.j2").write_text(
        '{% extends "_base.html.j2" %}{% block body %}<p>{{ commitment }}</p>{% endblock %}\n'
    )
    custom = Renderer(tmp_path)
    custom.check()
    recap, builtin = (
        custom.email("recap", SAMPLES["recap"]),
        renderer.email("recap", SAMPLES["recap"]),
    )
    assert recap.subject == "Recap for Sam"
    assert recap.text == builtin.text
    assert "<p>Ask every Initech prospect" in recap.html and "Sent by cadence" in recap.html
    for kind in EMAIL_KINDS:
        if kind != "recap":
            assert custom.email(kind, SAMPLES[kind]) == renderer.email(kind, SAMPLES[kind])
    assert custom.agenda(SAMPLES["agenda_coaching"]) == renderer.agenda(SAMPLES["agenda_coaching"])


def test_an_override_that_uses_a_missing_template_is_reported(tmp_path: Path) -> None:
    (tmp_path / "recap.html.j2").write_text('\n{% extends "_fancy.html.j2" %}\n')
    with pytest.raises(TemplateProblem, match=r"recap\.html\.j2' line 2: uses '_fancy\.html\.j2'"):
        Renderer(tmp_path).check()


def test_a_template_folder_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TemplateProblem, match="does not exist"):
        Renderer(tmp_path / "nope").check()


# --- the committed examples ---------------------------------------------------------------------


def test_the_committed_examples_match_the_templates() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate_examples.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for html in sorted((ROOT / "docs" / "examples").glob("*.html")):
        assert_well_formed(html.read_text(encoding="utf-8"))


# --- the pre-read form's pages ------------------------------------------------------------------


@pytest.mark.parametrize("name,ctx", [(k, c) for k, c in _check_contexts() if k in PAGES])
def test_form_pages_are_well_formed_without_script_or_anything_from_elsewhere(
    renderer: Renderer, name: str, ctx: dict[str, object]
) -> None:
    root = assert_well_formed(renderer.page(name, ctx))
    assert root.find("head/meta[@name='viewport']") is not None  # readable on a phone
    for element in root.iter():
        for attr in ("src", "href", "action"):
            assert attr not in element.attrib, (element.tag, element.attrib)
    assert not list(root.iter("link")) and not list(root.iter("img"))


def test_typed_html_on_the_form_is_shown_not_run(renderer: Renderer) -> None:
    ctx = dict(SAMPLES["prep_form"])
    ctx["fields"] = [{"name": "stuck_deal", "label": "Deal", "value": XSS}]
    ctx["other"] = XSS
    page = renderer.page("prep_form", ctx)
    assert XSS not in page and "&lt;script&gt;" in page
    assert_well_formed(page)


def test_the_agenda_carries_the_number_line_or_says_how_to_get_it(renderer: Renderer) -> None:
    ctx = SAMPLES["agenda_coaching"]
    assert f"   {ctx['number']}\n" in renderer.agenda(ctx)
    pending = renderer.agenda(SAMPLES["agenda_week11"])
    assert "not in yet; cadence fills it in" in pending
    master = renderer.agenda({**ctx, "number": None})
    assert "cadence writes the number into each meeting's own agenda" in master
    no_source = renderer.agenda({**ctx, "number": None, "metrics_on": False})
    assert "The number this week is X" in no_source


def test_the_managers_preread_carries_the_number(renderer: Renderer) -> None:
    email = renderer.email("preread_manager", SAMPLES["preread_manager"])
    assert f"The number, already in the agenda: {SAMPLES['preread_manager']['number']}" in (
        email.text
    )
    assert "Pull the number too" not in email.text
    assert "<strong>Activities, week of 16 Nov: 41" in email.html


def test_the_next_pass_renders_an_edited_override_and_html_stays_escaped(tmp_path: Path) -> None:
    # Each pass makes a new Renderer while compiled templates outlive it in the process: an
    # admin's edit between passes is what the next pass sends, and a file compiled without
    # escaping (naming it in a problem reads it through the text environment) never reaches HTML.
    subject, html = tmp_path / "recap.subject.j2", tmp_path / "recap.html.j2"
    subject.write_text("Recap for {{ rep.first_name }}\n")
    html.write_text("<p>{{ commitment }}</p>\n")
    first = Renderer(tmp_path)
    first._text.get_template("recap.html.j2")
    first.check()
    assert XSS not in first.email("recap", {**SAMPLES["recap"], "commitment": XSS}).html

    subject.write_text("Your recap, {{ rep.first_name }}\n")
    later = Renderer(tmp_path)
    later.check()
    recap = later.email("recap", {**SAMPLES["recap"], "commitment": XSS})
    assert recap.subject == "Your recap, Sam"
    assert XSS not in recap.html and "&lt;script&gt;" in recap.html
