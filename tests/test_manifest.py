"""manifest.yml is a valid Slack app manifest, wired to the one endpoint the bot serves."""

import json
import re
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


# The bot-token scope(s) each Web API method the bot calls needs (None: no scope). A call the bot starts making
# that is not listed here fails the test below, so the manifest cannot silently fall behind the code.
SCOPE_OF: dict[str, str | tuple[str, ...] | None] = {
    "chat_postMessage": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_update": "chat:write",
    "usergroups_users_list": "usergroups:read",
    "users_info": "users:read",
    "conversations_info": "channels:read",
    # reading back its own posts whose answer was lost, in public and private channels and direct messages
    "conversations_history": ("channels:history", "groups:history", "im:history"),
    "conversations_replies": ("channels:history", "groups:history", "im:history"),  # replies in a thread
    "conversations_open": "im:write",  # the direct message with a person, whose history that is
    "views_open": None,
    "views_update": None,
    "views_push": None,
    "views_publish": None,
}
API_FAMILIES = ("chat", "views", "users", "usergroups", "conversations", "reactions", "files", "im", "apps")


def web_api_calls() -> set[str]:
    """Every ``client.<family>_<method>`` the Slack-facing code calls, or hands to ``later()`` to call after the
    answer (the console only draws, never calls)."""
    pattern = re.compile(rf"\bclient\.((?:{'|'.join(API_FAMILIES)})_\w+)\b")
    return {
        name
        for path in (REPO / "bot").rglob("*.py")
        if "console" not in path.parts
        for name in pattern.findall(path.read_text(encoding="utf-8"))
    }


def test_bot_asks_for_exactly_the_scopes_it_uses(manifest: dict) -> None:
    calls = web_api_calls()
    assert {"chat_postMessage", "views_open", "usergroups_users_list"} <= calls  # the scan finds real calls
    unknown = calls - set(SCOPE_OF)
    assert not unknown, f"add the scopes of {sorted(unknown)} to SCOPE_OF and manifest.yml"
    needed = {"commands"}
    for call in calls:
        scope = SCOPE_OF[call]
        needed |= {scope} if isinstance(scope, str) else set(scope or ())
    scopes = manifest["oauth_config"]["scopes"]
    assert sorted(scopes["bot"]) == sorted(needed)
    assert "user" not in scopes


def test_bot_messages_are_visible_in_its_messages_tab(manifest: dict) -> None:
    """Confirmations for actions taken in App Home are sent as direct messages, which need the tab."""
    app_home = manifest["features"]["app_home"]
    assert app_home["messages_tab_enabled"] is True
    assert app_home["messages_tab_read_only_enabled"] is True


def test_the_app_directory_text_is_korean_first_and_names_wings_words(manifest: dict) -> None:
    long_description = manifest["display_information"]["long_description"]
    assert long_description.startswith("쿠팡 Open API 키")
    for wing_word in ("판매자정보", "재발급", "발급", "Invalid signature", "Not allowed IP"):
        assert wing_word in long_description
    [command] = manifest["features"]["slash_commands"]
    assert "language ko|en" in command["usage_hint"] and "도움말" in command["usage_hint"]
