"""The HTTP face of the bot: ``POST /slack/events`` to Bolt; ``/healthz`` and ``/metrics`` to :mod:`bot.ops_http`.

gunicorn (``bot.serve``), the test harness and the latency benchmark all serve :func:`build_wsgi`'s app. A body
over 1 MB is refused (413) before Bolt or anything else reads it (:func:`bot.ops_http.limit_body`). A Slack
request's database budget counts from the environ's ``keybot.arrived`` (gunicorn's worker stamps when the request
came, :mod:`bot.http_worker`), or from when it reached this app.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.ops_http import OPS_PATHS, WSGIApp, limit_body
from bot.slack.failures import ARRIVED

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def _malformed(body: Any) -> str | None:
    """Why Bolt would crash routing this parsed body (it reads these fields unchecked), or None."""
    if not isinstance(body, dict):
        return f"the payload is a {type(body).__name__}, not an object"
    for name in ("event", "view"):
        if name in body and not (isinstance(body[name], dict) and isinstance(body[name].get("type"), str)):
            return f"{name} is not an object with a type"
    actions = body.get("actions", [])
    if not (isinstance(actions, list) and all(isinstance(a, dict) for a in actions)):
        return "actions is not a list of objects"
    return None


class GuardedSlackHandler(SlackRequestHandler):
    """Bolt's WSGI adapter, answering what Bolt would crash on (HTTP 500, a traceback) with 401 or 400 and one
    log line: a timestamp header that is not a number, a body that is not UTF-8, a payload that is not a JSON
    object. Signatures are still checked by Bolt alone."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        timestamp = request.environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
        if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
            logger.warning("refused a Slack request: its timestamp header is not a number")
            return BoltResponse(status=401, body={"error": "invalid request"})
        try:
            bolt_request = BoltRequest(
                body=request.get_body(),
                query=request.query_string,
                headers=request.get_headers(),
                context={ARRIVED: request.environ.get(ARRIVED)},  # the database budget counts from here
            )
            problem = _malformed(bolt_request.body)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:  # UTF-8, JSON, shape
            problem = type(error).__name__  # not its message: that may quote the body, secrets and all
        if problem:
            logger.warning("refused a malformed Slack request: %s", problem)
            return BoltResponse(status=400, body={"error": "malformed request"})
        return self.app.dispatch(bolt_request)


def build_wsgi(app: App, *, ops: WSGIApplication, routes: Mapping[str, WSGIApp] | None = None) -> WSGIApp:
    """A WSGI app: Slack requests go to Bolt (signature checked there); ``ops`` answers health and metrics.

    ``routes``: more paths, each to its own WSGI app (``/rollout/confirm``). Every body is limited to 1 MB.
    """
    slack = GuardedSlackHandler(app, path=EVENTS_PATH)
    paths: dict[str, WSGIApp] = {path: ops for path in OPS_PATHS} | dict(routes or {})

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(ARRIVED) is None:  # a server that does not stamp it hands each request a thread at once
            environ[ARRIVED] = time.monotonic()
        route = paths.get(environ.get("PATH_INFO", ""), slack)
        return route(environ, start_response)

    return limit_body(wsgi)
