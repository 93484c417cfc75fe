"""``coupang-keybot serve`` for real: a subprocess serving HTTP through gunicorn, Slack faked on loopback."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from tests.conftest import ADMIN, MASTER_KEY
from tests.slack_harness import SIGNING_SECRET, signed_headers

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: str = "", headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body.encode(), headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {process.stdout.read()}")
        try:
            return request(port, "GET", "/healthz")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_answers_health_and_a_signed_slash_command_over_http(db_url, fake_slack, tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL"))},
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
        cwd=tmp_path,  # no .env there: the environment above is all it gets
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status, body = wait_until_up(port, process)
        assert (status, json.loads(body)["ok"]) == (200, True)
        # gunicorn's master is a fresh interpreter that never loads the bot (memory: bench/serve_memory.py);
        # the bot's crypto library is mapped in the worker only
        worker = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()[0])
        assert "cryptography" in Path(f"/proc/{worker}/maps").read_text()
        assert "cryptography" not in Path(f"/proc/{process.pid}/maps").read_text()

        form = urlencode(
            {
                "command": "/coupang-key",
                "text": "help",
                "user_id": ADMIN,
                "channel_id": "CTEST0001",
                "team_id": "T0FAKE",
                "trigger_id": fake_slack.new_trigger_id(),
                "response_url": fake_slack.response_url(),
            }
        )
        status, body = request(port, "POST", "/slack/events", form, signed_headers(SIGNING_SECRET, form))
        assert status == 200
        assert "/coupang-key status" in body  # ack(text=...) alone comes back as plain text

        forged = signed_headers("not-the-secret", form)
        assert request(port, "POST", "/slack/events", form, forged)[0] == 401
        # malformed, not a crash: gunicorn would answer an exception with its own HTML 500
        not_a_number = {**signed_headers(SIGNING_SECRET, form), "X-Slack-Request-Timestamp": "soon"}
        assert request(port, "POST", "/slack/events", form, not_a_number)[0] == 401
        array = "payload=%5B1%5D"  # payload=[1]
        assert request(port, "POST", "/slack/events", array, signed_headers(SIGNING_SECRET, array))[0] == 400
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
