"""``GET /healthz`` and ``GET /metrics`` as a WSGI app of their own, the body limit every endpoint shares, and the
small threaded server that serves them apart from gunicorn.

``/metrics`` names vendor IDs, shop labels and expiry dates, so where anyone may connect (HTTP mode's port, which
Slack reaches from the internet, and Socket Mode's ``$PORT``) it needs ``KEYBOT_METRICS_TOKEN`` as a bearer token
and answers 403 when none is set. ``KEYBOT_OPS_ADDR`` serves ``/healthz`` and ``/metrics`` on an address of their
own where no token is needed (:func:`build_ops_listener` with ``token_free=True``, run by :func:`serve_ops`).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from bot.bootstrap import Services
from bot.health import DATABASE_DEADLINE_SECONDS, health_report, standard_checks
from storage.db import deadline

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
OPS_PATHS = (HEALTH_PATH, METRICS_PATH)
MAX_BODY = 1024 * 1024  # every endpoint; Slack's own payloads are far smaller

WSGIApp = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


def _answer(start_response: StartResponse, status: str, body: bytes, content_type: str, *extra: Any) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
    return [body]


def _refuse(start_response: StartResponse, status: str, error: str) -> list[bytes]:
    body = json.dumps({"ok": False, "error": error}).encode()
    return _answer(start_response, status, body, "application/json")


def limit_body(app: WSGIApp, limit: int = MAX_BODY) -> WSGIApp:
    """``app`` behind a body limit: 413 for a body over ``limit`` bytes before anything reads it.

    A declared ``Content-Length`` is checked before a byte is read. A chunked body (no length; gunicorn decodes
    it) is read at most ``limit + 1`` bytes, and ``app`` gets what was read as an ordinary body with its length.
    A server that cannot decode chunked bodies (wsgiref) gets 411 for one instead of a read that never ends."""

    def limited(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared:
            if not declared.isdigit() or not declared.isascii():
                return _refuse(start_response, "400 Bad Request", "Content-Length is not a number")
            if int(declared) > limit:
                return _refuse(start_response, "413 Content Too Large", f"the body is larger than {limit} bytes")
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            if not environ.get("wsgi.input_terminated"):
                return _refuse(start_response, "411 Length Required", "send the body with a Content-Length")
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _refuse(start_response, "413 Content Too Large", f"the body is larger than {limit} bytes")
            environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        return app(environ, start_response)

    return limited


def build_ops_wsgi(services: Services, *, token_free: bool = False) -> WSGIApp:
    """``/healthz`` and ``/metrics``. ``token_free``: the ops listener (``KEYBOT_OPS_ADDR``), where ``/metrics``
    needs no token; elsewhere it needs ``KEYBOT_METRICS_TOKEN`` and answers 403 while none is set."""
    from bot.i18n import t

    monitor = services.monitor
    checks = standard_checks(services)
    metrics = make_wsgi_app(monitor.registry)
    settings = services.ctx.settings
    token = settings.metrics_token
    expected = f"Bearer {token}".encode() if token else None
    closed = t(
        settings.language,
        "/metrics is closed on this port: set KEYBOT_METRICS_TOKEN and send it as Authorization: Bearer <token>, "
        "or set KEYBOT_OPS_ADDR (e.g. 127.0.0.1:9464) to serve it on an address of its own without a token.",
    )

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
        if not token_free and expected is None:
            return _answer(start_response, "403 Forbidden", f"{closed}\n".encode(), "text/plain; charset=utf-8")
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1")
        if not token_free and expected is not None and not hmac.compare_digest(given, expected):
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


def build_ops_listener(services: Services, *, token_free: bool, routes: Mapping[str, WSGIApp] | None = None) -> WSGIApp:
    """What a listener of :func:`serve_ops` answers: ``/healthz``, ``/metrics`` and ``routes`` (Socket Mode adds
    ``/rollout/confirm``); 404 elsewhere (``/slack/events`` included); every body limited to 1 MB."""
    ops = build_ops_wsgi(services, token_free=token_free)
    paths: dict[str, WSGIApp] = {path: ops for path in OPS_PATHS} | dict(routes or {})

    def listener(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return paths.get(environ.get("PATH_INFO", ""), ops)(environ, start_response)

    return limit_body(listener)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s would flood the log
        pass


def serve_ops(app: WSGIApp, host: str, port: int) -> WSGIServer:
    """Serve ``app`` on ``host:port`` (port 0: any free one) in a daemon thread; ``shutdown()`` the result to stop
    it. Raises OSError when the address cannot be listened on."""
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    return server


def listen_address(host: str, port: int) -> str:
    """``host:port`` as in a URL (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
