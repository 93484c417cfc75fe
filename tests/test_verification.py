"""Verifying stored keys against a local Coupang gateway, on SQLite and PostgreSQL.

The gateway (tests/fake_coupang.py) checks signatures, the signed-date's freshness, the vendor ID and an IP
allow-list, exactly as the service's real calls would meet them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from bot import rules
from bot.bootstrap import Services, build_services
from bot.config import Settings
from bot.coupang import CoupangClient
from bot.rules import InvalidInput, LinkingInfo
from bot.services.base import NotFound
from bot.services.verification import (
    VerifyOutcome,
    probe_offset,
    probe_slot,
)
from storage.models import AuditEvent, Key
from tests.clock import START, Clock
from tests.conftest import ADMIN, USER
from tests.factories import SECRET_MARK, access_key, form, secret_key
from tests.fake_coupang import FakeCoupang

VENDOR = "A00012345"


class NoSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def gateway(clock: Clock) -> Iterator[FakeCoupang]:
    with FakeCoupang(clock=clock.now) as fake:
        yield fake


def build(settings: Settings, clock: Clock, gateway: FakeCoupang) -> Services:
    client = CoupangClient(gateway.url, timeout=0.5, sleep=NoSleep())
    return build_services(settings, clock=clock, coupang=client)


@pytest.fixture
def svc(settings: Settings, clock: Clock, gateway: FakeCoupang) -> Iterator[Services]:
    built = build(settings, clock, gateway)
    yield built
    built.engine.dispose()


def register(svc: Services, gateway: FakeCoupang, vendor_id: str = VENDOR, **overrides) -> None:
    svc.keys.register(ADMIN, form(vendor_id, **overrides))
    gateway.add_key(access_key(vendor_id), secret_key(vendor_id), vendor_id)


def audit_actions(svc: Services, vendor_id: str = VENDOR) -> list[tuple[str, dict]]:
    with svc.ctx.transaction() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.vendor_id == vendor_id).order_by(AuditEvent.seq)
        ).all()
        return [(e.action, json.loads(e.details)) for e in events]


def set_deadline(svc: Services, deadline: datetime | None, vendor_id: str = VENDOR) -> None:
    with svc.ctx.transaction() as session:
        key = session.scalars(select(Key).where(Key.vendor_id == vendor_id)).one()
        key.access_deadline = deadline


# ---------------------------------------------------------------- one verification


def test_a_working_key_is_reported_stored_and_audited(svc: Services, gateway: FakeCoupang, clock: Clock) -> None:
    register(svc, gateway)
    result = svc.verification.verify(USER, VENDOR)
    assert result.outcome is VerifyOutcome.WORKS and result.works and result.fresh
    assert result.checked_at == START and "works" in str(result.detail)
    status = svc.keys.status(VENDOR)
    assert (status.verify_outcome, status.verified_at) == ("works", START)
    action, details = audit_actions(svc)[-1]
    assert action == "key.verified"
    assert details["outcome"] == "works" and details["trigger"] == "manual" and details["http_status"] == 200
    [request] = gateway.requests
    assert request.path.endswith(f"/vendors/{VENDOR}/returnShippingCenters")


def _wrong_secret(gateway: FakeCoupang) -> None:
    gateway.add_key(access_key(VENDOR), "SomeoneElsesSecretKey000", VENDOR)


def _ip_missing(gateway: FakeCoupang) -> None:
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR, allowed_ips=("203.0.113.7",))


def _other_vendor(gateway: FakeCoupang) -> None:
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), "A99999999")


@pytest.mark.parametrize(
    ("script", "outcome", "status", "requests", "words"),
    [
        (_wrong_secret, VerifyOutcome.INVALID_KEY, 401, 1, "copied exactly"),
        (_ip_missing, VerifyOutcome.IP_NOT_ALLOWED, 403, 1, "IP list"),
        (_other_vendor, VerifyOutcome.WRONG_VENDOR, 404, 1, "wrong vendor ID or path"),
        (lambda g: g.block(), VerifyOutcome.BLOCKED, 403, 1, "wait"),
        (lambda g: g.answer_next(5, 429), VerifyOutcome.RATE_LIMITED, 429, 1, "Try again"),
        (lambda g: g.answer_next(5, 500), VerifyOutcome.UNAVAILABLE, 500, 3, "state is unknown"),
        (lambda g: g.slow_next(5, seconds=3), VerifyOutcome.UNAVAILABLE, None, 3, "did not answer"),
    ],
    ids=["401", "403", "404", "403-access-denied", "429", "500", "slow"],
)
def test_each_gateway_answer_is_classified_and_stored(
    svc: Services, gateway: FakeCoupang, script, outcome, status, requests, words
) -> None:
    register(svc, gateway)
    script(gateway)
    result = svc.verification.verify(USER, VENDOR)
    assert (result.outcome, result.http_status) == (outcome, status)
    assert words in str(result.detail)
    # 4xx never retried (bursts of failures get the IP blocked); 5xx and timeouts at most twice more
    assert len(gateway.requests) == requests
    stored = svc.keys.status(VENDOR)
    assert (stored.verify_outcome, stored.verified_at) == (str(outcome), START)
    assert audit_actions(svc)[-1][1]["outcome"] == str(outcome)


def test_unknown_or_malformed_vendor_ids_are_refused_and_audited(svc: Services, gateway: FakeCoupang) -> None:
    with pytest.raises(NotFound, match="No key is registered for A00000009"):
        svc.verification.verify(USER, "a00000009")
    with pytest.raises(InvalidInput, match="A followed by 8 digits"):
        svc.verification.verify(USER, "shop-1")
    assert gateway.requests == []
    assert [a for a, _ in audit_actions(svc, "A00000009")] == ["key.verify.refused"]


def test_an_access_denied_block_is_not_called_a_bad_key(svc: Services, gateway: FakeCoupang, clock: Clock) -> None:
    register(svc, gateway)
    assert svc.verification.verify(USER, VENDOR).works
    gateway.block()
    clock.advance(seconds=11)
    result = svc.verification.verify(USER, VENDOR)
    assert result.outcome is VerifyOutcome.BLOCKED and result.ok is None and not result.failing
    assert len(gateway.requests) == 2  # one call, not retried
    with svc.ctx.transaction() as session:
        assert session.scalars(select(Key.verify_ok).where(Key.vendor_id == VENDOR)).one() is True  # still works


def test_an_integrator_key_is_not_checked_from_the_bot_and_not_called_failing(
    settings: Settings, gateway: FakeCoupang, clock: Clock
) -> None:
    svc = build(replace(settings, verify_daily=True), clock, gateway)
    try:
        integrator = dict(integration="integrator", integrator_name="Sellmate", company_name="", company_url="")
        register(svc, gateway, ip_addresses="", **integrator)
        result = svc.verification.verify(USER, VENDOR)
        assert result.outcome is VerifyOutcome.NOT_CHECKABLE and result.ok is None and not result.failing
        assert "cannot be checked from the bot" in str(result.detail) and "Sellmate" in str(result.detail)
        assert gateway.requests == []  # Coupang would see the bot's IP, which is not the integrator's
        assert svc.keys.status(VENDOR).verify_outcome is None
        assert audit_actions(svc)[-1] == ("key.verified", {"outcome": "not_checkable"})

        set_deadline(svc, START - timedelta(minutes=1))  # after a reissue, and on the daily probe: no call either
        clock.at = probe_slot(VENDOR, START, svc.ctx) + timedelta(minutes=1)
        assert svc.verification.run_deadline_checks() == [] and svc.verification.run_daily_probe() == []
        assert gateway.requests == []
    finally:
        svc.engine.dispose()


# ---------------------------------------------------------------- at most one call per 10 seconds


def test_a_burst_of_ten_clicks_makes_one_gateway_request(svc: Services, gateway: FakeCoupang, clock: Clock) -> None:
    register(svc, gateway)
    results = []
    for _ in range(10):
        results.append(svc.verification.verify(USER, VENDOR))
        clock.advance(seconds=0.9)
    assert len(gateway.requests) == 1
    assert [r.fresh for r in results] == [True] + [False] * 9
    assert all(r.outcome is VerifyOutcome.WORKS for r in results)
    assert str(results[5].detail).startswith("Checked 4 seconds ago") and "works" in str(results[5].detail)
    clock.advance(seconds=1.1)  # 10 s after the first call
    assert svc.verification.verify(USER, VENDOR).fresh
    assert len(gateway.requests) == 2


def test_concurrent_clicks_from_several_threads_make_one_request(
    settings: Settings, svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    gateway.slow_next(1, seconds=0.3)  # the winner is still waiting for Coupang while the others ask
    others = [build(settings, clock, gateway) for _ in range(4)]  # like separate processes: own pools
    try:
        results = []
        barrier = threading.Barrier(10)

        def click(services: Services) -> None:
            barrier.wait()
            results.append(services.verification.verify(USER, VENDOR))

        threads = [threading.Thread(target=click, args=([svc, *others][i % 5],)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for other in others:
            other.engine.dispose()
    assert len(results) == 10
    assert sum(r.fresh for r in results) == 1
    assert len(gateway.requests) <= 3  # one check: the slow first attempt may be retried, nothing more
    assert {r.outcome for r in results if not r.fresh} <= {VerifyOutcome.IN_PROGRESS, VerifyOutcome.WORKS}


# ---------------------------------------------------------------- propagation


def test_a_failure_before_the_access_deadline_is_not_active_yet_then_a_real_failure_after(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    _ip_missing(gateway)  # the new IP list has not reached Coupang
    linking = LinkingInfo(
        rules.Integration.SELF,
        company_name="Example Co",
        company_url="https://shop.example.com",
        ip_addresses=("211.45.10.4",),
    )
    svc.keys.edit_linking(ADMIN, VENDOR, linking)  # access deadline: 30 minutes from now, 10:30 in Seoul
    early = svc.verification.verify(USER, VENDOR)
    assert early.outcome is VerifyOutcome.NOT_ACTIVE_YET
    assert "Not active yet" in str(early.detail) and "try after" in str(early.detail).lower()
    assert "10:30 KST" in str(early.detail) and "2026" not in str(early.detail)  # today: the time alone
    assert early.ok is None  # not called broken
    assert svc.keys.status(VENDOR).verify_outcome == "not_active_yet"

    clock.advance(minutes=31)
    late = svc.verification.verify(USER, VENDOR)
    assert late.outcome is VerifyOutcome.IP_NOT_ALLOWED and late.ok is False


def test_a_new_key_deadline_tomorrow_names_the_date(svc: Services, gateway: FakeCoupang, clock: Clock) -> None:
    register(svc, gateway)
    _wrong_secret(gateway)
    set_deadline(svc, START + timedelta(hours=24))
    result = svc.verification.verify(USER, VENDOR)
    assert result.outcome is VerifyOutcome.NOT_ACTIVE_YET
    assert "2026-11-28 10:00 KST" in str(result.detail)


def test_a_working_key_before_its_deadline_just_works(svc: Services, gateway: FakeCoupang) -> None:
    register(svc, gateway)
    set_deadline(svc, START + timedelta(minutes=20))
    assert svc.verification.verify(USER, VENDOR).outcome is VerifyOutcome.WORKS


# ---------------------------------------------------------------- after the deadline, by itself


def test_post_deadline_check_runs_once_per_deadline(svc: Services, gateway: FakeCoupang, clock: Clock) -> None:
    register(svc, gateway)
    set_deadline(svc, START + timedelta(minutes=30))
    assert svc.verification.run_deadline_checks() == []  # not yet
    clock.advance(minutes=31)
    [result] = svc.verification.run_deadline_checks()
    assert result.outcome is VerifyOutcome.WORKS and result.channel_id == "CSHOP0001"
    clock.advance(minutes=5)
    assert svc.verification.run_deadline_checks() == []
    assert len(gateway.requests) == 1
    assert audit_actions(svc)[-1][1]["trigger"] == "deadline"

    set_deadline(svc, clock.now() + timedelta(minutes=30))  # another edit: another deadline
    _ip_missing(gateway)
    clock.advance(minutes=31)
    [again] = svc.verification.run_deadline_checks()
    assert again.outcome is VerifyOutcome.IP_NOT_ALLOWED and again.failing


def test_post_deadline_check_skips_keys_someone_verified_after_the_deadline(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    set_deadline(svc, START + timedelta(minutes=30))
    clock.advance(minutes=31)
    svc.verification.verify(USER, VENDOR)
    clock.advance(minutes=5)
    assert svc.verification.run_deadline_checks() == []
    assert len(gateway.requests) == 1


def test_post_deadline_check_retries_when_coupang_was_unavailable(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway, channel_id="")
    set_deadline(svc, START)
    gateway.answer_next(3, 503)
    assert svc.verification.run_deadline_checks() == []  # nothing known: nothing to post, try again later
    clock.advance(minutes=5)
    [result] = svc.verification.run_deadline_checks()
    assert result.works and result.channel_id == "CREMIND01"  # no key channel: KEYBOT_CHANNEL


def test_a_deleted_key_is_skipped_by_the_scheduled_check(svc: Services, gateway: FakeCoupang) -> None:
    register(svc, gateway)
    register(svc, gateway, "A00054321")
    set_deadline(svc, START - timedelta(minutes=1))
    set_deadline(svc, START - timedelta(minutes=1), "A00054321")
    svc.keys.delete(ADMIN, VENDOR)
    assert [r.vendor_id for r in svc.verification.run_deadline_checks()] == ["A00054321"]


# ---------------------------------------------------------------- daily probe


def test_probe_slots_are_spread_over_the_day_and_stable() -> None:
    offsets = {probe_offset(f"A{n:08d}") for n in range(200)}
    assert len(offsets) > 190
    assert all(timedelta(0) <= o < timedelta(days=1) for o in offsets)
    hours = {o.seconds // 3600 for o in offsets}
    assert len(hours) == 24
    # stable across restarts: another process, with another str-hash seed, puts the probe at the same second
    code = f"from bot.services.verification import probe_offset; print(probe_offset({VENDOR!r}).total_seconds())"
    other = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "4242"}, capture_output=True, text=True
    )
    assert other.returncode == 0, other.stderr
    assert float(other.stdout) == probe_offset(VENDOR).total_seconds()


def test_daily_probe_is_off_unless_enabled(svc: Services, gateway: FakeCoupang, clock: Clock) -> None:
    register(svc, gateway)
    clock.advance(days=1)
    assert svc.verification.run_daily_probe() == []
    assert gateway.requests == []


def test_daily_probe_posts_only_changes(settings: Settings, gateway: FakeCoupang, clock: Clock) -> None:
    svc = build(replace(settings, verify_daily=True), clock, gateway)
    try:
        register(svc, gateway)
        clock.at = probe_slot(VENDOR, START, svc.ctx) - timedelta(minutes=1)

        def day(works: bool) -> list:
            if works:
                gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR)
            else:
                _wrong_secret(gateway)
            seen = []
            for _ in range(288):  # every five minutes, a whole day
                seen += svc.verification.run_daily_probe()
                clock.advance(minutes=5)
            return seen

        calls = len(gateway.requests)
        assert day(works=True) == []  # working as expected: nothing to say
        assert len(gateway.requests) == calls + 1  # once a day
        [stopped] = day(works=False)
        assert stopped.failing and stopped.previous_ok is True
        assert day(works=False) == []  # still broken: said already
        [again] = day(works=True)
        assert again.works and again.previous_ok is False
        assert len(gateway.requests) == calls + 4
    finally:
        svc.engine.dispose()


def test_daily_probe_leaves_propagating_keys_alone(settings: Settings, gateway: FakeCoupang, clock: Clock) -> None:
    svc = build(replace(settings, verify_daily=True), clock, gateway)
    try:
        register(svc, gateway)
        clock.at = probe_slot(VENDOR, START, svc.ctx)
        set_deadline(svc, clock.now() + timedelta(hours=24))
        assert svc.verification.run_daily_probe() == []
        assert gateway.requests == []
    finally:
        svc.engine.dispose()


# ---------------------------------------------------------------- secrets


def test_no_secret_in_requests_results_logs_or_audit(
    svc: Services, gateway: FakeCoupang, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register(svc, gateway)
    results = [svc.verification.verify(USER, VENDOR)]
    for script in (_wrong_secret, _ip_missing, _other_vendor):
        script(gateway)
        clock.advance(seconds=11)
        results.append(svc.verification.verify(USER, VENDOR))
    results.append(svc.verification.verify(USER, VENDOR))  # repeated within 10 s
    set_deadline(svc, clock.now() + timedelta(minutes=30))
    clock.advance(minutes=31)
    results += svc.verification.run_deadline_checks()
    assert len(results) == 6
    secret = secret_key(VENDOR)
    for request in gateway.requests:
        assert secret not in f"{request.path}?{request.raw_query} {request.headers}"
    for result in results:
        assert SECRET_MARK not in repr(result)
    assert SECRET_MARK not in caplog.text
    with svc.ctx.transaction() as session:
        details = " ".join(session.scalars(select(AuditEvent.details)).all())
    assert SECRET_MARK not in details and access_key(VENDOR) not in details
