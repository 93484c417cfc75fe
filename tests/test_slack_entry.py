"""Data entry from Slack catches mistakes and gets out of the way, end to end over HTTP on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from bot.bootstrap import build_services
from bot.services.base import NotAllowed
from bot.slack import ids
from bot.slack.reminders import SlackNotifier
from tests import factories
from tests.conftest import ADMIN, OWNER, USER, make_settings
from tests.factories import SECRET_MARK
from tests.slack_harness import SlackHarness
from tests.test_slack_keys import GOOD, open_register_modal

TODAY = "2026-11-27T03:00:00Z"  # noon in Seoul


@time_machine.travel(TODAY, tick=False)
def test_every_field_error_of_the_form_comes_in_one_answer(slack):
    open_register_modal(slack)
    answer = slack.submit(
        ADMIN,
        ids.REGISTER_MODAL,
        {**GOOD, "issued_on": "2027-06-01", "company_url": "shop", "ip_addresses": "211.45.10.3\n192.168.0.7"},
    )
    errors = answer.json()["errors"]
    assert set(errors) == {"issued_on", "company_url", "ip_addresses"}
    assert "2027-06-01 is in the future" in errors["issued_on"]
    assert "192.168.0.7 is a private address" in errors["ip_addresses"]
    assert slack.services.keys.statuses() == []


@time_machine.travel(TODAY, tick=False)
def test_no_such_date_and_a_far_expiry_are_named(slack):
    open_register_modal(slack)
    errors = slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "issued_on": "2026-02-30"}).json()["errors"]
    assert "there is no such date" in errors["issued_on"]
    errors = slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "issued_on": "", "expires_on": "2027-11-20"}).json()[
        "errors"
    ]
    assert "more than 180 days after today" in errors["expires_on"]


@time_machine.travel(TODAY, tick=False)
def test_a_bare_domain_is_a_url_and_the_other_integrations_fields_are_ignored(slack):
    open_register_modal(slack)
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "company_url": "example.com"}).text == ""
    assert slack.services.keys.status("A00012345").linking.company_url == "https://example.com"
    open_register_modal(slack)
    typed_before_switching = {"vendor_id": "A00012346", "integration": "integrator", "integrator_name": "Sellmate"}
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, **typed_before_switching}).text == ""
    linking = slack.services.keys.status("A00012346").linking
    assert (linking.integrator_name, linking.ip_addresses, linking.company_url) == ("Sellmate", (), None)


@time_machine.travel(TODAY, tick=False)
def test_saving_the_edit_form_unchanged_uses_no_edit(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(OWNER, "edit A00012345", channel="CWORK0001")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert slack.submit(OWNER, ids.EDIT_LINKING_MODAL, {}).text == ""
    note = slack.fake.wait_for("chat.postEphemeral")[0].params["text"]
    assert "Nothing changed" in note and "no edit was used" in note
    status = slack.services.keys.status("A00012345")
    assert status.edits_last_7_days == 0 and status.propagating_until is None
    assert "key.linking_edited" not in [e.action for e in slack.services.audit.entries(vendor_id="A00012345")]


@time_machine.travel(TODAY, tick=False)
def test_an_edit_confirmation_says_to_change_it_in_wing_too(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(OWNER, "edit A00012345", channel="CWORK0001")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert slack.submit(OWNER, ids.EDIT_LINKING_MODAL, {"ip_addresses": "211.45.10.9"}).text == ""
    note = slack.fake.wait_for("chat.postEphemeral")[0].params["text"]
    assert "change it in WING too" in note and "Edit (수정)" in note
    assert slack.services.keys.status("A00012345").edits_last_7_days == 1


@time_machine.travel(TODAY, tick=False)
def test_a_key_added_without_a_channel_is_warned_about_at_add_and_in_status(db_url, fake_slack):
    services = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_CHANNEL=""))
    with SlackHarness(services, fake_slack) as slack:
        open_register_modal(slack)
        assert slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "channel_id": ""}).text == ""
        confirmation = fake_slack.wait_for("chat.postEphemeral")[0].params["text"]
        assert "Registered *A00012345*" in confirmation and "this key gets no reminders" in confirmation
        assert "this key gets no reminders" in slack.slash(ADMIN, "status A00012345").text_of()
        open_register_modal(slack)
        assert slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "vendor_id": "A00012346"}).text == ""
        confirmation = fake_slack.wait_for("chat.postEphemeral", count=2)[1].params["text"]
        assert "Registered *A00012346*" in confirmation and "no reminders" not in confirmation
    services.engine.dispose()


def register_expiring(slack, vendor_id: str, expires_on: str, **extra) -> None:
    slack.services.keys.register(ADMIN, factories.form(vendor_id, issued_on=None, expires_on=expires_on, **extra))


@time_machine.travel(TODAY, tick=False)
def test_status_is_one_line_per_key_and_details_expands_one(slack):
    register_expiring(slack, "A00000002", "2027-03-01")
    register_expiring(slack, "A00000001", "2026-12-04")
    answer = slack.slash(USER, "status").json()
    lines = [b for b in answer["blocks"] if b["type"] == "section"]
    assert [b["block_id"] for b in lines] == ["key-A00000001", "key-A00000002"]  # most urgent first
    first = lines[0]["text"]["text"]
    assert "7 days left" in first and "reissue window" in first and "expires 2026-12-04" in first
    assert f"Owner: <@{OWNER}>" in first and "\n" not in first
    assert all(b["type"] != "actions" for b in answer["blocks"][1:-1])  # no per-key buttons in the overview
    assert lines[0]["accessory"]["action_id"] == ids.EXPAND_KEY

    slack.click(USER, ids.EXPAND_KEY, "A00000001")
    detail = slack.fake.wait_for("response_url")[0].params
    assert detail["replace_original"] is False
    text = str(detail["blocks"])
    assert "Reissue (재발급) button is active" in text and "Example Co" in text
    actions = {e["action_id"] for b in detail["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert actions == {ids.EDIT_LINKING, ids.REQUEST_REISSUE, ids.VERIFY_KEY}
    assert SECRET_MARK not in slack.fake.all_text()


@time_machine.travel(TODAY, tick=False)
def test_status_expiring_defaults_to_30_days_and_takes_a_number(slack):
    register_expiring(slack, "A00000001", "2026-12-04")  # 7 days left
    register_expiring(slack, "A00000002", "2026-12-20")  # 23
    register_expiring(slack, "A00000003", "2027-01-20")  # 54

    def listed(text: str) -> list[str]:
        return [b["block_id"] for b in slack.slash(USER, text).json()["blocks"] if b["type"] == "section"]

    assert listed("status expiring") == ["key-A00000001", "key-A00000002"]
    assert listed("status expiring 10") == ["key-A00000001"]
    assert listed("status expiring 60") == ["key-A00000001", "key-A00000002", "key-A00000003"]
    assert "No key has 3 days or fewer left" in slack.slash(USER, "status expiring 3").text_of()
    assert "Usage" in slack.slash(USER, "status expiring soon").text_of()


@time_machine.travel(TODAY, tick=False)
def test_app_home_is_one_line_per_key_and_details_expands_it_in_place(slack):
    register_expiring(slack, "A00000002", "2027-03-01")
    register_expiring(slack, "A00000001", "2026-12-04")
    slack.home_opened(USER)
    view = slack.fake.wait_for("views.publish")[0].params["view"]
    lines = [b for b in view["blocks"] if b.get("block_id", "").startswith("home-key-")]
    assert [b["block_id"] for b in lines] == ["home-key-A00000001", "home-key-A00000002"]
    assert "7 days left" in lines[0]["text"]["text"] and "expires 2026-12-04" in lines[0]["text"]["text"]
    assert "Example Co" not in str(view)

    slack.click(USER, ids.EXPAND_KEY, "A00000002", container="home")
    view = slack.fake.wait_for("views.publish", count=2)[1].params["view"]
    assert "Example Co" in str(view) and str(view).count("Example Co") == 1
    actions = [b for b in view["blocks"] if b["type"] == "actions"]
    assert [e["value"] for e in actions[0]["elements"]] == ["A00000002"] * 3


@time_machine.travel(TODAY, tick=False)
def test_an_admin_corrects_a_mistyped_expiry_and_its_reminders_start_over(slack):
    register_expiring(slack, "A00012345", "2026-12-03")  # the real expiry is 2026-12-10
    with time_machine.travel("2026-11-26T00:00:00Z", tick=False):  # 09:00 in Seoul, D-7 of the wrong date
        assert slack.services.reminders.sweep(SlackNotifier(slack.app.client, lang="en")).delivered == 1
    slack.slash(ADMIN, "edit A00012345", channel="CWORK0001")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert any(b.get("block_id") == "expires_on" for b in modal["blocks"])
    errors = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"expires_on": "2027-12-10"}).json()["errors"]
    assert "more than 180 days after today" in errors["expires_on"]
    assert slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"expires_on": "2026-12-10"}).text == ""
    note = slack.fake.wait_for("chat.postEphemeral")[0].params["text"]
    assert "corrected to 2026-12-10" in note and "Nothing changed" not in note
    status = slack.services.keys.status("A00012345")
    assert (status.expires_on, status.days_left, status.edits_last_7_days) == (date(2026, 12, 10), 13, 0)
    history = slack.slash(ADMIN, "history A00012345").text_of()
    assert "corrected the expiry date from 2026-12-03 to 2026-12-10" in history
    # the reminders start over: the corrected date's D-14 (already passed, 13 days left) is due now, and its D-7
    # (Dec 3) after that, although the wrong date's D-7 had been posted
    assert [(r.vendor_id, r.milestone) for r in slack.services.reminders.due()] == [("A00012345", 14)]
    assert slack.services.reminders.sweep(SlackNotifier(slack.app.client, lang="en")).delivered == 1
    due = slack.services.reminders.due(datetime(2026, 12, 3, tzinfo=UTC))
    assert [(r.vendor_id, r.milestone) for r in due] == [("A00012345", 7)]


@time_machine.travel(TODAY, tick=False)
def test_only_admins_see_and_may_use_the_date_correction(slack):
    register_expiring(slack, "A00012345", "2026-12-03")
    slack.slash(OWNER, "edit A00012345")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert all(b.get("block_id") != "expires_on" for b in modal["blocks"])
    with pytest.raises(NotAllowed):
        slack.services.keys.edit_linking(
            OWNER, "A00012345", slack.services.keys.status("A00012345").linking, expires_on="2026-12-10"
        )
    assert slack.services.keys.status("A00012345").expires_on == date(2026, 12, 3)


@time_machine.travel(TODAY, tick=False)
def test_a_registration_says_what_comes_next_and_details_show_when_reissue_opens(slack):
    open_register_modal(slack)
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "issued_on": "2026-11-01"}).text == ""
    confirmation = slack.fake.wait_for("chat.postEphemeral")[0].params["text"]
    expires = date(2026, 11, 1) + timedelta(days=180)
    opens = (expires - timedelta(days=14)).isoformat()
    assert f"Next: a reminder on {opens}" in confirmation and "(D-14)" in confirmation
    assert "`/coupang-key consumers A00012345 add`" in confirmation
    assert "bot server's public IP" in confirmation  # a self-developed key: how the bot can check it
    assert f"WING's Reissue button opens on {opens}" in slack.slash(ADMIN, "status A00012345").text_of()
