"""A local stand-in for Coupang's Open API gateway: a real HTTP server on 127.0.0.1 that checks signatures.

It verifies the CEA header the way the gateway does (HMAC over signed-date + method + the exact path and
raw query it received), refuses stale signed-dates, checks the caller's IP against the key's linking info
and the vendor ID in the path against the key's, and can be scripted to answer the next requests with an
error or slowly. Every request is recorded so tests can assert on what actually went over the wire.

It answers the way Coupang does (DOMAIN.md "Signing a request"): 401s are JSON ``{"code": "ERROR", "message":
"Invalid signature."}`` and the like, an IP outside the linking info is a 403 ``[FORBIDDEN] Not allowed IP``, and a
burst of failing calls gets the caller's IP blocked: 403 with an HTML "Access Denied" page (not JSON) until the
block ends, whatever the request.

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
BURST_WINDOW = timedelta(seconds=1)
ACCESS_DENIED_PAGE = (  # the edge's own page, as Coupang's developer FAQ on 403 Forbidden shows it
    "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied</H1>\n \n"
    'You don\'t have permission to access "http://api-gateway.coupang.com{path}" on this server.<P>\n'
    "Reference #18.3c61ca17.1701137054.1f34800d\n</BODY>\n</HTML>\n"
)
JSON = "application/json;charset=UTF-8"
HTML = "text/html"


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


@dataclass(frozen=True)
class _Answer:
    status: int
    body: str
    content_type: str = JSON


class FakeCoupang(LoopbackServer):
    """The gateway; ``clock`` is its own time, used to refuse signed-dates more than 5 minutes off."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.clock = clock
        self.keys: dict[str, RegisteredKey] = {}
        self.requests: list[RecordedRequest] = []
        self.code_as_int = False  # the 200 body's "code": "200" by default, 200 when True
        self.name_ip_in_403 = True  # whether the 403 body says which IP the gateway saw
        self.burst_limit = 10  # this many failing calls from one IP within BURST_WINDOW get it blocked…
        self.block_duration = timedelta(minutes=10)  # …for this long (gateway clock)
        self._failures: dict[str, deque[datetime]] = {}
        self._blocked_until: dict[str, datetime] = {}
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

    def block(self, client_ip: str = "127.0.0.1") -> None:
        """Block ``client_ip`` now, as a burst of failing calls would: 403 "Access Denied" pages for a while."""
        with self._lock:
            self._blocked_until[client_ip] = self.clock() + self.block_duration

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

    def _answer(self, request: RecordedRequest) -> _Answer:
        now = self.clock()
        with self._lock:
            blocked_until = self._blocked_until.get(request.client_ip)
        if blocked_until is not None and now < blocked_until:
            return _Answer(403, ACCESS_DENIED_PAGE.format(path=request.path), HTML)
        answer = self._check(request, now)
        if answer.status >= 400:
            self._count_failure(request.client_ip, now)
        return answer

    def _count_failure(self, client_ip: str, now: datetime) -> None:
        with self._lock:
            recent = self._failures.setdefault(client_ip, deque())
            recent.append(now)
            while recent and recent[0] <= now - BURST_WINDOW:
                recent.popleft()
            if len(recent) >= self.burst_limit:
                self._blocked_until[client_ip] = now + self.block_duration
                recent.clear()

    def _check(self, request: RecordedRequest, now: datetime) -> _Answer:
        match = _AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return _error(401, "HMAC format is invalid.")
        key = self.keys.get(match["access_key"])
        if key is None:
            return _error(401, "Request is not authorized.")
        signed_at = datetime.strptime(match["signed_date"], "%y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs(now - signed_at) > MAX_SKEW:
            return _error(401, "Specified signature is expired.")
        message = f"{match['signed_date']}{request.method}{request.path}{request.raw_query}"
        expected = hmac.new(key.secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            return _error(401, "Invalid signature.")
        if request.client_ip not in key.allowed_ips:
            seen = f"({request.client_ip})" if self.name_ip_in_403 else ""
            return _error(403, f"[FORBIDDEN] Not allowed IP{seen}")
        route = CHECK_PATH.fullmatch(request.path)
        if route is None or route[1] != key.vendor_id:
            return _error(404, "Not Found")
        code: int | str = 200 if self.code_as_int else "200"
        body = {
            "code": code,
            "message": "SUCCESS",
            "data": {"content": [], "pagination": {"currentPage": 1, "totalPages": 0}},
        }
        return _Answer(200, json.dumps(body))


def _error(status: int, message: str) -> _Answer:
    return _Answer(status, json.dumps({"code": "ERROR", "message": message}))


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
                body = scripted.body if scripted.body is not None else _error(scripted.status, "").body
                headers = {"Content-Type": JSON, **dict(scripted.headers)}
                self._send(scripted.status, body, headers)
                return
            answer = gateway._answer(request)
            self._send(answer.status, answer.body, {"Content-Type": answer.content_type})

        def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
            data = body.encode()
            try:
                self.send_response(status)
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
