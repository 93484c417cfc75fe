"""Verification against a gateway that follows a key's lifecycle (DOMAIN.md facts 3, 7, 12, 13, 17).

The fake gateway (tests/fake_coupang.py) and the bot share one pinned clock. A person acts in WING (the gateway's
``reissue`` / ``issue`` / ``edit_ips``) and in the bot (the reissue request, the new-key form, the linking edit);
each test walks the phases and checks what the bot's verification says in each: refused, still propagating with
the time it will work by, working — and, for Coupang's warnings and blocks, that it backs off and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot import rules
from bot.bootstrap import Services, build_services
from bot.config import Settings
from bot.coupang import CoupangClient
from bot.rules import LinkingInfo, ReissuePath
from bot.services.reissue import NewKeyForm
from bot.services.verification import VerifyOutcome, probe_slot
from storage.models import Key
from tests.conftest import ADMIN, USER
from tests.factories import SECRET_MARK, access_key, form, secret_key
from tests.fake_coupang import FakeCoupang
from tests.test_verification import Clock, NoSleep, audit_actions

VENDOR = "A00012345"
START = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)  # 10:00 in Seoul; form()'s key (issued 2026-06-01) expires tomorrow
REQUESTER, APPROVER = "UREQUEST1", "UAPPROVE1"
NEW_ACCESS = "AKIAnewaccess0123456789"
NEW_SECRET = f"{SECRET_MARK}NEWnew0123456789abcdef"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def gateway(clock: Clock) -> Iterator[FakeCoupang]:
    with FakeCoupang(clock=clock.now) as fake:
        yield fake


@pytest.fixture
def svc(settings: Settings, clock: Clock, gateway: FakeCoupang) -> Iterator[Services]:
    settings = replace(settings, approvers=frozenset({APPROVER}), verify_daily=True)
    built = build_services(settings, clock=clock, coupang=CoupangClient(gateway.url, timeout=0.5, sleep=NoSleep()))
    yield built
    built.engine.dispose()


def register(svc: Services, gateway: FakeCoupang, **overrides) -> None:
    svc.keys.register(ADMIN, form(VENDOR, **overrides))
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR)


def approved_request(svc: Services, path: ReissuePath) -> int:
    assert svc.reissues.plan(REQUESTER, VENDOR).path is path
    info = svc.reissues.request(REQUESTER, VENDOR, "rotate before expiry")
    svc.reissues.approve(APPROVER, info.id)
    return info.id


def enter_new_key(svc: Services, request_id: int) -> datetime:
    done = svc.reissues.complete(REQUESTER, request_id, NewKeyForm(NEW_SECRET, NEW_ACCESS))
    return done.access_deadline


def check(svc: Services, clock: Clock, **later: float):
    clock.advance(**later)
    return svc.verification.verify(USER, VENDOR)


# ---------------------------------------------------------------- reissue, new issue, expiry, IP edit


def test_a_reissue_kills_the_old_key_at_once_and_the_new_one_works_after_30_minutes(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    assert check(svc, clock).works
    request_id = approved_request(svc, ReissuePath.REISSUE)

    gateway.reissue(VENDOR, NEW_ACCESS, NEW_SECRET)  # Reissue (재발급) pressed in WING
    old = check(svc, clock, seconds=11)  # the bot still holds the old key: Coupang refuses it at once
    assert (old.outcome, old.http_status, old.failing) == (VerifyOutcome.INVALID_KEY, 401, True)
    assert f"reissue request #{request_id} is approved but has no new key yet" in str(old.detail)
    assert "the old one stopped at once" in str(old.detail) and "within 30 minutes" in str(old.detail)

    clock.advance(minutes=2)
    deadline = enter_new_key(svc, request_id)
    assert deadline == START + timedelta(seconds=11, minutes=32)
    early = check(svc, clock, minutes=1)  # the gateway refuses the new key for 30 minutes
    assert early.outcome is VerifyOutcome.NOT_ACTIVE_YET and early.ok is None and not early.failing
    assert "from 10:32 KST" in str(early.detail) and "(HTTP 401)" in str(early.detail)
    assert svc.keys.status(VENDOR).propagating_until == deadline
    before = check(svc, clock, minutes=26)  # 10:29:11, just under 30 minutes after the click in WING (10:00)
    assert before.outcome is VerifyOutcome.NOT_ACTIVE_YET

    clock.at = deadline
    [after] = svc.verification.run_deadline_checks()
    assert after.outcome is VerifyOutcome.WORKS and after.previous_ok is False
    assert (
        gateway.requests[-1].headers["Authorization"].startswith(f"CEA algorithm=HmacSHA256, access-key={NEW_ACCESS},")
    )


def test_a_delete_and_issue_before_the_window_is_refused_for_24_hours(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway, issued_on="2026-11-01")  # expires 2027-04-30: only delete + issue gives a new key now
    request_id = approved_request(svc, ReissuePath.EARLY)
    gateway.issue(VENDOR, NEW_ACCESS, NEW_SECRET)  # Delete (삭제), then Issue (발급) in WING
    deleted = check(svc, clock)  # before the new key is entered: the old one is gone
    assert deleted.failing and "within 24 hours of the change in WING" in str(deleted.detail)
    deadline = enter_new_key(svc, request_id)
    assert deadline == START + timedelta(hours=24)

    for later, works_by in (  # a reissue's 30 minutes are not enough; the date is named until it is today
        (timedelta(minutes=31), "from 2026-11-28 10:00 KST"),
        (timedelta(hours=23, minutes=59), "from 10:00 KST"),
    ):
        clock.at = START + later
        result = svc.verification.verify(USER, VENDOR)
        assert result.outcome is VerifyOutcome.NOT_ACTIVE_YET and not result.failing
        assert works_by in str(result.detail)
    assert svc.verification.run_deadline_checks() == []

    clock.at = deadline
    [result] = svc.verification.run_deadline_checks()
    assert result.works


def test_an_expired_key_is_refused_as_expired_and_its_new_issue_takes_24_hours(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    svc.keys.register(ADMIN, form("A00054321"))  # expires tomorrow: a refusal of it is not called expired
    gateway.add_key(access_key("A00054321"), "SomeoneElsesSecretKey000", "A00054321")
    refused = svc.verification.verify(USER, "A00054321")
    assert refused.outcome is VerifyOutcome.INVALID_KEY and "expired on" not in str(refused.detail)

    svc.keys.register(ADMIN, form(VENDOR, issued_on="2026-05-01"))  # expired on 2026-10-28
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR, expires_at=datetime(2026, 10, 28, 3, tzinfo=UTC))
    expired = check(svc, clock)
    assert (expired.outcome, expired.http_status, expired.failing) == (VerifyOutcome.INVALID_KEY, 401, True)
    assert "expired on 2026-10-28" in str(expired.detail) and "Issue (발급)" in str(expired.detail)
    assert "24 hours" in str(expired.detail) and "copied exactly" in str(expired.detail)  # what Coupang said, too

    request_id = approved_request(svc, ReissuePath.AFTER_EXPIRY)
    gateway.issue(VENDOR, NEW_ACCESS, NEW_SECRET)
    deadline = enter_new_key(svc, request_id)
    assert deadline == START + timedelta(seconds=0, hours=24)
    waiting = check(svc, clock, hours=1)
    assert waiting.outcome is VerifyOutcome.NOT_ACTIVE_YET and "2026-11-28 10:00 KST" in str(waiting.detail)
    assert "expired on" not in str(waiting.detail)  # the new key is not expired, only not active yet
    assert check(svc, clock, hours=23).works


def test_an_added_ip_is_refused_until_30_minutes_after_the_edit(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    svc.keys.register(ADMIN, form(VENDOR))
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR, allowed_ips=("211.45.10.3",))
    missing = check(svc, clock)
    assert missing.outcome is VerifyOutcome.IP_NOT_ALLOWED and missing.failing

    clock.advance(minutes=1)
    linking = LinkingInfo(
        rules.Integration.SELF,
        company_name="Example Co",
        company_url="https://shop.example.com",
        ip_addresses=("211.45.10.3", "203.0.113.50"),  # the bot's egress (127.0.0.1 to the fake) added in WING
    )
    gateway.edit_ips(VENDOR, ("211.45.10.3", "127.0.0.1"))
    svc.keys.edit_linking(ADMIN, VENDOR, linking)
    early = check(svc, clock, minutes=10)
    assert early.outcome is VerifyOutcome.NOT_ACTIVE_YET and "from 10:31 KST" in str(early.detail)
    assert "IP list" in str(early.detail)  # what Coupang said: still the old list

    clock.at = START + timedelta(minutes=31)
    [result] = svc.verification.run_deadline_checks()
    assert result.works and result.previous_ok is False


# ---------------------------------------------------------------- Coupang's own words: blocks, warnings, 404, 410


def test_a_302_block_is_try_later_and_the_bot_backs_off_for_30_minutes(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    assert check(svc, clock).works
    gateway.block(status=302)
    blocked = check(svc, clock, seconds=11)
    assert (blocked.outcome, blocked.http_status, blocked.ok) == (VerifyOutcome.BLOCKED, 302, None)
    assert "says nothing about the key" in str(blocked.detail)
    assert "no further calls to Coupang for A00012345 until 10:30 KST" in str(blocked.detail)
    calls = len(gateway.requests)

    again = check(svc, clock, minutes=5)
    assert again.outcome is VerifyOutcome.BLOCKED and not again.fresh and again.paused_until is not None
    assert "No new call to Coupang for A00012345 until 10:30 KST" in str(again.detail)
    assert len(gateway.requests) == calls  # not called during the rest
    assert audit_actions(svc)[-1] == (
        "key.verify_repeated",
        {"outcome": "blocked", "paused_until": "2026-11-27T01:30:11+00:00"},
    )
    assert check(svc, clock, minutes=26).works  # block over (10 minutes) and the rest too
    with svc.ctx.transaction() as session:  # never called broken
        assert session.scalars(select(Key.verify_ok).where(Key.vendor_id == VENDOR)).one() is True


def test_x_cag_warnings_near_the_limit_means_no_calls_for_that_vendor_for_10_minutes(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    gateway.seller_traffic(VENDOR, 8)  # the seller's own order sync: the bot's call is the 9th this second
    near = check(svc, clock)
    assert near.outcome is VerifyOutcome.NEAR_LIMIT and near.works and near.ok is True
    assert "X-CAG-Warnings" in str(near.detail) and "until 10:10 KST" in str(near.detail)
    assert svc.keys.status(VENDOR).verify_outcome == "near_limit"

    set_deadline_now(svc, clock)  # a check the scheduler would make: left alone during the rest, too
    assert check(svc, clock, minutes=9).paused_until is not None
    assert svc.verification.run_deadline_checks() == []
    assert len(gateway.requests) == 1

    gateway.seller_traffic(VENDOR, 10)  # at the limit: 429, and another rest
    limited = check(svc, clock, minutes=1, seconds=1)
    assert (limited.outcome, limited.http_status) == (VerifyOutcome.RATE_LIMITED, 429)
    assert "until 10:20 KST" in str(limited.detail)
    assert check(svc, clock, minutes=9).paused_until is not None and len(gateway.requests) == 2


def set_deadline_now(svc: Services, clock: Clock) -> None:
    with svc.ctx.transaction() as session:
        session.execute(update(Key).where(Key.vendor_id == VENDOR).values(access_deadline=clock.now()))


def test_a_404_is_never_repeated_by_the_daily_probe_and_a_person_waits_an_hour(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    svc.keys.register(ADMIN, form(VENDOR))
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), "A99999999")  # the key belongs to another vendor ID
    wrong = check(svc, clock)
    assert (wrong.outcome, wrong.http_status, wrong.failing) == (VerifyOutcome.WRONG_VENDOR, 404, True)
    assert "will not call Coupang for A00012345 again by itself" in str(wrong.detail)
    assert "check again from 11:00 KST" in str(wrong.detail)

    repeated = check(svc, clock, minutes=30)
    assert repeated.outcome is VerifyOutcome.WRONG_VENDOR and repeated.paused_until is not None
    for day in range(3):  # three days of probes, every five minutes: no call
        clock.at = probe_slot(VENDOR, START + timedelta(days=day + 1), svc.ctx) + timedelta(minutes=1)
        assert svc.verification.run_daily_probe() == []
    assert len(gateway.requests) == 1

    assert check(svc, clock).fresh  # a person, hours later: one more call
    assert len(gateway.requests) == 2
    svc.keys.edit_linking(ADMIN, VENDOR, replace(_linking(svc), ip_addresses=("211.45.10.9",)))
    clock.advance(minutes=30)  # something changed: its post-deadline check asks once
    [after_edit] = svc.verification.run_deadline_checks()
    assert after_edit.outcome is VerifyOutcome.WRONG_VENDOR and len(gateway.requests) == 3


def _linking(svc: Services) -> LinkingInfo:
    return LinkingInfo(
        rules.Integration.SELF,
        company_name="Example Co",
        company_url="https://shop.example.com",
        ip_addresses=("211.45.10.3", "8.8.8.8"),
    )


def test_a_410_says_the_endpoint_was_retired_never_that_the_key_expired(
    svc: Services, gateway: FakeCoupang, clock: Clock
) -> None:
    register(svc, gateway)
    assert check(svc, clock).works
    gateway.answer_next(1, 410, body='{"code":"ERROR","message":"Gone"}')
    gone = check(svc, clock, seconds=11)
    assert (gone.outcome, gone.http_status, gone.ok) == (VerifyOutcome.UNAVAILABLE, 410, None)
    assert "retired" in str(gone.detail) and "says nothing about the key" in str(gone.detail)
    assert "expired" not in str(gone.detail).lower()
    assert svc.keys.status(VENDOR).verify_outcome == "unavailable"
