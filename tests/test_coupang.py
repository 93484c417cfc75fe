"""The Coupang signer and key check, against a local gateway that verifies signatures like Coupang's."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.coupang import (
    CheckResult,
    CoupangClient,
    Outcome,
    authorization,
    signature,
    signed_date,
)
from tests.fake_coupang import FakeCoupang

VENDOR = "A00012345"
ACCESS = "ak-3f2a9c1e-5b7d-4e60-9a18-0c4d2e6f8b17"
SECRET = "SECRET-sk-7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e"
CHECK_PATH = f"/v2/providers/openapi/apis/api/v5/vendors/{VENDOR}/returnShippingCenters"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeSleep:
    """Records backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def gateway() -> Iterator[FakeCoupang]:
    with FakeCoupang(clock=lambda: NOW) as fake:
        fake.add_key(ACCESS, SECRET, VENDOR)
        yield fake


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def client(gateway: FakeCoupang, sleep: FakeSleep) -> CoupangClient:
    return CoupangClient(gateway.url, timeout=0.2, sleep=sleep)


@pytest.fixture
def seoul_process_tz() -> Iterator[None]:
    """Run the test as if the server's local time zone were Korea's (UTC+9), then restore it."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Seoul"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def check(client: CoupangClient, *, secret: str = SECRET, vendor: str = VENDOR, now=lambda: NOW) -> CheckResult:
    return client.check_key(vendor, ACCESS, secret, now)


def expected_hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- signer


def test_signature_is_hex_hmac_sha256_of_the_documented_message() -> None:
    message = "250102T030405Z" + "GET" + CHECK_PATH + "pageNum=1&pageSize=1"
    assert signature("test-secret-key", message) == expected_hmac("test-secret-key", message)
    # Pinned with `openssl dgst -sha256 -hmac test-secret-key`, so a shared mistake cannot hide here.
    assert signature("test-secret-key", message) == ("660ebf88a02eed1d130cc80d57e5cf6de806ac3f36fb63ef3ee9c324d8268ddf")


def test_authorization_header_has_exactly_the_documented_shape() -> None:
    header = authorization("get", CHECK_PATH, "pageNum=1&pageSize=1", ACCESS, SECRET, NOW)
    message = f"250102T030405ZGET{CHECK_PATH}pageNum=1&pageSize=1"
    assert header == (
        f"CEA algorithm=HmacSHA256, access-key={ACCESS}, signed-date=250102T030405Z, "
        f"signature={expected_hmac(SECRET, message)}"
    )
    assert SECRET not in header


def test_query_is_signed_as_the_percent_encoded_string_that_is_sent(gateway: FakeCoupang) -> None:
    query = urllib.parse.urlencode({"pageNum": 1, "pageSize": 1, "memo": "반품 센터/a&b=c"})
    assert "%EB%B0%98" in query and "+" in query  # needs encoding: Hangul, space, '/', '&', '='
    header = authorization("GET", CHECK_PATH, query, ACCESS, SECRET, NOW)
    assert header.endswith(expected_hmac(SECRET, f"250102T030405ZGET{CHECK_PATH}{query}"))

    def send(auth: str) -> int:
        request = urllib.request.Request(  # noqa: S310 - the local fake
            f"{gateway.url}{CHECK_PATH}?{query}", headers={"Authorization": auth}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - local fake
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    # The gateway checks the raw query it received: the encoded string works, the decoded one does not.
    assert send(header) == 200
    decoded = urllib.parse.unquote_plus(query)
    assert send(authorization("GET", CHECK_PATH, decoded, ACCESS, SECRET, NOW)) == 401
    assert gateway.requests[0].raw_query == query


def test_query_with_leading_question_mark_is_refused() -> None:
    with pytest.raises(ValueError, match="without the leading"):
        authorization("GET", CHECK_PATH, "?pageNum=1", ACCESS, SECRET, NOW)


@pytest.mark.usefixtures("seoul_process_tz")
def test_signed_date_is_utc_even_when_the_server_runs_on_korea_time() -> None:
    assert time.strftime("%Z") == "KST"
    seoul = datetime(2025, 1, 2, 12, 4, 5, tzinfo=ZoneInfo("Asia/Seoul"))
    assert signed_date(seoul) == "250102T030405Z"
    assert signed_date(NOW) == "250102T030405Z"
    local_now = datetime.now().astimezone()  # aware, in the process's (Korean) zone
    assert local_now.utcoffset() == timedelta(hours=9)
    wall_clock_minus_9h = local_now.replace(tzinfo=None) - timedelta(hours=9)
    assert signed_date(local_now) == wall_clock_minus_9h.strftime("%y%m%dT%H%M%SZ")


def test_signed_date_refuses_a_naive_datetime() -> None:
    # A naive time on a Korean server would be signed 9 hours off and every check would fail.
    with pytest.raises(ValueError, match="timezone-aware"):
        signed_date(datetime(2025, 1, 2, 12, 4, 5))


@pytest.mark.usefixtures("seoul_process_tz")
def test_key_check_works_with_a_local_clock_on_a_korea_time_server(sleep: FakeSleep) -> None:
    with FakeCoupang(clock=lambda: datetime.now(UTC)) as real_time_gateway:  # the real UTC time, on purpose
        real_time_gateway.add_key(ACCESS, SECRET, VENDOR)
        client = CoupangClient(real_time_gateway.url, timeout=1, sleep=sleep)
        result = client.check_key(VENDOR, ACCESS, SECRET, lambda: datetime.now().astimezone())
    assert result.outcome is Outcome.WORKS


# ---------------------------------------------------------------- what the gateway answers


@pytest.mark.parametrize("code_as_int", [False, True])
def test_a_working_key(gateway: FakeCoupang, client: CoupangClient, code_as_int: bool) -> None:
    gateway.code_as_int = code_as_int
    result = check(client)
    assert result == CheckResult(Outcome.WORKS, 200, result.detail, 1)
    assert result.works and VENDOR in str(result.detail)
    [request] = gateway.requests
    assert request.method == "GET"
    assert request.path == CHECK_PATH
    assert request.raw_query == "pageNum=1&pageSize=1"
    assert request.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert request.headers["Authorization"] == authorization(
        "GET", CHECK_PATH, "pageNum=1&pageSize=1", ACCESS, SECRET, NOW
    )


def test_a_wrong_secret_key_is_invalid(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep) -> None:
    result = check(client, secret="SECRET-someone-elses-secret-key-0000")
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.INVALID_KEY, 401, 1)
    assert "copied exactly from WING" in str(result.detail)
    assert "clock" not in str(result.detail)
    assert len(gateway.requests) == 1 and sleep.calls == []


def test_a_clock_off_by_minutes_is_named_as_the_likely_cause(
    gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep
) -> None:
    result = check(client, now=lambda: NOW - timedelta(minutes=6))
    assert (result.outcome, result.http_status) == (Outcome.INVALID_KEY, 401)
    assert "clock" in str(result.detail) and "minutes" in str(result.detail)
    assert len(gateway.requests) == 1 and sleep.calls == []


def test_a_clock_off_by_under_five_minutes_still_works(client: CoupangClient) -> None:
    assert check(client, now=lambda: NOW + timedelta(minutes=4)).outcome is Outcome.WORKS


def test_an_ip_missing_from_the_linking_info(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep) -> None:
    gateway.add_key(ACCESS, SECRET, VENDOR, allowed_ips=("203.0.113.7",))
    result = check(client)
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.IP_NOT_ALLOWED, 403, 1)
    assert "IP list" in str(result.detail) and "public egress address" in str(result.detail)
    assert "127.0.0.1" in str(result.detail)  # the address the gateway saw, so the user knows what to add
    assert len(gateway.requests) == 1 and sleep.calls == []


def test_an_ip_refusal_that_does_not_name_the_ip(gateway: FakeCoupang, client: CoupangClient) -> None:
    gateway.add_key(ACCESS, SECRET, VENDOR, allowed_ips=("203.0.113.7",))
    gateway.name_ip_in_403 = False
    result = check(client)
    assert result.outcome is Outcome.IP_NOT_ALLOWED
    assert "public egress address." in str(result.detail)
    assert re.search(r"\d+\.\d+\.\d+\.\d+", str(result.detail)) is None  # no made-up address


def test_another_403_means_the_key_is_refused(gateway: FakeCoupang, client: CoupangClient) -> None:
    gateway.answer_next(1, 403, body='{"code":"ERROR","message":"Forbidden"}')
    result = check(client)
    assert (result.outcome, result.http_status) == (Outcome.INVALID_KEY, 403)
    assert len(gateway.requests) == 1


def test_a_vendor_id_that_is_not_the_keys(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep) -> None:
    result = check(client, vendor="A99999999")
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.WRONG_VENDOR, 404, 1)
    assert "A99999999" in str(result.detail) and "wrong vendor ID or path" in str(result.detail)
    assert "not a certainty" in str(result.detail)
    assert gateway.requests[0].path == CHECK_PATH.replace(VENDOR, "A99999999")
    assert len(gateway.requests) == 1 and sleep.calls == []


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """A raw request to the fake gateway: status, Content-Type and body."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - a local test server
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


def test_the_fake_gateway_answers_401s_with_coupangs_json_bodies(gateway: FakeCoupang) -> None:
    url = f"{gateway.url}{CHECK_PATH}?pageNum=1&pageSize=1"
    status, content_type, body = get(url, {"Authorization": "CEA nonsense"})
    assert (status, content_type) == (401, "application/json;charset=UTF-8")
    assert json.loads(body) == {"code": "ERROR", "message": "HMAC format is invalid."}
    header = authorization("GET", CHECK_PATH, "pageNum=1&pageSize=1", ACCESS, "SECRET-wrong-0000000000", NOW)
    assert json.loads(get(url, {"Authorization": header})[2]) == {"code": "ERROR", "message": "Invalid signature."}


def test_a_burst_of_failing_calls_gets_an_access_denied_page_which_is_a_temporary_block(
    gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep
) -> None:
    failures = [check(client, secret="SECRET-someone-elses-secret-key-0000") for _ in range(gateway.burst_limit)]
    assert {r.outcome for r in failures} == {Outcome.INVALID_KEY}
    status, content_type, body = get(f"{gateway.url}{CHECK_PATH}")
    assert (status, content_type) == (403, "text/html") and "<TITLE>Access Denied</TITLE>" in body

    result = check(client)  # the right key, while the block lasts
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.BLOCKED, 403, 1)
    assert "wait" in str(result.detail) and "says nothing about the key" in str(result.detail)
    assert "refused the key" not in str(result.detail)
    assert sleep.calls == []  # never retried: a 4xx is final


def test_the_block_ends_after_a_while() -> None:
    now = [NOW]
    with FakeCoupang(clock=lambda: now[0]) as gateway:
        gateway.add_key(ACCESS, SECRET, VENDOR)
        gateway.block()
        blocked = CoupangClient(gateway.url, timeout=0.2, sleep=FakeSleep())
        assert blocked.check_key(VENDOR, ACCESS, SECRET, lambda: now[0]).outcome is Outcome.BLOCKED
        now[0] += gateway.block_duration
        assert blocked.check_key(VENDOR, ACCESS, SECRET, lambda: now[0]).outcome is Outcome.WORKS


def test_rate_limiting_is_not_retried(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep) -> None:
    gateway.answer_next(3, 429)
    result = check(client)
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.RATE_LIMITED, 429, 1)
    assert "Try again" in str(result.detail)
    assert len(gateway.requests) == 1 and sleep.calls == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 429])
def test_no_4xx_is_ever_retried(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep, status: int) -> None:
    # Bursts of failing calls get the bot's IP blocked by Coupang.
    gateway.answer_next(3, status)
    result = check(client)
    assert result.http_status == status and result.attempts == 1
    assert result.outcome is not Outcome.WORKS
    assert len(gateway.requests) == 1 and sleep.calls == []


def test_a_gateway_error_then_success_is_retried_with_a_fresh_signature(
    gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep
) -> None:
    gateway.answer_next(1, 500)
    ticks = iter([NOW, NOW + timedelta(seconds=1)])
    result = check(client, now=lambda: next(ticks))
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.WORKS, 200, 2)
    assert sleep.calls == [0.5]
    first, second = (r.headers["Authorization"] for r in gateway.requests)
    assert "signed-date=250102T030405Z" in first and "signed-date=250102T030406Z" in second


def test_a_gateway_that_keeps_failing_is_tried_three_times_with_backoff(
    gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep
) -> None:
    gateway.answer_next(10, 503)
    result = check(client)
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.UNAVAILABLE, 503, 3)
    assert "state is unknown" in str(result.detail)
    assert len(gateway.requests) == 3
    assert sleep.calls == [0.5, 1.0]


def test_a_slow_gateway_times_out_and_is_retried(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep) -> None:
    gateway.slow_next(3, seconds=2)
    started = time.monotonic()
    result = check(client)
    assert time.monotonic() - started < 1.5  # three 0.2 s timeouts, not three 2 s waits
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.UNAVAILABLE, None, 3)
    assert "did not answer within 0.2 s" in str(result.detail)
    assert len(gateway.requests) == 3 and sleep.calls == [0.5, 1.0]


def test_one_slow_answer_then_a_working_key(gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep) -> None:
    gateway.slow_next(1, seconds=2)
    result = check(client)
    assert (result.outcome, result.attempts) == (Outcome.WORKS, 2)
    assert sleep.calls == [0.5]


def test_an_unreachable_gateway_is_unavailable(sleep: FakeSleep) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = check(CoupangClient(f"http://127.0.0.1:{port}", timeout=0.2, sleep=sleep))
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.UNAVAILABLE, None, 3)
    assert "Could not reach Coupang" in str(result.detail)
    assert sleep.calls == [0.5, 1.0]


@pytest.mark.parametrize("body", ["<html>Service Unavailable</html>", '{"code": "ERROR"}', "[]"])
def test_a_200_without_the_expected_json_is_not_called_working(
    gateway: FakeCoupang, client: CoupangClient, sleep: FakeSleep, body: str
) -> None:
    gateway.answer_next(1, 200, body=body)
    result = check(client)
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.UNAVAILABLE, 200, 1)
    assert len(gateway.requests) == 1 and sleep.calls == []


def test_a_redirect_is_not_followed_so_the_signed_header_stays_put(gateway: FakeCoupang, client: CoupangClient) -> None:
    gateway.answer_next(1, 302, body="", headers={"Location": f"{gateway.url}/elsewhere"})
    result = check(client)
    assert (result.outcome, result.http_status) == (Outcome.BLOCKED, 302)  # Coupang's answer for a blocked caller
    assert [r.path for r in gateway.requests] == [CHECK_PATH]


def test_the_client_only_talks_http(sleep: FakeSleep) -> None:
    with pytest.raises(ValueError, match="https://"):
        CoupangClient("file:///etc/passwd", sleep=sleep)


# ---------------------------------------------------------------- the secret stays secret


def test_the_secret_key_is_never_sent_shown_or_logged(
    gateway: FakeCoupang, client: CoupangClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results = [check(client)]  # works
    results.append(check(client, vendor="A99999999"))  # 404
    results.append(check(client, now=lambda: NOW - timedelta(hours=1)))  # expired signature
    gateway.answer_next(3, 500)
    results.append(check(client))  # unavailable after retries
    gateway.add_key(ACCESS, SECRET, VENDOR, allowed_ips=("203.0.113.7",))
    results.append(check(client))  # 403
    assert [r.outcome for r in results] == [
        Outcome.WORKS,
        Outcome.WRONG_VENDOR,
        Outcome.INVALID_KEY,
        Outcome.UNAVAILABLE,
        Outcome.IP_NOT_ALLOWED,
    ]

    assert len(gateway.requests) == 7
    for request in gateway.requests:
        sent = [request.path, request.raw_query, *request.headers.values()]
        assert not any(SECRET in part for part in sent)
    for result in results:
        assert SECRET not in repr(result) and SECRET not in str(result.detail)
        assert "CEA " not in str(result.detail) and "signature=" not in repr(result)
    assert SECRET not in caplog.text and "CEA " not in caplog.text and ACCESS not in caplog.text
    finals = [r for r in caplog.records if r.name == "bot.coupang" and "outcome=" in r.getMessage()]
    assert [r.getMessage() for r in finals] == [
        "coupang check: outcome=works status=200",
        "coupang check: outcome=wrong_vendor status=404",
        "coupang check: outcome=invalid_key status=401",
        "coupang check: outcome=unavailable status=500",
        "coupang check: outcome=ip_not_allowed status=403",
    ]
    assert SECRET not in repr(client)


# ---------------------------------------------------------------- a key's lifecycle at the fake gateway (DOMAIN.md)

NEW_ACCESS = "ak-new-0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6"
NEW_SECRET = "SECRET-sk-new-0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"


class MovingClock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def moving() -> Iterator[tuple[MovingClock, FakeCoupang, CoupangClient]]:
    clock = MovingClock()
    with FakeCoupang(clock=clock) as fake:
        fake.add_key(ACCESS, SECRET, VENDOR)
        yield clock, fake, CoupangClient(fake.url, timeout=0.5, sleep=FakeSleep())


def outcome_at(client: CoupangClient, clock: MovingClock, access: str = ACCESS, secret: str = SECRET) -> Outcome:
    return client.check_key(VENDOR, access, secret, clock).outcome


def test_a_key_is_refused_once_its_180_days_are_over(moving) -> None:
    clock, _, client = moving
    clock.at = NOW + timedelta(days=180) - timedelta(seconds=1)
    assert outcome_at(client, clock) is Outcome.WORKS
    clock.at = NOW + timedelta(days=180)
    result = client.check_key(VENDOR, ACCESS, SECRET, clock)
    assert (result.outcome, result.http_status) == (Outcome.INVALID_KEY, 401)


def test_a_reissue_refuses_the_old_key_at_once_and_the_new_one_for_30_minutes(moving) -> None:
    clock, fake, client = moving
    fake.reissue(VENDOR, NEW_ACCESS, NEW_SECRET)
    assert outcome_at(client, clock) is Outcome.INVALID_KEY  # no overlap: the old key is dead from the click
    clock.at = NOW + timedelta(minutes=29, seconds=59)
    assert outcome_at(client, clock, NEW_ACCESS, NEW_SECRET) is Outcome.INVALID_KEY
    clock.at = NOW + timedelta(minutes=30)
    assert outcome_at(client, clock, NEW_ACCESS, NEW_SECRET) is Outcome.WORKS
    assert outcome_at(client, clock) is Outcome.INVALID_KEY
    clock.at = NOW + timedelta(minutes=30, days=180)  # 180 days from the reissue, not from the first issue
    assert outcome_at(client, clock, NEW_ACCESS, NEW_SECRET) is Outcome.INVALID_KEY


def test_a_new_issue_is_refused_for_24_hours_and_replaces_the_old_key(moving) -> None:
    clock, fake, client = moving
    fake.issue(VENDOR, NEW_ACCESS, NEW_SECRET)  # delete + issue, or issue after expiry
    assert outcome_at(client, clock) is Outcome.INVALID_KEY
    clock.at = NOW + timedelta(hours=23, minutes=59)
    assert outcome_at(client, clock, NEW_ACCESS, NEW_SECRET) is Outcome.INVALID_KEY
    clock.at = NOW + timedelta(hours=24)
    assert outcome_at(client, clock, NEW_ACCESS, NEW_SECRET) is Outcome.WORKS


def test_a_deleted_key_is_refused_at_once(moving) -> None:
    clock, fake, client = moving
    fake.delete(VENDOR)
    assert outcome_at(client, clock) is Outcome.INVALID_KEY


def test_an_edited_ip_list_applies_after_30_minutes(moving) -> None:
    clock, fake, client = moving
    fake.edit_ips(VENDOR, ("203.0.113.7",))  # 127.0.0.1 removed: it still works until the edit applies
    assert outcome_at(client, clock) is Outcome.WORKS
    clock.at = NOW + timedelta(minutes=30)
    assert outcome_at(client, clock) is Outcome.IP_NOT_ALLOWED
    fake.edit_ips(VENDOR, ("203.0.113.7", "127.0.0.1"))  # added back: refused for 30 minutes more
    clock.at = NOW + timedelta(minutes=59)
    assert outcome_at(client, clock) is Outcome.IP_NOT_ALLOWED
    clock.at = NOW + timedelta(minutes=60)
    assert outcome_at(client, clock) is Outcome.WORKS


def test_repeated_404s_get_the_caller_blocked_with_a_302_that_reads_try_later(moving) -> None:
    clock, fake, client = moving
    for minute in range(fake.not_found_limit):  # spread out: not a burst, and still blocked
        clock.at = NOW + timedelta(minutes=minute)
        assert client.check_key("A99999999", ACCESS, SECRET, clock).outcome is Outcome.WRONG_VENDOR
    result = client.check_key(VENDOR, ACCESS, SECRET, clock)  # even the right vendor ID now
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.BLOCKED, 302, 1)
    assert "try again later" in str(result.detail) and "says nothing about the key" in str(result.detail)
    clock.at += fake.not_found_block
    assert outcome_at(client, clock) is Outcome.WORKS


def test_the_limit_is_shared_with_the_sellers_traffic_and_warned_near_it(moving) -> None:
    clock, fake, client = moving
    fake.seller_traffic(VENDOR, 8)
    near = client.check_key(VENDOR, ACCESS, SECRET, clock)
    assert (near.outcome, near.http_status, near.rate_warning) == (Outcome.NEAR_LIMIT, 200, True)
    assert near.works and "X-CAG-Warnings" in str(near.detail)
    over = client.check_key(VENDOR, ACCESS, SECRET, clock)  # 8 + the bot's 2 calls this second
    assert (over.outcome, over.rate_warning) == (Outcome.NEAR_LIMIT, True)
    third = client.check_key(VENDOR, ACCESS, SECRET, clock)
    assert (third.outcome, third.http_status) == (Outcome.RATE_LIMITED, 429)
    clock.at += timedelta(seconds=1)
    fake.seller_traffic(VENDOR, 0)
    calm = client.check_key(VENDOR, ACCESS, SECRET, clock)
    assert (calm.outcome, calm.rate_warning) == (Outcome.WORKS, False)


def test_a_warning_stops_retries_and_is_said_with_a_failure(gateway: FakeCoupang, client: CoupangClient) -> None:
    gateway.answer_next(1, 503, headers={"X-CAG-Warnings": "near limit"})  # a retry would get through and work
    busy = check(client)
    assert (busy.outcome, busy.attempts, busy.rate_warning) == (Outcome.UNAVAILABLE, 1, True)
    assert len(gateway.requests) == 1  # not retried into the limit
    gateway.answer_next(1, 401, body='{"code":"ERROR","message":"Invalid signature."}', headers={"X-CAG-Warnings": "x"})
    refused = check(client)
    assert refused.outcome is Outcome.INVALID_KEY and "near its limit" in str(refused.detail)


def test_a_410_is_a_retired_endpoint_not_an_expired_key(gateway: FakeCoupang, client: CoupangClient) -> None:
    gateway.answer_next(1, 410, body='{"code":"ERROR","message":"Gone"}')
    result = check(client)
    assert (result.outcome, result.http_status) == (Outcome.UNAVAILABLE, 410)
    assert "retired" in str(result.detail) and "expired" not in str(result.detail).lower()
