"""Monitoring end to end: /metrics parsed with prometheus_client's own parser, /healthz checks, the heartbeat."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text, update

from bot.bootstrap import Services, build_services
from bot.health import DATABASE_DEADLINE_SECONDS
from bot.ops_http import build_ops_wsgi
from bot.scheduler import build_scheduler
from bot.slack.reminders import run_sweep
from storage.models import Key
from tests.clock import MONDAY_1000_KST, seoul_today
from tests.conftest import ADMIN, USER, make_settings
from tests.factories import SECRET_MARK, form
from tests.loopback import LoopbackServer
from tests.slack_harness import SlackHarness
from tests.test_ops_backup import cli  # noqa: F401  (fixture)


class HeartbeatReceiver(LoopbackServer):
    """A healthchecks.io stand-in: records the path of every ping."""

    def __init__(self) -> None:
        self.pings: list[str] = []
        self.arrived = threading.Condition()

    def _build_server(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with receiver.arrived:
                    receiver.pings.append(self.path)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[HeartbeatReceiver]:
    with HeartbeatReceiver() as server:
        yield server


def register(services: Services, vendor_id: str, *, days_left: int, **overrides: str) -> None:
    """A key that expires ``days_left`` days from today (Seoul), as the clock reads now."""
    expires = seoul_today() + timedelta(days=days_left)
    services.keys.register(ADMIN, form(vendor_id, issued_on=None, expires_on=expires, **overrides))


def scrape(harness: SlackHarness, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed: from the ops listener, or with ``headers`` (a bearer token) from the Slack-facing port."""
    answer = harness.get("/metrics", headers) if headers else harness.ops_get("/metrics")
    assert answer.status == 200, answer.text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def settings(db_url):
    """An approver besides the requester, so the reissue request below can be made."""
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=ADMIN)


def test_metrics_equal_status_json(slack, services, db_url, cli):  # noqa: F811 - the imported fixture
    register(services, "A00000001", days_left=94)
    register(services, "A00000002", days_left=10)
    register(services, "A00000003", days_left=3)
    register(services, "A00000004", days_left=-2, integration="integrator", integrator_name="셀러허브", owner_id="")
    services.reissues.request(USER, "A00000002", "expires soon")
    with services.ctx.transaction() as session:  # as a check with Coupang leaves them
        session.execute(update(Key).where(Key.vendor_id == "A00000001").values(verify_ok=True))
        session.execute(update(Key).where(Key.vendor_id == "A00000003").values(verify_ok=False))

    metrics = scrape(slack)
    code, out, _ = cli(db_url, "status", "--json")
    assert code == 0
    status = json.loads(out)

    assert len(status) == 4
    for key in status:
        vendor = (("vendor_id", key["vendor_id"]),)
        routing = {"owner": key["owner"] or "", "integrator": key["integrator"] or ""}  # Alertmanager routes by these
        labelled = tuple(sorted({"vendor_id": key["vendor_id"], "label": key["label"], **routing}.items()))
        assert metrics["coupang_key_days_left"][labelled] == key["days_left"]
        assert metrics["coupang_key_generation"][vendor] == key["generation"]
        end_of_day = datetime.combine(
            date.fromisoformat(key["expires_on"]) + timedelta(days=1),
            datetime.min.time(),
            tzinfo=services.ctx.settings.timezone,
        )
        assert metrics["coupang_key_expiry_timestamp_seconds"][vendor] == end_of_day.timestamp()
        assert metrics["coupang_key_reissue_request_open"][vendor] == (1 if key["open_request"] else 0)
    phases = {dict(labels)["phase"]: value for labels, value in metrics["coupang_keybot_keys"].items()}
    assert phases == {p: sum(k["phase"] == p for k in status) for p in ("healthy", "reissue_window", "expired")}
    assert metrics["coupang_key_verification_ok"] == {
        (("vendor_id", "A00000001"),): 1,
        (("vendor_id", "A00000003"),): 0,
    }
    assert "process_cpu_seconds_total" in metrics
    assert metrics["coupang_keybot_reminders_posted_total"] == {(): 0}


def test_status_json_streamed_in_chunks_is_the_text_json_dump_writes(services, db_url, cli, monkeypatch):  # noqa: F811
    """`status --json` writes chunk by chunk from streamed rows; the text is what json.dump(indent=2) gave for
    the statuses built from ORM keys (the status page's path), byte for byte."""
    for i, days in enumerate((94, 10, 3, -2, 10)):
        register(services, f"A0000000{i}", days_left=days)
    services.reissues.request(USER, "A00000001", "expires soon")
    with services.ctx.transaction() as session:
        session.execute(update(Key).where(Key.vendor_id == "A00000000").values(verify_ok=True, verify_outcome="ok"))
    monkeypatch.setattr("bot.cli.WRITE_CHUNK", 2)
    code, out, _ = cli(db_url, "status", "--json")
    expected = [s.as_json() for s in services.keys.status_page(limit=100).statuses]
    assert code == 0 and [k["days_left"] for k in expected] == [-2, 3, 10, 10, 94]
    assert out == json.dumps(expected, ensure_ascii=False, indent=2) + "\n"
    code, text_out, _ = cli(db_url, "status")
    assert code == 0 and len(text_out.splitlines()) >= 5 and text_out.index("A00000003") < text_out.index("A00000000")


def test_metrics_need_the_bearer_token_when_one_is_set(db_url, fake_slack):
    services = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_METRICS_TOKEN="scrape-me-7"))
    with SlackHarness(services, fake_slack) as harness:
        assert harness.get("/metrics").status == 401
        assert harness.get("/metrics", {"Authorization": "Bearer wrong"}).status == 401
        assert "coupang_keybot_keys" in harness.get("/metrics", {"Authorization": "Bearer scrape-me-7"}).text
        assert harness.get("/healthz").status == 200  # load balancers need no token
    services.engine.dispose()


def test_revoked_slack_token_turns_healthz_503_and_pings_fail(db_url, fake_slack, receiver, clock):
    settings = make_settings(DATABASE_URL=db_url, KEYBOT_HEARTBEAT_URL=f"{receiver.url}/ping/abc")
    services = build_services(settings, clock=clock)
    register(services, "A00000002", days_left=10)  # its D-14 reminder is due
    with SlackHarness(services, fake_slack) as harness:
        services.monitor.started(scheduler=True)
        fake_slack.revoke_token(harness.client.token)

        report = run_sweep(services, harness.client)

        assert report is not None and report.failed
        health = harness.get("/healthz")
        assert health.status == 503
        body = health.json()
        assert body["ok"] is False and "Slack" in body["checks"]["slack"] and "invalid_auth" in body["checks"]["slack"]
        assert body["checks"]["database"] == "ok" and body["last_sweep_at"] is not None
        assert receiver.pings == ["/ping/abc/start", "/ping/abc/fail"]
        errors = scrape(harness)["coupang_keybot_slack_errors_total"]
        assert errors[(("error", "invalid_auth"), ("method", "chat.postMessage"))] >= 1

        fake_slack.restore_token(harness.client.token)  # reinstalled: the next sweep posts and all is well
        assert run_sweep(services, harness.client).delivered == 1
        assert harness.get("/healthz").json()["checks"]["slack"] == "ok"
        assert receiver.pings[-1] == "/ping/abc"
        assert scrape(harness)["coupang_keybot_reminders_posted_total"] == {(): 1}
    services.engine.dispose()


def test_a_failed_weekly_summary_keeps_the_report_of_the_reminders_that_went_out(db_url, fake_slack, receiver, clock):
    """Monday 10:00 in Seoul, the weekly summary is due (issue 19: this failed every Monday). The key's reminder
    goes out, then the summary's post fails: the sweep still reports the reminder and /metrics counts it, the
    heartbeat says the sweep failed, and the next sweep posts the summary without posting the reminder again."""
    clock.at = MONDAY_1000_KST
    settings = make_settings(DATABASE_URL=db_url, KEYBOT_HEARTBEAT_URL=f"{receiver.url}/ping/abc")
    services = build_services(settings, clock=clock)
    register(services, "A00000002", days_left=10)  # its D-14 reminder is due
    with SlackHarness(services, fake_slack) as harness:
        services.monitor.started(scheduler=True)
        fake_slack.fail_next("chat.postMessage", status=500, after=1)  # the reminder goes out, the summary fails

        report = run_sweep(services, harness.client)

        assert report is not None and report.delivered == 1 and not report.failed
        assert [c.params["channel"] for c in fake_slack.calls_to("chat.postMessage")] == ["CSHOP0001"]
        metrics = scrape(harness)
        assert metrics["coupang_keybot_reminders_posted_total"] == {(): 1}
        assert "coupang_keybot_reminder_sweep_last_success_timestamp_seconds" not in metrics
        assert receiver.pings == ["/ping/abc/start", "/ping/abc/fail"]

        clock.advance(minutes=5)  # the next sweep retries the summary
        again = run_sweep(services, harness.client)

        assert again is not None and again.delivered == 0 and not again.failed
        posts = fake_slack.calls_to("chat.postMessage")
        assert [c.params["channel"] for c in posts] == ["CSHOP0001", "CREMIND01"]
        assert posts[1].params["text"].startswith("Weekly key summary: 1 key")
        assert receiver.pings[-1] == "/ping/abc"
        last_success = scrape(harness)["coupang_keybot_reminder_sweep_last_success_timestamp_seconds"][()]
        assert last_success == MONDAY_1000_KST.timestamp() + 300
    services.engine.dispose()


def test_healthz_is_503_once_the_scheduler_stopped_sweeping(db_url, fake_slack, clock):
    services = build_services(make_settings(DATABASE_URL=db_url), clock=clock)
    with SlackHarness(services, fake_slack) as harness:
        swept = threading.Event()
        scheduler = build_scheduler(services, harness.app)
        scheduler.add_listener(lambda event: event.job_id == "reminders" and swept.set(), EVENT_JOB_EXECUTED)
        scheduler.start()
        services.monitor.started(scheduler=True)
        assert swept.wait(10)
        scheduler.shutdown()

        assert harness.get("/healthz").json()["checks"]["scheduler"] == "ok"
        clock.at += timedelta(minutes=15)
        assert harness.get("/healthz").status == 200
        clock.at += timedelta(minutes=1)
        answer = harness.get("/healthz")
        assert answer.status == 503
        assert "has not finished a reminder sweep" in answer.json()["checks"]["scheduler"]
        sweep_at = scrape(harness)["coupang_keybot_reminder_sweep_last_success_timestamp_seconds"][()]
        assert sweep_at == (clock.at - timedelta(minutes=16)).timestamp()
    services.engine.dispose()


def test_healthz_without_scheduler_says_disabled(slack):
    assert slack.get("/healthz").json() == {
        "ok": True,
        "checks": {
            "database": "ok",
            "master_key": "ok",
            "scheduler": "disabled",
            "slack": "unknown",
            "reminder_channels": "ok",
        },
        "last_sweep_at": None,
    }


def _lock_sqlite(db_url: str) -> Any:
    locker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


def test_healthz_answers_within_its_deadline_while_another_connection_holds_the_lock(slack, db_url):
    unlocked = []
    for _ in range(3):  # how long an answer takes on this machine right now, before the lock
        started = time.monotonic()
        assert slack.get("/healthz").status == 200
        unlocked.append(time.monotonic() - started)
    # the check's deadline plus room that grows with the machine's load; always well under the 5 s a read stuck
    # behind the lock would take (lock and statement timeouts), so a healthz that waits for the lock still fails
    limit = min(DATABASE_DEADLINE_SECONDS + max(1.3, 4 * max(unlocked)), 4.0)
    if db_url.startswith("sqlite"):
        locker = _lock_sqlite(db_url)
        release = locker.rollback
    else:
        engine = create_engine(db_url)
        connection = engine.connect()
        connection.execute(text("LOCK TABLE keys IN ACCESS EXCLUSIVE MODE"))
        release = connection.rollback
    try:
        for _ in range(2):  # the second request finds the first check still stuck, and still answers at once
            started = time.monotonic()
            answer = slack.get("/healthz")
            assert time.monotonic() - started < limit
            assert answer.status == 503
            assert "database did not answer" in answer.json()["checks"]["database"]
    finally:
        release()
    deadline = time.monotonic() + 10
    while slack.get("/healthz").status != 200:  # the stuck read finishes once the lock is gone
        assert time.monotonic() < deadline, "healthz stayed 503 after the lock was released"


def test_healthz_is_503_when_the_database_does_not_answer(tmp_path):
    settings = make_settings(DATABASE_URL=f"sqlite:///{tmp_path / 'keybot.db'}")
    services = build_services(settings, engine=create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'keybot.db'}"))
    statuses: list[str] = []
    body = build_ops_wsgi(services)(
        {"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"}, lambda status, headers: statuses.append(status)
    )
    assert statuses == ["503 Service Unavailable"]
    answer = json.loads(b"".join(body))
    assert answer["ok"] is False and "database does not answer" in answer["checks"]["database"]


def test_a_heartbeat_that_cannot_be_delivered_never_stops_the_sweep(db_url, fake_slack, caplog):
    settings = make_settings(DATABASE_URL=db_url, KEYBOT_HEARTBEAT_URL="http://127.0.0.1:9/nobody-listens")
    services = build_services(settings)
    with SlackHarness(services, fake_slack) as harness:
        assert run_sweep(services, harness.client) is not None
    assert "heartbeat ping (success) failed" in caplog.text
    assert "nobody-listens" not in caplog.text
    assert SECRET_MARK not in caplog.text
    services.engine.dispose()
