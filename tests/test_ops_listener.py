"""Where ``coupang-keybot serve`` listens, and who gets ``/metrics`` there — the served process, for real.

- HTTP mode: ``KEYBOT_BIND:PORT`` serves Slack, ``/rollout/confirm`` and ``/healthz``; ``/metrics`` there needs
  ``KEYBOT_METRICS_TOKEN`` (403 while none is set). ``KEYBOT_OPS_ADDR`` adds a listener with ``/healthz`` and
  ``/metrics`` and no token.
- Socket Mode: one listener, on ``KEYBOT_OPS_ADDR`` when set (no token), else on ``KEYBOT_BIND:PORT``; it serves
  ``/rollout/confirm`` too, so consumers of a Socket Mode bot can prove they hold the new key.
- A chunked body through gunicorn is read at most 1 MB + 1 byte.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from standardwebhooks import Webhook

from bot.services.base import cli_actor
from bot.services.rollout import proof_for
from tests.conftest import ADMIN, MASTER_KEY
from tests.factories import form, secret_key
from tests.slack_harness import SIGNING_SECRET, signed_headers
from tests.test_slack_serve import free_port, request, wait_until_up
from tests.test_socket_mode import slash_command, socket_mode, stop, wait_connected  # noqa: F401  (fixture)

VENDOR = "A00012345"
MB = 1024 * 1024


def reachable(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (127.0.0.2 is this machine too, on another address)."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def serve(tmp_path: Path, db_url: str, fake_slack, **env: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "serve.log"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL", "PORT")) and not k.lower().endswith("_proxy")
    }
    environment = {
        **inherited,
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": fake_slack.base_url,
        **env,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
            cwd=tmp_path,  # no .env there
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def chunked(port: int, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, str]:
    """A POST whose body is sent in chunks (no Content-Length), as a client streaming it would."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # answered before the rest was sent
            pass
        answer = b""
        while data := sock.recv(65536):
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")


def signed_confirmation(secret: str, generation: int = 1) -> tuple[bytes, dict[str, str]]:
    payload = {
        "vendor_id": VENDOR,
        "generation": generation,
        "consumer": "erp",
        "proof": proof_for(secret_key(VENDOR), VENDOR, generation),
    }
    body, now, msg_id = json.dumps(payload), datetime.now(UTC), "msg_ops_listener"
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }
    return body.encode(), headers


def test_http_mode_binds_where_told_keeps_metrics_off_the_slack_port_and_limits_chunked_bodies(
    db_url, fake_slack, tmp_path
):
    port, ops_port = free_port(), free_port()
    process, log = serve(
        tmp_path, db_url, fake_slack,
        SLACK_SIGNING_SECRET=SIGNING_SECRET, PORT=str(port), KEYBOT_BIND="127.0.0.1",
        KEYBOT_OPS_ADDR=f"127.0.0.1:{ops_port}",
    )  # fmt: skip
    try:
        assert wait_until_up(port, process)[0] == 200  # /healthz stays on PORT for load balancers
        assert not reachable("127.0.0.2", port), "KEYBOT_BIND=127.0.0.1 must not listen on every interface"
        status, body = request(port, "GET", "/metrics")
        assert status == 403 and "KEYBOT_METRICS_TOKEN" in body and "KEYBOT_OPS_ADDR" in body
        assert "coupang_key" not in body

        status, body = request(ops_port, "GET", "/metrics")  # the ops listener: no token needed
        assert status == 200 and 'coupang_keybot_keys{phase="healthy"} 0.0' in body
        assert request(ops_port, "GET", "/healthz")[0] == 200
        assert request(ops_port, "POST", "/slack/events", "x=1")[0] == 404  # nothing else there
        assert request(ops_port, "POST", "/rollout/confirm", "{}")[0] == 404  # consumers use PORT
        assert not reachable("127.0.0.2", ops_port)
        assert request(port, "POST", "/rollout/confirm", "[]", {"Content-Type": "application/json"})[0] == 400

        form_body = urlencode(
            {"command": "/coupang-key", "text": "help", "user_id": ADMIN, "channel_id": "CTEST0001",
             "team_id": "T0FAKE", "trigger_id": fake_slack.new_trigger_id(), "response_url": fake_slack.response_url()}
        ).encode()  # fmt: skip
        headers = signed_headers(SIGNING_SECRET, form_body)
        status, body = chunked(port, "/slack/events", [form_body[:40], form_body[40:]], headers)
        assert status == 200 and "/coupang-key status" in body  # a chunked body within the limit is read whole
        big = [b"a" * 65536] * (MB // 65536 + 4)
        assert chunked(port, "/slack/events", big, headers)[0] == 413
        assert chunked(port, "/rollout/confirm", big, {"Content-Type": "application/json"})[0] == 413
        assert chunked(port, "/rollout/confirm", [b"x" * 20000], {"Content-Type": "application/json"})[0] == 413
        assert process.poll() is None
    finally:
        stop(process)
    printed = log.read_text()
    assert f"http://127.0.0.1:{port}/slack/events" in printed and f"http://127.0.0.1:{ops_port}" in printed


@pytest.mark.parametrize("ops_addr", [True, False], ids=["ops-addr", "port"])
def test_socket_mode_serves_rollout_confirm_so_its_consumers_can_prove_possession(
    services,
    db_url,
    fake_slack,
    socket_mode,  # noqa: F811 - the imported fixture
    tmp_path,
    ops_addr,
):
    services.keys.register(ADMIN, form(VENDOR))
    secret = services.rollout.add(cli_actor(), VENDOR, "erp", "webhook", "http://127.0.0.1:9/hook").signing_secret
    port = free_port()
    where = {"KEYBOT_OPS_ADDR": f"127.0.0.1:{port}", "PORT": str(free_port())} if ops_addr else {"PORT": str(port)}
    process, log = serve(
        tmp_path, db_url, fake_slack, SLACK_APP_TOKEN="xapp-test", KEYBOT_BIND="127.0.0.1",
        KEYBOT_METRICS_TOKEN="scrape-me", **where,
    )  # fmt: skip
    try:
        wait_connected(socket_mode, process, log)
        assert wait_until_up(port, process)[0] == 200
        assert not reachable("127.0.0.2", port)
        if ops_addr:  # the ops listener alone: no token there, and nothing on PORT
            assert request(port, "GET", "/metrics")[0] == 200
            assert not reachable("127.0.0.1", int(where["PORT"]))
        else:  # anyone may reach PORT: the token it is
            assert request(port, "GET", "/metrics")[0] == 401
            assert request(port, "GET", "/metrics", headers={"Authorization": "Bearer scrape-me"})[0] == 200

        body, headers = signed_confirmation("whsec_" + "A" * 32)
        assert request(port, "POST", "/rollout/confirm", body.decode(), headers)[0] == 401
        body, headers = signed_confirmation(secret)
        status, answer = request(port, "POST", "/rollout/confirm", body.decode(), headers)
        assert (status, json.loads(answer)) == (200, {"ok": True, "state": "confirmed"})
        assert services.rollout.consumers(VENDOR)[0].state == "confirmed"

        help_id = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, "help"))
        assert "/coupang-key status" in socket_mode.wait_for_ack(help_id, timeout=10)["payload"]["text"]
    finally:
        stop(process)
    assert f"/rollout/confirm on http://127.0.0.1:{port}" in log.read_text()


def test_the_ops_listener_waits_for_its_address_to_be_free(fake_slack, tmp_path):
    """A worker that replaces another (gunicorn restarts it) finds KEYBOT_OPS_ADDR still held for a moment."""
    port, ops_port = free_port(), free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", ops_port))
    holder.listen()
    process, log = serve(
        tmp_path, f"sqlite:///{tmp_path / 'keybot.db'}", fake_slack,
        SLACK_SIGNING_SECRET=SIGNING_SECRET, PORT=str(port), KEYBOT_OPS_ADDR=f"127.0.0.1:{ops_port}",
    )  # fmt: skip
    try:
        assert wait_until_up(port, process)[0] == 200
        holder.close()  # the old worker lets go
        assert wait_until_up(ops_port, process)[0] == 200
        assert request(ops_port, "GET", "/metrics")[0] == 200
    finally:
        holder.close()
        stop(process)
    assert "Cannot listen" not in log.read_text()


def test_http_mode_refuses_an_ops_address_on_the_slack_port(fake_slack, tmp_path):
    process, log = serve(
        tmp_path, f"sqlite:///{tmp_path / 'keybot.db'}", fake_slack,
        SLACK_SIGNING_SECRET=SIGNING_SECRET, PORT="3999", KEYBOT_OPS_ADDR="127.0.0.1:3999",
    )  # fmt: skip
    assert process.wait(timeout=60) == 2
    assert "KEYBOT_OPS_ADDR needs a port of its own: PORT (3999)" in log.read_text()
