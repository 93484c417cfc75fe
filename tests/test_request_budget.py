"""A burst of Slack requests while the database is locked, against ``coupang-keybot serve`` for real (gunicorn with
the production worker and thread count): every request is answered within Slack's 3 s, those that queued for a
thread included, says the database is busy, saves nothing; ``/healthz`` and ``/metrics`` answer within a second."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.serve import HTTP_THREADS
from bot.services.base import BUSY
from storage.db import make_engine
from tests import test_socket_mode
from tests.conftest import ADMIN, MASTER_KEY
from tests.slack_harness import SIGNING_SECRET, signed_headers
from tests.test_slack_serve import free_port, request, wait_until_up
from tests.test_socket_mode import slash_command, start_serve, stop, wait_connected

socket_mode = test_socket_mode.socket_mode  # the fixture: a FakeSocketMode that FakeSlack hands out

SOCKET_MODE_THREADS = 10  # slack_bolt's SocketModeHandler(concurrency=10), which serve keeps

BURST = 12  # more than HTTP_THREADS: some requests queue for a thread
SLACK_GIVES_UP = 3.0  # seconds; the bot budgets 2 s for the database, so an answer by 3 s leaves no slack to spare
OPS_SECONDS = 1.0  # /healthz and /metrics
METRICS_TOKEN = "metrics-token-for-tests"
HOLD_AT_MOST = 15.0  # the test releases the lock; this only stops a failing test from hanging


@pytest.fixture
def served(db_url, fake_slack, tmp_path) -> Iterator[int]:
    """``coupang-keybot serve`` over HTTP on ``db_url``: its port."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL"))},
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "KEYBOT_METRICS_TOKEN": METRICS_TOKEN,  # /metrics on the Slack-facing port needs it
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "PORT": str(port),
    }
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def locked(db_url: str, *, table: str, mode: str) -> Iterator[None]:
    """Another connection holds ``table`` locked in ``mode`` (PostgreSQL) or the whole database (SQLite: ``BEGIN
    EXCLUSIVE``) until the block ends."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        connection: Any = sqlite3.connect(url.database, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
    else:
        connection = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        connection.execute(f"LOCK TABLE {table} IN {mode} MODE")
    watchdog = threading.Timer(HOLD_AT_MOST, connection.close)
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        connection.rollback()
        connection.close()


def slash(port: int, user: str, command_text: str, fake_slack) -> tuple[int, str]:
    form = urlencode(
        {
            "command": "/coupang-key",
            "text": command_text,
            "user_id": user,
            "channel_id": "CTEST0001",
            "team_id": "T0FAKE",
            "trigger_id": fake_slack.new_trigger_id(),
            "response_url": fake_slack.response_url(),
        }
    )
    return request(port, "POST", "/slack/events", form, signed_headers(SIGNING_SECRET, form))


def answer_text(body: str) -> str:
    try:
        return str(json.loads(body).get("text", ""))
    except ValueError:
        return body  # ack(text=...) alone comes back as plain text


def burst(port: int, send: Callable[[int], tuple[int, str]]) -> tuple[list[tuple[int, str, float]], list[float]]:
    """:data:`BURST` requests at once, each on its own connection, and ``/healthz`` and ``/metrics`` while they are
    in flight: each answer with the seconds it took, and the seconds each of those took."""
    answers: list[tuple[int, str, float] | None] = [None] * BURST
    start = threading.Barrier(BURST + 1)

    def one(i: int) -> None:
        start.wait()
        began = time.monotonic()
        status, body = send(i)
        answers[i] = (status, body, time.monotonic() - began)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    start.wait()
    ops = []
    for slowly in (False, True, False):  # every Slack thread is taken by now, and stays so for about 2 s
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            if slowly:  # a client that connects, then sends: the worker must not have routed it already
                time.sleep(0.2)
            began = time.monotonic()
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n\r\n")
            status_line = probe.makefile("rb").readline()
            ops.append(time.monotonic() - began)
        assert status_line.split()[1] in (b"200", b"503"), status_line
    began = time.monotonic()
    status, _ = request(port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})  # reads keys
    ops.append(time.monotonic() - began)
    assert status in (200, 503)
    for thread in threads:
        thread.join(timeout=20)
    assert all(answers), "a request got no answer"
    return [a for a in answers if a], ops


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite's readers never wait for a writer (WAL)
def test_a_burst_of_status_commands_on_a_locked_keys_table_is_all_answered_busy_in_time(served, db_url, fake_slack):
    assert BURST > HTTP_THREADS
    assert "0 keys" in answer_text(slash(served, ADMIN, "status", fake_slack)[1])  # the worker is warm
    with locked(db_url, table="keys", mode="ACCESS EXCLUSIVE"):
        answers, ops = burst(served, lambda i: slash(served, f"UBURST{i:03d}", "status", fake_slack))
    slowest = max(seconds for _, _, seconds in answers)
    assert slowest < SLACK_GIVES_UP, [round(seconds, 2) for _, _, seconds in answers]
    assert max(ops) < OPS_SECONDS, ops
    for status, body, _ in answers:
        assert status == 200 and BUSY in answer_text(body)


def test_a_burst_of_language_choices_on_a_locked_database_is_answered_busy_in_time_and_saves_none(
    served, db_url, fake_slack
):
    users = [f"UBURST{i:03d}" for i in range(BURST)]
    with locked(db_url, table="user_languages", mode="EXCLUSIVE"):
        answers, ops = burst(served, lambda i: slash(served, users[i], "language ko", fake_slack))
    slowest = max(seconds for _, _, seconds in answers)
    assert slowest < SLACK_GIVES_UP, [round(seconds, 2) for _, _, seconds in answers]
    assert max(ops) < OPS_SECONDS, ops
    for status, body, _ in answers:
        assert status == 200 and BUSY in answer_text(body)
    time.sleep(0.5)  # the lock is gone: a request answered "busy" must not save late
    engine = make_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM user_languages")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar() == 0
    engine.dispose()
    assert "English" in answer_text(slash(served, users[0], "language", fake_slack)[1])


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_burst_of_status_envelopes_in_socket_mode_on_a_locked_keys_table_is_all_acked_busy_in_time(
    db_url, fake_slack, socket_mode, tmp_path
):
    assert BURST > SOCKET_MODE_THREADS
    process, log = start_serve(tmp_path, fake_slack, database_url=db_url)
    try:
        wait_connected(socket_mode, process, log)
        warm = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, "status"))
        assert "0 keys" in socket_mode.wait_for_ack(warm, timeout=20)["payload"]["text"]
        acks: list[tuple[dict, float]] = []

        def acked(envelope_id: str, sent: float) -> None:
            ack = socket_mode.wait_for_ack(envelope_id, timeout=20)
            acks.append((ack, time.monotonic() - sent))

        with locked(db_url, table="keys", mode="ACCESS EXCLUSIVE"):
            waiters = []
            for _ in range(BURST):
                sent = time.monotonic()
                envelope_id = socket_mode.send_envelope("slash_commands", slash_command(fake_slack, "status"))
                waiters.append(threading.Thread(target=acked, args=(envelope_id, sent)))
                waiters[-1].start()
            for waiter in waiters:
                waiter.join(timeout=25)
    finally:
        stop(process)
    assert len(acks) == BURST
    slowest = max(seconds for _, seconds in acks)
    assert slowest < SLACK_GIVES_UP, [round(seconds, 2) for _, seconds in acks]
    for ack, _ in acks:
        assert BUSY in ack["payload"]["text"]


def test_the_worker_stamps_the_key_the_app_reads_and_routes_exactly_the_ops_paths():
    """The worker module repeats two names rather than import the bot into gunicorn's master; they must agree."""
    from bot import http_worker, ops_http
    from bot.slack import failures

    assert http_worker.ARRIVED == failures.ARRIVED
    assert {path.decode() for path in http_worker.OPS_PATHS} == set(ops_http.OPS_PATHS)
