"""How long ``/coupang-key status`` takes to answer over HTTP, interleaved with a bare Bolt app that only acks.

Goal (issue 15): at 10,000 keys, status p50 ≤ ½ the bare app's p50 and status p99 ≤ the bare app's p99, measured
interleaved in one run, on SQLite and on PostgreSQL. Both apps are served the same way: bot.wsgi on a threaded
wsgiref server on loopback, one server each, signed requests on a new connection each, Web API client pointed at
a local FakeSlack; the loop alternates one bare request and one status request, so drift hits both alike.
The bare app is Bolt's default (``process_before_response=False``): that is what "an ack-only Bolt app" is.
"""

from __future__ import annotations

import http.client
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from sqlalchemy import event, insert, select

from bench.reminder_sweep import _postgres_database
from bot.bootstrap import Services, build_services
from bot.config import load_settings
from bot.ops_http import build_ops_wsgi
from bot.slack import views
from bot.slack.app import build_app
from bot.wsgi import build_wsgi
from storage.db import make_engine, upgrade
from storage.models import Consumer, LinkEdit, ReissueRequest, RolloutDelivery
from tests.fake_slack import FakeSlack
from tests.slack_harness import signed_headers

SIGNING_SECRET = "bench-signing-secret"
MASTER_KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="  # base64 of 32 x "k"
ADMIN = "UADMIN001"
KEYS = 10_000
WARMUP, ROUNDS = 50, 1_000  # pairs (one bare request, one status request)
SPLIT_ROUNDS = 300

# p50 / p99 ms before this work. "alone": bench/RESULTS.md of 2026-11-28 22:06 UTC, SQLite only, each app measured
# on its own (30 warm-up, 400 sequential requests). "interleaved": this file run on the code this work started
# from (commit fdd8bcf, exported with `git archive` and this file copied in), 2026-11-29 00:43 UTC. Then status
# acknowledged through Bolt's thread runner, which checks for ack() every 10 ms.
BEFORE = {
    ("SQLite", "alone"): {"bare": (10.96, 13.15), "status": (11.77, 25.40)},
    ("SQLite", "interleaved"): {"bare": (11.76, 13.66), "status": (12.35, 24.10)},
    ("PostgreSQL", "interleaved"): {"bare": (11.71, 13.05), "status": (22.31, 25.44)},
}


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


def command_body(fake: FakeSlack, text: str) -> str:
    return urlencode(
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


def signed_post(port: int, body: str) -> float:
    """Seconds from connecting until the whole answer is read (a new connection each time, as Slack does)."""
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


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def interleaved(bare_port: int, status_port: int, body: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(p50, p99) in ms of the bare app and of status, one request of each per round."""
    for _ in range(WARMUP):
        signed_post(bare_port, body)
        signed_post(status_port, body)
    bare, status = [], []
    for _ in range(ROUNDS):
        bare.append(signed_post(bare_port, body))
        status.append(signed_post(status_port, body))
    return percentiles(bare), percentiles(status)


def insert_keys(services: Services, count: int) -> None:
    """``count`` keys through the repository (real encryption, one INSERT per 2,000 keys), and a history around
    them so the status query meets real tables: three edits each for a fifth of the keys (one this week), three
    finished reissue requests each for a third, two consumers each for a tenth (holding generation 1), and one
    open request and one edit on the first page."""
    now = datetime.now(UTC)
    today = services.ctx.today(now)
    rows, secrets = [], []
    edits, requests, consumers = [], [], []
    for n in range(count):
        vendor_id = f"A{n:08d}"
        rows.append(
            {
                "vendor_id": vendor_id,
                "label": f"Shop {n}",
                "generation": 1,
                "issued_on": None,
                "expires_on": today + timedelta(days=n % 200 - 10),
                "channel_id": None,
                "owner_id": None,
                "integration": "self",
                "integrator_name": None,
                "company_name": "Example Co",
                "company_url": "https://shop.example.com",
                "ip_addresses": ["211.45.10.3"],
                "created_at": now,
                "updated_at": now,
            }
        )
        secrets.append((f"AKIA{vendor_id}accesskey0", f"S{vendor_id}secret0123456789"))
        if n % 5 == 1:
            edits += [
                {"vendor_id": vendor_id, "edited_at": now - timedelta(days=d), "edited_by": ADMIN} for d in (3, 9, 20)
            ]
        if n % 3 == 1:
            requests += [
                _request(vendor_id, now - timedelta(days=d), status)
                for d, status in ((200, "completed"), (100, "denied"), (40, "completed"))
            ]
        if n % 10 == 1:
            consumers += [_consumer(vendor_id, name, now) for name in ("erp", "wms")]
    edits.append({"vendor_id": "A00000000", "edited_at": now, "edited_by": ADMIN})
    requests.append(_request("A00000200", now, "pending"))
    with services.ctx.transaction() as session:
        for start in range(0, count, 2_000):
            services.ctx.keys.add_many(session, rows[start : start + 2_000], secrets[start : start + 2_000])
        services.ctx.record(session, ADMIN, "key.imported", None, {"keys": count})  # as `keys import` does
        session.execute(insert(LinkEdit), edits)
        session.execute(insert(ReissueRequest), requests)
        session.execute(insert(Consumer), consumers)
        ids = session.execute(select(Consumer.id, Consumer.vendor_id)).all()
        session.execute(
            insert(RolloutDelivery),
            [
                {
                    "consumer_id": i,
                    "vendor_id": v,
                    "generation": 1,
                    "state": "delivered",
                    "message_id": f"m{i}",
                    "attempts": 1,
                    "queued_at": now,
                }
                for i, v in ids
            ],
        )


def _request(vendor_id: str, at: datetime, status: str) -> dict[str, Any]:
    return {
        "vendor_id": vendor_id,
        "generation": 1,
        "path": "reissue",
        "reason": "bench",
        "requested_by": ADMIN,
        "requested_at": at,
        "expires_at": at + timedelta(days=1),
        "status": status,
    }


def _consumer(vendor_id: str, name: str, at: datetime) -> dict[str, Any]:
    return {
        "vendor_id": vendor_id,
        "name": name,
        "kind": "webhook",
        "target": "https://erp.example.com/keys",
        "config_ct": b"\x00" * 48,  # never read by status
        "signing_secret_ct": b"\x00" * 48,
        "created_by": ADMIN,
        "created_at": at,
    }


def in_process_split(services: Services, app: App, body: str) -> dict[str, float]:
    """Median ms of the status listener's parts, in this process: the reader's language, the page (queries and
    statuses), the blocks; and the whole of Bolt's dispatch of the signed request (signature, matching, listener)."""
    tz = services.ctx.settings.timezone
    headers = {k.lower(): [v] for k, v in signed_headers(SIGNING_SECRET, body).items()}
    times: dict[str, list[float]] = {"language": [], "page": [], "counting": [], "blocks": [], "dispatch": []}
    for _ in range(SPLIT_ROUNDS):
        start = time.perf_counter()
        lang = services.languages.of(ADMIN)
        after_language = time.perf_counter()
        page = services.keys.status_page(limit=views.PAGE_SIZE)
        after_page = time.perf_counter()
        views.build_status_blocks(lang, page, tz)
        after_blocks = time.perf_counter()
        app.dispatch(BoltRequest(body=body, headers=headers))
        after_dispatch = time.perf_counter()
        services.languages.choose(ADMIN, "en")  # an audited change: the counts over every key are run again
        before_counting = time.perf_counter()
        services.keys.status_page(limit=views.PAGE_SIZE)
        end = time.perf_counter()
        times["language"].append(after_language - start)
        times["page"].append(after_page - after_language)
        times["blocks"].append(after_blocks - after_page)
        times["dispatch"].append(after_dispatch - after_blocks)
        times["counting"].append(end - before_counting)
    return {part: statistics.median(values) * 1000 for part, values in times.items()}


def explain(services: Services) -> list[tuple[str, str]]:
    """The plan of the statement a status page runs (``status``, ``status expiring 30``), captured as it was sent
    (SQL and parameters)."""
    engine = services.engine
    postgres = engine.dialect.name == "postgresql"
    plans = []
    for name, expiring in (("`status`", None), ("`status expiring 30`", 30)):
        sent: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                sent.append((statement, parameters))  # noqa: B023 - used before the loop moves on

        event.listen(engine, "before_cursor_execute", capture)
        try:
            services.keys.status_page(limit=views.PAGE_SIZE, expiring_within=expiring)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        (statement, parameters), *others = sent
        assert not others, "one statement per page"
        with engine.connect() as connection:
            if postgres:
                rows = _generic_plan(connection, statement, parameters)
            else:
                rows = [r[-1] for r in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
        plans.append((name, " / ".join(re.sub(r"\s+", " ", str(r)).strip() for r in rows)))
    return plans


def _generic_plan(connection: Any, statement: str, parameters: dict[str, Any]) -> list[str]:
    """PostgreSQL: the plan the prepared statement runs with (``plan_cache_mode = force_generic_plan``, as
    ``key_page_with_facts`` sets): prepared with ``$n`` for its parameters, explained with this request's values."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    def literal(value: Any) -> str:
        return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"

    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    connection.exec_driver_sql("PREPARE bench_page AS " + re.sub(r"%\((\w+)\)s", number, statement))
    try:
        values = ", ".join(literal(parameters[n]) for n in names)
        return [r[0] for r in connection.exec_driver_sql(f"EXPLAIN EXECUTE bench_page({values})")]
    finally:
        connection.exec_driver_sql("DEALLOCATE bench_page")


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


def no_ops(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [])
    return [b""]


def bench_backend(name: str, url: str, fake: FakeSlack) -> dict[str, Any]:
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
    try:
        insert_keys(services, KEYS)
        if engine.dialect.name == "postgresql":  # what autovacuum does after a bulk insert: statistics, visibility map
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM ANALYZE")
        app = build_app(services, client=WebClient(token="xoxb-bench", base_url=fake.base_url))
        body = command_body(fake, "status")
        with (
            served(build_wsgi(bare_app(fake), ops=no_ops)) as bare_port,
            served(build_wsgi(app, ops=build_ops_wsgi(services))) as status_port,
        ):
            bare, status = interleaved(bare_port, status_port, body)
        return {
            "name": name,
            "bare": bare,
            "status": status,
            "split": in_process_split(services, app, body),
            "plans": explain(services),
            "process_before_response": app.process_before_response,
        }
    finally:
        engine.dispose()


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    (bare50, bare99), (status50, status99) = result["bare"], result["status"]
    met = status50 <= bare50 / 2 and status99 <= bare99
    return met, (
        f"{result['name']}: status p50 {status50:.2f} ms vs ½ × bare p50 {bare50 / 2:.2f} ms "
        f"({'≤' if status50 <= bare50 / 2 else '>'}), status p99 {status99:.2f} ms vs bare p99 {bare99:.2f} ms "
        f"({'≤' if status99 <= bare99 else '>'}): **{'met' if met else 'NOT met'}**"
    )


def _figures(pair: tuple[float, float] | None) -> str:
    return "–" if pair is None else f"{pair[0]:.2f} / {pair[1]:.2f}"


def run() -> str:
    results = []
    with FakeSlack() as fake:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(bench_backend("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", fake))
        pg = _postgres_database()
        if pg is not None:
            url, drop = pg
            try:
                results.append(bench_backend("PostgreSQL", url, fake))
            finally:
                drop()
    verdicts = [verdict(r) for r in results]
    flags = sorted({r["process_before_response"] for r in results})
    lines = [
        "## ack_latency: `/coupang-key status` beside an ack-only Bolt app, interleaved",
        "",
        f"`python -m bench ack_latency`: {KEYS:,} keys (one with an open reissue request and one with an edit on "
        "the first page). Two servers in one process, each bot.wsgi on a threaded wsgiref server on loopback: the "
        "bot (`build_app`) and a bare Bolt app (defaults) whose `/coupang-key` listener only calls `ack()`. "
        f"{WARMUP} warm-up pairs, then {ROUNDS:,} rounds of one signed slash command to the bare app and one "
        "`/coupang-key status` to the bot, each on a new connection, timed from connect to the last byte. "
        f"The bot's Bolt app ran with `process_before_response={'/'.join(map(str, flags))}` (issue 15: "
        "acknowledge with the reply where it is cheap; without it every reply waits for Bolt's 10 ms poll).",
        "",
        "Goal (issue 15): status p50 ≤ ½ bare p50 and status p99 ≤ bare p99, on SQLite and PostgreSQL.",
        "",
        "| database | app | before, alone | before, interleaved | this run, interleaved |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        for app, label in (("bare", "bare Bolt app (ack only)"), ("status", "`/coupang-key status`")):
            alone = BEFORE.get((r["name"], "alone"), {}).get(app)
            interleaved_before = BEFORE.get((r["name"], "interleaved"), {}).get(app)
            lines.append(
                f"| {r['name']} | {label} | {_figures(alone)} | {_figures(interleaved_before)} | "
                f"**{_figures(r[app])}** |"
            )
    lines += [
        "",
        "p50 / p99 in ms. *before, alone*: this section before this work (SQLite only, each app measured on its "
        "own, 30 warm-up and 400 sequential requests). *before, interleaved*: this benchmark run on the code this "
        "work started from (commit fdd8bcf): status acknowledged through Bolt's thread runner, which checks for "
        "`ack()` every 10 ms, after two transactions and six queries (the reader's language; the key page, counts, "
        "edits, every open request, consumer counts) and slack_sdk models validated and serialised.",
        "",
        "Verdict, computed from the figures above:",
        "",
        *[f"- {text}" for _, text in verdicts],
        f"- Overall: **{'met' if all(met for met, _ in verdicts) and len(results) == 2 else 'NOT met'}**"
        + ("" if len(results) == 2 else " (PostgreSQL was not reachable)"),
        "",
        "Where the status reply's time goes, median in-process (same run, same app, after the HTTP rounds): the "
        "reader's language (cached in-process, `LanguageService.of`); the page (`KeyService.status_page`: one read "
        "transaction, one statement for the page, each key's facts and the counts over every key, statuses "
        "built), where the counts are run only when the audit head moved since they were last counted (so not "
        "in this loop), and *page, counting*: the same after an audited change, counts included; the blocks "
        "(`build_status_blocks`, plain dicts); and Bolt's whole `dispatch` of the signed request (signature "
        "check, listener matching, the listener with all of the above). Over HTTP the rest is the wsgiref "
        "server and the connection.",
        "",
        "| database | language (ms) | page (ms) | page, counting (ms) | blocks (ms) | Bolt dispatch, all in (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r['name']} | {r['split']['language']:.3f} | {r['split']['page']:.2f} "
            f"| {r['split']['counting']:.2f} | {r['split']['blocks']:.2f} | {r['split']['dispatch']:.2f} |"
            for r in results
        ],
        "",
        f"Query plans of one status page at {KEYS:,} keys, after the HTTP rounds (so the counts' one-time filter "
        "is false and their scans do not run): SQLite, `EXPLAIN QUERY PLAN` of the statement as sent; PostgreSQL, "
        "the generic plan its prepared statement runs with (`plan_cache_mode = force_generic_plan`, as "
        "`KeyService.status_page` asks for its read transaction), explained with that request's values.",
        "",
        *[f"- {r['name']}, {name}: `{plan}`" for r in results for name, plan in r["plans"]],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
