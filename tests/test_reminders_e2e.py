"""Reminders end to end: the sweep posting through the real Web API client to a loopback FakeSlack,
the scheduler inside ``serve``, racing sweeps, Slack failures, and ``coupang-keybot reminders run``.
Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from slack_sdk import WebClient

from bot import cli, rules
from bot.bootstrap import build_services
from bot.scheduler import build_scheduler
from bot.services.reminders import DELIVERED, Reminder, latest_due_milestone
from bot.slack import ids
from bot.slack.posting import own_identity
from bot.slack.reminders import MAX_BLOCKS, SlackNotifier, build_digest_blocks
from tests.clock import SEOUL, kst
from tests.conftest import ADMIN, MASTER_KEY, make_settings
from tests.factories import SECRET_MARK, form, secret_key
from tests.fake_slack import FakeSlack
from tests.slack_harness import INVITED_CHANNELS, SlackHarness, fast_retry_handlers


@pytest.fixture
def settings(db_url):
    """Someone besides the people clicking may approve, so a reissue request can be made."""
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS="UAPPROVE1")


def posts(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.params for c in fake.calls_to("chat.postMessage")]


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def milestone_of(message: dict[str, Any]) -> str:
    context = [b for b in message["blocks"] if b["type"] == "context"][0]
    return context["elements"][0]["text"].split()[3]  # "Coupang key reminder D-14 · generation 1"


# ---------------------------------------------------------------- the message a team sees


def test_a_reminder_shows_what_the_team_needs_and_never_a_secret(slack):
    services = slack.services
    with time_machine.travel(kst(date(2026, 11, 14), 9, 1), tick=False):
        services.keys.register(ADMIN, form("A00012345", label="<!channel> & <@U999> shop", issued_on="2026-06-01"))
        report = services.reminders.sweep(SlackNotifier(slack.app.client))
    assert report.delivered == 1
    [message] = posts(slack.fake)
    assert message["channel"] == "CSHOP0001"
    body = str(message["blocks"]) + message["text"]
    assert "The reissue button in WING is active from today" in body
    assert "A00012345" in body and "2026-11-28" in body and "14 days left" in body
    assert "<@UOWNER001>" in body
    assert "&lt;!channel&gt; &amp; &lt;@U999&gt; shop" in body and "<!channel>" not in body and "<@U999>" not in body
    [button] = buttons(message)
    assert (button["action_id"], button["value"]) == (ids.REQUEST_REISSUE, "A00012345")
    assert SECRET_MARK not in slack.fake.all_text() and secret_key("A00012345") not in slack.fake.all_text()
    [row] = services.reminders.deliveries()
    assert (row.status, row.message_ts, row.channel_id) == (
        DELIVERED,
        slack.fake.calls_to("chat.postMessage")[0].response["ts"],
        "CSHOP0001",
    )


def test_a_reminder_after_expiry_says_issue_with_the_linking_info_again(slack):
    with time_machine.travel(kst(date(2026, 11, 30), 9, 1), tick=False):  # expired on 2026-11-28
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        assert slack.services.reminders.sweep(SlackNotifier(slack.app.client)).delivered == 1
    [message] = posts(slack.fake)
    body = str(message["blocks"]) + message["text"]
    assert "Expired 2 days ago" in body and "Issue (발급)" in body and "linking info" in body
    assert "24 hours" in body and "until it is reissued" not in body


def test_a_new_app_and_services_on_the_same_database_post_nothing_again(slack, settings):
    with time_machine.travel(kst(date(2026, 11, 21), 9), tick=False):  # D-7
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        restarted = build_services(settings)
        with SlackHarness(restarted, slack.fake) as again:
            assert again.services.reminders.sweep(SlackNotifier(again.app.client)).delivered == 0
        restarted.engine.dispose()
    assert [milestone_of(m) for m in posts(slack.fake)] == ["D-7"]


def test_the_scheduler_sweeps_once_at_start_up(slack):
    with time_machine.travel(kst(date(2026, 11, 27), 10), tick=True):  # D-1
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        scheduler = build_scheduler(slack.services, slack.app)
        assert scheduler.get_job("reminders") is not None
        scheduler.start()
        try:  # the reminder, and the day's audit chain head (KEYBOT_CHANNEL), in either order
            calls = slack.fake.wait_for("chat.postMessage", 2)
        finally:
            scheduler.shutdown(wait=True)
    [message] = [c for c in calls if c.params["channel"] == "CSHOP0001"]
    assert "Expires tomorrow" in str(message.params["blocks"])


# ---------------------------------------------------------------- Slack having a bad day


def history_calls(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.params for c in fake.calls_to("conversations.history")]


def test_slack_answering_500_three_times_delays_the_reminder_which_then_arrives_once(slack):
    notifier = SlackNotifier(slack.app.client)
    slack.fake.fail_next("chat.postMessage", status=500, times=3)
    with time_machine.travel(kst(date(2026, 11, 28), 9), tick=False) as traveller:  # D-0
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        for _ in range(5):
            slack.services.reminders.sweep(notifier)
            traveller.shift(timedelta(minutes=5))
    assert len(slack.fake.failures) == 3  # one attempt per sweep: a 500 may have posted, so never retried blindly
    [message] = posts(slack.fake)
    assert "Expires today: API calls will fail" in str(message["blocks"])
    assert len(history_calls(slack.fake)) == 3  # each retry first looked for the lost one
    [row] = [r for r in slack.services.reminders.deliveries() if r.milestone == 0]  # D-14…D-1: skipped
    assert (row.status, row.attempts) == (DELIVERED, 4)


def test_slack_rate_limiting_four_times_delays_the_reminder_which_then_arrives_once(slack):
    # 429 means Slack did nothing: the client waits Retry-After and retries, and no history is read
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=0, times=4)
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        first = slack.services.reminders.sweep(SlackNotifier(slack.app.client))  # 1 + 3 retries: all 429
        assert first.delivered == 0 and posts(slack.fake) == []
        traveller.shift(timedelta(minutes=5))
        second = slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        traveller.shift(timedelta(minutes=5))
        third = slack.services.reminders.sweep(SlackNotifier(slack.app.client))
    assert (second.delivered, third.delivered) == (1, 0)
    assert len(posts(slack.fake)) == 1 and len(slack.fake.failures) == 4
    assert history_calls(slack.fake) == []


@pytest.mark.parametrize("status", [None, 500], ids=["timeout or dropped connection", "5xx"])
def test_a_reminder_slack_posted_while_its_answer_was_lost_is_not_posted_again(slack, status):
    slack.fake.fail_next("chat.postMessage", status=status, posted=True)
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        first = slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        assert first.delivered == 0 and len(first.failed) == 1
        traveller.shift(timedelta(minutes=5))
        second = slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        traveller.shift(timedelta(minutes=5))
        third = slack.services.reminders.sweep(SlackNotifier(slack.app.client))
    [message] = slack.fake.history("CSHOP0001")
    assert len(posts(slack.fake)) == 1
    assert (second.found, second.delivered, third.found, third.delivered) == (1, 0, 0, 0)
    [row] = slack.services.reminders.deliveries()
    assert (row.status, row.message_ts) == (DELIVERED, message["ts"])
    [named] = message["metadata"]["event_payload"]["reminders"]
    assert named == {"claim": row.claim_id, "vendor_id": "A00012345", "generation": 1, "milestone": 14}
    [lookup] = history_calls(slack.fake)
    assert lookup["channel"] == "CSHOP0001" and lookup["include_all_metadata"] in ("1", "true", True)
    found = [e for e in slack.services.audit.entries() if e.action == "reminder.posted"]
    assert len(found) == 1 and found[0].details["found_in_history"] is True


OTHER_APP_TOKEN = "xoxb-another-app"


@pytest.mark.parametrize("slack_posted", [True, False], ids=["slack posted", "slack did not post"])
def test_another_apps_message_with_our_metadata_never_stands_in_for_a_reminder(slack, slack_posted):
    """Another app copies a reminder's metadata into the channel: only the bot's own lost post counts."""
    own_identity.cache_clear()
    slack.fake.add_app(OTHER_APP_TOKEN, app_id="A0OTHER", bot_id="B0OTHER", user_id="U0OTHER")
    other = WebClient(token=OTHER_APP_TOKEN, base_url=slack.fake.base_url)
    slack.fake.fail_next("chat.postMessage", status=500, posted=slack_posted)
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        [row] = slack.services.reminders.deliveries()
        traveller.shift(timedelta(minutes=1))
        named = {"claim": row.claim_id, "vendor_id": "A00012345", "generation": 1, "milestone": 14}
        metadata = {"event_type": "keybot_reminder", "event_payload": {"reminders": [named]}}
        other.chat_postMessage(channel="CSHOP0001", text="A00012345 expires today", metadata=metadata)
        traveller.shift(timedelta(minutes=4))
        second = slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        traveller.shift(timedelta(minutes=5))
        slack.services.reminders.sweep(SlackNotifier(slack.app.client))
    ours = [m for m in slack.fake.history("CSHOP0001") if m["bot_id"] == "B0BOT"]
    assert len(ours) == 1 and buttons(ours[0])[0]["value"] == "A00012345"  # the reminder reached the team once
    assert (second.found, second.delivered) == ((1, 0) if slack_posted else (0, 1))
    [row] = slack.services.reminders.deliveries()
    assert (row.status, row.message_ts) == (DELIVERED, ours[0]["ts"])
    assert len(slack.fake.calls_to("auth.test")) == 1  # the bot's identity is asked once, then remembered


@pytest.mark.parametrize("slack_posted", [True, False], ids=["slack posted", "slack did not post"])
def test_a_half_failed_split_digest_posts_each_part_once(slack, slack_posted):
    notifier = SlackNotifier(slack.app.client, max_blocks=4)  # a small message size: 25 keys a part
    slack.fake.fail_next("chat.postMessage", status=500, posted=slack_posted, after=1)  # the second part
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        for n in range(30):
            slack.services.keys.register(ADMIN, form(f"A{n:08d}", issued_on="2026-06-01"))
        first = slack.services.reminders.sweep(notifier)
        assert [len(p.reminders) for p in first.posts] == [25] and [len(p.reminders) for p in first.failed] == [5]
        traveller.shift(timedelta(minutes=5))
        slack.services.reminders.sweep(notifier)
        traveller.shift(timedelta(minutes=5))
        slack.services.reminders.sweep(notifier)
    shown = [b["value"] for m in slack.fake.history("CSHOP0001") for b in buttons(m)]
    assert sorted(shown) == [f"A{n:08d}" for n in range(30)]  # every key once: none lost, none twice
    rows = slack.services.reminders.deliveries()
    assert len(rows) == 30 and {r.status for r in rows} == {DELIVERED}
    assert len({r.message_ts for r in rows}) == (2 if slack_posted else 6)  # the rest come as 5 single posts


class Killed(BaseException):
    """kill -9: the sweep stops where it is, nothing after this line runs (not even `except Exception`)."""


class DyingNotifier(SlackNotifier):
    def __init__(self, client: WebClient, *, after_posting: bool):
        super().__init__(client)
        self.after_posting = after_posting

    def post(self, channel: str, reminders: Sequence[Reminder]) -> str:
        if self.after_posting:
            super().post(channel, reminders)
        raise Killed


@pytest.mark.parametrize("after_posting", [True, False], ids=["killed after slack posted", "killed before"])
def test_a_sweep_killed_mid_post_is_finished_by_another_process_without_a_duplicate(slack, settings, after_posting):
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        slack.services.keys.register(ADMIN, form("A00012346", issued_on="2026-06-01"))
        with pytest.raises(Killed):
            slack.services.reminders.sweep(DyingNotifier(slack.app.client, after_posting=after_posting))
        other = build_services(settings)
        traveller.shift(timedelta(minutes=5))
        fresh = other.reminders.sweep(SlackNotifier(slack.app.client))  # the dead claim is not stale yet
        traveller.shift(timedelta(minutes=6))
        late = other.reminders.sweep(SlackNotifier(slack.app.client))
        other.engine.dispose()
    sent = sorted(buttons(m)[0]["value"] for m in slack.fake.history("CSHOP0001"))
    assert sent == ["A00012345", "A00012346"]
    # the dead sweep's claims wait out the claim timeout; then the one in flight is found, the other posted
    assert (fresh.delivered, late.found, late.delivered) == ((0, 1, 1) if after_posting else (0, 0, 2))
    assert {r.status for r in slack.services.reminders.deliveries()} == {DELIVERED}


# ---------------------------------------------------------------- several instances


def test_two_sweeps_racing_post_each_reminder_once(settings):
    """Two processes (threads with their own engine and client) sweep at the same instant, day after day."""
    keys = {f"A0000{n:04d}": date(2026, 11, 10) + timedelta(days=n) for n in range(12)}
    with FakeSlack(invited=(*INVITED_CHANNELS, *(f"CRACE{n:04d}" for n in range(len(keys))))) as fake:
        seed = build_services(settings)
        with time_machine.travel(kst(date(2026, 11, 1), 8), tick=False):
            for n, (vendor_id, expires) in enumerate(keys.items()):
                seed.keys.register(
                    ADMIN,
                    form(vendor_id, issued_on=None, expires_on=expires.isoformat(), channel_id=f"CRACE{n:04d}"),
                )
        seed.engine.dispose()
        instances = [build_services(settings) for _ in range(2)]
        notifiers = [
            SlackNotifier(WebClient(token="xoxb-test", base_url=fake.base_url, retry_handlers=fast_retry_handlers()))
            for _ in instances
        ]
        errors: list[BaseException] = []
        expected: set[tuple[str, str]] = set()
        day = date(2026, 11, 1)
        while day <= date(2026, 11, 25):
            now = kst(day, 9, 0)
            for vendor_id, expires in keys.items():
                m = latest_due_milestone(expires, now, (14, 7, 1, 0), time(9), SEOUL)
                if m is not None:
                    expected.add((vendor_id, f"D-{m}" if m >= 0 else f"D+{-m}"))
            barrier = threading.Barrier(len(instances))

            def sweep(i: int, now: datetime = now, barrier: threading.Barrier = barrier) -> None:
                try:
                    barrier.wait()
                    instances[i].reminders.sweep(notifiers[i], now=now)
                except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                    errors.append(exc)

            threads = [threading.Thread(target=sweep, args=(i,)) for i in range(len(instances))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            day += timedelta(days=1)
        for instance in instances:
            instance.engine.dispose()
        assert errors == []
        sent = [(buttons(m)[0]["value"], milestone_of(m)) for m in posts(fake)]
    assert len(sent) == len(set(sent)), "a reminder was posted twice"
    assert set(sent) == expected
    assert len(expected) > 60  # the race ran many times: every key, many days


# ---------------------------------------------------------------- digest


def test_one_digest_for_three_hundred_keys_fits_one_message():
    reminders = [
        Reminder(
            vendor_id=f"A{n:08d}",
            label=f"Shop number {n} & partners <b>",
            generation=1,
            milestone=7,
            expires_on=date(2026, 12, 8),
            days_left=7,
            owner_id="UOWNER001",
            channel_id="CSHOP0001",
        )
        for n in range(300)
    ]
    blocks = [b.to_dict() for b in build_digest_blocks(reminders)]  # to_dict() validates Slack's limits
    assert len(blocks) <= MAX_BLOCKS
    values = [e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert values == [r.vendor_id for r in reminders]
    text = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert all(r.vendor_id in text for r in reminders) and "<b>" not in text


def test_six_keys_due_in_one_channel_arrive_as_one_digest_with_a_button_each(slack):
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False):
        for n in range(1, 7):
            slack.services.keys.register(ADMIN, form(f"A0000000{n}", issued_on="2026-06-01"))
        slack.services.reminders.sweep(SlackNotifier(slack.app.client))
    [message] = posts(slack.fake)
    assert message["text"].startswith("6 Coupang API keys need attention")
    assert [b["value"] for b in buttons(message)] == [f"A0000000{n}" for n in range(1, 7)]
    assert len(slack.services.reminders.deliveries()) == 6
    assert SECRET_MARK not in slack.fake.all_text()
    # each button has its own action_id (Slack refuses duplicates in a block), and each still opens the form
    third = buttons(message)[2]
    assert len({b["action_id"] for b in buttons(message)}) == 6
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=True):
        assert slack.click("UOWNER001", third["action_id"], third["value"]).status == 200
        [opened] = slack.fake.wait_for("views.open")
    assert opened.params["view"]["private_metadata"] == "A00000003"


# ---------------------------------------------------------------- the command line


def test_reminders_run_as_of_posts_once_and_dry_run_records_nothing(settings, monkeypatch, tmp_path, capsys):
    with FakeSlack(invited=INVITED_CHANNELS) as fake:
        seed = build_services(settings)
        seed.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))  # expires 2026-11-28
        seed.engine.dispose()
        monkeypatch.chdir(tmp_path)
        for name, value in {
            "KEYBOT_MASTER_KEY": MASTER_KEY,
            "DATABASE_URL": settings.database_url,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_API_URL": fake.base_url,
            "KEYBOT_TIMEZONE": "Asia/Seoul",
        }.items():
            monkeypatch.setenv(name, value)

        def run(*args: str) -> tuple[int, str]:
            out = io.StringIO()
            return cli.main(["reminders", "run", *args], out=out), out.getvalue()

        code, early = run("--as-of", "2026-11-14T08:59")  # no zone: Seoul
        assert code == 0 and "0 reminder(s)" in early
        code, dry = run("--as-of", "2026-11-14T09:00", "--dry-run")
        assert code == 0 and "Would post reminder to CSHOP0001" in dry and "A00012345" in dry
        assert fake.calls_to("chat.postMessage") == []
        code, real = run("--as-of", "2026-11-14T09:00")
        assert code == 0 and "1 reminder(s) in 1 message(s) posted" in real
        code, again = run("--as-of", "2026-11-14T09:30")
        assert code == 0 and "0 reminder(s)" in again
        assert len(fake.calls_to("chat.postMessage")) == 1
        code, _ = run("--as-of", "yesterday-ish")
        assert code == 2
        err = capsys.readouterr().err
        assert "'yesterday-ish' is not an ISO-8601 time" in err
        code, _ = run("--as-of", "<" + "9" * 100_000)  # echoed bounded, as a terminal shows it
        err = capsys.readouterr().err
        assert code == 2 and "'<99" in err and "9" * (rules.QUOTE_LIMIT + 1) not in err and len(err) < 300
        for output in (early, dry, real, again):
            assert SECRET_MARK not in output
        assert SECRET_MARK not in fake.all_text()


def test_the_reminders_request_reissue_button_opens_the_request_form(slack):
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=True):
        slack.services.keys.register(ADMIN, form("A00012345", issued_on="2026-06-01"))
        slack.services.reminders.sweep(SlackNotifier(slack.app.client))
        [button] = buttons(posts(slack.fake)[0])
        response = slack.click("UOWNER001", button["action_id"], button["value"])
        assert response.status == 200
        [opened] = slack.fake.wait_for("views.open")
    assert opened.params["view"]["callback_id"] == ids.REISSUE_REQUEST_MODAL
    assert "A00012345" in str(opened.params["view"])
