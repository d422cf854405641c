"""The alert details view and the triage forms: inside the modal limits and inert for any alert, any comment."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts.query import QueryError
from bot.alerts.triage import MAX_COMMENT, Actor, TriageRequest, Verb, update_for
from bot.defender.evidence import Evidence
from bot.defender.models import Alert, Comment, RelatedUser, parse_alert
from bot.slack.alert_menu import ModalContext, alert_control, parse_alert_value
from bot.slack.alert_views import CHOICE_ACTION, CHOICE_BLOCK, NOTE_BLOCK, details_view, read_submission, triage_view
from bot.slack.blockkit import Message
from bot.slack.modals import MAX_MODAL_BLOCKS, view_violations
from tests.doubles.cards import CONTEXT, HOSTILE_TITLES, MID, TEST_SEAL, safety_problems

_hostile = st.one_of(
    st.text(max_size=200),
    st.sampled_from(HOSTILE_TITLES),
    st.tuples(st.sampled_from(["&", "<", ">", "<!here>", "界", "\u202e", "\n"]), st.integers(0, 4000)).map(
        lambda pair: pair[0] * pair[1]
    ),
)


def _alert(**fields: Any) -> Alert:
    return dataclasses.replace(
        parse_alert({"id": "da1_2", "title": "t", "severity": "High", "status": "New"}), **fields
    )


def assert_safe_view(view: dict[str, Any]) -> None:
    assert view_violations(view) == []
    assert safety_problems(Message("view", view["blocks"])) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    title=_hostile,
    description=_hostile,
    action=st.one_of(st.none(), _hostile),
    evidence=st.lists(st.tuples(st.sampled_from(["File", "Process", "Ip", "Url", "User"]), _hostile), max_size=40),
    comments=st.lists(st.tuples(_hostile, st.one_of(st.none(), _hostile)), max_size=40),
    mitre=st.lists(_hostile, max_size=40),
    assignee=st.one_of(st.none(), _hostile),
    category=st.one_of(st.none(), _hostile),
)
def test_any_alert_makes_a_safe_details_view_and_safe_forms(
    title: str,
    description: str,
    action: str | None,
    evidence: list[tuple[str, str]],
    comments: list[tuple[str, str | None]],
    mitre: list[str],
    assignee: str | None,
    category: str | None,
) -> None:
    alert = _alert(
        title=title,
        description=description,
        recommended_actions=action,
        evidence=tuple(Evidence(kind, value) for kind, value in evidence if value),
        comments=tuple(Comment(text, author, None) for text, author in comments),
        mitre_techniques=tuple(mitre),
        assigned_to=assignee,
        category=category,
        related_user=RelatedUser(title[:20] or "u", description[:20] or None),
    )
    view = details_view(alert, CONTEXT)
    assert_safe_view(view)
    assert len(view["blocks"]) <= MAX_MODAL_BLOCKS
    metadata = ModalContext("status", MID, alert.id, "C0INCIDENT", "1.2", "https://hooks.example/x", MID)
    for verb in (Verb.STATUS, Verb.CLASSIFY, Verb.COMMENT):
        assert_safe_view(triage_view(verb, alert, metadata.sealed(TEST_SEAL)))


def _note(text: str) -> dict[str, Any]:
    return {NOTE_BLOCK: {CHOICE_ACTION: {"type": "plain_text_input", "value": text}}}


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=1200))
def test_any_comment_text_is_taken_whole_or_refused_with_a_reason(text: str) -> None:
    context = ModalContext("comment", MID, "da1_2", "C0INCIDENT")
    parsed = read_submission(context, _note(text))
    if not text.strip() or len(text.strip()) > MAX_COMMENT:
        assert isinstance(parsed, dict) and NOTE_BLOCK in parsed
        return
    assert isinstance(parsed, TriageRequest) and parsed.comment == text.strip()
    update = update_for(parsed, Actor("U0ALICE", "C0INCIDENT", "alice@contoso.com"))
    assert update.comment.endswith(text.strip())
    assert "Slack user U0ALICE" in update.comment and "channel C0INCIDENT" in update.comment


@pytest.mark.parametrize(
    "values",
    [
        {},
        {CHOICE_BLOCK: {CHOICE_ACTION: {"selected_option": {"value": "TruePositive|Clean"}}}},  # not a pair
        {CHOICE_BLOCK: {CHOICE_ACTION: {"selected_option": {"value": "Nonsense|Other"}}}},
        {CHOICE_BLOCK: "not an object"},
    ],
)
def test_a_classification_outside_the_documented_pairs_is_refused(values: dict[str, Any]) -> None:
    parsed = read_submission(ModalContext("classify", MID, "da1_2", "C0INCIDENT"), values)
    assert parsed == {CHOICE_BLOCK: "Choose a classification and determination."}


def test_controls_carry_sealed_references_and_an_odd_id_gets_none() -> None:
    menu = alert_control(MID, "da637_-1", TEST_SEAL, triage=True)
    assert menu is not None and len(menu["options"]) == 5
    refs = [parse_alert_value(TEST_SEAL.open(o["value"])) for o in menu["options"]]
    assert {r.verb for r in refs} == {"details", "assign", "status", "classify", "comment"}
    assert alert_control(MID, "id with spaces", TEST_SEAL, triage=True) is None
    assert alert_control(MID, "x" * 81, TEST_SEAL, triage=False) is None
    longest = alert_control(MID, "x" * 80, TEST_SEAL, triage=True)  # the menu's values would pass 150 characters
    assert longest is not None and longest["type"] == "button"


def test_modal_metadata_opens_only_when_sealed_here() -> None:
    context = ModalContext("status", MID, "da1_2", "C0INCIDENT", "1.2", "https://hooks.example/x", MID)
    assert ModalContext.open(TEST_SEAL, context.sealed(TEST_SEAL)) == context
    with pytest.raises(QueryError):
        ModalContext.open(TEST_SEAL, context.sealed(TEST_SEAL).replace("status", "assign"))
    long = dataclasses.replace(context, response_url="https://hooks.example/" + "x" * 3000)
    assert ModalContext.open(TEST_SEAL, long.sealed(TEST_SEAL)).response_url == ""  # left out, still opens
