"""``KEYBOT_HEARTBEAT_URL``: the healthchecks.io ping protocol (also Uptime Kuma's push monitors).

``<url>/start`` when serve starts, ``<url>`` after every sweep that finished, ``<url>/fail`` after one that failed.
The monitoring service pages someone when the pings stop, so a bot that died quietly is noticed.
A ping that cannot be delivered is logged and forgotten: monitoring must never stop the bot.
"""

from __future__ import annotations

import logging
import urllib.request
from urllib.error import URLError

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5


class Heartbeat:
    def __init__(self, url: str | None, *, timeout: float = TIMEOUT_SECONDS):
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout

    def start(self) -> None:
        self._ping("/start")

    def success(self) -> None:
        self._ping("")

    def fail(self) -> None:
        self._ping("/fail")

    def _ping(self, suffix: str) -> None:
        if not self.url:
            return
        try:
            with urllib.request.urlopen(self.url + suffix, timeout=self.timeout) as answer:  # noqa: S310 - http(s) only
                answer.read()
        except (URLError, OSError, ValueError) as exc:
            # the URL itself is a credential of sorts (anyone holding it can ping): log only what failed
            logger.warning("heartbeat ping%s failed: %s", suffix or " (success)", exc.__class__.__name__)
