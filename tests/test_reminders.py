"""Reminders at the email milestones, on real SQLite and PostgreSQL with the clock moved by time-machine.

The notifier here records instead of posting (the HTTP path is in test_reminders_e2e.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine

from bot.bootstrap import build_services
from bot.services.reminders import (
    DELIVERED,
    FAILED,
    SKIPPED,
    Notifier,
    Reminder,
    headline,
    latest_due_milestone,
    parse_as_of,
)
from tests.clock import SEOUL, kst
from tests.conftest import ADMIN, make_settings
from tests.factories import SECRET_MARK, form

DAYS = (14, 7, 1, 0)
NINE = time(9, 0)


@dataclass
class RecordingNotifier(Notifier):
    posts: list[tuple[str, tuple[Reminder, ...]]] = field(default_factory=list)
    fail: int = 0  # the next `fail` posts raise

    def post(self, channel: str, reminders: Sequence[Reminder]) -> str:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Slack is down")
        self.posts.append((channel, tuple(reminders)))
        return f"17000000{len(self.posts):02d}.000100"

    def sent(self) -> list[tuple[str, int]]:
        return [(r.vendor_id, r.milestone) for _, group in self.posts for r in group]


def register(services, vendor_id: str, **overrides) -> None:
    services.keys.register(ADMIN, form(vendor_id, **overrides))


# ---------------------------------------------------------------- pure arithmetic


def test_the_latest_due_milestone_follows_korean_days_and_hours():
    expires = date(2026, 12, 15)

    def latest(day: date, hour: int, minute: int = 0) -> int | None:
        return latest_due_milestone(expires, kst(day, hour, minute), DAYS, NINE, SEOUL)

    assert latest(date(2026, 11, 30), 23, 59) is None  # D-15
    assert latest(date(2026, 12, 1), 8, 59) is None  # D-14 before nine in Seoul (23:59 UTC the day before)
    assert latest(date(2026, 12, 1), 9) == 14
    assert latest(date(2026, 12, 7), 23) == 14  # D-8: still the D-14 one
    assert latest(date(2026, 12, 8), 9) == 7
    assert latest(date(2026, 12, 14), 8, 59) == 7
    assert latest(date(2026, 12, 15), 9) == 0
    assert latest(date(2026, 12, 16), 8, 59) == 0
    assert latest(date(2026, 12, 16), 9) == -1
    assert latest(date(2026, 12, 20), 8) == -4
    # 09:00 Seoul is midnight UTC
    assert latest_due_milestone(expires, datetime(2026, 12, 1, 0, 0, tzinfo=UTC), DAYS, NINE, SEOUL) == 14
    assert latest_due_milestone(expires, datetime(2026, 11, 30, 23, 59, tzinfo=UTC), DAYS, NINE, SEOUL) is None


def test_headlines_say_what_the_email_milestones_mean():
    assert str(headline(14, 14)) == "The reissue button in WING is active from today"
    assert str(headline(7, 7)) == "One week left"
    assert str(headline(1, 1)) == "Expires tomorrow"
    assert str(headline(0, 0)) == "Expires today: API calls will fail"
    assert str(headline(-3, -3)).startswith("Expired 3 days ago")
    # past expiry the way back is Issue (발급) with the linking info again, not the D-14 Reissue
    expired = str(headline(-3, -3))
    assert "Issue (발급)" in expired and "linking info" in expired and "24 hours" in expired
    assert "재발급" not in expired and "reissue" not in expired.lower()
    # a late (caught-up) reminder tells the truth about today
    assert str(headline(7, 5)) == "5 days left: the reissue button in WING is active"


def test_as_of_without_a_zone_is_korean_wall_clock():
    assert parse_as_of("2026-12-01T09:00", SEOUL) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert parse_as_of("2026-12-01T09:00+00:00", SEOUL) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_as_of("next tuesday", SEOUL)


# ---------------------------------------------------------------- the whole life of a key


def test_every_milestone_is_posted_once_at_nine_in_seoul_across_the_whole_life_of_keys(services):
    notifier = RecordingNotifier()
    issued = {"A00000001": date(2026, 6, 1), "A00000002": date(2026, 6, 20)}
    posted_at: dict[tuple[str, int], datetime] = {}
    with time_machine.travel(kst(date(2026, 6, 1), 10), tick=False) as traveller:
        for vendor_id, day in issued.items():
            traveller.move_to(kst(day, 10))
            register(services, vendor_id, issued_on=day.isoformat())
            assert services.reminders.sweep(notifier).delivered == 0
        day = date(2026, 6, 20)
        while day <= date(2026, 12, 20):
            for hour, minute in ((8, 59), (9, 0), (15, 30)):
                traveller.move_to(kst(day, hour, minute))
                before = len(notifier.sent())
                services.reminders.sweep(notifier)
                for sent in notifier.sent()[before:]:
                    assert sent not in posted_at, f"{sent} posted twice"
                    posted_at[sent] = kst(day, hour, minute)
            day += timedelta(days=1)

    expected: dict[tuple[str, int], datetime] = {}
    for vendor_id, issued_on in issued.items():
        expires = issued_on + timedelta(days=180)
        for m in DAYS:
            expected[(vendor_id, m)] = kst(expires - timedelta(days=m))
        n = 1
        while expires + timedelta(days=n) <= date(2026, 12, 20):
            expected[(vendor_id, -n)] = kst(expires + timedelta(days=n))
            n += 1
    assert posted_at == expected  # each exactly once, at 09:00 Seoul on its day, never at 08:59
    rows = services.reminders.deliveries()
    assert {r.status for r in rows} == {DELIVERED}
    assert all(r.message_ts and r.delivered_at for r in rows)
    assert {(r.vendor_id, r.milestone) for r in rows} == set(expected)


def test_a_restart_on_the_same_database_reposts_nothing(settings):
    first = build_services(settings)
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 11, 14), 9, 5), tick=False):
        register(first, "A00000001", issued_on="2026-06-01")  # expires 2026-11-28: D-14 today
        assert first.reminders.sweep(notifier).delivered == 1
        first.engine.dispose()
        again = build_services(settings)  # a new process: new instance id, nothing in memory
        assert again.reminders.sweep(notifier).delivered == 0
        again.engine.dispose()
    assert notifier.sent() == [("A00000001", 14)]


def test_after_downtime_only_the_latest_missed_milestone_is_posted(services):
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 11, 13), 10), tick=False) as traveller:  # D-15
        register(services, "A00000001", issued_on="2026-06-01")  # expires 2026-11-28
        assert services.reminders.sweep(notifier).delivered == 0
        traveller.move_to(kst(date(2026, 11, 23), 10))  # down from D-15 to D-5
        report = services.reminders.sweep(notifier)
        assert notifier.sent() == [("A00000001", 7)]
        assert report.skipped_older == 1
        traveller.move_to(kst(date(2026, 11, 23), 16))
        services.reminders.sweep(notifier)
        traveller.move_to(kst(date(2026, 11, 27), 9))  # D-1 arrives normally
        services.reminders.sweep(notifier)
    assert notifier.sent() == [("A00000001", 7), ("A00000001", 1)]
    assert "5 days left" in str(notifier.posts[0][1][0].headline)
    statuses = {r.milestone: r.status for r in services.reminders.deliveries()}
    assert statuses == {14: SKIPPED, 7: DELIVERED, 1: DELIVERED}


def test_a_failed_post_is_retried_by_a_later_sweep_and_arrives_once(services):
    notifier = RecordingNotifier(fail=2)
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        register(services, "A00000001", issued_on="2026-06-01")
        report = services.reminders.sweep(notifier)
        assert report.delivered == 0 and len(report.failed) == 1
        assert services.reminders.deliveries()[0].status == FAILED
        traveller.shift(timedelta(minutes=5))
        services.reminders.sweep(notifier)  # still down
        traveller.shift(timedelta(minutes=5))
        assert services.reminders.sweep(notifier).delivered == 1
        traveller.shift(timedelta(minutes=5))
        assert services.reminders.sweep(notifier).delivered == 0
    assert notifier.sent() == [("A00000001", 14)]
    assert services.reminders.deliveries()[0].attempts == 3


def test_a_claim_left_by_a_crash_is_retried_after_the_timeout_only(services):
    notifier = RecordingNotifier()

    class Crash(Exception):
        pass

    class CrashingNotifier:
        def post(self, channel, reminders):
            raise Crash

    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        register(services, "A00000001", issued_on="2026-06-01")
        # simulate a process that claimed and died before posting: claim without releasing
        with services.ctx.transaction() as session:
            candidates = services.reminders._candidates(session, services.ctx.clock.now())
            services.reminders._claim(session, candidates, services.ctx.clock.now())
        other = build_services(services.ctx.settings)
        traveller.shift(timedelta(minutes=5))
        assert other.reminders.sweep(notifier).delivered == 0  # the claim is fresh: not ours to take
        traveller.shift(timedelta(minutes=6))
        assert other.reminders.sweep(notifier).delivered == 1  # 11 minutes later: stale, re-claimed
        other.engine.dispose()
    assert notifier.sent() == [("A00000001", 14)]


def test_a_reissue_in_the_middle_starts_fresh_milestones(services):
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False) as traveller:
        register(services, "A00000001", issued_on="2026-06-01")  # expires 2026-11-28
        services.reminders.sweep(notifier)
        assert notifier.sent() == [("A00000001", 14)]
        traveller.move_to(kst(date(2026, 11, 18), 11))
        with services.ctx.transaction() as session:
            key = services.ctx.keys.get(session, vendor_id="A00000001", for_update=True)
            services.ctx.keys.new_generation(
                session,
                key=key,
                access_key="AKIAnewaccesskey000",
                secret_key=f"{SECRET_MARK}newsecret0123456789",
                issued_on=date(2026, 11, 18),
                expires_on=date(2027, 5, 17),
                now=services.ctx.clock.now(),
            )
        for day in (date(2026, 11, 21), date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 30)):
            traveller.move_to(kst(day, 9, 30))
            assert services.reminders.sweep(notifier).delivered == 0  # old generation: never again
        traveller.move_to(kst(date(2027, 5, 3), 9))  # D-14 of the new key
        services.reminders.sweep(notifier)
    assert notifier.sent() == [("A00000001", 14), ("A00000001", 14)]
    assert notifier.posts[1][1][0].generation == 2


def test_expired_reminders_repeat_daily_until_the_key_is_deleted(services):
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 12, 1), 9), tick=False) as traveller:
        register(services, "A00000001", expires_on="2026-11-28", issued_on=None)
        services.reminders.sweep(notifier)  # registered late: only "expired 3 days ago"
        traveller.move_to(kst(date(2026, 12, 2), 9))
        services.reminders.sweep(notifier)
        services.keys.delete(ADMIN, "A00000001")
        traveller.move_to(kst(date(2026, 12, 3), 9))
        services.reminders.sweep(notifier)
    assert notifier.sent() == [("A00000001", -3), ("A00000001", -4)]


def test_more_than_five_due_in_one_channel_make_one_digest(services):
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False):
        for n in range(1, 7):
            register(services, f"A0000000{n}", issued_on="2026-06-01")  # six keys in CSHOP0001
        for n in range(7, 10):
            register(services, f"A0000000{n}", issued_on="2026-06-01", channel_id="COTHER001")
        report = services.reminders.sweep(notifier)
    digests = [(c, g) for c, g in notifier.posts if len(g) > 1]
    assert len(digests) == 1 and digests[0][0] == "CSHOP0001" and len(digests[0][1]) == 6
    singles = [c for c, g in notifier.posts if len(g) == 1]
    assert singles == ["COTHER001"] * 3
    assert report.delivered == 9
    rows = services.reminders.deliveries()
    assert len(rows) == 9 and {r.status for r in rows} == {DELIVERED}
    assert len({r.message_ts for r in rows if r.channel_id == "CSHOP0001"}) == 1
    posted = [e for e in services.audit.entries() if e.action == "reminder.posted"]
    assert len(posted) == 4  # one audit entry per message; the digest's names all six keys
    digest_entry = next(e for e in posted if e.details["digest"])
    assert sorted(r["vendor_id"] for r in digest_entry.details["reminders"]) == [f"A0000000{n}" for n in range(1, 7)]
    assert services.audit.verify().ok


def test_the_default_channel_is_used_and_no_channel_skips_without_claiming(db_url):
    with_default = build_services(make_settings(DATABASE_URL=db_url))
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False):
        register(with_default, "A00000001", issued_on="2026-06-01", channel_id=None)
        with_default.reminders.sweep(notifier)
        assert notifier.posts[0][0] == "CREMIND01"  # KEYBOT_CHANNEL
        register(with_default, "A00000002", issued_on="2026-06-01", channel_id=None)
        without = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_CHANNEL=""))
        assert without.reminders.sweep(notifier).delivered == 0
        assert [r.vendor_id for r in without.reminders.deliveries()] == ["A00000001"]
        without.engine.dispose()
    with_default.engine.dispose()


def test_a_dry_run_records_and_posts_nothing(services):
    notifier = RecordingNotifier()
    with time_machine.travel(kst(date(2026, 11, 14), 9), tick=False):
        register(services, "A00000001", issued_on="2026-06-01")
        audit_before = services.audit.head()
        report = services.reminders.sweep(None, dry_run=True)
        assert [(p.channel_id, [r.vendor_id for r in p.reminders]) for p in report.posts] == [
            ("CSHOP0001", ["A00000001"])
        ]
        assert services.reminders.deliveries() == []
        assert services.audit.head() == audit_before
        assert services.reminders.sweep(notifier).delivered == 1  # the real sweep still posts it
