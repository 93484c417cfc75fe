"""Reissue for a team of two or three (issue 14): no approval step, no dead Approve buttons, admins enter the key,
Deny says why, the requester hears the outcome, one nudge when the approved key waits. End to end through the
signed HTTP stack and the fake Slack, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import time_machine

from bot.bootstrap import Services, build_services
from bot.slack import ids
from bot.slack.reissue import expire_requests, nudge_approved_requests
from tests import test_reissue_slack as reissue_e2e
from tests.conftest import ADMIN, make_settings
from tests.factories import form
from tests.slack_harness import SlackHarness
from tests.test_reissue_slack import (
    APPROVER,
    GROUP,
    GROUPIE,
    IN_WINDOW,
    REQUESTER,
    VENDOR,
    actions,
    assert_no_secret,
    buttons,
    click_and_wait,
    complete,
    deny,
    last_update,
    request_reissue,
    strings,
)

travel, key = reissue_e2e.travel, reissue_e2e.key
settings = reissue_e2e.settings  # APPROVER, APPROVER2 and GROUP may approve


@contextmanager
def bot(db_url: str, fake_slack, **env: str) -> Iterator[tuple[Services, SlackHarness]]:
    """A bot with its own settings, behind the signed HTTP stack."""
    services = build_services(make_settings(DATABASE_URL=db_url, **env))
    try:
        with SlackHarness(services, fake_slack) as slack:
            yield services, slack
    finally:
        services.engine.dispose()


def dms_to(slack, user: str) -> list[str]:
    return [c.params["text"] for c in slack.fake.calls_to("chat.postMessage") if c.params["channel"] == user]


def refused_request(slack, user: str = REQUESTER) -> str:
    """/coupang-key reissue → the private refusal, in the command's answer (no modal opens)."""
    answer = slack.slash(user, f"reissue {VENDOR}").json()
    slack.settle()
    assert answer["response_type"] == "ephemeral" and not slack.fake.calls_to("views.open")
    return answer["text"]


# ---------------------------------------------------------------- KEYBOT_REISSUE_APPROVAL=none


@pytest.mark.parametrize("approvers", ["", APPROVER])
def test_without_approval_the_request_goes_straight_to_the_wing_steps(db_url, fake_slack, approvers):
    env = {"KEYBOT_REISSUE_APPROVAL": "none", "KEYBOT_APPROVERS": approvers}
    with bot(db_url, fake_slack, **env) as (services, slack), time_machine.travel(IN_WINDOW, tick=True):
        services.keys.register(ADMIN, form(VENDOR, owner_id=REQUESTER))  # the owner may reissue without approval
        assert slack.slash(REQUESTER, f"reissue {VENDOR}").status == 200
        modal = slack.last_modal(ids.REISSUE_REQUEST_MODAL)
        assert modal["submit"]["text"] == "Request" and "No approval step" in strings(modal)
        assert slack.submit(REQUESTER, ids.REISSUE_REQUEST_MODAL, {"reason": "expires"}).text in ("", "{}")
        posted = fake_slack.wait_for("chat.postMessage")[-1].params
        assert set(buttons(posted["blocks"])) == {ids.ENTER_NEW_KEY}  # no Approve nobody may press
        shown = strings(posted["blocks"])
        assert "No approval step" in shown and "click *Reissue (재발급)*" in shown
        request_id = int(buttons(posted["blocks"])[ids.ENTER_NEW_KEY])
        [requested] = [e for e in services.audit.entries() if e.action == "reissue.requested"]
        assert requested.details["approval"] == "none"  # audited as unapproved

        slack.settle()  # the message's ts is recorded
        announced = complete(slack, request_id)
        assert f"reissued by <@{REQUESTER}>" in announced.params["text"]
        assert services.keys.status(VENDOR).generation == 2
        assert "new key entered (no approval step)" in strings(last_update(slack)["blocks"])
        assert services.audit.verify().ok


# ---------------------------------------------------------------- required: refuse up front


def test_a_request_nobody_else_may_approve_is_refused_up_front(db_url, fake_slack, travel):
    with bot(db_url, fake_slack, KEYBOT_APPROVERS=f"{REQUESTER},{GROUP}") as (services, slack):
        services.keys.register(ADMIN, form(VENDOR))
        fake_slack.set_usergroup(GROUP, [REQUESTER])  # the only approver, also through the group, is the requester
        text = refused_request(slack)
        assert "Nobody but you may approve" in text and "KEYBOT_REISSUE_APPROVAL=none" in text
        assert fake_slack.calls_to("views.open") == []
        assert actions(services)[-1] == "reissue.request.refused"

        assert "may now approve" in slack.slash(ADMIN, "approvers add <@UOTHER001>").text_of()
        click_and_wait(slack, REQUESTER, ids.REQUEST_REISSUE, VENDOR, "views.open")  # now someone else may


def test_a_user_group_with_another_member_is_a_second_approver(db_url, fake_slack, travel):
    with bot(db_url, fake_slack, KEYBOT_APPROVERS=GROUP) as (services, slack):
        services.keys.register(ADMIN, form(VENDOR))
        fake_slack.set_usergroup(GROUP, [REQUESTER, GROUPIE])
        request_id = request_reissue(slack)
        click_and_wait(slack, GROUPIE, ids.APPROVE_REISSUE, str(request_id), "chat.update")
        assert services.reissues.get(request_id).status == "approved"


def test_the_approvers_shown_never_include_the_requester(slack, services, key):
    request_reissue(slack, user=APPROVER)
    shown = strings(slack.fake.calls_to("chat.postMessage")[-1].params["blocks"])
    assert "Approvers:" in shown and f"<@{APPROVER}>" not in shown.split("Approvers:")[1]


def test_approvers_add_takes_a_user_group_mention(slack, services, key):
    fake_group, member = "SOPS00001", "UOPSMEMB1"
    slack.fake.set_usergroup(fake_group, [member])
    added = slack.slash(ADMIN, f"approvers add <!subteam^{fake_group}|@ops>").text_of()
    assert f"<!subteam^{fake_group}>" in added and "may now approve" in added
    assert f"<!subteam^{fake_group}>" in slack.slash(REQUESTER, "approvers").text_of()
    request_id = request_reissue(slack)
    click_and_wait(slack, member, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    assert services.reissues.get(request_id).decided_by == member
    assert "no longer" in slack.slash(ADMIN, f"approvers remove <!subteam^{fake_group}|@ops>").text_of()


# ---------------------------------------------------------------- entering, denying, expiring, nudging


def test_an_admin_may_enter_the_new_key(slack, services, key, caplog):
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    assert "or an admin can enter" in strings(last_update(slack)["blocks"])
    announced = complete(slack, request_id, user=ADMIN)
    assert f"reissued by <@{ADMIN}>" in announced.params["text"]
    assert services.keys.status(VENDOR).generation == 2
    assert_no_secret(slack, services, caplog)


def test_deny_asks_for_a_reason_and_tells_the_requester(slack, services, key):
    request_id = request_reissue(slack)
    modal_before = len(slack.fake.calls_to("views.open"))
    assert deny(slack, request_id, reason="the key did not leak <!here>").text in ("", "{}")
    assert len(slack.fake.calls_to("views.open")) == modal_before + 1
    slack.fake.wait_for("chat.update")
    assert "Denied by" in strings(last_update(slack)["blocks"])
    slack.settle()
    [told] = dms_to(slack, REQUESTER)
    assert f"<@{APPROVER}> denied your reissue request #{request_id}" in told
    assert "the key did not leak &lt;!here&gt;" in told
    [denied] = [e for e in services.audit.entries() if e.action == "reissue.denied"]
    assert denied.details["reason"] == "the key did not leak <!here>"


def test_the_requester_may_not_open_the_deny_form(slack, services, key):
    request_id = request_reissue(slack)
    refusal = click_and_wait(slack, REQUESTER, ids.DENY_REISSUE, str(request_id), "response_url")
    assert "Only approvers" in refusal.params["text"]
    assert slack.fake.calls_to("views.open")[-1].params["view"]["callback_id"] != ids.DENY_MODAL
    assert actions(services)[-1] == "reissue.deny.refused"


def test_the_requester_hears_when_the_request_expires(slack, services, key, travel):
    request_id = request_reissue(slack)
    travel.shift(timedelta(hours=24, minutes=1))
    assert expire_requests(services, slack.client) == 1
    [told] = dms_to(slack, REQUESTER)
    assert f"#{request_id}" in told and "expired" in told
    assert "Expired" in strings(last_update(slack)["blocks"])


def test_an_approved_key_not_entered_after_2_hours_gets_one_nudge_in_its_thread(slack, services, key, travel):
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    message_ts = services.reissues.get(request_id).message_ts
    posts = len(slack.fake.calls_to("chat.postMessage"))

    travel.shift(timedelta(hours=1, minutes=59))
    assert nudge_approved_requests(services, slack.client) == 0
    travel.shift(timedelta(minutes=2))
    other_process = build_services(services.ctx.settings)
    try:
        assert nudge_approved_requests(services, slack.client) == 1
        assert nudge_approved_requests(other_process, slack.client) == 0  # another serve process, or a restart
        travel.shift(timedelta(hours=3))
        assert nudge_approved_requests(services, slack.client) == 0
    finally:
        other_process.engine.dispose()
    [nudge] = slack.fake.calls_to("chat.postMessage")[posts:]
    assert nudge.params["thread_ts"] == message_ts and f"<@{REQUESTER}>" in nudge.params["text"]
    assert "Enter new key" in nudge.params["text"]
    assert actions(services).count("reissue.nudged") == 1


def test_a_nudge_whose_answer_was_lost_is_found_in_its_thread_and_not_posted_again(slack, services, key, travel):
    """The nudge is a reply in the request's thread, which the channel's history does not show: the bot looks in
    the thread itself before posting again."""
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    info = services.reissues.get(request_id)
    travel.shift(timedelta(hours=2, minutes=1))
    slack.fake.fail_next("chat.postMessage", status=500, posted=True)  # Slack posted it; the answer was lost

    assert nudge_approved_requests(services, slack.client) == 0
    assert nudge_approved_requests(services, slack.client) == 1  # the retry finds it instead of posting
    assert nudge_approved_requests(services, slack.client) == 0

    in_thread = [m for m in slack.fake.history(info.channel_id) if m.get("thread_ts") == info.message_ts]
    assert len(in_thread) == 1 and "Enter new key" in in_thread[0]["text"]
    [look] = slack.fake.calls_to("conversations.replies")
    assert look.params["ts"] == info.message_ts
    assert actions(services).count("reissue.nudged") == 1


# ---------------------------------------------------------------- history reads as sentences


def test_history_reads_as_sentences_in_both_languages(slack, services, key):
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    english = slack.slash(REQUESTER, f"history {VENDOR}").text_of()
    assert f"<@{APPROVER}> approved the reissue request #{request_id}." in english
    assert f"<@{REQUESTER}> asked to reissue the key (request #{request_id}): expires tomorrow" in english
    assert f"<@{ADMIN}> registered the key Shop {VENDOR} (generation 1, expires 2026-11-28)." in english
    assert "request_id:" not in english and "generation:" not in english  # no key: value dumps

    slack.slash(REQUESTER, "language ko")
    korean = slack.slash(REQUESTER, f"history {VENDOR}").text_of()
    assert f"<@{APPROVER}> 님이 재발급 요청(#{request_id})을 승인했습니다." in korean
    assert "approved" not in korean
