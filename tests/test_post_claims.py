"""Two installations of the bot (staging beside production, a restored backup) posting in the same channels, each
with its own database: a row ID is no name for a post, since both databases have a row 1. A post whose answer was
lost is recognised only by its random claim ID and what it is about, and is looked for from the wall-clock time of
the attempt. End to end against one fake Slack, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import time_machine
from slack_sdk import WebClient
from sqlalchemy import text

from bot import cli
from bot.bootstrap import Services, build_services
from bot.services.base import MaybePosted
from bot.services.posts import LEGACY_CLAIM
from bot.services.reminders import DELIVERED, Reminder
from bot.slack import ids
from bot.slack.reissue import ReissueMessages, post_unposted_requests
from bot.slack.reminders import SlackNotifier, build_reminder_blocks
from bot.slack.summary import post_weekly_summary
from storage.db import make_engine, upgrade
from storage.models import Base
from tests.clock import MONDAY_0900_SEOUL, kst
from tests.conftest import ADMIN, MASTER_KEY, make_settings, scratch_postgres
from tests.factories import form
from tests.fake_slack import FakeSlack
from tests.slack_harness import INVITED_CHANNELS
from tests.test_reissue_posts import request_messages, submit_request
from tests.test_reissue_slack import APPROVER, APPROVER2, GROUP, REQUESTER, VENDOR

CHANNEL = "CSHOP0001"  # form()'s channel


# ---------------------------------------------------------------- a second installation's database


@pytest.fixture(scope="session")
def second_postgres_url() -> Iterator[str]:
    yield from scratch_postgres()  # fails, not skips, under CI like the first


@pytest.fixture
def empty_db_url(db_url: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """Another database of the same kind as ``db_url``, with no tables yet (migrate it to the revision wanted)."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    url = request.getfixturevalue("second_postgres_url")
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return url


@pytest.fixture
def other(empty_db_url: str) -> Iterator[Services]:
    """Installation A: production, with its own database, posting with the same Slack app."""
    engine = make_engine(empty_db_url)
    upgrade(engine)
    engine.dispose()
    built = build_services(make_settings(DATABASE_URL=empty_db_url, KEYBOT_APPROVERS="UAPPROVE1"))
    yield built
    built.engine.dispose()


def bot_client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url)


def keys_shown(fake: FakeSlack) -> list[str]:
    """The Request reissue button of each reminder in the channel: one per message posted."""
    return [
        e["value"]
        for m in fake.history(CHANNEL)
        for b in m.get("blocks", [])
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ids.REQUEST_REISSUE
    ]


def older_versions_reminder(fake: FakeSlack, vendor_id: str, milestone: int, row_id: int) -> None:
    """What a version before claim IDs posted: the same blocks, metadata naming only the row ID."""
    reminder = Reminder(vendor_id, f"Shop {vendor_id}", 1, milestone, date(2026, 11, 28), milestone, None, CHANNEL)
    bot_client(fake).chat_postMessage(
        channel=CHANNEL,
        text=f"{vendor_id}: reminder",
        blocks=build_reminder_blocks(reminder),
        metadata={"event_type": "keybot_reminder", "event_payload": {"delivery_ids": [row_id]}},
    )


# ---------------------------------------------------------------- reminders


@pytest.mark.parametrize(
    ("a_key", "a_version"),
    [
        ("A00077777", "this version"),
        ("A00012345", "this version"),  # staging holds a copy of production's keys
        ("A00077777", "an older version"),
    ],
    ids=["another key", "the same key and milestone", "another key, an older version"],
)
def test_another_installations_reminder_with_the_same_row_id_never_stands_in_for_ours(slack, other, a_key, a_version):
    b = slack.services  # installation B: staging, the same Slack app and channel
    notifier = SlackNotifier(slack.app.client)
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:  # D-14 of both keys
        b.keys.register(ADMIN, form("A00012345"))
        other.keys.register(ADMIN, form(a_key))
        slack.fake.fail_next("chat.postMessage", status=500)  # B's first post: Slack's answer is lost
        first = b.reminders.sweep(notifier)
        assert (first.delivered, len(first.failed)) == (0, 1)
        traveller.shift(timedelta(minutes=1))
        if a_version == "this version":
            assert other.reminders.sweep(SlackNotifier(slack.app.client)).delivered == 1  # A's row 1
        else:
            older_versions_reminder(slack.fake, a_key, 14, row_id=1)
        [a_message] = slack.fake.history(CHANNEL)
        traveller.shift(timedelta(minutes=4))
        second = b.reminders.sweep(notifier)
        traveller.shift(timedelta(minutes=5))
        third = b.reminders.sweep(notifier)
    assert (second.found, second.delivered, third.found, third.delivered) == (0, 1, 0, 0)
    assert sorted(keys_shown(slack.fake)) == sorted([a_key, "A00012345"])  # B's reminder reached the team, once
    [row] = b.reminders.deliveries()
    assert row.id == 1 and row.status == DELIVERED
    assert row.message_ts != a_message["ts"]
    assert row.message_ts == slack.fake.history(CHANNEL)[-1]["ts"]


@pytest.mark.parametrize(
    ("vendor_id", "milestone", "found"),
    [("A00012345", 14, True), ("A00077777", 14, False), ("A00012345", 7, False)],
    ids=["its own", "another key's", "another milestone's"],
)
def test_an_older_versions_message_counts_only_for_a_row_claimed_before_and_only_about_the_same_key(
    slack, vendor_id, milestone, found
):
    """A row in flight when the bot was upgraded (migration 0010 gives it a ``legacy…`` claim ID): its lost post
    names only row ID 1; a message naming row ID 1 counts when it shows the same key and milestone."""
    b = slack.services
    notifier = SlackNotifier(slack.app.client)
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        b.keys.register(ADMIN, form("A00012345"))
        slack.fake.fail_next("chat.postMessage", status=500)
        b.reminders.sweep(notifier)
        with b.engine.begin() as connection:  # what migration 0010 does to a row claimed before it
            connection.execute(text("UPDATE reminder_deliveries SET claim_id = :c"), {"c": LEGACY_CLAIM + "0" * 26})
        traveller.shift(timedelta(minutes=1))
        older_versions_reminder(slack.fake, vendor_id, milestone, row_id=1)
        traveller.shift(timedelta(minutes=4))
        second = b.reminders.sweep(notifier)
    assert (second.found, second.delivered) == ((1, 0) if found else (0, 1))
    assert len(slack.fake.history(CHANNEL)) == (1 if found else 2)
    [row] = b.reminders.deliveries()
    assert (row.status, row.message_ts) == (DELIVERED, slack.fake.history(CHANNEL)[-1]["ts"])


# ---------------------------------------------------------------- the weekly summary, reissue requests


def test_another_installations_weekly_summary_never_stands_in_for_ours(db_url, other):
    b = build_services(make_settings(DATABASE_URL=db_url))
    with FakeSlack(invited=INVITED_CHANNELS) as fake, time_machine.travel(MONDAY_0900_SEOUL, tick=False) as clock:
        client = bot_client(fake)
        b.keys.register(ADMIN, form("A00012345"))
        other.keys.register(ADMIN, form("A00077777"))
        fake.fail_next("chat.postMessage", status=500)  # B's summary: the answer is lost, nothing posted
        with pytest.raises(MaybePosted):
            post_weekly_summary(b, client)
        clock.shift(timedelta(minutes=1))
        assert post_weekly_summary(other, client)  # A's summary, its scheduled_posts row 1
        clock.shift(timedelta(minutes=4))
        assert post_weekly_summary(b, client)
        channel = b.ctx.settings.channel
        assert channel is not None
        summaries = [m for m in fake.history(channel) if m["text"].startswith("Weekly key summary")]
    b.engine.dispose()
    assert len(summaries) == 2  # A's and B's: B's was not lost
    [a_row] = other.overview.posts.rows("weekly_summary")
    [b_row] = b.overview.posts.rows("weekly_summary")
    assert (a_row.id, b_row.id) == (1, 1)
    assert [a_row.message_ts, b_row.message_ts] == [m["ts"] for m in summaries]


@pytest.fixture
def b_settings(db_url):
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=f"{APPROVER},{APPROVER2},{GROUP}")


def test_another_installations_request_message_never_stands_in_for_ours(b_settings, fake_slack, other):
    from tests.slack_harness import SlackHarness
    from tests.test_reissue_slack import IN_WINDOW

    b = build_services(b_settings)
    with time_machine.travel(IN_WINDOW, tick=True), SlackHarness(b, fake_slack) as slack:
        b.keys.register(ADMIN, form(VENDOR))
        other.keys.register(ADMIN, form(VENDOR))
        fake_slack.fail_next("chat.postMessage", status=500)  # B's request: the answer is lost, nothing posted
        submit_request(slack)
        slack.fake.wait_for("chat.postMessage", 1)  # the requester is told it is not posted yet
        a_request = other.reissues.request(REQUESTER, VENDOR, "expires tomorrow")  # A's request #1
        ReissueMessages(other, slack.client).post(a_request)
        assert post_unposted_requests(b, slack.client) == 1
        messages = request_messages(slack)
    mine, theirs = b.reissues.get(1), other.reissues.get(1)
    b.engine.dispose()
    assert len(messages) == 2  # A's and B's: approvers see B's request
    assert mine.message_ts is not None and mine.message_ts != theirs.message_ts
    assert {m["ts"] for m in messages} == {mine.message_ts, theirs.message_ts}


# ---------------------------------------------------------------- the wall clock


def run_cli(monkeypatch, settings, fake: FakeSlack, *args: str) -> tuple[int, str]:
    for name, value in {
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "DATABASE_URL": settings.database_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": fake.base_url,
        "KEYBOT_TIMEZONE": "Asia/Seoul",
    }.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    return cli.main(["reminders", "run", *args], out=out), out.getvalue()


@pytest.mark.parametrize(
    "as_of", ["2026-11-14T09:00", "2026-11-20T09:00"], ids=["D-14, 4 days ahead", "D-8, 10 days ahead"]
)
def test_reminders_run_as_of_a_later_day_finds_its_lost_post_from_the_wall_clock(
    settings, monkeypatch, tmp_path, as_of
):
    """``--as-of`` moves the sweep's clock days ahead; Slack stamps the lost post with the real time, which is where
    the next run looks for it."""
    monkeypatch.chdir(tmp_path)
    with FakeSlack(invited=INVITED_CHANNELS) as fake, time_machine.travel(kst(date(2026, 11, 10), 15), tick=True):
        seed = build_services(settings)
        seed.keys.register(ADMIN, form("A00012345"))  # expires 2026-11-28
        seed.engine.dispose()
        fake.fail_next("chat.postMessage", status=500, posted=True)  # Slack posted it; the answer was lost
        code, first = run_cli(monkeypatch, settings, fake, "--as-of", as_of)
        assert code != 0 and "1 message(s) failed" in first
        code, second = run_cli(monkeypatch, settings, fake, "--as-of", as_of)
        history = [c.params for c in fake.calls_to("conversations.history")]
    assert code == 0 and "1 found already posted" in second
    assert len(fake.calls_to("chat.postMessage")) == 1  # the lost one and no other
    [message] = fake.history(CHANNEL)
    [lookup] = history
    assert float(lookup["oldest"]) <= float(message["ts"])  # looked from the real time of the attempt


# ---------------------------------------------------------------- migration 0010: claims in flight


def test_the_upgrade_gives_every_claim_a_distinct_legacy_id_and_a_wall_clock_time(empty_db_url):
    engine = make_engine(empty_db_url)
    upgrade(engine, "0009")
    claimed = "2026-11-14 00:00:00"
    with engine.begin() as connection:
        for n, status in enumerate(["failed", "claimed", "delivered"], start=1):
            connection.execute(
                text(
                    "INSERT INTO reminder_deliveries (vendor_id, generation, milestone, claimed_at, claimed_by, "
                    "attempts, status, unsure_since) VALUES (:v, 1, 14, :at, 'old:1', 1, :s, :at)"
                ),
                {"v": f"A0000000{n}", "at": claimed, "s": status},
            )
        connection.execute(
            text(
                "INSERT INTO scheduled_posts (kind, day, status, claimed_at, claimed_by, attempts) "
                "VALUES ('weekly_summary', '2026-11-30', 'failed', :at, 'old:1', 1)"
            ),
            {"at": claimed},
        )
        connection.execute(
            text(
                "INSERT INTO reissue_requests (vendor_id, generation, path, reason, emergency, requested_by, "
                "requested_at, expires_at, status, post_status, post_claimed_at, post_claimed_by, post_attempts) "
                "VALUES ('A00000001', 1, 'reissue', 'r', false, 'U1', :at, :at, 'pending', 'failed', :at, 'old', 1)"
            ),
            {"at": claimed},
        )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT claim_id, claimed_wall_at FROM reminder_deliveries")).all()
        rows += connection.execute(text("SELECT claim_id, claimed_wall_at FROM scheduled_posts")).all()
        rows += connection.execute(text("SELECT post_claim_id, post_claimed_wall_at FROM reissue_requests")).all()
    engine.dispose()
    assert len(rows) == 5
    assert all(claim.startswith(LEGACY_CLAIM) and len(claim) == 32 for claim, _ in rows)
    assert len({claim for claim, _ in rows}) == 5  # each its own: no other row (or database) has it
    assert all(str(wall).startswith("2026-11-14 00:00:00") for _, wall in rows)
