"""A local stand-in for Coupang's Open API gateway: a real HTTP server on 127.0.0.1 that checks signatures.

It verifies the CEA header the way the gateway does (HMAC over signed-date + method + the exact path and
raw query it received), refuses stale signed-dates, checks the caller's IP against the key's linking info
and the vendor ID in the path against the key's, and can be scripted to answer the next requests with an
error or slowly. Every request is recorded so tests can assert on what actually went over the wire.

It answers the way Coupang does (DOMAIN.md "Signing a request"): 401s are JSON ``{"code": "ERROR", "message":
"Invalid signature."}`` and the like, an IP outside the linking info is a 403 ``[FORBIDDEN] Not allowed IP``, and a
burst of failing calls gets the caller's IP blocked: 403 with an HTML "Access Denied" page (not JSON) until the
block ends, whatever the request.

Keys have Coupang's lifecycle (DOMAIN.md facts 3, 7, 12, 13, 17), on the gateway's own clock (a parameter, never
the wall clock unless a test passes it):

- a key expires 180 days after it was issued: then 401;
- ``reissue`` kills the old key at once (401, no overlap) and the new one is refused until 30 minutes have passed;
- ``issue`` (a first issue, a delete + issue, or an issue after expiry) is refused until 24 hours have passed;
- ``edit_ips`` takes effect after 30 minutes: until then the old IP list is the one checked;
- repeated 404s get the caller blocked without notice: 302 (Coupang's answer for a blocked IP or vendor ID);
- the 10 calls/second limit is per vendor ID and shared with the seller's own traffic (``seller_traffic``): over it
  the answer is 429, and near it (90 %) any answer carries an ``X-CAG-Warnings`` header.

A key the gateway does not know (never issued, deleted, replaced, expired or not yet propagated) gets the same
answer as an unknown Access Key: Coupang does not document a different one.

    with FakeCoupang(clock=clock.now) as gateway:
        gateway.add_key("ACCESS", "SECRET", "A00012345")  # issued long ago: works now
        client = CoupangClient(gateway.url)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.loopback import LoopbackServer

CHECK_PATH = re.compile(r"/v2/providers/openapi/apis/api/v5/vendors/([^/]+)/returnShippingCenters")
_AUTHORIZATION = re.compile(
    r"CEA algorithm=HmacSHA256, access-key=(?P<access_key>[^,\s]+), "
    r"signed-date=(?P<signed_date>\d{6}T\d{6}Z), signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW = timedelta(minutes=5)
BURST_WINDOW = timedelta(seconds=1)
VALIDITY = timedelta(days=180)  # fact 3
REISSUE_DELAY = timedelta(minutes=30)  # fact 7: a reissue or an edit of the linking info
NEW_KEY_DELAY = timedelta(hours=24)  # fact 7 and 12: a first issue, delete + issue, or issue after expiry
RATE_LIMIT = 10  # calls per second per vendor ID, the seller's own included (fact 14)
WARN_AT = 9  # X-CAG-Warnings from 90 % of the limit (fact 17)
RATE_WARNING = "Approaching rate limit (90%)"  # the header's exact text is undocumented: the bot reads its presence
BLOCKED_LOCATION = "https://developers.coupangcorp.com/hc/ko/articles/34583426711321"
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
    active_from: datetime  # refused (as an unknown key) before this: still propagating
    expires_at: datetime  # refused from this instant on: expired
    pending_ips: tuple[str, ...] | None = None  # an edited IP list, checked only from ips_from on
    ips_from: datetime | None = None

    def ips_at(self, now: datetime) -> tuple[str, ...]:
        if self.pending_ips is not None and self.ips_from is not None and now >= self.ips_from:
            return self.pending_ips
        return self.allowed_ips


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
    headers: tuple[tuple[str, str], ...] = ()


class FakeCoupang(LoopbackServer):
    """The gateway; ``clock`` is its own time, used to refuse signed-dates more than 5 minutes off."""

    def __init__(self, clock: Callable[[], datetime]):
        self.clock = clock
        self.keys: dict[str, RegisteredKey] = {}
        self.requests: list[RecordedRequest] = []
        self.code_as_int = False  # the 200 body's "code": "200" by default, 200 when True
        self.name_ip_in_403 = True  # whether the 403 body says which IP the gateway saw
        self.burst_limit = 10  # this many failing calls from one IP within BURST_WINDOW get it blocked…
        self.block_duration = timedelta(minutes=10)  # …for this long (gateway clock)
        self.not_found_limit = 3  # this many 404s from one IP within not_found_window get it blocked (302)…
        self.not_found_window = timedelta(hours=1)
        self.not_found_block = timedelta(minutes=30)  # …for this long
        self.traffic: dict[str, int] = {}  # the seller's own calls per second, per vendor ID
        self._failures: dict[str, deque[datetime]] = {}
        self._not_found: dict[str, deque[datetime]] = {}
        self._blocked_until: dict[str, tuple[datetime, int]] = {}  # client IP -> (until, 403 or 302)
        self._calls: dict[str, deque[datetime]] = {}  # vendor ID -> the bot's calls in the last second
        self._script: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # ------------------------------------------------------------ set-up

    def add_key(
        self,
        access_key: str,
        secret_key: str,
        vendor_id: str,
        allowed_ips: tuple[str, ...] = ("127.0.0.1",),
        *,
        expires_at: datetime | None = None,
    ) -> None:
        """A key issued long ago, working now (until ``expires_at``, by default 180 days from now).

        The caller's address 127.0.0.1 is the client IP checked against ``allowed_ips``.
        """
        now = self.clock()
        with self._lock:
            self.keys[access_key] = RegisteredKey(
                secret_key, vendor_id, tuple(allowed_ips), now, expires_at or now + VALIDITY
            )

    def issue(
        self, vendor_id: str, access_key: str, secret_key: str, allowed_ips: tuple[str, ...] = ("127.0.0.1",)
    ) -> None:
        """WING's Issue (발급): a first issue, a delete + issue, or an issue after expiry.

        Any key the vendor ID had stops at once; the new one is refused for 24 hours, then works for 180 days.
        """
        now = self.clock()
        with self._lock:
            self._drop(vendor_id)
            self.keys[access_key] = RegisteredKey(
                secret_key, vendor_id, tuple(allowed_ips), now + NEW_KEY_DELAY, now + VALIDITY
            )

    def reissue(self, vendor_id: str, access_key: str, secret_key: str) -> None:
        """WING's Reissue (재발급): a new Access Key and Secret Key with the same linking info.

        The old key is refused at once (no overlap, fact 13); the new one from 30 minutes on, for 180 days.
        """
        now = self.clock()
        with self._lock:
            [old] = [key for key in self.keys.values() if key.vendor_id == vendor_id]
            self._drop(vendor_id)
            self.keys[access_key] = RegisteredKey(
                secret_key,
                vendor_id,
                old.ips_at(now),
                now + REISSUE_DELAY,
                now + VALIDITY,
                old.pending_ips,
                old.ips_from,
            )

    def delete(self, vendor_id: str) -> None:
        """WING's Delete (삭제): the vendor ID's key is refused at once."""
        with self._lock:
            self._drop(vendor_id)

    def edit_ips(self, vendor_id: str, allowed_ips: tuple[str, ...]) -> None:
        """An edit of the linking info's IP list: checked from 30 minutes on; the old list until then."""
        now = self.clock()
        with self._lock:
            for access_key, key in list(self.keys.items()):
                if key.vendor_id == vendor_id:
                    self.keys[access_key] = replace(
                        key, allowed_ips=key.ips_at(now), pending_ips=tuple(allowed_ips), ips_from=now + REISSUE_DELAY
                    )

    def seller_traffic(self, vendor_id: str, calls_per_second: int) -> None:
        """The seller's own systems call this many times a second with the vendor ID (shares the limit)."""
        with self._lock:
            self.traffic[vendor_id] = calls_per_second

    def _drop(self, vendor_id: str) -> None:
        for access_key in [a for a, key in self.keys.items() if key.vendor_id == vendor_id]:
            del self.keys[access_key]

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

    def block(self, client_ip: str = "127.0.0.1", status: int = 403) -> None:
        """Block ``client_ip`` now, as a burst of failing calls would: 403 "Access Denied" pages for a while
        (``status=302``: the redirect Coupang answers for a blocked IP or vendor ID)."""
        with self._lock:
            self._blocked_until[client_ip] = (self.clock() + self.block_duration, status)

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
            blocked = self._blocked_until.get(request.client_ip)
        if blocked is not None and now < blocked[0]:
            if blocked[1] == 302:
                return _Answer(302, "", HTML, (("Location", BLOCKED_LOCATION),))
            return _Answer(403, ACCESS_DENIED_PAGE.format(path=request.path), HTML)
        route = CHECK_PATH.fullmatch(request.path)
        calls = self._count_call(route[1], now) if route else 0
        answer = _error(429, "Too Many Requests") if calls > RATE_LIMIT else self._check(request, now)
        if answer.status >= 400:
            self._count_failure(request.client_ip, now)
        if answer.status == 404:
            self._count_not_found(request.client_ip, now)
        if calls >= WARN_AT:
            answer = replace(answer, headers=(*answer.headers, ("X-CAG-Warnings", RATE_WARNING)))
        return answer

    def _count_call(self, vendor_id: str, now: datetime) -> int:
        """This call's place in the vendor ID's last second, the seller's own traffic included."""
        with self._lock:
            recent = self._calls.setdefault(vendor_id, deque())
            recent.append(now)
            while recent and recent[0] <= now - timedelta(seconds=1):
                recent.popleft()
            return len(recent) + self.traffic.get(vendor_id, 0)

    def _count_not_found(self, client_ip: str, now: datetime) -> None:
        with self._lock:
            recent = self._not_found.setdefault(client_ip, deque())
            recent.append(now)
            while recent and recent[0] <= now - self.not_found_window:
                recent.popleft()
            if len(recent) >= self.not_found_limit:
                self._blocked_until[client_ip] = (now + self.not_found_block, 302)
                recent.clear()

    def _count_failure(self, client_ip: str, now: datetime) -> None:
        with self._lock:
            recent = self._failures.setdefault(client_ip, deque())
            recent.append(now)
            while recent and recent[0] <= now - BURST_WINDOW:
                recent.popleft()
            if len(recent) >= self.burst_limit:
                self._blocked_until[client_ip] = (now + self.block_duration, 403)
                recent.clear()

    def _check(self, request: RecordedRequest, now: datetime) -> _Answer:
        match = _AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return _error(401, "HMAC format is invalid.")
        with self._lock:
            key = self.keys.get(match["access_key"])
        if key is None or not key.active_from <= now < key.expires_at:  # unknown, not propagated yet, or expired
            return _error(401, "Request is not authorized.")
        signed_at = datetime.strptime(match["signed_date"], "%y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs(now - signed_at) > MAX_SKEW:
            return _error(401, "Specified signature is expired.")
        message = f"{match['signed_date']}{request.method}{request.path}{request.raw_query}"
        expected = hmac.new(key.secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            return _error(401, "Invalid signature.")
        if request.client_ip not in key.ips_at(now):
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
            self._send(answer.status, answer.body, {"Content-Type": answer.content_type, **dict(answer.headers)})

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
