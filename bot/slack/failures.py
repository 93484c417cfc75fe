"""How every Slack listener answers within Slack's 3 seconds, does its slow part afterwards, and fails with a
sentence, in one place.

- The app runs with Bolt's ``process_before_response``: a listener runs in the request's own thread and its
  ``ack(...)`` is the HTTP answer, sent when the listener returns (no 10 ms polling for ``ack()``). So a listener
  answers from the database only; whatever calls Slack or Coupang after that it hands to :func:`later`, and
  :func:`after_ack` (Bolt's ``lazy=``) runs those steps once the answer is out.
- Every database wait of a request ends by :data:`DATABASE_SECONDS` after the request arrived (``KeybotApp.dispatch``
  and :class:`DeadlineExecutor` for the steps after it, :func:`storage.db.deadline`): the time it queued for a
  thread counts, so a request that queued too long is refused at its first wait. The arrival is the request
  context's :data:`ARRIVED` (gunicorn's worker stamps it, :mod:`bot.http_worker`; Socket Mode when the envelope
  came). A wait that runs out is the service's ``Unavailable`` refusal ("the database is busy — nothing was
  saved, try again"), shown like any refusal.
- :func:`handle_listener_error` (Bolt's ``app.error``, and :func:`after_ack` for the steps) answers what no listener
  caught — the database down, a bug — with a sentence: under the form for a modal submission (not an empty HTTP
  500), in the answer to a slash command, privately otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from slack_bolt import BoltContext, BoltResponse, Respond
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot import rules
from bot.i18n import N_, t
from bot.rules import KeybotError
from bot.services.languages import LanguageService
from bot.slack import views
from storage.db import deadline

logger = logging.getLogger(__name__)

# Slack gives up 3 s after sending; database waits end 2 s after the request arrived, so the answer (done or
# "busy") is out by 2.5 s, however long the request queued for a thread.
DATABASE_SECONDS = 2.0
ARRIVED = "keybot.arrived"  # WSGI environ and Bolt request context: when the request arrived (time.monotonic())
BROKEN = N_(
    ":x: Something went wrong on the bot's side and nothing was changed. It is logged; try again or ask an admin."
)
DATABASE_FAILED = N_(
    ":x: The bot could not use its database — nothing was saved. Try again in a minute; if it keeps failing, "
    "ask an admin to check the bot's logs."
)


class DeadlineExecutor(Executor):
    """Bolt's executor for lazy listeners, each under a fresh :data:`DATABASE_SECONDS` for its database waits:
    someone is waiting for what it sends (a modal, a private note). Work of the bot's own that may wait on Slack
    first (a rate-limited post, then recording it) lifts it with :func:`storage.db.lift_deadline`."""

    def __init__(self, inner: Executor | None = None) -> None:
        self._inner = inner or ThreadPoolExecutor(max_workers=10, thread_name_prefix="listener")  # Bolt's default

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def bounded() -> Any:
            with deadline(DATABASE_SECONDS):
                return fn(*args, **kwargs)

        return self._inner.submit(bounded)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


_LATER = "keybot_later"


class _Steps(list[Callable[[], Any]]):
    """Bolt deep-copies a request's context for its lazy listeners; the queued steps stay the same objects."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Steps:
        return self


def later(context: BoltContext, step: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    """Run ``step(*args, **kwargs)`` after Slack has the answer: a listener's calls to Slack or Coupang go here.
    Steps run in order; the first that fails is answered like any listener failure and ends the rest."""
    steps = context.get(_LATER)
    if steps is None:
        steps = context[_LATER] = _Steps()
    steps.append(partial(step, *args, **kwargs))


def has_later(context: BoltContext) -> bool:
    return bool(context.get(_LATER))


def cancel_later(context: BoltContext) -> None:
    """The listener was refused after all: nothing it queued runs."""
    context.pop(_LATER, None)


def after_ack(languages: LanguageService) -> list[Callable[..., None]]:
    """Bolt's ``lazy=`` for a listener that uses :func:`later`: ``app.action(X)(ack=listener, lazy=after_ack(…))``.
    Bolt logs a lazy listener's exception and drops it; here the person is told, in their language."""

    def run_later(body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext) -> None:
        for step in context.get(_LATER) or ():
            try:
                step()
            except Exception as error:  # noqa: BLE001 - answered like a listener's failure
                lang = reader_language(body, languages.of, languages.team)
                handle_listener_error(error, body, None, respond, client, lang=lang)
                return

    return [run_later]


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
    """``response`` is Bolt's pending answer while the listener runs (None for a step run by :func:`after_ack`,
    when the answer has gone out); ``lang`` is the language of the person who sent it (:func:`reader_language`)."""
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
            errors = {blocks[0]: rules.plain(text)}  # plain text under a field: nothing to escape
            return BoltResponse(status=200, body={"response_action": "errors", "errors": errors})
        notice = views.build_notice_modal(lang, text).to_dict()
        return BoltResponse(status=200, body={"response_action": "update", "view": notice})
    if body.get("command") and response is not None:  # a slash command's answer can say it
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
    # Slack shows nothing of the answer to a click or an event: say it privately, and answer 200 (no retry)
    if respond is not None and body.get("response_url"):
        respond(text=text, response_type="ephemeral", replace_original=False)
    elif body.get("trigger_id"):
        client.views_open(trigger_id=body["trigger_id"], view=views.build_notice_modal(lang, text))
    return BoltResponse(status=200, body="") if response is not None else None
