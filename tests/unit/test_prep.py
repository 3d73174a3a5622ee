"""The pre-read form's rules without I/O: what a field keeps, when a manager hears that the
rep filed nothing, and what filed lines do to the invite's agenda (through the pure planner)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.agenda import BEGIN_MARKER, END_MARKER, extract_block, splice, wrap
from daemon.core.occurrences import occurrence_key
from daemon.core.planner import Kind, SendEmail, WriteAgendas
from daemon.core.prep import (
    MAX_FIELD_CHARS,
    FieldTooLong,
    PrepPolicy,
    Role,
    clean,
    clean_fields,
    missing_due,
)
from tests.unit.test_planner import DENVER, MAYA, SAM, T0, World, of, org, sam, settle

CHICAGO = ZoneInfo("America/Chicago")
MEETING = datetime(2026, 11, 24, 10, 0, tzinfo=DENVER)  # Sam's Tuesday 1:1
PREP = PrepPolicy(check=timedelta(hours=2))


# --- the field rules ----------------------------------------------------------------------------


def test_a_field_keeps_one_line_of_text_with_html_left_as_typed() -> None:
    typed = "  <b>Initech</b>\r\nsays\tno\x00\x1b[31m\u2028 ok  "
    assert clean(typed) == "<b>Initech</b> says no[31m  ok"


def test_a_field_cannot_forge_the_agenda_markers() -> None:
    forged = clean(END_MARKER + " then " + BEGIN_MARKER)
    assert "===" not in forged
    block = wrap(f"Sam's pre-read:\n- Deal: {forged}\nCommitment:")
    assert extract_block(splice("my notes", block)) == block


@given(st.text(max_size=700))
def test_a_cleaned_field_has_no_control_character_and_no_line_break(typed: str) -> None:
    out = clean(typed)
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in out)
    assert "\u2028" not in out and "\u2029" not in out and "===" not in out
    assert out == out.strip()


def test_fields_are_taken_in_order_and_missing_ones_are_empty() -> None:
    lines = clean_fields(Role.REP, {"question": "Go to the CFO?", "stuck_deal": "Initech"})
    assert lines == ("Initech", "", "Go to the CFO?")
    assert clean_fields(Role.MANAGER, {"observation": "x", "stuck_deal": "ignored"}) == (
        "x", "", ""
    )  # fmt: skip


def test_a_field_over_500_characters_is_refused_and_500_is_kept() -> None:
    assert clean_fields(Role.REP, {"skill": "a" * MAX_FIELD_CHARS})[1] == "a" * 500
    with pytest.raises(FieldTooLong) as caught:
        clean_fields(Role.REP, {"skill": "a" * 501})
    assert caught.value.name == "skill"
    # Control characters removed do not count toward the limit.
    assert clean_fields(Role.REP, {"skill": "a" * 500 + "\x00" * 20})[1] == "a" * 500


# --- the decision for preread_missing -----------------------------------------------------------


ASKED = MEETING - timedelta(hours=24)


@pytest.mark.parametrize(
    ("now", "asked", "lines", "warned", "policy", "due"),
    [
        (MEETING - timedelta(hours=2), ASKED, None, False, PREP, True),
        (MEETING - timedelta(minutes=1), ASKED, ("", "", ""), False, PREP, True),
        (MEETING - timedelta(hours=2, seconds=1), ASKED, None, False, PREP, False),  # too early
        (MEETING, ASKED, None, False, PREP, False),  # started
        (MEETING - timedelta(hours=1), ASKED, ("Initech", "", ""), False, PREP, False),  # filed
        (MEETING - timedelta(hours=1), ASKED, None, True, PREP, False),  # already warned
        (MEETING - timedelta(hours=1), None, None, False, PREP, False),  # never asked
        # asked only once the window was open (the daemon was down): no chance to file
        (MEETING - timedelta(hours=1), MEETING - timedelta(hours=2), None, False, PREP, False),
        (MEETING - timedelta(hours=1), ASKED, None, False, None, False),  # no prep configured
    ],
)
def test_the_manager_is_warned_once_in_the_window_when_the_asked_rep_filed_nothing(
    now: datetime,
    asked: datetime | None,
    lines: tuple[str, ...] | None,
    warned: bool,
    policy: PrepPolicy | None,
    due: bool,
) -> None:
    assert missing_due(now, MEETING, policy, asked_at=asked, rep_lines=lines, warned=warned) is due


# --- through the planner ------------------------------------------------------------------------


def _key(world: World) -> str:
    return occurrence_key(world.live(SAM).uid, MEETING)


def test_preread_emails_carry_a_grant_with_prep_and_none_without() -> None:
    for prep in (PREP, None):
        world = World(org(sam()))
        settle(world, T0, prep=prep)
        settle(world, MEETING - timedelta(hours=20), prep=prep)
        rep_mail = [a for _, a in world.sent("preread:rep")][0]
        manager_mail = [a for _, a in world.sent("preread:manager")][0]
        assert rep_mail.context["prep_url"] is None  # the executor fills it in
        if prep is None:
            assert rep_mail.grant is None and manager_mail.grant is None
            continue
        assert rep_mail.grant is not None and manager_mail.grant is not None
        assert (rep_mail.grant.role, rep_mail.grant.person) == (Role.REP, SAM)
        assert (manager_mail.grant.role, manager_mail.grant.person) == (Role.MANAGER, MAYA)
        assert rep_mail.grant.timezone == "America/Denver"
        assert manager_mail.grant.timezone == "America/Chicago"
        assert rep_mail.grant.end == MEETING + timedelta(minutes=25)  # valid until it ends


def test_filed_lines_go_into_that_occurrences_block_and_a_later_save_replaces_them() -> None:
    world = World(org(sam()))
    settle(world, T0, prep=PREP)
    key = _key(world)
    world.prereads = {key: {"rep": ("Initech", "", "CFO?"), "manager": ("Good opener", "", "")}}
    (write,) = of(settle(world, T0 + timedelta(hours=1), prep=PREP), WriteAgendas)
    assert write.master_block is None and list(write.blocks) == [MEETING]
    block = write.blocks[MEETING]
    assert "rep filed: Initech" in block and "manager filed: Good opener" in block
    # Other occurrences are left alone.
    nxt = world.live(SAM)
    others = [o for o in nxt.overrides if o.recurrence_id != MEETING]
    assert all("filed" not in o.description for o in others)

    world.prereads = {key: {"rep": ("Globex", "", ""), "manager": ("Good opener", "", "")}}
    (write,) = of(settle(world, T0 + timedelta(hours=2), prep=PREP), WriteAgendas)
    assert "rep filed: Globex" in write.blocks[MEETING]
    assert "Initech" not in write.blocks[MEETING]


def test_the_manager_hears_of_a_missing_preread_once_with_slots_later_that_week() -> None:
    world = World(org(sam()))
    settle(world, T0, prep=PREP)
    settle(world, MEETING - timedelta(hours=20), prep=PREP)  # the pre-reads go
    assert world.sent(Kind.PREREAD_MISSING) == []
    settle(world, MEETING - timedelta(hours=3), prep=PREP)
    assert world.sent(Kind.PREREAD_MISSING) == []  # not yet
    at = MEETING - timedelta(hours=2)
    settle(world, at, prep=PREP)
    settle(world, MEETING - timedelta(hours=1), prep=PREP)  # once
    ((when, mail),) = world.sent(Kind.PREREAD_MISSING)
    assert when == at and mail.to == (MAYA,) and mail.kind == "preread_missing"
    assert mail.occurrence == _key(world)
    slots = mail.context["suggestions"]
    assert 2 <= len(slots) <= 3
    end = MEETING + timedelta(minutes=25)
    assert all(s >= end and s.astimezone(CHICAGO).isocalendar()[1] == 48 for s in slots)


def test_no_warning_for_a_rep_who_filed_or_without_prep() -> None:
    filed = World(org(sam()))
    settle(filed, T0, prep=PREP)
    settle(filed, MEETING - timedelta(hours=20), prep=PREP)
    filed.prereads = {_key(filed): {"rep": ("", "openers", "")}}
    settle(filed, MEETING - timedelta(hours=1), prep=PREP)
    assert filed.sent(Kind.PREREAD_MISSING) == []

    off = World(org(sam()))
    settle(off, T0)
    settle(off, MEETING - timedelta(hours=20))
    settle(off, MEETING - timedelta(hours=1))
    assert off.sent(Kind.PREREAD_MISSING) == []
    assert all(isinstance(a, SendEmail) for _, a in off.sent())
