"""A real HTTP server on 127.0.0.1 in a daemon thread: the one lifecycle behind the fakes and the harness."""

from __future__ import annotations

import threading
from socketserver import TCPServer
from typing import Self


class LoopbackServer:
    """Subclasses build their server in :meth:`_build_server`; this starts, stops and addresses it."""

    _server: TCPServer | None = None
    _thread: threading.Thread | None = None

    def _build_server(self) -> TCPServer:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = self._build_server()
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        # a short poll interval: shutdown() waits for it, once per test
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} is not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
