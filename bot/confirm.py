"""``POST /rollout/confirm``: a consumer proves it holds the new key (ROLLOUT.md "Proof of possession").

A plain WSGI app mounted by :func:`bot.wsgi.build_wsgi` next to ``/slack/events``; the service does the checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bot.services.rollout import RolloutService

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

CONFIRM_PATH = "/rollout/confirm"
MAX_BODY = 16 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content"}


def build_confirm_app(rollout: RolloutService) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    def confirm(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def answer(status: int, body: dict[str, object]) -> list[bytes]:
            payload = json.dumps(body).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            start_response(f"{status} {_REASONS[status]}", headers)
            return [payload]

        if environ.get("REQUEST_METHOD") != "POST":
            return answer(405, {"ok": False, "error": "POST only"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            return answer(413 if length > MAX_BODY else 400, {"ok": False, "error": "send a JSON body up to 16 KB"})
        body = environ["wsgi.input"].read(length)
        headers = {
            name[5:].replace("_", "-").lower(): value for name, value in environ.items() if name.startswith("HTTP_")
        }
        result = rollout.confirm(body, headers)
        return answer(result.status, result.body)

    return confirm
