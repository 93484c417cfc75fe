"""``POST /rollout/confirm`` as anyone on the internet meets it (ROLLOUT.md "Proof of possession"), over real HTTP.

It tells nobody which consumers exist, writes nothing for a request whose signature does not verify, records a
consumer's refusals in the audit log at most once an hour (all of them in a metric), limits each client address to
30 requests a minute, and answers a malformed body with 400, never a 500.
"""

from __future__ import annotations

import http.client
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from standardwebhooks import Webhook

from bot.confirm import AddressLimiter
from bot.services.base import cli_actor
from bot.services.rollout import proof_for
from tests.conftest import ADMIN
from tests.factories import form, secret_key
from tests.slack_harness import Response, SlackHarness
from tests.test_ops_monitoring import scrape

VENDOR = "A00012345"
TARGET = "http://127.0.0.1:9/coupang-key"  # never called here: nothing is kicked


@pytest.fixture
def erp(services) -> Iterator[str]:
    """The signing secret of consumer ``erp`` of VENDOR (added on the command line, the direct path)."""
    services.keys.register(ADMIN, form(VENDOR))
    added = services.rollout.add(cli_actor(), VENDOR, "erp", "webhook", TARGET)
    yield added.signing_secret
    services.rollout.stop()


def signed(secret: str, payload: Any, *, at: datetime | None = None, raw: bytes | None = None) -> tuple[bytes, dict]:
    body = raw if raw is not None else json.dumps(payload).encode()
    now = at or datetime.now(UTC)
    msg_id = f"msg_{time.monotonic_ns()}"
    return body, {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def confirm(slack: SlackHarness, secret: str, **fields: Any) -> Response:
    payload = {
        "vendor_id": VENDOR,
        "generation": 1,
        "consumer": "erp",
        "proof": proof_for(secret_key(VENDOR), VENDOR, 1),
    }
    payload.update(fields)
    return slack.post("/rollout/confirm", *signed(secret, payload))


def refusals(services) -> list[Any]:
    return [e for e in services.audit.entries() if e.action == "rollout.confirm.refused"]


def refused_metric(slack: SlackHarness) -> dict[str, float]:
    samples = scrape(slack)["coupang_keybot_rollout_confirm_refused_total"]
    return {dict(labels)["reason"]: value for labels, value in samples.items()}


FORGED = "whsec_" + "A" * 32


def test_unknown_vendor_unknown_consumer_and_a_bad_signature_get_the_same_answer(slack, services, erp):
    answers = {
        "forged signature": confirm(slack, FORGED),
        "unknown consumer": confirm(slack, erp, consumer="nobody"),
        "unknown vendor": confirm(slack, erp, vendor_id="A99999999"),
        "forged, unknown consumer": confirm(slack, FORGED, consumer="nobody"),
        "stale": slack.post(
            "/rollout/confirm",
            *signed(
                erp,
                {"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": "x"},
                at=datetime.now(UTC) - timedelta(hours=1),
            ),
        ),  # fmt: skip
        "no signature": slack.post(
            "/rollout/confirm",
            json.dumps({"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": "x"}).encode(),
            {"Content-Type": "application/json"},
        ),  # fmt: skip
    }
    shapes = {name: (a.status, a.text, sorted(set(a.headers) - {"date"})) for name, a in answers.items()}
    assert len(set(map(str, shapes.values()))) == 1, shapes
    assert answers["unknown consumer"].status == 401
    assert "erp" not in answers["forged signature"].text and "nobody" not in answers["unknown consumer"].text
    assert services.rollout.consumers(VENDOR)[0].state == "pending"  # nothing confirmed

    right = confirm(slack, erp)
    assert (right.status, right.json()) == (200, {"ok": True, "state": "confirmed"})
    assert services.rollout.consumers(VENDOR)[0].state == "confirmed"


def _hold_the_write_lock(db_url: str) -> sqlite3.Connection:
    connection = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    return connection


def test_forged_calls_write_nothing_and_signed_refusals_leave_one_audit_entry_an_hour(
    slack, services, erp, db_url, caplog
):
    caplog.set_level(logging.WARNING, logger="bot.services.rollout")
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        lock = _hold_the_write_lock(db_url) if db_url.startswith("sqlite") else None
        try:
            started = time.monotonic()
            for n in range(13):  # each is answered while another writer holds the database: nothing is written
                assert confirm(slack, FORGED).status == 401
                assert confirm(slack, erp, consumer=f"nobody{n}").status == 401
            took = time.monotonic() - started
        finally:
            if lock is not None:
                lock.execute("ROLLBACK")
                lock.close()
        assert took < 9, f"26 refusals took {took:.1f} s: they waited for the write lock (10 s each)"
        assert refusals(services) == []
        assert all("nobody" not in str(e.details) for e in services.audit.entries())
        warned = [r.getMessage() for r in caplog.records if "bad or stale signature" in r.getMessage()]
        assert len(warned) == 1 and "erp" in warned[0] and "127.0.0.1" in warned[0]  # once an hour, not 13 times

        assert confirm(slack, erp, generation=2).status == 409  # signed by erp: audited, once this hour
        (entry,) = refusals(services)
        assert (entry.actor, entry.details["status"], entry.details["address"]) == ("consumer:erp", 409, "127.0.0.1")
        clock.shift(timedelta(minutes=59))
        assert confirm(slack, erp, proof="0" * 64).status == 422
        assert len(refusals(services)) == 1
        clock.shift(timedelta(minutes=2))
        assert confirm(slack, erp, proof="0" * 64).status == 422  # the next hour: one more entry
        assert [e.details["status"] for e in refusals(services)] == [409, 422]

    counted = refused_metric(slack)
    assert {reason: n for reason, n in counted.items() if n} == {
        "signature": 13, "unknown": 13, "generation": 1, "proof": 2,
    }  # fmt: skip
    assert counted["rate_limited"] == counted["malformed"] == 0  # every reason is there from the start


def fields(**values: Any) -> bytes:
    return json.dumps({"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": "ab", **values}).encode()


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("not JSON", b"vendor_id=A00012345"),
        ("not UTF-8", b'{"vendor_id": "\xff"}'),
        ("an array", b"[1, 2]"),
        ("generation as text", fields(generation="1")),
        ("generation true", fields(generation=True)),
        ("vendor_id a number", fields(vendor_id=12345)),
        ("a field missing", json.dumps({"vendor_id": VENDOR, "generation": 1, "consumer": "erp"}).encode()),
        ("proof not ASCII", fields(proof="ä" * 64)),
        ("nested too deep", b"[" * 15000),
    ],
)
def test_a_malformed_body_is_a_400_even_with_a_good_signature(slack, services, erp, what, body):
    answer = slack.post("/rollout/confirm", *signed(erp, None, raw=body))
    assert answer.status == 400, (what, answer.status, answer.text)
    assert "vendor_id" in answer.json()["error"]  # says what to send
    assert refused_metric(slack)["malformed"] == 1
    assert refusals(services) == [] and services.rollout.consumers(VENDOR)[0].state == "pending"


def _headers_only(port: int, path: str, length: int) -> tuple[int, str]:
    """A POST that declares ``length`` bytes and sends none: the answer must come without reading the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_a_body_over_16_kb_is_refused_unread(slack, services, erp):
    assert _headers_only(slack.port, "/rollout/confirm", 16 * 1024 + 1)[0] == 413
    padded = json.dumps({"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": "0" * 64, "pad": ""})
    assert len(padded) < 16 * 1024
    assert slack.post("/rollout/confirm", *signed(erp, None, raw=padded.encode())).status == 422
    assert refused_metric(slack)["too_large"] == 1


def _from(slack: SlackHarness, source: str, secret: str) -> int:
    """A confirmation sent from ``source`` (another loopback address: another client)."""
    body, headers = signed(secret, {"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": "0" * 64})
    connection = http.client.HTTPConnection("127.0.0.1", slack.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", "/rollout/confirm", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        retry_after = answer.getheader("Retry-After")
        if answer.status == 429:
            assert retry_after is not None and 1 <= int(retry_after) <= 60
        return answer.status
    finally:
        connection.close()


def test_one_address_gets_30_requests_a_minute(slack, services, erp):
    assert [_from(slack, "127.0.0.2", FORGED) for _ in range(30)] == [401] * 30
    assert _from(slack, "127.0.0.2", FORGED) == 429
    assert _from(slack, "127.0.0.2", erp) == 429  # even the real consumer, from that address
    assert _from(slack, "127.0.0.3", erp) == 422  # another address is not held up
    assert refused_metric(slack)["rate_limited"] == 2


def test_the_limit_slides_with_the_minute_and_forgets_quiet_addresses():
    now = [0.0]
    limiter = AddressLimiter(limit=3, window=60, clock=lambda: now[0], max_addresses=2)
    assert [limiter.admit("a") for _ in range(3)] == [None, None, None]
    now[0] = 20
    assert limiter.admit("a") == 40  # the first of the three leaves the window at 60
    now[0] = 60.5
    assert limiter.admit("a") is None
    assert limiter.admit("b") is None
    now[0] = 200
    assert limiter.admit("c") is None  # a and b were quiet for a minute: forgotten, so memory stays bounded
    assert set(limiter._seen) == {"c"}
