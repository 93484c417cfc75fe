"""A local fake of Slack's Socket Mode WebSocket endpoint, written with the standard library only.

    with FakeSlack() as slack, FakeSocketMode() as socket_mode:
        slack.socket_mode_url = socket_mode.ws_url      # what apps.connections.open hands out
        ...start a Socket Mode client against slack.base_url...
        socket_mode.wait_connected()                    # the client connected and was sent `hello`
        envelope_id = socket_mode.send_envelope("slash_commands", {...})
        ack = socket_mode.wait_for_ack(envelope_id)     # {"envelope_id": ..., "payload": {...}}

Enough of RFC 6455 for a Socket Mode client: the HTTP Upgrade handshake (with ``Sec-WebSocket-Accept``),
masked client frames in, unmasked server frames out, pings answered with pongs, a close echoed. Text frames
only: no fragmentation, no binary frames, no extensions; a client breaking those rules is closed with 1002.
Each connection is greeted with Slack's ``hello`` message, as Slack does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from io import BufferedIOBase
from socketserver import StreamRequestHandler, ThreadingTCPServer
from typing import Any

from tests.loopback import LoopbackServer

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
PROTOCOL_ERROR = 1002
MAX_FRAME = 1 << 20  # Socket Mode acks are small; anything bigger is a bug in the test or the client
APP_ID = "A0FAKEAPP"


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value answering a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()).decode("ascii")  # noqa: S324


def server_frame(opcode: int, data: bytes) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    size = len(data)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + data


class ProtocolError(Exception):
    pass


def read_client_frame(rfile: BufferedIOBase) -> tuple[int, bytes] | None:
    """(opcode, unmasked payload) of the next frame, or None when the client went away."""

    def read(size: int) -> bytes:
        data = rfile.read(size)
        if len(data) < size:
            raise EOFError
        return data

    try:
        first, second = read(2)
        if not first & 0x80 or first & 0x70 or first & 0x0F == 0:
            raise ProtocolError(f"fragmented frame or extension bits: {first:#04x}")
        if not second & 0x80:
            raise ProtocolError("client frames must be masked")
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", read(8))
        if size > MAX_FRAME:
            raise ProtocolError(f"frame of {size} bytes")
        mask = read(4)
        payload = read(size)
    except EOFError:
        return None
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass
class Connection:
    path: str  # the request target the client asked for, e.g. /link/?ticket=...
    sock: socket.socket
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, opcode: int, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(server_frame(opcode, data))

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the handler thread blocked in read


class FakeSocketMode(LoopbackServer):
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._connections: list[Connection] = []
        self._messages: list[dict[str, Any]] = []  # JSON text frames from clients, in arrival order
        self._pings = 0
        self._counter = itertools.count(1)

    # --- lifecycle (LoopbackServer: start/stop/port) ---------------------------------------------
    def _build_server(self) -> ThreadingTCPServer:
        fake = self

        class Handler(StreamRequestHandler):
            def handle(self) -> None:
                fake._serve(self)

        return ThreadingTCPServer(("127.0.0.1", 0), Handler)

    def stop(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
        super().stop()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket=fake-ticket&app_id={APP_ID}"

    # --- inspection ------------------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        """The request target of every WebSocket connection accepted so far."""
        with self._lock:
            return [c.path for c in self._connections]

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    @property
    def pings(self) -> int:
        with self._lock:
            return self._pings

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """True once a client has connected (and been sent ``hello``); False after ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: bool(self._connections), timeout=timeout)

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The client's acknowledgement of ``envelope_id``: ``{"envelope_id": ..., "payload": {...}}``."""

        def ack() -> dict[str, Any] | None:
            return next((m for m in self._messages if m.get("envelope_id") == envelope_id), None)

        with self._lock:
            found = self._lock.wait_for(ack, timeout=timeout)
        if found is None:
            raise AssertionError(f"no ack for envelope {envelope_id} within {timeout}s; got {self.messages}")
        return found

    # --- what Slack sends ------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """A text frame to the latest connection."""
        with self._lock:
            if not self._connections:
                raise AssertionError("no Socket Mode client is connected")
            connection = self._connections[-1]
        connection.send(OP_TEXT, json.dumps(message).encode())

    def send_envelope(self, type: str, payload: dict[str, Any], *, accepts_response_payload: bool = True) -> str:
        """An envelope as Slack wraps slash commands, interactions and events; returns its ``envelope_id``."""
        envelope_id = f"fake-envelope-{next(self._counter)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
        }
        self.send(envelope)
        return envelope_id

    # --- connection handling ---------------------------------------------------------------------
    def _serve(self, handler: StreamRequestHandler) -> None:
        connection = self._handshake(handler)
        if connection is None:
            return
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "fake-applink", "build_number": 1, "approximate_connection_time": 3600},
            "connection_info": {"app_id": APP_ID},
        }
        connection.send(OP_TEXT, json.dumps(hello).encode())
        with self._lock:  # only now may send() reach it: hello comes first, as from Slack
            self._connections.append(connection)
            self._lock.notify_all()
        try:
            self._receive(handler.rfile, connection)
        except OSError:
            pass  # closed by stop() or by the client
        finally:
            connection.close()

    def _handshake(self, handler: StreamRequestHandler) -> Connection | None:
        request_line = handler.rfile.readline(8192).decode("latin-1").split()
        headers: dict[str, str] = {}
        while True:
            line = handler.rfile.readline(8192)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key", "")
        if (
            len(request_line) != 3
            or request_line[0] != "GET"
            or headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in headers.get("connection", "").lower()
            or headers.get("sec-websocket-version") != "13"
            or not key
        ):
            handler.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        handler.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode("ascii")
        )
        return Connection(path=request_line[1], sock=handler.connection)

    def _receive(self, rfile: BufferedIOBase, connection: Connection) -> None:
        while True:
            try:
                frame = read_client_frame(rfile)
            except ProtocolError:
                connection.send(OP_CLOSE, struct.pack("!H", PROTOCOL_ERROR))
                return
            if frame is None:
                return
            opcode, data = frame
            if opcode == OP_PING:
                with self._lock:
                    self._pings += 1
                connection.send(OP_PONG, data)
            elif opcode == OP_TEXT:
                with self._lock:
                    self._messages.append(json.loads(data))
                    self._lock.notify_all()
            elif opcode == OP_CLOSE:
                connection.send(OP_CLOSE, data[:2])
                return
            elif opcode != OP_PONG:  # binary and reserved opcodes: text frames only
                connection.send(OP_CLOSE, struct.pack("!H", PROTOCOL_ERROR))
                return
