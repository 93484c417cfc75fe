"""The Block Kit builders, as plain functions: limits, escaping, no secrets, the right buttons."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from slack_sdk.models.blocks import Block

from bot import rules
from bot.rules import Integration, InvalidInput, KeybotError, LinkingInfo, Msg, Phase
from bot.services.audit import AuditEntry
from bot.services.keys import KeyStatus, OpenRequest, StatusPage
from bot.slack import ids, views
from tests.clock import SEOUL


def status(n: int = 0, *, days: int = 30, label: str = "Shop", **overrides) -> KeyStatus:
    values = dict(
        vendor_id=f"A{n:08d}",
        label=label,
        access_key_mask="AKIA…key0",
        secret_fingerprint="fp1234",
        generation=1,
        issued_on=None,
        expires_on=date(2026, 12, 27),
        days_left=days,
        phase=rules.phase_for(days),
        reissue_button_active=rules.reissue_button_active(days),
        linking=LinkingInfo(Integration.SELF, None, "Example Co", "https://shop.example.com", ("211.45.10.3",)),
        edits_last_7_days=3,
        owner_id="UOWNER001",
        channel_id="CSHOP0001",
        propagating_until=None,
        verify_outcome=None,
        verified_at=None,
    )
    values.update(overrides)
    return KeyStatus(**values)


def page(statuses, *, offset=0, matching=None) -> StatusPage:
    matching = len(statuses) if matching is None else matching
    return StatusPage(list(statuses), offset, matching, healthy=matching, in_window=0, expired=0)


def dicts(blocks) -> list[dict]:
    return [b if isinstance(b, dict) else b.to_dict() for b in blocks]


def test_a_key_section_shows_what_the_issue_lists():
    text = views.key_summary_text(
        "en", status(days=10, open_request=OpenRequest(7, "pending", "reissue", "UUSER0001")), SEOUL
    )
    for expected in (
        "A00000000",
        "Shop",
        "AKIA…key0",
        "2026-12-27",
        "10 days left",
        "reissue window",
        "Reissue (재발급) button is active",
        "3/10",
        "Example Co",
        "211.45.10.3",
        "#7",
        "pending",
    ):
        assert expected in text, expected


def test_an_expired_key_says_issue_with_the_linking_info_again_and_24_hours():
    text = views.key_summary_text("en", status(days=-3), SEOUL)
    assert "expired 3 days ago" in text
    assert "Issue (발급)" in text and "linking info" in text and "24 hours" in text
    assert "Reissue" not in text.replace("Reissue request", "")


def test_user_text_is_escaped():
    text = views.key_summary_text(
        "en", status(label="<!channel> & <@U123>", linking=LinkingInfo(Integration.INTEGRATOR, "<!here>")), SEOUL
    )
    assert "<!channel>" not in text and "<!here>" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in text


def test_status_page_stays_within_fifty_blocks_with_a_next_page_button():
    blocks = dicts(views.build_status_blocks("en", page([status(n) for n in range(15)], matching=40), SEOUL))
    assert len(blocks) <= views.MAX_BLOCKS
    assert sum(b["type"] == "section" for b in blocks) == 15
    button = blocks[-1]["elements"][0]
    assert button["action_id"] == ids.STATUS_NEXT_PAGE
    assert json.loads(button["value"]) == {"offset": 15, "expiring": None}
    assert "25 more" in button["text"]["text"]


def test_last_page_has_no_next_button():
    blocks = dicts(views.build_status_blocks("en", page([status(n) for n in range(10)], offset=30, matching=40), SEOUL))
    assert all(b.get("block_id") != "status-pages" for b in blocks)
    assert "31–40 of 40" in json.dumps(blocks, ensure_ascii=False)


def test_every_key_has_edit_reissue_and_verify_buttons_carrying_its_vendor_id():
    blocks = dicts(views.build_key_blocks("en", status(5), SEOUL))
    elements = blocks[1]["elements"]
    assert [(e["action_id"], e["value"]) for e in elements] == [
        (ids.EDIT_LINKING, "A00000005"),
        (ids.REQUEST_REISSUE, "A00000005"),
        (ids.VERIFY_KEY, "A00000005"),
    ]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_status_blocks_built_as_dicts_are_exactly_what_the_models_would_produce(lang):
    """The status overview skips slack_sdk.models on its hot path; parsing each block with the models validates it
    (lengths, types, required fields) and gives back the very same dict."""
    statuses = [
        status(0, days=-3, label="<!channel> & " + "가게" * 60, owner_id=None),
        status(1, days=0, consumers=(1, 3), reminder_channel="CSHOP0001"),
        status(2, days=7, open_request=OpenRequest(7, "pending", "reissue", "UUSER0001")),
        *(status(n, days=n * 10) for n in range(3, 15)),
    ]
    pages = [
        views.build_status_blocks(lang, page(statuses, matching=40), SEOUL),
        views.build_status_blocks(lang, page(statuses[:4], offset=15, matching=40), SEOUL, expiring=30),
        views.build_status_blocks(lang, page([], offset=15, matching=15), SEOUL),
        views.build_status_blocks(lang, page([]), SEOUL, expiring=7),
        [views.build_key_line(lang, statuses[0], "home-key-A00000000", prefix=f"`{views.days_left_bar(-3)}` ")],
    ]
    for blocks in pages:
        for block in blocks:
            assert isinstance(block, dict)
            assert Block.parse(block).to_dict() == block
    assert len(pages[0]) == 17 and pages[0][-1]["elements"][0]["action_id"] == ids.STATUS_NEXT_PAGE


def test_empty_status_says_how_to_register():
    assert "/coupang-key add" in json.dumps(dicts(views.build_status_blocks("en", page([]), SEOUL)))


def test_days_left_bar_is_full_when_new_and_empty_when_expired():
    assert views.days_left_bar(180) == "▰" * views.BAR_CELLS
    assert views.days_left_bar(-1) == "▱" * views.BAR_CELLS
    assert views.days_left_bar(1).count("▰") == 1  # a sliver stays visible until it expires


def test_home_is_sorted_by_expiry_and_within_slacks_limit():
    statuses = [status(n, days=100 - n, expires_on=date(2027, 1, 1).fromordinal(739000 - n)) for n in range(80)]
    most_urgent = sorted(statuses, key=lambda s: s.expires_on)[: views.HOME_MAX_KEYS]
    view = views.build_home_view("en", page(most_urgent, matching=80), SEOUL).to_dict()
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    sections = [b for b in view["blocks"] if b.get("block_id", "").startswith("home-key-")]
    assert sections[0]["block_id"] == "home-key-A00000079"  # expires first
    assert "35 more" in json.dumps(view)


def test_registration_modal_has_every_field_and_prefills_nothing():
    view = views.build_register_modal("en", channel_id="CWORK0001").to_dict()
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert list(inputs) == [
        "vendor_id",
        "label",
        "access_key",
        "secret_key",
        "issued_on",
        "expires_on",
        "channel_id",
        "owner_id",
        "integration",
        "integrator_name",
        "company_name",
        "company_url",
        "ip_addresses",
    ]
    assert inputs["issued_on"]["type"] == inputs["expires_on"]["type"] == "datepicker"
    assert inputs["owner_id"]["type"] == "users_select"
    assert inputs["integration"]["type"] == "radio_buttons"
    assert inputs["ip_addresses"]["multiline"] is True
    assert not any("initial_value" in e for e in inputs.values())
    assert json.loads(view["private_metadata"]) == {"channel": "CWORK0001"}


def test_edit_modal_is_prefilled_and_counts_edits_left():
    quota = rules.EditQuota(used=3, next_possible_at=None)
    view = views.build_edit_linking_modal("en", status(), quota).to_dict()
    text = json.dumps(view, ensure_ascii=False)
    assert "Edits left in the last 7 days: 7 of 10" in text
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert inputs["integration"]["initial_option"]["value"] == "self"
    assert inputs["company_url"]["initial_value"] == "https://shop.example.com"
    assert "access_key" not in inputs and "secret_key" not in inputs


def test_form_errors_put_unknown_fields_under_the_fallback():
    error = InvalidInput({"label": Msg("x"), "file": Msg("y"), "other": Msg("z")})
    errors = views.form_errors("en", error, ["label", "vendor_id"], "vendor_id")
    assert errors == {"label": "x", "vendor_id": "y z"}


def test_form_errors_quote_what_was_typed_as_typed():
    """Field errors are plain text in Slack: a quoted ``<b>`` must not read ``&lt;b&gt;``."""
    refusal = KeybotError("Not a vendor ID: {typed}.", typed=rules.quote("<b>&co"))
    assert views.form_errors("en", refusal, ["vendor_id"], "vendor_id") == {"vendor_id": "Not a vendor ID: '<b>&co'."}


def test_history_escapes_details_and_shows_local_time():
    entry = AuditEntry(
        1,
        datetime(2026, 11, 27, 0, 30, tzinfo=UTC),
        "UADMIN001",
        "key.registered",
        "A00012345",
        {"label": "<!channel>"},
        "mac",
    )
    text = json.dumps(dicts(views.build_history_blocks("en", "A00012345", [entry], SEOUL)))
    assert "2026-11-27 09:30" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text


def test_delete_asks_for_confirmation():
    blocks = dicts(views.build_delete_confirmation("en", status()))
    button = blocks[-1]["elements"][0]
    assert button["style"] == "danger" and button["confirm"]["confirm"]["text"] == "Delete"


def test_phase_labels_cover_every_phase():
    assert set(views.PHASE_LABEL) == set(Phase)


def test_status_shows_propagation_and_the_last_check_in_local_time():
    text = views.key_summary_text(
        "en",
        status(
            days=10,
            propagating_until=datetime(2026, 11, 27, 3, 30, tzinfo=UTC),
            verify_outcome="ip_not_allowed",
            verified_at=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
        ),
        SEOUL,
    )
    assert "the key works by 2026-11-27 12:30" in text
    assert "Last check: ip not allowed (2026-11-27 12:00)" in text
