"""The container's ``HEALTHCHECK`` (``python -m bot.healthcheck``): ``GET /healthz`` where this process's settings
serve it, exit 0 on 200 and 1 otherwise (including a 503 from the bot).

``/healthz`` is on ``KEYBOT_OPS_ADDR`` when that is set (HTTP mode and Socket Mode alike), else on
``KEYBOT_BIND:PORT``; a wildcard address (``0.0.0.0``, ``::``) is asked on loopback. Only the standard library and
:mod:`bot.config` are loaded: it runs every 30 seconds next to the bot.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from bot.config import ConfigError, parse_bind, parse_ops_addr

TIMEOUT_SECONDS = 3


def health_url(env: Mapping[str, str]) -> str:
    def get(name: str) -> str | None:
        value = (env.get(name) or "").strip()
        return value or None

    host, port = parse_ops_addr(get("KEYBOT_OPS_ADDR")) or (parse_bind(get("KEYBOT_BIND")), int(get("PORT") or 3000))
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - a listen address, mapped away
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def main(env: Mapping[str, str] = os.environ) -> int:
    try:
        url = health_url(env)
    except (ConfigError, ValueError) as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 - our own http URL
            return 0 if answer.status == 200 else 1
    except (OSError, urllib.error.URLError) as exc:  # HTTPError (503) included
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
