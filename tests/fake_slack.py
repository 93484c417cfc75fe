"""A local fake of the Slack Web API, spoken to over real HTTP by `slack_sdk.WebClient(base_url=...)`.

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.base_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert fake.calls_to("chat.postMessage")[0].params["text"] == "hi"

slack_sdk sends chat.* and views.* as JSON and users.info, usergroups.users.list,
conversations.info and auth.test as form-encoded POSTs (whatever their documented verb), so both
bodies are decoded into `Call.params`. Injected failures land in `failures`, not `calls`, so a test
can tell a retried attempt from a delivered message.

Like Slack, it refuses messages and views that break Block Kit's rules (`invalid_blocks`, `invalid_arguments`,
`msg_too_long`, `invalid_metadata_format`; see `block_errors`); refused calls are in `failures` and `refused`,
and the `fake_slack` fixture fails any test after which something was refused. Posted messages (with their
metadata) form each channel's history for `conversations.history`, each naming its poster (`bot_id`, `app_id`,
`user`) as Slack does; every bot token is this bot unless `add_app` gave it another app's identity.
`fail_next(..., posted=True)` posts and then loses the answer, as a timeout after Slack posted would.

Like Slack, it knows which conversations the bot is in and which scopes the app has (``oauth_config.scopes.bot``
of manifest.yml unless ``scopes=`` says otherwise; a method whose scope is missing answers ``missing_scope``).
Without ``chat:write.public`` the bot posts only where it was invited (``invite``): elsewhere a public channel
answers ``not_in_channel``, a private or deleted one ``channel_not_found``, an archived one ``is_archived``.
``conversations.history``/``replies`` need membership and the ``*:history`` scope of the conversation's kind
(``channels:``, ``groups:``, ``im:history``), and a user ID is not a conversation: a post to ``U…`` goes to the
bot's DM with that person (answered with its ``D…`` ID, which ``conversations.open`` also gives), but its
history, replies and updates are ``channel_not_found``. ``chat.update`` of a ``ts`` that is not in the channel is
``message_not_found``; ``views.update``/``views.publish`` with a ``hash`` that is no longer the view's is
``hash_conflict``; a response URL answers ``used_url`` after 5 uses and ``expired_url`` after 30 minutes. Each
method has a per-minute rate limit of its Slack tier (``rate_limits``, per ``rate_window`` seconds; posts per
channel); a call over it is answered 429 with Retry-After, unscripted, as a loaded workspace would.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from tests.loopback import LoopbackServer

TRIGGER_TTL_SECONDS = 3.0
# Slack's published Block Kit and message limits (https://api.slack.com/reference/block-kit)
MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS = 50, 100
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT, MAX_FIELDS, MAX_FIELD_TEXT = 3000, 10, 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT, MAX_BUTTON_VALUE = 75, 2000
MAX_VIEW_TITLE = 24  # title, submit and close
MAX_PRIVATE_METADATA = 3000
MAX_OPTIONS, MAX_OPTION_TEXT, MAX_OPTION_VALUE = 100, 75, 150
MAX_ACTIONS_ELEMENTS, MAX_CONTEXT_ELEMENTS = 25, 10
MESSAGE_METHODS = ("chat.postMessage", "chat.postEphemeral", "chat.update", "response_url")
VIEW_METHODS = ("views.open", "views.update", "views.push", "views.publish")
HISTORY_PAGE = 100
# Fields Slack accepts as JSON-encoded strings inside a form or JSON body.
JSON_STRING_FIELDS = ("blocks", "attachments", "view", "metadata", "user_auth_blocks")
BOT_IDENTITY = dict(
    url="https://fake.slack.com/",
    team="Fake",
    user="keybot",
    team_id="T0FAKE",
    user_id="U0BOT",
    bot_id="B0BOT",
)
BOT_APP_ID = "A0BOT"
MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"
RESPONSE_URL_USES, RESPONSE_URL_TTL_SECONDS = 5, 30 * 60
# The bot-token scope each method needs (history: by the conversation's kind, see _history_scope).
SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    "conversations.open": "im:write",
    "conversations.info": "channels:read",
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
}
# Slack's rate-limit tiers (calls per minute per workspace; https://api.slack.com/apis/rate-limits), and the
# "special" chat.postMessage limit of about one message per second per channel, which allows short bursts.
TIER_1, TIER_2, TIER_3, TIER_4 = 1, 20, 50, 100
RATE_LIMITS = {
    "chat.postMessage": 60,  # per channel
    "chat.postEphemeral": TIER_4,
    "chat.update": TIER_3,
    "conversations.history": TIER_3,
    "conversations.replies": TIER_3,
    "conversations.open": TIER_3,
    "conversations.info": TIER_3,
    "users.info": TIER_4,
    "usergroups.users.list": TIER_2,
    "views.open": TIER_4,
    "views.push": TIER_4,
    "views.update": TIER_4,
    "views.publish": TIER_4,
    "auth.test": TIER_4,
}
RATE_WINDOW_SECONDS = 60.0


def manifest_scopes() -> frozenset[str]:
    """The bot-token scopes manifest.yml asks for: what the installed app may do."""
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return frozenset(manifest["oauth_config"]["scopes"]["bot"])


class Refused(Exception):
    """Slack's error answer to a call (``{"ok": false, "error": ...}``)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.answer = {"ok": False, "error": error, **extra}


def _too_long(limit: int, where: str) -> str:
    return f"must be less than {limit + 1} characters [json-pointer:{where}]"


def _too_many(limit: int, where: str) -> str:
    return f"must provide an array of no more than {limit} items [json-pointer:{where}]"


def _text(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def element_errors(element: Any, where: str) -> list[str]:
    """Button and option limits of one interactive element."""
    if not isinstance(element, dict):
        return [f"must be an object [json-pointer:{where}]"]
    errors = []
    if element.get("type") == "button":
        if len(_text(element.get("text"))) > MAX_BUTTON_TEXT:
            errors.append(_too_long(MAX_BUTTON_TEXT, f"{where}/text/text"))
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            errors.append(_too_long(MAX_BUTTON_VALUE, f"{where}/value"))
    options = element.get("options")
    if isinstance(options, list):
        if len(options) > MAX_OPTIONS:
            errors.append(_too_many(MAX_OPTIONS, f"{where}/options"))
        for i, option in enumerate(options):
            if len(_text(option.get("text"))) > MAX_OPTION_TEXT:
                errors.append(_too_long(MAX_OPTION_TEXT, f"{where}/options/{i}"))
            if len(str(option.get("value", ""))) > MAX_OPTION_VALUE:
                errors.append(_too_long(MAX_OPTION_VALUE, f"{where}/options/{i}"))
    return errors


def block_errors(blocks: Any, limit: int, root: str = "/blocks") -> list[str]:
    """What Slack says about ``blocks``: the count, unique block_ids, unique action_ids per block, text limits."""
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{root}]"]
    errors = []
    if len(blocks) > limit:
        errors.append(_too_many(limit, root))
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{root}/{i}"
        if not isinstance(block, dict):
            errors.append(f"must be an object [json-pointer:{where}]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(f"block_id '{block_id}' already exists [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
        kind = block.get("type")
        elements = block.get("elements") if isinstance(block.get("elements"), list) else []
        if kind == "section":
            if len(_text(block.get("text"))) > MAX_SECTION_TEXT:
                errors.append(_too_long(MAX_SECTION_TEXT, f"{where}/text"))
            fields = block.get("fields") or []
            if len(fields) > MAX_FIELDS:
                errors.append(_too_many(MAX_FIELDS, f"{where}/fields"))
            errors += [
                _too_long(MAX_FIELD_TEXT, f"{where}/fields/{j}")
                for j, f in enumerate(fields)
                if len(_text(f)) > MAX_FIELD_TEXT
            ]
            if "accessory" in block:
                errors += element_errors(block["accessory"], f"{where}/accessory")
        elif kind == "header" and len(_text(block.get("text"))) > MAX_HEADER_TEXT:
            errors.append(_too_long(MAX_HEADER_TEXT, f"{where}/text"))
        elif kind == "actions":
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                errors.append(_too_many(MAX_ACTIONS_ELEMENTS, where))
            action_ids: set[str] = set()
            for j, element in enumerate(elements):
                action_id = element.get("action_id") if isinstance(element, dict) else None
                if action_id is not None and action_id in action_ids:
                    errors.append(f"action_id '{action_id}' already exists [json-pointer:{where}/elements/{j}]")
                action_ids.add(str(action_id))
                errors += element_errors(element, f"{where}/elements/{j}")
        elif kind == "context" and len(elements) > MAX_CONTEXT_ELEMENTS:
            errors.append(_too_many(MAX_CONTEXT_ELEMENTS, where))
        elif kind == "input" and "element" in block:
            errors += element_errors(block["element"], f"{where}/element")
    return errors


def message_refusal(params: dict[str, Any]) -> dict[str, Any] | None:
    """Slack's answer to a message it will not post (chat.* and response URLs), or None."""
    if len(str(params.get("text") or "")) > MAX_MESSAGE_TEXT:
        return {"ok": False, "error": "msg_too_long"}
    metadata = params.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    ):
        return {"ok": False, "error": "invalid_metadata_format"}
    errors = block_errors(params["blocks"], MAX_MESSAGE_BLOCKS) if "blocks" in params else []
    if errors:
        return {"ok": False, "error": "invalid_blocks", "errors": errors, "response_metadata": {"messages": errors}}
    return None


def view_refusal(params: dict[str, Any]) -> dict[str, Any] | None:
    """Slack's answer to a modal or Home view it will not show (views.*), or None."""
    view = params.get("view")
    if not isinstance(view, dict):
        errors = ["must be an object [json-pointer:/view]"]
    else:
        errors = block_errors(view.get("blocks", []), MAX_VIEW_BLOCKS, "/view/blocks")
        errors += [
            _too_long(MAX_VIEW_TITLE, f"/view/{name}/text")
            for name in ("title", "submit", "close")
            if len(_text(view.get(name))) > MAX_VIEW_TITLE
        ]
        if len(str(view.get("private_metadata") or "")) > MAX_PRIVATE_METADATA:
            errors.append(_too_long(MAX_PRIVATE_METADATA, "/view/private_metadata"))
    if errors:
        return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": errors}}
    return None


REFUSALS = ("msg_too_long", "invalid_metadata_format", "invalid_blocks", "invalid_arguments")
# What Slack answers a call the app is not allowed to make (see FakeSlack.refusals)
ACCESS_ERRORS = ("not_in_channel", "channel_not_found", "is_archived", "missing_scope")


@dataclass(frozen=True)
class Planned:
    status: int | None  # None: the connection drops without an answer
    retry_after: int = 1
    posted: bool = False  # Slack acted on the request, then the answer was lost


@dataclass(frozen=True)
class Call:
    method: str  # Web API method, or "response_url" for posts to a response URL
    params: dict[str, Any]
    headers: dict[str, str]  # names lower-cased
    body: str
    path: str
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


class FakeSlack(LoopbackServer):
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        invited: Iterable[str] = (),
        scopes: Iterable[str] | None = None,
        rate_limits: dict[str, int] | None = None,
        rate_window: float = RATE_WINDOW_SECONDS,
    ) -> None:
        self.clock = clock  # trigger expiry; message ts follow time.time(), which time-machine moves
        self.scopes = frozenset(manifest_scopes() if scopes is None else scopes)
        self.rate_limits = dict(RATE_LIMITS if rate_limits is None else rate_limits)
        self.rate_window = rate_window
        self._rate: dict[str, list[float]] = {}  # method (and channel, for posts) -> clock() of recent calls
        self._members: set[str] = set(invited)  # conversations the bot was invited to
        self._private: set[str] = set()
        self._archived: set[str] = set()
        self._deleted: set[str] = set()
        self._dms: dict[str, str] = {}  # user ID -> the bot's DM conversation with them
        self._view_hashes: dict[str, str] = {}  # view ID (or "home:U…") -> its current hash
        self._response_urls: dict[str, tuple[float, int]] = {}  # path -> (issued at, uses)
        self._lock = threading.Condition()
        self._calls: list[Call] = []
        self._failures: list[Call] = []
        self._planned: dict[str, list[Planned | None]] = {}  # None: that request goes through
        self._history: dict[str, list[dict[str, Any]]] = {}  # channel -> messages, oldest first
        self._triggers: dict[str, float | None] = {}  # trigger id -> issued at, None once used
        self._usergroups: dict[str, list[str]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self._revoked: set[str] = set()  # bot tokens answered with invalid_auth, as Slack does once revoked
        self._apps: dict[str, tuple[str, str, str]] = {}  # bot token -> (app ID, bot ID, bot user ID) of another app
        self._held: dict[str, threading.Event] = {}  # method -> calls wait until it is set (hold())
        # Socket Mode: once set (e.g. to a FakeSocketMode's ws_url), apps.connections.open hands it out
        self.socket_mode_url: str | None = None

    # --- lifecycle (LoopbackServer: start/stop/url) ----------------------------------------------
    def _build_server(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    # --- set-up ----------------------------------------------------------------------------------
    def set_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        with self._lock:
            self._usergroups[group_id] = list(user_ids)

    def set_user(self, user_id: str, **fields: Any) -> None:
        """Override fields of the `user` object users.info returns (e.g. tz, deleted, real_name)."""
        with self._lock:
            self._users.setdefault(user_id, {}).update(fields)

    def new_trigger_id(self) -> str:
        with self._lock:
            n = next(self._counter)
            trigger_id = f"{n}.{1000 + n}.fake{n:08x}"
            self._triggers[trigger_id] = self.clock()
            return trigger_id

    def response_url(self) -> str:
        path = f"/respond/{next(self._counter)}"
        with self._lock:
            self._response_urls[path] = (self.clock(), 0)
        return f"{self.url}{path}"

    def invite(self, *channels: str, private: bool = False) -> None:
        """Someone invited the bot to each channel (``/invite @Coupang Keybot``); ``private``: a private one."""
        with self._lock:
            self._members.update(channels)
            self._deleted.difference_update(channels)
            if private:
                self._private.update(channels)

    def create_channel(self, channel: str, *, private: bool = False) -> None:
        """A channel the bot was not invited to (any C… ID not deleted is one: a public channel)."""
        with self._lock:
            self._deleted.discard(channel)
            if private:
                self._private.add(channel)

    def kick(self, channel: str) -> None:
        """The bot was removed from ``channel``."""
        with self._lock:
            self._members.discard(channel)

    def archive(self, channel: str) -> None:
        with self._lock:
            self._archived.add(channel)

    def delete_channel(self, channel: str) -> None:
        with self._lock:
            self._deleted.add(channel)
            self._members.discard(channel)

    def delete_message(self, channel: str, ts: str) -> None:
        """Someone deleted the message ``ts`` in Slack (updates of it are then ``message_not_found``)."""
        with self._lock:
            self._history[channel] = [m for m in self._history.get(channel, []) if m["ts"] != ts]

    def dm_channel(self, user_id: str) -> str:
        """The ID of the bot's direct-message conversation with ``user_id`` (``conversations.open``)."""
        with self._lock:
            return self._dms.setdefault(user_id, "D" + user_id[1:])

    def expire_response_urls(self) -> None:
        """Every response URL handed out so far is older than 30 minutes."""
        with self._lock:
            for path, (_, uses) in self._response_urls.items():
                self._response_urls[path] = (self.clock() - RESPONSE_URL_TTL_SECONDS - 1, uses)

    def fail_next(
        self,
        method: str,
        status: int | None = 429,
        retry_after: int = 1,
        times: int = 1,
        *,
        posted: bool = False,
        after: int = 0,
    ) -> None:
        """After `after` requests that go through, the next `times` requests to `method` fail: 429 with
        Retry-After, any other HTTP status, or (status None) a connection dropped without an answer.
        ``posted=True``: Slack did the work first (the message is in `calls` and in the channel's history) and
        only the answer is lost, as after a timeout."""
        with self._lock:
            planned = self._planned.setdefault(method, [])
            planned.extend([None] * after + [Planned(status, retry_after, posted)] * times)

    @contextmanager
    def hold(self, method: str) -> Iterator[None]:
        """Calls to ``method`` wait, unanswered, until the block ends: a slow Slack."""
        released = self._held[method] = threading.Event()
        try:
            yield
        finally:
            released.set()
            del self._held[method]

    def revoke_token(self, token: str) -> None:
        """Every Web API call with ``token`` is answered ``invalid_auth`` (an uninstalled app, a revoked token)."""
        with self._lock:
            self._revoked.add(token)

    def add_app(self, token: str, *, app_id: str, bot_id: str, user_id: str) -> None:
        """``token`` belongs to another app installed in the workspace: it posts and answers auth.test as that app."""
        with self._lock:
            self._apps[token] = (app_id, bot_id, user_id)

    def _identity(self, token: str) -> tuple[str, str, str]:
        with self._lock:
            return self._apps.get(token, (BOT_APP_ID, BOT_IDENTITY["bot_id"], BOT_IDENTITY["user_id"]))

    def restore_token(self, token: str) -> None:
        with self._lock:
            self._revoked.discard(token)

    # --- inspection ------------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def failures(self) -> list[Call]:
        with self._lock:
            return list(self._failures)

    @property
    def refused(self) -> list[Call]:
        """Requests Slack refused for breaking its Block Kit or message rules."""
        return [c for c in self.failures if c.response.get("error") in REFUSALS]

    @property
    def refusals(self) -> list[Call]:
        """Calls answered with an error (not_in_channel, message_not_found, hash_conflict, ...); they are in
        ``calls`` too, as Slack received them."""
        return [c for c in self.calls if c.response.get("ok") is False]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def history(self, channel: str) -> list[dict[str, Any]]:
        """Every message in ``channel`` (thread replies too), oldest first, with metadata; a user ID stands for
        the bot's DM with that person."""
        if channel[:1] in ("U", "W"):
            channel = self.dm_channel(channel)
        with self._lock:
            return [dict(m) for m in self._history.get(channel, [])]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until `count` calls to `method` arrived (listeners may run after Bolt acks)."""
        with self._lock:
            done = self._lock.wait_for(lambda: sum(c.method == method for c in self._calls) >= count, timeout=timeout)
        if not done:
            raise AssertionError(f"expected {count} call(s) to {method}, got {self.calls_to(method)}")
        return self.calls_to(method)

    def all_text(self) -> str:
        """Every request body, path and header the fake received, failed attempts included."""
        with self._lock:
            calls = self._calls + self._failures
        return "\n".join(f"{c.path}\n{json.dumps(c.headers)}\n{c.body}" for c in calls)

    # --- request handling ------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        split = urlsplit(req.path)
        headers = {k.lower(): v for k, v in req.headers.items()}
        params: dict[str, Any] = dict(parse_qsl(split.query))
        if headers.get("content-type", "").startswith("application/json"):
            params.update(json.loads(body or "{}"))
        else:
            params.update(parse_qsl(body, keep_blank_values=True))
        for name in JSON_STRING_FIELDS:
            if isinstance(params.get(name), str) and params[name][:1] in ("[", "{"):
                params[name] = json.loads(params[name])

        if split.path.startswith("/api/"):
            method = split.path.removeprefix("/api/")
        elif split.path.startswith("/respond/"):
            method = "response_url"
        else:
            method = "not_found"
        held = self._held.get(method)
        if held is not None:
            held.wait(timeout=10)

        with self._lock:
            planned = self._planned.get(method)
            failure = planned.pop(0) if planned else None
            if failure is None and (wait := self._over_rate(method, params)) is not None:
                failure = Planned(429, retry_after=wait)
            url_error = self._use_response_url(split.path) if method == "response_url" else None
        extra_headers: dict[str, str] = {}
        refusal = None
        if failure is not None and not failure.posted:
            status = failure.status or 0
            if status == 429:
                extra_headers["Retry-After"] = str(failure.retry_after)
                response = {"ok": False, "error": "ratelimited"}
            else:
                response = {"ok": False, "error": "fatal_error"}
        elif url_error is not None:
            status, response = 404, {"ok": False, "error": url_error}
        elif method in MESSAGE_METHODS and (refusal := message_refusal(params)) is not None:
            status, response = (400 if method == "response_url" else 200), refusal
        elif method in VIEW_METHODS and (refusal := view_refusal(params)) is not None:
            status, response = 200, refusal
        elif method == "not_found":
            status, response = 404, {"ok": False, "error": "not_found"}
        elif method == "response_url":
            status, response = 200, {"ok": True}
        elif method == "apps.connections.open" and self.socket_mode_url is not None:
            status, response = 200, self._open_connection(headers.get("authorization", ""))
        elif not headers.get("authorization", "").startswith("Bearer xoxb-"):
            status, response = 200, {"ok": False, "error": "not_authed"}
        elif headers["authorization"].removeprefix("Bearer ") in self._revoked:
            status, response = 200, {"ok": False, "error": "invalid_auth"}
        else:
            status, response = 200, self._answer(method, params, headers["authorization"].removeprefix("Bearer "))

        call = Call(method, params, headers, body, split.path, status, response)
        delivered = refusal is None and (failure is None or failure.posted)
        with self._lock:
            (self._calls if delivered else self._failures).append(call)
            self._lock.notify_all()
        if failure is not None and failure.posted:  # the work is done; now lose the answer
            if failure.status is None:
                req.close_connection = True
                return
            status, response = failure.status, {"ok": False, "error": "fatal_error"}

        if method == "response_url" and (refusal is not None or url_error is not None):  # answered in plain text
            payload = str(response["error"]).encode()
            req.send_response(status)
            req.send_header("Content-Type", "text/plain")
            req.send_header("Content-Length", str(len(payload)))
            req.end_headers()
            req.wfile.write(payload)
            return
        payload = json.dumps(response).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(payload)))
        for name, value in extra_headers.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(payload)

    # --- what the app may do -----------------------------------------------------------------------
    def _over_rate(self, method: str, p: dict[str, Any]) -> int | None:
        """Seconds to wait when this call is over its method's per-minute limit (else None, and it counts)."""
        limit = self.rate_limits.get(method)
        if limit is None:
            return None
        bucket = f"{method} {p.get('channel')}" if method == "chat.postMessage" else method
        now = self.clock()
        recent = [at for at in self._rate.get(bucket, []) if at > now - self.rate_window]
        if len(recent) >= limit:
            self._rate[bucket] = recent
            return max(1, int(recent[0] + self.rate_window - now + 0.999))
        self._rate[bucket] = recent + [now]
        return None

    def _use_response_url(self, path: str) -> str | None:
        """A response URL works 5 times within 30 minutes of the request that carried it."""
        issued, uses = self._response_urls.get(path, (None, 0))
        if issued is None or self.clock() - issued > RESPONSE_URL_TTL_SECONDS:
            return "expired_url"
        if uses >= RESPONSE_URL_USES:
            return "used_url"
        self._response_urls[path] = (issued, uses + 1)
        return None

    def _need(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Refused("missing_scope", needed=scope, provided=",".join(sorted(self.scopes)))

    def _conversation(self, channel: str, *, post: bool = False) -> str:
        """The conversation ``channel`` names, if the bot may use it; ``post``: a user ID means the bot's DM."""
        if channel[:1] in ("U", "W"):
            if not post:
                raise Refused("channel_not_found")  # a user ID is not a conversation
            return self.dm_channel(channel)
        with self._lock:
            if channel[:1] == "D":
                if channel not in self._dms.values():
                    raise Refused("channel_not_found")
                return channel
            if not channel or channel in self._deleted:
                raise Refused("channel_not_found")
            private = channel in self._private or channel[:1] == "G"
            if channel not in self._members:
                if private:
                    raise Refused("channel_not_found")
                if not (post and "chat:write.public" in self.scopes):
                    raise Refused("not_in_channel")
            if post and channel in self._archived:
                raise Refused("is_archived")
        return channel

    def _history_scope(self, channel: str) -> str:
        if channel[:1] == "D":
            return "im:history"
        if channel in self._private or channel[:1] == "G":
            return "groups:history"
        return "channels:history"

    def _answer(self, method: str, p: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            if method in SCOPE_OF:
                self._need(SCOPE_OF[method])
            return self._act(method, p, token)
        except Refused as refused:
            return refused.answer

    def _act(self, method: str, p: dict[str, Any], token: str) -> dict[str, Any]:
        with self._lock:
            n = next(self._counter)
        ts = f"{int(time.time())}.{n:06d}"  # unique, and ordered like Slack's within one clock
        app_id, bot_id, user_id = self._identity(token)
        if method == "auth.test":
            return {"ok": True, **BOT_IDENTITY, "bot_id": bot_id, "user_id": user_id}
        if method == "chat.postMessage":
            channel = self._conversation(str(p.get("channel") or ""), post=True)
            message = {"type": "message", "text": p.get("text", ""), "ts": ts}
            message.update(bot_id=bot_id, app_id=app_id, user=user_id)
            for name in ("blocks", "metadata", "thread_ts", "reply_broadcast"):
                if name in p:
                    message[name] = p[name]
            with self._lock:
                self._history.setdefault(channel, []).append(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.postEphemeral":
            self._conversation(str(p.get("channel") or ""), post=True)
            return {"ok": True, "message_ts": ts}
        if method == "chat.update":
            channel = self._conversation(str(p.get("channel") or ""), post=True)
            if channel != p.get("channel"):
                raise Refused("channel_not_found")  # chat.update needs the conversation's ID, not a user's
            with self._lock:
                found = [m for m in self._history.get(channel, []) if m["ts"] == p.get("ts")]
                if not found:
                    raise Refused("message_not_found")
                found[0].update({k: p[k] for k in ("text", "blocks", "metadata") if k in p})
            return {"ok": True, "channel": channel, "ts": p.get("ts"), "text": p.get("text", "")}
        if method in ("conversations.history", "conversations.replies"):
            channel = self._conversation(str(p.get("channel") or ""))
            self._need(self._history_scope(channel))
            if method == "conversations.history":
                return self._conversation_history({**p, "channel": channel})
            return self._conversation_replies({**p, "channel": channel})
        if method == "conversations.open":
            users = [u for u in str(p.get("users") or "").split(",") if u]
            if len(users) != 1:  # a group DM would need mpim:write; the bot never opens one
                raise Refused("users_list_not_supplied" if not users else "missing_scope", needed="mpim:write")
            return {"ok": True, "channel": {"id": self.dm_channel(users[0]), "is_im": True, "user": users[0]}}
        if method in ("views.open", "views.push") and not self._use_trigger(str(p.get("trigger_id", ""))):
            return {"ok": False, "error": "invalid_trigger_id"}
        if method.startswith("views."):
            return self._view(method, p, n)
        if method == "usergroups.users.list":
            with self._lock:
                users = self._usergroups.get(str(p.get("usergroup")))
            if users is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": users}
        if method == "users.info":
            uid = str(p.get("user"))
            with self._lock:
                user = {"id": uid, "name": uid.lower(), "real_name": f"User {uid}", "tz": "Asia/Seoul"}
                user.update({"is_bot": False, "deleted": False, **self._users.get(uid, {})})
            return {"ok": True, "user": user}
        if method == "conversations.info":
            cid = str(p.get("channel"))
            channel = {"id": cid, "name": f"channel-{cid.lower()}", "is_channel": True, "is_member": True}
            return {"ok": True, "channel": channel}
        return {"ok": False, "error": "unknown_method"}

    def _view(self, method: str, p: dict[str, Any], n: int) -> dict[str, Any]:
        """A view shown; ``views.update``/``publish`` with a ``hash`` that is no longer the view's: hash_conflict."""
        home = f"home:{p.get('user_id')}"
        with self._lock:
            if method == "views.update":
                view_id = str(p.get("view_id") or "")
                if view_id not in self._view_hashes:
                    raise Refused("not_found")
            elif method == "views.publish":
                view_id = self._view_hashes.get(home, "").split(" ")[0] or f"V{n:08d}"
            else:
                view_id = f"V{n:08d}"
            current = self._view_hashes.get(home if method == "views.publish" else view_id, "").split(" ")[-1]
            if p.get("hash") and p["hash"] != current:
                raise Refused("hash_conflict")
            new_hash = f"{n}.fakehash"
            self._view_hashes[view_id] = new_hash
            if method == "views.publish":
                self._view_hashes[home] = f"{view_id} {new_hash}"
        view = dict(p.get("view") or {})
        view.update(id=view_id, hash=new_hash, state={"values": {}})
        return {"ok": True, "view": view}

    def _conversation_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """Newest first, ``oldest``/``latest`` exclusive unless ``inclusive``, ``limit`` a page, then a cursor.
        Message metadata is shown only with ``include_all_metadata``. As in Slack, replies in a thread are not
        part of the channel's history (unless also sent to the channel): conversations.replies shows them."""
        with self._lock:
            channel = self._history.get(str(p.get("channel")), [])
            messages = [
                m for m in reversed(channel) if m.get("thread_ts", m["ts"]) == m["ts"] or m.get("reply_broadcast")
            ]
        return self._page(p, messages)

    def _conversation_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """The thread of ``ts``, its parent first, then the replies oldest first; the same paging as history."""
        thread = str(p.get("ts") or "")
        with self._lock:
            channel = self._history.get(str(p.get("channel")), [])
            parent = [m for m in channel if m["ts"] == thread]
            replies = [m for m in channel if m.get("thread_ts") == thread and m["ts"] != thread]
        if not parent:
            return {"ok": False, "error": "thread_not_found"}
        return self._page(p, parent + replies)

    def _page(self, p: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        inclusive = str(p.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or "inf")
        messages = [
            dict(m)
            for m in messages
            if (oldest <= float(m["ts"]) if inclusive else oldest < float(m["ts"]))
            and (float(m["ts"]) <= latest if inclusive else float(m["ts"]) < latest)
        ]
        if str(p.get("include_all_metadata", "")).lower() not in ("1", "true"):
            for message in messages:
                message.pop("metadata", None)
        start = int(str(p.get("cursor") or "page:0").removeprefix("page:") or 0)
        limit = min(int(p.get("limit") or HISTORY_PAGE), 999)
        page, more = messages[start : start + limit], start + limit < len(messages)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": f"page:{start + limit}" if more else ""},
        }

    def _open_connection(self, authorization: str) -> dict[str, Any]:
        """apps.connections.open takes only an app-level token, in the Authorization header."""
        if not authorization.startswith("Bearer "):
            return {"ok": False, "error": "not_authed"}
        if not authorization.startswith("Bearer xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": self.socket_mode_url}

    def _use_trigger(self, trigger_id: str) -> bool:
        with self._lock:
            issued = self._triggers.get(trigger_id)
            self._triggers[trigger_id] = None  # single use, whatever the outcome
        return issued is not None and self.clock() - issued <= TRIGGER_TTL_SECONDS
