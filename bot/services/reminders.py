"""Reminders at the email milestones: exactly once, on time, across restarts and several instances.

A sweep finds, for every key, the most recent milestone that is due (D-14, D-7, D-1, D-0 by default, then one
"expired N days ago" a day). It claims that reminder in ``reminder_deliveries`` *before* posting; the unique
(vendor ID, generation, milestone) constraint makes a racing second process lose the claim. After a post the row
is marked delivered with the message ``ts``; a failed post marks it ``failed`` so a later sweep re-claims it, and
a claim left behind by a crash may be re-claimed after :data:`CLAIM_TIMEOUT`. Older milestones missed during
downtime are recorded as ``skipped``, so only the latest one is ever posted (no spam after an outage).

Nothing here knows Slack: posting goes through a :class:`Notifier` (see ``bot/slack/reminders.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from bot import rules
from bot.services.base import Context
from storage.models import Key, ReminderDelivery

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=10)
DIGEST_THRESHOLD = 5  # more than this many keys due in one channel in one sweep → one digest message
_CHUNK = 500  # rows per IN (...) / multi-row INSERT

CLAIMED, DELIVERED, FAILED, SKIPPED = "claimed", "delivered", "failed", "skipped"


# ---------------------------------------------------------------- pure milestone arithmetic


def latest_due_milestone(expires_on: date, now: datetime, days: Iterable[int], at: time, tz: ZoneInfo) -> int | None:
    """The most recent milestone of a key that is due at ``now`` (negative: "expired N days ago"), or None.

    Milestone ``m`` is due at ``at`` on the day ``expires_on - m``; every day after expiry is one too.
    """
    milestones = set(days)
    today = rules.local_date(now, tz)
    left = rules.days_left(expires_on, today)
    if (left < 0 or left in milestones) and rules.milestone_due_at(expires_on, left, at, tz) <= now:
        return left
    previous = left + 1  # yesterday's value: its time of day has passed
    if previous < 0:
        return previous
    return min((m for m in milestones if m >= previous), default=None)


def headline(milestone: int, days_left: int) -> str:
    """What a reminder says first (plain text; ``days_left`` is the truth at posting time)."""
    late = days_left != milestone
    if days_left < 0:
        return f"{rules.describe_days_left(days_left).capitalize()}: API calls fail until it is reissued"
    if days_left == 0:
        return "Expires today: API calls will fail"
    if days_left == 1:
        return "Expires tomorrow"
    if milestone == 7 and not late:
        return "One week left"
    if milestone == rules.REISSUE_WINDOW_DAYS and not late:
        return "The reissue button in WING is active from today"
    if rules.reissue_button_active(days_left):
        return f"{rules.describe_days_left(days_left).capitalize()}: the reissue button in WING is active"
    return rules.describe_days_left(days_left).capitalize()


# ---------------------------------------------------------------- what a sweep posts


@dataclass(frozen=True)
class Reminder:
    """One key's reminder for one milestone. No secrets: only what the message shows."""

    vendor_id: str
    label: str
    generation: int
    milestone: int
    expires_on: date
    days_left: int
    owner_id: str | None
    channel_id: str

    @property
    def headline(self) -> str:
        return headline(self.milestone, self.days_left)


class Notifier(Protocol):
    """Posts one message to ``channel``: one reminder, or a digest when given several. Returns its ts.

    Raises on failure (any exception: the claim is released and a later sweep retries).
    """

    def post(self, channel: str, reminders: Sequence[Reminder]) -> str: ...


@dataclass(frozen=True)
class Post:
    channel_id: str
    reminders: tuple[Reminder, ...]
    ts: str | None = None  # None in a dry run
    error: str | None = None

    @property
    def is_digest(self) -> bool:
        return len(self.reminders) > 1


@dataclass
class SweepReport:
    now: datetime
    dry_run: bool = False
    posts: list[Post] = field(default_factory=list)
    failed: list[Post] = field(default_factory=list)
    no_channel: list[str] = field(default_factory=list)  # vendor IDs skipped: no channel anywhere
    skipped_older: int = 0  # older missed milestones recorded as skipped

    @property
    def delivered(self) -> int:
        return sum(len(p.reminders) for p in self.posts)


@dataclass(frozen=True)
class _Candidate:
    reminder: Reminder
    existing_id: int | None  # a failed or stale claim to re-claim; None → insert a new claim


def group_posts(reminders: Sequence[Reminder]) -> list[tuple[str, tuple[Reminder, ...]]]:
    """One message per reminder, except a digest for a channel with more than DIGEST_THRESHOLD due."""
    by_channel: dict[str, list[Reminder]] = defaultdict(list)
    for reminder in reminders:
        by_channel[reminder.channel_id].append(reminder)
    groups: list[tuple[str, tuple[Reminder, ...]]] = []
    for channel, items in sorted(by_channel.items()):
        items.sort(key=lambda r: (r.days_left, r.vendor_id))
        if len(items) > DIGEST_THRESHOLD:
            groups.append((channel, tuple(items)))
        else:
            groups.extend((channel, (r,)) for r in items)
    return groups


class ReminderService:
    def __init__(self, ctx: Context, *, instance: str | None = None, claim_timeout: timedelta = CLAIM_TIMEOUT):
        self.ctx = ctx
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.claim_timeout = claim_timeout

    # ------------------------------------------------------------ reads

    def due(self, now: datetime | None = None) -> list[Reminder]:
        """Reminders due at ``now`` and not yet delivered, claimed or skipped (nothing is written)."""
        now = now or self.ctx.clock.now()
        with self.ctx.transaction() as session:
            return [c.reminder for c in self._candidates(session, now)]

    def due_query(self, session: Session, now: datetime) -> tuple[Select[*tuple[Any, ...]] | None, dict[date, int]]:
        """The query for keys whose latest due milestone has no delivery yet (or a failed or stale claim).

        The milestone depends only on the expiry date, so it is worked out once per distinct date (a few hundred
        at most) and handed to the database as a CASE; the database then walks the ``expires_on`` index and
        probes the unique (vendor ID, generation, milestone) index, returning only what is left to post. In the
        steady state, every few minutes, that is nothing, whatever the number of keys.
        """
        settings = self.ctx.settings
        horizon = rules.local_date(now, settings.timezone) + timedelta(days=max(settings.reminder_days, default=0))
        dates = session.scalars(select(Key.expires_on).where(Key.expires_on <= horizon).distinct()).all()
        due = {
            day: milestone
            for day in dates
            if (
                milestone := latest_due_milestone(
                    day, now, settings.reminder_days, settings.reminder_time, settings.timezone
                )
            )
            is not None
        }
        if not due:
            return None, due
        delivery = aliased(ReminderDelivery)
        query = (
            select(
                Key.vendor_id,
                Key.label,
                Key.generation,
                Key.expires_on,
                Key.owner_id,
                Key.channel_id,
                delivery.id,
            )
            .outerjoin(
                delivery,
                and_(
                    delivery.vendor_id == Key.vendor_id,
                    delivery.generation == Key.generation,
                    delivery.milestone == case(due, value=Key.expires_on),
                ),
            )
            .where(
                Key.expires_on.in_(list(due)),
                or_(
                    delivery.id.is_(None),
                    delivery.status == FAILED,
                    and_(delivery.status == CLAIMED, delivery.claimed_at < now - self.claim_timeout),
                ),
            )
        )
        return query, due

    def _candidates(self, session: Session, now: datetime) -> list[_Candidate]:
        settings = self.ctx.settings
        today = rules.local_date(now, settings.timezone)
        query, due = self.due_query(session, now)
        rows = session.execute(query).all() if query is not None else []
        candidates = []
        for vendor_id, label, generation, expires_on, owner_id, channel_id, existing_id in rows:
            channel = channel_id or settings.channel
            if not channel:
                logger.warning(
                    "Reminder for %s is due but it has no channel and KEYBOT_CHANNEL is not set; skipped",
                    vendor_id,
                    extra={"vendor_id": vendor_id},
                )
                continue
            reminder = Reminder(
                vendor_id=vendor_id,
                label=label,
                generation=generation,
                milestone=due[expires_on],
                expires_on=expires_on,
                days_left=rules.days_left(expires_on, today),
                owner_id=owner_id,
                channel_id=channel,
            )
            candidates.append(_Candidate(reminder, existing_id))
        return candidates

    # ------------------------------------------------------------ the sweep

    def sweep(self, notifier: Notifier | None, *, now: datetime | None = None, dry_run: bool = False) -> SweepReport:
        """Post every due reminder once. ``dry_run`` only reports what would be posted and records nothing."""
        now = now or self.ctx.clock.now()
        report = SweepReport(now=now, dry_run=dry_run)
        if dry_run:
            report.posts = [Post(channel, group) for channel, group in group_posts(self.due(now))]
            return report
        if notifier is None:
            raise ValueError("a sweep that posts needs a notifier")
        with self.ctx.transaction() as session:
            claimed, report.skipped_older = self._claim(session, self._candidates(session, now), now)
        for channel, group in group_posts(claimed):
            try:
                ts = notifier.post(channel, group)
            except Exception as exc:  # noqa: BLE001 - Slack error, network, anything: retry on a later sweep
                logger.exception(
                    "Posting %d reminder(s) to %s failed; a later sweep retries",
                    len(group),
                    channel,
                    extra={"vendor_id": ",".join(r.vendor_id for r in group)},
                )
                self._release(group, now)
                report.failed.append(Post(channel, group, error=exc.__class__.__name__))
                continue
            self._delivered(channel, group, ts, now)
            report.posts.append(Post(channel, group, ts))
        return report

    def _claim(self, session: Session, candidates: list[_Candidate], now: datetime) -> tuple[list[Reminder], int]:
        claimed: list[Reminder] = []
        fresh = [c.reminder for c in candidates if c.existing_id is None]
        for start in range(0, len(fresh), _CHUNK):
            chunk = fresh[start : start + _CHUNK]
            won = self._insert_new(session, [self._row(r, now, CLAIMED) for r in chunk], returning=True)
            claimed.extend(r for r in chunk if (r.vendor_id, r.generation, r.milestone) in won)
        for candidate in candidates:
            if candidate.existing_id is None:
                continue
            # conditional: of two sweeps re-claiming the same row, exactly one sees rowcount 1
            result = session.execute(
                update(ReminderDelivery)
                .where(
                    ReminderDelivery.id == candidate.existing_id,
                    or_(
                        ReminderDelivery.status == FAILED,
                        and_(
                            ReminderDelivery.status == CLAIMED,
                            ReminderDelivery.claimed_at < now - self.claim_timeout,
                        ),
                    ),
                )
                .values(
                    status=CLAIMED,
                    claimed_at=now,
                    claimed_by=self.instance,
                    attempts=ReminderDelivery.attempts + 1,
                )
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(candidate.reminder)
        skipped = self._skip_older(session, claimed, now)
        return claimed, skipped

    def _skip_older(self, session: Session, claimed: list[Reminder], now: datetime) -> int:
        """Record the older milestones of each claimed reminder as skipped, so they never post later."""
        rows = [
            self._row(r, now, SKIPPED, milestone=m)
            for r in claimed
            for m in self.ctx.settings.reminder_days
            if m > r.milestone
        ]
        inserted = 0
        for start in range(0, len(rows), _CHUNK):
            inserted += len(self._insert_new(session, rows[start : start + _CHUNK], returning=True))
        return inserted

    def _row(self, reminder: Reminder, now: datetime, status: str, *, milestone: int | None = None) -> dict[str, Any]:
        return {
            "vendor_id": reminder.vendor_id,
            "generation": reminder.generation,
            "milestone": reminder.milestone if milestone is None else milestone,
            "claimed_at": now,
            "claimed_by": self.instance,
            "channel_id": reminder.channel_id,
            "attempts": 1 if status == CLAIMED else 0,
            "status": status,
        }

    def _insert_new(
        self, session: Session, rows: list[dict[str, Any]], *, returning: bool
    ) -> set[tuple[str, int, int]]:
        """INSERT … ON CONFLICT DO NOTHING: rows another sweep already holds are left alone."""
        if not rows:
            return set()
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            statement: Any = postgresql.insert(ReminderDelivery).on_conflict_do_nothing()
        elif dialect == "sqlite":
            statement = sqlite.insert(ReminderDelivery).on_conflict_do_nothing()
        else:  # pragma: no cover - other databases: plain insert, a conflict fails the sweep (retried)
            statement = insert(ReminderDelivery)
        statement = statement.returning(
            ReminderDelivery.vendor_id, ReminderDelivery.generation, ReminderDelivery.milestone
        )
        # executemany: SQLAlchemy batches it as "insertmanyvalues" and still returns the rows inserted
        return {(v, g, m) for v, g, m in session.execute(statement, rows)}

    def _mine(self, group: Sequence[Reminder]) -> Any:
        # one claim per vendor ID per sweep, and earlier claims of this instance are settled already
        return and_(
            ReminderDelivery.vendor_id.in_([r.vendor_id for r in group]),
            ReminderDelivery.claimed_by == self.instance,
            ReminderDelivery.status == CLAIMED,
        )

    def _delivered(self, channel: str, group: Sequence[Reminder], ts: str, now: datetime) -> None:
        with self.ctx.transaction() as session:
            for start in range(0, len(group), _CHUNK):
                chunk = group[start : start + _CHUNK]
                session.execute(
                    update(ReminderDelivery)
                    .where(self._mine(chunk))
                    .values(status=DELIVERED, delivered_at=now, message_ts=ts, channel_id=channel)
                )
            # one audit event per message (a digest names every key): the chain appends one entry at a time
            first = group[0]
            self.ctx.record(
                session,
                "scheduler",
                "reminder.posted",
                first.vendor_id if len(group) == 1 else None,
                {
                    "reminders": [
                        {"vendor_id": r.vendor_id, "generation": r.generation, "milestone": r.milestone} for r in group
                    ],
                    "channel": channel,
                    "ts": ts,
                    "digest": len(group) > 1,
                },
                at=now,
            )

    def _release(self, group: Sequence[Reminder], now: datetime) -> None:
        with self.ctx.transaction() as session:
            for start in range(0, len(group), _CHUNK):
                session.execute(
                    update(ReminderDelivery).where(self._mine(group[start : start + _CHUNK])).values(status=FAILED)
                )

    # ------------------------------------------------------------ inspection (tests, status views)

    def deliveries(self, *, vendor_id: str | None = None) -> list[ReminderDelivery]:
        with self.ctx.transaction() as session:
            query = select(ReminderDelivery).order_by(ReminderDelivery.id)
            if vendor_id is not None:
                query = query.where(ReminderDelivery.vendor_id == vendor_id)
            return list(session.scalars(query).all())


# ---------------------------------------------------------------- the command line's view of a sweep


def parse_as_of(raw: str, tz: ZoneInfo) -> datetime:
    """``--as-of``: ISO-8601; without a zone it is a wall-clock time in ``tz`` (KEYBOT_TIMEZONE)."""
    value = datetime.fromisoformat(raw.strip())
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def describe_sweep(report: SweepReport, tz: ZoneInfo) -> list[str]:
    """Plain text lines for a terminal: what was (or would be) posted where. No secrets exist here to leak."""
    when = report.now.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    verb = "Would post" if report.dry_run else "Posted"
    lines = []
    for post in report.posts + report.failed:
        state = "" if post in report.posts else f" FAILED ({post.error}; a later sweep retries)"
        kind = f"digest of {len(post.reminders)} keys" if post.is_digest else "reminder"
        lines.append(f"{verb if not post.error else 'Could not post'} {kind} to {post.channel_id}{state}:")
        lines.extend(
            f"  {r.vendor_id}  {r.label}  expires {r.expires_on}  "
            f"{rules.describe_days_left(r.days_left)}  — {r.headline}"
            for r in post.reminders
        )
    total = sum(len(p.reminders) for p in report.posts)
    lines.append(
        f"{'Dry run at' if report.dry_run else 'Sweep at'} {when}: {total} reminder(s) in "
        f"{len(report.posts)} message(s){'' if report.dry_run else ' posted'}"
        + (f", {len(report.failed)} message(s) failed" if report.failed else "")
        + (f", {report.skipped_older} older missed milestone(s) skipped" if report.skipped_older else "")
        + "."
    )
    return lines
