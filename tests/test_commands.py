"""The slash-command router: unknown words get help, refusals and crashes get a sentence, never a traceback."""

from __future__ import annotations

import logging

from bot.rules import KeybotError
from bot.slack.commands import BROKEN, CommandRouter


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)


def run(router: CommandRouter, text: str) -> tuple[Recorder, Recorder]:
    ack, respond = Recorder(), Recorder()
    body = {"text": text, "user_id": "U1", "channel_id": "C1", "trigger_id": "t", "response_url": "http://x"}
    router.handle_command(ack, body, client=None, respond=respond)
    return ack, respond


def test_unknown_subcommand_answers_help_with_a_hint():
    router = CommandRouter()
    router.add("status", "status", "keys", lambda *a: None)
    ack, _ = run(router, "stauts A00012345")
    assert "I don't know 'stauts'" in ack.calls[0]["text"]
    assert "/coupang-key status" in ack.calls[0]["text"]


def test_refusal_is_acknowledged_with_its_sentence():
    def refuse(request, ack, client, respond):
        raise KeybotError("Only admins may do this.")

    router = CommandRouter()
    router.add("add", "add", "register", refuse)
    ack, respond = run(router, "add")
    assert ack.calls == [{"text": ":warning: Only admins may do this.", "response_type": "ephemeral"}]
    assert respond.calls == []


def test_a_crash_after_ack_is_logged_and_answered_without_a_traceback(caplog):
    def crash(request, ack, client, respond):
        ack()
        raise RuntimeError("database exploded at line 42")

    router = CommandRouter()
    router.add("status", "status", "keys", crash)
    with caplog.at_level(logging.ERROR):
        ack, respond = run(router, "status")
    assert respond.calls == [{"text": BROKEN, "response_type": "ephemeral"}]
    assert "exploded" not in BROKEN
    assert any(record.exc_info for record in caplog.records)
