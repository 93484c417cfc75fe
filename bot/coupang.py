"""The Coupang Open API: sign a request (CEA / HMAC-SHA256) and check that a key works.

Standard library only; no Slack and no storage, so services can use it with any clock and any gateway URL
(tests point it at a local fake). The Secret Key only ever goes into the HMAC: it is never part of a
result, a log record or an exception message, and neither is the Authorization header.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.rules import Msg

logger = logging.getLogger("bot.coupang")

CHECK_PATH = "/v2/providers/openapi/apis/api/v5/vendors/{vendor_id}/returnShippingCenters"
CHECK_PARAMS = {"pageNum": "1", "pageSize": "1"}
CONTENT_TYPE = "application/json;charset=UTF-8"
ALGORITHM = "HmacSHA256"
MAX_BODY_BYTES = 64 * 1024  # enough for any error message; a check never needs the whole page
RATE_WARNING_HEADER = "X-CAG-Warnings"  # sent near 90 % of the vendor ID's call limit; its text is undocumented

_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


def signed_date(now: datetime) -> str:
    """``now`` in UTC as ``yyMMdd'T'HHmmss'Z'`` (e.g. ``250102T030405Z``), whatever its time zone."""
    if now.tzinfo is None or now.utcoffset() is None:
        # A naive time would be read as UTC and be off by the server's offset (9 hours in Korea).
        raise ValueError("signed_date needs a timezone-aware datetime, e.g. datetime.now(UTC).")
    return now.astimezone(UTC).strftime("%y%m%dT%H%M%SZ")


def signature(secret_key: str, message: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed with ``secret_key`` (both UTF-8)."""
    return hmac.new(secret_key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(method: str, path: str, query: str, access_key: str, secret_key: str, now: datetime) -> str:
    """The ``Authorization`` header value for one request.

    ``query`` is exactly the query string that is sent, without the leading ``?`` (empty if none):
    the gateway signs the raw bytes it receives, so any re-encoding between here and the wire breaks it.
    """
    if query.startswith("?"):
        raise ValueError("Pass the query string without the leading '?', exactly as it is sent.")
    date = signed_date(now)
    message = f"{date}{method.upper()}{path}{query}"
    return (
        f"CEA algorithm={ALGORITHM}, access-key={access_key}, signed-date={date}, "
        f"signature={signature(secret_key, message)}"
    )


class Outcome(enum.StrEnum):
    WORKS = "works"
    NEAR_LIMIT = "near_limit"  # works, and Coupang warned that the vendor ID is near its call limit: back off
    INVALID_KEY = "invalid_key"
    IP_NOT_ALLOWED = "ip_not_allowed"
    WRONG_VENDOR = "wrong_vendor"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"  # Coupang's edge blocks the caller for a while after a burst of failing calls
    UNAVAILABLE = "unavailable"  # the key's state is unknown: ask again later


@dataclass(frozen=True)
class CheckResult:
    outcome: Outcome
    http_status: int | None  # None when no HTTP answer arrived (timeout, connection error)
    detail: Msg  # a sentence for a person; never contains the key
    attempts: int
    rate_warning: bool = False  # the answer carried X-CAG-Warnings: the vendor ID is near its call limit

    @property
    def works(self) -> bool:
        return self.outcome in (Outcome.WORKS, Outcome.NEAR_LIMIT)


@dataclass(frozen=True)
class _Answer:
    """One attempt's result before classification: an HTTP status and body, or why there was none."""

    status: int | None
    body: str = ""
    failure: str = ""  # "timeout" or a short connection-error reason when status is None
    rate_warning: bool = False  # X-CAG-Warnings was present


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would resend the Authorization header to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class CoupangClient:
    """Calls the Coupang Open API gateway at ``base_url`` (``https://api-gateway.coupang.com``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 3.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in {"http", "https"}:
            raise ValueError(f"The Coupang API URL must start with https:// (got {scheme or 'no'} scheme).")
        if max_retries < 0:
            raise ValueError("max_retries cannot be negative.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def __repr__(self) -> str:
        return f"CoupangClient({self.base_url!r}, timeout={self.timeout}, max_retries={self.max_retries})"

    def check_key(self, vendor_id: str, access_key: str, secret_key: str, now: Callable[[], datetime]) -> CheckResult:
        """One cheap read-only call that checks key, IP allow-list and vendor ID together.

        4xx answers are final (retrying them gets the IP blocked); 5xx, timeouts and connection errors
        are retried at most ``max_retries`` times, each attempt signed afresh with ``now()`` — unless the answer
        carried ``X-CAG-Warnings`` (the vendor ID is near its call limit, shared with the seller's own systems).
        """
        path = CHECK_PATH.format(vendor_id=urllib.parse.quote(vendor_id, safe=""))
        query = urllib.parse.urlencode(CHECK_PARAMS)  # built once: signed and sent as this exact string
        attempts = 0
        while True:
            attempts += 1
            answer = self._get(path, query, access_key, secret_key, now())
            transient = answer.status is None or answer.status >= 500
            if not transient or answer.rate_warning or attempts > self.max_retries:
                break
            delay = self.backoff * 2 ** (attempts - 1)
            logger.info("coupang check: status=%s, retrying in %.1fs", answer.status or "none", delay)
            self._sleep(delay)
        result = _classify(answer, vendor_id, attempts, self.timeout)
        level = logging.INFO if result.works else logging.WARNING
        logger.log(level, "coupang check: outcome=%s status=%s", result.outcome, result.http_status)
        return result

    def _get(self, path: str, query: str, access_key: str, secret_key: str, now: datetime) -> _Answer:
        url = f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            url,
            method="GET",
            headers={
                "Authorization": authorization("GET", path, query, access_key, secret_key, now),
                "Content-Type": CONTENT_TYPE,
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _Answer(response.status, _read(response), rate_warning=_warned(response.headers))
        except urllib.error.HTTPError as error:
            with error:
                return _Answer(error.code, _read(error), rate_warning=_warned(error.headers))
        except TimeoutError:
            return _Answer(None, failure="timeout")
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                return _Answer(None, failure="timeout")
            return _Answer(None, failure=_reason(error.reason))
        except (OSError, http.client.HTTPException) as error:
            return _Answer(None, failure=_reason(error))


def _read(response: http.client.HTTPResponse | urllib.error.HTTPError) -> str:
    try:
        return response.read(MAX_BODY_BYTES).decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException):
        return ""  # a status without a readable body still says enough


def _warned(headers: object) -> bool:
    get = getattr(headers, "get", None)
    return bool(get and get(RATE_WARNING_HEADER))


def _reason(error: object) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _public_ip_in(body: str) -> str | None:
    for candidate in _IPV4.findall(body):
        try:
            return str(ipaddress.IPv4Address(candidate))
        except ValueError:
            continue
    return None


def _classify(answer: _Answer, vendor_id: str, attempts: int, timeout: float) -> CheckResult:
    result = _triage(answer, vendor_id, attempts, timeout)
    if not answer.rate_warning:
        return result
    if result.outcome is Outcome.WORKS:
        detail = Msg(
            "The key works: Coupang accepted a signed call for {vendor_id}, and warned (X-CAG-Warnings) that the "
            "vendor ID is near its limit of 10 calls per second, which it shares with the seller's own systems.",
            {"vendor_id": vendor_id},
        )
        return CheckResult(Outcome.NEAR_LIMIT, result.http_status, detail, attempts, rate_warning=True)
    warning = Msg(
        "Coupang also warned (X-CAG-Warnings) that {vendor_id} is near its limit of 10 calls per second.",
        {"vendor_id": vendor_id},
    )
    detail = Msg("{detail} {warning}", {"detail": result.detail, "warning": warning})
    return CheckResult(result.outcome, result.http_status, detail, attempts, rate_warning=True)


def _triage(answer: _Answer, vendor_id: str, attempts: int, timeout: float) -> CheckResult:
    """What one answer says about the key, in Coupang's own terms (DOMAIN.md facts 17 and "Signing a request")."""
    status, body = answer.status, answer.body
    lowered = body.lower()
    tries = Msg("1 attempt") if attempts == 1 else Msg("{count} attempts", {"count": attempts})

    def checked(outcome: Outcome, detail: str, **params: object) -> CheckResult:  # extracted for translation
        return CheckResult(outcome, status, Msg(detail, params), attempts)

    if status is None:
        if answer.failure == "timeout":
            return checked(
                Outcome.UNAVAILABLE,
                "Coupang did not answer within {seconds} s ({tries}), so the key's state is unknown. Try again later.",
                seconds=f"{timeout:g}",
                tries=tries,
            )
        return checked(
            Outcome.UNAVAILABLE,
            "Could not reach Coupang ({failure}; {tries}), so the key's state is unknown. Try again later.",
            failure=answer.failure,
            tries=tries,
        )
    if status == 200:
        if _code_is_200(body):
            return checked(
                Outcome.WORKS, "The key works: Coupang accepted a signed call for {vendor_id}.", vendor_id=vendor_id
            )
        return checked(
            Outcome.UNAVAILABLE,
            "Coupang answered HTTP 200 but not with the expected JSON, so the key's state is unknown. Try again later.",
        )
    if status == 302:  # not followed (the signed header would go with it): Coupang's answer for a blocked caller
        return checked(
            Outcome.BLOCKED,
            "Coupang is blocking calls from the bot's address or for {vendor_id} for a while (HTTP 302), which it "
            "does after repeated failing calls such as 404s. This says nothing about the key: try again later "
            "(minutes to tens of minutes).",
            vendor_id=vendor_id,
        )
    if status == 410:
        return checked(
            Outcome.UNAVAILABLE,
            "Coupang answered 410 Gone: the API the bot checks keys with (returnShippingCenters) has been retired. "
            "This says nothing about the key, which may well work: the bot needs an update to check keys again.",
        )
    if status == 401:
        if "expired" in lowered:
            return checked(
                Outcome.INVALID_KEY,
                "Coupang refused the call's signature as expired (HTTP 401). The bot's clock may be off by "
                "minutes: sync the server's clock (NTP) and check again. If the clock is right, the key "
                "itself has expired.",
            )
        return checked(
            Outcome.INVALID_KEY,
            "Coupang refused the key (HTTP 401): the Access Key or Secret Key is wrong, expired, or not "
            "active yet (up to 30 minutes after a reissue, 24 hours after a new issue). Check that both were "
            "copied exactly from WING.",
        )
    if status == 403:
        if "not allowed ip" in lowered:
            ip = _public_ip_in(body)
            if ip:
                return checked(
                    Outcome.IP_NOT_ALLOWED,
                    "Coupang refused the call's IP address (HTTP 403): the linking info's IP list in WING must "
                    "contain the bot's public egress address ({ip}, the address Coupang saw). Add it in WING; the "
                    "change takes up to 30 minutes.",
                    ip=ip,
                )
            return checked(
                Outcome.IP_NOT_ALLOWED,
                "Coupang refused the call's IP address (HTTP 403): the linking info's IP list in WING must "
                "contain the bot's public egress address. Add it in WING; the change takes up to 30 minutes.",
            )
        if "access denied" in lowered and "<html" in lowered:  # the edge's page, not the gateway's JSON
            return checked(
                Outcome.BLOCKED,
                'Coupang is blocking calls from the bot\'s address for a while (HTTP 403 "Access Denied" page), '
                "which it does after a burst of failing calls. This says nothing about the key: wait (minutes to "
                "tens of minutes) before checking again.",
            )
        return checked(
            Outcome.INVALID_KEY,
            "Coupang refused the key (HTTP 403): it is not allowed to call this API. Check the key and its "
            "linking info in WING.",
        )
    if status == 404:
        return checked(
            Outcome.WRONG_VENDOR,
            "Coupang answered 404 Not Found: wrong vendor ID or path. Check that {vendor_id} is the vendor ID "
            "(업체코드, A followed by 8 digits) of the seller account this key was issued for; Coupang does not "
            "say what an unknown vendor ID returns, so this is the likely cause, not a certainty.",
            vendor_id=vendor_id,
        )
    if status == 429:
        return checked(
            Outcome.RATE_LIMITED,
            "Coupang is limiting calls for {vendor_id} (HTTP 429, more than 10 calls per second). "
            "Try again in a minute.",
            vendor_id=vendor_id,
        )
    if status >= 500:
        return checked(
            Outcome.UNAVAILABLE,
            "Coupang's gateway had trouble (HTTP {status}, {tries}), so the key's state is unknown. Try again later.",
            status=status,
            tries=tries,
        )
    return checked(
        Outcome.UNAVAILABLE,
        "Coupang gave an unexpected answer (HTTP {status}), so the key's state is unknown.",
        status=status,
    )


def _code_is_200(body: str) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("code") in (200, "200")
