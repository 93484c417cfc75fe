"""End-to-end harness: the real Bolt app behind the real WSGI stack on loopback, talking to a FakeSlack.

Fixtures (registered in tests/conftest.py):

- ``fake_slack`` — a started :class:`tests.fake_slack.FakeSlack`, the bot invited to :data:`INVITED_CHANNELS`.
- ``slack`` — a started :class:`SlackHarness` on the ``services`` fixture's database (so SQLite and PostgreSQL),
  Web API client pointed at ``fake_slack`` with fast retry handlers. ``slack.services`` is that ``services``
  object, ``slack.fake`` the fake. Its settings gain a signing secret, a bot token and ``SLACK_API_URL``.

Sending (every helper returns a :class:`Response`: ``status``, ``headers``, ``text``, ``json()``):

- ``slack.slash(user, text, channel=...)`` — a signed ``/coupang-key`` slash command (form-encoded, fresh
  ``trigger_id`` from the fake, ``response_url`` pointing at the fake). What ``ack()`` carried is in the response:
  ``slack.slash(...).json()["blocks"]`` / ``["text"]``; ``Response.text_of()`` flattens it to text.
- ``slack.click(user, action_id, value, block_id=..., container=...)`` — a signed ``block_actions`` click on a
  button in a message (default), in App Home (``container="home"``) or in a modal (``view={...}``).
- ``slack.submit(user, callback_id, values, private_metadata=..., view=...)`` — a signed ``view_submission``.
  ``values`` is either friendly ``{block_id: value}`` (str for text inputs, ``date``/``"YYYY-MM-DD"`` for date
  pickers, IDs for channel/user pickers, option value for radio buttons/static selects, list for multi-selects;
  element types come from ``view``, by default the last modal opened with that ``callback_id``; blocks left out
  keep their initial value, as in Slack, or are sent empty), or raw state ``{block_id: {action_id: {...}}}``.
  ``private_metadata`` defaults to the opened modal's. Each submission gets a new view hash and, unless
  ``view_id`` is given (the same form submitted again after an error), a new view id.
- ``slack.home_opened(user)`` — a signed ``app_home_opened`` event.
- ``slack.event(event)`` — any signed ``event_callback``.
- ``slack.raw_post(body, headers)`` — anything you like to ``/slack/events`` (forged or stale signatures).
- ``slack.last_signed`` — ``(body, headers)`` of the last signed request; ``slack.replay()`` sends it again,
  byte for byte (same signature).
- ``slack.signed_headers(body, timestamp=None)`` — the headers Slack would send for ``body``.
- ``slack.get(path)`` — e.g. ``slack.get("/healthz")``; ``slack.post(path, body, headers)`` — e.g. ``/rollout/confirm``.
- ``slack.ops_get(path)`` — a GET on the ops listener (``KEYBOT_OPS_ADDR``, started on first use), where
  ``/metrics`` needs no token; on the Slack-facing port it needs ``KEYBOT_METRICS_TOKEN`` (403 without one).
- ``slack.settle()`` — wait until every listener so far has finished, including its work after ``ack()``.

Inspecting:

- ``slack.last_modal(callback_id=None)`` — the ``view`` of the latest views.open (waits for one to exist; when
  opening a second modal, first ``slack.fake.wait_for("views.open", count=2)``, since listeners run after ack).
- ``slack.responses()`` — bodies posted to response URLs so far (``respond()`` after ack).
- ``slack.fake.wait_for("chat.postMessage")`` etc.: Bolt runs listener code after ``ack()`` in a thread, so wait
  for Web API calls instead of reading ``fake.calls`` straight away.

Build your own with ``SlackHarness(services, fake).start()`` (a context manager too) for other settings.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from datetime import date
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from bot.bootstrap import Services
from bot.confirm import CONFIRM_PATH, build_confirm_app
from bot.ops_http import build_ops_listener, build_ops_wsgi, serve_ops
from bot.slack import ids
from bot.slack.app import ContextPool, build_app
from bot.wsgi import EVENTS_PATH, build_wsgi
from tests.fake_slack import FakeSlack
from tests.loopback import LoopbackServer

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test"
TEAM = {"id": "T0FAKE", "domain": "fake"}
APP_ID = "A0KEYBOT"
DEFAULT_CHANNEL = "CTEST0001"
# The channels the tests' keys, commands and KEYBOT_CHANNEL use: someone invited the bot to each (the app has no
# chat:write.public, so Slack refuses posts anywhere else). A test about an uninvited channel uses another ID.
INVITED_CHANNELS = (DEFAULT_CHANNEL, "CREMIND01", "CSHOP0001", "CWORK0001", "COTHER001", "CTEAM0001")


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else {}

    def text_of(self) -> str:
        """The ack's ``text`` and every string inside its ``blocks``, one per line (for ``in`` checks)."""
        if not self.text:
            return ""
        try:
            data = self.json()
        except ValueError:
            return self.text
        return "\n".join(_strings(data))


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def fast_retry_handlers() -> list[Any]:
    """Like production (429 honours Retry-After), but server and connection errors retry after 10 ms."""
    quick = FixedValueRetryIntervalCalculator(0.01)
    return [
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2, interval_calculator=quick),
        ConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=quick),
    ]


def _state_value(element: Mapping[str, Any], value: Any) -> dict[str, Any]:
    kind = element.get("type", "plain_text_input")
    if kind == "datepicker":
        return {"type": kind, "selected_date": value.isoformat() if isinstance(value, date) else value}
    if kind == "channels_select":
        return {"type": kind, "selected_channel": value}
    if kind == "conversations_select":
        return {"type": kind, "selected_conversation": value}
    if kind == "users_select":
        return {"type": kind, "selected_user": value}
    if kind in ("radio_buttons", "static_select"):
        option = None
        for candidate in element.get("options") or []:
            if candidate.get("value") == value:
                option = candidate
        if value is not None and option is None:
            option = {"text": {"type": "plain_text", "text": str(value)}, "value": value}
        return {"type": kind, "selected_option": option}
    if kind in ("checkboxes", "multi_static_select"):
        chosen = [o for o in element.get("options") or [] if o.get("value") in (value or [])]
        return {"type": kind, "selected_options": chosen}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(value or [])}
    if kind == "multi_conversations_select":
        return {"type": kind, "selected_conversations": list(value or [])}
    return {"type": kind, "value": value}


def _initial(element: Mapping[str, Any]) -> Any:
    """What a prefilled input holds when the person leaves it alone."""
    for name in ("initial_value", "initial_date", "initial_channel", "initial_conversation", "initial_user"):
        if element.get(name) is not None:
            return element[name]
    if element.get("initial_option"):
        return element["initial_option"].get("value")
    if element.get("initial_options"):
        return [o.get("value") for o in element["initial_options"]]
    for name in ("initial_users", "initial_conversations", "initial_channels"):
        if element.get(name):
            return list(element[name])
    return None


def state_values(view: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """Slack's ``view.state.values`` for a modal whose inputs were filled with ``values``."""
    state: dict[str, Any] = {}
    blocks = {b.get("block_id"): b for b in (view or {}).get("blocks", []) if b.get("type") == "input"}
    for block_id, block in blocks.items():
        element = block.get("element") or {}
        state[block_id] = {element.get("action_id", block_id): _state_value(element, _initial(element))}
    for block_id, value in values.items():
        if isinstance(value, Mapping):  # already raw: {action_id: {...}}
            state[block_id] = dict(value)
            continue
        element = (blocks.get(block_id) or {}).get("element") or {"type": "plain_text_input"}
        state[block_id] = {element.get("action_id", block_id): _state_value(element, value)}
    return state


def signed_headers(
    secret: str, body: str | bytes, *, timestamp: int | None = None, content_type: str | None = None
) -> dict[str, str]:
    """The headers Slack sends with ``body``: timestamp and ``v0=`` HMAC-SHA256 signature."""
    raw = body if isinstance(body, bytes) else body.encode()  # bytes as they are: even a body that is not UTF-8
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type or "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


class _Listeners(ContextPool):
    """The app's listener pool, remembering what it ran, so a test can wait for the work a listener does after
    its ack (posting, recording the post) instead of for one Slack call it makes."""

    def __init__(self) -> None:
        super().__init__(max_workers=5, thread_name_prefix="listener")
        self._futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def settle(self, timeout: float = 10.0) -> None:
        _, running = wait(self._futures, timeout=timeout)
        assert not running, f"{len(running)} listener(s) still running after {timeout} s"


class SlackHarness(LoopbackServer):
    def __init__(self, services: Services, fake: FakeSlack, *, signing_secret: str = SIGNING_SECRET) -> None:
        settings = services.ctx.settings
        services.ctx.settings = replace(
            settings,
            slack_signing_secret=settings.slack_signing_secret or signing_secret,
            slack_bot_token=settings.slack_bot_token or BOT_TOKEN,
            slack_api_url=fake.base_url,
        )
        self.services = services
        self.fake = fake
        self.signing_secret = services.ctx.settings.slack_signing_secret or signing_secret
        self.client = WebClient(token=BOT_TOKEN, base_url=fake.base_url, retry_handlers=fast_retry_handlers())
        self.listeners = _Listeners()
        self.app = build_app(services, client=self.client, listener_executor=self.listeners)
        self.wsgi = build_wsgi(
            self.app,
            ops=build_ops_wsgi(services),
            routes={CONFIRM_PATH: build_confirm_app(services.rollout, services.monitor)},
        )
        self._ops: WSGIServer | None = None
        self._counter = 0
        self.last_signed: tuple[str, dict[str, str]] = ("", {})

    def settle(self) -> None:
        """Wait until every listener started so far has finished, including its work after the ack."""
        self.listeners.settle()

    # --- lifecycle (LoopbackServer: start/stop/port/url) -----------------------------------------
    def _build_server(self) -> WSGIServer:
        return make_server("127.0.0.1", 0, self.wsgi, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)

    def stop(self) -> None:
        if self._ops is not None:
            self._ops.shutdown()
            self._ops.server_close()
            self._ops = None
        super().stop()

    # --- raw HTTP --------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
    ) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            answer = connection.getresponse()
            text = answer.read().decode("utf-8", "replace")
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, text)
        finally:
            connection.close()

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        return self._request("GET", path, headers=headers)

    def ops_get(self, path: str) -> Response:
        """A GET on the ops listener, as ``KEYBOT_OPS_ADDR`` serves it (``/metrics`` without a token)."""
        if self._ops is None:
            self._ops = serve_ops(build_ops_listener(self.services, token_free=True), "127.0.0.1", 0)
        return self._request("GET", path, port=self._ops.server_address[1])

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """A POST to another path of the bot, e.g. ``/rollout/confirm``."""
        return self._request("POST", path, body, headers)

    def signed_headers(
        self, body: str | bytes, *, timestamp: int | None = None, content_type: str | None = None
    ) -> dict[str, str]:
        return signed_headers(self.signing_secret, body, timestamp=timestamp, content_type=content_type)

    def raw_post(self, body: str | bytes, headers: Mapping[str, str] | None = None) -> Response:
        data = body.encode() if isinstance(body, str) else body
        return self._request("POST", EVENTS_PATH, data, headers)

    def post_signed(self, body: str, *, content_type: str | None = None) -> Response:
        headers = self.signed_headers(body, content_type=content_type)
        self.last_signed = (body, headers)
        return self.raw_post(body, headers)

    def replay(self) -> Response:
        """The last signed request again, byte for byte with its signature, as someone who captured it would."""
        return self.raw_post(*self.last_signed)

    def _post_payload(self, payload: Mapping[str, Any]) -> Response:
        return self.post_signed(urlencode({"payload": json.dumps(payload)}))

    # --- what Slack sends ------------------------------------------------------------------------
    def _user(self, user: str) -> dict[str, Any]:
        return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM["id"]}

    def _ts(self) -> str:
        self._counter += 1
        return f"{int(time.time())}.{self._counter:06d}"

    def slash(
        self, user: str, text: str = "", *, channel: str = DEFAULT_CHANNEL, command: str = ids.COMMAND
    ) -> Response:
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "team_domain": TEAM["domain"],
            "channel_id": channel,
            "channel_name": f"channel-{channel.lower()}",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self.fake.response_url(),
            "trigger_id": self.fake.new_trigger_id(),
        }
        return self.post_signed(urlencode(form))

    def click(
        self,
        user: str,
        action_id: str,
        value: str = "",
        *,
        block_id: str | None = None,
        container: str = "message",
        channel: str = DEFAULT_CHANNEL,
        view: Mapping[str, Any] | None = None,
        message: Mapping[str, Any] | None = None,
    ) -> Response:
        """A button click. ``container``: "message" (ephemeral or not), "home" (App Home) or "view" (modal)."""
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": block_id or f"b-{action_id}",
            "value": value,
            "text": {"type": "plain_text", "text": action_id},
            "action_ts": self._ts(),
        }
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": TEAM,
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self.fake.new_trigger_id(),
            "actions": [action],
            "is_enterprise_install": False,
        }
        if container in ("home", "view"):
            the_view = dict(view or {"type": "home" if container == "home" else "modal", "blocks": []})
            the_view.setdefault("id", f"V{self._counter:08d}")
            the_view.setdefault("state", {"values": {}})
            payload["view"] = the_view
            payload["container"] = {"type": "view", "view_id": the_view["id"]}
        else:
            ts = self._ts()
            payload["container"] = {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": message is None,
            }
            payload["channel"] = {"id": channel, "name": f"channel-{channel.lower()}"}
            payload["response_url"] = self.fake.response_url()
            if message is not None:
                payload["message"] = dict(message)
        return self._post_payload(payload)

    def last_modal(self, callback_id: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
        """The latest modal the bot opened (optionally with this callback_id), waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while True:
            for call in reversed(self.fake.calls_to("views.open") + self.fake.calls_to("views.push")):
                view = call.params.get("view") or {}
                if callback_id is None or view.get("callback_id") == callback_id:
                    return dict(view)
            if time.monotonic() > deadline:
                raise AssertionError(f"no modal {callback_id or ''} was opened: {self.fake.calls}")
            time.sleep(0.01)

    def submit(
        self,
        user: str,
        callback_id: str,
        values: Mapping[str, Any],
        *,
        private_metadata: str | None = None,
        view: Mapping[str, Any] | None = None,
        view_id: str | None = None,
    ) -> Response:
        if view is None:
            view = self.last_modal(callback_id)
        self._counter += 1
        full_view = {
            "id": view_id or f"V{self._counter:08d}",
            "team_id": TEAM["id"],
            "type": "modal",
            "title": view.get("title") or {"type": "plain_text", "text": "Modal"},
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", "") if private_metadata is None else private_metadata,
            "callback_id": callback_id,
            "state": {"values": state_values(view, values)},
            "hash": f"{self._counter}.hash",
            "app_id": APP_ID,
            "bot_id": "B0BOT",
        }
        payload = {
            "type": "view_submission",
            "team": TEAM,
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self.fake.new_trigger_id(),
            "view": full_view,
            "response_urls": [],
            "is_enterprise_install": False,
        }
        return self._post_payload(payload)

    def event(self, event: Mapping[str, Any]) -> Response:
        self._counter += 1
        body = {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "api_app_id": APP_ID,
            "event": dict(event),
            "type": "event_callback",
            "event_id": f"Ev{self._counter:08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM["id"], "user_id": "U0BOT", "is_bot": True}],
        }
        return self.post_signed(json.dumps(body), content_type="application/json")

    def home_opened(self, user: str) -> Response:
        return self.event(
            {"type": "app_home_opened", "user": user, "channel": "D0HOME001", "tab": "home", "event_ts": self._ts()}
        )

    def responses(self) -> list[dict[str, Any]]:
        return [c.params for c in self.fake.calls_to("response_url")]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(invited=INVITED_CHANNELS) as fake:
        yield fake
    # whatever a test checked, nothing the bot sent may break Slack's Block Kit and message rules
    assert [(c.method, c.response) for c in fake.refused] == []


@pytest.fixture
def slack(services: Services, fake_slack: FakeSlack) -> Iterator[SlackHarness]:
    with SlackHarness(services, fake_slack) as harness:
        yield harness
