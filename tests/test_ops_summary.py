"""The weekly summary: posted on the summary weekday at the reminder time, once, even when nothing is due."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from bot.bootstrap import build_services
from bot.services.overview import KeyFacts, Overview
from bot.slack.reminders import run_sweep
from bot.slack.summary import build_summary_blocks, post_weekly_summary
from tests.clock import MONDAY_0900_SEOUL, Clock
from tests.conftest import ADMIN, make_settings
from tests.factories import form
from tests.slack_harness import SlackHarness


def keys_for(services, today: date) -> None:
    for n, days in enumerate([94, 120, 150, 160, 170, 175], start=1):
        services.keys.register(ADMIN, form(f"A0001234{n}", issued_on=None, expires_on=today + timedelta(days=days)))


def test_summary_is_posted_once_on_monday_at_the_reminder_time_across_processes(db_url, fake_slack):
    clock = Clock(MONDAY_0900_SEOUL - timedelta(minutes=1))
    first = build_services(make_settings(DATABASE_URL=db_url), clock=clock)
    second = build_services(make_settings(DATABASE_URL=db_url), clock=clock)  # another serve process
    keys_for(first, date(2026, 11, 30))
    with SlackHarness(first, fake_slack) as harness:
        assert not post_weekly_summary(first, harness.client)  # 08:59: not yet

        clock.at = MONDAY_0900_SEOUL
        assert run_sweep(first, harness.client) is not None  # nothing due, yet the summary goes out
        assert not post_weekly_summary(second, harness.client)
        clock.at += timedelta(hours=3)  # a restart later that day
        assert not post_weekly_summary(build_services(make_settings(DATABASE_URL=db_url), clock=clock), harness.client)

        posts = fake_slack.calls_to("chat.postMessage")
        assert len(posts) == 1
        assert posts[0].params["channel"] == "CREMIND01"
        assert posts[0].params["text"] == (
            "Weekly key summary: 6 keys: all healthy; next expiry A00012341 on 2027-03-04 (94 days left)"
        )

        clock.at += timedelta(days=7)  # next Monday: a new summary
        assert post_weekly_summary(second, harness.client)
    for services in (first, second):
        services.engine.dispose()


def test_summary_weekday_is_configurable_and_off_disables_it(db_url, fake_slack):
    clock = Clock(MONDAY_0900_SEOUL)
    off = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_WEEKLY_SUMMARY="off"), clock=clock)
    friday = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_WEEKLY_SUMMARY="fri"), clock=clock)
    with SlackHarness(off, fake_slack) as harness:
        assert not post_weekly_summary(off, harness.client)
        assert not post_weekly_summary(friday, harness.client)
        clock.at += timedelta(days=4)
        assert post_weekly_summary(friday, harness.client)
    assert "No keys registered yet" in fake_slack.calls_to("chat.postMessage")[0].params["text"]
    for services in (off, friday):
        services.engine.dispose()


@pytest.mark.parametrize("count", [1, 400])
def test_summary_lists_keys_needing_attention_within_slack_limits(count):
    today = date(2026, 11, 30)
    keys = [
        KeyFacts(
            f"A{n:08d}", "Shop <b> " + "L" * 200, today + timedelta(days=n % 20 - 5), n % 20 - 5, 1, None, n % 2 == 0
        )
        for n in range(count)
    ]
    urgent = sorted(keys, key=lambda k: k.expires_on)[:11]
    window = sum(0 <= k.days_left <= 14 for k in keys)
    expired = sum(k.days_left < 0 for k in keys)
    overview = Overview(today, urgent, count - window - expired, window, expired)
    blocks = [b.to_dict() for b in build_summary_blocks(overview)]
    assert len(blocks) <= 50
    for block in blocks:
        for item in [block.get("text")] + block.get("elements", []):
            assert item is None or len(item["text"]) <= 3000
    text = str(blocks)
    assert "<b>" not in text and "&lt;b&gt;" in text
    assert "reissue request open" in text
    if count == 400:
        assert f"and {window + expired - 10} more" in text
