"""``POST /rollout/confirm``: a consumer proves it holds the new key (ROLLOUT.md "Proof of possession").

A plain WSGI app mounted next to ``/slack/events`` (:func:`bot.wsgi.build_wsgi`, HTTP mode) or on Socket Mode's
listener (:func:`bot.ops_http.build_ops_listener`). Anyone may call it, so before the service sees a request this
layer refuses what costs nothing to refuse: more than 30 requests a minute from one address (429), a body over
16 KB (413). The service checks the rest, signature first; every refusal is counted in
``coupang_keybot_rollout_confirm_refused_total{reason}``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bot.services.base import Unavailable
from bot.services.rollout import CONFIRM_FIELDS, RolloutService

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from bot.monitor import Monitor

CONFIRM_PATH = "/rollout/confirm"
MAX_BODY = 16 * 1024
PER_ADDRESS = 30  # requests per client address…
WINDOW_SECONDS = 60.0  # …in any minute
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content", 429: "Too Many Requests"}
_REASONS |= {503: "Service Unavailable"}


class AddressLimiter:
    """At most ``limit`` requests per client address in any ``window`` seconds (a sliding log per address).

    Memory stays bounded: addresses quiet for a whole window are forgotten once ``max_addresses`` are tracked."""

    def __init__(
        self,
        limit: int = PER_ADDRESS,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_addresses = limit, window, clock, max_addresses
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, address: str) -> float | None:
        """None when the request may go ahead (and it is counted); otherwise seconds until it would."""
        now = self.clock()
        with self._lock:
            times = self._seen.get(address)
            if times is None:
                if len(self._seen) >= self.max_addresses:
                    self._forget_quiet(now)
                times = self._seen[address] = deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return times[0] + self.window - now
            times.append(now)
            return None

    def _forget_quiet(self, now: float) -> None:
        quiet = [a for a, times in self._seen.items() if not times or times[-1] <= now - self.window]
        for address in quiet:
            del self._seen[address]
        while len(self._seen) >= self.max_addresses:  # all busy: the longest-tracked go first
            del self._seen[next(iter(self._seen))]


def build_confirm_app(
    rollout: RolloutService, monitor: Monitor, *, limiter: AddressLimiter | None = None
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    limiter = limiter or AddressLimiter()

    def confirm(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def answer(status: int, body: dict[str, object], *extra: tuple[str, str]) -> list[bytes]:
            payload = json.dumps(body).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *extra]
            start_response(f"{status} {_REASONS[status]}", headers)
            return [payload]

        def refused(status: int, reason: str, error: str, *extra: tuple[str, str]) -> list[bytes]:
            monitor.confirm_refused(reason)
            return answer(status, {"ok": False, "error": error}, *extra)

        if environ.get("REQUEST_METHOD") != "POST":
            return answer(405, {"ok": False, "error": "POST only"}, ("Allow", "POST"))
        address = environ.get("REMOTE_ADDR") or ""
        wait = limiter.admit(address)
        if wait is not None:
            seconds = str(max(1, math.ceil(wait)))
            return refused(
                429, "rate_limited", f"too many requests: try again in {seconds} s", ("Retry-After", seconds)
            )
        declared = environ.get("CONTENT_LENGTH") or "0"
        length = int(declared) if declared.isascii() and declared.isdigit() else 0
        if length > MAX_BODY:
            return refused(413, "too_large", "send a JSON body up to 16 KB")
        if length == 0:
            return refused(400, "malformed", CONFIRM_FIELDS)
        body = environ["wsgi.input"].read(length)
        headers = {
            name[5:].replace("_", "-").lower(): value for name, value in environ.items() if name.startswith("HTTP_")
        }
        try:
            result = rollout.confirm(body, headers, address=address)
        except Unavailable:
            return answer(503, {"ok": False, "error": "the database is busy: try again in a minute"})
        if result.reason is not None:
            monitor.confirm_refused(result.reason)
        return answer(result.status, result.body)

    return confirm
