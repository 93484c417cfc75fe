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


def module_graph() -> dict[str, set[str]]:
    """Every module of bot/ and storage/ (migrations aside) and the ones of them it imports, anywhere in its body."""
    modules = {
        ".".join(path.with_suffix("").parts).removesuffix(".__init__"): ROOT / path
        for pattern in ("bot/**/*.py", "storage/**/*.py")
        for path in (p.relative_to(ROOT) for p in ROOT.glob(pattern))
        if "migrations" not in path.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from bot.slack import ids` names a module; `from bot.rules import Msg` not
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_module_imports_its_way_back_to_itself():
    """Import cycles (``cli`` ↔ ``serve``, ``reminders`` ↔ ``summary`` until now) hide which layer a module is in."""
    graph = module_graph()
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for target in graph[module]:
                if target == start:
                    cycles.append(" → ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert cycles == []
