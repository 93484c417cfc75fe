"""The harness itself: signed requests reach the app over HTTP, unsigned ones do not."""

from __future__ import annotations

import time

from tests.conftest import ADMIN


def test_signed_help_is_answered_in_the_acknowledgement(slack):
    answer = slack.slash(ADMIN, "help")
    assert answer.status == 200
    assert "/coupang-key" in answer.text_of()


def test_unknown_subcommand_gets_help_with_a_hint(slack):
    answer = slack.slash(ADMIN, "frobnicate")
    assert answer.status == 200
    assert "frobnicate" in answer.text_of()
    assert "help" in answer.text_of()


def test_forged_signature_is_refused(slack):
    body = "command=%2Fcoupang-key&text=help&user_id=UADMIN001"
    headers = slack.signed_headers(body)
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    assert slack.raw_post(body, headers).status == 401


def test_stale_timestamp_is_refused(slack):
    body = "command=%2Fcoupang-key&text=help&user_id=UADMIN001"
    assert slack.raw_post(body, slack.signed_headers(body, timestamp=int(time.time()) - 301)).status == 401
