"""``LOG_FORMAT=json``: one JSON object a line, extra fields kept, secrets still scrubbed; the new settings."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest
from slack_sdk import WebClient

from bot.config import ConfigError
from bot.logs import JsonFormatter
from bot.slack import ids
from bot.slack.app import build_app
from bot.slack.reminders import run_sweep
from tests.conftest import ADMIN, MASTER_KEY, make_settings
from tests.factories import SECRET_MARK
from tests.slack_harness import SIGNING_SECRET
from tests.test_ops_monitoring import register
from tests.test_slack_keys import GOOD
from tests.test_slack_redact import ACCESS, submission
from tests.test_slack_serve import free_port, wait_until_up


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_json_lines_carry_time_level_logger_message_and_extra_fields(json_lines):
    logging.getLogger("bot.services.reminders").warning(
        "posting %s failed", "A00012345", extra={"vendor_id": "A00012345"}
    )
    try:
        raise RuntimeError("boom " + json.dumps(submission()))
    except RuntimeError:
        logging.getLogger("bot.slack.bolt").exception("payload %s", json.dumps(submission()))
    first, second = json_lines()
    assert first["level"] == "WARNING" and first["logger"] == "bot.services.reminders"
    assert first["message"] == "posting A00012345 failed" and first["vendor_id"] == "A00012345"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "RuntimeError" in second["exception"]
    assert SECRET_MARK not in json.dumps([first, second]) and ACCESS not in json.dumps(second)


def test_debug_logs_of_a_registration_in_json_hold_no_secret(slack, json_lines):
    slack.slash(ADMIN, "add")
    slack.last_modal(ids.REGISTER_MODAL)
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD).status == 200
    slack.fake.wait_for("chat.postEphemeral")
    lines = json_lines()
    assert lines  # DEBUG logging really was on, and every line parsed as JSON
    assert SECRET_MARK not in json.dumps(lines) and GOOD["access_key"] not in json.dumps(lines)
    # the Web API calls the listener made (in Bolt's listener thread) name the request and the user
    sdk = [line for line in lines if line["logger"].startswith("slack_sdk") and "chat.postEphemeral" in line["message"]]
    assert sdk and all(line["user_id"] == ADMIN and line["request_id"] for line in sdk)


def test_configure_logging_json_writes_one_object_per_line():
    code = (
        "import logging; from bot.logs import configure_logging; configure_logging('INFO', 'json'); "
        "logging.getLogger('bot.scheduler').info('sweep done\\nsecond line', extra={'vendor_id': 'A00012345'})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    (line,) = done.stderr.splitlines()
    record = json.loads(line)
    assert record["message"] == "sweep done\nsecond line" and record["vendor_id"] == "A00012345"
    assert record["logger"] == "bot.scheduler" and record["level"] == "INFO"


def test_serve_over_http_logs_only_json_lines(tmp_path, fake_slack):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL"))},
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'keybot.db'}",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "PORT": str(port),
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:  # a file, not a pipe nobody drains
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        assert wait_until_up(port, process)[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
    lines = [line for line in log.read_text().splitlines() if not line.startswith("Serving Slack requests on")]
    records = [json.loads(line) for line in lines]  # gunicorn's own lines included
    assert {"gunicorn.error", "bot.serve"} <= {r["logger"] for r in records}


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("LOG_FORMAT", "xml", "must be text or json"),
        ("KEYBOT_WEEKLY_SUMMARY", "monday", "must be a weekday"),
        ("KEYBOT_HEARTBEAT_URL", "hc-ping.com/abc", "must be an http(s) URL"),
    ],
)
def test_bad_operations_settings_stop_start_up_with_a_sentence(name, value, sentence):
    with pytest.raises(ConfigError, match=re.escape(sentence)):
        make_settings(**{name: value})


def test_operations_settings_defaults_and_values():
    default = make_settings()
    assert (default.log_format, default.weekly_summary_day, default.heartbeat_url, default.metrics_token) == (
        "text",
        0,
        None,
        None,
    )
    chosen = make_settings(
        LOG_FORMAT="JSON",
        KEYBOT_WEEKLY_SUMMARY="sun",
        KEYBOT_HEARTBEAT_URL="https://hc-ping.com/x/",
        KEYBOT_METRICS_TOKEN="t",
    )
    assert (chosen.log_format, chosen.weekly_summary_day, chosen.heartbeat_url, chosen.metrics_token) == (
        "json",
        6,
        "https://hc-ping.com/x",
        "t",
    )
    assert make_settings(KEYBOT_WEEKLY_SUMMARY="off").weekly_summary_day is None


def test_a_failed_reminder_post_logs_its_vendor_id(clock, slack, services, json_lines):
    register(services, "A00000002", days_left=10)  # its D-14 reminder is due
    slack.fake.revoke_token(slack.client.token)
    assert run_sweep(services, slack.client).failed
    (failed,) = [line for line in json_lines() if line["logger"] == "bot.services.reminders"]
    assert failed["level"] == "ERROR" and failed["vendor_id"] == "A00000002"
    assert "invalid_auth" in failed["exception"]
    assert slack.client.token not in json.dumps(json_lines())


def test_building_the_app_logs_no_warning_when_the_token_is_in_the_environment(services, monkeypatch, caplog):
    """SLACK_BOT_TOKEN is how the bot is configured; Bolt's "`token` will be unused" would alarm whoever reads it."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    with caplog.at_level(logging.WARNING):
        build_app(services, client=WebClient(token="xoxb-from-env"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
