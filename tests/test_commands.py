"""The slash-command router: unknown words get help, refusals and crashes get a sentence, never a traceback."""

from __future__ import annotations

import logging

from slack_bolt import BoltContext

from bot.rules import KeybotError
from bot.slack.commands import CommandRouter
from bot.slack.failures import BROKEN, later


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)


class Languages:
    team = "en"

    def of(self, user_id: str | None) -> str:
        return "en"


def run(router: CommandRouter, text: str) -> tuple[Recorder, Recorder, BoltContext]:
    ack, respond, context = Recorder(), Recorder(), BoltContext()
    body = {"text": text, "user_id": "U1", "channel_id": "C1", "trigger_id": "t", "response_url": "http://x"}
    router.handle_command(ack, body, client=None, respond=respond, context=context)
    return ack, respond, context


def test_unknown_subcommand_answers_help_with_a_hint():
    router = CommandRouter(Languages())
    router.add("status", "status", "keys", lambda *a: None)
    ack, _, _ = run(router, "stauts A00012345")
    assert "I don't know 'stauts'" in ack.calls[0]["text"]
    assert "/coupang-key status" in ack.calls[0]["text"]


def test_refusal_is_acknowledged_with_its_sentence():
    def refuse(request, ack, client, respond, context):
        raise KeybotError("Only admins may do this.")

    router = CommandRouter(Languages())
    router.add("add", "add", "register", refuse)
    ack, respond, _ = run(router, "add")
    assert ack.calls == [{"text": ":warning: Only admins may do this.", "response_type": "ephemeral"}]
    assert respond.calls == []


def test_a_crash_after_ack_replaces_the_answer_and_cancels_what_was_queued(caplog):
    """The answer goes out when the handler returns, so a crash after ack() still answers in it, without a
    traceback, and the modal the handler had queued for after the answer is not opened."""
    opened = []

    def crash(request, ack, client, respond, context):
        ack()
        later(context, opened.append, "modal")
        raise RuntimeError("database exploded at line 42")

    router = CommandRouter(Languages())
    router.add("status", "status", "keys", crash)
    with caplog.at_level(logging.ERROR):
        ack, respond, context = run(router, "status")
    assert ack.calls[-1] == {"text": BROKEN, "response_type": "ephemeral"} and respond.calls == []
    for run_later in router.after_ack:
        run_later(body={}, client=None, respond=respond, context=context)
    assert opened == []
    assert "exploded" not in BROKEN
    assert any(record.exc_info for record in caplog.records)


def test_only_subcommands_without_follow_up_are_answered_by_the_listener_without_a_lazy_part(caplog):
    """Status answers alone (nothing copied or run after it); a sub-command that opens a modal must not be
    routed there, and one that queues work by mistake is refused loudly instead of dropping that work."""
    router = CommandRouter(Languages())
    router.add("status", "status", "keys", lambda request, ack, *rest: ack(text="page"), follow_up=False)
    router.add("add", "add", "register", lambda request, ack, client, respond, context: ack())

    def sneaky(request, ack, client, respond, context):
        ack()
        later(context, print, "lost")

    router.add("history", "history", "events", sneaky, follow_up=False)
    assert router.answers_alone({"text": "status"}) and router.answers_alone({"text": "상태"})
    assert router.answers_alone({"text": "stauts"})  # the help text is an answer too
    assert not router.answers_alone({"text": "add"})
    with caplog.at_level(logging.ERROR):
        ack, _, context = run(router, "history")
    assert ack.calls[-1] == {"text": BROKEN, "response_type": "ephemeral"}
    assert "queued work after the answer" in caplog.text
