"""A view submission applies once per view id and hash, on SQLite and PostgreSQL: a replayed signed request (or the
same submission sent twice at once) changes nothing more, while a form corrected after an error still applies."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from bot.slack import ids
from storage.models import AppliedSubmission
from tests import factories
from tests.clock import START
from tests.conftest import ADMIN, OWNER, make_settings
from tests.test_reissue_slack import (
    APPROVER,
    IN_WINDOW,
    NEW_ACCESS,
    NEW_SECRET,
    REQUESTER,
    VENDOR,
    click_and_wait,
    request_reissue,
)
from tests.test_slack_keys import GOOD

EDIT = {"ip_addresses": "211.45.10.7"}


@pytest.fixture
def settings(db_url):
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=APPROVER)


def actions(services, action: str) -> int:
    return [e.action for e in services.audit.entries()].count(action)


def replay_twice(slack) -> None:
    for _ in range(2):
        answer = slack.replay()
        assert (answer.status, answer.text) == (200, "")  # the form closes; nothing is shown twice


def test_a_replayed_edit_uses_one_of_the_ten_weekly_edits(slack):
    slack.services.keys.register(ADMIN, factories.form(VENDOR))
    slack.slash(OWNER, f"edit {VENDOR}")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    assert slack.submit(OWNER, ids.EDIT_LINKING_MODAL, EDIT).text == ""
    replay_twice(slack)

    status = slack.services.keys.status(VENDOR)
    assert status.edits_last_7_days == 1 and status.linking.ip_addresses == ("211.45.10.7",)
    assert actions(slack.services, "key.linking_edited") == 1
    assert len(slack.fake.wait_for("chat.postEphemeral")) == 1


def test_a_replayed_registration_registers_once_and_refuses_nothing(slack):
    slack.slash(ADMIN, "add")
    slack.last_modal(ids.REGISTER_MODAL)
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD).text == ""
    replay_twice(slack)

    assert actions(slack.services, "key.registered") == 1
    assert actions(slack.services, "key.register.refused") == 0  # no "already has a key" for the replays
    assert len(slack.fake.wait_for("chat.postEphemeral")) == 1


def test_a_replayed_request_and_new_key_apply_once(slack, services):
    with time_machine.travel(IN_WINDOW, tick=True):
        services.keys.register(ADMIN, factories.form(VENDOR))
        request_id = request_reissue(slack)
        replay_twice(slack)
        click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
        click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "views.open")
        posts = len(slack.fake.calls_to("chat.postMessage"))
        assert (
            slack.submit(
                REQUESTER, ids.NEW_KEY_MODAL, {"new_access_key": NEW_ACCESS, "new_secret_key": NEW_SECRET}
            ).text
            == ""
        )
        slack.fake.wait_for("chat.postMessage", posts + 1)
        replay_twice(slack)

    assert services.keys.status(VENDOR).generation == 2
    assert actions(services, "reissue.requested") == 1
    assert actions(services, "reissue.completed") == 1
    assert actions(services, "reissue.complete.refused") == 0
    assert len(slack.fake.calls_to("chat.postMessage")) == posts + 1  # one announcement


def test_a_form_corrected_after_an_error_applies_with_or_without_a_new_hash(slack):
    slack.services.keys.register(ADMIN, factories.form(VENDOR))
    slack.slash(OWNER, f"edit {VENDOR}")
    modal = slack.last_modal(ids.EDIT_LINKING_MODAL)
    refused = slack.submit(OWNER, ids.EDIT_LINKING_MODAL, {"ip_addresses": "10.0.0.5"}, view_id="VFORM0001")
    assert "private address" in refused.json()["errors"]["ip_addresses"]
    # the local console sends the same view id and hash again; Slack sends a new hash: both apply
    fixed = slack.last_signed[0].replace("10.0.0.5", "211.45.10.9")
    assert slack.post_signed(fixed).text == ""
    assert slack.submit(OWNER, ids.EDIT_LINKING_MODAL, EDIT, view=modal, view_id="VFORM0001").text == ""

    status = slack.services.keys.status(VENDOR)
    assert status.edits_last_7_days == 2 and status.linking.ip_addresses == ("211.45.10.7",)


def test_the_same_submission_sent_twice_at_once_applies_once(slack):
    slack.services.keys.register(ADMIN, factories.form(VENDOR))
    slack.slash(OWNER, f"edit {VENDOR}")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    slack.submit(OWNER, ids.EDIT_LINKING_MODAL, {"ip_addresses": "10.0.0.5"})  # refused: only to get a body
    body = slack.last_signed[0].replace("10.0.0.5", "211.45.10.7")
    headers = slack.signed_headers(body)
    start = threading.Barrier(2)
    answers = []

    def send() -> None:
        start.wait()
        answers.append(slack.raw_post(body, headers))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(a.status, a.text) for a in answers] == [(200, ""), (200, "")]
    assert slack.services.keys.status(VENDOR).edits_last_7_days == 1
    assert actions(slack.services, "key.linking_edited") == 1


def test_applied_submissions_are_forgotten_after_a_day(services):
    from bot.services.base import SubmissionId

    with time_machine.travel(START):
        services.keys.register(ADMIN, factories.form("A00000001"), submission=SubmissionId("V1", "h1"))
    with time_machine.travel(START) as traveller:
        traveller.shift(timedelta(days=1, minutes=1))
        services.keys.register(ADMIN, factories.form("A00000002"), submission=SubmissionId("V2", "h2"))
    with services.ctx.transaction() as session:
        kept = session.scalars(select(AppliedSubmission.view_id)).all()
        assert kept == ["V2"] and session.scalar(select(func.count()).select_from(AppliedSubmission)) == 1
