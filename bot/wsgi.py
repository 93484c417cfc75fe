"""The HTTP face of the bot: ``POST /slack/events`` to Bolt; ``/healthz`` and ``/metrics`` to :mod:`bot.ops_http`.

gunicorn (``bot.serve``), the test harness and the latency benchmark all serve :func:`build_wsgi`'s app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.ops_http import OPS_PATHS

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def build_wsgi(app: App, *, ops: WSGIApplication) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """A WSGI app: Slack requests go to Bolt (signature checked there); ``ops`` answers health and metrics."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in OPS_PATHS:
            return ops(environ, start_response)
        return slack(environ, start_response)

    return wsgi
