"""The harness itself: signed requests reach the app over HTTP, unsigned ones do not."""

from __future__ import annotations

import json
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


def test_healthz_answers_when_the_database_does(slack):
    answer = slack.get("/healthz")
    assert answer.status == 200
    assert json.loads(answer.text) == {"ok": True}


def test_healthz_is_503_when_the_database_does_not_answer(tmp_path):
    from sqlalchemy import create_engine

    from bot.wsgi import build_wsgi, database_answers

    gone = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'keybot.db'}")
    app = build_wsgi(object(), healthy=lambda: database_answers(gone))  # type: ignore[arg-type]
    statuses = []
    body = app({"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"}, lambda status, headers: statuses.append(status))
    assert statuses == ["503 Service Unavailable"]
    assert json.loads(b"".join(body)) == {"ok": False, "error": "database"}
