"""``coupang-keybot console`` as a newcomer runs it: a real process, lines piped into standard input."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import ADMIN, MASTER_KEY

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], stdin: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'configured.db'}",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no .env here: only the environment above
        env={**environment, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def test_console_answers_help_as_the_first_admin(tmp_path: Path) -> None:
    result = run_cli(["console"], "/coupang-key help\n:quit\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"You are @{ADMIN}" in result.stdout
    assert "/coupang-key add" in result.stdout and "only visible to you" in result.stdout
    assert (tmp_path / "configured.db").exists()  # the configured database, as `serve` would use


def test_demo_console_ticks_to_the_d14_reminder_without_touching_the_configured_database(tmp_path: Path) -> None:
    result = run_cli(["console", "--demo"], "/coupang-key status\n:tick\n", tmp_path)
    assert result.returncode == 0, result.stderr
    tick = result.stdout[result.stdout.index("⏩ 1 day(s) later") :]
    assert "The reissue button in WING is active from today" in tick and "Spring Sale Store" in tick
    assert "Healthy Home Goods" in result.stdout  # status of the seeded keys
    assert not (tmp_path / "configured.db").exists()


def test_serve_without_slack_and_without_a_terminal_explains_and_exits_2(tmp_path: Path) -> None:
    result = run_cli(["serve"], "", tmp_path)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stdout and "manifest.yml" in result.stdout
    assert "Meanwhile, here is the bot" not in result.stdout


class TerminalInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_serve_without_slack_at_a_terminal_opens_the_console_after_the_setup_help(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "KEYBOT_MASTER_KEY": MASTER_KEY,
        "KEYBOT_ADMINS": ADMIN,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'configured.db'}",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", TerminalInput("/coupang-key help\n:quit\n"))
    out = io.StringIO()
    assert main(["serve"], out=out) == 0
    screen = out.getvalue()
    assert screen.index("SLACK_BOT_TOKEN") < screen.index("Meanwhile, here is the bot")
    assert "/coupang-key add" in screen[screen.index("Meanwhile") :]


def test_console_log_lines_go_to_a_file_not_into_the_conversation(tmp_path: Path) -> None:
    """At LOG_LEVEL=DEBUG Bolt and the bot log every request: in the terminal they buried the prompt."""
    result = run_cli(["console"], "/coupang-key status\n:quit\n", tmp_path, LOG_LEVEL="DEBUG")
    assert result.returncode == 0, result.stderr
    log = tmp_path / "data" / "console.log"
    assert "Log lines go to data/console.log." in result.stdout
    assert "DEBUG" not in result.stdout + result.stderr
    assert "DEBUG" in log.read_text()
    assert oct(log.stat().st_mode & 0o777) == "0o600"
