"""The real CLI (a subprocess) when the database is wrong or the reader goes away: one sentence, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import MASTER_KEY

PASSWORD = "hunter2-not-for-logs"


def cli_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYBOT_", "SLACK_", "DATABASE_URL"))}
    return {**env, "KEYBOT_MASTER_KEY": MASTER_KEY, "DATABASE_URL": database_url}


def run_cli(tmp_path, database_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *argv],
        cwd=tmp_path,
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("database_url", "sentence"),
    [
        ("not a database", "DATABASE_URL is not a database URL: use sqlite:///"),
        (f"postgres://keybot:{PASSWORD}@db.example/keybot", "no driver for (postgres): use"),
        (f"mysql://keybot:{PASSWORD}@db.example/keybot", "no driver for (mysql)"),
        (f"postgresql+psycopg://keybot:{PASSWORD}@127.0.0.1:1/keybot", "Cannot use the database at "),
        ("sqlite:///{tmp_path}", "Cannot use the database at sqlite:///"),  # a folder, not a file
    ],
)
def test_a_wrong_or_unreachable_database_url_is_one_sentence_and_exit_2(tmp_path, database_url, sentence):
    done = run_cli(tmp_path, database_url.format(tmp_path=tmp_path), "status")
    assert done.returncode == 2
    assert sentence in done.stderr and "DATABASE_URL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_unreachable_postgres_names_the_host_without_the_password(tmp_path):
    done = run_cli(tmp_path, f"postgresql+psycopg://keybot:{PASSWORD}@127.0.0.1:1/keybot", "audit", "verify")
    assert done.returncode == 2
    assert "postgresql+psycopg://keybot:***@127.0.0.1:1/keybot" in done.stderr
    assert "refused" in done.stderr


def test_status_json_into_a_reader_that_went_away_exits_quietly(tmp_path, db_url):
    """``status --json | head``: the pipe's reading end is closed before the CLI writes anything."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "status", "--json"],
        cwd=tmp_path,
        env=cli_env(db_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert stderr == ""
