"""The insider's view of key rollout (issue 20): each role alone, against every way a consumer can be made to
receive a key from Slack, through the real HTTP stack (signed requests in, fake Slack out, a webhook receiver that
verifies with ``standardwebhooks``). None of them gets a key anywhere new; two people do, within seconds.

Roles: an admin (also an approver), the key's owner, an approver, a member who asked for a reissue, an outsider.
The loopback receiver is allowed by ``KEYBOT_CONSUMER_ALLOW``, so what stops them here is the two-person rule.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from bot.bootstrap import build_services
from bot.destinations import Destinations
from bot.slack import ids
from bot.slack.rollout import build_add_modal, expire_proposals
from tests.conftest import ADMIN, OWNER, SECOND_KEY, make_settings
from tests.factories import SECRET_MARK, form, secret_key
from tests.rollout_support import receiver  # noqa: F401  (fixture)
from tests.test_reissue_slack import buttons, request_reissue

APPROVER, REQUESTER, OUTSIDER = "UAPPROVE1", "UREQUEST1", "USTRANGE1"
ROLES = {"admin": ADMIN, "owner": OWNER, "approver": APPROVER, "requester": REQUESTER, "outsider": OUTSIDER}
VENDOR = "A00012345"
CHANNEL = "CSHOP0001"  # the key's channel (tests.factories.form)
LOOPBACK = "webhook:http://127.0.0.1:*"
START = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
CLI = "cli:ops"


@pytest.fixture
def approval() -> str:
    return "required"


@pytest.fixture
def allow() -> str:
    return LOOPBACK  # "": unset, the default rules


@pytest.fixture
def settings(db_url, approval, allow):
    return make_settings(
        DATABASE_URL=db_url,
        KEYBOT_APPROVERS=f"{ADMIN},{APPROVER}",
        KEYBOT_CONSUMER_ALLOW=allow,
        KEYBOT_REISSUE_APPROVAL=approval,
    )


@pytest.fixture
def key(services, receiver):  # noqa: F811
    """The key, and one consumer the server's operator added on the command line (``erp``, at /erp)."""
    with time_machine.travel(START, tick=True):
        services.keys.register(ADMIN, form(VENDOR))
        erp = services.rollout.add(CLI, VENDOR, "erp", "webhook", receiver.endpoint("/erp"))
        receiver.secrets["/erp"] = erp.signing_secret
        services.rollout.run_due()
        receiver.wait_for("/erp", 1)
        yield VENDOR
        services.rollout.stop()


def submit_consumer(slack, user: str, name: str, path: str, receiver, *, retarget: bool = False, **values: str):  # noqa: F811
    """The add (or change-target) form as this person would send it, whether or not the bot opened it for them."""
    verb = "retarget" if retarget else "add"
    slack.slash(user, f"consumers {VENDOR} {verb}")
    view = build_add_modal(VENDOR, retarget=["erp"] if retarget else None).to_dict()
    callback = ids.CONSUMER_RETARGET_MODAL if retarget else ids.CONSUMER_ADD_MODAL
    fields = {"name": name, "kind": "webhook", "target": receiver.endpoint(path) if path else "", **values}
    return slack.submit(user, callback, fields, view=view)


def proposals_posted(slack) -> list[dict[str, Any]]:
    slack.settle()
    return [
        c.params
        for c in slack.fake.calls_to("chat.postMessage")
        if ids.APPROVE_CONSUMER in buttons(c.params.get("blocks") or [])
    ]


def propose(
    slack,
    user: str,
    name: str,
    path: str,
    receiver,  # noqa: F811
    *,
    retarget: bool = False,
    **values: str,
) -> tuple[int, str | None]:
    """Propose; returns the proposal's id (from its Approve button) and the signing secret shown to the proposer."""
    before = len(proposals_posted(slack))
    answer = submit_consumer(slack, user, name, path, receiver, retarget=retarget, **values)
    view = answer.json().get("view") or {}
    assert answer.json().get("response_action") == "update", answer.text
    secret = next((s for s in json.dumps(view).split("`") if s.startswith("whsec_")), None)
    posted = proposals_posted(slack)
    assert len(posted) == before + 1
    assert posted[-1]["channel"] == CHANNEL
    return int(buttons(posted[-1]["blocks"])[ids.APPROVE_CONSUMER]), secret


def click(slack, user: str, action_id: str, value: str) -> str:
    """A click; returns what the bot told the clicker privately (empty when nothing)."""
    before = len(slack.responses())
    assert slack.click(user, action_id, value, channel=CHANNEL).status == 200
    slack.settle()
    said = slack.responses()[before:]
    return " ".join(r.get("text", "") for r in said)


def approve(slack, user: str, proposal: int) -> str:
    """Approve as Slack does it: the click (refused privately, or the target shown in a modal to this approver),
    then the modal's Approve. Returns what the approver was told; empty when it was approved."""
    opened = len(slack.fake.calls_to("views.open"))
    said = click(slack, user, ids.APPROVE_CONSUMER, str(proposal))
    if said:
        assert len(slack.fake.calls_to("views.open")) == opened  # a refusal shows no target
        return said
    modal = slack.fake.wait_for("views.open", opened + 1)[-1].params["view"]
    assert modal["callback_id"] == ids.CONSUMER_APPROVE_MODAL
    answer = slack.submit(user, ids.CONSUMER_APPROVE_MODAL, {}, view=modal)
    slack.settle()
    return "" if answer.text in ("", "{}") else answer.text_of()


def settle_deliveries(services) -> None:
    """Whatever is due is attempted now, so a delivery that was queued cannot hide behind the background thread."""
    services.rollout.run_due()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and services.rollout._thread is not None:
        time.sleep(0.05)


def assert_no_secret_anywhere(slack, services, receiver, *paths: str) -> None:  # noqa: F811
    for path in paths:
        assert receiver.hits(path) == [], f"a key reached {path}"
    text = slack.fake.all_text()
    assert secret_key(VENDOR) not in text and SECRET_MARK not in text and "whsec_" not in text
    assert services.audit.verify().ok


# ---------------------------------------------------------------- each role alone


@pytest.mark.parametrize("role", list(ROLES))
def test_alone_no_role_sends_the_key_anywhere_new_from_slack(slack, services, key, receiver, role):  # noqa: F811
    user = ROLES[role]
    if role == "requester":  # they have a reissue request open: it gives them nothing over consumers
        request_reissue(slack, REQUESTER)
    hits_erp = len(receiver.hits("/erp"))

    # add a consumer at their own server
    added = submit_consumer(slack, user, "mine", "/mine", receiver)
    # point the existing consumer at their own server
    moved = submit_consumer(slack, user, "erp", "/mine-too", receiver, retarget=True)
    # push the key again
    pushed = click(slack, user, ids.PUSH_CONSUMERS, f"{VENDOR} erp")
    settle_deliveries(services)

    if role in ("admin", "owner"):  # they may propose: a proposal, nothing more
        for answer in (added, moved):
            assert answer.json()["response_action"] == "update"
            assert "An approver other than you decides" in json.dumps(answer.json()["view"])
        assert [c.name for c in services.rollout.consumers(VENDOR)] == ["erp"]
        assert services.rollout.consumers(VENDOR)[0].target == receiver.endpoint("/erp")
        assert len(proposals_posted(slack)) == 2
        assert "Pushing" in pushed  # to the consumer two people (here: the operator) set up, nowhere else
    else:
        for answer in (added, moved):
            assert answer.json()["response_action"] == "errors", answer.text
        assert "Only admins or its owner" in pushed
        assert proposals_posted(slack) == []
    assert_no_secret_anywhere(slack, services, receiver, "/mine", "/mine-too")
    listing = slack.slash(user, f"consumers {VENDOR}").text_of()  # targets: admins, the owner and approvers
    assert "erp" in listing and (receiver.url in listing) is (role in ("admin", "owner", "approver"))
    assert len(receiver.hits("/erp")) in (hits_erp, hits_erp + 1)
    assert all(h.path == "/erp" for h in receiver.hits())
    refused = {e.action for e in services.audit.entries() if e.actor == user and e.action.endswith(".refused")}
    if role not in ("admin", "owner"):
        assert {"consumer.manage.refused", "consumer.propose.refused", "consumer.push.refused"} <= refused


def test_nobody_approves_their_own_proposal(slack, services, key, receiver):  # noqa: F811
    proposal, _ = propose(slack, ADMIN, "mine", "/mine", receiver)  # the admin is an approver too
    said = approve(slack, ADMIN, proposal)
    assert "You proposed this consumer, so someone else has to decide it." in said
    for outsider in (OWNER, REQUESTER, OUTSIDER):  # not approvers at all
        assert "Only approvers may decide consumer proposals" in approve(slack, outsider, proposal)
    settle_deliveries(services)
    assert services.rollout.proposal(proposal).status == "pending"
    assert_no_secret_anywhere(slack, services, receiver, "/mine")
    assert [e.action for e in services.audit.entries()].count("consumer.approve.refused") == 4


def test_an_approval_after_24_hours_is_refused(slack, services, key, receiver):  # noqa: F811
    proposal, _ = propose(slack, OWNER, "mine", "/mine", receiver)
    with time_machine.travel(START + timedelta(hours=24, minutes=1), tick=True):
        said = approve(slack, APPROVER, proposal)
        assert "expired after 24 hours" in said
        settle_deliveries(services)
    assert services.rollout.proposal(proposal).status == "expired"
    assert_no_secret_anywhere(slack, services, receiver, "/mine")
    assert "consumer.proposal.expired" in {e.action for e in services.audit.entries()}
    shown = slack.fake.calls_to("chat.update")[-1].params
    assert "Expired undecided" in shown["text"] or "Expired undecided" in json.dumps(shown["blocks"])
    assert not buttons(shown["blocks"])


def test_the_scheduler_closes_proposals_left_undecided_for_24_hours(slack, services, key, receiver):  # noqa: F811
    proposal, _ = propose(slack, OWNER, "mine", "/mine", receiver)
    assert expire_proposals(services) == 0
    with time_machine.travel(START + timedelta(hours=24, seconds=1), tick=True):
        assert expire_proposals(services) == 1
    assert services.rollout.proposal(proposal).status == "expired"
    shown = slack.fake.calls_to("chat.update")[-1].params
    assert "Expired undecided" in json.dumps(shown["blocks"]) and not buttons(shown["blocks"])
    assert [e.actor for e in services.audit.entries() if e.action == "consumer.proposal.expired"] == ["keybot"]


def test_a_proposal_whose_target_changed_is_void(slack, services, key, receiver):  # noqa: F811
    first, _ = propose(slack, OWNER, "orders", "/reviewed", receiver)
    second, _ = propose(slack, OWNER, "orders", "/mine", receiver)  # same consumer, another target
    voided = slack.fake.calls_to("chat.update")[-1].params  # the first proposal's message says so at once
    assert "Void:" in json.dumps(voided["blocks"]) and not buttons(voided["blocks"])
    said = approve(slack, APPROVER, first)  # the approver read the first one
    assert "void" in said
    # a retarget proposal whose consumer was changed on the server meanwhile is void too
    moved, _ = propose(slack, OWNER, "erp", "/elsewhere", receiver, retarget=True)
    services.rollout.retarget(CLI, VENDOR, "erp", "webhook", receiver.endpoint("/erp-v2"))
    assert "void" in approve(slack, APPROVER, moved)
    settle_deliveries(services)
    assert {services.rollout.proposal(p).status for p in (first, moved)} == {"void"}
    assert services.rollout.proposal(second).status == "pending"
    assert [c.name for c in services.rollout.consumers(VENDOR)] == ["erp"]
    assert_no_secret_anywhere(slack, services, receiver, "/reviewed", "/mine", "/elsewhere")


def test_two_people_the_proposal_is_approved_and_the_key_arrives_within_20_seconds(slack, services, key, receiver):  # noqa: F811
    proposal, secret = propose(slack, OWNER, "orders", "/orders?token=abc", receiver)
    assert secret is not None  # shown to the proposer alone, in their own modal
    receiver.secrets["/orders?token=abc"] = secret
    settle_deliveries(services)
    assert receiver.hits("/orders?token=abc") == []  # nothing before approval
    posted = proposals_posted(slack)[-1]
    assert "<@UOWNER001> proposes that a new consumer *orders*" in posted["text"]
    assert receiver.url not in json.dumps(posted) and "127.0.0.1" not in json.dumps(posted)  # the channel: no target

    clicked = time.monotonic()
    assert approve(slack, APPROVER, proposal) == ""
    shown_to_approver = json.dumps(slack.fake.calls_to("views.open")[-1].params["view"])
    assert f"{receiver.url}/orders" in shown_to_approver and "token=abc" not in shown_to_approver
    hit = receiver.wait_for("/orders?token=abc", 1, timeout=20)[0]
    assert time.monotonic() - clicked < 20
    assert hit.verified  # standardwebhooks accepted the signature made with the secret the proposer saw
    assert hit.body["data"]["secret_key"] == secret_key(VENDOR)
    shown = slack.fake.calls_to("chat.update")[-1].params
    assert "Approved by <@UAPPROVE1>" in json.dumps(shown["blocks"]) and not buttons(shown["blocks"])
    assert "Already approved" in approve(slack, ADMIN, proposal)  # one decision

    deny_me, _ = propose(slack, OWNER, "other", "/other", receiver)
    assert click(slack, APPROVER, ids.DENY_CONSUMER, str(deny_me)) == ""
    settle_deliveries(services)
    assert receiver.hits("/other") == []
    actions = [e.action for e in services.audit.entries()]
    for action in ("consumer.proposed", "consumer.proposal.approved", "consumer.added", "consumer.proposal.denied"):
        assert action in actions
    assert secret not in slack.fake.all_text()
    assert_no_secret_anywhere(slack, services, receiver, "/other")


def test_a_retarget_approved_by_another_approver_moves_the_key(slack, services, key, receiver):  # noqa: F811
    proposal, secret = propose(slack, ADMIN, "erp", "/erp-new", receiver, retarget=True)
    assert secret is None  # the consumer keeps its signing secret
    receiver.secrets["/erp-new"] = receiver.secrets["/erp"]
    assert approve(slack, APPROVER, proposal) == ""
    hit = receiver.wait_for("/erp-new", 1, timeout=20)[0]
    assert hit.verified and services.rollout.consumers(VENDOR)[0].target == receiver.endpoint("/erp-new")


# ---------------------------------------------------------------- KEYBOT_REISSUE_APPROVAL=none


@pytest.mark.parametrize("approval", ["none"])
@pytest.mark.parametrize("role", list(ROLES))
def test_without_approval_only_admins_add_and_every_add_is_announced(slack, services, key, receiver, role):  # noqa: F811
    user = ROLES[role]
    added = submit_consumer(slack, user, "mine", "/mine", receiver)
    moved = submit_consumer(slack, user, "erp", "/mine-too", receiver, retarget=True)
    slack.settle()
    settle_deliveries(services)
    posts = [c.params for c in slack.fake.calls_to("chat.postMessage") if c.params.get("channel") == CHANNEL]
    if role == "admin":
        assert added.json()["response_action"] == "update"
        receiver.wait_for("/mine", 1)
        receiver.wait_for("/mine-too", 1)
        texts = " ".join(p["text"] for p in posts)
        assert "<@UADMIN001> added consumer *mine*" in texts and "without approval" in texts
        assert "<@UADMIN001> pointed consumer *erp*" in texts
        details = [e.details for e in services.audit.entries() if e.action in ("consumer.added", "consumer.retargeted")]
        assert [d.get("approval") for d in details] == [None, "none", "none"]  # the CLI's, then the admin's two
    else:
        for answer in (added, moved):
            assert answer.json()["response_action"] == "errors", answer.text
        assert posts == []
        assert_no_secret_anywhere(slack, services, receiver, "/mine", "/mine-too")
        if role == "owner":
            assert "only admins may add consumers" in json.dumps(added.json()["errors"])


# ---------------------------------------------------------------- where to: KEYBOT_CONSUMER_ALLOW


@pytest.mark.parametrize("allow", [""])
def test_by_default_slack_targets_are_public_https_webhooks_and_coupang_prefixes(slack, services, key, receiver):  # noqa: F811
    refused = [
        ("webhook", "http://127.0.0.1:9/hook", ""),
        ("webhook", "https://127.0.0.1/hook", ""),
        ("webhook", "https://10.0.0.5/hook", ""),
        ("webhook", "https://100.64.0.1/hook", ""),
        ("webhook", "https://169.254.169.254/latest/meta-data", ""),
        ("webhook", "https://[fd00::1]/hook", ""),
        ("webhook", "https://localhost/hook", ""),
        ("aws-secretsmanager", "prod/database-password", ""),
        ("aws-ssm", "/prod/database/password", ""),
        ("vault", "apps/payments", ""),
        ("vault", "coupang/orders", "kv"),
    ]
    for kind, target, mount in refused:
        answer = submit_consumer(slack, OWNER, "mine", "", receiver, kind=kind, target=target, vault_mount=mount)
        assert answer.json().get("response_action") == "errors", (target, answer.text)
        assert "From Slack" in answer.json()["errors"]["target"], answer.text
    allowed = [
        ("webhook", "https://hooks.example.com/coupang", ""),
        ("aws-secretsmanager", "coupang/orders", ""),
        ("aws-ssm", "/coupang/orders", ""),
        ("vault", "coupang/orders", ""),
    ]
    for n, (kind, target, mount) in enumerate(allowed):
        answer = submit_consumer(slack, OWNER, f"ok-{n}", "", receiver, kind=kind, target=target, vault_mount=mount)
        assert answer.json().get("response_action") == "update", (target, answer.text)
    assert len(proposals_posted(slack)) == len(allowed)


@pytest.mark.parametrize("allow", ["webhook:https://erp.example.com/*,aws-ssm:/shop/*"])
def test_keybot_consumer_allow_decides_what_slack_may_propose(slack, services, key, receiver):  # noqa: F811
    def answer(kind: str, target: str) -> str:
        return submit_consumer(slack, OWNER, "mine", "", receiver, kind=kind, target=target).json()["response_action"]

    assert answer("webhook", "https://erp.example.com/hooks/coupang?token=x") == "update"
    assert answer("aws-ssm", "/shop/coupang-key") == "update"
    assert answer("webhook", "https://erp.example.com.evil.example/x") == "errors"
    assert answer("webhook", "https://evil.example.com/erp.example.com/") == "errors"
    assert answer("aws-secretsmanager", "coupang/orders") == "errors"  # no pattern for this kind
    assert answer("aws-ssm", "/coupang/orders") == "errors"


@pytest.mark.parametrize("allow", [""])
def test_a_name_that_resolves_to_loopback_is_refused_when_sending(slack, services, key, receiver):  # noqa: F811
    # DNS answers 127.0.0.1 for this public-looking name (as a rebinding attacker's server would, after the
    # proposal was approved): the address is checked when sending, after resolution
    services.rollout.destinations = Destinations(resolver=lambda host, port: ["127.0.0.1"])
    proposal, _ = propose(slack, OWNER, "orders", "", receiver, target=f"https://rebind.example.com:{receiver.port}/")
    assert approve(slack, APPROVER, proposal) == ""
    deadline = time.monotonic() + 10
    while (state := {c.name: c for c in services.rollout.consumers(VENDOR)}["orders"]).state != "failed":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state.attempts == 1 and state.next_attempt_at is None  # a configuration problem: failed at once
    assert "resolves to 127.0.0.1, which is not a public address" in state.last_error
    assert receiver.hits("/") == []


def test_a_slack_consumer_the_allow_list_no_longer_allows_gets_nothing(slack, services, key, receiver):  # noqa: F811
    proposal, secret = propose(slack, OWNER, "orders", "/orders", receiver)
    receiver.secrets["/orders"] = secret
    assert approve(slack, APPROVER, proposal) == ""
    receiver.wait_for("/orders", 1, timeout=20)
    deadline = time.monotonic() + 10
    while not all(c.state == "delivered" for c in services.rollout.consumers(VENDOR)):  # the first one settled
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.ctx.settings = replace(services.ctx.settings, consumer_allow=None)  # the operator tightened it
    services.rollout.push(ADMIN, VENDOR)
    services.rollout.kick()
    deadline = time.monotonic() + 10
    while {c.state for c in services.rollout.consumers(VENDOR)} != {"failed", "delivered"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    states = {c.name: c for c in services.rollout.consumers(VENDOR)}
    assert (
        states["orders"].state == "failed" and "From Slack, webhooks go only to public" in states["orders"].last_error
    )
    assert states["erp"].state == "delivered"  # the command line's consumer is not limited
    assert len(receiver.hits("/orders")) == 1


def test_a_pending_proposal_survives_a_master_key_rotation(settings, services, key, receiver):  # noqa: F811
    proposed = services.rollout.propose(OWNER, VENDOR, "orders", "webhook", receiver.endpoint("/orders"))
    receiver.secrets["/orders"] = proposed.signing_secret
    both = build_services(replace(settings, master_keys=(base64.b64decode(SECOND_KEY), *settings.master_keys)))
    both.keys.rotate_master_key("cli")
    only_new = build_services(replace(settings, master_keys=(base64.b64decode(SECOND_KEY),)))
    only_new.rollout.approve_proposal(APPROVER, proposed.proposal.id)
    only_new.rollout.run_due()
    assert receiver.wait_for("/orders", 1)[0].verified
    only_new.rollout.stop()
    for built in (both, only_new):
        built.engine.dispose()
