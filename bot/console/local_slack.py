"""The console's stand-in for Slack's side of the wire: Web API calls and response_url posts stay on this machine.

Bolt builds a fresh ``WebClient`` per request from the app client's ``base_url``, so a subclass alone would be
bypassed: the :class:`ConsoleWebClient` answers ``api_call`` directly *and* points its ``base_url`` at a loopback
server, which routes every request from Bolt's per-request clients and from ``respond()`` (Bolt posts to the
response_url with ``WebhookClient``) into the same handler.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

JSON_STRING_FIELDS = ("blocks", "attachments", "view", "metadata")
CONSOLE_TOKEN = "xoxb-local-console"  # noqa: S105 - not a credential: the console's own stand-in

# handler(Web API method, arguments) -> response data;  respond(response_url key, message) -> None
ApiHandler = Callable[[str, dict[str, Any]], dict[str, Any]]
RespondHandler = Callable[[str, dict[str, Any]], None]


def decode_fields(args: dict[str, Any]) -> dict[str, Any]:
    """slack_sdk sends blocks/view as JSON strings in form bodies; the console wants them as objects."""
    for name in JSON_STRING_FIELDS:
        if isinstance(args.get(name), str) and args[name][:1] in ("[", "{"):
            args[name] = json.loads(args[name])
    return args


class LocalSlackServer:
    """Loopback HTTP: ``/api/<method>`` like slack.com/api, ``/respond/<key>`` like a response_url."""

    def __init__(self, api: ApiHandler, respond: RespondHandler) -> None:
        self._api, self._respond = api, respond
        self._lock = threading.Lock()  # one request at a time: the console's state is not thread-safe
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._handle(self)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.url}/respond/{key}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        split = urlsplit(req.path)
        args: dict[str, Any] = dict(parse_qsl(split.query))
        if req.headers.get("Content-Type", "").startswith("application/json"):
            args.update(json.loads(raw or "{}"))
        else:
            args.update(parse_qsl(raw, keep_blank_values=True))
        decode_fields(args)
        answer: dict[str, Any]
        with self._lock:
            if split.path.startswith("/respond/"):
                self._respond(split.path.removeprefix("/respond/"), args)
                status, answer = 200, {"ok": True}
            elif not split.path.startswith("/api/"):
                status, answer = 404, {"ok": False, "error": "not_found"}
            elif req.headers.get("Authorization") != f"Bearer {CONSOLE_TOKEN}":
                status, answer = 200, {"ok": False, "error": "invalid_auth"}
            else:
                status, answer = 200, self._api(split.path.removeprefix("/api/"), args)
        body = json.dumps(answer).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


class ConsoleWebClient(WebClient):
    """``app.client`` for the console: answers calls locally; copies Bolt makes reach the loopback server."""

    def __init__(self, server: LocalSlackServer, api: ApiHandler) -> None:
        super().__init__(token=CONSOLE_TOKEN, base_url=server.base_url)
        self._console_api = api
        self._console_lock = server._lock

    def api_call(  # type: ignore[override]
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict | None = None,
        data: dict | None = None,
        params: dict | None = None,
        json: dict | None = None,
        headers: dict | None = None,
        auth: dict | None = None,
    ) -> SlackResponse:
        args = decode_fields({**(params or {}), **(data or {}), **(json or {})})
        with self._console_lock:
            answer = self._console_api(api_method, args)
        return SlackResponse(
            client=self,
            http_verb=http_verb,
            api_url=f"{self.base_url}{api_method}",
            req_args={},
            data=answer,
            headers={},
            status_code=200,
        ).validate()
