"""A local fake of the Slack Web API, spoken to over real HTTP by `slack_sdk.WebClient(base_url=...)`.

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.base_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert fake.calls_to("chat.postMessage")[0].params["text"] == "hi"

slack_sdk sends chat.* and views.* as JSON and users.info, usergroups.users.list,
conversations.info and auth.test as form-encoded POSTs (whatever their documented verb), so both
bodies are decoded into `Call.params`. Injected failures land in `failures`, not `calls`, so a test
can tell a retried attempt from a delivered message.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.loopback import LoopbackServer

TRIGGER_TTL_SECONDS = 3.0
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
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Condition()
        self._calls: list[Call] = []
        self._failures: list[Call] = []
        self._planned: dict[str, list[tuple[int, int]]] = {}
        self._triggers: dict[str, float | None] = {}  # trigger id -> issued at, None once used
        self._usergroups: dict[str, list[str]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self._revoked: set[str] = set()  # bot tokens answered with invalid_auth, as Slack does once revoked
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
        return f"{self.url}/respond/{next(self._counter)}"

    def fail_next(self, method: str, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` requests to `method` fail: 429 with Retry-After, or any other HTTP status."""
        with self._lock:
            self._planned.setdefault(method, []).extend([(status, retry_after)] * times)

    def revoke_token(self, token: str) -> None:
        """Every Web API call with ``token`` is answered ``invalid_auth`` (an uninstalled app, a revoked token)."""
        with self._lock:
            self._revoked.add(token)

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

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

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

        with self._lock:
            planned = self._planned.get(method)
            failure = planned.pop(0) if planned else None
        extra_headers: dict[str, str] = {}
        if failure is not None:
            status, retry_after = failure
            if status == 429:
                extra_headers["Retry-After"] = str(retry_after)
                response = {"ok": False, "error": "ratelimited"}
            else:
                response = {"ok": False, "error": "fatal_error"}
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
            status, response = 200, self._answer(method, params)

        call = Call(method, params, headers, body, split.path, status, response)
        with self._lock:
            (self._failures if failure is not None else self._calls).append(call)
            self._lock.notify_all()

        payload = json.dumps(response).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(payload)))
        for name, value in extra_headers.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(payload)

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            n = next(self._counter)
        ts = f"{1700000000 + n}.{n:06d}"
        if method == "auth.test":
            return {"ok": True, **BOT_IDENTITY}
        if method == "chat.postMessage":
            message = {"type": "message", "text": p.get("text", ""), "ts": ts, "bot_id": "B0BOT"}
            if "blocks" in p:
                message["blocks"] = p["blocks"]
            return {"ok": True, "channel": p.get("channel"), "ts": ts, "message": message}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "chat.update":
            return {"ok": True, "channel": p.get("channel"), "ts": p.get("ts"), "text": p.get("text", "")}
        if method in ("views.open", "views.push") and not self._use_trigger(str(p.get("trigger_id", ""))):
            return {"ok": False, "error": "invalid_trigger_id"}
        if method.startswith("views."):
            view = dict(p.get("view") or {})
            view.update(id=p.get("view_id") or f"V{n:08d}", hash=f"{n}.fakehash", state={"values": {}})
            return {"ok": True, "view": view}
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
