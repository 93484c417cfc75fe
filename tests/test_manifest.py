"""manifest.yml is a valid Slack app manifest, wired to the one endpoint the bot serves."""

import json
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# CI places shared/ beside the clone; the committed copy keeps the test working anywhere else.
SCHEMA_CANDIDATES = (
    REPO.parent / "shared" / "slack-app-manifest.schema.json",
    REPO / "tests" / "data" / "slack-app-manifest.schema.json",
)
EVENTS_PATH = "/slack/events"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((REPO / "manifest.yml").read_text(encoding="utf-8"))


def load_schema() -> dict:
    path = next(p for p in SCHEMA_CANDIDATES if p.is_file())
    return json.loads(path.read_text(encoding="utf-8"))


def test_manifest_matches_slacks_schema(manifest: dict) -> None:
    schema = load_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)

    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator_class(schema).iter_errors(manifest)]

    assert errors == []


def test_slash_command_points_at_the_events_endpoint(manifest: dict) -> None:
    [command] = manifest["features"]["slash_commands"]

    assert command["command"] == "/coupang-key"
    assert urlsplit(command["url"]).path == EVENTS_PATH
    assert command["should_escape"] is True  # `approvers add @name` must arrive as a user ID
    for subcommand in ("status", "add", "reissue VENDOR_ID", "approvers", "help"):
        assert subcommand in command["usage_hint"]


def test_interactivity_and_events_share_the_endpoint(manifest: dict) -> None:
    settings = manifest["settings"]

    assert settings["interactivity"]["is_enabled"] is True
    assert urlsplit(settings["interactivity"]["request_url"]).path == EVENTS_PATH
    assert urlsplit(settings["event_subscriptions"]["request_url"]).path == EVENTS_PATH
    assert settings["socket_mode_enabled"] is False


def test_home_tab_is_enabled_and_subscribed(manifest: dict) -> None:
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["bot_user"]["always_online"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]


def test_bot_asks_for_exactly_the_scopes_it_uses(manifest: dict) -> None:
    scopes = manifest["oauth_config"]["scopes"]

    assert sorted(scopes["bot"]) == sorted(["commands", "chat:write", "usergroups:read", "users:read"])
    assert "user" not in scopes
