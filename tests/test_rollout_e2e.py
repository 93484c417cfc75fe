"""Key rollout end to end: request → approve → enter new key → every consumer holds it → a consumer proves it.

Real parts: the Bolt app behind the WSGI stack (signed Slack requests in, fake Slack out), moto's AWS server
behind boto3, an OpenBao dev server behind hvac, and a webhook receiver that verifies with ``standardwebhooks``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import time_machine
from standardwebhooks import Webhook

from bot.slack import ids
from tests.conftest import ADMIN, make_settings
from tests.factories import SECRET_MARK, form, secret_key
from tests.rollout_support import (  # noqa: F401  (fixtures)
    VAULT_TOKEN,
    aws,
    aws_parameter,
    aws_secret,
    free_port,
    openbao,
    receiver,
    vault_secret,
)
from tests.test_ops_monitoring import scrape
from tests.test_reissue_slack import buttons, click_and_wait, request_reissue

APPROVER, REQUESTER, OWNER = "UAPPROVE1", "UREQUEST1", "UOWNER001"
CLI = "cli:ops"  # consumers added on the server; from Slack they are proposals (tests/test_insider_consumers.py)
VENDOR = "A00012345"
NEW_SECRET = f"{SECRET_MARK}NEWnew0123456789abcdef"
NEW_ACCESS = "AKIAnewaccess0123456789"
FAST = (timedelta(milliseconds=200),) * 6  # the retry schedule, shortened so the test needs no 30-second wait


@pytest.fixture
def settings(db_url, openbao):  # noqa: F811
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=APPROVER, VAULT_ADDR=openbao, VAULT_TOKEN=VAULT_TOKEN)


@pytest.fixture
def key(services, aws):  # noqa: F811
    with time_machine.travel("2026-11-27T03:00:00Z", tick=True):
        services.keys.register(ADMIN, form(VENDOR))
        services.rollout.backoff = FAST
        yield VENDOR
        services.rollout.stop()


def wait_until(predicate: Any, timeout: float = 10.0) -> float:
    """Seconds until ``predicate()`` held (fails after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


def states(services) -> dict[str, Any]:
    return {c.name: c for c in services.rollout.consumers(VENDOR)}


def signed(secret: str, payload: dict[str, Any], *, msg_id: str = "msg_confirm1") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload)
    now = datetime.now(UTC)
    return body.encode(), {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def confirm(slack, secret: str, *, consumer: str, generation: int, proof: str) -> Any:
    payload = {"vendor_id": VENDOR, "generation": generation, "consumer": consumer, "proof": proof}
    body, headers = signed(secret, payload)
    return slack.post("/rollout/confirm", body, headers)


def proof(secret: str, generation: int) -> str:
    return hmac.new(secret.encode(), f"{VENDOR}:{generation}".encode(), hashlib.sha256).hexdigest()


def reissue(slack) -> tuple[int, float]:
    """Request, approve, enter the new key; returns the request's message ts and when the key was entered."""
    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "views.open")
    entered = time.monotonic()
    answer = slack.submit(REQUESTER, ids.NEW_KEY_MODAL, {"new_secret_key": NEW_SECRET, "new_access_key": NEW_ACCESS})
    assert answer.status == 200 and answer.text in ("", "{}"), answer.text
    return request_id, entered


def progress_updates(slack) -> list[str]:
    return [
        call.params["text"]
        for call in slack.fake.calls_to("chat.update")
        if "Rollout of" in call.params.get("text", "")
    ]


def test_new_key_reaches_all_four_kinds_and_a_consumer_proves_it(slack, services, key, receiver, openbao, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    rollout = services.rollout
    hook = rollout.add(CLI, VENDOR, "order-sync", "webhook", receiver.endpoint("/orders?token=abc"))
    receiver.secrets["/orders?token=abc"] = hook.signing_secret
    rollout.add(CLI, VENDOR, "erp-secret", "aws-secretsmanager", f"coupang/{VENDOR}-{id(services)}")
    rollout.add(CLI, VENDOR, "erp-param", "aws-ssm", f"/coupang/{VENDOR}/{id(services)}")
    rollout.add(CLI, VENDOR, "vault", "vault", f"apps/{id(services)}/coupang")
    assert all(s.holds_key for s in rollout.deliver_now(VENDOR))  # generation 1 everywhere first
    assert hook.target == f"{receiver.url}/orders"  # shown without the query string

    receiver.fail("/orders?token=abc", 500, times=2)
    request_id, entered = reissue(slack)
    took = wait_until(lambda: all(s.generation == 2 and s.holds_key for s in states(services).values()))
    assert time.monotonic() - entered < 10, took

    gen2 = [h for h in receiver.hits("/orders?token=abc") if h.body["data"]["generation"] == 2]
    assert [h.status for h in gen2] == [500, 500, 200]
    assert all(h.verified for h in gen2)  # standardwebhooks accepted every signature
    assert len({h.headers["webhook-id"] for h in gen2}) == 1  # the same webhook-id on every retry
    assert gen2[-1].body["type"] == "coupang_key.updated"
    assert gen2[-1].body["data"]["secret_key"] == NEW_SECRET
    assert states(services)["order-sync"].attempts == 3

    suffix = id(services)
    for data in (
        aws_secret(f"coupang/{VENDOR}-{suffix}"),
        aws_parameter(f"/coupang/{VENDOR}/{suffix}"),
        vault_secret(openbao, f"apps/{suffix}/coupang"),
    ):
        assert (data["generation"], data["secret_key"], data["access_key"]) == (2, NEW_SECRET, NEW_ACCESS)
        assert data["fingerprint"] == services.keys.status(VENDOR).secret_fingerprint

    # the progress message is a reply in the approval thread, updated in place
    request_ts = services.reissues.get(request_id).message_ts
    posted = [c for c in slack.fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == request_ts]
    assert len(posted) == 1 and "Rollout of generation 2" in posted[0].params["text"]
    wait_until(lambda: progress_updates(slack) and "4/4 delivered · 0 confirmed" in progress_updates(slack)[-1])
    assert any(
        "order-sync: HTTP 500" in text and "next try" in text
        for text in [posted[0].params["text"]] + progress_updates(slack)
    )

    answer = confirm(slack, hook.signing_secret, consumer="order-sync", generation=2, proof=proof(NEW_SECRET, 2))
    assert (answer.status, answer.json()) == (200, {"ok": True, "state": "confirmed"})
    assert states(services)["order-sync"].state == "confirmed"
    last = slack.fake.calls_to("chat.update")[-1].params
    assert last["ts"] == posted[0].response["ts"]
    assert "Rollout of generation 2: 4/4 delivered · 1 confirmed" in last["text"]
    assert not buttons(last["blocks"])  # nothing to push again

    status = slack.slash(ADMIN, f"status {VENDOR}").text_of()
    assert "consumers 4/4" in status
    assert slack.home_opened(ADMIN).status == 200
    assert "consumers 4/4" in json.dumps(slack.fake.wait_for("views.publish")[-1].params["view"])
    deliveries = scrape(slack)["coupang_keybot_rollout_deliveries"]
    assert {state: deliveries[(("state", state),)] for state in ("delivered", "confirmed", "failed")} == {
        "delivered": 3,
        "confirmed": 1,
        "failed": 0,
    }

    audit = io.StringIO()
    services.audit.export(audit, "jsonl")
    listed = json.dumps([s.as_json() for s in rollout.consumers()])
    assert {"rollout.delivered", "rollout.retrying", "rollout.confirmed", "consumer.added"} <= {
        json.loads(line)["action"] for line in audit.getvalue().splitlines()
    }
    for secret in (NEW_SECRET, secret_key(VENDOR), SECRET_MARK, hook.signing_secret, "token=abc"):
        assert secret not in slack.fake.all_text()
        assert secret not in caplog.text
        assert secret not in audit.getvalue()
        assert secret not in listed
    assert services.audit.verify().ok


def test_a_webhook_answering_400_fails_at_once_and_the_others_are_unaffected(slack, services, key, receiver):  # noqa: F811
    rollout = services.rollout
    for name in ("good", "bad"):
        added = rollout.add(CLI, VENDOR, name, "webhook", receiver.endpoint(f"/{name}"))
        receiver.secrets[f"/{name}"] = added.signing_secret
    rollout.deliver_now(VENDOR)

    receiver.fail("/bad", 400, body="unknown field 'data'")
    reissue(slack)
    wait_until(
        lambda: (
            states(services)["good"].generation == 2
            and states(services)["good"].holds_key
            and states(services)["bad"].state == "failed"
        )
    )
    bad, good = states(services)["bad"], states(services)["good"]
    assert (bad.generation, bad.attempts, bad.next_attempt_at) == (2, 1, None)
    assert bad.last_error == "HTTP 400: unknown field 'data'"
    assert good.state == "delivered"

    wait_until(
        lambda: any(
            "1/2 delivered" in t
            for t in progress_updates(slack)
            + [c.params.get("text", "") for c in slack.fake.calls_to("chat.postMessage")]
        )
    )
    shown = [c for c in slack.fake.calls if "Rollout of generation 2" in c.params.get("text", "")][-1].params
    assert "bad: HTTP 400: unknown field" in shown["text"]
    assert buttons(shown["blocks"]) == {ids.PUSH_CONSUMERS: VENDOR}

    listing = slack.slash(OWNER, f"consumers {VENDOR}")
    assert "HTTP 400" in listing.text_of() and "1/2 hold the current key" in listing.text_of()

    # fixed on the receiver's side: Push again delivers, the message follows
    before = len(receiver.hits("/bad"))
    click_and_wait(slack, OWNER, ids.PUSH_CONSUMERS, VENDOR, "response_url")
    receiver.wait_for("/bad", before + 1)
    wait_until(lambda: states(services)["bad"].state == "delivered")
    wait_until(lambda: "2/2 delivered" in slack.fake.calls_to("chat.update")[-1].params["text"])


def test_a_progress_message_deleted_in_slack_is_posted_again_in_its_thread(slack, services, key, receiver):  # noqa: F811
    """Slack answers ``message_not_found`` to an update of a deleted message: the progress is posted again (in the
    approval thread) and later updates go to the new message, instead of every update failing from then on."""
    added = services.rollout.add(CLI, VENDOR, "erp", "webhook", receiver.endpoint("/erp"))
    receiver.secrets["/erp"] = added.signing_secret

    def progress_posts() -> list[Any]:
        return [c for c in slack.fake.calls_to("chat.postMessage") if "Rollout of" in c.params.get("text", "")]

    reissue(slack)
    wait_until(lambda: states(services)["erp"].generation == 2 and states(services)["erp"].holds_key)

    def latest() -> str:  # the progress as last shown, posted or updated
        shown = [c.params["text"] for c in progress_posts()] + progress_updates(slack)
        return shown[-1] if shown else ""

    wait_until(lambda: "1/1 delivered" in latest())
    [first] = progress_posts()
    channel, thread = first.response["channel"], first.params["thread_ts"]
    slack.fake.delete_message(channel, first.response["ts"])

    services.rollout.push(ADMIN, VENDOR, ["erp"])
    services.rollout.kick()
    receiver.wait_for("/erp", 2)
    wait_until(lambda: len(progress_posts()) == 2)

    second = progress_posts()[1]
    assert second.params["thread_ts"] == thread and second.params["channel"] == channel
    assert "message_not_found" in [c.response["error"] for c in slack.fake.refusals]
    right = confirm(slack, added.signing_secret, consumer="erp", generation=2, proof=proof(NEW_SECRET, 2))
    assert right.status == 200
    wait_until(
        lambda: any(
            c.params["ts"] == second.response["ts"] and c.response["ok"] for c in slack.fake.calls_to("chat.update")
        )
    )
    assert len(progress_posts()) == 2


def test_confirm_answers(slack, services, key, receiver):  # noqa: F811
    added = services.rollout.add(CLI, VENDOR, "erp", "webhook", receiver.endpoint("/erp"))
    receiver.secrets["/erp"] = added.signing_secret
    reissue(slack)
    wait_until(lambda: states(services)["erp"].generation == 2 and states(services)["erp"].holds_key)

    wrong = confirm(slack, added.signing_secret, consumer="erp", generation=2, proof=proof(secret_key(VENDOR), 2))
    assert wrong.status == 422 and states(services)["erp"].state == "delivered"
    forged = confirm(slack, "whsec_" + "A" * 32, consumer="erp", generation=2, proof=proof(NEW_SECRET, 2))
    assert forged.status == 401
    old = confirm(slack, added.signing_secret, consumer="erp", generation=1, proof=proof(secret_key(VENDOR), 1))
    assert old.status == 409
    unknown = confirm(slack, added.signing_secret, consumer="nobody", generation=2, proof=proof(NEW_SECRET, 2))
    assert (unknown.status, unknown.text) == (401, forged.text)  # nobody lists consumers by asking
    body, headers = signed(
        added.signing_secret, {"vendor_id": VENDOR, "generation": 2, "consumer": "erp", "proof": "x"}
    )
    stale = dict(headers, **{"webhook-timestamp": str(int(time.time()) - 3600)})
    assert slack.post("/rollout/confirm", body, stale).status == 401
    assert states(services)["erp"].state == "delivered"

    right = confirm(slack, added.signing_secret, consumer="erp", generation=2, proof=proof(NEW_SECRET, 2))
    assert right.status == 200 and states(services)["erp"].state == "confirmed"
    refusals = [e for e in services.audit.entries() if e.action == "rollout.confirm.refused"]
    assert [e.details["status"] for e in refusals] == [422]  # one entry per consumer per hour; the rest counted
    refused = scrape(slack)["coupang_keybot_rollout_confirm_refused_total"]
    assert {dict(k)["reason"]: v for k, v in refused.items() if v} == {
        "proof": 1,
        "signature": 2,
        "generation": 1,
        "unknown": 1,
    }

    services.rollout.push(ADMIN, VENDOR, ["erp"])  # delivered again: still proven
    services.rollout.kick()
    receiver.wait_for("/erp", 2)  # generation 2, then the push
    wait_until(lambda: states(services)["erp"].state == "confirmed")


def readme_receiver() -> str:
    """The example receiver of README.md's Rollout section, as printed there."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Rollout", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_receiver_gets_the_key_and_proves_it(slack, services, key, monkeypatch):
    # listening before the consumer exists: its first delivery (on adding) waits in the backlog instead of being
    # refused, so no retry of that one is in flight when the new key's delivery starts
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    added = services.rollout.add(CLI, VENDOR, "erp", "webhook", f"http://127.0.0.1:{port}/coupang-key")
    monkeypatch.setenv("KEYBOT_SIGNING_SECRET", added.signing_secret)
    code = readme_receiver()
    code = code.replace("https://keybot.example.com", slack.url)
    code = code.replace('HTTPServer(("", 8080), Receiver).serve_forever()', "")
    received: list[tuple[str, str]] = []
    namespace: dict[str, Any] = {"use_new_key": lambda access, secret: received.append((access, secret))}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README's example
    server.RequestHandlerClass = namespace["Receiver"]
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        reissue(slack)
        wait_until(lambda: states(services)["erp"].state == "confirmed")
        assert received[-1] == (NEW_ACCESS, NEW_SECRET)
        wait_until(lambda: "1/1 delivered · 1 confirmed" in slack.fake.calls_to("chat.update")[-1].params["text"])
    finally:
        server.shutdown()
        server.server_close()


def announcement(slack) -> str:
    """The channel's announcement of the new key (posted after the modal closed)."""
    wait_until(lambda: any("reissued by" in c.params.get("text", "") for c in slack.fake.calls_to("chat.postMessage")))
    [text] = [c.params["text"] for c in slack.fake.calls_to("chat.postMessage") if "reissued by" in c.params["text"]]
    return text


def test_the_new_key_announcement_names_the_consumers_that_get_it(slack, services, key, receiver):  # noqa: F811
    """Not "update every system that uses this key" when the bot delivers it itself: which systems, in what state."""
    for name in ("order-sync", "erp"):
        added = services.rollout.add(CLI, VENDOR, name, "webhook", receiver.endpoint(f"/{name}"))
        receiver.secrets[f"/{name}"] = added.signing_secret
    services.rollout.deliver_now(VENDOR)
    reissue(slack)
    text = announcement(slack)
    assert "update every system" not in text
    for name in ("order-sync", "erp"):
        assert f"{name}: being delivered" in text or f"{name}: delivered automatically" in text, text
    assert "Progress is updated in the request's thread" in text
    wait_until(lambda: all(s.generation == 2 and s.holds_key for s in states(services).values()))


def test_without_consumers_the_announcement_says_to_update_by_hand_and_how_to_add_them(slack, services, key):
    reissue(slack)
    text = announcement(slack)
    assert "No system receives this key automatically: update every system that uses it by hand" in text
    assert f"`/coupang-key consumers {VENDOR} add`" in text
