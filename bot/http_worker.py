"""gunicorn's threaded worker (gthread), with the two things a Slack bot needs from it.

- Each request's arrival time (:func:`time.monotonic` when its first bytes could be read) goes into the WSGI
  environ as :data:`ARRIVED`, so a Slack request's 2 s database budget counts the time it queued for a thread:
  Slack's 3 s run from when it sent the request, not from when a thread was free.
- ``/healthz`` and ``/metrics`` run on their own :data:`OPS_THREADS` threads, never queued behind Slack requests:
  when every one of the ``threads`` is stuck on a locked table for its 2 s, a load balancer's health check and a
  scrape still answer at once. gthread learns a request's path only in the thread that parses it, so a connection
  is handed to a thread only once its request line can be read (until then it waits in gunicorn's poller, as a
  kept-alive connection does) and the line is peeked at (``MSG_PEEK``, nothing consumed) to pick the pool.

The master loads this module (``worker_class``), so it imports gunicorn and the standard library only.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from gunicorn.workers.gthread import DEFAULT_WORKER_DATA_TIMEOUT, ThreadWorker

ARRIVED = "keybot.arrived"  # bot.slack.failures.ARRIVED (not imported: see above)
OPS_THREADS = 2
OPS_PATHS = (b"/healthz", b"/metrics")  # bot.ops_http.OPS_PATHS
_PEEK_BYTES = 256


def _request_path(sock: socket.socket) -> bytes | None:
    """The path of the request line waiting on ``sock`` (nothing is read off it); b"" when no line has come."""
    try:
        head = sock.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""
    except OSError:
        return None  # closed or reset: the thread that handles it finds out
    if not head:
        return None
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].split(b"?", 1)[0] if len(parts) >= 3 else None  # METHOD PATH VERSION


class KeybotThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with arrival stamps and a separate pool for health checks and metrics (see the module)."""

    def init_process(self) -> None:
        self.ops_pool = ThreadPoolExecutor(max_workers=OPS_THREADS, thread_name_prefix="ops")
        self._arrival = threading.local()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = self.wsgi  # type: ignore[has-type]
        arrival = self._arrival

        def stamped(environ: dict[str, Any], start_response: Any) -> Any:
            environ[ARRIVED] = getattr(arrival, "at", None)
            return app(environ, start_response)

        self.wsgi = stamped

    def enqueue_req(self, conn: Any) -> None:
        path = None if self.cfg.is_ssl else _request_path(conn.sock)
        if path == b"" and not conn.initialized:  # a new connection, its request not here yet: wait in the poller
            conn.sock.setblocking(False)
            conn.timeout = time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT  # what gthread's thread would wait
            self.pending_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))
            return
        conn.keybot_arrived = time.monotonic()
        pool = self.ops_pool if path in OPS_PATHS else self.tpool
        future = pool.submit(self.handle, conn)
        future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def handle(self, conn: Any) -> Any:
        self._arrival.at = getattr(conn, "keybot_arrived", None)
        try:
            return super().handle(conn)
        finally:
            self._arrival.at = None

    def handle_quit(self, sig: Any, frame: Any) -> None:
        self.ops_pool.shutdown(wait=False)
        super().handle_quit(sig, frame)
