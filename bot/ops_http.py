"""``GET /healthz`` and ``GET /metrics`` as a WSGI app of their own.

HTTP mode mounts it beside ``/slack/events`` (:mod:`bot.wsgi`); Socket Mode, which needs no inbound port for
Slack, serves only this app on ``$PORT`` with :func:`serve_ops` so load balancers and Prometheus still reach it.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from bot.bootstrap import Services
from bot.health import DATABASE_DEADLINE_SECONDS, health_report, standard_checks
from storage.db import deadline

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
OPS_PATHS = (HEALTH_PATH, METRICS_PATH)


def _answer(start_response: StartResponse, status: str, body: bytes, content_type: str, *extra: Any) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
    return [body]


def build_ops_wsgi(services: Services) -> WSGIApplication:
    monitor = services.monitor
    checks = standard_checks(services)
    metrics = make_wsgi_app(monitor.registry)
    token = services.ctx.settings.metrics_token
    expected = f"Bearer {token}".encode() if token else None

    def ops(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path not in OPS_PATHS:
            return _answer(start_response, "404 Not Found", b"not found\n", "text/plain")
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain", ("Allow", "GET"))
        if path == HEALTH_PATH:
            ok, body = health_report(checks, monitor)
            status = "200 OK" if ok else "503 Service Unavailable"
            return _answer(start_response, status, json.dumps(body).encode(), "application/json")
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            return _answer(
                start_response, "401 Unauthorized", b"/metrics needs Authorization: Bearer <KEYBOT_METRICS_TOKEN>\n",
                "text/plain", ("WWW-Authenticate", "Bearer"),
            )  # fmt: skip
        try:
            with deadline(DATABASE_DEADLINE_SECONDS):  # a locked table: 503 within a second, as /healthz answers
                return list(metrics(environ, start_response))
        except Exception as exc:  # noqa: BLE001 - the key gauges read the database; say so instead of a 500 trace
            logger.warning("metrics scrape failed: %s", exc.__class__.__name__)
            return _answer(start_response, "503 Service Unavailable", b"the database did not answer\n", "text/plain")

    return ops


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s would flood the log
        pass


def serve_ops(app: Callable[..., Iterable[bytes]], port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Serve ``app`` on ``host:port`` in a daemon thread (Socket Mode); ``shutdown()`` the result to stop it."""
    server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    return server
