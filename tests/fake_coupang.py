"""A local stand-in for Coupang's Open API gateway: a real HTTP server on 127.0.0.1 that checks signatures.

It verifies the CEA header the way the gateway does (HMAC over signed-date + method + the exact path and
raw query it received), refuses stale signed-dates, checks the caller's IP against the key's linking info
and the vendor ID in the path against the key's, and can be scripted to answer the next requests with an
error or slowly. Every request is recorded so tests can assert on what actually went over the wire.

    with FakeCoupang() as gateway:
        gateway.add_key("ACCESS", "SECRET", "A00012345")
        client = CoupangClient(gateway.url)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.loopback import LoopbackServer

CHECK_PATH = re.compile(r"/v2/providers/openapi/apis/api/v5/vendors/([^/]+)/returnShippingCenters")
_AUTHORIZATION = re.compile(
    r"CEA algorithm=HmacSHA256, access-key=(?P<access_key>[^,\s]+), "
    r"signed-date=(?P<signed_date>\d{6}T\d{6}Z), signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RegisteredKey:
    secret_key: str
    vendor_id: str
    allowed_ips: tuple[str, ...]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    client_ip: str


@dataclass(frozen=True)
class _Scripted:
    status: int | None = None  # answer with this status instead of checking the request
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # wait this long before answering (then check the request as usual)


class FakeCoupang(LoopbackServer):
    """The gateway; ``clock`` is its own time, used to refuse signed-dates more than 5 minutes off."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.clock = clock
        self.keys: dict[str, RegisteredKey] = {}
        self.requests: list[RecordedRequest] = []
        self.code_as_int = False  # the 200 body's "code": "200" by default, 200 when True
        self.name_ip_in_403 = True  # whether the 403 body says which IP the gateway saw
        self._script: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # ------------------------------------------------------------ set-up

    def add_key(
        self, access_key: str, secret_key: str, vendor_id: str, allowed_ips: tuple[str, ...] = ("127.0.0.1",)
    ) -> None:
        """Register a key; the caller's address 127.0.0.1 is the client IP checked against ``allowed_ips``."""
        self.keys[access_key] = RegisteredKey(secret_key, vendor_id, tuple(allowed_ips))

    def answer_next(
        self,
        count: int,
        status: int,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (e.g. 429 or 500) without checking them."""
        with self._lock:
            self._script.extend([_Scripted(status=status, body=body, headers=tuple((headers or {}).items()))] * count)

    def slow_next(self, count: int, seconds: float) -> None:
        """Make the next ``count`` requests wait ``seconds``, then answer normally (to outlast a timeout)."""
        with self._lock:
            self._script.extend([_Scripted(delay=seconds)] * count)

    # ------------------------------------------------------------ lifecycle

    def _build_server(self) -> ThreadingHTTPServer:
        return ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))

    def stop(self) -> None:
        self._stopping.set()  # cut short any slow answer still waiting
        super().stop()

    # ------------------------------------------------------------ the gateway's logic

    def _record(self, request: RecordedRequest) -> _Scripted | None:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else None

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, object]]:
        match = _AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return 401, _error(401, "Invalid signature.")
        key = self.keys.get(match["access_key"])
        if key is None:
            return 401, _error(401, "Invalid signature.")
        signed_at = datetime.strptime(match["signed_date"], "%y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs(self.clock() - signed_at) > MAX_SKEW:
            return 401, _error(401, "Specified signature is expired.")
        message = f"{match['signed_date']}{request.method}{request.path}{request.raw_query}"
        expected = hmac.new(key.secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            return 401, _error(401, "Invalid signature.")
        if request.client_ip not in key.allowed_ips:
            seen = f"({request.client_ip})" if self.name_ip_in_403 else ""
            return 403, _error(403, f"Not allowed IP{seen}")
        route = CHECK_PATH.fullmatch(request.path)
        if route is None or route[1] != key.vendor_id:
            return 404, _error(404, "Not Found")
        code: int | str = 200 if self.code_as_int else "200"
        return 200, {
            "code": code,
            "message": "SUCCESS",
            "data": {"content": [], "pagination": {"currentPage": 1, "totalPages": 0}},
        }


def _error(code: int, message: str) -> dict[str, object]:
    return {"code": code, "message": message}


def _handler_for(gateway: FakeCoupang) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            path, _, raw_query = self.path.partition("?")
            request = RecordedRequest(
                method=self.command,
                path=path,
                raw_query=raw_query,
                headers=dict(self.headers.items()),
                client_ip=self.client_address[0],
            )
            scripted = gateway._record(request)
            if scripted is not None and scripted.delay and gateway._stopping.wait(scripted.delay):
                return
            if scripted is not None and scripted.status is not None:
                body = scripted.body if scripted.body is not None else json.dumps(_error(scripted.status, ""))
                self._send(scripted.status, body, dict(scripted.headers))
                return
            status, payload = gateway._answer(request)
            self._send(status, json.dumps(payload), {})

        def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timed out) before the answer

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    return Handler


@pytest.fixture
def fake_coupang() -> Iterator[FakeCoupang]:
    """A started gateway with no keys; stopped after the test."""
    with FakeCoupang() as gateway:
        yield gateway
