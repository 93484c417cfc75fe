"""Key rollout below the end-to-end flow: the CLI, claims across processes, retries, refusals, Slack modals."""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select, text
from standardwebhooks import Webhook

from bot.bootstrap import build_services
from bot.config import ConfigError
from bot.destinations import Destinations
from bot.rules import InvalidInput
from bot.services.base import NotAllowed, NotFound
from bot.services.rollout import BACKOFF, next_attempt, parse_target, scrub
from bot.slack import ids
from storage.crypto import DecryptionError
from storage.db import make_engine, upgrade
from storage.models import Consumer
from tests.conftest import ADMIN, OWNER, SECOND_KEY, USER, make_settings
from tests.factories import SECRET_MARK, form, secret_key
from tests.rollout_support import aws, aws_parameter, receiver  # noqa: F401  (fixtures)
from tests.test_cli import HEADER, cli, row  # noqa: F401  (cli: fixture)

VENDOR = "A00012345"


@pytest.fixture
def key(services):
    with time_machine.travel("2026-11-27T03:00:00Z", tick=True):
        services.keys.register(ADMIN, form(VENDOR))
        yield VENDOR
        services.rollout.stop()


CLI = "cli:ops"  # the server's command line adds directly; from Slack a consumer is a proposal


def add_hook(services, receiver, name: str, actor: str = CLI):  # noqa: F811
    added = services.rollout.add(actor, VENDOR, name, "webhook", receiver.endpoint(f"/{name}"))
    receiver.secrets[f"/{name}"] = added.signing_secret
    return added


# ---------------------------------------------------------------- pure rules


def test_retry_schedule_is_30s_then_doubling_to_15_minutes_for_24_hours():
    queued = datetime(2026, 11, 27, tzinfo=UTC)
    delays, now, attempts = [], queued, 0
    while (at := next_attempt(attempts := attempts + 1, queued, now, BACKOFF)) is not None:
        delays.append(at - now)
        now = at
    minutes = [d.total_seconds() / 60 for d in delays]
    assert minutes[:7] == [0.5, 1, 2, 4, 8, 15, 15]
    assert set(minutes[6:]) == {15} and now <= queued + timedelta(hours=24) < now + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("kind", "target", "problem"),
    [
        ("webhook", "http://erp.example.com/hook", "https://"),
        ("webhook", "https://user:pw@erp.example.com/hook", "user:password"),
        ("webhook", "ftp://erp.example.com/", "https://host"),
        ("aws-secretsmanager", "bad name!", "secret's name"),
        ("vault", "../etc", "KV v2 path"),
        ("carrier-pigeon", "x", "Choose one of"),
    ],
)
def test_targets_that_are_refused(kind, target, problem):
    with pytest.raises(InvalidInput) as refused:
        parse_target(kind, target)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    "target",
    [
        "https://erp.example.com/coupang key",  # a space (was accepted, then a traceback at send time)
        "https://erp .example.com/hook",
        "https://erp.example.com/ho\tok",
        "https://-erp-.example.com/hook",
        "https://erp..example.com/hook",
        "https://999.1.1.1/hook",
        "https://erp.example.com:0/hook",
        "https://erp.example.com:99999/hook",
        "https://erp.example.com:8o/hook",
        "https://ërp.example.com/hook",
        "https://erp.example.com/hook?q=ü",
        "https://:pw@erp.example.com/hook",
        "https://erp.example.com@evil.example/hook",
        "http://erp.example.com/hook",
        "erp.example.com/hook",
        "",
    ],
)
def test_webhook_urls_are_checked_in_full_at_entry(target):
    with pytest.raises(InvalidInput) as refused:
        parse_target("webhook", target)
    assert set(refused.value.errors) == {"target"}
    assert refused.value.errors["target"].endswith(".")  # one sentence saying what to fix


def test_a_bad_webhook_url_is_one_sentence_from_the_cli_and_nothing_is_stored(cli, db_url, receiver):  # noqa: F811
    with time_machine.travel("2026-11-27T03:00:00Z", tick=True):
        assert cli("keys", "import", write_keys_csv(db_url))[0] == 0
        code, out, err = cli("consumers", "add", VENDOR, "erp", "--webhook", "https://erp.example.com/a b?token=s3")
        assert code == 1 and "without spaces" in err and "Traceback" not in err and "s3" not in err + out
        assert cli("consumers", "list", VENDOR, "--json")[1].strip() == "[]"


def test_a_redirecting_webhook_fails_at_once_and_is_not_followed(services, key, receiver):  # noqa: F811
    added = add_hook(services, receiver, "moved")
    receiver.secrets["/elsewhere"] = added.signing_secret
    receiver.fail("/moved", 307)
    services.rollout.run_due()
    state = services.rollout.consumers(VENDOR)[0]
    assert (state.state, state.attempts, state.next_attempt_at) == ("failed", 1, None)
    assert "redirects are not followed" in state.last_error
    assert receiver.hits("/elsewhere") == []


def test_vault_redirects_are_not_followed(settings, services, key):
    """hvac follows redirects by itself; a Vault (or anything at VAULT_ADDR) answering 307 gets no key."""
    written: list[str] = []

    class Target(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            written.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
            body = b'{"data": {"version": 1}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_POST  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    target = HTTPServer(("127.0.0.1", 0), Target)

    class Redirect(Target):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{target.server_address[1]}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST  # noqa: N815

    redirect = HTTPServer(("127.0.0.1", 0), Redirect)
    for server in (target, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        services.rollout.destinations = Destinations(
            vault_addr=f"http://127.0.0.1:{redirect.server_address[1]}", vault_token="root-test-token"
        )
        services.rollout.add(CLI, VENDOR, "vault", "vault", "apps/orders")
        services.rollout.run_due()
    finally:
        for server in (target, redirect):
            server.shutdown()
            server.server_close()
    state = services.rollout.consumers(VENDOR)[0]
    assert (state.state, state.attempts) == ("failed", 1)
    assert "307" in state.last_error and "redirects are not followed" in state.last_error
    assert written == []


def test_keybot_consumer_allow_is_read_at_start_up():
    assert make_settings().consumer_allow is None  # the default rules
    parsed = make_settings(KEYBOT_CONSUMER_ALLOW="webhook:https://erp.example.com/*, vault:secret/coupang/*")
    assert parsed.consumer_allow == (("webhook", "https://erp.example.com/*"), ("vault", "secret/coupang/*"))
    for bad in ("https://erp.example.com/*", "ftp:x", "webhook:", "webhook:https://a/*,,aws-ssm:/x"):
        with pytest.raises(ConfigError, match="KEYBOT_CONSUMER_ALLOW"):
            make_settings(KEYBOT_CONSUMER_ALLOW=bad)


def test_targets_are_shown_without_query_or_credentials():
    assert parse_target("webhook", "https://erp.example.com/hook?token=s3cr3t#x") == (
        {"url": "https://erp.example.com/hook?token=s3cr3t#x"},
        "https://erp.example.com/hook",
    )
    assert parse_target("webhook", "http://127.0.0.1:8080/k")[1] == "http://127.0.0.1:8080/k"
    assert parse_target("vault", "/apps/erp/", "kv")[0] == {"path": "apps/erp", "mount": "kv"}


def test_error_bodies_are_scrubbed_then_cut():
    text = scrub("bad " + "SECRETVALUE " * 50, ["SECRETVALUE"])
    assert "SECRETVALUE" not in text and len(text) == 200


# ---------------------------------------------------------------- service on both databases


def test_only_admins_and_the_owner_manage_consumers_and_refusals_are_audited(services, key, receiver):  # noqa: F811
    with pytest.raises(NotAllowed, match="Only admins or its owner"):
        services.rollout.add(USER, VENDOR, "erp", "webhook", receiver.endpoint("/erp"))
    for alone in (OWNER, ADMIN):  # from Slack nobody adds alone: a proposal another approver approves
        with pytest.raises(NotAllowed, match="an approver other than you approves it"):
            services.rollout.add(alone, VENDOR, "erp", "webhook", receiver.endpoint("/erp"))
    add_hook(services, receiver, "erp")
    with pytest.raises(InvalidInput, match="already has a consumer named erp"):
        add_hook(services, receiver, "erp")
    with pytest.raises(NotAllowed):
        services.rollout.remove(USER, VENDOR, "erp")
    actions = [e.action for e in services.audit.entries()]
    assert actions.count("consumer.add.refused") == 4 and "consumer.added" in actions
    assert actions[-1] == "consumer.remove.refused"


def test_consumer_secrets_are_ciphertext_bound_to_their_row(services, key, receiver, caplog):  # noqa: F811
    added = add_hook(services, receiver, "erp")
    with services.ctx.transaction() as session:
        row = session.scalars(select(Consumer)).one()
        assert added.signing_secret.encode() not in row.signing_secret_ct
        assert b"127.0.0.1" not in row.config_ct
        row.name = "other"  # a ciphertext moved to another consumer no longer decrypts
    services.rollout.push(ADMIN, VENDOR, ["other"])
    with caplog.at_level(logging.ERROR, logger="bot.services.rollout"):
        services.rollout.run_due()
    assert receiver.hits() == []
    # refused to decrypt (not "never tried"): the attempt was made and the ciphertext check refused it
    [refused] = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], DecryptionError)]
    assert "could not be attempted" in refused.getMessage() and "altered" in str(refused.exc_info[1])


def test_two_processes_deliver_each_attempt_once(settings, services, key, receiver):  # noqa: F811
    for n in range(6):
        add_hook(services, receiver, f"hook-{n}")
    other = build_services(settings)  # a second `serve` process on the same database
    other.rollout.backoff = services.rollout.backoff
    start = threading.Barrier(2)

    def sweep(rollout):
        start.wait()
        rollout.run_due()

    threads = [threading.Thread(target=sweep, args=(s.rollout,)) for s in (services, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.engine.dispose()
    assert sorted(h.path for h in receiver.hits()) == [f"/hook-{n}" for n in range(6)]
    assert all(s.state == "delivered" and s.attempts == 1 for s in services.rollout.consumers(VENDOR))
    assert services.rollout.delivery_states() == {"delivered": 6}


def test_a_newer_generation_replaces_an_older_pending_delivery(services, key, receiver):  # noqa: F811
    add_hook(services, receiver, "erp")  # generation 1 queued, not yet delivered
    with services.ctx.transaction() as session:  # the key moves on before the delivery ran
        stored = services.ctx.keys.get(session, vendor_id=VENDOR)
        services.ctx.keys.new_generation(
            session,
            key=stored,
            access_key="AKIAnew000000000",
            secret_key=f"{SECRET_MARK}gen2aaaaaaaaaaaa",
            issued_on=None,
            expires_on=stored.expires_on,
            now=services.ctx.clock.now(),
        )
    assert services.rollout.run_due() == 0  # generation 1 is never written once 2 exists
    assert receiver.hits() == []
    services.rollout.push(ADMIN, VENDOR)
    services.rollout.run_due()
    assert [h.body["data"]["generation"] for h in receiver.hits()] == [2]
    assert [(s.generation, s.state) for s in services.rollout.consumers(VENDOR)] == [(2, "delivered")]


def test_a_timeout_is_retried_with_the_same_webhook_id(services, key, receiver):  # noqa: F811
    services.rollout.destinations = Destinations(timeout=0.5)
    services.rollout.backoff = (timedelta(0),) * 6
    add_hook(services, receiver, "slow")
    receiver.fail("/slow", 503, body="ECHO")  # echoes the key back: must be scrubbed
    services.rollout.run_due()
    first = services.rollout.consumers(VENDOR)[0]
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.last_error.startswith("HTTP 503") and len(first.last_error) <= 200
    assert secret_key(VENDOR) not in first.last_error and "[hidden]" in first.last_error
    services.rollout.run_due()
    assert len({h.headers["webhook-id"] for h in receiver.hits("/slow")}) == 1
    assert services.rollout.consumers(VENDOR)[0].state == "delivered"


def test_master_key_rotation_reencrypts_consumers(settings, services, key, receiver):  # noqa: F811
    add_hook(services, receiver, "erp")
    both = build_services(replace(settings, master_keys=(base64.b64decode(SECOND_KEY), *settings.master_keys)))
    both.keys.rotate_master_key("cli")
    only_new = build_services(replace(settings, master_keys=(base64.b64decode(SECOND_KEY),)))
    only_new.rollout.push(ADMIN, VENDOR)
    assert only_new.rollout.run_due() == 1 and only_new.rollout.consumers(VENDOR)[0].state == "delivered"
    both.engine.dispose()
    only_new.engine.dispose()


# ---------------------------------------------------------------- command line


def test_cli_add_list_push_remove(cli, db_url, receiver, aws):  # noqa: F811
    with time_machine.travel("2026-11-27T03:00:00Z", tick=True):
        code, out, err = cli("keys", "import", write_keys_csv(db_url))
        assert code == 0, err
        code, out, err = cli("consumers", "add", VENDOR, "erp", "--webhook", receiver.endpoint("/erp?t=1"), "--json")
        added = json.loads(out)
        assert code == 0, err
        assert set(added) == {"name", "kind", "target", "signing_secret", "state"}
        assert (added["state"], added["target"]) == ("delivered", f"{receiver.url}/erp")
        hit = receiver.hits("/erp?t=1")[0]
        Webhook(added["signing_secret"]).verify(hit.raw, hit.headers)  # raises unless signed with that secret

        code, out, err = cli("consumers", "add", VENDOR, "param", "--aws-parameter", "/shop/key")
        assert code == 0 and "Signing secret (shown only this once): whsec_" in out
        assert aws_parameter("/shop/key")["secret_key"] == secret_key(VENDOR)

        receiver.fail("/down", 404, times=5)
        code, out, err = cli("consumers", "add", VENDOR, "down", "--webhook", receiver.endpoint("/down"))
        assert code == 1 and "HTTP 404" in out  # kept, and shown as failed

        code, out, err = cli("consumers", "add", VENDOR, "plain", "--webhook", "http://erp.example.com/")
        assert code == 1 and "https://" in err

        code, out, err = cli("consumers", "list", VENDOR, "--json")
        listed = json.loads(out)
        assert [c["name"] for c in listed] == ["down", "erp", "param"]
        assert set(listed[0]) == {
            "vendor_id", "name", "kind", "target", "state", "generation", "attempts",
            "delivered_at", "confirmed_at", "next_attempt_at", "last_error",
        }  # fmt: skip
        assert listed[0]["state"] == "failed" and listed[0]["last_error"].startswith("HTTP 404")
        assert added["signing_secret"] not in out and secret_key(VENDOR) not in out and "t=1" not in out

        assert cli("consumers", "push", VENDOR, "erp")[0] == 0
        assert cli("consumers", "push", VENDOR)[0] == 1  # "down" still answers 404
        code, out, err = cli("consumers", "remove", VENDOR, "down")
        assert code == 0 and cli("consumers", "push", VENDOR)[0] == 0
        assert cli("consumers", "remove", VENDOR, "nobody")[0] == 1
        with pytest.raises(SystemExit) as usage:  # no destination given
            cli("consumers", "add", VENDOR, "x")
        assert usage.value.code == 2
        code, out, err = cli("status")
        assert "consumers 2/2" in out


def write_keys_csv(db_url: str) -> str:
    path = Path.cwd() / "keys.csv"
    path.write_text(f"{HEADER}\n{row(VENDOR)}\n")
    return str(path)


# ---------------------------------------------------------------- Slack: /coupang-key consumers


def test_slack_consumers_list_shows_targets_to_managers_only_and_removal_is_announced(slack, services, key, receiver):  # noqa: F811
    assert "has no consumers yet" in slack.slash(OWNER, f"consumers {VENDOR}").text_of()

    refused = slack.slash(USER, f"consumers {VENDOR} add")
    assert "Only admins or its owner <@UOWNER001>" in refused.text_of()

    add_hook(services, receiver, "erp")
    receiver.fail("/down", 404)
    add_hook(services, receiver, "down")
    services.rollout.run_due()
    for viewer in (ADMIN, OWNER):
        listing = slack.slash(viewer, f"consumers {VENDOR}").text_of()
        assert receiver.url in listing and "HTTP 404" in listing
    outsider = slack.slash(USER, f"consumers {VENDOR}").text_of()
    assert "1/2 hold the current key" in outsider and "erp" in outsider and "failed" in outsider
    assert receiver.url not in outsider and "127.0.0.1" not in outsider and "HTTP 404" not in outsider

    assert slack.slash(OWNER, f"consumers {VENDOR} remove").status == 200
    slack.last_modal(ids.CONSUMER_REMOVE_MODAL)
    assert slack.submit(OWNER, ids.CONSUMER_REMOVE_MODAL, {"name": "erp"}).status == 200
    assert [c.name for c in services.rollout.consumers(VENDOR)] == ["down"]
    announced = slack.fake.wait_for("chat.postMessage")[-1].params
    assert announced["channel"] == "CSHOP0001" and "<@UOWNER001> removed consumer *erp*" in announced["text"]
    assert "consumer.removed" in {e.action for e in services.audit.entries()}


def test_a_deleted_key_takes_its_consumers_with_it(services, key, receiver):  # noqa: F811
    """Else one admin alone could delete a key, register the vendor ID again with a key of their choosing and
    push it to every system that trusted the old one."""
    add_hook(services, receiver, "erp", actor="cli:ops")  # the CLI adds directly
    services.rollout.deliver_now(VENDOR)
    services.keys.delete(ADMIN, VENDOR)
    services.keys.register(ADMIN, form(VENDOR, secret_key=secret_key(VENDOR) + "OTHER"))
    assert services.rollout.consumers(VENDOR) == []
    with pytest.raises(NotFound, match="has no consumers"):
        services.rollout.push(ADMIN, VENDOR)
    deleted = [e for e in services.audit.entries() if e.action == "key.deleted"][0]
    assert deleted.details["consumers_removed"] == ["erp"]
    assert [hit.body["data"]["generation"] for hit in receiver.hits("/erp")] == [1]


def test_consumers_added_from_slack_before_the_two_person_rule_are_held_to_the_allow_list(tmp_path):
    """The migration marks consumers whose creator was a Slack user as added from Slack: from then on each
    delivery to them must match KEYBOT_CONSUMER_ALLOW, as if they had been proposed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0007")
    with engine.begin() as connection:
        for n, created_by in enumerate(("cli", "cli:ops", "UOWNER001")):
            connection.execute(
                text(
                    "INSERT INTO consumers (vendor_id, name, kind, target, config_ct, signing_secret_ct, created_by,"
                    " created_at) VALUES ('A00012345', :name, 'webhook', 'x', x'00', x'00', :by, '2026-11-27')"
                ),
                {"name": f"c{n}", "by": created_by},
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT created_by, source FROM consumers ORDER BY name")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("cli", "cli"), ("cli:ops", "cli"), ("UOWNER001", "slack")]


# ---------------------------------------------------------------- issue 21: loose ends after a new key


def signed_confirmation(secret: str, payload: dict, at: datetime) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    msg_id = f"msg_{at.timestamp()}"
    return body, {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


@pytest.fixture
def days_ahead(settings, fake_slack):  # noqa: F811
    """The demo console's setup: the bot's (business) clock runs 3 days ahead of the real one."""
    from bot.console.demo import MovableClock
    from tests.slack_harness import SlackHarness

    with time_machine.travel("2026-11-27T03:00:00Z", tick=True):
        clock = MovableClock(datetime.now(UTC))
        clock.advance(days=3)
        built = build_services(settings, clock=clock)
        built.keys.register(ADMIN, form(VENDOR, issued_on=None, expires_on=built.ctx.today() + timedelta(days=30)))
        with SlackHarness(built, fake_slack) as harness:
            yield harness
        built.rollout.stop()
        built.engine.dispose()


def test_webhooks_and_confirmations_use_the_wall_clock_when_the_bot_clock_is_days_ahead(days_ahead, receiver):  # noqa: F811
    """The demo signed deliveries with its clock 40 minutes (here 3 days) ahead: a Standard Webhooks receiver, which
    holds the timestamp to its own clock, refused every one. Timestamps on the wire are real time."""
    services = days_ahead.services
    assert services.ctx.clock.now() - datetime.now(UTC) > timedelta(days=2)
    added = add_hook(services, receiver, "order-sync")
    [state] = services.rollout.deliver_now(VENDOR)
    [hit] = receiver.hits("/order-sync")
    assert hit.verified and hit.status == 200  # the standardwebhooks package accepted it
    assert (state.state, state.last_error) == ("delivered", None)
    assert abs(int(hit.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    assert hit.body["timestamp"].startswith("2026-11-27")  # the body's timestamp too

    proof = hmac_proof(hit.body["data"]["secret_key"], 1)
    payload = {"vendor_id": VENDOR, "generation": 1, "consumer": "order-sync", "proof": proof}
    bot_time = services.ctx.clock.now()
    at_bot_time = days_ahead.post("/rollout/confirm", *signed_confirmation(added.signing_secret, payload, bot_time))
    assert at_bot_time.status == 401  # 3 days off the wall clock: stale, whatever the bot's clock says
    answer = days_ahead.post("/rollout/confirm", *signed_confirmation(added.signing_secret, payload, datetime.now(UTC)))
    assert (answer.status, answer.json()) == (200, {"ok": True, "state": "confirmed"})
    assert services.rollout.consumers(VENDOR)[0].state == "confirmed"


def hmac_proof(secret: str, generation: int) -> str:
    from bot.services.rollout import proof_for

    return proof_for(secret, VENDOR, generation)


def confirm_now(services, added, generation: int = 1) -> None:
    proof = hmac_proof(secret_key(VENDOR), generation)
    payload = {"vendor_id": VENDOR, "generation": generation, "consumer": added.name, "proof": proof}
    answer = services.rollout.confirm(*signed_confirmation(added.signing_secret, payload, datetime.now(UTC)))
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("status", [500, 400])
def test_a_failed_push_of_a_confirmed_generation_keeps_it_confirmed(slack, services, key, receiver, status):  # noqa: F811
    """The consumer proved it holds generation 1; pushing it again to a receiver that now fails records the error but
    does not take the proof back (nor retry by itself)."""
    added = add_hook(services, receiver, "erp")
    services.rollout.deliver_now(VENDOR)
    confirm_now(services, added)
    receiver.fail("/erp", status, body="database is down")
    services.rollout.push(ADMIN, VENDOR, ["erp"])
    [state] = services.rollout.deliver_now(VENDOR)
    assert len(receiver.hits("/erp")) == 2
    assert (state.state, state.generation, state.next_attempt_at) == ("confirmed", 1, None)
    assert state.last_error == f"HTTP {status}: database is down"
    assert services.rollout.counts([VENDOR]) == {VENDOR: (1, 1)}  # still holds the current key
    listing = slack.slash(OWNER, f"consumers {VENDOR}").text_of()
    assert "erp: confirmed; the last push failed: HTTP" in listing and "1/1 hold the current key" in listing

    services.rollout.push(ADMIN, VENDOR, ["erp"])  # the receiver is fixed: Push again delivers, the error is gone
    [state] = services.rollout.deliver_now(VENDOR)
    assert (state.state, state.last_error) == ("confirmed", None)


HTML_502 = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)


def test_an_html_error_page_is_stored_as_one_phrase_not_its_markup(services, key, receiver):  # noqa: F811
    add_hook(services, receiver, "erp")
    receiver.fail("/erp", 502, body=HTML_502)
    [state] = services.rollout.deliver_now(VENDOR)
    assert (state.state, state.last_error) == ("pending", "HTTP 502 (HTML page)")  # retried: 5xx
    assert state.next_attempt_at is not None


def test_a_webhook_refusing_the_signature_gets_a_hint_in_the_readers_language(services, key, receiver):  # noqa: F811
    from bot.slack.rollout import trouble_text

    add_hook(services, receiver, "erp")
    receiver.secrets["/erp"] = "whsec_" + base64.b64encode(b"another secret, 24 bytes").decode()  # the receiver's
    [state] = services.rollout.deliver_now(VENDOR)
    assert [h.status for h in receiver.hits("/erp")] == [401]
    assert state.state == "failed"
    assert state.last_error == "HTTP 401: ok (check the signing secret or the server's clock)"
    tz = services.ctx.settings.timezone
    assert "서명 시크릿이나 서버 시계를 확인하세요" in trouble_text(state, tz, "ko")
    assert "check the signing secret" not in trouble_text(state, tz, "ko")


def test_the_announcement_names_consumers_in_korean_without_a_thread_too():
    from bot.services.rollout import ConsumerState
    from bot.slack.reissue import consumers_text

    def consumer(name: str, state: str) -> ConsumerState:
        return ConsumerState(VENDOR, name, "webhook", "https://x/", state, 2, 1, None, None, None, None)

    said = consumers_text("ko", VENDOR, [consumer("order-sync", "confirmed"), consumer("erp", "pending")])
    assert "order-sync: 자동 전달됨, 적용 완료" in said and "erp: 전달 중" in said and "스레드" in said
    direct = consumers_text("en", VENDOR, [consumer("erp", "delivered")], threaded=False)
    assert "erp: delivered automatically" in direct and f"`/coupang-key consumers {VENDOR}`" in direct
    assert "thread" not in direct
