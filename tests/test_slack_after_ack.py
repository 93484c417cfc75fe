"""Answer first, then the rest: listeners answer Slack's HTTP request from the database alone (Bolt's
``process_before_response``), and whatever calls Slack or Coupang runs after the answer (lazy listeners).
End to end through the signed HTTP stack, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

from bot.slack import ids
from bot.slack.failures import BROKEN
from tests import factories
from tests.conftest import ADMIN


def test_the_answer_does_not_wait_for_slack(slack):
    """A slow views.open no longer holds the slash command's answer: Slack gets 200 at once, the form follows."""
    with slack.fake.hold("views.open"):
        answer = slack.slash(ADMIN, "add")
        assert answer.status == 200
        assert slack.fake.calls_to("views.open") == []  # still waiting on Slack
    assert slack.last_modal(ids.REGISTER_MODAL)["callback_id"] == ids.REGISTER_MODAL


def test_a_click_whose_listener_crashes_is_told_privately_and_answered_200(slack, monkeypatch, caplog):
    """Slack shows nothing of a click's HTTP answer and marks a 500 as failed: the person gets a sentence instead."""
    slack.services.keys.register(ADMIN, factories.form("A00012345"))

    def broken(*args, **kwargs):
        raise RuntimeError("secret-ish detail at line 42")

    monkeypatch.setattr(slack.services.keys, "delete", broken)
    with caplog.at_level(logging.ERROR):
        answer = slack.click(ADMIN, ids.DELETE_KEY, "A00012345")
    assert answer.status == 200
    note = slack.fake.wait_for("response_url")[0].params
    assert note["response_type"] == "ephemeral" and note["text"] == BROKEN
    assert "line 42" not in slack.fake.all_text()
    assert any(record.exc_info for record in caplog.records)  # the traceback is in the log, once
    assert [s.vendor_id for s in slack.services.keys.statuses()] == ["A00012345"]


def test_a_step_that_fails_after_the_answer_is_told_to_the_person(slack, monkeypatch):
    """The Coupang check runs after "Checking…" was answered; when it crashes, the person still hears of it."""
    slack.services.keys.register(ADMIN, factories.form("A00012345"))

    def broken(*args, **kwargs):
        raise RuntimeError("gateway exploded")

    monkeypatch.setattr(slack.services.verification, "verify", broken)
    answer = slack.slash(ADMIN, "verify A00012345")
    assert "Checking" in answer.text_of()
    note = slack.fake.wait_for("response_url")[0].params
    assert note["text"] == BROKEN and "exploded" not in note["text"]


def test_slack_answers_after_the_answer_count_in_healthz(slack):
    """Lazy listeners get a copy of the request; Slack's answers to their calls still reach the app's monitor, so a
    token revoked while opening a form shows in /healthz."""
    slack.slash(ADMIN, "add")
    slack.settle()
    assert slack.get("/healthz").json()["checks"]["slack"] == "ok"  # views.open answered after the answer
    slack.fake.revoke_token(slack.client.token)
    assert slack.slash(ADMIN, "add").status == 200
    slack.settle()
    assert "invalid_auth" in slack.get("/healthz").json()["checks"]["slack"]
