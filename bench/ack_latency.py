"""How long ``/coupang-key status`` takes to answer over HTTP, beside a bare Bolt app that only acks.

Both apps are served the same way (bot.wsgi on a threaded wsgiref server on loopback, signed requests,
Web API client pointed at a local FakeSlack) in the same run. Keys are inserted through the repository in one
transaction. Goal: at 10,000 keys the status p99 stays within 10 ms of the bare app's.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_sdk import WebClient

from bot.bootstrap import Services, build_services
from bot.config import load_settings
from bot.ops_http import build_ops_wsgi
from bot.slack import views
from bot.slack.app import build_app
from bot.wsgi import build_wsgi
from storage.db import make_engine, upgrade
from storage.models import Key
from tests.fake_slack import FakeSlack
from tests.slack_harness import signed_headers

SIGNING_SECRET = "bench-signing-secret"
MASTER_KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="  # base64 of 32 x "k"
ADMIN = "UADMIN001"
SIZES = (10, 1_000, 10_000)
WARMUP, ROUNDS = 30, 400


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def served(wsgi: Callable[..., Any]) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, wsgi, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def signed_post(port: int, fake: FakeSlack, text: str) -> float:
    body = urlencode(
        {
            "command": "/coupang-key",
            "text": text,
            "user_id": ADMIN,
            "channel_id": "CBENCH001",
            "team_id": "T0FAKE",
            "trigger_id": "1.1.bench",
            "response_url": f"{fake.url}/respond/1",
        }
    )
    headers = signed_headers(SIGNING_SECRET, body)
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/slack/events", body=body.encode(), headers=headers)
    answer = connection.getresponse()
    answer.read()
    connection.close()
    elapsed = time.perf_counter() - start
    if answer.status != 200:
        raise RuntimeError(f"status {answer.status}")
    return elapsed


def measure(port: int, fake: FakeSlack, text: str) -> tuple[float, float]:
    for _ in range(WARMUP):
        signed_post(port, fake, text)
    samples = sorted(signed_post(port, fake, text) for _ in range(ROUNDS))
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return p50 * 1000, p99 * 1000


def insert_keys(services: Services, count: int) -> None:
    now = datetime.now(UTC)
    today = date.today()
    with services.ctx.transaction() as session:
        for n in range(count):
            vendor_id = f"A{n:08d}"
            key = Key(
                vendor_id=vendor_id,
                label=f"Shop {n}",
                generation=1,
                issued_on=None,
                expires_on=today + timedelta(days=n % 200 - 10),
                channel_id=None,
                owner_id=None,
                integration="self",
                company_name="Example Co",
                company_url="https://shop.example.com",
                ip_addresses=["211.45.10.3"],
                created_at=now,
                updated_at=now,
            )
            services.ctx.keys.add(
                session, key=key, access_key=f"AKIA{vendor_id}accesskey0", secret_key=f"S{vendor_id}secret0123456789"
            )


def listener_split(services: Services, rounds: int = 200) -> tuple[float, float]:
    """Median ms of (status_page, build + to_dict of its blocks): the two halves of the status listener."""
    tz = services.ctx.settings.timezone
    load, render = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        page = services.keys.status_page(limit=views.PAGE_SIZE)
        middle = time.perf_counter()
        [block.to_dict() for block in views.build_status_blocks("en", page, tz)]
        load.append(middle - start)
        render.append(time.perf_counter() - middle)
    return statistics.median(load) * 1000, statistics.median(render) * 1000


def no_ops(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [])
    return [b""]


def bare_app(fake: FakeSlack) -> App:
    app = App(
        client=WebClient(token="xoxb-bench", base_url=fake.base_url),
        signing_secret=SIGNING_SECRET,
        token_verification_enabled=False,
    )

    @app.command("/coupang-key")
    def handle_command(ack: Any) -> None:
        ack()

    return app


def run() -> str:
    rows = []
    splits: list[tuple[int, float, float]] = []
    with FakeSlack() as fake, tempfile.TemporaryDirectory() as tmp:
        with served(build_wsgi(bare_app(fake), ops=no_ops)) as port:
            bare = measure(port, fake, "status")
        rows.append(("bare Bolt app (ack only)", "–", *bare))
        for size in SIZES:
            url = f"sqlite:///{Path(tmp) / f'bench{size}.db'}"
            engine = make_engine(url)
            upgrade(engine)
            settings = load_settings(
                {
                    "KEYBOT_MASTER_KEY": MASTER_KEY,
                    "KEYBOT_ADMINS": ADMIN,
                    "DATABASE_URL": url,
                    "SLACK_BOT_TOKEN": "xoxb-bench",
                    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "SLACK_API_URL": fake.base_url,
                }
            )
            services = build_services(settings, engine=engine)
            insert_keys(services, size)
            app = build_app(services, client=WebClient(token="xoxb-bench", base_url=fake.base_url))
            with served(build_wsgi(app, ops=build_ops_wsgi(services))) as port:
                rows.append(("`/coupang-key status`", f"{size:,}", *measure(port, fake, "status")))
            splits.append((size, *listener_split(services)))
            engine.dispose()
        # the bare app again, so drift during the run shows
        with served(build_wsgi(bare_app(fake), ops=no_ops)) as port:
            rows.append(("bare Bolt app, again", "–", *measure(port, fake, "status")))
    baseline_p99 = max(rows[0][3], rows[-1][3])
    worst = rows[-2][3] - baseline_p99
    growth = rows[-2][3] - rows[1][3]
    lines = [
        "## ack_latency: `/coupang-key status` round trip over HTTP",
        "",
        f"Signed slash commands over loopback HTTP to bot.wsgi on a threaded wsgiref server, SQLite; "
        f"{WARMUP} warm-up then {ROUNDS} sequential requests per row, new connection each.",
        "",
        "| app | keys | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {keys} | {p50:.2f} | {p99:.2f} |" for name, keys, p50, p99 in rows],
        "",
        f"At 10,000 keys the status p99 is {worst:+.2f} ms from the bare app's "
        f"({'within' if worst <= 10 else 'OVER'} the 10 ms goal; Slack allows 3,000 ms). "
        f"From 10 to 10,000 keys its p99 moves {growth:+.2f} ms: status loads one page of 15 keys and counts "
        "phases with count(*) and two short index ranges, so what remains is the fixed cost of one database "
        "transaction and building the Block Kit reply, plus scheduling noise in the tail. Bolt's thread runner "
        "checks for ack() every 10 ms (slack_bolt/listener/thread_runner.py), so any listener that is not "
        "instant pays one such step over an ack-only app.",
        "",
        "Where the status listener's time goes (median in-process, same run): loading the page and its counts, "
        "then building the blocks with slack_sdk.models and serialising them (validation included). Together "
        "they decide whether the ack lands before Bolt's first or its second 10 ms check.",
        "",
        "| keys | load page + counts (ms) | build + serialise blocks (ms) |",
        "|---:|---:|---:|",
        *[f"| {size:,} | {load:.2f} | {render:.2f} |" for size, load, render in splits],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
