"""A reminder for a channel that refuses the bot is never silent (issue 19).

The app has ``chat:write`` but not ``chat:write.public``: Slack refuses its posts in a channel nobody invited it
to (``not_in_channel``), an archived one (``is_archived``) or one it cannot see (``channel_not_found``). Within
the sweep that meets the refusal, the key's owner (DM) and KEYBOT_CHANNEL hear "invite me to #channel" — once;
status, App Home, ``/healthz`` and ``/metrics`` show it; and the reminder stays due, so it is posted exactly once
by the first sweep after someone invites the bot. End to end through the signed HTTP stack and the fake Slack,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot.services.reminders import DELIVERED, FAILED
from bot.slack.reminders import run_sweep
from tests.conftest import ADMIN, OWNER
from tests.factories import form
from tests.slack_harness import SlackHarness
from tests.test_ops_monitoring import scrape

SEOUL = ZoneInfo("Asia/Seoul")
UNINVITED = "CNOBOT001"  # a public channel nobody invited the bot to
OPS = "CREMIND01"  # KEYBOT_CHANNEL (tests/conftest.py), where the bot was invited
VENDOR = "A00012345"  # form(issued_on="2026-06-01") expires 2026-11-28
D7 = datetime.combine(date(2026, 11, 21), time(9, 1), tzinfo=SEOUL)  # a Saturday: no weekly summary is due


def reminders_in(slack: SlackHarness, channel: str) -> list[dict]:
    return [m for m in slack.fake.history(channel) if (m.get("metadata") or {}).get("event_type") == "keybot_reminder"]


def texts(slack: SlackHarness, channel: str) -> list[str]:
    return [m["text"] for m in slack.fake.history(channel)]


def the_d7_delivery(slack: SlackHarness):
    [row] = [d for d in slack.services.reminders.deliveries(vendor_id=VENDOR) if d.milestone == 7]
    return row


def home_text(slack: SlackHarness, user: str) -> str:
    before = len(slack.fake.calls_to("views.publish"))
    slack.home_opened(user)
    view = slack.fake.wait_for("views.publish", before + 1)[-1].params["view"]
    return str(view["blocks"])


def test_a_reminder_to_a_channel_that_never_invited_the_bot_reaches_people_and_is_posted_once_invited(slack):
    services = slack.services
    with time_machine.travel(D7, tick=False) as travel:
        services.keys.register(ADMIN, form(VENDOR, channel_id=UNINVITED, owner_id=OWNER))

        report = run_sweep(services, slack.client)

        assert report is not None and report.delivered == 0
        assert [p.error for p in report.undeliverable] == ["not_in_channel"]
        assert slack.fake.history(UNINVITED) == []
        # within that sweep: the owner (a DM) and KEYBOT_CHANNEL know what to do
        [to_owner] = texts(slack, OWNER)
        [to_ops] = texts(slack, OPS)
        for told in (to_owner, to_ops):
            assert f"Invite me to <#{UNINVITED}>" in told and f"`{VENDOR}`" in told and "/invite" in told
        row = the_d7_delivery(slack)
        assert row.status == FAILED and row.unsure_since is None  # still due, certainly not posted

        # status, App Home, /healthz and /metrics show it
        assert f"cannot be posted in <#{UNINVITED}>" in slack.slash(OWNER, "status").text_of()
        assert f"Invite me to <#{UNINVITED}>" in home_text(slack, OWNER)
        health = slack.get("/healthz")
        assert health.status == 200  # the process is fine: a person must invite the bot
        check = health.json()["checks"]["reminder_channels"]
        assert UNINVITED in check and "not_in_channel" in check and "invite the bot" in check
        metrics = scrape(slack)
        assert metrics["coupang_keybot_undeliverable_channels"][()] == 1
        labels = (("channel", UNINVITED), ("error", "not_in_channel"), ("vendor_id", VENDOR))
        assert metrics["coupang_key_reminder_undeliverable"][labels] == 1

        # later sweeps try again, but nobody is told twice
        for _ in range(2):
            travel.shift(timedelta(minutes=5))
            assert run_sweep(services, slack.client).delivered == 0  # type: ignore[union-attr]
        assert len(texts(slack, OWNER)) == 1 and len(texts(slack, OPS)) == 1

        slack.fake.invite(UNINVITED)  # someone did what the message said
        travel.shift(timedelta(minutes=5))
        assert run_sweep(services, slack.client).delivered == 1  # type: ignore[union-attr]
        travel.shift(timedelta(minutes=5))
        assert run_sweep(services, slack.client).delivered == 0  # type: ignore[union-attr]

        [reminder] = reminders_in(slack, UNINVITED)  # posted exactly once
        assert "One week left" in str(reminder["blocks"])
        row = the_d7_delivery(slack)
        assert (row.status, row.message_ts) == (DELIVERED, reminder["ts"])
        assert services.reminders.undeliverable() == []
        assert "cannot be posted" not in slack.slash(OWNER, "status").text_of()
        assert slack.get("/healthz").json()["checks"]["reminder_channels"] == "ok"
        assert scrape(slack)["coupang_keybot_undeliverable_channels"][()] == 0
        assert len(texts(slack, OWNER)) == 1 and len(texts(slack, OPS)) == 1


@pytest.mark.parametrize(
    ("break_channel", "error", "advice"),
    [
        (lambda fake: (fake.invite(UNINVITED), fake.archive(UNINVITED)), "is_archived", "the channel is archived"),
        (lambda fake: fake.delete_channel(UNINVITED), "channel_not_found", "does not let the bot see it"),
        (lambda fake: fake.create_channel(UNINVITED, private=True), "channel_not_found", "private channel"),
    ],
    ids=["archived", "deleted", "private"],
)
def test_an_archived_deleted_or_private_channel_is_named_with_what_to_do(slack, break_channel, error, advice):
    break_channel(slack.fake)
    with time_machine.travel(D7, tick=False):
        slack.services.keys.register(ADMIN, form(VENDOR, channel_id=UNINVITED, owner_id=OWNER))
        report = run_sweep(slack.services, slack.client)
    assert report is not None and [p.error for p in report.undeliverable] == [error]
    [to_owner] = texts(slack, OWNER)
    assert advice in to_owner and f"<#{UNINVITED}>" in to_owner and "/coupang-key edit" in to_owner
    assert len(texts(slack, OPS)) == 1


def test_when_keybot_channel_itself_refuses_the_owner_still_hears_it(slack):
    """A key without a channel posts to KEYBOT_CHANNEL; when that refuses too, the owner's DM is the way out."""
    slack.fake.kick(OPS)
    with time_machine.travel(D7, tick=False):
        slack.services.keys.register(ADMIN, form(VENDOR, channel_id=None, owner_id=OWNER))
        report = run_sweep(slack.services, slack.client)
    assert report is not None and [(p.channel_id, p.error) for p in report.undeliverable] == [(OPS, "not_in_channel")]
    [to_owner] = texts(slack, OWNER)
    assert f"Invite me to <#{OPS}>" in to_owner
    assert slack.fake.history(OPS) == []  # not asked to post there a second time in the same sweep
    assert [c.params["channel"] for c in slack.fake.calls_to("chat.postMessage")].count(OPS) == 1


def test_a_digest_for_a_refusing_channel_is_one_refusal_and_one_message_per_person(slack):
    """Seven keys in one uninvited channel: one attempt, one DM per owner, one post in KEYBOT_CHANNEL."""
    with time_machine.travel(D7, tick=False):
        for n in range(7):
            owner = OWNER if n % 2 else "UOWNER002"
            slack.services.keys.register(ADMIN, form(f"A0001234{n}", channel_id=UNINVITED, owner_id=owner))
        report = run_sweep(slack.services, slack.client)
    assert report is not None and sum(len(p.reminders) for p in report.undeliverable) == 7
    attempts = [c for c in slack.fake.calls_to("chat.postMessage") if c.params["channel"] == UNINVITED]
    assert len(attempts) == 1
    [to_ops] = texts(slack, OPS)
    assert all(f"`A0001234{n}`" in to_ops for n in range(7))
    assert len(texts(slack, OWNER)) == 1 and len(texts(slack, "UOWNER002")) == 1
