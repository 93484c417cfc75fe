"""Malformed requests through the real HTTP stack: 400/401 or a sentence the person can read, never a 500, and
one log line instead of a traceback. Also: user text is quoted back at most ``rules.QUOTE_LIMIT`` characters."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
import time_machine

from bot import rules
from bot.slack import ids
from tests import factories
from tests.conftest import ADMIN, USER, make_settings
from tests.factories import SECRET_MARK
from tests.test_reissue_slack import APPROVER, IN_WINDOW, REQUESTER, VENDOR, click_and_wait, request_reissue


@pytest.fixture
def settings(db_url):
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=APPROVER)


def assert_no_traceback(caplog) -> None:
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


def assert_one_quiet_line(caplog) -> None:
    """At most one warning or worse, and no traceback anywhere in the log."""
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) <= 1, [r.getMessage() for r in loud]
    assert_no_traceback(caplog)


def form_payload(payload: str) -> str:
    return urlencode({"payload": payload})


# ---------------------------------------------------------------- HTTP level


def test_a_non_numeric_timestamp_is_refused_with_401_without_a_signature(slack, caplog):
    body = urlencode({"command": ids.COMMAND, "text": "help", "user_id": USER})
    for timestamp in ("soon", "1e9", "", "9" * 5000):
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp}
        answer = slack.raw_post(body, headers)
        assert answer.status == 401, (timestamp[:10], answer.status, answer.text)
        assert answer.json() == {"error": "invalid request"}
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 4  # one line per request
    assert_no_traceback(caplog)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (form_payload(f"not json {SECRET_MARK}"), None),
        (form_payload("[1, 2, 3]"), None),
        (form_payload('"a string"'), None),
        ("[1, 2, 3]", "application/json"),
        ("{broken", "application/json"),
        ('{"type": "event_callback", "event": "oops"}', "application/json"),
        (form_payload('{"type": "view_submission", "view": {"id": "V1"}}'), None),
        (form_payload('{"type": "block_actions", "actions": "oops", "user": {"id": 7}}'), None),
    ],
    ids=[
        "payload-not-json",
        "payload-array",
        "payload-string",
        "json-array",
        "json-broken",
        "event-not-object",
        "view-not-object",
        "actions-not-list",
    ],
)
def test_a_signed_payload_that_is_not_a_slack_object_gets_400(slack, caplog, body, content_type):
    answer = slack.raw_post(body, slack.signed_headers(body, content_type=content_type))
    assert answer.status == 400, (answer.status, answer.text)
    assert answer.json() == {"error": "malformed request"}
    assert slack.fake.calls == []
    assert_one_quiet_line(caplog)
    assert SECRET_MARK not in caplog.text  # the body is never logged: it may hold a key typed into a form


def test_a_signed_body_that_is_not_utf8_gets_400(slack, caplog):
    body = b"payload=" + '{"type": "block_actions"}'.encode("utf-16")
    headers = slack.signed_headers(body)
    answer = slack.raw_post(body, headers)
    assert answer.status == 400, (answer.status, answer.text)
    assert answer.json() == {"error": "malformed request"}
    assert_one_quiet_line(caplog)


def test_a_well_formed_request_still_works_after_malformed_ones(slack):
    bad = form_payload("[]")
    assert slack.raw_post(bad, slack.signed_headers(bad)).status == 400
    assert "Coupang key bot" in slack.slash(USER, "help").text_of()


# ---------------------------------------------------------------- inside a listener


def test_a_new_key_form_with_unreadable_metadata_says_so_under_the_form(slack, services, caplog):
    with time_machine.travel(IN_WINDOW, tick=True):
        services.keys.register(ADMIN, factories.form(VENDOR))
        request_id = request_reissue(slack)
        click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
        click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "views.open")
        caplog.clear()
        for metadata in ("not-a-number", "1e300", "-3", "9" * 5000):
            answer = slack.submit(
                REQUESTER,
                ids.NEW_KEY_MODAL,
                {"new_secret_key": factories.secret_key("NEW") + "x"},
                private_metadata=metadata,
            )
            assert answer.status == 200, (metadata[:10], answer.status, answer.text)
            errors = answer.json()["errors"]
            assert "close this form" in " ".join(errors.values()), errors
        assert services.keys.status(VENDOR).generation == 1
        assert_no_traceback(caplog)


@pytest.mark.parametrize("value", ['{"offset": 1e300}', '{"offset": -1e300}', '{"offset": "x"}', "[]", "junk"])
def test_a_damaged_next_page_button_gets_a_sentence(slack, caplog, value):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    assert slack.click(USER, ids.STATUS_NEXT_PAGE, value).status == 200
    reply = slack.fake.wait_for("response_url")[0].params
    assert "/coupang-key status" in reply["text"] and reply["response_type"] == "ephemeral"
    assert_one_quiet_line(caplog)


# ---------------------------------------------------------------- user text is quoted back, bounded


def test_a_megabyte_status_argument_is_not_echoed_back(slack):
    huge = "Z" * 1_000_000
    answer = slack.slash(USER, f"status {huge}")
    text = answer.text_of()
    assert "is not valid" in text
    assert len(text) < 1000 and "Z" * (rules.QUOTE_LIMIT + 1) not in text


def test_an_unknown_sub_command_is_quoted_back_short(slack):
    answer = slack.slash(USER, "x" * 5000)
    text = answer.text_of()
    assert "I don't know" in text and "x" * (rules.QUOTE_LIMIT + 1) not in text


def test_bad_form_values_are_quoted_back_short(slack):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(ADMIN, "edit A00012345")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    answer = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"company_url": "not a url " * 300})
    errors = " ".join(answer.json()["errors"].values())
    assert "not a web address" in errors and len(errors) < 400
    answer = slack.submit(ADMIN, ids.EDIT_LINKING_MODAL, {"ip_addresses": "1" * 3000})
    errors = " ".join(answer.json()["errors"].values())
    assert "not an IPv4 address" in errors and len(errors) < 400


def test_quote_cuts_long_text_and_keeps_short_text_whole():
    assert rules.quote("A0001") == "'A0001'"
    cut = rules.quote("가" * 500)
    assert cut.startswith("'가") and cut.endswith("…'") and len(cut) == rules.QUOTE_LIMIT + 2
    assert rules.quote("line\nbreak") == "'line\\nbreak'"
    assert rules.quote("<!here> & co") == "'&lt;!here&gt; &amp; co'"
    assert rules.plain(rules.quote("<!here> & co")) == "'<!here> & co'"


def test_quoted_user_text_pings_nobody_while_the_bots_own_mentions_still_work(slack):
    answer = slack.slash(USER, "status <!channel>")
    text = answer.text_of()
    assert "is not valid" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text
    answer = slack.slash(USER, "<!here>&<@U0EVERY1>")
    text = answer.text_of()
    assert "&lt;!here&gt;&amp;&lt;@u0every1&gt;" in text and "<!here>" not in text and "<@u0every1>" not in text
    answer = slack.slash(ADMIN, "approvers add <!channel>")
    text = answer.text_of()
    assert "is not a Slack user" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text
    # a refusal that names people on purpose still mentions them: only what was typed is made inert
    text = slack.slash(USER, "approvers add <!channel>").text_of()
    assert f"<@{ADMIN}>" in text and "<!channel>" not in text
