"""Every endpoint refuses a body over 1 MB with 413 before anything reads it (INTERFACE.md "HTTP mode").

A request that declares a large ``Content-Length`` and sends nothing more gets its answer at once: had anything
(Bolt included) tried to read the body, the answer would never come. Chunked bodies through gunicorn are read at
most 1 MB + 1 byte (see tests/test_ops_listener.py for the served process).
"""

from __future__ import annotations

import http.client
import json
import time

import pytest

from bot.confirm import CONFIRM_PATH, build_confirm_app
from bot.ops_http import build_ops_listener, serve_ops
from tests.slack_harness import SlackHarness

MB = 1024 * 1024


def headers_only(port: int, method: str, path: str, length: int) -> tuple[int, str, float]:
    """Send only the headers of a request declaring a ``length``-byte body; the answer, and how long it took."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    started = time.monotonic()
    try:
        connection.putrequest(method, path)
        connection.putheader("Content-Type", "application/x-www-form-urlencoded")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read().decode(), time.monotonic() - started
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/slack/events", "/rollout/confirm", "/healthz", "/metrics", "/anything-else"])
def test_the_slack_facing_port_refuses_a_body_over_1_mb_unread(slack, path):
    status, body, took = headers_only(slack.port, "POST", path, MB + 1)
    assert status == 413 and took < 4, (status, body, took)
    assert json.loads(body)["ok"] is False


def test_a_body_of_exactly_1_mb_still_reaches_slack_s_signature_check(slack):
    body = "a=" + "b" * (MB - 2)
    forged = slack.raw_post(body, {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"})
    assert forged.status == 401  # read, and refused by Bolt's signature check, as before


def test_the_ops_listener_refuses_a_body_over_1_mb_unread(services):
    """The listener of KEYBOT_OPS_ADDR, and Socket Mode's (which serves /rollout/confirm too)."""
    app = build_ops_listener(
        services, token_free=True, routes={CONFIRM_PATH: build_confirm_app(services.rollout, services.monitor)}
    )
    server = serve_ops(app, "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        for path in ("/healthz", "/metrics", "/rollout/confirm", "/slack/events"):
            status, _, took = headers_only(port, "POST", path, 5 * MB)
            assert status == 413 and took < 4, path
        assert headers_only(port, "POST", "/slack/events", 10)[0] == 404  # Slack comes over the WebSocket there
    finally:
        server.shutdown()
        server.server_close()
    services.engine.dispose()


def test_a_chunked_body_to_wsgiref_is_answered_not_awaited(slack: SlackHarness):
    """wsgiref cannot decode chunked bodies: 411 at once, instead of a read that waits for the client to hang up."""
    connection = http.client.HTTPConnection("127.0.0.1", slack.port, timeout=5)
    try:
        connection.putrequest("POST", "/slack/events")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        connection.send(b"10\r\n0123456789abcdef\r\n")  # and never the last chunk
        assert connection.getresponse().status == 411
    finally:
        connection.close()
