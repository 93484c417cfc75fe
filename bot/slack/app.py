"""Builds the Bolt app from settings and services: the one function tests, ``serve`` and the console call."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import build_headers, send_response
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.bootstrap import Services
from bot.config import Settings
from bot.logs import bind_log_fields
from bot.monitor import Monitor
from bot.slack import commands, home, ids, keys, reissue, rollout, verify
from bot.slack.failures import ARRIVED, DATABASE_SECONDS, DeadlineExecutor, handle_listener_error, reader_language
from storage.db import deadline

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


class SlackAnswerObserver(RetryHandler):
    """Sees every Web API answer (slack_sdk shows each one to the retry handlers) and never retries itself.

    Errors are counted by method for ``/metrics``; an auth error such as ``invalid_auth`` turns ``/healthz`` to 503
    until Slack answers a call successfully again.
    """

    def __init__(self, monitor: Monitor):
        super().__init__(max_retry_count=0)
        self.monitor = monitor

    def can_retry(self, *, state: Any, request: Any, response: Any = None, error: Exception | None = None) -> bool:
        method = urlsplit(request.url).path.rsplit("/", 1)[-1]
        if response is None:
            self.monitor.slack_answered(method, error.__class__.__name__ if error else "no_answer")
        elif response.status_code != 200:
            self.monitor.slack_answered(method, "ratelimited" if response.status_code == 429 else "http_error")
        elif isinstance(response.body, dict) and "ok" in response.body:
            self.monitor.slack_answered(method, None if response.body["ok"] else str(response.body.get("error")))
        return False

    def _can_retry(self, **kwargs: Any) -> bool:
        return False

    def __deepcopy__(self, memo: dict[int, Any]) -> SlackAnswerObserver:
        """Bolt deep-copies the client for lazy listeners; their answers count in this process's one Monitor."""
        return self


def observe_answers(client: WebClient, monitor: Monitor) -> None:
    """Put the observer first, so it sees the answers the other handlers retry too."""
    if not any(isinstance(h, SlackAnswerObserver) for h in client.retry_handlers):
        client.retry_handlers.insert(0, SlackAnswerObserver(monitor))


class ContextPool(ThreadPoolExecutor):
    """Bolt's listener pool, but each listener runs in the context of the request that queued it (log fields)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def bind_request_ids(body: dict[str, Any], context: BoltContext, next: Callable[[], BoltResponse]) -> BoltResponse:
    """JSON log lines of this request carry its Slack trigger or event id and the user (``LOG_FORMAT=json``)."""
    fields = {"request_id": body.get("trigger_id") or body.get("event_id"), "user_id": context.user_id}
    bind_log_fields(**{k: str(v) for k, v in fields.items() if v})  # Bolt's next() returns before the listener runs
    return next()


class _ClientCarriesToken(logging.Filter):
    """Bolt warns "`token` will be unused" whenever SLACK_BOT_TOKEN is set and a client is given: ours carries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


BOLT_LOGGER = logging.getLogger("bot.slack.bolt")
BOLT_LOGGER.addFilter(_ClientCarriesToken())


class KeybotApp(App):
    """Bolt's app, with the database waits of each request (signature check to answer) ending 2 s after it arrived
    (its context's ``ARRIVED``, else now)."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        with deadline(DATABASE_SECONDS, since=req.context.get(ARRIVED)):
            return super().dispatch(req)


_envelope_arrived: contextvars.ContextVar[float | None] = contextvars.ContextVar("keybot_envelope", default=None)


class _StampArrivals(Executor):
    """Socket Mode's message workers: each envelope's handling knows when the envelope was taken off the WebSocket
    (the client's reader hands it over at once), however long it then queued for one of the workers."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        context.run(_envelope_arrived.set, time.monotonic())
        return self._inner.submit(context.run, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


class KeybotSocketModeHandler(SocketModeHandler):
    """Bolt's Socket Mode handler, with each envelope's database budget counted from its arrival (``ARRIVED``)."""

    def __init__(self, app: App, app_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, app_token, **kwargs)
        self.client.message_workers = _StampArrivals(self.client.message_workers)  # type: ignore[assignment]

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.time()  # Bolt's own handle, with the arrival in the request's context
        context = {ARRIVED: _envelope_arrived.get()}
        bolt_request = BoltRequest(mode="socket_mode", body=req.payload, headers=build_headers(req), context=context)
        send_response(client, req, self.app.dispatch(bolt_request), started)


def build_app(services: Services, *, client: WebClient | None = None, listener_executor: Executor | None = None) -> App:
    """``listener_executor`` runs what listeners do after answering (lazy listeners); the console passes one that
    runs it inline, so output is in order."""
    settings = services.ctx.settings
    client = client or build_client(settings)
    observe_answers(client, services.monitor)
    app = KeybotApp(
        client=client,
        signing_secret=settings.slack_signing_secret or "socket-mode-has-no-signing-secret",
        token_verification_enabled=False,  # no auth.test call at start-up; tokens are checked by Slack per call
        logger=BOLT_LOGGER,
        process_before_response=True,  # ack() is the HTTP answer; slow work goes to lazy listeners (failures.py)
        listener_executor=DeadlineExecutor(listener_executor or ContextPool(max_workers=5)),
    )

    @app.error
    def handle_error(
        error: Exception,
        body: dict[str, Any],
        response: BoltResponse | None,
        respond: Respond | None,
        client: WebClient,
    ) -> BoltResponse | None:
        lang = reader_language(body, services.languages.of, services.languages.team)
        return handle_listener_error(error, body, response, respond, client, lang=lang)

    app.use(bind_request_ids)
    router = commands.CommandRouter(services.languages)
    # first, as Bolt tries listeners in order: /coupang-key, without a lazy listener when the answer is all
    app.command(ids.COMMAND, matchers=[router.answers_alone])(router.handle_command)
    app.command(ids.COMMAND)(ack=router.handle_command, lazy=router.after_ack)
    # Each listener module adds its listeners and sub-commands here.
    keys.register(app, services, router)
    home.register(app, services)
    reissue.register(app, services, router)
    verify.register(app, services, router)
    rollout.register(app, services, router)
    commands.register(router, services.languages.choose)  # language and help close the help text
    return app
