"""An approval request whose message Slack did not take: retried by the scheduler, posted once, never blocking.

End to end through the signed HTTP stack and the fake Slack, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.bootstrap import build_services
from bot.scheduler import build_scheduler
from bot.slack import ids
from bot.slack.reissue import post_unposted_requests
from tests import test_reissue_slack as reissue_e2e
from tests.conftest import ADMIN, make_settings
from tests.factories import form
from tests.slack_harness import SlackHarness
from tests.test_reissue_slack import REQUESTER, VENDOR, buttons, click_and_wait, request_reissue

settings, travel, key = reissue_e2e.settings, reissue_e2e.travel, reissue_e2e.key  # same approvers, clock, key

CHANNEL = "CSHOP0001"  # form()'s channel


def request_messages(slack) -> list[dict[str, Any]]:
    """The request messages in the key's channel (what approvers see)."""
    return [m for m in slack.fake.history(CHANNEL) if ids.APPROVE_REISSUE in buttons(m.get("blocks", []))]


def submit_request(slack, user: str = REQUESTER) -> None:
    assert slack.slash(user, f"reissue {VENDOR}").status == 200
    slack.last_modal(ids.REISSUE_REQUEST_MODAL)
    answer = slack.submit(user, ids.REISSUE_REQUEST_MODAL, {"reason": "expires tomorrow"})
    assert answer.status == 200 and answer.text in ("", "{}"), answer.text


def the_dm(slack, after: int = 0) -> dict[str, Any]:
    """The private note to the requester (a DM: the post to the channel just failed), after `after` posts."""
    calls = slack.fake.wait_for("chat.postMessage", after + 1)
    [note] = [c.params for c in calls if c.params["channel"] == REQUESTER]
    return note


@pytest.mark.parametrize("slack_posted", [False, True], ids=["slack did not post", "answer lost after posting"])
@pytest.mark.usefixtures("key")
def test_a_request_slack_did_not_take_is_posted_once_by_the_scheduler(slack, services, slack_posted):
    slack.fake.fail_next("chat.postMessage", status=500, posted=slack_posted)

    submit_request(slack)
    note = the_dm(slack, after=1 if slack_posted else 0)
    assert services.reissues.get(1).message_ts is None
    assert post_unposted_requests(services, slack.client) == 1
    assert post_unposted_requests(services, slack.client) == 0

    assert "could not be posted" in note["text"] and "#1 " in note["text"]
    [message] = request_messages(slack)  # once, whether or not Slack had posted it the first time
    info = services.reissues.get(1)
    named = {"claim": info.post_claim_id, "request_id": 1, "vendor_id": info.vendor_id, "generation": 1}
    assert message["metadata"] == {"event_type": "keybot_reissue_request", "event_payload": named}
    assert (info.status, info.message_ts, info.channel_id) == ("pending", message["ts"], CHANNEL)
    assert len(slack.fake.calls_to("conversations.history")) == 1  # the 500 was ambiguous: looked first


@pytest.mark.usefixtures("key")
def test_a_request_whose_message_never_posted_does_not_block_a_new_one(slack, services):
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=0, times=4)  # 429: certainly not posted
    submit_request(slack)
    the_dm(slack)

    second = request_reissue(slack)  # no "already has an open request … see #channel": it is taken and posted

    assert services.reissues.get(1).status == "superseded"
    assert post_unposted_requests(services, slack.client) == 0  # the replaced one is never posted
    assert [int(buttons(m["blocks"])[ids.APPROVE_REISSUE]) for m in request_messages(slack)] == [second]
    assert "reissue.superseded" in [e.action for e in services.audit.entries()]


def test_the_scheduler_retries_unposted_requests(slack, services):
    scheduler = build_scheduler(services, slack.app)
    assert scheduler.get_job("reissue_posts").func is post_unposted_requests


@pytest.mark.usefixtures("key")
def test_a_request_posted_after_slack_rate_limited_it_for_seconds_is_recorded(slack, services):
    """Slack's 429s take longer than the request's 2 s database budget; the answer went out long before, so the
    post that finally succeeds is still recorded (not refused as "the database is busy")."""
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=1, times=3)

    submit_request(slack)
    slack.settle()

    assert len(request_messages(slack)) == 1
    info = services.reissues.get(1)
    assert (info.status, info.channel_id) == ("pending", CHANNEL)
    assert info.message_ts is not None and post_unposted_requests(services, slack.client) == 0
    assert not [c for c in slack.fake.calls_to("chat.postMessage") if c.params["channel"] == REQUESTER]  # no DM


def test_a_request_in_a_dm_whose_answer_was_lost_is_found_in_the_dm_and_not_posted_twice(db_url, fake_slack, travel):
    """No channel anywhere: the request goes to the requester's DM. Slack keeps no history under a user ID, so the
    bot opens the DM (conversations.open) and reads its history there before posting again."""
    services = build_services(
        make_settings(DATABASE_URL=db_url, KEYBOT_CHANNEL="", KEYBOT_APPROVERS=reissue_e2e.APPROVER)
    )
    try:
        with SlackHarness(services, fake_slack) as slack:
            services.keys.register(ADMIN, form(VENDOR, channel_id=None))
            slack.fake.fail_next("chat.postMessage", status=500, posted=True)  # posted; the answer was lost
            submit_request(slack)
            slack.settle()
            assert services.reissues.get(1).message_ts is None

            assert post_unposted_requests(services, slack.client) == 1
            assert post_unposted_requests(services, slack.client) == 0

            dm = slack.fake.dm_channel(REQUESTER)
            requests = [m for m in slack.fake.history(dm) if ids.APPROVE_REISSUE in buttons(m.get("blocks", []))]
            assert len(requests) == 1  # once, found in the DM's history
            info = services.reissues.get(1)
            assert (info.channel_id, info.message_ts) == (dm, requests[0]["ts"])  # the conversation chat.update takes
            assert [c.params["channel"] for c in slack.fake.calls_to("conversations.history")] == [dm]
            assert [c.response["error"] for c in slack.fake.refusals] == []

            click_and_wait(slack, reissue_e2e.APPROVER, ids.APPROVE_REISSUE, "1", "chat.update")
            [update] = slack.fake.calls_to("chat.update")
            assert update.params["channel"] == dm and update.response["ok"]
    finally:
        services.engine.dispose()
