"""Builds the Bolt app from settings and services: the one function tests, ``serve`` and the console call."""

from __future__ import annotations

import logging
from concurrent.futures import Executor

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from bot.bootstrap import Services
from bot.config import Settings
from bot.slack import commands, home, keys, reissue, rollout, verify

logger = logging.getLogger(__name__)


def build_client(settings: Settings, *, retry_handlers: list[RetryHandler] | None = None) -> WebClient:
    """Web API client at ``SLACK_API_URL`` retrying 429 (after Retry-After), 5xx and lost connections."""
    if retry_handlers is None:
        retry_handlers = [
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=retry_handlers)


def build_app(services: Services, *, client: WebClient | None = None, listener_executor: Executor | None = None) -> App:
    """``listener_executor``: the console passes one that runs listeners inline, so output is in order."""
    settings = services.ctx.settings
    app = App(
        client=client or build_client(settings),
        signing_secret=settings.slack_signing_secret or "socket-mode-has-no-signing-secret",
        token_verification_enabled=False,  # no auth.test call at start-up; tokens are checked by Slack per call
        logger=logging.getLogger("bot.slack.bolt"),
        listener_executor=listener_executor,
    )
    router = commands.CommandRouter()
    # Each listener module adds its listeners and sub-commands here.
    commands.register(app, router)
    keys.register(app, services, router)
    home.register(app, services)
    reissue.register(app, services, router)
    verify.register(app, services, router)
    rollout.register(app, services, router)
    return app
