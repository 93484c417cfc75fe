"""The layering of docs/ARCHITECTURE.md, checked by parsing imports: Slack → services → rules and storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLACK = ("slack_bolt", "slack_sdk", "bot.slack")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in sorted(imports_of(path))
        if name.startswith(forbidden)
    ]


def files(*patterns: str) -> list[Path]:
    found = [p for pattern in patterns for p in ROOT.glob(pattern)]
    assert found, f"nothing matches {patterns}"
    return found


def test_rules_are_pure():
    assert offending(files("bot/rules.py"), (*SLACK, "storage", "sqlalchemy", "bot.services", "bot.config")) == []


@pytest.mark.parametrize("layer", ["bot/services/**/*.py", "storage/**/*.py"])
def test_services_and_storage_never_import_slack(layer):
    assert offending(files(layer), SLACK) == []


def test_storage_does_not_reach_up_into_the_bot():
    assert offending(files("storage/**/*.py"), ("bot",)) == []


def test_coupang_client_knows_nothing_of_slack_or_storage():
    assert offending(files("bot/coupang.py"), (*SLACK, "storage", "sqlalchemy")) == []


def test_rollout_destinations_know_nothing_of_slack_or_storage():
    assert offending(files("bot/destinations.py"), (*SLACK, "storage", "sqlalchemy")) == []


def test_translations_know_nothing_of_slack_storage_or_services():
    assert offending(files("bot/i18n.py"), (*SLACK, "storage", "sqlalchemy", "bot.services", "bot.config")) == []
