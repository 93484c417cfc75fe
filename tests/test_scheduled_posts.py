"""The weekly summary and the daily audit chain head keep the reminders' promise: a failed post is retried by a
later run and posted once, also when Slack posted it but the answer was lost, and with several processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from apscheduler.triggers.interval import IntervalTrigger

from bot.bootstrap import Services, build_services
from bot.scheduler import build_scheduler
from bot.services.audit import HEAD_POST, HEAD_POSTED
from bot.services.base import MaybePosted
from bot.services.overview import SUMMARY_POST, SUMMARY_POSTED
from bot.services.posts import DELIVERED
from bot.slack.reissue import post_chain_head
from bot.slack.summary import post_weekly_summary
from tests.clock import MONDAY_0900_SEOUL
from tests.conftest import ADMIN, make_settings
from tests.factories import SECRET_MARK, form
from tests.fake_slack import FakeSlack
from tests.slack_harness import SlackHarness

CHANNEL = "CREMIND01"

# kind → (the job's post function, how its message starts, its scheduled_posts kind, its audit action)
KINDS: dict[str, tuple[Callable[[Services, object], bool], str, str, str]] = {
    "weekly summary": (post_weekly_summary, "Weekly key summary", SUMMARY_POST, SUMMARY_POSTED),
    "chain head": (post_chain_head, ":link: Audit chain head", HEAD_POST, HEAD_POSTED),
}


@pytest.fixture(params=list(KINDS))
def kind(request):
    return request.param


@pytest.fixture
def settings(db_url):
    return make_settings(DATABASE_URL=db_url)


def attempt(kind: str, services: Services, client) -> str:
    """One scheduled run, as APScheduler or the sweep runs it: a post whose answer was lost (the 5xx and dropped
    connections these tests script) is "failed" and retried by the next run; any other error fails the test."""
    post = KINDS[kind][0]
    try:
        return "posted" if post(services, client) else "nothing"
    except MaybePosted:
        return "failed"


def messages(fake: FakeSlack, kind: str) -> list[dict]:
    return [m for m in fake.history(CHANNEL) if m["text"].startswith(KINDS[kind][1])]


def rows(services: Services, kind: str) -> list:
    posts = services.overview.posts if kind == "weekly summary" else services.audit.posts
    return posts.rows(KINDS[kind][2])


def audited(services: Services, kind: str) -> list:
    return [e for e in services.audit.entries() if e.action == KINDS[kind][3]]


def test_slack_answering_500_delays_the_post_which_a_later_run_makes_once(settings, fake_slack, kind):
    fake_slack.fail_next("chat.postMessage", status=500)
    with time_machine.travel(MONDAY_0900_SEOUL - timedelta(minutes=1), tick=False) as traveller:
        services = build_services(settings)
        services.keys.register(ADMIN, form("A00012345"))
        with SlackHarness(services, fake_slack) as harness:
            assert attempt(kind, services, harness.client) == "nothing"  # 08:59: not due yet
            traveller.shift(timedelta(minutes=1))
            assert attempt(kind, services, harness.client) == "failed"
            assert messages(fake_slack, kind) == []
            traveller.shift(timedelta(minutes=5))
            assert attempt(kind, services, harness.client) == "posted"
            traveller.shift(timedelta(minutes=5))
            assert attempt(kind, services, harness.client) == "nothing"
            traveller.shift(timedelta(hours=3))  # a restart later that day
            restarted = build_services(settings)
            assert attempt(kind, restarted, harness.client) == "nothing"
            restarted.engine.dispose()
    [message] = messages(fake_slack, kind)
    [row] = rows(services, kind)
    assert (row.status, row.attempts, row.message_ts) == (DELIVERED, 2, message["ts"])
    named = {"claim": row.claim_id, "kind": row.kind, "day": row.day.isoformat()}
    assert message["metadata"] == {"event_type": "keybot_scheduled_post", "event_payload": named}
    assert fake_slack.calls_to("conversations.history")  # after a 500 it looked before posting again
    [entry] = audited(services, kind)
    assert entry.details["ts"] == message["ts"] and services.audit.verify().ok
    assert SECRET_MARK not in fake_slack.all_text()
    services.engine.dispose()


@pytest.mark.parametrize("status", [None, 500], ids=["timeout or dropped connection", "5xx"])
def test_a_post_slack_made_while_its_answer_was_lost_is_not_made_again(settings, fake_slack, kind, status):
    fake_slack.fail_next("chat.postMessage", status=status, posted=True)
    with time_machine.travel(MONDAY_0900_SEOUL, tick=False) as traveller:
        services = build_services(settings)
        services.keys.register(ADMIN, form("A00012345"))
        with SlackHarness(services, fake_slack) as harness:
            assert attempt(kind, services, harness.client) == "failed"
            traveller.shift(timedelta(minutes=5))
            assert attempt(kind, services, harness.client) == "posted"  # found in the history
            traveller.shift(timedelta(minutes=5))
            assert attempt(kind, services, harness.client) == "nothing"
    [message] = messages(fake_slack, kind)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    [row] = rows(services, kind)
    assert (row.status, row.message_ts) == (DELIVERED, message["ts"])
    [entry] = audited(services, kind)
    assert entry.details["found_in_history"] is True and entry.details["ts"] == message["ts"]
    services.engine.dispose()


@pytest.mark.parametrize("slack_posted", [True, False], ids=["slack posted", "slack did not post"])
def test_two_processes_retrying_a_failed_post_make_it_once(settings, fake_slack, kind, slack_posted):
    fake_slack.fail_next("chat.postMessage", status=500, posted=slack_posted)
    with time_machine.travel(MONDAY_0900_SEOUL, tick=False) as traveller:
        first = build_services(settings)
        first.keys.register(ADMIN, form("A00012345"))
        second = build_services(settings)  # another serve process on the same database
        with SlackHarness(first, fake_slack) as harness:
            assert attempt(kind, first, harness.client) == "failed"
            traveller.shift(timedelta(minutes=5))
            barrier = threading.Barrier(2)
            results: list[str] = []

            def run(services: Services) -> None:
                barrier.wait()
                results.append(attempt(kind, services, harness.client))

            threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert sorted(results) == ["nothing", "posted"]
    assert len(messages(fake_slack, kind)) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1 and len(fake_slack.failures) == (not slack_posted)
    assert [r.status for r in rows(first, kind)] == [DELIVERED] and len(audited(first, kind)) == 1
    assert first.audit.verify().ok
    for services in (first, second):
        services.engine.dispose()


def test_the_chain_head_job_runs_every_few_minutes_so_a_failed_post_is_retried(settings, fake_slack):
    services = build_services(settings)
    with SlackHarness(services, fake_slack) as harness:
        scheduler = build_scheduler(services, harness.app)
        job = {j.id: j for j in scheduler.get_jobs()}["audit_chain_head"]
        assert isinstance(job.trigger, IntervalTrigger) and job.trigger.interval <= timedelta(minutes=5)
    services.engine.dispose()
