"""``coupang-keybot reminders run`` is the scheduled sweep, once: reminders, then the weekly summary when due; and
when Slack fails it says what failed in a sentence, never a stack trace, and exits non-zero.

Run as a separate process (as cron or a person runs it), with logging configured as in production, against the fake
Slack; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.bootstrap import build_services
from tests.conftest import ADMIN, MASTER_KEY
from tests.factories import SECRET_MARK, form
from tests.fake_slack import FakeSlack
from tests.slack_harness import INVITED_CHANNELS

MONDAY = "2026-11-30T09:00"  # Seoul: the weekly summary's day and hour; form()'s key expired two days before
SUMMARY_CHANNEL = "CREMIND01"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def seeded(settings):
    seed = build_services(settings)
    seed.keys.register(ADMIN, form("A00012345"))  # posts to CSHOP0001
    seed.engine.dispose()
    return settings


def run(settings, tmp_path: Path, slack_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYBOT_", "SLACK_", "DATABASE_URL", "LOG_"))}
    env.update(
        KEYBOT_MASTER_KEY=MASTER_KEY,
        DATABASE_URL=settings.database_url,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_API_URL=slack_url,
        KEYBOT_TIMEZONE="Asia/Seoul",
        KEYBOT_CHANNEL=SUMMARY_CHANNEL,
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "bot", "reminders", "run", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def summaries(fake: FakeSlack) -> list[dict]:
    return [m for m in fake.history(SUMMARY_CHANNEL) if m["text"].startswith("Weekly key summary")]


def test_a_run_while_slack_answers_500_says_so_in_a_sentence_and_the_next_run_posts_reminder_and_summary(
    seeded, tmp_path
):
    with FakeSlack(invited=INVITED_CHANNELS) as fake:
        fake.fail_next("chat.postMessage", status=500, times=2)  # the reminder, then the summary
        code, out, err = run(seeded, tmp_path, fake.base_url, "--as-of", MONDAY)
        assert code == 1
        assert "Traceback" not in out + err
        assert "Could not post reminder to CSHOP0001 FAILED (Slack answered HTTP 500; a later sweep retries):" in out
        sentence = (
            "Could not post the weekly summary to CREMIND01 (Slack answered HTTP 500); the next sweep retries it."
        )
        assert out.count(sentence) == 1
        assert fake.history("CSHOP0001") == [] and summaries(fake) == []

        code, out, err = run(seeded, tmp_path, fake.base_url, "--as-of", "2026-11-30T09:05")
        assert (code, "Traceback" in out + err) == (0, False)
        assert "1 reminder(s) in 1 message(s) posted" in out
        assert "Posted the weekly summary to CREMIND01." in out
        code, out, _ = run(seeded, tmp_path, fake.base_url, "--as-of", "2026-11-30T09:10")
        assert code == 0 and "weekly summary" not in out  # posted once a week
        assert len(fake.history("CSHOP0001")) == 1
        assert len(summaries(fake)) == 1
        assert SECRET_MARK not in fake.all_text()


def test_a_run_with_slack_unreachable_says_so_in_a_sentence(seeded, tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api/"
    code, out, err = run(seeded, tmp_path, url, "--as-of", MONDAY)
    assert code == 1
    assert "Traceback" not in out + err
    assert "Could not post reminder to CSHOP0001 FAILED (no answer from Slack: " in out
    assert "Could not post the weekly summary to CREMIND01 (no answer from Slack: " in out
    assert "the next sweep retries it." in out
    assert SECRET_MARK not in out + err


def test_a_run_with_the_token_revoked_says_what_slack_answered(seeded, tmp_path):
    with FakeSlack(invited=INVITED_CHANNELS) as fake:
        fake.revoke_token("xoxb-test")  # the app was uninstalled
        code, out, err = run(seeded, tmp_path, fake.base_url, "--as-of", MONDAY)
    assert code == 1
    assert "Traceback" not in out + err
    assert "Could not post reminder to CSHOP0001 FAILED (Slack answered invalid_auth; a later sweep retries):" in out
    assert (
        "Could not post the weekly summary to CREMIND01 (Slack answered invalid_auth); the next sweep retries it."
        in out
    )
