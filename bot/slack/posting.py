"""Posting a message exactly once despite lost answers: no blind retries, metadata, and a look in the history.

A post whose answer is lost (timeout, dropped connection, 5xx) may or may not be in the channel. Retrying it at
once, as ``slack_sdk``'s server-error and connection-error retry handlers would, posts it twice when it was. So
posts go through :func:`posting_client` (it retries only 429, which Slack sends before doing anything), carry
message metadata naming what they are, and a lost answer becomes :class:`bot.services.base.MaybePosted`; before
posting again, :func:`posted_since` finds the message in the channel's history (``channels:history`` /
``groups:history``). Only messages this bot posted count (their ``bot_id`` or ``user`` is the bot's own, from
``auth.test``): another app's message with the same metadata never stands in for ours.

Nor does a message of another installation of this bot (staging beside production in the same channels, a restored
backup): row IDs repeat across databases, so each post names the random claim ID stored with its claim
(:func:`bot.services.posts.new_claim_id`) and what it is about (the key and milestone, the request, the day), and a
message counts only when both match. A row claimed before claim IDs existed (``legacy…``, migration 0010) may have an
older message naming only its row ID: that counts only when the message is about the same key (and milestone).
The history is searched from the wall-clock time of the lost attempt, since Slack's ``ts`` are wall-clock.
"""

from __future__ import annotations

import functools
import http.client
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import ConnectionErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.web import SlackResponse

from bot.services.base import MaybePosted
from bot.services.posts import Claim, ScheduledPosts

logger = logging.getLogger(__name__)

HISTORY_PAGE = 200
MAX_HISTORY_PAGES = 25  # 5,000 messages since the lost attempt; beyond that the post is repeated
CLOCK_SKEW = timedelta(minutes=2)  # our clock against Slack's: search a little before the claim


# message metadata: {"claim": claim ID, "kind": ..., "day": "YYYY-MM-DD"}, a scheduled_posts row
SCHEDULED_EVENT_TYPE = "keybot_scheduled_post"

_AMBIGUOUS = (ServerErrorRetryHandler, ConnectionErrorRetryHandler)
# Slack's answers to a post in a channel that refuses the bot until a person acts (the app has chat:write but
# not chat:write.public, so it posts only where it was invited)
CHANNEL_REFUSALS = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


def posting_client(client: WebClient) -> WebClient:
    """``client`` without the retry handlers that would repeat a post Slack may already have made (5xx, a lost
    connection); 429 is still retried (Slack did nothing), and observers of Slack's answers still see them."""
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        retry_handlers=[h for h in client.retry_handlers if not isinstance(h, _AMBIGUOUS)],
    )


def post_once(client: WebClient, *, event_type: str, payload: dict[str, Any], **message: Any) -> SlackResponse:
    """``chat.postMessage`` tagged with metadata; raises MaybePosted when the answer was lost."""
    try:
        return client.chat_postMessage(**message, metadata={"event_type": event_type, "event_payload": payload})
    except SlackApiError as exc:
        if exc.response.status_code >= 500:
            raise MaybePosted(f"Slack answered HTTP {exc.response.status_code}") from exc
        raise
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets and dropped connections
        raise MaybePosted(f"no answer from Slack: {exc.__class__.__name__}") from exc


@functools.cache
def own_identity(base_url: str, token: str | None) -> tuple[str | None, str | None]:
    """(bot ID, bot user ID) of ``token``: ``auth.test``, asked once per token and process (a failure is not
    remembered: the next lookup asks again)."""
    answer = WebClient(token=token, base_url=base_url).auth_test()
    identity = (answer.get("bot_id"), answer.get("user_id"))
    if not any(identity):
        raise RuntimeError("auth.test named neither a bot nor a user: cannot tell this bot's posts apart")
    return identity


def _posted_by(message: dict[str, Any], identity: tuple[str | None, str | None]) -> bool:
    bot_id, user_id = identity
    return bool((bot_id and message.get("bot_id") == bot_id) or (user_id and message.get("user") == user_id))


def conversation_of(client: WebClient, channel: str) -> str:
    """The conversation a post to ``channel`` lands in: a user ID (a direct message) becomes the bot's DM with
    that person (``conversations.open``, ``im:write``), since Slack keeps no history under a user ID."""
    if channel[:1] not in ("U", "W"):
        return channel
    return str(client.conversations_open(users=channel)["channel"]["id"])


def posted_since(
    client: WebClient, channel: str, since: datetime, event_type: str, *, thread_ts: str | None = None
) -> Iterator[tuple[dict, str, dict]]:
    """(event payload, ts, the message) of each message with ``event_type`` metadata this bot posted to ``channel``
    since ``since``, a wall-clock time (messages of other apps and people are ignored, whatever their metadata).
    ``thread_ts``: look in that thread instead, since the channel's history does not show replies in threads. A user
    ID is looked up in the bot's DM with that person (:func:`conversation_of`, then ``im:history``).

    Yields nothing when Slack refuses to show the history (e.g. the app was not reinstalled with the history
    scopes, or the channel is a DM): the caller then posts again, as it did before it could look. Network errors
    and 5xx propagate, so the caller can try again later instead of guessing.
    """
    identity = own_identity(client.base_url, client.token)
    cursor = None
    oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
    for _ in range(MAX_HISTORY_PAGES):
        try:
            channel = conversation_of(client, channel)
            window: dict[str, Any] = {"oldest": oldest, "limit": HISTORY_PAGE, "cursor": cursor}
            window["include_all_metadata"] = True
            if thread_ts is None:
                page = client.conversations_history(channel=channel, **window)
            else:
                page = client.conversations_replies(channel=channel, ts=thread_ts, **window)
        except SlackApiError as exc:
            if exc.response.status_code >= 500:
                raise
            logger.warning(
                "Cannot read the history of %s (%s): a post whose answer was lost is posted again",
                channel,
                exc.response.get("error"),
            )
            return
        for message in page.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == event_type and _posted_by(message, identity):
                yield metadata.get("event_payload") or {}, str(message["ts"]), message
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not (page.get("has_more") and cursor):
            return
    logger.warning(
        "More than %d messages in %s since %s: stopped looking", HISTORY_PAGE * MAX_HISTORY_PAGES, channel, since
    )


def post_claimed(posts: ScheduledPosts, client: WebClient, claim: Claim, channel: str, **message: Any) -> None:
    """Make a claimed scheduled post (:mod:`bot.services.posts`) once: after an attempt that lost its answer,
    look for it in ``channel``'s history (or the thread it replies in) first; on failure release the claim for a
    later sweep and raise. A message of an older version (``{"post_id": N}``) says nothing a second
    installation's would not: it never counts, the post is made again."""
    poster = posting_client(client)
    payload = {"claim": claim.claim_id, "kind": claim.kind, "day": claim.day.isoformat()}
    try:
        if claim.unsure_since is not None:  # a wall-clock time
            thread_ts = message.get("thread_ts")
            for found, ts, _ in posted_since(
                poster, channel, claim.unsure_since, SCHEDULED_EVENT_TYPE, thread_ts=thread_ts
            ):
                if found == payload:
                    logger.info("The %s post of %s was made already (ts %s): not again", claim.kind, claim.day, ts)
                    posts.delivered(claim, channel=channel, ts=ts, found=True)
                    return
        answer = post_once(poster, event_type=SCHEDULED_EVENT_TYPE, payload=payload, channel=channel, **message)
    except Exception as exc:
        posts.failed(claim, unsure=isinstance(exc, MaybePosted))
        raise
    posts.delivered(claim, channel=channel, ts=str(answer["ts"]))
