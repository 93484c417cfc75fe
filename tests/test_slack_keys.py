"""End to end over HTTP (signed requests in, FakeSlack out), on SQLite and PostgreSQL: registering, seeing,
editing and deleting keys from Slack."""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

import time_machine

from bot.slack import ids
from tests import factories
from tests.clock import START
from tests.conftest import ADMIN, OWNER, USER
from tests.factories import SECRET_MARK

GOOD = {
    "vendor_id": "A00012345",
    "label": "Shop One",
    "access_key": factories.access_key("A00012345"),
    "secret_key": factories.secret_key("A00012345"),
    "issued_on": "2026-06-01",
    "channel_id": "CSHOP0001",
    "owner_id": OWNER,
    "integration": "self",
    "company_name": "Example Co",
    "company_url": "https://shop.example.com",
    "ip_addresses": "211.45.10.3\n8.8.8.8",
}


def open_register_modal(slack, user=ADMIN):
    answer = slack.slash(user, "add")
    assert answer.status == 200
    return slack.last_modal(ids.REGISTER_MODAL)


def register_via_modal(slack, **overrides):
    open_register_modal(slack)
    return slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, **overrides})


def test_a_key_added_through_the_modal_shows_in_status(slack):
    modal = open_register_modal(slack)
    assert [b["block_id"] for b in modal["blocks"] if b["type"] == "input"][:4] == [
        "vendor_id",
        "label",
        "access_key",
        "secret_key",
    ]
    answer = slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD)
    assert answer.status == 200
    assert answer.text == ""  # modal closes
    confirmation = slack.fake.wait_for("chat.postEphemeral")[0].params
    assert "A00012345" in confirmation["text"] and confirmation["user"] == ADMIN

    overview = slack.slash(USER, "status")
    assert overview.json()["response_type"] == "ephemeral"
    assert "A00012345" in overview.text_of() and "Shop One" in overview.text_of()
    status = slack.slash(USER, "status A00012345")
    text = status.text_of()
    assert "AKIA…key0" in text  # masked: first 4 and last 4 characters
    assert "2026-11-28" in text  # issued 2026-06-01 + 180 days
    assert "0/10" in text
    actions = [e["action_id"] for b in status.json()["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert actions == [ids.EDIT_LINKING, ids.REQUEST_REISSUE, ids.VERIFY_KEY]


def test_every_validation_error_lands_under_its_field_and_nothing_is_saved(slack):
    open_register_modal(slack)
    bad = {
        "vendor_id": "B123",
        "label": "",
        "access_key": "short",
        "secret_key": "",
        "issued_on": "2026-06-01",
        "expires_on": "2026-12-01",
        "channel_id": "CSHOP0001",
        "owner_id": OWNER,
        "integration": "self",
        "company_name": "",
        "company_url": "not a url",
        "ip_addresses": "10.0.0.5",
    }
    answer = slack.submit(ADMIN, ids.REGISTER_MODAL, bad)
    assert answer.status == 200
    body = answer.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {
        "vendor_id",
        "label",
        "access_key",
        "secret_key",
        "expires_on",
        "company_name",
        "company_url",
        "ip_addresses",
    }
    assert "private" in body["errors"]["ip_addresses"]
    assert slack.services.keys.statuses() == []
    assert [e.action for e in slack.services.audit.entries()] == ["key.register.refused"]


def test_a_field_error_quotes_what_was_typed_as_it_was_typed(slack):
    """Slack shows field errors as plain text: a typed ``<`` or ``&`` must not come back as ``&lt;`` / ``&amp;``."""
    open_register_modal(slack)
    answer = slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "vendor_id": "A<1>&2"})
    error = answer.json()["errors"]["vendor_id"]
    assert "'A<1>&2'" in error and "&lt;" not in error and "&amp;" not in error
    assert slack.services.keys.statuses() == []


def test_integrator_errors_land_under_integrator_fields(slack):
    open_register_modal(slack)
    answer = slack.submit(
        ADMIN,
        ids.REGISTER_MODAL,
        {**GOOD, "integration": "integrator", "company_name": "", "company_url": "", "ip_addresses": ""},
    )
    assert answer.json()["errors"] == {"integrator_name": answer.json()["errors"]["integrator_name"]}
    assert slack.services.keys.statuses() == []


def test_a_vendor_id_that_already_has_a_key_points_to_edit_and_reissue(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    answer = register_via_modal(slack)
    error = answer.json()["errors"]["vendor_id"]
    assert "edit A00012345" in error and "reissue A00012345" in error


def test_a_non_admin_cannot_open_the_registration_form_and_the_refusal_is_audited(slack):
    answer = slack.slash(USER, "add")
    assert answer.status == 200
    assert answer.json()["response_type"] == "ephemeral"
    assert "Only admins" in answer.text_of() and ADMIN in answer.text_of()
    assert slack.fake.calls_to("views.open") == []
    assert [(e.actor, e.action) for e in slack.services.audit.entries()] == [(USER, "key.register.refused")]


def test_a_non_admin_submitting_a_forged_registration_is_refused(slack):
    slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD, view=open_register_modal(slack))  # real one, to compare
    answer = slack.submit(USER, ids.REGISTER_MODAL, {**GOOD, "vendor_id": "A00099999"})
    assert "Only admins" in answer.json()["errors"]["vendor_id"]
    assert [s.vendor_id for s in slack.services.keys.statuses()] == ["A00012345"]


def test_edit_modal_is_prefilled_without_secrets_and_shows_edits_left(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(OWNER, "edit A00012345")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    text = str(modal)
    assert "Edits left in the last 7 days: 10 of 10" in text
    initial = {b["block_id"]: b["element"].get("initial_value") for b in modal["blocks"] if b["type"] == "input"}
    assert initial["ip_addresses"] == "211.45.10.3\n8.8.8.8" and initial["company_name"] == "Example Co"
    assert SECRET_MARK not in text and factories.access_key("A00012345") not in text


def test_the_eleventh_edit_in_seven_days_is_refused_with_the_next_possible_time(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    with time_machine.travel(START, tick=True) as traveller:
        for n in range(10):
            slack.slash(ADMIN, "edit A00012345")
            slack.fake.wait_for("views.open", count=n + 1)
            answer = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"ip_addresses": f"211.45.10.{n + 1}"})
            assert answer.text == "", answer.text
            traveller.shift(timedelta(minutes=1))
        # an already-open form submitted once more
        answer = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"ip_addresses": "211.45.10.99"})
        error = answer.json()["errors"]["integration"]
        assert "10 times" in error and "2026-12-04 10:00" in error
        # and the command no longer opens the form
        opened = len(slack.fake.calls_to("views.open"))
        refused = slack.slash(ADMIN, "edit A00012345")
        assert "2026-12-04 10:00" in refused.text_of()
        assert len(slack.fake.calls_to("views.open")) == opened
    assert slack.services.keys.status("A00012345").linking.ip_addresses == ("211.45.10.10",)
    assert [e.action for e in slack.services.audit.entries(vendor_id="A00012345")].count("key.edit.refused") == 1


def test_an_edit_saves_starts_propagation_and_confirms(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(OWNER, "edit A00012345", channel="CWORK0001")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    answer = slack.submit(
        OWNER,
        ids.EDIT_LINKING_MODAL,
        {
            "integration": "integrator",
            "integrator_name": "Listing Tool Inc",
            "company_name": "",
            "company_url": "",
            "ip_addresses": "",
        },
    )
    assert answer.text == ""
    note = slack.fake.wait_for("chat.postEphemeral")[0].params
    assert note["channel"] == "CWORK0001" and "30 minutes" in note["text"]
    status = slack.services.keys.status("A00012345")
    assert status.linking.integrator_name == "Listing Tool Inc"
    assert status.propagating_until is not None
    assert status.edits_last_7_days == 1


def test_a_stranger_cannot_edit_and_is_told_who_can(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    answer = slack.slash(USER, "edit A00012345")
    assert answer.json()["response_type"] == "ephemeral"
    assert OWNER in answer.text_of() and ADMIN in answer.text_of()
    assert slack.fake.calls_to("views.open") == []
    assert (USER, "key.edit.refused") in [(e.actor, e.action) for e in slack.services.audit.entries()]


def test_edit_button_in_status_opens_the_modal(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.click(OWNER, ids.EDIT_LINKING, "A00012345")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert "A00012345" in modal["private_metadata"]


def test_edit_button_refusal_is_ephemeral(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.click(USER, ids.EDIT_LINKING, "A00012345")
    reply = slack.fake.wait_for("response_url")[0].params
    assert reply["response_type"] == "ephemeral" and "Only" in reply["text"]


def test_delete_asks_for_confirmation_then_deletes(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    answer = slack.slash(OWNER, "delete A00012345")
    button = answer.json()["blocks"][-1]["elements"][0]
    assert button["action_id"] == ids.DELETE_KEY and "confirm" in button
    assert slack.services.keys.statuses() != []
    slack.click(OWNER, ids.DELETE_KEY, "A00012345")
    slack.fake.wait_for("response_url")
    assert slack.services.keys.statuses() == []
    assert "key.deleted" in [e.action for e in slack.services.audit.entries()]


def test_delete_by_a_stranger_is_refused(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    assert "Only" in slack.slash(USER, "delete A00012345").text_of()
    slack.click(USER, ids.DELETE_KEY, "A00012345")
    assert "Only" in slack.fake.wait_for("response_url")[0].params["text"]
    assert len(slack.services.keys.statuses()) == 1


def test_history_lists_the_events_of_a_key(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.services.keys.register(ADMIN, factories.form("A00054321"))
    text = slack.slash(USER, "history A00012345").text_of()
    assert f"<@{ADMIN}> registered the key Shop A00012345 (generation 1, expires" in text
    assert "A00054321" not in text
    assert SECRET_MARK not in text


def test_status_of_one_key_and_of_an_unknown_one(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    assert "A00012345" in slack.slash(USER, "status A00012345").text_of()
    assert "No key is registered for A00099999" in slack.slash(USER, "status A00099999").text_of()
    assert "not" in slack.slash(USER, "status banana").text_of().lower()


def test_user_text_is_escaped_in_status(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345", label="<!channel> & <@UADMIN001>"))
    blocks = slack.slash(USER, "status").json()["blocks"]
    section = next(b for b in blocks if b["type"] == "section")["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;@UADMIN001&gt;" in section
    assert "<!channel>" not in section


def test_status_with_forty_keys_stays_within_fifty_blocks_and_pages(slack):
    for n in range(40):
        slack.services.keys.register(ADMIN, factories.form(f"A{n:08d}", issued_on=date(2026, 6, 1) + timedelta(days=n)))
    first = slack.slash(USER, "status").json()["blocks"]
    assert len(first) <= 50
    sections = [b for b in first if b["type"] == "section"]
    assert len(sections) == 15
    assert sections[0]["text"]["text"].startswith("*A00000000*")  # most urgent first
    assert "40 keys" in str(first)
    nxt = first[-1]["elements"][0]
    assert nxt["action_id"] == ids.STATUS_NEXT_PAGE
    slack.click(USER, ids.STATUS_NEXT_PAGE, nxt["value"])
    second = slack.fake.wait_for("response_url")[0].params
    assert second["replace_original"] is True
    sections = [b for b in second["blocks"] if b["type"] == "section"]
    assert sections[0]["text"]["text"].startswith("*A00000015*")


def test_status_expiring_lists_only_keys_in_or_past_the_window(slack):
    with time_machine.travel("2026-11-20 12:00 +09:00"):
        slack.services.keys.register(ADMIN, factories.form("A00000001", issued_on="2026-06-01"))  # 8 days left
        slack.services.keys.register(ADMIN, factories.form("A00000002", issued_on="2026-10-01"))  # healthy
        text = slack.slash(USER, "status expiring").text_of()
    assert "A00000001" in text and "A00000002" not in text
    assert "1 healthy" in text and "1 in the reissue window" in text


def test_a_429_from_slack_is_retried_and_the_modal_still_opens(slack):
    slack.fake.fail_next("views.open", 429, retry_after=1)
    slack.slash(ADMIN, "add")
    assert slack.last_modal(ids.REGISTER_MODAL)["callback_id"] == ids.REGISTER_MODAL
    assert [f.status for f in slack.fake.failures] == [429]


def test_forged_and_stale_requests_change_nothing(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    from urllib.parse import urlencode

    body = urlencode(
        {
            "command": ids.COMMAND,
            "text": "delete A00012345",
            "user_id": ADMIN,
            "trigger_id": slack.fake.new_trigger_id(),
        }
    )
    forged = slack.signed_headers(body)
    forged["X-Slack-Signature"] = "v0=" + "a" * 64
    assert slack.raw_post(body, forged).status == 401
    stale = slack.signed_headers(body, timestamp=int(time.time()) - 6 * 60)
    assert slack.raw_post(body, stale).status == 401
    assert slack.fake.calls == []
    assert len(slack.services.keys.statuses()) == 1


def test_no_secret_reaches_slack_responses_or_debug_logs(slack, caplog):
    caplog.set_level(logging.DEBUG)
    open_register_modal(slack)
    responses = [slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "label": ""})]  # errors echo nothing secret
    responses.append(slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD))
    slack.fake.wait_for("chat.postEphemeral")
    responses.append(slack.slash(USER, "status"))
    responses.append(slack.slash(USER, "history A00012345"))
    slack.slash(OWNER, "edit A00012345")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    responses.append(slack.home_opened(USER))
    slack.fake.wait_for("views.publish")
    secret = factories.secret_key("A00012345")
    access = factories.access_key("A00012345")
    for leak in (secret, access, SECRET_MARK):
        assert leak not in slack.fake.all_text()
        assert all(leak not in r.text for r in responses)
        assert leak not in caplog.text


def test_an_admin_changes_label_channel_and_owner_in_the_edit_form_audited_and_using_no_edit(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(ADMIN, "edit A00012345", channel="CWORK0001")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    blocks = {b.get("block_id"): b for b in modal["blocks"]}
    assert blocks["label"]["element"]["initial_value"] == factories.form("A00012345").label
    answer = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"label": "Renamed <!channel>", "owner_id": USER})
    assert answer.text == ""
    note = slack.fake.wait_for("chat.postEphemeral")[0].params["text"]
    assert "Saved the label, channel and owner of *A00012345*: Renamed &lt;!channel&gt;" in note
    status = slack.services.keys.status("A00012345")
    assert (status.label, status.owner_id) == ("Renamed <!channel>", USER)
    assert status.edits_last_7_days == 0  # none of Coupang's weekly edits
    entry = [e for e in slack.services.audit.entries() if e.action == "key.details_edited"][0]
    assert entry.actor == ADMIN and entry.details["after"] == {"label": "Renamed <!channel>", "owner_id": USER}


def test_the_owner_has_no_label_fields_and_a_forged_one_is_refused(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(OWNER, "edit A00012345")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert "label" not in {b.get("block_id") for b in modal["blocks"]}
    forged = {**modal, "blocks": [*modal["blocks"], {"type": "input", "block_id": "label", "element": {}}]}
    answer = slack.submit(OWNER, ids.EDIT_LINKING_MODAL, {"label": "Mine now"}, view=forged)
    assert "Only admins" in str(answer.json()["errors"])
    assert slack.services.keys.status("A00012345").label != "Mine now"


def test_an_empty_label_in_the_admin_form_lands_under_its_field(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(ADMIN, "edit A00012345")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    answer = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"label": " ", "ip_addresses": "10.0.0.1"})
    assert set(answer.json()["errors"]) == {"label", "ip_addresses"}


def test_a_deleted_key_is_announced_in_its_channel(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    channel = slack.services.keys.status("A00012345").channel_id
    slack.click(OWNER, ids.DELETE_KEY, "A00012345")
    post = slack.fake.wait_for("chat.postMessage")[0].params
    assert post["channel"] == channel
    assert f"<@{OWNER}> deleted the key of *A00012345*" in post["text"] and "no more reminders" in post["text"]
