"""Reissue end to end: signed Slack requests in, Web API calls out to the fake Slack, SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import text

from bot.scheduler import build_scheduler
from bot.slack import ids
from bot.slack.reissue import build_request_blocks, chain_head_text, expire_requests, post_chain_head
from tests.clock import IN_WINDOW  # 12:00 in Seoul; form() keys expire 2026-11-28 (D-1)
from tests.conftest import ADMIN, make_settings
from tests.factories import SECRET_MARK, access_key, form, secret_key

APPROVER, APPROVER2, REQUESTER, STRANGER = "UAPPROVE1", "UAPPROVE2", "UREQUEST1", "USTRANGE1"
GROUP, GROUPIE = "SGROUP001", "UGROUPIE1"
VENDOR = "A00012345"
NEW_SECRET = f"{SECRET_MARK}NEWnew0123456789abcdef"
NEW_ACCESS = "AKIAnewaccess0123456789"


@pytest.fixture
def settings(db_url):
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=f"{APPROVER},{APPROVER2},{GROUP}")


@pytest.fixture
def travel():
    with time_machine.travel(IN_WINDOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def key(services, travel):
    return services.keys.register(ADMIN, form(VENDOR))


# ---------------------------------------------------------------- helpers


def strings(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        return "\n".join(strings(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(strings(v) for v in node)
    return ""


def buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """action_id -> value of every button in ``blocks``."""
    found = {}
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("type") == "button":
                found[element["action_id"]] = element.get("value", "")
    return found


def actions(services) -> list[str]:
    return [e.action for e in services.audit.entries()]


def request_reissue(slack, user: str = REQUESTER, reason: str = "expires tomorrow", **values: Any) -> int:
    """Slash command → modal → submit; returns the request id from the posted message's Approve button."""
    before = len(slack.fake.calls_to("chat.postMessage"))
    assert slack.slash(user, f"reissue {VENDOR}").status == 200
    slack.last_modal(ids.REISSUE_REQUEST_MODAL)
    answer = slack.submit(user, ids.REISSUE_REQUEST_MODAL, {"reason": reason, **values})
    assert answer.status == 200 and answer.text in ("", "{}"), answer.text
    posted = slack.fake.wait_for("chat.postMessage", before + 1)[-1]
    request_id = int(buttons(posted.params["blocks"])[ids.APPROVE_REISSUE])
    deadline = time.monotonic() + 5  # the listener records the message's ts just after posting it
    while slack.services.reissues.get(request_id).message_ts != posted.response["ts"]:
        assert time.monotonic() < deadline, "the request message was never recorded"
        time.sleep(0.01)
    return request_id


def click_and_wait(slack, user: str, action_id: str, value: str, method: str) -> Any:
    before = len(slack.fake.calls_to(method))
    assert slack.click(user, action_id, value).status == 200
    return slack.fake.wait_for(method, before + 1)[-1]


def last_update(slack) -> dict[str, Any]:
    return slack.fake.calls_to("chat.update")[-1].params


def complete(slack, request_id: int, user: str = REQUESTER, **values: Any) -> Any:
    click_and_wait(slack, user, ids.ENTER_NEW_KEY, str(request_id), "views.open")
    before = len(slack.fake.calls_to("chat.postMessage"))
    answer = slack.submit(
        user, ids.NEW_KEY_MODAL, {"new_access_key": NEW_ACCESS, "new_secret_key": NEW_SECRET, **values}
    )
    assert answer.status == 200 and answer.text in ("", "{}"), answer.text
    return slack.fake.wait_for("chat.postMessage", before + 1)[-1]


def assert_no_secret(slack, services, caplog) -> None:
    export = io.StringIO()
    services.audit.export(export, "jsonl")
    for secret in (NEW_SECRET, secret_key(VENDOR), SECRET_MARK):
        assert secret not in slack.fake.all_text()
        assert secret not in caplog.text
        assert secret not in export.getvalue()


# ---------------------------------------------------------------- happy paths


def test_reissue_in_the_window_from_request_to_new_key(slack, services, key, caplog):
    caplog.set_level(logging.DEBUG)
    due_before = services.reminders.due()
    request_id = request_reissue(slack, reason="expires tomorrow <!channel>", emergency=["emergency"])

    modal = strings(slack.last_modal(ids.REISSUE_REQUEST_MODAL))
    assert "30 minutes" in modal and "Early" not in modal
    posted = slack.fake.calls_to("chat.postMessage")[-1].params
    message = strings(posted["blocks"])
    assert posted["channel"] == "CSHOP0001"
    assert f"<@{APPROVER}>" in message and f"<!subteam^{GROUP}>" in message
    assert "&lt;!channel&gt;" in message and "<!channel>" not in message  # the reason pings nobody
    assert "EMERGENCY" in message

    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    approved = last_update(slack)
    assert approved["ts"] == slack.fake.calls_to("chat.postMessage")[-1].response["ts"]
    assert set(buttons(approved["blocks"])) == {ids.ENTER_NEW_KEY}  # Approve / Deny removed
    assert "click *Reissue (재발급)*" in strings(approved["blocks"])

    announced = complete(slack, request_id, new_expires_on="2027-05-26")
    new_key_modal = slack.last_modal(ids.NEW_KEY_MODAL)
    dates = [b["element"].get("initial_date") for b in new_key_modal["blocks"] if b.get("type") == "input"]
    assert "2027-05-26" in dates  # today (2026-11-27) + 180 days
    assert "initial_value" not in json.dumps(new_key_modal)  # no secret prefill

    text_posted = announced.params["text"]
    status = services.keys.status(VENDOR)
    assert f"reissued by <@{REQUESTER}>" in text_posted and "2027-05-26" in text_posted
    assert status.secret_fingerprint in text_posted
    assert status.generation == 2 and status.propagating_until is not None
    assert "Done" in strings(last_update(slack)["blocks"]) and not buttons(last_update(slack)["blocks"])

    with services.ctx.transaction() as session:
        stored = services.ctx.keys.get(session, vendor_id=VENDOR)
        assert services.ctx.keys.secrets(stored) == (NEW_ACCESS, NEW_SECRET)
    assert due_before and all(r.vendor_id == VENDOR and r.generation == 1 for r in due_before)
    assert services.reminders.due() == []  # milestones reset with the new generation and expiry
    assert services.audit.verify().ok
    assert {"reissue.requested", "reissue.approved", "reissue.completed"} <= set(actions(services))
    assert_no_secret(slack, services, caplog)


def test_early_reissue_warns_and_waits_24_hours(slack, services, travel, caplog):
    services.keys.register(ADMIN, form(VENDOR, issued_on="2026-11-01"))  # expires 2027-04-30
    request_id = request_reissue(slack)
    modal = strings(slack.last_modal(ids.REISSUE_REQUEST_MODAL))
    assert "Early reissue" in modal and "24 hours or more" in modal and "stops working at once" in modal

    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    assert "*Delete (삭제)*, then *Issue (발급)*" in strings(last_update(slack)["blocks"])
    complete(slack, request_id, user=APPROVER)

    status = services.keys.status(VENDOR)
    hours = (status.propagating_until - services.ctx.clock.now()).total_seconds() / 3600
    assert 23.9 < hours <= 24
    with services.ctx.transaction() as session:
        stored = services.ctx.keys.get(session, vendor_id=VENDOR)
        assert services.ctx.keys.secrets(stored) == (NEW_ACCESS, NEW_SECRET)
    assert services.audit.verify().ok
    assert_no_secret(slack, services, caplog)


def test_after_expiry_the_way_back_is_issue_with_the_linking_info_and_24_hours(slack, services, travel, caplog):
    services.keys.register(ADMIN, form(VENDOR, issued_on="2026-05-01"))  # expired on 2026-10-28
    status = slack.slash(REQUESTER, f"status {VENDOR}").text_of()
    assert "expired 30 days ago" in status and "Issue (발급)" in status and "24 hours" in status
    assert "Reissue (재발급) button is active" not in status

    request_id = request_reissue(slack)
    modal = strings(slack.last_modal(ids.REISSUE_REQUEST_MODAL))
    assert "*Issue (발급)*" in modal and "linking info" in modal and "24 hours" in modal
    assert "30 minutes" not in modal and "Reissue (재발급)" not in modal
    assert "issue after expiry" in strings(slack.fake.calls_to("chat.postMessage")[-1].params["blocks"])

    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    steps = strings(last_update(slack)["blocks"])
    assert "click *Issue (발급)*" in steps and "연동업체 선택" in steps and "직접 입력" in steps
    assert "*24 hours*" in steps and "재발급" not in steps
    complete(slack, request_id)

    status = services.keys.status(VENDOR)
    hours = (status.propagating_until - services.ctx.clock.now()).total_seconds() / 3600
    assert 23.9 < hours <= 24
    [requested] = [e for e in services.audit.entries() if e.action == "reissue.requested"]
    assert requested.details["path"] == "after_expiry"
    assert_no_secret(slack, services, caplog)


def test_a_reissue_the_key_outlives_is_done_by_issue_and_waits_24_hours(slack, services, key, travel):
    travel.shift(20 * 3600)  # 08:00 on 2026-11-28 in Seoul: D-0, the Reissue path
    request_id = request_reissue(slack)
    travel.shift(17 * 3600)  # 01:00 on 2026-11-29 in Seoul: the key expired yesterday
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    steps = strings(last_update(slack)["blocks"])
    assert "click *Issue (발급)*" in steps and "재발급" not in steps
    complete(slack, request_id)
    hours = (services.keys.status(VENDOR).propagating_until - services.ctx.clock.now()).total_seconds() / 3600
    assert 23.9 < hours <= 24


def test_the_new_key_form_needs_both_keys_and_refuses_the_stored_secret(slack, services, key, caplog):
    caplog.set_level(logging.DEBUG)
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "views.open")
    modal = slack.last_modal(ids.NEW_KEY_MODAL)
    inputs = {b["block_id"]: b for b in modal["blocks"] if b["type"] == "input"}
    assert not inputs["new_access_key"].get("optional") and not inputs["new_secret_key"].get("optional")

    answer = slack.submit(REQUESTER, ids.NEW_KEY_MODAL, {"new_secret_key": NEW_SECRET})
    assert answer.json()["response_action"] == "errors"
    assert set(answer.json()["errors"]) == {"new_access_key"}
    answer = slack.submit(
        REQUESTER, ids.NEW_KEY_MODAL, {"new_access_key": NEW_ACCESS, "new_secret_key": secret_key(VENDOR)}
    )
    errors = answer.json()["errors"]
    assert set(errors) == {"new_secret_key"} and "already stored" in errors["new_secret_key"]
    assert secret_key(VENDOR) not in answer.text and access_key(VENDOR) not in answer.text
    assert services.keys.status(VENDOR).generation == 1  # nothing saved
    assert services.reissues.get(request_id).status == "approved"
    assert_no_secret(slack, services, caplog)


def test_request_reissue_button_opens_the_modal_and_one_request_per_key(slack, services, key):
    click_and_wait(slack, REQUESTER, ids.REQUEST_REISSUE, VENDOR, "views.open")
    assert slack.last_modal(ids.REISSUE_REQUEST_MODAL)["private_metadata"] == VENDOR
    request_id = request_reissue(slack)
    refusal = click_and_wait(slack, APPROVER, ids.REQUEST_REISSUE, VENDOR, "response_url")
    assert f"open reissue request #{request_id}" in refusal.params["text"]
    assert actions(services)[-1] == "reissue.request.refused"


def test_reason_is_required(slack, services, key):
    slack.slash(REQUESTER, f"reissue {VENDOR}")
    slack.last_modal(ids.REISSUE_REQUEST_MODAL)
    answer = slack.submit(REQUESTER, ids.REISSUE_REQUEST_MODAL, {"reason": "  "})
    assert answer.json()["response_action"] == "errors" and "reason" in answer.json()["errors"]


# ---------------------------------------------------------------- refusals, each audited


def test_non_approver_is_refused_privately(slack, services, key):
    request_id = request_reissue(slack)
    refusal = click_and_wait(slack, STRANGER, ids.APPROVE_REISSUE, str(request_id), "response_url")
    assert "Only approvers" in refusal.params["text"]
    assert refusal.params["response_type"] == "ephemeral"
    assert slack.fake.calls_to("chat.update") == []
    assert services.reissues.get(request_id).status == "pending"
    assert actions(services)[-1] == "reissue.approve.refused"


def test_requester_cannot_approve_their_own_request(slack, services, key):
    request_id = request_reissue(slack, user=APPROVER)
    refusal = click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "response_url")
    assert "someone else" in refusal.params["text"]
    assert actions(services)[-1] == "reissue.approve.refused"


def test_expired_request_is_refused_and_shown_expired(slack, services, key, travel):
    request_id = request_reissue(slack)
    travel.shift(24 * 3600 + 60)
    refusal = click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "response_url")
    assert "expired" in refusal.params["text"]
    update = slack.fake.wait_for("chat.update")[-1].params
    assert "Expired" in strings(update["blocks"]) and not buttons(update["blocks"])
    assert actions(services)[-2:] == ["reissue.expired", "reissue.approve.refused"]


def test_approval_for_a_changed_key_is_void(slack, services, key):
    request_id = request_reissue(slack)
    with services.engine.begin() as connection:
        connection.execute(text("UPDATE keys SET generation = generation + 1"))
    refusal = click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "response_url")
    assert "void" in refusal.params["text"]
    update = slack.fake.wait_for("chat.update")[-1].params
    assert "Void" in strings(update["blocks"]) and not buttons(update["blocks"])
    assert {"reissue.voided", "reissue.approve.refused"} <= set(actions(services))


def test_double_click_makes_one_decision(slack, services, key):
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    refusal = click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "response_url")
    assert "Already approved" in refusal.params["text"]
    refusal = click_and_wait(slack, APPROVER2, ids.DENY_REISSUE, str(request_id), "response_url")
    assert "Already approved" in refusal.params["text"]
    assert len(slack.fake.calls_to("chat.update")) == 1
    assert actions(services).count("reissue.approved") == 1
    assert actions(services).count("reissue.approve.refused") == 1
    assert actions(services).count("reissue.deny.refused") == 1


def deny(slack, request_id: int, user: str = APPROVER, reason: str = "") -> Any:
    """Deny → the reason modal → submit; returns the answer to the submission."""
    click_and_wait(slack, user, ids.DENY_REISSUE, str(request_id), "views.open")
    slack.last_modal(ids.DENY_MODAL)
    return slack.submit(user, ids.DENY_MODAL, {"reason": reason} if reason else {})


def test_deny_closes_the_request(slack, services, key):
    request_id = request_reissue(slack)
    assert deny(slack, request_id).text in ("", "{}")
    slack.fake.wait_for("chat.update")
    assert "Denied by" in strings(last_update(slack)["blocks"]) and not buttons(last_update(slack)["blocks"])
    refusal = click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "response_url")
    assert "denied" in refusal.params["text"]


def test_only_requester_or_approver_enter_the_new_key(slack, services, key):
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    refusal = click_and_wait(slack, APPROVER2, ids.ENTER_NEW_KEY, str(request_id), "response_url")
    assert "Only the requester" in refusal.params["text"]
    assert actions(services)[-1] == "reissue.complete.refused"


def test_bad_secret_shape_is_a_form_error_that_does_not_echo_it(slack, services, key, caplog):
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "views.open")
    typed = f"{SECRET_MARK} with spaces"
    answer = slack.submit(REQUESTER, ids.NEW_KEY_MODAL, {"new_secret_key": typed})
    assert answer.json()["response_action"] == "errors" and "new_secret_key" in answer.json()["errors"]
    assert SECRET_MARK not in answer.text
    assert services.keys.status(VENDOR).generation == 1
    assert_no_secret(slack, services, caplog)


def test_concurrent_approvals_yield_one_decision(slack, services, key):
    request_id = request_reissue(slack)
    barrier = threading.Barrier(2)

    def click(user: str) -> None:
        barrier.wait()
        slack.click(user, ids.APPROVE_REISSUE, str(request_id))

    threads = [threading.Thread(target=click, args=(user,)) for user in (APPROVER, APPROVER2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slack.fake.wait_for("chat.update")
    refusal = slack.fake.wait_for("response_url")[-1]
    assert "Already approved" in refusal.params["text"]
    assert len(slack.fake.calls_to("chat.update")) == 1
    assert actions(services).count("reissue.approved") == 1
    assert actions(services).count("reissue.approve.refused") == 1
    assert services.audit.verify().ok


# ---------------------------------------------------------------- approvers and the audit log


def test_user_group_members_may_approve(slack, services, key):
    slack.fake.set_usergroup(GROUP, [GROUPIE])
    request_id = request_reissue(slack)
    click_and_wait(slack, GROUPIE, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    assert services.reissues.get(request_id).decided_by == GROUPIE
    assert slack.fake.calls_to("usergroups.users.list")[0].params["usergroup"] == GROUP


def test_admin_adds_and_removes_approvers(slack, services, key):
    refused = slack.slash(REQUESTER, "approvers add <@UNEW00001>")
    assert "Only admins" in (refused.text_of() + strings(slack.responses()))
    assert "may now approve" in slack.slash(ADMIN, "approvers add <@UNEW00001|new>").text_of()
    listing = slack.slash(REQUESTER, "approvers").text_of()
    assert "<@UNEW00001>" in listing and f"<!subteam^{GROUP}>" in listing
    request_id = request_reissue(slack)
    click_and_wait(slack, "UNEW00001", ids.APPROVE_REISSUE, str(request_id), "chat.update")
    assert "no longer" in slack.slash(ADMIN, "approvers remove UNEW00001").text_of()
    assert {"approver.added", "approver.removed", "approver.add.refused"} <= set(actions(services))
    # the team sees who may approve change, in KEYBOT_CHANNEL; a refused attempt announces nothing
    slack.settle()
    posted = [c.params for c in slack.fake.calls_to("chat.postMessage") if "approver" in c.params.get("text", "")]
    assert [(p["channel"], p["text"]) for p in posted] == [
        (services.ctx.settings.channel, f":busts_in_silhouette: <@{ADMIN}> made <@UNEW00001> a reissue approver."),
        (
            services.ctx.settings.channel,
            f":busts_in_silhouette: <@{ADMIN}> removed <@UNEW00001> from the reissue approvers.",
        ),
    ]


def test_audit_command_is_for_admins_and_approvers(slack, services, key):
    refused = slack.slash(STRANGER, "audit")
    assert "Only admins and approvers" in (refused.text_of() + strings(slack.responses()))
    shown = slack.slash(APPROVER, "audit").text_of()
    assert "key.registered" in shown and "audit.read.refused" in shown


def test_chain_head_is_posted_shortened_once_a_day(slack, services, key, travel):
    seq, mac = services.audit.head()
    assert post_chain_head(services, slack.client)
    posted = slack.fake.wait_for("chat.postMessage")[-1].params
    assert posted["channel"] == "CREMIND01"
    assert f"#{seq}" in posted["text"] and mac[:16] in posted["text"] and mac not in posted["text"]
    claim = services.audit.entries(limit=1)[0]
    assert (claim.action, claim.details["seq"], claim.details["mac"]) == ("audit.head_posted", seq, mac[:16])
    assert services.audit.verify().ok

    assert not post_chain_head(services, slack.client)  # a second process, or a restart, the same day
    travel.shift(timedelta(days=1))
    assert post_chain_head(services, slack.client)
    assert len(slack.fake.calls_to("chat.postMessage")) == 2
    assert chain_head_text("en", None).endswith("empty.")


def test_racing_processes_post_the_chain_head_once(slack, services, key):
    barrier = threading.Barrier(3)
    results: list[bool] = []

    def tick() -> None:
        barrier.wait()
        results.append(post_chain_head(services, slack.client))

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, True]
    assert len(slack.fake.calls_to("chat.postMessage")) == 1
    assert services.audit.verify().ok


def test_request_blocks_escape_the_reason_and_stay_valid(services, key):
    request_id = services.reissues.request(REQUESTER, VENDOR, "<@U0BOSS> & <!here>").id
    blocks = build_request_blocks(
        "en", services.reissues.get(request_id), ["<@UAPPROVE1>"], services.ctx.settings.timezone
    )
    rendered = json.dumps([b.to_dict() for b in blocks])
    assert "&lt;@U0BOSS&gt; &amp; &lt;!here&gt;" in rendered


def test_expiry_job_closes_undecided_requests_and_updates_their_message(slack, services, key, travel):
    request_id = request_reissue(slack)
    assert expire_requests(services, slack.client) == 0
    travel.shift(24 * 3600 + 60)
    assert expire_requests(services, slack.client) == 1
    update = slack.fake.wait_for("chat.update")[-1].params
    assert "Expired" in strings(update["blocks"]) and not buttons(update["blocks"])
    assert services.reissues.get(request_id).status == "expired"
    assert actions(services).count("reissue.expired") == 1
    assert expire_requests(services, slack.client) == 0


def test_scheduler_runs_the_expiry_and_chain_head_jobs(slack, services):
    scheduler = build_scheduler(services, slack.app)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert jobs["reissue_expiry"].func is expire_requests
    assert jobs["audit_chain_head"].func is post_chain_head


def test_group_membership_is_cached_briefly(slack, services, key, travel):
    slack.fake.set_usergroup(GROUP, [GROUPIE])
    assert services.reissues.is_approver(GROUPIE) and not services.reissues.is_approver(STRANGER)
    assert len(slack.fake.calls_to("usergroups.users.list")) == 1  # one call for a burst of clicks
    slack.fake.set_usergroup(GROUP, [])
    travel.shift(61)
    assert not services.reissues.is_approver(GROUPIE)  # removed from the group: refused within a minute
    assert len(slack.fake.calls_to("usergroups.users.list")) == 2


def test_unknown_group_refuses_instead_of_failing(slack, services, key):
    request_id = request_reissue(slack)  # GROUP was never set up in the fake: no_such_subteam
    refusal = click_and_wait(slack, GROUPIE, ids.APPROVE_REISSUE, str(request_id), "response_url")
    assert "Only approvers" in refusal.params["text"]


def test_a_cafe24_key_gets_cafe24s_own_reentry_path_in_the_steps_and_the_announcement(slack, services, travel):
    services.keys.register(ADMIN, form(VENDOR, integration="integrator", integrator_name="카페24 마켓플러스"))
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    steps = strings(last_update(slack)["blocks"])
    assert "Cafe24 Marketplus: 마켓플러스 > 기본 > 계정관리 > 마켓계정관리" in steps
    assert "'연동인증' 정보 수정 > 저장" in steps
    assert "Choose the same linking info" not in steps  # a Reissue keeps the linking info
    announced = complete(slack, request_id).params["text"]
    assert "마켓계정수정" in announced


def test_other_integrators_get_a_generic_step_and_an_early_reissue_repeats_the_stored_linking_info(slack, services):
    with time_machine.travel("2026-08-01T03:00:00Z", tick=True):  # D-119: Delete, then Issue
        services.keys.register(ADMIN, form(VENDOR, integration="integrator", integrator_name="Sabangnet"))
        request_id = request_reissue(slack)
        click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
        steps = strings(last_update(slack)["blocks"])
    assert "Choose the same linking info as stored: Integrator: Sabangnet" in steps
    assert "give the new keys to Sabangnet: in its Coupang account settings replace" in steps
    assert "마켓플러스" not in steps  # no menu path is invented for an integrator Coupang did not document
