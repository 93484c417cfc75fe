"""How every Slack listener meets Slack's 3-second deadline and fails with a sentence, in one place.

- :class:`DeadlineExecutor` runs each listener under :func:`storage.db.deadline`, so every database wait in it
  ends by :data:`DATABASE_SECONDS`; a wait that runs out is the service's ``Unavailable`` refusal ("the database
  is busy — nothing was saved, try again"), which listeners show like any refusal, under the form or privately.
- :func:`handle_listener_error` (Bolt's ``app.error``) answers what no listener caught — the database down, a bug
  — with a sentence: under the form for a modal submission (not an empty HTTP 500), privately otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import BoltResponse, Respond
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.i18n import N_, t
from bot.rules import KeybotError
from bot.slack import views
from bot.slack.commands import BROKEN
from storage.db import deadline

logger = logging.getLogger(__name__)

# Slack gives up after 3 s; database waits end by 2 s, so the answer (done or "busy") is out by 2.5 s.
DATABASE_SECONDS = 2.0
DATABASE_FAILED = N_(
    ":x: The bot could not use its database — nothing was saved. Try again in a minute; if it keeps failing, "
    "ask an admin to check the bot's logs."
)


class DeadlineExecutor(Executor):
    """Bolt's listener executor, with every listener's database waits bounded by :data:`DATABASE_SECONDS`."""

    def __init__(self, inner: Executor | None = None) -> None:
        self._inner = inner or ThreadPoolExecutor(max_workers=10, thread_name_prefix="listener")  # Bolt's default

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def bounded() -> Any:
            with deadline(DATABASE_SECONDS):
                return fn(*args, **kwargs)

        return self._inner.submit(bounded)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def reader_language(body: dict[str, Any], language_of: Callable[[str | None], str], team: str) -> str:
    """The language of the person who sent ``body``; the team's when the database cannot tell (it may be down)."""
    user = body.get("user")
    user_id = (user.get("id") if isinstance(user, dict) else None) or body.get("user_id")
    try:
        return language_of(user_id)
    except Exception:  # the very failure being reported; the team's language still reads
        return team


def handle_listener_error(
    error: Exception,
    body: dict[str, Any],
    response: BoltResponse | None,
    respond: Respond | None,
    client: WebClient,
    lang: str = "en",
) -> BoltResponse | None:
    """``response`` is Bolt's pending answer when the listener had not acknowledged yet (None once it had);
    ``lang`` is the language of the person who sent it (:func:`reader_language`)."""
    if isinstance(error, KeybotError):  # e.g. "the database is busy" where no listener shows refusals (App Home)
        logger.info("a Slack request was refused: %s", error)
        text = views.refusal_text(lang, error)
    elif isinstance(error, SQLAlchemyError):
        cause = getattr(error, "orig", None) or error
        logger.error("a Slack request failed on a database error: %s", type(cause).__name__)  # no SQL, no values
        text = t(lang, DATABASE_FAILED)
    else:
        logger.exception("a Slack request failed")
        text = t(lang, BROKEN)
    if body.get("type") == "view_submission" and response is not None:
        blocks = [b.get("block_id") for b in (body.get("view") or {}).get("blocks") or [] if b.get("type") == "input"]
        if blocks:
            return BoltResponse(status=200, body={"response_action": "errors", "errors": {blocks[0]: text}})
        notice = views.build_notice_modal(lang, text).to_dict()
        return BoltResponse(status=200, body={"response_action": "update", "view": notice})
    if response is not None:  # a command or click not acknowledged yet
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
    if respond is not None and body.get("response_url"):
        respond(text=text, response_type="ephemeral", replace_original=False)
    elif body.get("trigger_id"):
        client.views_open(trigger_id=body["trigger_id"], view=views.build_notice_modal(lang, text))
    return None
