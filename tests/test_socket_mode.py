"""``coupang-keybot serve`` for real in Socket Mode: a subprocess with SLACK_APP_TOKEN set, Slack faked on loopback.

FakeSlack answers apps.connections.open with the URL of a FakeSocketMode server, which greets the bot with
``hello``, sends slash commands as Slack wraps them and reads the acks the bot sends back over the WebSocket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import ADMIN, MASTER_KEY
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode
from tests.test_slack_serve import free_port, request

APP_TOKEN = "xapp-test"
BOT_TOKEN = "xoxb-test"


@pytest.fixture
def socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as server:
        fake_slack.socket_mode_url = server.ws_url
        yield server


def start_serve(
    tmp_path: Path, fake_slack: FakeSlack, port: int | None = None, *, database_url: str | None = None
) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "serve.log"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL")) and not k.lower().endswith("_proxy")
    }
    env = {
        **inherited,  # no proxy: the WebSocket and the Web API stay on 127.0.0.1
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'keybot.db'}",  # serve migrates it
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": fake_slack.base_url,
        "PORT": str(port or free_port()),  # /healthz and /metrics
    }
    with log.open("w") as out:  # a file, not a pipe nobody drains
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
            cwd=tmp_path,  # no .env there: the environment above is all it gets
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def wait_connected(socket_mode: FakeSocketMode, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not socket_mode.wait_connected(timeout=0.1):
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"serve did not connect over Socket Mode within {timeout}s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def slash_command(fake_slack: FakeSlack, text: str) -> dict[str, str]:
    """The payload of a ``slash_commands`` envelope (the same fields Slack posts over HTTP)."""
    return {
        "token": "legacy-verification-token",
        "team_id": "T0FAKE",
        "team_domain": "fake",
        "channel_id": "CTEST0001",
        "channel_name": "keys",
        "user_id": ADMIN,
        "user_name": "admin",
        "command": "/coupang-key",
        "text": text,
        "api_app_id": "A0FAKEAPP",
        "is_enterprise_install": "false",
        "response_url": fake_slack.response_url(),
        "trigger_id": fake_slack.new_trigger_id(),
    }


def test_serve_connects_in_socket_mode_and_acks_slash_commands(fake_slack, socket_mode, tmp_path):
    port = free_port()
    process, log = start_serve(tmp_path, fake_slack, port)
    try:
        wait_connected(socket_mode, process, log)
        status, body = request(port, "GET", "/healthz")  # Socket Mode still answers health checks and scrapes
        assert (status, json.loads(body)["checks"]["scheduler"]) == (200, "disabled")
        status, body = request(port, "GET", "/metrics")  # anyone may reach PORT: no token set, no metrics
        assert status == 403 and "KEYBOT_METRICS_TOKEN" in body and "coupang_keybot_keys" not in body
        assert request(port, "POST", "/slack/events")[0] == 404  # Slack comes over the WebSocket only

        (opened,) = fake_slack.calls_to("apps.connections.open")
        assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"  # the app-level token, not the bot's
        assert socket_mode.paths == ["/link/?ticket=fake-ticket&app_id=A0FAKEAPP"]

        help_id = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, "help"))
        ack = socket_mode.wait_for_ack(help_id, timeout=10)
        assert set(ack) == {"envelope_id", "payload"}
        assert "/coupang-key status" in ack["payload"]["text"]

        status_id = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, "status"))
        status = socket_mode.wait_for_ack(status_id, timeout=10)["payload"]
        assert "No keys registered yet" in str(status["blocks"])

        assert socket_mode.pings >= 1  # the client pinged right after connecting and was answered
        assert process.poll() is None, log.read_text()
        assert "Connecting to Slack in Socket Mode" in log.read_text()
        assert BOT_TOKEN not in opened.body + str(opened.headers)
    finally:
        stop(process)


def test_serve_retries_apps_connections_open_after_a_server_error(fake_slack, socket_mode, tmp_path):
    fake_slack.fail_next("apps.connections.open", status=500)  # one hiccup at start-up must not end serve
    process, log = start_serve(tmp_path, fake_slack)
    try:
        wait_connected(socket_mode, process, log)
        assert [c.status for c in fake_slack.failures] == [500]
        help_id = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, "help"))
        assert "/coupang-key status" in socket_mode.wait_for_ack(help_id, timeout=10)["payload"]["text"]
    finally:
        stop(process)


def test_fake_slack_hands_the_socket_mode_url_only_to_an_app_level_token(fake_slack, socket_mode):
    client = WebClient(base_url=fake_slack.base_url)
    assert client.apps_connections_open(app_token=APP_TOKEN)["url"] == socket_mode.ws_url
    with pytest.raises(SlackApiError) as refused:
        client.apps_connections_open(app_token=BOT_TOKEN)
    assert refused.value.response["error"] == "not_allowed_token_type"
