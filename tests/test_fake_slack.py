"""The fake Slack Web API behaves the way the bot's end-to-end tests rely on."""

import json
import threading
import time

import pytest
from fake_slack import FakeSlack
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock):
    with FakeSlack(clock=clock) as fake:
        yield fake


def client_for(fake: FakeSlack, **kwargs) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url, **kwargs)


def test_posted_message_is_recorded_with_blocks_decoded(fake: FakeSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*key* expires soon"}}]
    client = client_for(fake)

    first = client.chat_postMessage(channel="C1", text="expires soon", blocks=blocks)
    second = client.chat_postMessage(channel="C1", text="again", blocks=json.dumps(blocks))

    assert first["channel"] == "C1"
    assert float(second["ts"]) > float(first["ts"])
    calls = fake.calls_to("chat.postMessage")
    assert [c.params["blocks"] for c in calls] == [blocks, blocks]
    assert calls[0].headers["authorization"] == "Bearer xoxb-test"
    assert "expires soon" in fake.all_text()


def test_form_encoded_methods_are_decoded(fake: FakeSlack) -> None:
    fake.set_usergroup("S123", ["U1", "U2"])
    client = client_for(fake)

    assert client.usergroups_users_list(usergroup="S123")["users"] == ["U1", "U2"]
    fake.set_user("U2", tz="America/New_York", is_bot=True)
    assert client.users_info(user="U1")["user"]["tz"] == "Asia/Seoul"
    assert client.users_info(user="U2")["user"]["tz"] == "America/New_York"
    assert fake.calls_to("usergroups.users.list")[0].params == {"usergroup": "S123"}
    assert fake.calls_to("users.info")[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_trigger_ids_are_single_use_and_expire_after_three_seconds(fake: FakeSlack, clock: ManualClock) -> None:
    client = client_for(fake)
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Add key"}, "blocks": []}
    trigger_id = fake.new_trigger_id()

    assert client.views_open(trigger_id=trigger_id, view=view)["view"]["title"]["text"] == "Add key"
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        client.views_open(trigger_id=trigger_id, view=view)

    late = fake.new_trigger_id()
    clock.now += 3.5
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        client.views_push(trigger_id=late, view=view)
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        client.views_open(trigger_id="made-up", view=view)


def test_rate_limited_post_is_retried_after_retry_after_and_delivered_once(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    client = client_for(fake, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    started = time.monotonic()
    client.chat_postMessage(channel="C1", text="reminder")

    assert time.monotonic() - started >= 1.0  # the handler honoured Retry-After
    assert [f.status for f in fake.failures] == [429]
    assert fake.failures[0].response == {"ok": False, "error": "ratelimited"}
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_server_error_is_retried_by_server_error_handler(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=500, times=2)
    handler = ServerErrorRetryHandler(
        max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(fixed_internal=0.01)
    )

    client_for(fake, retry_handlers=[handler]).chat_postMessage(channel="C1", text="reminder")

    assert [f.status for f in fake.failures] == [500, 500]
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_without_retry_handler_the_failure_surfaces(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=429)

    with pytest.raises(SlackApiError) as error:
        client_for(fake).chat_postMessage(channel="C1", text="reminder")

    assert error.value.response.status_code == 429
    assert error.value.response.headers["Retry-After"] == "1"
    assert fake.calls_to("chat.postMessage") == []


def test_bot_token_is_required_and_unknown_methods_are_refused(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError, match="not_authed"):
        WebClient(token="xoxp-user", base_url=fake.base_url).auth_test()
    with pytest.raises(SlackApiError, match="unknown_method"):
        client_for(fake).api_call("files.remote.add", json={"title": "x"})
    assert client_for(fake).auth_test()["user_id"] == "U0BOT"


def test_response_url_posts_are_recorded(fake: FakeSlack) -> None:
    url = fake.response_url()
    assert url.startswith(fake.url + "/respond/")

    WebhookClient(url).send(text="done", response_type="ephemeral", replace_original=True)

    [call] = fake.calls_to("response_url")
    assert call.params == {"text": "done", "response_type": "ephemeral", "replace_original": True}


def test_wait_for_sees_calls_made_from_another_thread(fake: FakeSlack) -> None:
    later = threading.Timer(0.1, client_for(fake).conversations_info, kwargs={"channel": "C9"})
    later.start()

    assert fake.wait_for("conversations.info", timeout=5)[0].params == {"channel": "C9"}
    with pytest.raises(AssertionError):
        fake.wait_for("chat.update", timeout=0.05)
    later.join()
