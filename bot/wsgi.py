"""The HTTP face of the bot: ``POST /slack/events`` to Bolt, ``GET /healthz`` to a database check.

gunicorn (``bot.serve``), the test harness and the latency benchmark all serve :func:`build_wsgi`'s app.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Engine, text

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def database_answers(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy"; the log says why
        logger.exception("health check: the database does not answer")
        return False


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


WSGIApp = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


def build_wsgi(app: App, *, healthy: Callable[[], bool], routes: Mapping[str, WSGIApp] | None = None) -> WSGIApp:
    """A WSGI app: Slack requests go to Bolt (signature checked there), ``/healthz`` asks ``healthy()``.

    ``routes``: more paths, each to its own WSGI app (``/rollout/confirm``).
    """
    slack = SlackRequestHandler(app, path=EVENTS_PATH)
    routes = dict(routes or {})

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO", ""))
        if route is not None:
            return route(environ, start_response)
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            if healthy():
                return _json(start_response, "200 OK", {"ok": True})
            return _json(start_response, "503 Service Unavailable", {"ok": False, "error": "database"})
        return slack(environ, start_response)

    return wsgi
