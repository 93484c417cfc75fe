"""The fake Slack Web API behaves the way the bot's end-to-end tests rely on."""

import json
import threading
import time

import pytest
import yaml
from fake_slack import MANIFEST, FakeSlack
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
    with FakeSlack(clock=clock, invited=("C1", "C2")) as fake:
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
    fake.scopes |= {"users:read"}  # not in the manifest: the bot never reads profiles
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
    fake.scopes |= {"channels:read"}
    later = threading.Timer(0.1, client_for(fake).conversations_info, kwargs={"channel": "C9"})
    later.start()

    assert fake.wait_for("conversations.info", timeout=5)[0].params == {"channel": "C9"}
    with pytest.raises(AssertionError):
        fake.wait_for("chat.update", timeout=0.05)
    later.join()


# ---------------------------------------------------------------- Slack's Block Kit and message rules


def section(text: str = "x", **extra) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(action_id: str = "a", text: str = "Go", value: str = "v") -> dict:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}, "value": value}


def options(n: int, text: str = "o", value: str = "v") -> list[dict]:
    return [{"text": {"type": "plain_text", "text": f"{text}{i}"}, "value": f"{value}{i}"} for i in range(n)]


def select(opts: list[dict]) -> dict:
    return {"type": "static_select", "action_id": "pick", "options": opts}


MESSAGE_RULES = {
    "duplicate block_id": [section(block_id="b"), section(block_id="b")],
    "duplicate action_id in one actions block": [{"type": "actions", "elements": [button("a"), button("a")]}],
    "51 blocks": [section() for _ in range(51)],
    "section text over 3000": [section("x" * 3001)],
    "11 fields": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
    "a field over 2000": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
    "header over 150": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
    "button text over 75": [{"type": "actions", "elements": [button(text="t" * 76)]}],
    "button value over 2000": [{"type": "actions", "elements": [button(value="v" * 2001)]}],
    "accessory button value over 2000": [section(accessory=button(value="v" * 2001))],
    "101 options": [section(accessory=select(options(101)))],
    "option text over 75": [{"type": "actions", "elements": [select(options(1, text="t" * 75))]}],
    "option value over 150": [{"type": "actions", "elements": [select(options(1, value="v" * 150))]}],
}


@pytest.mark.parametrize("rule", list(MESSAGE_RULES))
def test_every_message_method_refuses_blocks_slack_refuses(fake: FakeSlack, rule: str) -> None:
    blocks = MESSAGE_RULES[rule]
    client = client_for(fake)

    for call in (
        lambda: client.chat_postMessage(channel="C1", text="t", blocks=blocks),
        lambda: client.chat_postEphemeral(channel="C1", user="U1", text="t", blocks=blocks),
        lambda: client.chat_update(channel="C1", ts="1.000001", text="t", blocks=blocks),
    ):
        with pytest.raises(SlackApiError, match="invalid_blocks"):
            call()
    answer = WebhookClient(fake.response_url()).send(text="t", blocks=blocks)

    assert (answer.status_code, answer.body) == (400, "invalid_blocks")
    assert fake.calls == [] and len(fake.refused) == 4
    assert fake.history("C1") == []


def test_the_same_blocks_within_the_limits_are_accepted(fake: FakeSlack) -> None:
    blocks = [section("x" * 3000, block_id="one", accessory=select(options(100, "t" * 70, "v" * 140)))]
    blocks += [{"type": "actions", "block_id": "two", "elements": [button("a", "t" * 75, "v" * 2000), button("b")]}]
    blocks += [{"type": "actions", "block_id": "three", "elements": [button("a")]}]  # unique per block only
    blocks += [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10}]
    blocks += [{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}]
    blocks += [section() for _ in range(50 - len(blocks))]

    client_for(fake).chat_postMessage(channel="C1", text="t" * 40_000, blocks=blocks)

    assert fake.refused == [] and len(fake.history("C1")) == 1


def test_message_text_over_forty_thousand_characters_is_too_long(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError, match="msg_too_long"):
        client_for(fake).chat_postMessage(channel="C1", text="t" * 40_001)


def modal(**changes) -> dict:
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "t" * 24},
        "submit": {"type": "plain_text", "text": "s" * 24},
        "close": {"type": "plain_text", "text": "c" * 24},
        "private_metadata": "m" * 3000,
        "blocks": [section() for _ in range(100)],
    }
    view.update(changes)
    return view


VIEW_RULES = {
    "101 blocks": modal(blocks=[section() for _ in range(101)]),
    "title over 24": modal(title={"type": "plain_text", "text": "t" * 25}),
    "submit over 24": modal(submit={"type": "plain_text", "text": "s" * 25}),
    "close over 24": modal(close={"type": "plain_text", "text": "c" * 25}),
    "private_metadata over 3000": modal(private_metadata="m" * 3001),
    "duplicate block_id": modal(blocks=[section(block_id="b"), section(block_id="b")]),
    "duplicate action_id": modal(blocks=[{"type": "actions", "elements": [button("a"), button("a")]}]),
}


@pytest.mark.parametrize("rule", list(VIEW_RULES))
def test_every_view_method_refuses_views_slack_refuses(fake: FakeSlack, rule: str) -> None:
    view = VIEW_RULES[rule]
    client = client_for(fake)
    home = {k: v for k, v in view.items() if k not in ("title", "submit", "close")} | {"type": "home"}

    calls = [
        lambda: client.views_open(trigger_id=fake.new_trigger_id(), view=view),
        lambda: client.views_push(trigger_id=fake.new_trigger_id(), view=view),
        lambda: client.views_update(view_id="V1", view=view),
    ]
    if rule.split()[0] not in ("title", "submit", "close"):  # App Home has none of these
        calls.append(lambda: client.views_publish(user_id="U1", view=home))
    for call in calls:
        with pytest.raises(SlackApiError, match="invalid_arguments"):
            call()
    assert fake.calls == [] and len(fake.refused) == len(calls)


def test_a_view_at_the_limits_is_accepted(fake: FakeSlack) -> None:
    client_for(fake).views_open(trigger_id=fake.new_trigger_id(), view=modal())
    client_for(fake).views_publish(user_id="U1", view={"type": "home", "blocks": [section() for _ in range(100)]})
    assert fake.refused == []


def test_metadata_must_name_an_event_type_and_carry_a_payload(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError, match="invalid_metadata_format"):
        client_for(fake).chat_postMessage(channel="C1", text="t", metadata={"event_type": "x"})


# ---------------------------------------------------------------- channel history, and answers lost on the way


def test_history_pages_newest_first_since_oldest_with_metadata_only_when_asked(fake: FakeSlack) -> None:
    client = client_for(fake)
    first = client.chat_postMessage(channel="C1", text="before")["ts"]
    for n in range(5):
        client.chat_postMessage(
            channel="C1", text=f"m{n}", metadata={"event_type": "keybot_test", "event_payload": {"n": n}}
        )
    client.chat_postMessage(channel="C2", text="elsewhere")

    seen, cursor = [], None
    while True:
        page = client.conversations_history(
            channel="C1", oldest=first, limit=2, include_all_metadata=True, cursor=cursor
        )
        seen += page["messages"]
        cursor = page["response_metadata"]["next_cursor"]
        if not page["has_more"]:
            break
    plain = client.conversations_history(channel="C1")["messages"]

    assert [m["text"] for m in seen] == ["m4", "m3", "m2", "m1", "m0"]  # oldest is exclusive
    assert [m["metadata"]["event_payload"]["n"] for m in seen] == [4, 3, 2, 1, 0]
    assert "metadata" not in plain[0] and len(plain) == 6


@pytest.mark.parametrize("status", [500, None], ids=["500", "connection dropped"])
def test_a_post_can_succeed_while_its_answer_is_lost(fake: FakeSlack, status) -> None:
    fake.fail_next("chat.postMessage", status=status, posted=True)

    with pytest.raises(Exception) as lost:  # no retry handlers: a retry would post it twice
        client_for(fake, retry_handlers=[]).chat_postMessage(channel="C1", text="did it go?")
    client_for(fake).chat_postMessage(channel="C1", text="next")

    if status == 500:
        assert isinstance(lost.value, SlackApiError) and lost.value.response.status_code == 500
    assert [m["text"] for m in fake.history("C1")] == ["did it go?", "next"]
    assert len(fake.calls_to("chat.postMessage")) == 2 and fake.failures == []


def test_history_names_who_posted_each_message_and_another_app_posts_as_itself(fake: FakeSlack) -> None:
    fake.add_app("xoxb-other", app_id="A0OTHER", bot_id="B0OTHER", user_id="U0OTHER")
    other = WebClient(token="xoxb-other", base_url=fake.base_url)
    assert other.auth_test()["bot_id"] == "B0OTHER" and client_for(fake).auth_test()["bot_id"] == "B0BOT"
    metadata = {"event_type": "keybot_reminder", "event_payload": {"delivery_ids": [1]}}
    client_for(fake).chat_postMessage(channel="C1", text="ours", metadata=metadata)
    other.chat_postMessage(channel="C1", text="theirs", metadata=metadata)
    page = client_for(fake).conversations_history(channel="C1", include_all_metadata=True)
    posters = [(m["text"], m["bot_id"], m["app_id"], m["user"]) for m in page["messages"]]
    assert posters == [("theirs", "B0OTHER", "A0OTHER", "U0OTHER"), ("ours", "B0BOT", "A0BOT", "U0BOT")]


def test_thread_replies_are_not_in_the_channel_history_but_in_the_thread(fake: FakeSlack) -> None:
    """As in Slack: conversations.history lists a channel's messages, not the replies in their threads."""
    client = client_for(fake)
    parent = client.chat_postMessage(channel="C1", text="request")["ts"]
    client.chat_postMessage(channel="C1", text="nudge", thread_ts=parent)
    client.chat_postMessage(channel="C1", text="shared", thread_ts=parent, reply_broadcast=True)

    history = [m["text"] for m in client.conversations_history(channel="C1")["messages"]]
    thread = [m["text"] for m in client.conversations_replies(channel="C1", ts=parent)["messages"]]
    assert history == ["shared", "request"]
    assert thread == ["request", "nudge", "shared"]
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.conversations_replies(channel="C1", ts="1.000001")


# ---------------------------------------------------------------- what the installed app may do, as in Slack


def test_the_app_has_the_scopes_of_the_manifest_and_nothing_more(fake: FakeSlack) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert fake.scopes == set(manifest["oauth_config"]["scopes"]["bot"])
    assert "chat:write.public" not in fake.scopes and "users:read" not in fake.scopes

    with pytest.raises(SlackApiError, match="missing_scope") as refused:
        client_for(fake).users_info(user="U1")
    assert refused.value.response["needed"] == "users:read"


def test_a_post_reaches_only_a_channel_the_bot_was_invited_to(fake: FakeSlack) -> None:
    """Without chat:write.public: not_in_channel (public), channel_not_found (private, deleted), is_archived."""
    client = client_for(fake)
    fake.create_channel("CPRIV0001", private=True)
    fake.invite("CARCH0001")
    fake.archive("CARCH0001")
    fake.delete_channel("CGONE0001")

    for channel, error in [
        ("CNEW00001", "not_in_channel"),
        ("CPRIV0001", "channel_not_found"),
        ("CARCH0001", "is_archived"),
        ("CGONE0001", "channel_not_found"),
        ("", "channel_not_found"),
    ]:
        with pytest.raises(SlackApiError, match=error):
            client.chat_postMessage(channel=channel, text="reminder")
        with pytest.raises(SlackApiError, match=error):
            client.chat_postEphemeral(channel=channel, user="U1", text="only you")
    assert [c.response["error"] for c in fake.refusals][:2] == ["not_in_channel", "not_in_channel"]

    fake.invite("CNEW00001")
    fake.invite("CPRIV0001", private=True)
    client.chat_postMessage(channel="CNEW00001", text="now")
    client.chat_postMessage(channel="CPRIV0001", text="here too")
    assert [m["text"] for m in fake.history("CNEW00001")] == ["now"]
    fake.kick("CNEW00001")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel="CNEW00001", text="gone")


def test_chat_write_public_posts_to_public_channels_without_an_invitation(clock: ManualClock) -> None:
    with FakeSlack(clock=clock, scopes={"chat:write", "chat:write.public"}) as fake:
        client_for(fake).chat_postMessage(channel="CNEW00001", text="hi")
        fake.create_channel("CPRIV0001", private=True)
        with pytest.raises(SlackApiError, match="channel_not_found"):
            client_for(fake).chat_postMessage(channel="CPRIV0001", text="hi")
    assert len(fake.history("CNEW00001")) == 1


def test_history_needs_membership_and_the_history_scope_of_the_conversation(fake: FakeSlack) -> None:
    client = client_for(fake)
    fake.create_channel("CNEW00001")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.conversations_history(channel="CNEW00001")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.conversations_replies(channel="CNEW00001", ts="1.000001")
    with pytest.raises(SlackApiError, match="channel_not_found"):  # a user ID is not a conversation
        client.conversations_history(channel="U0OWNER01")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.conversations_replies(channel="U0OWNER01", ts="1.000001")

    fake.scopes -= {"groups:history"}
    fake.invite("GPRIV0001")
    with pytest.raises(SlackApiError, match="missing_scope") as refused:
        client.conversations_history(channel="GPRIV0001")
    assert refused.value.response["needed"] == "groups:history"
    assert client.conversations_history(channel="C1")["ok"]  # channels:history


def test_a_post_to_a_person_goes_to_the_dm_conversations_open_names(fake: FakeSlack) -> None:
    client = client_for(fake)
    posted = client.chat_postMessage(
        channel="U0OWNER01", text="answer", metadata={"event_type": "keybot_test", "event_payload": {"n": 1}}
    )
    dm = client.conversations_open(users="U0OWNER01")["channel"]["id"]

    assert dm.startswith("D") and posted["channel"] == dm == fake.dm_channel("U0OWNER01")
    page = client.conversations_history(channel=dm, include_all_metadata=True)
    assert [m["metadata"]["event_payload"] for m in page["messages"]] == [{"n": 1}]
    assert fake.history("U0OWNER01") == fake.history(dm)
    with pytest.raises(SlackApiError, match="channel_not_found"):  # an update names the conversation
        client.chat_update(channel="U0OWNER01", ts=posted["ts"], text="edited")
    client.chat_update(channel=dm, ts=posted["ts"], text="edited")
    with pytest.raises(SlackApiError, match="channel_not_found"):  # not a DM of this bot
        client.conversations_history(channel="DSOMEONE1")

    fake.scopes -= {"im:history"}
    with pytest.raises(SlackApiError, match="missing_scope"):
        client.conversations_history(channel=dm)


def test_updating_a_message_that_is_not_there_is_message_not_found(fake: FakeSlack) -> None:
    client = client_for(fake)
    ts = client.chat_postMessage(channel="C1", text="progress 1/2")["ts"]

    client.chat_update(channel="C1", ts=ts, text="progress 2/2")
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="C1", ts="1.999999", text="x")
    with pytest.raises(SlackApiError, match="message_not_found"):  # the same ts in another channel
        client.chat_update(channel="C2", ts=ts, text="x")
    assert [m["text"] for m in fake.history("C1")] == ["progress 2/2"]


def test_a_view_updated_with_a_stale_hash_is_a_hash_conflict(fake: FakeSlack) -> None:
    client = client_for(fake)
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Form"}, "blocks": []}
    opened = client.views_open(trigger_id=fake.new_trigger_id(), view=view)["view"]

    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=view)["view"]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=view)
    client.views_update(view_id=opened["id"], hash=updated["hash"], view=view)
    client.views_update(view_id=opened["id"], view=view)  # no hash: the last write wins
    with pytest.raises(SlackApiError, match="not_found"):
        client.views_update(view_id="V0UNKNOWN", view=view)

    home = {"type": "home", "blocks": []}
    first = client.views_publish(user_id="U1", view=home)["view"]
    client.views_publish(user_id="U1", view=home)
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_publish(user_id="U1", hash=first["hash"], view=home)


def test_a_response_url_answers_five_times_within_thirty_minutes(fake: FakeSlack, clock: ManualClock) -> None:
    url = fake.response_url()
    answers = [WebhookClient(url).send(text=f"answer {n}") for n in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [404]
    assert answers[-1].body == "used_url"

    late = fake.response_url()
    clock.now += 30 * 60 + 1
    answer = WebhookClient(late).send(text="too late")
    assert (answer.status_code, answer.body) == (404, "expired_url")
    assert len(fake.calls_to("response_url")) == 7  # Slack received them, and refused two


def test_calls_over_a_methods_rate_limit_are_answered_429_with_retry_after(clock: ManualClock) -> None:
    with FakeSlack(clock=clock, invited=("C1", "C2")) as fake:
        client = client_for(fake, retry_handlers=[])
        for n in range(60):  # about one a second per channel, in bursts
            client.chat_postMessage(channel="C1", text=f"m{n}")
        with pytest.raises(SlackApiError) as limited:
            client.chat_postMessage(channel="C1", text="one too many")
        client.chat_postMessage(channel="C2", text="another channel has its own budget")
        clock.now += 30
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel="C1", text="still too many")
        clock.now += 31
        client.chat_postMessage(channel="C1", text="a minute later")

        fake.set_usergroup("S1", ["U1"])
        for _ in range(20):  # tier 2
            client.usergroups_users_list(usergroup="S1")
        with pytest.raises(SlackApiError) as tier2:
            client.usergroups_users_list(usergroup="S1")

    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "60"
    assert tier2.value.response.status_code == 429
    assert len(fake.history("C1")) == 61 and len(fake.history("C2")) == 1
    assert [f.response["error"] for f in fake.failures] == ["ratelimited"] * 3
