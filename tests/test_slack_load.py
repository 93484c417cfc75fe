"""Slack under load answers 429 on its own (no test scripts it): the bot waits as told and posts everything once.

The fake enforces each method's rate-limit tier per window (here shortened to a second, so the test is quick).
End to end through the real Web API client, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import time_machine

from bot.slack.reminders import run_sweep
from tests.conftest import ADMIN
from tests.factories import form
from tests.fake_slack import FakeSlack
from tests.slack_harness import INVITED_CHANNELS, SlackHarness

D7 = datetime.combine(date(2026, 11, 21), time(9, 1), tzinfo=ZoneInfo("Asia/Seoul"))  # form() keys: D-7


def test_a_sweep_over_the_channels_rate_limit_posts_every_reminder_once_after_retry_after(services):
    with (
        FakeSlack(invited=INVITED_CHANNELS, rate_limits={"chat.postMessage": 3}, rate_window=1.0) as fake,
        SlackHarness(services, fake) as slack,
        time_machine.travel(D7, tick=True),
    ):
        vendors = [f"A0001234{n}" for n in range(5)]  # five keys in one channel: five messages, no digest
        for vendor_id in vendors:
            services.keys.register(ADMIN, form(vendor_id))
        report = run_sweep(services, slack.client)

    assert report is not None and report.delivered == 5 and not report.failed
    limited = [f for f in fake.failures if f.response.get("error") == "ratelimited"]
    assert limited and all(f.status == 429 for f in limited)  # Slack said wait; the bot waited
    posted = [m["text"].split()[0] for m in fake.history("CSHOP0001")]
    assert sorted(posted) == vendors  # each exactly once
