"""Proving a key works: one signed read-only call to Coupang, rate-limited per vendor ID, with propagation.

Three ways in, one path: a person (``verify``), the post-deadline check after a reissue or edit
(``run_deadline_checks``) and the daily probe (``run_daily_probe``). Each claims its right to call Coupang with a
conditional UPDATE, so several processes (or a burst of clicks) make one call, and no transaction is held open
while Coupang answers. Secrets are decrypted only to sign; they never reach a result, the audit log or a log line.
An integrator key is called from the integrator's IPs, never the bot's: it is reported as not checkable, uncalled.

Some answers forbid asking again for a while (DOMAIN.md fact 17), for every way in, each said in the result:
after a 429 or an ``X-CAG-Warnings`` header the bot makes no call for that vendor ID for ``RATE_PAUSE``; after a
302 or Akamai's 403 page (a block) for ``BLOCK_PAUSE``. A 404 (wrong vendor ID) is never repeated by the daily
probe until something changes (a new key clears the result; an edit of the linking info brings its own
post-deadline check), and a person may ask again only after ``NOT_FOUND_PAUSE``: repeated 404s get calls blocked.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, and_, not_, or_, select, update
from sqlalchemy.orm import Session

from bot import rules
from bot.coupang import CheckResult
from bot.rules import Integration, KeybotError, Msg
from bot.services.base import Context, NotFound
from storage.db import lift_deadline
from storage.models import Key, ReissueRequest

logger = logging.getLogger(__name__)

MIN_INTERVAL = timedelta(seconds=10)  # at most one call per vendor ID per 10 seconds, whoever asks
DEADLINE_LOOKBACK = timedelta(days=7)  # older passed deadlines are not checked automatically
DAY_SECONDS = 24 * 60 * 60
RATE_PAUSE = timedelta(minutes=10)  # after a 429 or X-CAG-Warnings: the limit is shared with the seller's systems
BLOCK_PAUSE = timedelta(minutes=30)  # after a 302 or an Access Denied page: blocks last minutes to tens of minutes
NOT_FOUND_PAUSE = timedelta(hours=1)  # a person's next check after a 404; the daily probe waits for a change
UNTIL_CHANGED = datetime.max.replace(tzinfo=UTC)
SCHEDULER = "scheduler"

WHAT_TO_CHECK = (
    Msg("the linking info's IP list in WING contains the bot's public egress address"),
    Msg("the vendor ID is the seller account the key was issued for (A followed by 8 digits)"),
    Msg("the Access Key and Secret Key were copied whole from WING (nothing cut off, no extra spaces)"),
)


class KeyChecker(Protocol):
    """What the service needs from :class:`bot.coupang.CoupangClient` (tests may pass a fake)."""

    def check_key(
        self, vendor_id: str, access_key: str, secret_key: str, now: Callable[[], datetime]
    ) -> CheckResult: ...


class VerifyOutcome(enum.StrEnum):
    WORKS = "works"
    NEAR_LIMIT = "near_limit"  # works; Coupang warned the vendor ID is near its call limit, so the bot backs off
    INVALID_KEY = "invalid_key"
    IP_NOT_ALLOWED = "ip_not_allowed"
    WRONG_VENDOR = "wrong_vendor"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"  # Coupang blocks the bot's IP for a while: says nothing about the key
    UNAVAILABLE = "unavailable"
    NOT_ACTIVE_YET = "not_active_yet"  # a failure before the key's access deadline: still propagating
    NOT_CHECKABLE = "not_checkable"  # an integrator key: only the integrator's IPs may call with it
    IN_PROGRESS = "in_progress"  # another check of this vendor ID started seconds ago and has no result yet


# Only a self-developed key can be called from the bot's IP; integrator keys are left out of scheduled checks.
SELF_DEVELOPED = Key.integration == str(Integration.SELF)
FAILING = frozenset({VerifyOutcome.INVALID_KEY, VerifyOutcome.IP_NOT_ALLOWED, VerifyOutcome.WRONG_VENDOR})
WORKING = frozenset({VerifyOutcome.WORKS, VerifyOutcome.NEAR_LIMIT})
DEFINITIVE = FAILING | WORKING


class Trigger(enum.StrEnum):
    MANUAL = "manual"
    DEADLINE = "deadline"
    PROBE = "probe"


@dataclass(frozen=True)
class VerifyResult:
    """The answer for a person. ``fresh`` is False when it repeats a check made seconds ago."""

    vendor_id: str
    label: str
    outcome: VerifyOutcome
    detail: Msg  # a sentence for a person; never a secret
    checked_at: datetime
    fresh: bool
    channel_id: str | None  # where automatic results go: the key's channel or KEYBOT_CHANNEL
    http_status: int | None = None
    previous_ok: bool | None = None  # the last definitive state before this check (True works)
    paused_until: datetime | None = None  # not fresh: Coupang was not called because of an earlier answer

    @property
    def works(self) -> bool:
        return self.outcome in WORKING

    @property
    def ok(self) -> bool | None:
        """True works, False fails, None unknown (Coupang unavailable, rate-limited, propagating, repeated)."""
        if not self.fresh:
            return None
        if self.outcome in WORKING:
            return True
        return False if self.outcome in FAILING else None

    @property
    def failing(self) -> bool:
        return self.ok is False


@dataclass(frozen=True)
class _Claimed:
    """A won slot: what the call needs. repr never shows the secrets."""

    label: str
    generation: int
    access_deadline: datetime | None
    expires_on: date
    reissue: tuple[int, str] | None  # an approved reissue request waiting for its new key: ID and path
    channel_id: str | None
    verify_ok: bool | None
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"_Claimed(label={self.label!r}, generation={self.generation})"


def pause_end(outcome: str | None, checked_at: datetime | None, trigger: Trigger) -> datetime | None:
    """Until when the last stored answer forbids calling Coupang for this vendor ID (None: nothing forbids it)."""
    if outcome is None or checked_at is None:
        return None
    if outcome in (VerifyOutcome.RATE_LIMITED, VerifyOutcome.NEAR_LIMIT):
        return checked_at + RATE_PAUSE
    if outcome == VerifyOutcome.BLOCKED:
        return checked_at + BLOCK_PAUSE
    if outcome == VerifyOutcome.WRONG_VENDOR:
        if trigger is Trigger.PROBE:
            return UNTIL_CHANGED
        if trigger is Trigger.MANUAL:
            return checked_at + NOT_FOUND_PAUSE
    return None  # a post-deadline check follows a change, so it may ask once more


PAUSE_REASON = {
    VerifyOutcome.RATE_LIMITED: Msg(
        "Coupang said the vendor ID is at or near its limit of 10 calls per second, which it shares with the "
        "seller's own systems, so the bot backs off."
    ),
    VerifyOutcome.BLOCKED: Msg("Coupang was blocking the bot's calls, and calling during a block prolongs it."),
    VerifyOutcome.WRONG_VENDOR: Msg(
        "Coupang answered 404 for this vendor ID, and repeated 404s get calls blocked without notice."
    ),
}
PAUSE_REASON[VerifyOutcome.NEAR_LIMIT] = PAUSE_REASON[VerifyOutcome.RATE_LIMITED]


def probe_offset(vendor_id: str) -> timedelta:
    """Where in the day this vendor ID's daily probe falls: spread evenly, stable across restarts."""
    digest = hashlib.sha256(vendor_id.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % DAY_SECONDS)


def probe_slot(vendor_id: str, now: datetime, ctx: Context) -> datetime:
    """Today's (local calendar day) probe instant for ``vendor_id``, as aware UTC."""
    midnight = rules.local_instant(ctx.today(now), time(0, 0), ctx.settings.timezone)
    return midnight + probe_offset(vendor_id)


class VerificationService:
    def __init__(self, ctx: Context, coupang: KeyChecker):
        self.ctx = ctx
        self.coupang = coupang

    # ------------------------------------------------------------ one verification

    def verify(self, actor: str, vendor_id: str, *, trigger: Trigger = Trigger.MANUAL) -> VerifyResult:
        """Check the stored key with Coupang (or repeat a check made in the last 10 seconds)."""
        typed = (vendor_id or "").strip().upper()
        now = self.ctx.clock.now()

        def claim(session: Session) -> _Claimed | VerifyResult:
            valid = rules.validate_vendor_id(vendor_id)
            return self._claim(session, actor, valid, now, trigger)

        claimed = self.ctx.audited(actor, "key.verify", typed if rules.is_vendor_id(typed) else None, claim)
        if isinstance(claimed, VerifyResult):
            return claimed
        check = self.coupang.check_key(typed, claimed.access_key, claimed.secret_key, self.ctx.clock.now)
        # Coupang may have taken seconds: recording what it said must not be refused as "the database is busy"
        # because the call used up a Slack request's database deadline; the ordinary bounds still apply
        lift_deadline()
        return self._store(actor, typed, claimed, check, trigger)

    def _claim(
        self, session: Session, actor: str, vendor_id: str, now: datetime, trigger: Trigger
    ) -> _Claimed | VerifyResult:
        key = self.ctx.keys.get(session, vendor_id=vendor_id)
        if key is None:
            raise NotFound(
                "No key is registered for {vendor_id}. Register it with `/coupang-key add`.", vendor_id=vendor_id
            )
        if key.integration == Integration.INTEGRATOR:
            return self._not_checkable(session, actor, key, now)
        paused = pause_end(key.verify_outcome, key.verified_at, trigger)
        if paused is not None and now < paused:
            result = self._paused(key, now, paused)
            self.ctx.record(
                session,
                actor,
                "key.verify_repeated",
                vendor_id,
                {
                    "outcome": str(result.outcome),
                    "paused_until": None if paused == UNTIL_CHANGED else paused.isoformat(),
                },
            )
            return result
        won = _rows(
            session,
            update(Key)
            .where(
                Key.id == key.id,
                or_(Key.verify_attempted_at.is_(None), Key.verify_attempted_at <= now - MIN_INTERVAL),
            )
            .values(verify_attempted_at=now)
            .execution_options(synchronize_session=False),
        )
        if not won:
            session.refresh(key)  # another process may have claimed it after we read the row
            result = self._repeat(key, now)
            self.ctx.record(
                session,
                actor,
                "key.verify_repeated",
                vendor_id,
                {"outcome": str(result.outcome), "seconds_ago": _seconds(now - (key.verify_attempted_at or now))},
            )
            return result
        access_key, secret_key = self.ctx.keys.secrets(key)
        return _Claimed(
            label=key.label,
            generation=key.generation,
            access_deadline=key.access_deadline,
            expires_on=key.expires_on,
            reissue=_awaiting_new_key(session, key),
            channel_id=key.channel_id or self.ctx.settings.channel,
            verify_ok=key.verify_ok,
            access_key=access_key,
            secret_key=secret_key,
        )

    def _not_checkable(self, session: Session, actor: str, key: Key, now: datetime) -> VerifyResult:
        """An integrator key works only from the integrator's IPs: the bot says so and calls nobody."""
        self.ctx.record(session, actor, "key.verified", key.vendor_id, {"outcome": str(VerifyOutcome.NOT_CHECKABLE)})
        return VerifyResult(
            vendor_id=key.vendor_id,
            label=key.label,
            outcome=VerifyOutcome.NOT_CHECKABLE,
            detail=Msg(
                "This key is linked to the integrator {integrator}, so Coupang accepts it only from the "
                "integrator's IP addresses: it cannot be checked from the bot. This is not a failure; ask the "
                "integrator whether its calls work.",
                {"integrator": key.integrator_name},
            ),
            checked_at=now,
            fresh=True,
            channel_id=key.channel_id or self.ctx.settings.channel,
            previous_ok=key.verify_ok,
        )

    def _paused(self, key: Key, now: datetime, until: datetime) -> VerifyResult:
        """No call: an earlier answer (rate limit, block, 404) asked the bot to leave this vendor ID alone."""
        outcome = VerifyOutcome(str(key.verify_outcome))
        checked_at = key.verified_at or now
        detail = Msg(
            "No new call to Coupang for {vendor_id} until {time}: {reason} Last result, {minutes} min ago: {result}",
            {
                "vendor_id": key.vendor_id,
                "time": self._local(until, now),
                "reason": PAUSE_REASON[outcome],
                "minutes": _seconds(now - checked_at) // 60,
                "result": key.verify_detail,  # stored as shown then: not translated again
            },
        )
        return VerifyResult(
            vendor_id=key.vendor_id,
            label=key.label,
            outcome=outcome,
            detail=detail,
            checked_at=checked_at,
            fresh=False,
            channel_id=key.channel_id or self.ctx.settings.channel,
            previous_ok=key.verify_ok,
            paused_until=until,
        )

    def _repeat(self, key: Key, now: datetime) -> VerifyResult:
        attempted = key.verify_attempted_at or now
        ago = _seconds(now - attempted)
        finished = key.verified_at is not None and key.verified_at >= attempted and key.verify_outcome
        if finished:
            outcome = VerifyOutcome(str(key.verify_outcome))
            detail = Msg(
                "Checked {seconds} seconds ago (at most one check per vendor ID every 10 seconds). Result: {result}",
                {"seconds": ago, "result": key.verify_detail},  # stored as shown then: not translated again
            )
        else:
            outcome = VerifyOutcome.IN_PROGRESS
            detail = Msg(
                "A check of {vendor_id} started {seconds} seconds ago and is still waiting for Coupang; its result "
                "will show in status in a moment (at most one check per vendor ID every 10 seconds).",
                {"vendor_id": key.vendor_id, "seconds": ago},
            )
        return VerifyResult(
            vendor_id=key.vendor_id,
            label=key.label,
            outcome=outcome,
            detail=detail,
            checked_at=key.verified_at if finished and key.verified_at else attempted,
            fresh=False,
            channel_id=key.channel_id or self.ctx.settings.channel,
            previous_ok=key.verify_ok,
        )

    def _store(
        self, actor: str, vendor_id: str, claimed: _Claimed, check: CheckResult, trigger: Trigger
    ) -> VerifyResult:
        now = self.ctx.clock.now()
        outcome = VerifyOutcome(str(check.outcome))
        detail = check.detail
        deadline = claimed.access_deadline
        if outcome in FAILING and deadline is not None and now < deadline:
            outcome = VerifyOutcome.NOT_ACTIVE_YET
            detail = Msg(
                "Not active yet: a changed key or linking info takes time to reach Coupang, and this one is "
                "guaranteed only from {time}. Try after that. (Coupang said: {said})",
                {"time": self._local(deadline, now), "said": check.detail},
            )
        elif outcome is VerifyOutcome.INVALID_KEY and claimed.reissue is not None:
            request_id, planned = claimed.reissue
            path = rules.path_now(rules.ReissuePath(planned), claimed.expires_on, self.ctx.today(now))
            detail = Msg(
                "Coupang refused the stored key, and reissue request #{id} is approved but has no new key yet: if "
                "the key was already replaced in WING, the old one stopped at once (there is no overlap). Enter the "
                "new key with Enter new key on request #{id}; Coupang accepts it within {delay} of the change in "
                "WING. (Coupang said: {said})",
                {"id": request_id, "delay": rules.describe_delay(path), "said": check.detail},
            )
        elif outcome is VerifyOutcome.INVALID_KEY and claimed.expires_on < self.ctx.today(now):
            detail = Msg(
                "The key expired on {date} (180 days, about 6 months, after it was issued), so Coupang refuses it. "
                "In WING press Issue (발급), choose the linking info again and enter the new key here; Coupang may "
                "take 24 hours to accept a newly issued key. (Coupang said: {said})",
                {"date": claimed.expires_on.isoformat(), "said": check.detail},
            )
        pause = pause_end(str(outcome), now, Trigger.MANUAL)
        if pause is not None:
            detail = Msg(
                "{detail} {pause}", {"detail": detail, "pause": self._pause_note(outcome, vendor_id, pause, now)}
            )
        result = VerifyResult(
            vendor_id=vendor_id,
            label=claimed.label,
            outcome=outcome,
            detail=detail,
            checked_at=now,
            fresh=True,
            channel_id=claimed.channel_id,
            http_status=check.http_status,
            previous_ok=claimed.verify_ok,
        )
        with self.ctx.transaction() as session:
            key = self.ctx.keys.get(session, vendor_id=vendor_id, for_update=True)
            current = key is not None and key.generation == claimed.generation
            if key is not None and current:  # a key reissued meanwhile keeps its own (newer) state
                key.verified_at = now
                key.verify_outcome = str(outcome)
                key.verify_detail = str(detail)[:500]
                if result.ok is not None:
                    key.verify_ok = result.ok
            self.ctx.record(
                session,
                actor,
                "key.verified",
                vendor_id,
                {
                    "outcome": str(outcome),
                    "http_status": check.http_status,
                    "attempts": check.attempts,
                    "trigger": str(trigger),
                    "generation": claimed.generation,
                    "stored": current,
                },
            )
        return result

    def _pause_note(self, outcome: VerifyOutcome, vendor_id: str, until: datetime, now: datetime) -> Msg:
        if outcome is VerifyOutcome.WRONG_VENDOR:
            return Msg(
                "Repeated 404s get calls blocked, so the bot will not call Coupang for {vendor_id} again by itself "
                "until the key or its linking info changes; a person can check again from {time}.",
                {"vendor_id": vendor_id, "time": self._local(until, now)},
            )
        return Msg(
            "The bot makes no further calls to Coupang for {vendor_id} until {time}.",
            {"vendor_id": vendor_id, "time": self._local(until, now)},
        )

    def _local(self, at: datetime, now: datetime) -> str:
        """``HH:MM`` in the configured zone, with the date when it is not today there."""
        tz = self.ctx.settings.timezone
        local = at.astimezone(tz)
        zone = local.tzname() or str(tz)
        if local.date() == now.astimezone(tz).date():
            return f"{local:%H:%M} {zone}"
        return f"{local:%Y-%m-%d %H:%M} {zone}"

    # ------------------------------------------------------------ after a reissue or an edit

    def run_deadline_checks(self) -> list[VerifyResult]:
        """Verify every key whose access deadline has passed and that nobody verified since; once per deadline.

        A result that says nothing about the key (Coupang unavailable, rate-limited, a check already running)
        releases the claim, so the next tick tries again.
        """
        now = self.ctx.clock.now()
        not_checked = or_(Key.deadline_checked_at.is_(None), Key.deadline_checked_at < Key.access_deadline)
        due = and_(Key.access_deadline.is_not(None), Key.access_deadline <= now, not_checked)
        verified_since = and_(
            Key.verified_at.is_not(None),
            Key.verified_at >= Key.access_deadline,
            Key.verify_outcome.in_([str(o) for o in DEFINITIVE]),
        )
        with self.ctx.transaction() as session:
            rows = session.execute(
                select(Key.vendor_id, Key.verify_outcome, Key.verified_at)
                .where(due, SELF_DEVELOPED, Key.access_deadline > now - DEADLINE_LOOKBACK, not_(verified_since))
                .order_by(Key.access_deadline)
            ).all()
        results = []
        for vendor_id, outcome, checked_at in rows:
            paused = pause_end(outcome, checked_at, Trigger.DEADLINE)
            if paused is not None and now < paused:
                continue  # Coupang asked for a rest (rate limit, block): the next tick after it tries
            with self.ctx.transaction() as session:
                won = _rows(
                    session,
                    update(Key)
                    .where(Key.vendor_id == vendor_id, due)
                    .values(deadline_checked_at=now)
                    .execution_options(synchronize_session=False),
                )
            if not won:
                continue
            result = self._verify_quietly(vendor_id, Trigger.DEADLINE)
            if result is None:
                continue
            if result.ok is None:
                with self.ctx.transaction() as session:
                    session.execute(
                        update(Key)
                        .where(Key.vendor_id == vendor_id, Key.deadline_checked_at == now)
                        .values(deadline_checked_at=None)
                        .execution_options(synchronize_session=False)
                    )
                continue
            results.append(result)
        return results

    # ------------------------------------------------------------ daily probe

    def run_daily_probe(self) -> list[VerifyResult]:
        """When ``KEYBOT_VERIFY_DAILY`` is on: verify each key whose slot of the day has come, once a day.

        Returns only changes: a key that stopped working (or fails on its first check), or works again.
        Keys still propagating are left to the post-deadline check; a key whose last answer was a 404 is not
        called again until something changes, and one Coupang asked for a rest waits for the rest to end.
        """
        if not self.ctx.settings.verify_daily:
            return []
        now = self.ctx.clock.now()
        with self.ctx.transaction() as session:
            rows = session.execute(
                select(Key.vendor_id, Key.probed_at, Key.access_deadline, Key.verify_outcome, Key.verified_at).where(
                    SELF_DEVELOPED
                )
            ).all()
        changes = []
        for vendor_id, probed_at, deadline, outcome, checked_at in rows:
            slot = probe_slot(vendor_id, now, self.ctx)
            if now < slot or (probed_at is not None and probed_at >= slot):
                continue
            if deadline is not None and now < deadline:
                continue
            paused = pause_end(outcome, checked_at, Trigger.PROBE)
            if paused is not None and now < paused:
                continue
            with self.ctx.transaction() as session:
                won = _rows(
                    session,
                    update(Key)
                    .where(Key.vendor_id == vendor_id, or_(Key.probed_at.is_(None), Key.probed_at < slot))
                    .values(probed_at=now)
                    .execution_options(synchronize_session=False),
                )
            if not won:
                continue
            result = self._verify_quietly(vendor_id, Trigger.PROBE)
            if result is None or result.ok is None:
                continue
            if result.ok != result.previous_ok and not (result.previous_ok is None and result.ok):
                changes.append(result)
        return changes

    def _verify_quietly(self, vendor_id: str, trigger: Trigger) -> VerifyResult | None:
        """A scheduled verification: one key's trouble never stops the others."""
        try:
            return self.verify(SCHEDULER, vendor_id, trigger=trigger)
        except KeybotError as error:  # e.g. the key was deleted meanwhile
            logger.info("%s check of %s skipped: %s", trigger, vendor_id, error, extra={"vendor_id": vendor_id})
        except Exception:
            logger.exception("%s check of %s failed", trigger, vendor_id, extra={"vendor_id": vendor_id})
        return None


def _awaiting_new_key(session: Session, key: Key) -> tuple[int, str] | None:
    """The approved reissue request of the key's generation whose new key is not entered yet, if any."""
    row = session.execute(
        select(ReissueRequest.id, ReissueRequest.path).where(
            ReissueRequest.vendor_id == key.vendor_id,
            ReissueRequest.generation == key.generation,
            ReissueRequest.status == "approved",
        )
    ).first()
    return (row[0], row[1]) if row else None


def _rows(session: Session, statement: Any) -> int:
    """Rows a conditional UPDATE changed: 1 means this caller won the claim."""
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount


def _seconds(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds()))
