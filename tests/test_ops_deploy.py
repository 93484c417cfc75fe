"""The deployment files agree with the code: alert rules pass promtool's unit tests, Docker and compose match.

Base images cannot be pulled here, so the Dockerfile and compose.yaml are checked against the code instead of
being built: the command exists, every variable compose sets is one Settings reads, the port matches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.bootstrap import build_services
from bot.cli import build_parser
from bot.config import Settings, load_settings
from bot.ops_http import build_ops_listener, serve_ops
from tests.conftest import MASTER_KEY, make_settings
from tests.slack_harness import SlackHarness
from tests.test_slack_serve import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every variable load_settings asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(name)
        return self.values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def settings_read(values: Mapping[str, str]) -> tuple[Settings, set[str]]:
    env = RecordingEnv({"KEYBOT_MASTER_KEY": MASTER_KEY, **values})
    return load_settings(env), env.asked


def test_alert_rules_pass_their_promtool_unit_tests():
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed (Debian: apt-get install prometheus; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    check = subprocess.run(
        [promtool, "check", "rules", "keybot-alerts.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "keybot-alerts.test.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alert_rules_cover_the_windows_and_use_only_metrics_the_bot_exports(slack):
    rules = yaml.safe_load((PROMETHEUS / "keybot-alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "keybot-alerts.test.yml").read_text())["tests"]
    alerts = {r["alert"] for r in rules}
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == tested  # every alert has a test in which it fires
    exported = set(re.findall(r"^# TYPE (\w+)", slack.ops_get("/metrics").text, re.MULTILINE))
    used = {name for r in rules for name in re.findall(r"\b(coupang_\w+)", r["expr"])}
    assert used <= exported | {"coupang_keybot_reminder_sweep_last_success_timestamp_seconds"}  # after a sweep


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_runs_serve_as_a_non_root_user_with_a_health_check():
    text = dockerfile()
    assert re.search(r"^FROM python:3\.1[1-9]-slim\b", text, re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert healthcheck_command()  # run for real below
    (command,) = re.findall(r'^CMD \["([^"]+)", "([^"]+)"\]', text, re.MULTILINE)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts and scripts[command[0]] == "bot.cli:main"
    assert build_parser().parse_args([command[1]]).command == "serve"
    for copied in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (ROOT / copied).exists(), copied
    assert ".env" in (ROOT / ".dockerignore").read_text().split()  # the master key never goes into an image


def healthcheck_command() -> list[str]:
    """The Dockerfile's ``HEALTHCHECK ... CMD [...]``, with the image's ``python`` as this interpreter."""
    (command,) = re.findall(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$", dockerfile(), re.MULTILINE)
    argv = json.loads(command)
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def run_healthcheck(**env: str) -> int:
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("KEYBOT_", "PORT")) and "proxy" not in k.lower()
    }
    return subprocess.run(healthcheck_command(), env={**inherited, **env}, capture_output=True, timeout=30).returncode


def test_the_docker_health_check_asks_healthz_where_the_bot_serves_it(db_url, fake_slack):
    services = build_services(make_settings(DATABASE_URL=db_url))
    with SlackHarness(services, fake_slack) as harness:
        assert run_healthcheck(PORT=str(harness.port)) == 0  # KEYBOT_BIND 0.0.0.0: asked on 127.0.0.1
        assert run_healthcheck(PORT=str(harness.port), KEYBOT_BIND="127.0.0.1") == 0
        ops = serve_ops(build_ops_listener(services, token_free=True), "127.0.0.1", 0)
        try:  # KEYBOT_OPS_ADDR (where Socket Mode then serves /healthz alone): asked there, not on PORT
            assert run_healthcheck(PORT="1", KEYBOT_OPS_ADDR=f"0.0.0.0:{ops.server_address[1]}") == 0
            assert run_healthcheck(PORT=str(harness.port), KEYBOT_OPS_ADDR=f"127.0.0.1:{free_port()}") == 1
        finally:
            ops.shutdown()
            ops.server_close()
        services.monitor.slack_answered("auth.test", "token_revoked")  # /healthz 503: unhealthy
        assert run_healthcheck(PORT=str(harness.port)) == 1
    assert run_healthcheck(PORT=str(free_port())) == 1  # nothing listening
    services.engine.dispose()


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (an unset or empty VAR is an error)."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(value, text)


def compose_file(**env: str) -> dict:
    return yaml.safe_load(interpolate((ROOT / "compose.yaml").read_text(), env))


def test_compose_takes_the_database_password_from_env_and_refuses_to_start_without_it():
    with pytest.raises(ValueError, match="set POSTGRES_PASSWORD in .env"):
        compose_file()
    compose = compose_file(POSTGRES_PASSWORD="0f3c9a71b2d84e65")
    db, bot = compose["services"]["db"], compose["services"]["bot"]
    assert db["environment"]["POSTGRES_PASSWORD"] == "0f3c9a71b2d84e65"
    url = make_url(bot["environment"]["DATABASE_URL"])
    assert (url.username, url.password) == (db["environment"]["POSTGRES_USER"], "0f3c9a71b2d84e65")
    assert "ports" not in db  # PostgreSQL is reachable from the bot only


def test_compose_publishes_the_bot_on_loopback_unless_told():
    (published,) = compose_file(POSTGRES_PASSWORD="p")["services"]["bot"]["ports"]
    assert published == "127.0.0.1:3000:3000"
    (everywhere,) = compose_file(POSTGRES_PASSWORD="p", KEYBOT_PUBLISH="0.0.0.0")["services"]["bot"]["ports"]
    assert everywhere == "0.0.0.0:3000:3000"


def test_compose_sets_only_variables_settings_reads_and_the_ports_match():
    compose = compose_file(POSTGRES_PASSWORD="p")
    bot = compose["services"]["bot"]
    environment = {k: str(v) for k, v in bot["environment"].items()}
    settings, read = settings_read(environment)
    assert set(environment) <= read
    assert make_url(settings.database_url).get_backend_name() == "postgresql"
    assert make_url(settings.database_url).host in compose["services"]
    assert compose["services"]["db"]["image"] == "postgres:16"
    (volume,) = compose["services"]["db"]["volumes"]
    assert volume.split(":")[0] in compose["volumes"]  # a named volume, not a bind mount

    (published,) = bot["ports"]
    container_port = int(published.split(":")[-1])
    assert settings.bind == "0.0.0.0"  # inside the container: reachable through the published port
    exposed = int(re.search(r"^EXPOSE (\d+)", dockerfile(), re.MULTILINE).group(1))
    image_port = int(re.search(r"PORT=(\d+)", dockerfile()).group(1))
    assert container_port == settings.port == exposed == image_port == Settings.port


def test_env_example_names_only_variables_settings_reads():
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    _, read = settings_read({})
    assert set(names) <= read
    assert {"KEYBOT_HEARTBEAT_URL", "KEYBOT_METRICS_TOKEN", "KEYBOT_WEEKLY_SUMMARY", "LOG_FORMAT"} <= set(names)
