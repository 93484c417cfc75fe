"""``/coupang-key``: one slash command, many sub-commands. Feature modules add theirs to the router."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.i18n import N_, parse_language, render, t
from bot.rules import KeybotError, quote
from bot.services.languages import LanguageService
from bot.slack import ids
from bot.slack.failures import BROKEN, after_ack, cancel_later, has_later

logger = logging.getLogger(__name__)

# INTERFACE.md: Korean words work as sub-commands too
KOREAN_SUBCOMMANDS = {
    "상태": "status",
    "등록": "add",
    "수정": "edit",
    "재발급": "reissue",
    "확인": "verify",
    "이력": "history",
    "감사": "audit",
    "승인자": "approvers",
    "삭제": "delete",
    "사용처": "consumers",  # the systems that hold a key (키 사용처); help shows this word
    "연동": "consumers",  # the older word, kept working: it reads like WING's 연동 정보, so help no longer shows it
    "언어": "language",
    "도움말": "help",
}


@dataclass(frozen=True)
class CommandRequest:
    """A parsed ``/coupang-key`` invocation."""

    user_id: str
    channel_id: str
    trigger_id: str
    name: str  # the sub-command, lower-cased and in English ("" when none was typed)
    args: tuple[str, ...]
    response_url: str | None
    lang: str = "en"  # the language the caller reads (their choice, else KEYBOT_LANGUAGE)


def parse_command(body: dict[str, Any]) -> CommandRequest:
    words = (body.get("text") or "").split()
    return CommandRequest(
        user_id=body.get("user_id", ""),
        channel_id=body.get("channel_id", ""),
        trigger_id=body.get("trigger_id", ""),
        name=KOREAN_SUBCOMMANDS.get(words[0], words[0].lower()) if words else "",
        args=tuple(words[1:]),
        response_url=body.get("response_url"),
    )


# handler(request, ack, client, respond, context): it answers with ack(...) from the database alone, and hands
# calls to Slack or Coupang to failures.later(context, ...), which runs them once the answer is out
SubcommandHandler = Callable[[CommandRequest, Ack, WebClient, Respond, BoltContext], None]


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    handler: SubcommandHandler
    follow_up: bool  # it may hand work to later(); False: its answer is all it does


class CommandRouter:
    """``app.command(ids.COMMAND)(ack=router.handle_command, lazy=router.after_ack)``, and, for the sub-commands
    that only answer (status, history…), the same without ``lazy``: Bolt copies every request it starts a lazy
    listener for, which the hot path should not pay for nothing."""

    def __init__(self, languages: LanguageService) -> None:
        self._subcommands: dict[str, Subcommand] = {}
        self.language_of = languages.of
        self.after_ack = after_ack(languages)

    def add(self, name: str, usage: str, summary: str, handler: SubcommandHandler, *, follow_up: bool = True) -> None:
        self._subcommands[name] = Subcommand(name, usage, summary, handler, follow_up)

    def answers_alone(self, body: dict[str, Any]) -> bool:
        """Bolt listener matcher: the sub-command (or unknown word) is answered in full by ``ack``."""
        subcommand = self._subcommands.get(parse_command(body).name)
        return subcommand is None or not subcommand.follow_up

    def help_text(self, lang: str, hint: str | None = None) -> str:
        lines = [f"`{ids.COMMAND} {t(lang, s.usage)}` — {t(lang, s.summary)}" for s in self._subcommands.values()]
        head = f"{hint}\n\n" if hint else ""
        return head + t(lang, "*Coupang key bot*") + "\n" + "\n".join(lines)

    def handle_command(
        self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        request = parse_command(body)
        lang = self.language_of(request.user_id)
        request = replace(request, lang=lang)
        subcommand = self._subcommands.get(request.name)
        if subcommand is None:
            hint = t(lang, "I don't know {word}.", word=quote(request.name)) if request.name else None
            ack(text=self.help_text(lang, hint), response_type="ephemeral")
            return
        try:
            subcommand.handler(request, ack, client, respond, context)
            if not subcommand.follow_up and has_later(context):  # its listener has no lazy part to run them
                raise RuntimeError(f"/coupang-key {subcommand.name} queued work after the answer: add it follow_up")
            return
        except KeybotError as error:
            text = f":warning: {render(request.lang, error.msg)}"
        except Exception:
            logger.exception("/coupang-key %s failed", request.name)
            text = t(request.lang, BROKEN)
        cancel_later(context)
        ack(text=text, response_type="ephemeral")  # not sent yet: it replaces whatever the handler acknowledged


def register(router: CommandRouter, choose_language: Callable[[str, str], None]) -> None:
    def language(request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext) -> None:
        if not request.args:
            current = t(
                request.lang,
                "I answer you in English. Change it with `{command} language ko` (or `언어 ko`).",
                command=ids.COMMAND,
            )
            ack(text=current, response_type="ephemeral")
            return
        chosen = parse_language(request.args[0])
        if chosen is None:
            raise KeybotError(N_("Usage: `{command} language en|ko` (or `언어 ko`)."), command=ids.COMMAND)
        choose_language(request.user_id, chosen)
        ack(text=t(chosen, ":white_check_mark: From now on I answer you in English."), response_type="ephemeral")

    def help(request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext) -> None:
        ack(text=router.help_text(request.lang))

    usage, summary = N_("language en|ko"), N_("your own language for replies, forms and App Home")
    router.add("language", usage, summary, language, follow_up=False)
    router.add("help", N_("help"), N_("this help"), help, follow_up=False)
