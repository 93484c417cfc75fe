"""Settings pinned to the environment table in INTERFACE.md: defaults, and a refusal naming the variable."""

from __future__ import annotations

import base64
from datetime import time

import pytest

from bot.config import ConfigError, load_settings

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
MASTER = base64.b64encode(KEY_A).decode()


def load(**env: str):
    return load_settings({"KEYBOT_MASTER_KEY": MASTER, **env})


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return str(caught.value)


def refused_with(**env: str) -> str:
    return refused({"KEYBOT_MASTER_KEY": MASTER, **env})


# ---------------------------------------------------------------- defaults


def test_defaults_match_the_environment_table():
    settings = load_settings({"KEYBOT_MASTER_KEY": MASTER})
    assert settings.timezone.key == "Asia/Seoul"
    assert settings.reminder_time == time(9, 0)
    assert settings.reminder_days == (14, 7, 1, 0)
    assert settings.database_url == "sqlite:///data/keybot.db"
    assert settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.coupang_api_url == "https://api-gateway.coupang.com"
    assert settings.log_level == "INFO"
    assert settings.channel is None
    assert settings.admins == frozenset()
    assert settings.approvers == frozenset()


def test_empty_values_from_env_file_mean_the_default():
    # .env.example ships lines like "KEYBOT_TIMEZONE=" — blank must not be an error or an empty zone.
    settings = load(KEYBOT_TIMEZONE="", KEYBOT_REMINDER_TIME=" ", KEYBOT_REMINDER_DAYS="", PORT="")
    assert settings.timezone.key == "Asia/Seoul"
    assert settings.reminder_time == time(9, 0)
    assert settings.reminder_days == (14, 7, 1, 0)
    assert settings.port == 3000


def test_values_are_read_from_the_mapping():
    settings = load(
        DATABASE_URL="postgresql+psycopg://keybot@db/keybot",
        KEYBOT_TIMEZONE="UTC",
        KEYBOT_REMINDER_TIME="08:30",
        KEYBOT_REMINDER_DAYS="30,14,3",
        PORT="8080",
        KEYBOT_CHANNEL="C0123ABCD",
    )
    assert settings.database_url == "postgresql+psycopg://keybot@db/keybot"
    assert settings.timezone.key == "UTC"
    assert settings.reminder_time == time(8, 30)
    assert set(settings.reminder_days) == {30, 14, 3}
    assert settings.port == 8080
    assert settings.channel == "C0123ABCD"


# ---------------------------------------------------------------- master key


def test_master_key_decodes_to_32_bytes():
    assert load_settings({"KEYBOT_MASTER_KEY": MASTER}).master_keys == (KEY_A,)


def test_two_master_keys_load_in_order_first_one_encrypts():
    raw = f"{base64.b64encode(KEY_B).decode()}, {MASTER}"
    assert load_settings({"KEYBOT_MASTER_KEY": raw}).master_keys == (KEY_B, KEY_A)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"KEYBOT_MASTER_KEY": ""},
        {"KEYBOT_MASTER_KEY": "   "},
        {"KEYBOT_MASTER_KEY": "not base64 at all!"},
        {"KEYBOT_MASTER_KEY": base64.b64encode(bytes(16)).decode()},  # 16 bytes: too short
        {"KEYBOT_MASTER_KEY": base64.b64encode(bytes(33)).decode()},  # 33 bytes: too long
        {"KEYBOT_MASTER_KEY": MASTER[:-4]},  # truncated when copied
        {"KEYBOT_MASTER_KEY": f"{MASTER},"},  # a stray comma is a missing second key
        {"KEYBOT_MASTER_KEY": f"{MASTER},short"},  # the second key is checked too
    ],
    ids=["unset", "empty", "blank", "not-base64", "16-bytes", "33-bytes", "truncated", "comma", "second"],
)
def test_bad_master_key_is_refused_with_the_fix(env):
    message = refused(env)
    assert "KEYBOT_MASTER_KEY" in message
    assert "coupang-keybot init" in message


def test_master_key_error_does_not_echo_the_key():
    wrong = base64.b64encode(b"s3cr3t-but-only-24-bytes").decode()
    assert wrong not in refused({"KEYBOT_MASTER_KEY": wrong})


# ---------------------------------------------------------------- time zone and reminders


@pytest.mark.parametrize("zone", ["Seoul", "Asia/Busan", "KST+9", "../etc/passwd", "/etc/localtime"])
def test_unknown_time_zone_is_refused(zone):
    assert "KEYBOT_TIMEZONE" in refused_with(KEYBOT_TIMEZONE=zone)


@pytest.mark.parametrize("value", ["9am", "25:00", "09:60", "0900", "09:00:00", "noon"])
def test_bad_reminder_time_is_refused(value):
    assert "KEYBOT_REMINDER_TIME" in refused_with(KEYBOT_REMINDER_TIME=value)


@pytest.mark.parametrize("value", ["14;7", "14,seven", "14,,7", "14.5", "fourteen"])
def test_malformed_reminder_days_are_refused(value):
    assert "KEYBOT_REMINDER_DAYS" in refused_with(KEYBOT_REMINDER_DAYS=value)


@pytest.mark.parametrize("value", ["-1", "14,7,-1", "365", "14,200"])
def test_out_of_range_reminder_days_are_refused(value):
    # a key lives 180 days: a milestone before issue, or after expiry, can never be met
    assert "KEYBOT_REMINDER_DAYS" in refused_with(KEYBOT_REMINDER_DAYS=value)


def test_reminder_days_tolerate_spaces():
    assert set(load(KEYBOT_REMINDER_DAYS=" 7, 1 ,0").reminder_days) == {7, 1, 0}


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1", "²"])
def test_bad_port_is_refused(port):
    assert "PORT" in refused_with(PORT=port)


# ---------------------------------------------------------------- Slack


def test_bot_token_must_be_a_bot_token():
    message = refused_with(SLACK_BOT_TOKEN="xoxp-1234-user-token")
    assert "SLACK_BOT_TOKEN" in message
    assert "xoxb-" in message
    assert "xoxp-1234-user-token" not in message  # never echo a token


def test_app_token_must_be_an_app_token():
    message = refused_with(SLACK_BOT_TOKEN="xoxb-1-2-abc", SLACK_APP_TOKEN="xoxb-1-2-abc")
    assert "SLACK_APP_TOKEN" in message
    assert "xapp-" in message
    assert "xoxb-1-2-abc" not in message


@pytest.mark.parametrize("channel", ["#key-alerts", "key-alerts", "U0123ABCD"])
def test_channel_must_be_an_id_not_a_name(channel):
    assert "KEYBOT_CHANNEL" in refused_with(KEYBOT_CHANNEL=channel)


@pytest.mark.parametrize("admins", ["@alice", "U0123ABCD,S0123GRP", "C0123ABCD", "alice"])
def test_admins_must_be_user_ids(admins):
    message = refused_with(KEYBOT_ADMINS=admins)
    assert "KEYBOT_ADMINS" in message


def test_admins_list_of_user_ids():
    assert load(KEYBOT_ADMINS="U0123ABCD, W0456EFGH").admins == {"U0123ABCD", "W0456EFGH"}


def test_approvers_accept_users_and_user_groups():
    assert load(KEYBOT_APPROVERS="U0123ABCD,S0123GRP").approvers == {"U0123ABCD", "S0123GRP"}


@pytest.mark.parametrize("approvers", ["@finance", "C0123ABCD", "U0123ABCD,#ops"])
def test_approvers_refuse_names_and_channels(approvers):
    assert "KEYBOT_APPROVERS" in refused_with(KEYBOT_APPROVERS=approvers)


def test_slack_not_configured_says_what_is_missing():
    settings = load()
    assert not settings.slack_configured
    missing = " ".join(settings.missing_slack_settings())
    assert "SLACK_BOT_TOKEN" in missing
    assert "SLACK_APP_TOKEN" in missing
    assert "SLACK_SIGNING_SECRET" in missing


def test_bot_token_alone_is_not_enough():
    settings = load(SLACK_BOT_TOKEN="xoxb-1-2-abc")
    assert not settings.slack_configured
    missing = settings.missing_slack_settings()
    assert not any("SLACK_BOT_TOKEN" in item for item in missing)
    assert any("SLACK_SIGNING_SECRET" in item for item in missing)


@pytest.mark.parametrize(
    "extra",
    [{"SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5"}, {"SLACK_APP_TOKEN": "xapp-1-A1-2-abc"}],
    ids=["http", "socket-mode"],
)
def test_slack_configured_with_bot_token_and_secret_or_app_token(extra):
    settings = load(SLACK_BOT_TOKEN="xoxb-1-2-abc", **extra)
    assert settings.slack_configured
    assert settings.missing_slack_settings() == []


def test_signing_secret_without_bot_token_is_not_configured():
    settings = load(SLACK_SIGNING_SECRET="8f742231b10e8888abcd99yyyzzz85a5")
    assert not settings.slack_configured
    assert settings.missing_slack_settings() == ["SLACK_BOT_TOKEN"]


def test_slack_api_url_gets_a_trailing_slash():
    assert load(SLACK_API_URL="http://127.0.0.1:9999/api").slack_api_url == "http://127.0.0.1:9999/api/"
