"""The console's pure parts: mrkdwn to text, typed answers to the state Slack would submit."""

from __future__ import annotations

import pytest

from bot.console.modal import FieldInputError, Modal, parse_typed
from bot.console.render import mrkdwn_to_text, render_blocks

RADIO = {
    "type": "radio_buttons",
    "action_id": "integration",
    "options": [
        {"text": {"type": "plain_text", "text": "Through an integrator"}, "value": "integrator"},
        {"text": {"type": "plain_text", "text": "Self-developed"}, "value": "self"},
    ],
}


def test_links_mentions_and_escaped_user_text_read_naturally() -> None:
    text = "<@U0123ABCD> see <https://wing.coupang.com|WING> in <#C0123ABCD|keys>: label &lt;!channel&gt; &amp; co"
    assert mrkdwn_to_text(text) == "@U0123ABCD see WING (https://wing.coupang.com) in #keys: label <!channel> & co"


def test_buttons_are_numbered_so_they_can_be_clicked() -> None:
    numbers = iter(range(7, 100))
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*A00012345*"}},
        {
            "type": "actions",
            "block_id": "b",
            "elements": [
                {"type": "button", "action_id": "edit", "text": {"type": "plain_text", "text": "Edit"}},
                {
                    "type": "button",
                    "action_id": "del",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Delete"},
                },
            ],
        },
    ]
    assert render_blocks(blocks, lambda element, block_id: next(numbers)) == "*A00012345*\n[#7 Edit]  [#8 Delete (!)]"


def test_choices_are_picked_by_number_or_by_the_start_of_their_text() -> None:
    assert parse_typed(RADIO, "2")["selected_option"]["value"] == "self"
    assert parse_typed(RADIO, "through")["selected_option"]["value"] == "integrator"
    with pytest.raises(FieldInputError, match="number of one of the 2 choices"):
        parse_typed(RADIO, "3")


@pytest.mark.parametrize(
    ("element", "typed", "problem"),
    [
        ({"type": "datepicker"}, "2026-02-30", "YYYY-MM-DD"),
        ({"type": "users_select"}, "bob", "user ID"),
        ({"type": "channels_select"}, "#general", "channel ID"),
    ],
)
def test_malformed_answers_are_refused_with_what_to_type(element: dict, typed: str, problem: str) -> None:
    with pytest.raises(FieldInputError, match=problem):
        parse_typed(element, typed)


def test_multi_line_fields_take_escaped_line_breaks_and_dash_clears() -> None:
    element = {"type": "plain_text_input", "action_id": "ips", "multiline": True}
    assert parse_typed(element, "211.45.10.3\\n8.8.8.8")["value"] == "211.45.10.3\n8.8.8.8"
    assert parse_typed(element, "-")["value"] is None


def test_secret_fields_are_never_shown_back() -> None:
    modal = Modal(
        {
            "type": "modal",
            "title": {"type": "plain_text", "text": "Register"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": "secret_key",
                    "label": {"type": "plain_text", "text": "Secret Key"},
                    "element": {"type": "plain_text_input", "action_id": "secret_key"},
                }
            ],
        },
        "V1",
    )
    modal.set(modal.field(1), "SeCrEt-typed-value")
    assert "SeCrEt" not in modal.render(lambda element, block_id: 1)
    assert modal.state()["values"]["secret_key"]["secret_key"]["value"] == "SeCrEt-typed-value"  # still submitted
