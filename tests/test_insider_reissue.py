"""Insiders against the reissue paths (issue 20, items 3 and 4): each role, alone, tries every way the bot could
replace a key — the request, the Approve button (own request, forged value, replayed), the Enter new key button and
the new-key form (opened or forged), and all of it again after 24 hours — and none of them replaces it. With
approval `none` admins and the key's owner may, and every step is announced in the key's channel and audited as
unapproved. The legitimate two-person path still delivers the new key to a consumer.

End to end: signed requests into the real HTTP stack, Web API calls out to the fake Slack, a webhook consumer that
verifies with ``standardwebhooks``; SQLite and PostgreSQL; the clock pinned with time-machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from bot.bootstrap import Services, build_services
from bot.slack import ids
from bot.slack.reissue import expire_requests, post_unposted_requests
from storage.models import ReissueRequest
from tests.conftest import ADMIN, OWNER, make_settings
from tests.factories import access_key, form, secret_key
from tests.rollout_support import WebhookReceiver, receiver  # noqa: F401  (fixture)
from tests.slack_harness import SlackHarness
from tests.test_reissue_slack import IN_WINDOW, NEW_ACCESS, NEW_SECRET, VENDOR, buttons, strings

APPROVER, APPROVER2, REQUESTER, OUTSIDER = "UAPPROVE1", "UAPPROVE2", "UREQUEST1", "UOUTSIDE1"
CHANNEL = "CSHOP0001"  # the key's channel (factories.form)
CLI = "cli:ops"  # consumers are added on the server: the CLI stays direct
ROLES = {"admin": ADMIN, "owner": OWNER, "approver": APPROVER, "requester": REQUESTER, "outsider": OUTSIDER}
NEW_KEY = {"new_access_key": {"value": {"type": "plain_text_input", "value": NEW_ACCESS}}}
NEW_KEY["new_secret_key"] = {"value": {"type": "plain_text_input", "value": NEW_SECRET}}


@dataclass
class Bot:
    services: Services
    slack: SlackHarness
    receiver: WebhookReceiver
    travel: Any

    @property
    def fake(self) -> Any:
        return self.slack.fake


@contextmanager
def running(db_url: str, fake_slack: Any, approval: str, hooks: WebhookReceiver) -> Iterator[Bot]:
    """A key (owner OWNER, channel CSHOP0001) with one webhook consumer holding generation 1."""
    env = {"DATABASE_URL": db_url, "KEYBOT_APPROVERS": f"{APPROVER},{APPROVER2}", "KEYBOT_REISSUE_APPROVAL": approval}
    services = build_services(make_settings(**env))
    try:
        with time_machine.travel(IN_WINDOW, tick=True) as travel, SlackHarness(services, fake_slack) as slack:
            services.keys.register(ADMIN, form(VENDOR))
            added = services.rollout.add(CLI, VENDOR, "erp", "webhook", hooks.endpoint("/erp"))
            hooks.secrets["/erp"] = added.signing_secret
            assert all(s.generation == 1 and s.holds_key for s in services.rollout.deliver_now(VENDOR))
            yield Bot(services, slack, hooks, travel)
    finally:
        services.rollout.stop()
        services.engine.dispose()


@pytest.fixture(params=["required", "none"])
def approval(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---------------------------------------------------------------- what happened


def stored_key(services: Services) -> tuple[int, str, str]:
    with services.ctx.transaction() as session:
        key = services.ctx.keys.get(session, vendor_id=VENDOR)
        assert key is not None
        access, secret = services.ctx.keys.secrets(key)
        return key.generation, access, secret


def assert_not_replaced(bot: Bot) -> None:
    """The key is the one registered, and no consumer was sent anything else."""
    bot.slack.settle()
    assert stored_key(bot.services) == (1, access_key(VENDOR), secret_key(VENDOR))
    assert [s.generation for s in bot.services.rollout.consumers(VENDOR)] == [1]
    assert all(h.body["data"]["generation"] == 1 for h in bot.receiver.hits("/erp"))
    assert "reissue.completed" not in actions(bot.services)


def actions(services: Services) -> list[str]:
    return [e.action for e in services.audit.entries()]


def request_ids(services: Services) -> list[int]:
    with services.ctx.reading() as session:
        return list(session.scalars(select(ReissueRequest.id).order_by(ReissueRequest.id)))


def refusals(bot: Bot) -> str:
    """Everything the bot told people privately (ephemeral answers, form errors are returned by the caller)."""
    bot.slack.settle()
    return "\n".join(c.params.get("text", "") for c in bot.fake.calls_to("response_url"))


def channel_posts(bot: Bot) -> list[str]:
    bot.slack.settle()
    return [
        strings(c.params.get("blocks")) + "\n" + c.params.get("text", "")
        for c in bot.fake.calls_to("chat.postMessage")
        if c.params["channel"] == CHANNEL
    ]


# ---------------------------------------------------------------- what one person can try


def ask(bot: Bot, user: str, reason: str = "alone") -> str:
    """The command, the form if it opens, and the form forged when it does not: whatever the bot answers."""
    slack, opened = bot.slack, len(bot.fake.calls_to("views.open"))
    said = slack.slash(user, f"reissue {VENDOR}").text_of()
    slack.settle()
    if len(bot.fake.calls_to("views.open")) > opened:
        answer = slack.submit(user, ids.REISSUE_REQUEST_MODAL, {"reason": reason})
    else:  # the form was refused: send its submission anyway, as a hand-made payload
        state = {"reason": {"value": {"type": "plain_text_input", "value": reason}}}
        answer = slack.submit(user, ids.REISSUE_REQUEST_MODAL, state, view={"blocks": []}, private_metadata=VENDOR)
    slack.settle()
    return "\n".join([said, answer.text_of()])


def enter_key(bot: Bot, user: str, request_id: int) -> str:
    """Click Enter new key, then submit the new-key form — the opened one, or a forged one when refused."""
    slack, opened = bot.slack, len(bot.fake.calls_to("views.open"))
    slack.click(user, ids.ENTER_NEW_KEY, str(request_id), channel=CHANNEL)
    slack.settle()
    if len(bot.fake.calls_to("views.open")) > opened:
        answer = slack.submit(user, ids.NEW_KEY_MODAL, NEW_KEY)
    else:
        answer = slack.submit(user, ids.NEW_KEY_MODAL, NEW_KEY, view={"blocks": []}, private_metadata=str(request_id))
    slack.settle()
    return answer.text_of()


def everything_alone(bot: Bot, user: str) -> str:
    """Every reissue path one person can walk without anyone else, now and after 24 hours."""
    said = [ask(bot, user)]
    for request_id in request_ids(bot.services):
        for action in (ids.APPROVE_REISSUE, ids.ENTER_NEW_KEY):
            bot.slack.click(user, action, str(request_id), channel=CHANNEL)
            bot.slack.settle()
            bot.slack.replay()  # the same signed click again, byte for byte
            bot.slack.settle()
        said.append(enter_key(bot, user, request_id))
        bot.slack.replay()  # the signed form again
    bot.travel.shift(timedelta(hours=24, minutes=1))
    expire_requests(bot.services, bot.slack.client)  # the scheduler's job
    for request_id in request_ids(bot.services):
        bot.slack.click(user, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        said.append(enter_key(bot, user, request_id))
    said.append(refusals(bot))
    return "\n".join(said)


# ---------------------------------------------------------------- each role alone


@pytest.mark.parametrize("role", list(ROLES))
def test_nobody_alone_replaces_a_key_when_approval_is_required(db_url, fake_slack, receiver, role):  # noqa: F811
    with running(db_url, fake_slack, "required", receiver) as bot:
        user = ROLES[role]
        said = everything_alone(bot, user)
        assert_not_replaced(bot)
        assert "someone else has to decide it" in said or "Only approvers may decide" in said
        assert "not approved yet" in said
        assert bot.services.reissues.get(request_ids(bot.services)[0]).status == "expired"


@pytest.mark.parametrize("role", ["approver", "requester", "outsider"])
def test_without_approval_only_admins_and_the_owner_may_reissue(db_url, fake_slack, receiver, role):  # noqa: F811
    with running(db_url, fake_slack, "none", receiver) as bot:
        said = everything_alone(bot, ROLES[role])
        assert_not_replaced(bot)
        assert request_ids(bot.services) == []  # not even a request
        assert f"only the key's owner <@{OWNER}> or an admin may reissue {VENDOR}" in said
        assert f"Admins: <@{ADMIN}>" in said
        assert actions(bot.services).count("reissue.request.refused") >= 2  # the command and the forged form


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_without_approval_an_admin_or_the_owner_reissues_and_every_step_is_announced(
    db_url,
    fake_slack,
    receiver,  # noqa: F811
    role,
):
    with running(db_url, fake_slack, "none", receiver) as bot:
        user = ROLES[role]
        assert ask(bot, user, reason="expires tomorrow").strip() == ""
        [request_id] = request_ids(bot.services)
        [announced] = channel_posts(bot)
        assert f"<@{user}> asks to reissue" in announced and "No approval step" in announced
        assert f"Only the key's owner <@{OWNER}> or an admin can enter the new key" in announced

        assert enter_key(bot, user, request_id) == ""
        generation, access, secret = stored_key(bot.services)
        assert (generation, access, secret) == (2, NEW_ACCESS, NEW_SECRET)
        done = f"reissued by <@{user}> without approval (KEYBOT_REISSUE_APPROVAL=none)"
        assert any(done in post for post in channel_posts(bot))
        hit = bot.receiver.wait_for("/erp", 2, timeout=20)[-1]  # the consumer has it
        assert hit.verified and hit.body["data"]["generation"] == 2
        entries = {e.action: e for e in bot.services.audit.entries()}
        assert entries["reissue.requested"].details["approval"] == "none"
        assert entries["reissue.completed"].details["approval"] == "none"  # audited as unapproved
        assert entries["reissue.completed"].actor == user


# ---------------------------------------------------------------- someone else's request


HIJACKERS = {  # approval → (who asked, who approved, who may not enter the key)
    "required": (REQUESTER, APPROVER, [APPROVER2, OWNER, OUTSIDER]),
    "none": (ADMIN, None, [APPROVER, REQUESTER, OUTSIDER]),
}


def test_nobody_else_enters_the_key_of_someone_elses_request(db_url, fake_slack, receiver, approval):  # noqa: F811
    asker, approver, hijackers = HIJACKERS[approval]
    with running(db_url, fake_slack, approval, receiver) as bot:
        assert ask(bot, asker).strip() == ""
        [request_id] = request_ids(bot.services)
        if approver:
            bot.slack.click(approver, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        bot.slack.settle()
        assert bot.services.reissues.get(request_id).status == "approved"
        for user in hijackers:
            errors = enter_key(bot, user, request_id)
            assert "may enter the new key" in errors, errors
        assert_not_replaced(bot)
        assert "may enter the new key" in refusals(bot)  # the button refused them too, privately


def test_without_approval_the_owner_may_enter_the_key_of_an_admins_request(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "none", receiver) as bot:
        ask(bot, ADMIN)
        [request_id] = request_ids(bot.services)
        assert enter_key(bot, OWNER, request_id) == ""
        assert stored_key(bot.services)[0] == 2


# ---------------------------------------------------------------- the legitimate path


def test_two_people_replace_the_key_and_the_consumer_gets_it(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "required", receiver) as bot:
        assert ask(bot, REQUESTER, reason="expires tomorrow").strip() == ""
        [request_id] = request_ids(bot.services)
        bot.slack.click(APPROVER, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        bot.slack.settle()
        approved = bot.fake.calls_to("chat.update")[-1].params
        assert set(buttons(approved["blocks"])) == {ids.ENTER_NEW_KEY}
        assert "Enter it before" in strings(approved["blocks"])  # the approval's deadline is shown

        entered = time.monotonic()
        assert enter_key(bot, REQUESTER, request_id) == ""
        hit = bot.receiver.wait_for("/erp", 2, timeout=20)[-1]
        assert time.monotonic() - entered < 20
        assert hit.verified and hit.body["data"]["generation"] == 2
        assert stored_key(bot.services) == (2, NEW_ACCESS, NEW_SECRET)
        completed = [e for e in bot.services.audit.entries() if e.action == "reissue.completed"]
        assert len(completed) == 1 and "approval" not in completed[0].details
        assert bot.services.audit.verify().ok


# ---------------------------------------------------------------- an old approval reused


def approved_request(bot: Bot, approval: str) -> int:
    asker = REQUESTER if approval == "required" else OWNER
    ask(bot, asker)
    [request_id] = request_ids(bot.services)
    if approval == "required":
        bot.slack.click(APPROVER, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        bot.slack.settle()
    assert bot.services.reissues.get(request_id).status == "approved"
    return request_id


def test_an_approved_request_expires_after_24_hours(db_url, fake_slack, receiver, approval):  # noqa: F811
    with running(db_url, fake_slack, approval, receiver) as bot:
        request_id = approved_request(bot, approval)
        asker = bot.services.reissues.get(request_id).requested_by
        bot.travel.shift(timedelta(hours=23, minutes=59))
        assert expire_requests(bot.services, bot.slack.client) == 0
        bot.travel.shift(timedelta(minutes=2))
        assert expire_requests(bot.services, bot.slack.client) == 1  # the scheduler's job closes it
        assert expire_requests(bot.services, bot.slack.client) == 0

        info = bot.services.reissues.get(request_id)
        assert info.status == "expired" and info.expired_approved
        message = strings(bot.fake.calls_to("chat.update")[-1].params["blocks"])
        assert "new key was not entered within 24 hours" in message and ids.ENTER_NEW_KEY not in message
        bot.slack.settle()
        told = [c.params["text"] for c in bot.fake.calls_to("chat.postMessage") if c.params["channel"] != CHANNEL]
        assert any(f"#{request_id}" in t and "not entered within 24 hours" in t for t in told)  # the asker hears it
        [expired] = [e for e in bot.services.audit.entries() if e.action == "reissue.approval_expired"]
        assert expired.details == {"request_id": request_id, "generation": 1}

        errors = enter_key(bot, asker, request_id)
        assert f"Reissue request #{request_id} expired" in errors and "nothing was stored or sent" in errors
        assert_not_replaced(bot)
        history = bot.slack.slash(asker, f"history {VENDOR}").text_of()
        assert "its new key was not entered within 24 hours" in history


def test_a_key_entered_as_the_24_hours_run_out_is_refused_and_closes_the_request(
    db_url,
    fake_slack,
    receiver,  # noqa: F811
    approval,
):
    """The form was opened in time; it is submitted a minute too late, before any sweep ran."""
    with running(db_url, fake_slack, approval, receiver) as bot:
        request_id = approved_request(bot, approval)
        asker = bot.services.reissues.get(request_id).requested_by
        bot.slack.click(asker, ids.ENTER_NEW_KEY, str(request_id), channel=CHANNEL)
        bot.slack.settle()
        modal = bot.slack.last_modal(ids.NEW_KEY_MODAL)
        bot.travel.shift(timedelta(hours=24, minutes=1))
        errors = bot.slack.submit(asker, ids.NEW_KEY_MODAL, NEW_KEY, view=modal).text_of()
        assert f"Reissue request #{request_id} expired" in errors
        assert_not_replaced(bot)
        assert bot.services.reissues.get(request_id).status == "expired"
        assert "not entered within 24 hours" in strings(bot.fake.calls_to("chat.update")[-1].params["blocks"])
        assert "reissue.complete.refused" in actions(bot.services)


def test_after_an_approved_request_expires_a_new_one_may_be_asked_at_once(db_url, fake_slack, receiver, approval):  # noqa: F811
    with running(db_url, fake_slack, approval, receiver) as bot:
        first = approved_request(bot, approval)
        bot.travel.shift(timedelta(hours=24, minutes=1))  # no sweep has run yet
        asker = bot.services.reissues.get(first).requested_by
        assert bot.services.keys.status(VENDOR).open_request is None  # no longer shown as mid-reissue
        assert ask(bot, asker, reason="again").strip() == ""
        assert len(request_ids(bot.services)) == 2


def test_an_outdated_request_takes_no_key(db_url, fake_slack, receiver, approval):  # noqa: F811
    """The key was deleted and registered again (generation 2) after the approval: entering the key, or approving a
    request for the old generation, voids the request and stores nothing."""
    with running(db_url, fake_slack, approval, receiver) as bot:
        request_id = approved_request(bot, approval)
        asker = bot.services.reissues.get(request_id).requested_by
        bot.services.keys.delete(ADMIN, VENDOR)
        bot.services.keys.register(ADMIN, form(VENDOR))
        errors = enter_key(bot, asker, request_id)
        assert "which is now generation 2" in refusals(bot) and "This request is void" in errors
        assert bot.services.reissues.get(request_id).status == "void"
        assert stored_key(bot.services) == (2, access_key(VENDOR), secret_key(VENDOR))
        assert bot.services.rollout.consumers(VENDOR) == []  # they went with the deleted key
        assert all(hit.body["data"]["generation"] == 1 for hit in receiver.hits())  # nothing pushed
        assert "reissue.completed" not in actions(bot.services)


def test_an_approval_click_on_a_request_for_an_older_generation_voids_it(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "required", receiver) as bot:
        ask(bot, REQUESTER)
        [request_id] = request_ids(bot.services)
        bot.services.keys.delete(ADMIN, VENDOR)
        bot.services.keys.register(ADMIN, form(VENDOR))
        bot.slack.click(APPROVER, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        assert "which is now generation 2" in refusals(bot)
        assert bot.services.reissues.get(request_id).status == "void"
        assert "This request is void" in enter_key(bot, REQUESTER, request_id)
        assert stored_key(bot.services)[0] == 2 and "reissue.completed" not in actions(bot.services)


def test_a_replayed_approve_button_decides_nothing_again(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "required", receiver) as bot:
        ask(bot, REQUESTER)
        [request_id] = request_ids(bot.services)
        bot.slack.click(APPROVER, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        bot.slack.settle()
        assert enter_key(bot, REQUESTER, request_id) == ""
        # a second request; the captured click of the first approval is replayed at it, and at the first
        ask(bot, REQUESTER, reason="again")
        second = request_ids(bot.services)[-1]
        bot.slack.click(APPROVER, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        bot.slack.replay()
        assert "This reissue is already done" in refusals(bot)
        assert bot.services.reissues.get(second).status == "pending"
        assert "not approved yet" in enter_key(bot, REQUESTER, second)
        assert stored_key(bot.services)[0] == 2


# ---------------------------------------------------------------- approval `none`: announced, then entered


def test_without_approval_the_key_is_entered_only_once_the_request_is_announced(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "none", receiver) as bot:
        bot.fake.fail_next("chat.postMessage", status=500, times=3)  # the channel post fails, retries too
        ask(bot, OWNER)
        [request_id] = request_ids(bot.services)
        assert bot.services.reissues.get(request_id).message_ts is None
        errors = enter_key(bot, OWNER, request_id)  # a hand-made form: there is no button to click yet
        assert "not in the channel yet" in errors
        assert_not_replaced(bot)

        assert post_unposted_requests(bot.services, bot.slack.client) == 1  # the scheduler posts it
        assert "No approval step" in channel_posts(bot)[-1]
        assert enter_key(bot, OWNER, request_id) == ""
        assert stored_key(bot.services)[0] == 2


def test_a_request_made_without_approval_is_dead_once_approval_is_required(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "none", receiver) as bot:
        ask(bot, OWNER)
        [request_id] = request_ids(bot.services)
        bot.services.ctx.settings = replace(bot.services.ctx.settings, reissue_approval=True)  # switched back
        errors = enter_key(bot, OWNER, request_id)
        assert "made without approval" in errors and "approval is required now" in errors
        assert_not_replaced(bot)


def test_approve_on_a_request_that_needs_no_approval_says_so(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "none", receiver) as bot:
        ask(bot, OWNER)
        [request_id] = request_ids(bot.services)
        bot.slack.click(APPROVER, ids.APPROVE_REISSUE, str(request_id), channel=CHANNEL)
        said = refusals(bot)
        assert "needs no approval" in said and "<@None>" not in said


def test_without_approval_a_key_without_an_owner_is_reissued_by_admins_only(db_url, fake_slack, receiver):  # noqa: F811
    with running(db_url, fake_slack, "none", receiver) as bot:
        bot.services.keys.register(ADMIN, form("A00099999", owner_id=""))
        said = bot.slack.slash(OWNER, "reissue A00099999").text_of()
        assert "only admins may reissue A00099999 (it has no owner)" in said
        bot.slack.slash(ADMIN, "reissue A00099999")
        bot.slack.settle()
        assert bot.slack.last_modal(ids.REISSUE_REQUEST_MODAL)["private_metadata"] == "A00099999"
