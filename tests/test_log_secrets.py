"""No secret reaches a log line at ``LOG_LEVEL=DEBUG``: SECURITY.md "Secrets in logs and dumps".

The libraries log what they send and receive at DEBUG — Bolt and Socket Mode the acks (a new consumer's ``whsec_``
secret is in one), slack_sdk the API calls, botocore the request bodies (the key itself). One filter
(``bot.slack.redact``) sits in front of every record; these tests drive the real stack with every logger at DEBUG
and read what was written.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

from bot.bootstrap import build_services
from bot.slack import ids, redact
from storage.db import make_engine, upgrade
from tests.conftest import ADMIN, MASTER_KEY, make_settings
from tests.factories import access_key, form, secret_key
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode
from tests.rollout_support import WebhookReceiver, aws, aws_secret  # noqa: F401  (fixture)
from tests.test_slack_serve import free_port
from tests.test_socket_mode import APP_TOKEN, BOT_TOKEN, slash_command, stop, wait_connected

VENDOR = "A00012345"
WHSEC = re.compile(r"whsec_(?!\[redacted\])[A-Za-z0-9+/=%]{8,}")
SLACK_TOKEN = re.compile(r"\b(?:xox[a-z]|xapp)-(?!\[redacted\])[A-Za-z0-9-]+")
SIGNING_SECRET = "0123456789abcdef-signing-secret"
METRICS_TOKEN = "metrics-token-7f3a9c"


def leaks(text: str, *values: str) -> list[str]:
    found = [m.group(0) for m in WHSEC.finditer(text)] + [m.group(0) for m in SLACK_TOKEN.finditer(text)]
    return found + [v for v in values if v in text]


@pytest.fixture
def debug_everywhere() -> Iterator[None]:
    """Every library logger at DEBUG, as LOG_LEVEL=DEBUG leaves them (the bot quiets botocore; undo that)."""
    names = ("", "slack_bolt", "slack_sdk", "urllib3", "botocore", "boto3", "hvac")
    before = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


# ---------------------------------------------------------------- Socket Mode: `serve` for real, at DEBUG


def registered_database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'keybot.db'}"
    engine = make_engine(url)
    upgrade(engine)
    services = build_services(make_settings(DATABASE_URL=url), engine=engine)
    with time_machine.travel("2026-11-27T03:00:00Z"):
        services.keys.register(ADMIN, form(VENDOR))
    engine.dispose()
    return url


def consumer_add_submission(view: dict, target: str) -> dict:
    from tests.slack_harness import APP_ID, TEAM, state_values

    values = {"name": "erp", "kind": "webhook", "target": target}
    return {
        "type": "view_submission",
        "team": TEAM,
        "user": {"id": ADMIN, "username": "admin", "team_id": TEAM["id"]},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "view": {
            "id": "V0CONSUMER",
            "team_id": TEAM["id"],
            "type": "modal",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": ids.CONSUMER_ADD_MODAL,
            "state": {"values": state_values(view, values)},
            "hash": "1.hash",
            "app_id": APP_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
    }


def test_socket_mode_at_debug_logs_no_signing_secret_token_or_master_key(fake_slack: FakeSlack, tmp_path):
    url = registered_database(tmp_path)
    log = tmp_path / "serve.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL", "LOG_"))},
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "KEYBOT_APPROVERS": "UAPPROVE1",  # the admin proposes the consumer; the secret is shown at once, to them
        "KEYBOT_CONSUMER_ALLOW": "webhook:http://127.0.0.1*",  # the loopback receiver, from Slack
        "KEYBOT_METRICS_TOKEN": METRICS_TOKEN,
        "DATABASE_URL": url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "PORT": str(free_port()),
        "LOG_LEVEL": "DEBUG",
    }
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    with FakeSocketMode() as socket_mode, WebhookReceiver() as receiver, log.open("w") as out:
        fake_slack.socket_mode_url = socket_mode.ws_url
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_connected(socket_mode, process, log)
            opened = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, f"consumers {VENDOR} add"))
            socket_mode.wait_for_ack(opened)
            view = fake_slack.wait_for("views.open")[-1].params["view"]
            submitted = socket_mode.send_envelope(
                "interactive", consumer_add_submission(view, receiver.endpoint("/erp"))
            )
            answer = socket_mode.wait_for_ack(submitted)
            shown = [m.group(0) for m in WHSEC.finditer(str(answer))]
            time.sleep(1.0)  # the log lines written after the ack (Socket Mode's own, the delivery's)
        finally:
            stop(process)
    written = log.read_text()
    assert "DEBUG" in written and "Sending a message" in written  # Socket Mode's own debug lines were written
    assert shown, answer  # the person was shown the signing secret over the WebSocket …
    assert leaks(written, *shown, MASTER_KEY, SIGNING_SECRET, METRICS_TOKEN, APP_TOKEN, BOT_TOKEN) == []  # … no log
    assert "whsec_[redacted]" in written


def test_http_serve_at_debug_logs_no_signing_secret_token_or_master_key(fake_slack: FakeSlack, tmp_path):
    """gunicorn's master and worker, Bolt's own lines about the request and its answer."""
    from urllib.parse import urlencode

    from tests.slack_harness import SIGNING_SECRET as HTTP_SECRET
    from tests.slack_harness import signed_headers
    from tests.test_slack_serve import request, wait_until_up

    url = registered_database(tmp_path)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL", "LOG_"))},
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "KEYBOT_APPROVERS": "UAPPROVE1",  # the admin proposes the consumer; the secret is shown at once, to them
        "KEYBOT_CONSUMER_ALLOW": "webhook:http://127.0.0.1*",  # the loopback receiver, from Slack
        "KEYBOT_METRICS_TOKEN": METRICS_TOKEN,
        "DATABASE_URL": url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": HTTP_SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "PORT": str(port),
        "LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "serve.log"
    with WebhookReceiver() as receiver, log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(port, process)
            command = urlencode({**slash_command(fake_slack, f"consumers {VENDOR} add"), "token": "x"})
            assert request(port, "POST", "/slack/events", command, signed_headers(HTTP_SECRET, command))[0] == 200
            view = fake_slack.wait_for("views.open")[-1].params["view"]
            import json

            body = urlencode({"payload": json.dumps(consumer_add_submission(view, receiver.endpoint("/erp")))})
            status, answer = request(port, "POST", "/slack/events", body, signed_headers(HTTP_SECRET, body))
            assert status == 200, answer
            shown = [m.group(0) for m in WHSEC.finditer(answer)]
            time.sleep(1.0)
        finally:
            stop(process)
    written = log.read_text()
    assert "DEBUG" in written
    assert shown, answer
    assert leaks(written, *shown, MASTER_KEY, HTTP_SECRET, METRICS_TOKEN, BOT_TOKEN) == []
    assert "whsec_[redacted]" in written  # Bolt logged the answer holding it


# ---------------------------------------------------------------- HTTP: a new key and its deliveries, at DEBUG


NEW_SECRET = "NEWsecret0123456789abcdefXYZ"
NEW_ACCESS = "AKIAnewaccess0123456789"


@pytest.fixture
def settings(db_url):
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS="UAPPROVE1")


@pytest.fixture
def captured(debug_everywhere) -> Iterator[logging.Handler]:
    """A handler on the root logger, with the filter installed the way `serve` installs it."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Capture(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.lines = lines  # type: ignore[attr-defined]
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_a_new_key_entered_and_delivered_at_debug_leaves_no_key_in_the_log(
    slack,
    services,
    aws,  # noqa: F811
    captured,
):
    from tests.test_reissue_slack import APPROVER, REQUESTER, click_and_wait, request_reissue

    redact.install()  # as `serve` does; the key's values are found by their field names, not handed over
    logging.getLogger("botocore").setLevel(logging.DEBUG)  # the bot quiets it; the filter must hold without that
    with time_machine.travel("2026-11-27T03:00:00Z", tick=True):
        services.keys.register(ADMIN, form(VENDOR))
    services.rollout.add("cli:ops", VENDOR, "erp-secret", "aws-secretsmanager", f"coupang/{VENDOR}-{id(services)}")
    assert services.rollout.deliver_now(VENDOR)[0].holds_key
    logging.getLogger("botocore").setLevel(logging.DEBUG)

    request_id = request_reissue(slack)
    click_and_wait(slack, APPROVER, ids.APPROVE_REISSUE, str(request_id), "chat.update")
    click_and_wait(slack, REQUESTER, ids.ENTER_NEW_KEY, str(request_id), "views.open")
    answer = slack.submit(REQUESTER, ids.NEW_KEY_MODAL, {"new_secret_key": NEW_SECRET, "new_access_key": NEW_ACCESS})
    assert answer.status == 200, answer.text
    deadline = time.monotonic() + 15
    while aws_secret(f"coupang/{VENDOR}-{id(services)}").get("generation") != 2:
        assert time.monotonic() < deadline, "the new key never reached the consumer"
        time.sleep(0.05)

    written = "\n".join(captured.lines)  # type: ignore[attr-defined]
    assert "SecretString" in written  # botocore logged the request body, at DEBUG
    assert leaks(written, NEW_SECRET, NEW_ACCESS, secret_key(VENDOR), access_key(VENDOR), MASTER_KEY) == []


# ---------------------------------------------------------------- the filter itself


@pytest.mark.parametrize(
    "line",
    [
        "Sending a message: {'payload': {'view': {'text': 'secret: `whsec_QUJDREVGR0hJSktMTU5PUA==`'}}}",
        "body=payload=%7B%22secret%22%3A%22whsec_QUJD%2BREVGR0hJ%2FSktMTU5PUA%3D%3D%22%7D",
        "Sending a request - headers: {'Authorization': 'Bearer xoxb-1234-5678-abcdefABCDEF'}",
        "token xoxp-1-2-3-abc xapp-1-A0-123-abcdef xoxe.xoxp-1-refresh xoxe-1-rotated",
        """{'SecretString': '{"vendor_id": "A1", "access_key": "AKIAsecret1", "secret_key": "SeCrEt123"}'}""",
        '{"body": "{\\"access_key\\":\\"AKIAsecret1\\",\\"secret_key\\":\\"SeCrEt123\\"}"}',
        "Delivery(access_key='AKIAsecret1', secret_key='SeCrEt123', signing_secret='whsec_x')",
        "Authorization: CEA algorithm=HmacSHA256, access-key=AKIAsecret1, signed-date=260101T000000Z",
    ],
)
def test_the_filter_removes_secrets_by_field_and_by_shape(line):
    cleaned = redact.redact(line)
    assert leaks(cleaned, "AKIAsecret1", "SeCrEt123", "QUJD", "xoxe-1-rotated") == [], cleaned
    assert redact.REDACTED in cleaned


def test_the_master_key_and_every_hidden_value_go_at_every_level_in_args_and_exceptions():
    second = "c2Vjb25kLW1hc3Rlci1rZXktMzItYnl0ZXMtbG9uZyE="
    settings = make_settings(KEYBOT_MASTER_KEY=f"{MASTER_KEY},{second}", SLACK_SIGNING_SECRET=SIGNING_SECRET)
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logging.Formatter("%(message)s").format(record))

    logger = logging.getLogger("some.library.logging.later")
    logger.addHandler(Capture())  # a handler added after install: the record factory covers it
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    redact.install(settings=settings)
    logger.debug("env: KEYBOT_MASTER_KEY=%s", f"{MASTER_KEY},{second}")
    logger.info("raw bytes %r", settings.master_keys[1])
    logger.warning("signing secret %s", SIGNING_SECRET, extra={"detail": SIGNING_SECRET})
    try:
        raise ValueError(f"bad key {MASTER_KEY}")
    except ValueError:
        logger.exception("failed")
    written = "\n".join(lines)
    assert len(lines) == 4 and "Traceback" in written and "bad key" in written
    assert leaks(written, MASTER_KEY, second, repr(settings.master_keys[1])[2:-1], SIGNING_SECRET) == [], written


def test_a_record_without_secrets_keeps_its_arguments():
    record = redact.scrub_record(logging.LogRecord("x", logging.INFO, "", 0, "vendor %s", ("A00012345",), None))
    assert (record.msg, record.args) == ("vendor %s", ("A00012345",))


# ---------------------------------------------------------------- dumps: repr() and str()


def test_settings_never_show_their_secrets_in_repr_or_str():
    settings = make_settings(
        SLACK_BOT_TOKEN="xoxb-1111-2222-botbotbot",
        SLACK_APP_TOKEN="xapp-1-A0-333-appappapp",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        KEYBOT_METRICS_TOKEN=METRICS_TOKEN,
        VAULT_TOKEN="hvs.vault-token-value",
        DATABASE_URL="postgresql+psycopg://keybot:db-password-1@db.internal/keybot",
    )
    for shown in (repr(settings), str(settings), f"{settings!r}", repr([settings])):
        secrets = ("xoxb-1111", "xapp-1-A0", SIGNING_SECRET, METRICS_TOKEN, "hvs.vault", "db-password-1", MASTER_KEY)
        assert [s for s in secrets if s in shown] == [], shown
        assert repr(settings.master_keys[0])[2:12] not in shown  # b'kkkk…'
        assert "slack_bot_token='***'" in shown and "keybot:***@db.internal" in shown
        assert "channel='CREMIND01'" in shown  # the rest is still there to debug with
    assert "slack_app_token=None" in repr(make_settings())  # an unset secret says so


def test_a_delivery_in_flight_never_shows_the_key_in_repr():
    from bot.destinations import Delivery
    from bot.services.rollout import _Claim

    data = {"vendor_id": VENDOR, "access_key": "AKIAinflight1", "secret_key": "SeCrEtinflight"}
    attempt = Delivery("webhook", {"url": "https://erp.example/hook?token=t0k3n"}, "msg_1", data, "whsec_c2lnbmluZw==")
    claim = _Claim(7, "erp", VENDOR, 2, attempt, ("AKIAinflight1", "SeCrEtinflight", "whsec_c2lnbmluZw=="))
    for shown in (repr(claim), str(claim), repr(attempt)):
        assert [s for s in ("AKIAinflight1", "SeCrEtinflight", "whsec_", "t0k3n") if s in shown] == [], shown
        assert "msg_1" in shown
