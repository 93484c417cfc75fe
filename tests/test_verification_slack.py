"""Verifying keys through Slack, end to end: signed requests into the real Bolt/WSGI stack, FakeSlack and
FakeCoupang out, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.models.blocks import SectionBlock
from sqlalchemy import select

from bot.bootstrap import Services, build_services
from bot.config import Settings
from bot.coupang import CoupangClient
from bot.rules import Integration, LinkingInfo, Msg
from bot.scheduler import build_scheduler
from bot.services.verification import VerifyOutcome, VerifyResult, probe_slot
from bot.slack import ids
from bot.slack.verify import (
    build_deadline_blocks,
    build_result_blocks,
    post_deadline_checks,
    post_probe_changes,
)
from storage.models import Key
from tests.clock import START, Clock
from tests.conftest import ADMIN, USER
from tests.factories import SECRET_MARK, access_key, secret_key
from tests.fake_coupang import FakeCoupang
from tests.fake_slack import FakeSlack
from tests.slack_harness import INVITED_CHANNELS, SlackHarness
from tests.test_verification import VENDOR, NoSleep, build, register

KEY_CHANNEL = "CSHOP0001"


@pytest.fixture
def gateway(clock: Clock) -> Iterator[FakeCoupang]:
    with FakeCoupang(clock=clock.now) as fake:
        yield fake


def _harness(settings: Settings, clock: Clock, gateway: FakeCoupang) -> Iterator[SlackHarness]:
    services = build(settings, clock, gateway)
    with FakeSlack(invited=INVITED_CHANNELS) as fake, SlackHarness(services, fake) as harness:
        yield harness
    services.engine.dispose()


@pytest.fixture
def slack(settings: Settings, clock: Clock, gateway: FakeCoupang) -> Iterator[SlackHarness]:
    yield from _harness(settings, clock, gateway)


@pytest.fixture
def daily(settings: Settings, clock: Clock, gateway: FakeCoupang) -> Iterator[SlackHarness]:
    yield from _harness(replace(settings, verify_daily=True), clock, gateway)


def wait_for_responses(slack: SlackHarness, count: int = 1) -> list[dict]:
    slack.fake.wait_for("response_url", count)
    return slack.responses()


def text_of(params: dict) -> str:
    return json.dumps(params, ensure_ascii=False)


def set_deadline(services: Services, deadline) -> None:
    with services.ctx.transaction() as session:
        session.scalars(select(Key).where(Key.vendor_id == VENDOR)).one().access_deadline = deadline


def assert_no_secret(slack: SlackHarness, caplog: pytest.LogCaptureFixture) -> None:
    traffic = slack.fake.all_text()
    assert SECRET_MARK not in traffic and secret_key(VENDOR) not in traffic
    assert access_key(VENDOR) not in traffic
    assert SECRET_MARK not in caplog.text


# ---------------------------------------------------------------- the slash command


def test_slash_verify_acks_at_once_then_answers_with_the_result(
    slack: SlackHarness, gateway: FakeCoupang, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register(slack.services, gateway)
    ack = slack.slash(USER, f"verify {VENDOR}")
    assert ack.status == 200
    assert f"Checking '{VENDOR}' with Coupang" in ack.text_of()
    [answer] = wait_for_responses(slack)
    assert answer["response_type"] == "ephemeral"
    assert ":white_check_mark:" in answer["text"] and "works" in answer["text"]
    assert "The key works" in text_of(answer["blocks"])
    assert len(gateway.requests) == 1
    assert slack.services.keys.status(VENDOR).verify_outcome == "works"
    assert_no_secret(slack, caplog)


def test_a_slow_coupang_answer_is_still_recorded_and_shown(
    settings: Settings, clock: Clock, gateway: FakeCoupang
) -> None:
    """Coupang may take seconds to answer; that wait must not use up the 2 s database budget of a Slack request,
    or the result is refused as "the database is busy" after the check was made."""
    services = build_services(settings, clock=clock, coupang=CoupangClient(gateway.url, timeout=5.0, sleep=NoSleep()))
    with FakeSlack(invited=INVITED_CHANNELS) as fake, SlackHarness(services, fake) as slack:
        register(services, gateway)
        gateway.slow_next(1, 2.5)
        slack.slash(USER, f"verify {VENDOR}")
        [answer] = wait_for_responses(slack)
        assert ":white_check_mark:" in answer["text"] and "busy" not in answer["text"]
        assert services.keys.status(VENDOR).verify_outcome == "works"
    services.engine.dispose()


def test_slash_verify_of_a_refused_key_says_what_to_fix(
    slack: SlackHarness, gateway: FakeCoupang, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register(slack.services, gateway)
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR, allowed_ips=("203.0.113.7",))
    slack.slash(USER, f"verify {VENDOR}")
    [answer] = wait_for_responses(slack)
    assert "IP is not allowed" in answer["text"]
    assert "public egress address" in text_of(answer["blocks"]) and "127.0.0.1" in text_of(answer["blocks"])
    assert_no_secret(slack, caplog)


def test_slash_verify_without_or_with_an_unknown_vendor_id(slack: SlackHarness, gateway: FakeCoupang) -> None:
    ack = slack.slash(USER, "verify")
    assert "Usage: `/coupang-key verify VENDOR_ID`" in ack.text_of()
    slack.slash(USER, "verify A00000009")
    [answer] = wait_for_responses(slack)
    assert ":warning:" in answer["text"] and "No key is registered for A00000009" in answer["text"]
    ack = slack.slash(USER, "verify <!channel>")
    assert "<!channel>" not in ack.text_of() and "&lt;!channel&gt;" in ack.text_of()
    assert gateway.requests == []


def test_slash_verify_of_an_integrator_key_says_it_cannot_be_checked_from_the_bot(
    slack: SlackHarness, gateway: FakeCoupang
) -> None:
    integrator = dict(integration="integrator", integrator_name="Sellmate", company_name="", company_url="")
    register(slack.services, gateway, ip_addresses="", **integrator)
    slack.slash(USER, f"verify {VENDOR}")
    [answer] = wait_for_responses(slack)
    assert "cannot be checked from the bot (it is called from the integrator's IPs)" in answer["text"]
    assert ":x:" not in answer["text"] and "refused" not in text_of(answer)
    assert gateway.requests == []


def test_verify_while_coupang_blocks_the_bot_says_wait_not_bad_key(slack: SlackHarness, gateway: FakeCoupang) -> None:
    register(slack.services, gateway)
    gateway.block()
    slack.click(USER, ids.VERIFY_KEY, VENDOR)
    [answer] = wait_for_responses(slack)
    assert "blocking the bot for a while (wait)" in answer["text"]
    assert "Access Denied" in text_of(answer["blocks"]) and "says nothing about the key" in text_of(answer["blocks"])
    assert "invalid" not in text_of(answer) and len(gateway.requests) == 1


def test_verify_of_a_vendor_id_coupang_does_not_find_says_wrong_vendor_id_or_path(
    slack: SlackHarness, gateway: FakeCoupang
) -> None:
    register(slack.services, gateway)
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), "A99999999")
    slack.slash(USER, f"verify {VENDOR}")
    [answer] = wait_for_responses(slack)
    assert "wrong vendor ID or path" in answer["text"] and "404" in text_of(answer["blocks"])


def test_near_coupangs_limit_the_answer_says_it_works_and_that_the_bot_backs_off(
    slack: SlackHarness, gateway: FakeCoupang, clock: Clock
) -> None:
    register(slack.services, gateway)
    gateway.seller_traffic(VENDOR, 8)  # the seller's own systems: the bot's call is the 9th this second
    slack.slash(USER, f"verify {VENDOR}")
    [first] = wait_for_responses(slack)
    assert ":white_check_mark:" in first["text"] and "near the call limit: the bot backs off" in first["text"]
    assert "no further calls to Coupang for A00012345 until 10:10 KST" in text_of(first["blocks"])

    clock.advance(minutes=2)
    slack.slash(USER, f"verify {VENDOR}")
    second = wait_for_responses(slack, 2)[-1]
    assert "No new call to Coupang for A00012345 until 10:10 KST" in text_of(second["blocks"])
    assert "no new call to Coupang: the bot is backing off" in text_of(second["blocks"])
    assert "at most one check per vendor ID every 10 seconds" not in text_of(second["blocks"])
    assert len(gateway.requests) == 1


# ---------------------------------------------------------------- the Verify button


def test_a_burst_of_ten_clicks_makes_one_gateway_request(slack: SlackHarness, gateway: FakeCoupang) -> None:
    register(slack.services, gateway)
    gateway.slow_next(1, seconds=0.2)  # the first check is still running while the others click
    for _ in range(10):
        assert slack.click(USER, ids.VERIFY_KEY, VENDOR).status == 200
    answers = wait_for_responses(slack, 10)
    assert len(answers) == 10
    assert len(gateway.requests) <= 2  # one check (its slow first attempt may be retried once)
    assert all(a["response_type"] == "ephemeral" and a["replace_original"] is False for a in answers)
    assert sum("works" in a["text"] for a in answers) >= 1
    repeated = [a for a in answers if "at most one check per vendor ID every 10 seconds" in text_of(a)]
    assert len(repeated) == 9


def test_a_click_in_app_home_answers_by_direct_message(slack: SlackHarness, gateway: FakeCoupang) -> None:
    register(slack.services, gateway)
    slack.click(USER, ids.VERIFY_KEY, VENDOR, container="home")
    [message] = slack.fake.wait_for("chat.postMessage")
    assert message.params["channel"] == USER and "works" in message.params["text"]


def test_propagation_through_slack_not_active_yet_then_broken(
    slack: SlackHarness, gateway: FakeCoupang, clock: Clock
) -> None:
    register(slack.services, gateway)
    gateway.add_key(access_key(VENDOR), "SomeoneElsesSecretKey000", VENDOR)
    set_deadline(slack.services, START + timedelta(minutes=30))
    slack.click(USER, ids.VERIFY_KEY, VENDOR)
    [early] = wait_for_responses(slack)
    assert "is not active yet" in early["text"] and "10:30 KST" in text_of(early["blocks"])
    clock.advance(minutes=31)
    slack.click(USER, ids.VERIFY_KEY, VENDOR)
    late = wait_for_responses(slack, 2)[1]
    assert "invalid or expired key" in late["text"]


# ---------------------------------------------------------------- scheduled checks


def test_post_deadline_check_posts_once_in_the_keys_channel_with_what_to_check(
    slack: SlackHarness, gateway: FakeCoupang, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register(slack.services, gateway, label="<!channel> Shop & Co")
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR, allowed_ips=("203.0.113.7",))
    set_deadline(slack.services, START + timedelta(minutes=30))
    assert post_deadline_checks(slack.services, slack.client) == 0
    clock.advance(minutes=31)
    assert post_deadline_checks(slack.services, slack.client) == 1
    clock.advance(minutes=5)
    assert post_deadline_checks(slack.services, slack.client) == 0
    [post] = slack.fake.calls_to("chat.postMessage")
    assert post.params["channel"] == KEY_CHANNEL
    body = text_of(post.params)
    assert "still fails after its activation deadline" in body
    assert "IP list in WING contains the bot's public egress address" in body
    assert "vendor ID" in body and "copied whole" in body
    assert "<!channel>" not in body and "&lt;!channel&gt; Shop &amp; Co" in body
    assert len(gateway.requests) == 1
    assert_no_secret(slack, caplog)


def test_post_deadline_check_of_a_working_key(slack: SlackHarness, gateway: FakeCoupang, clock: Clock) -> None:
    register(slack.services, gateway, channel_id="")
    set_deadline(slack.services, START - timedelta(minutes=1))
    assert post_deadline_checks(slack.services, slack.client) == 1
    [post] = slack.fake.calls_to("chat.postMessage")
    assert post.params["channel"] == "CREMIND01"  # KEYBOT_CHANNEL when the key has none
    assert "works with Coupang now" in text_of(post.params) and "What to check" not in text_of(post.params)


def test_daily_probe_posts_only_changes(
    daily: SlackHarness, gateway: FakeCoupang, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register(daily.services, gateway)
    clock.at = probe_slot(VENDOR, START, daily.services.ctx)

    def one_day() -> int:
        posted = 0
        for _ in range(24 * 12):
            posted += post_probe_changes(daily.services, daily.client)
            clock.advance(minutes=5)
        return posted

    assert one_day() == 0  # works, as before: silence
    gateway.add_key(access_key(VENDOR), "SomeoneElsesSecretKey000", VENDOR)
    assert one_day() == 1
    assert one_day() == 0
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR)
    assert one_day() == 1
    stopped, again = (text_of(c.params) for c in daily.fake.calls_to("chat.postMessage"))
    assert "stopped working" in stopped and "What to check" in stopped
    assert "works again" in again
    assert len(gateway.requests) == 4
    assert_no_secret(daily, caplog)


# ---------------------------------------------------------------- views


def test_result_blocks_escape_labels_and_coupang_text(clock: Clock) -> None:
    result = VerifyResult(
        vendor_id=VENDOR,
        label="<@U123> & <!here>",
        outcome=VerifyOutcome.WORKS,
        detail=Msg("Coupang said <b>"),
        checked_at=START,
        fresh=True,
        channel_id=KEY_CHANNEL,
    )
    for blocks in (
        build_result_blocks("en", result, ZoneInfo("Asia/Seoul")),
        build_deadline_blocks("en", result, ZoneInfo("Asia/Seoul")),
    ):
        text = text_of([b.to_dict() for b in blocks])
        assert "<@U123>" not in text and "<!here>" not in text and "&lt;b&gt;" in text
        assert "2026-11-27 10:00 KST" in text
        assert isinstance(blocks[0], SectionBlock)


def test_after_a_linking_edit_the_bot_verifies_by_itself_once_the_deadline_passes(
    slack: SlackHarness, gateway: FakeCoupang, clock: Clock
) -> None:
    register(slack.services, gateway)
    linking = LinkingInfo(
        Integration.SELF,
        company_name="Example Co",
        company_url="https://shop.example.com",
        ip_addresses=("211.45.10.9",),
    )
    slack.services.keys.edit_linking(ADMIN, VENDOR, linking)  # works within 30 minutes
    clock.advance(minutes=29)
    assert post_deadline_checks(slack.services, slack.client) == 0
    clock.advance(minutes=2)
    assert post_deadline_checks(slack.services, slack.client) == 1
    assert post_deadline_checks(slack.services, slack.client) == 0
    [post] = slack.fake.calls_to("chat.postMessage")
    assert post.params["channel"] == KEY_CHANNEL
    assert "works with Coupang now" in text_of(post.params)
    assert slack.services.keys.status(VENDOR).verify_outcome == "works"


@pytest.mark.parametrize("verify_daily", [False, True])
def test_the_scheduler_runs_the_checks_and_the_probe_only_when_enabled(slack: SlackHarness, verify_daily: bool) -> None:
    slack.services.ctx.settings = replace(slack.services.ctx.settings, verify_daily=verify_daily)
    scheduler = build_scheduler(slack.services, slack.app)
    jobs = {job.id for job in scheduler.get_jobs()}
    assert "verify_after_deadline" in jobs
    assert ("verify_daily_probe" in jobs) is verify_daily
