"""``/coupang-key``: one slash command, many sub-commands. Feature modules add theirs to the router."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.rules import KeybotError, quote
from bot.slack import ids

logger = logging.getLogger(__name__)

BROKEN = ":x: Something went wrong on the bot's side and nothing was changed. It is logged; try again or ask an admin."


@dataclass(frozen=True)
class CommandRequest:
    """A parsed ``/coupang-key`` invocation."""

    user_id: str
    channel_id: str
    trigger_id: str
    name: str  # the sub-command, lower-cased ("" when none was typed)
    args: tuple[str, ...]
    response_url: str | None


def parse_command(body: dict[str, Any]) -> CommandRequest:
    words = (body.get("text") or "").split()
    return CommandRequest(
        user_id=body.get("user_id", ""),
        channel_id=body.get("channel_id", ""),
        trigger_id=body.get("trigger_id", ""),
        name=words[0].lower() if words else "",
        args=tuple(words[1:]),
        response_url=body.get("response_url"),
    )


# handler(request, ack, client, respond); it must call ack itself (modals ack first, status acks with content)
SubcommandHandler = Callable[[CommandRequest, Ack, WebClient, Respond], None]


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    handler: SubcommandHandler


class CommandRouter:
    def __init__(self) -> None:
        self._subcommands: dict[str, Subcommand] = {}

    def add(self, name: str, usage: str, summary: str, handler: SubcommandHandler) -> None:
        self._subcommands[name] = Subcommand(name, usage, summary, handler)

    def help_text(self, hint: str | None = None) -> str:
        lines = [f"`{ids.COMMAND} {s.usage}` — {s.summary}" for s in self._subcommands.values()]
        head = f"{hint}\n\n" if hint else ""
        return head + "*Coupang key bot*\n" + "\n".join(lines)

    def handle_command(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        request = parse_command(body)
        subcommand = self._subcommands.get(request.name)
        if subcommand is None:
            hint = f"I don't know {quote(request.name)}." if request.name else None
            ack(text=self.help_text(hint), response_type="ephemeral")
            return
        acked = False

        def tracking_ack(*args: Any, **kwargs: Any) -> Any:
            nonlocal acked
            acked = True
            return ack(*args, **kwargs)

        try:
            subcommand.handler(request, tracking_ack, client, respond)
        except KeybotError as error:
            reply = {"text": f":warning: {error}", "response_type": "ephemeral"}
        except Exception:
            logger.exception("/coupang-key %s failed", request.name)
            reply = {"text": BROKEN, "response_type": "ephemeral"}
        else:
            return
        if acked:
            respond(**reply)
        else:
            ack(**reply)


def register(app: App, router: CommandRouter) -> None:
    router.add("help", "help", "this help", lambda req, ack, client, respond: ack(text=router.help_text()))
    app.command(ids.COMMAND)(router.handle_command)
