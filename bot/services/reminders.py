"""Reminders at the email milestones: exactly once, on time, across restarts and several instances.

A sweep finds, for every key, the most recent milestone that is due (D-14, D-7, D-1, D-0 by default, then one
"expired N days ago" a day). It claims that reminder in ``reminder_deliveries`` *before* posting; the unique
(vendor ID, generation, milestone) constraint makes a racing second process lose the claim. After a post the row
is marked delivered with the message ``ts``; a failed post marks it ``failed`` so a later sweep re-claims it, and
a claim left behind by a crash may be re-claimed after :data:`CLAIM_TIMEOUT`. Older milestones missed during
downtime are recorded as ``skipped``, so only the latest one is ever posted (no spam after an outage).

A digest that needs several messages is posted part by part, each part's rows marked delivered as soon as it is
posted, so a failing later part never re-posts the earlier ones. Every message names its reminders in Slack message
metadata: each row's random ``claim_id`` (no other database produces it: a second installation or a restored backup
reuses row IDs, never claim IDs) with its key, generation and milestone. When an attempt ended without an answer
(timeout, dropped connection, 5xx, a crash mid-post) the row keeps ``unsure_since``, the wall-clock time of that
claim (Slack's ``ts`` are wall-clock, whatever ``--as-of`` says), and before posting again the sweep looks for the
message in the channel's history since then, marking it delivered when it is there.

A channel that refuses the bot (it was never invited, the channel is archived or gone) is never silent: the
notifier raises :class:`CannotPost`, the reminder stays due (``failed``: each sweep tries again, so it is posted
once someone invites the bot), a ``reminder_problems`` row names the key, channel and error for status, App Home,
``/healthz`` and ``/metrics``, and within the same sweep the key's owner and KEYBOT_CHANNEL are told how to fix
it — once per key, channel and error (``told_at``), whatever the number of sweeps and processes.

Nothing here knows Slack: posting goes through a :class:`Notifier` (see ``bot/slack/reminders.py``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from bot import i18n, rules
from bot.i18n import N_, t
from bot.rules import Msg
from bot.services.base import Context, MaybePosted, instance_name
from bot.services.posts import new_claim_id, wall_clock
from storage.models import Key, ReminderDelivery, ReminderProblem

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


def headline(milestone: int, days_left: int) -> Msg:
    """What a reminder says first (plain text; ``days_left`` is the truth at posting time)."""
    late = days_left != milestone
    if days_left < 0:
        advice = rules.wing_advice(rules.path_for(days_left))
        if days_left == -1:
            return Msg("Expired 1 day ago: API calls fail until a new key is issued. {advice}", {"advice": advice})
        return Msg(
            "Expired {days} days ago: API calls fail until a new key is issued. {advice}",
            {"days": -days_left, "advice": advice},
        )
    if days_left == 0:
        return Msg("Expires today: API calls will fail")
    if days_left == 1:
        return Msg("Expires tomorrow")
    if milestone == 7 and not late:
        return Msg("One week left")
    if milestone == rules.REISSUE_WINDOW_DAYS and not late:
        return Msg("The reissue button in WING is active from today")
    if rules.reissue_button_active(days_left):
        return Msg("{days} days left: the reissue button in WING is active", {"days": days_left})
    return Msg("{days} days left", {"days": days_left})


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
    delivery_id: int | None = None  # the claimed row, once claimed
    claim_id: str | None = None  # the claimed row's claim ID: the message's metadata names it

    @property
    def headline(self) -> Msg:
        return headline(self.milestone, self.days_left)


class CannotPost(Exception):
    """The channel refuses the bot's posts until a person acts: ``error`` is Slack's word for why
    (``not_in_channel``, ``channel_not_found``, ``is_archived``). Certainly not posted."""

    def __init__(self, error: str):
        super().__init__(f"Slack refuses to post here: {error}")
        self.error = error


class PostFailed(Exception):
    """Slack answered the post with an error (a revoked token, rate limits that outlasted the retries): certainly
    not posted. Its message says what failed in a few words; a later sweep retries."""


@dataclass(frozen=True)
class Undeliverable:
    """Reminders Slack refuses to post in ``channel_id``, and who should hear it."""

    channel_id: str
    error: str
    vendor_ids: tuple[str, ...]
    owners: tuple[str, ...] = ()  # the keys' owners (a DM each)
    since: datetime | None = None
    also: str | None = None  # KEYBOT_CHANNEL, when it is another channel


class Notifier:
    """Where reminders go (``bot/slack/reminders.py`` posts them to Slack)."""

    def tell(self, problem: Undeliverable) -> bool:
        """Tell the owners (DM) and ``problem.also`` that reminders cannot be posted; True when someone heard."""
        return False

    def parts(self, reminders: Sequence[Reminder]) -> list[tuple[Reminder, ...]]:
        """How a digest of ``reminders`` splits into messages (each is claimed and marked on its own)."""
        return [tuple(reminders)]

    def post(self, channel: str, reminders: Sequence[Reminder]) -> str:
        """Posts one message to ``channel``: one reminder, or a digest when given several. Returns its ts.

        Raises on failure: :class:`MaybePosted` when the message may have gone out, :class:`CannotPost` when
        the channel refuses the bot, anything else when it did not. The claim is released and a later sweep
        retries.
        """
        raise NotImplementedError

    def find(self, channel: str, since: datetime, reminders: Sequence[Reminder]) -> dict[int, str]:
        """Delivery ID → ts of those of ``reminders`` (claimed, with an attempt that lost its answer) that a
        message this bot posted to ``channel`` since ``since`` (a wall-clock time) is about."""
        return {}


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
    found: int = 0  # reminders whose earlier attempt lost its answer, found already posted in the channel
    undeliverable: list[Post] = field(default_factory=list)  # the channel refuses the bot (Post.error says why)
    told: list[Undeliverable] = field(default_factory=list)  # problems people heard about in this sweep

    @property
    def delivered(self) -> int:
        return sum(len(p.reminders) for p in self.posts)


@dataclass(frozen=True)
class _Candidate:
    reminder: Reminder
    existing_id: int | None  # a failed or stale claim to re-claim; None → insert a new claim


@dataclass
class _Claimed:
    reminders: list[Reminder] = field(default_factory=list)
    unsure: dict[int, datetime] = field(default_factory=dict)  # delivery ID → search the channel from here
    skipped: int = 0


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
        self.instance = instance or instance_name()
        self.claim_timeout = claim_timeout

    # ------------------------------------------------------------ reads

    def due(self, now: datetime | None = None, no_channel: list[str] | None = None) -> list[Reminder]:
        """Reminders due at ``now`` and not yet delivered, claimed or skipped (nothing is written); the vendor IDs
        of due keys with no channel at all go to ``no_channel``."""
        now = now or self.ctx.clock.now()
        with self.ctx.transaction() as session:
            return [c.reminder for c in self._candidates(session, now, no_channel)]

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

    def _candidates(self, session: Session, now: datetime, no_channel: list[str] | None = None) -> list[_Candidate]:
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
                if no_channel is not None:
                    no_channel.append(vendor_id)
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
            report.posts = [Post(channel, group) for channel, group in group_posts(self.due(now, report.no_channel))]
            return report
        if notifier is None:
            raise ValueError("a sweep that posts needs a notifier")
        with self.ctx.transaction() as session:
            claimed = self._claim(session, self._candidates(session, now, report.no_channel), now)
        report.skipped_older = claimed.skipped
        refusing: dict[str, str] = {}  # channel -> Slack's refusal, this sweep: not asked again
        for channel, group in group_posts(self._find_posted(notifier, claimed, now, report)):
            if channel in refusing:
                self._release(group, unsure=False)
                report.undeliverable.append(Post(channel, group, error=refusing[channel]))
                continue
            parts = notifier.parts(group) if len(group) > 1 else [group]
            for number, part in enumerate(parts):
                try:
                    ts = notifier.post(channel, part)
                except CannotPost as exc:  # stays due: posted by the first sweep after someone fixes the channel
                    logger.warning(
                        "Slack refuses reminders in %s (%s): the bot must be invited there", channel, exc.error
                    )
                    unsent = tuple(r for later in parts[number:] for r in later)
                    self._release(unsent, unsure=False)
                    refusing[channel] = exc.error
                    report.undeliverable.append(Post(channel, unsent, error=exc.error))
                    break
                except Exception as exc:  # noqa: BLE001 - Slack error, network, anything: retry on a later sweep
                    logger.exception(
                        "Posting %d reminder(s) to %s failed; a later sweep retries",
                        len(part),
                        channel,
                        extra={"vendor_id": ",".join(r.vendor_id for r in part)},
                    )
                    self._release(part, unsure=isinstance(exc, MaybePosted))
                    unsent = tuple(r for later in parts[number + 1 :] for r in later)
                    self._release(unsent, unsure=False)  # never tried: certainly not posted
                    # what failed, in words: "Slack answered HTTP 500", "no answer from Slack: …"
                    error = str(exc) if isinstance(exc, (MaybePosted, PostFailed)) else exc.__class__.__name__
                    report.failed.append(Post(channel, (*part, *unsent), error=error))
                    break
                self._delivered(channel, part, ts, now)
                report.posts.append(Post(channel, part, ts))
        self._record_problems(report, now)
        report.told = self._tell(notifier, report, now)
        return report

    # ------------------------------------------------------------ channels that refuse the bot

    def _record_problems(self, report: SweepReport, now: datetime) -> None:
        """One row per refused key and channel (a new error makes it news again); a key posted anywhere since
        has no problem left."""
        refused = {
            (r.vendor_id, post.channel_id): post.error or "" for post in report.undeliverable for r in post.reminders
        }
        posted = {r.vendor_id for post in report.posts for r in post.reminders}
        if not refused and not posted:
            return
        with self.ctx.transaction() as session:
            vendors = sorted(posted)
            for start in range(0, len(vendors), _CHUNK):
                session.execute(
                    delete(ReminderProblem).where(ReminderProblem.vendor_id.in_(vendors[start : start + _CHUNK]))
                )
            for (vendor_id, channel), error in sorted(refused.items()):
                row = session.execute(
                    select(ReminderProblem).where(
                        ReminderProblem.vendor_id == vendor_id, ReminderProblem.channel_id == channel
                    )
                ).scalar_one_or_none()
                if row is None:
                    self._insert_problem(session, vendor_id, channel, error, now)
                elif row.error != error:
                    row.error, row.since, row.told_at = error, now, None

    def _insert_problem(self, session: Session, vendor_id: str, channel: str, error: str, now: datetime) -> None:
        values = {"vendor_id": vendor_id, "channel_id": channel, "error": error, "since": now}
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            session.execute(postgresql.insert(ReminderProblem).values(values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            session.execute(sqlite.insert(ReminderProblem).values(values).on_conflict_do_nothing())
        else:  # pragma: no cover
            session.execute(insert(ReminderProblem).values(values))

    def _tell(self, notifier: Notifier, report: SweepReport, now: datetime) -> list[Undeliverable]:
        """Tell the owners and KEYBOT_CHANNEL about each problem nobody was told of yet: claimed (told_at set)
        first, so of several processes one tells; given back when nobody could be reached, to try next sweep."""
        if not report.undeliverable:
            return []
        pairs = {(r.vendor_id, p.channel_id) for p in report.undeliverable for r in p.reminders}
        owners = {r.vendor_id: r.owner_id for p in report.undeliverable for r in p.reminders}
        claimed: dict[tuple[str, str], list[str]] = defaultdict(list)  # (channel, error) -> vendor IDs
        with self.ctx.transaction() as session:
            for vendor_id, channel in sorted(pairs):
                row = session.execute(
                    update(ReminderProblem)
                    .where(
                        ReminderProblem.vendor_id == vendor_id,
                        ReminderProblem.channel_id == channel,
                        ReminderProblem.told_at.is_(None),
                    )
                    .values(told_at=now)
                    .returning(ReminderProblem.error)
                    .execution_options(synchronize_session=False)
                ).first()
                if row is not None:
                    claimed[(channel, row.error)].append(vendor_id)
        told = []
        default = self.ctx.settings.channel
        for (channel, error), vendor_ids in sorted(claimed.items()):
            problem = Undeliverable(
                channel_id=channel,
                error=error,
                vendor_ids=tuple(vendor_ids),
                owners=tuple(sorted({o for v in vendor_ids if (o := owners.get(v))})),
                since=now,
                also=default if default and default != channel else None,
            )
            try:
                heard = notifier.tell(problem)
            except Exception:  # noqa: BLE001 - nobody heard: the next sweep tries again
                logger.exception("Could not tell anyone that %s refuses reminders", channel)
                heard = False
            if heard:
                told.append(problem)
                continue
            with self.ctx.transaction() as session:
                session.execute(
                    update(ReminderProblem)
                    .where(
                        ReminderProblem.vendor_id.in_(vendor_ids),
                        ReminderProblem.channel_id == channel,
                        ReminderProblem.told_at == now,
                    )
                    .values(told_at=None)
                )
        return told

    def undeliverable(self, *, limit: int = 200) -> list[Undeliverable]:
        """Channels refusing reminders now, with their keys (a key that moved to another channel, was deleted or
        has nothing due any more is not listed). For status, App Home, ``/healthz`` and ``/metrics``."""
        default = self.ctx.settings.channel
        still_due = exists().where(
            ReminderDelivery.vendor_id == Key.vendor_id,
            ReminderDelivery.generation == Key.generation,
            ReminderDelivery.status.in_((FAILED, CLAIMED)),
        )
        with self.ctx.reading() as session:
            rows = session.execute(
                select(
                    ReminderProblem.channel_id,
                    ReminderProblem.error,
                    Key.vendor_id,
                    Key.owner_id,
                    ReminderProblem.since,
                )
                .join(Key, Key.vendor_id == ReminderProblem.vendor_id)
                .where(func.coalesce(Key.channel_id, default or "") == ReminderProblem.channel_id, still_due)
                .order_by(ReminderProblem.channel_id, Key.vendor_id)
                .limit(limit)
            ).all()
        grouped: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in rows:
            grouped[(row.channel_id, row.error)].append(row)
        return [
            Undeliverable(
                channel_id=channel,
                error=error,
                vendor_ids=tuple(r.vendor_id for r in items),
                owners=tuple(sorted({r.owner_id for r in items if r.owner_id})),
                since=min(r.since for r in items),
            )
            for (channel, error), items in grouped.items()
        ]

    def _find_posted(self, notifier: Notifier, claimed: _Claimed, now: datetime, report: SweepReport) -> list[Reminder]:
        """Settle the claims whose last attempt lost its answer; returns the reminders still to post."""
        unsure = [r for r in claimed.reminders if r.delivery_id in claimed.unsure]
        if not unsure:
            return claimed.reminders
        settled: set[int] = set()
        by_channel: dict[str, list[Reminder]] = defaultdict(list)
        for reminder in unsure:
            by_channel[reminder.channel_id].append(reminder)
        for channel, items in by_channel.items():
            since = min(claimed.unsure[r.delivery_id or 0] for r in items)
            try:
                posted = notifier.find(channel, since, items)
            except Exception:  # noqa: BLE001 - cannot tell yet: keep the rows unsure, a later sweep looks again
                logger.exception(
                    "Could not read %s's history to settle %d reminder(s); retried later", channel, len(items)
                )
                self._release(items, unsure=True)
                settled.update(r.delivery_id or 0 for r in items)
                report.failed.append(Post(channel, tuple(items), error="history unreadable"))
                continue
            by_ts: dict[str, list[Reminder]] = defaultdict(list)
            for reminder in items:
                if reminder.delivery_id in posted:
                    by_ts[posted[reminder.delivery_id or 0]].append(reminder)
            for ts, found in by_ts.items():
                logger.info(
                    "%d reminder(s) were already posted to %s (ts %s): not posted again", len(found), channel, ts
                )
                self._delivered(channel, found, ts, now, found=True)
                settled.update(r.delivery_id or 0 for r in found)
                report.found += len(found)
        return [r for r in claimed.reminders if r.delivery_id not in settled]

    def _claim(self, session: Session, candidates: list[_Candidate], now: datetime) -> _Claimed:
        claimed = _Claimed()
        wall = wall_clock()
        fresh = [c.reminder for c in candidates if c.existing_id is None]
        for start in range(0, len(fresh), _CHUNK):
            chunk = fresh[start : start + _CHUNK]
            won = self._insert_new(session, [self._row(r, now, CLAIMED, wall=wall) for r in chunk])
            claimed.reminders.extend(
                replace(r, delivery_id=won[key][0], claim_id=won[key][1])
                for r in chunk
                if (key := (r.vendor_id, r.generation, r.milestone)) in won
            )
        stale = and_(ReminderDelivery.status == CLAIMED, ReminderDelivery.claimed_at < now - self.claim_timeout)
        for candidate in candidates:
            if candidate.existing_id is None:
                continue
            # conditional: of two sweeps re-claiming the same row, exactly one gets it back. A stale claim's
            # post may have gone out before its process died: it is unsure from that claim on.
            won_row = session.execute(
                update(ReminderDelivery)
                .where(ReminderDelivery.id == candidate.existing_id, or_(ReminderDelivery.status == FAILED, stale))
                .values(
                    status=CLAIMED,
                    claimed_at=now,
                    claimed_by=self.instance,
                    claimed_wall_at=wall,
                    attempts=ReminderDelivery.attempts + 1,
                    unsure_since=func.coalesce(
                        ReminderDelivery.unsure_since,
                        case(
                            (
                                ReminderDelivery.status == CLAIMED,
                                func.coalesce(ReminderDelivery.claimed_wall_at, ReminderDelivery.claimed_at),
                            ),
                            else_=None,
                        ),
                    ),
                )
                .returning(ReminderDelivery.unsure_since, ReminderDelivery.claim_id)
                .execution_options(synchronize_session=False)
            ).first()
            if won_row is not None:
                claimed.reminders.append(
                    replace(candidate.reminder, delivery_id=candidate.existing_id, claim_id=won_row.claim_id)
                )
                if won_row.unsure_since is not None:
                    claimed.unsure[candidate.existing_id] = won_row.unsure_since
        claimed.skipped = self._skip_older(session, claimed.reminders, now)
        return claimed

    def _skip_older(self, session: Session, claimed: list[Reminder], now: datetime) -> int:
        """Record the older milestones of each claimed reminder as skipped, so they never post later."""
        rows = [
            self._row(r, now, SKIPPED, milestone=m, wall=None)
            for r in claimed
            for m in self.ctx.settings.reminder_days
            if m > r.milestone
        ]
        inserted = 0
        for start in range(0, len(rows), _CHUNK):
            inserted += len(self._insert_new(session, rows[start : start + _CHUNK]))
        return inserted

    def _row(
        self, reminder: Reminder, now: datetime, status: str, *, milestone: int | None = None, wall: datetime | None
    ) -> dict[str, Any]:
        return {
            "claim_id": new_claim_id(),
            "claimed_wall_at": wall,
            "vendor_id": reminder.vendor_id,
            "generation": reminder.generation,
            "milestone": reminder.milestone if milestone is None else milestone,
            "claimed_at": now,
            "claimed_by": self.instance,
            "channel_id": reminder.channel_id,
            "attempts": 1 if status == CLAIMED else 0,
            "status": status,
        }

    def _insert_new(self, session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, int, int], tuple[int, str]]:
        """INSERT … ON CONFLICT DO NOTHING: rows another sweep already holds are left alone.

        Returns (vendor ID, generation, milestone) → (row ID, claim ID) of the rows inserted."""
        if not rows:
            return {}
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            statement: Any = postgresql.insert(ReminderDelivery).on_conflict_do_nothing()
        elif dialect == "sqlite":
            statement = sqlite.insert(ReminderDelivery).on_conflict_do_nothing()
        else:  # pragma: no cover - other databases: plain insert, a conflict fails the sweep (retried)
            statement = insert(ReminderDelivery)
        statement = statement.returning(
            ReminderDelivery.vendor_id,
            ReminderDelivery.generation,
            ReminderDelivery.milestone,
            ReminderDelivery.id,
            ReminderDelivery.claim_id,
        )
        # executemany: SQLAlchemy batches it as "insertmanyvalues" and still returns the rows inserted
        return {(v, g, m): (i, c) for v, g, m, i, c in session.execute(statement, rows)}

    def _mine(self, group: Sequence[Reminder]) -> Any:
        return and_(
            ReminderDelivery.id.in_([r.delivery_id for r in group]),
            ReminderDelivery.claimed_by == self.instance,
            ReminderDelivery.status == CLAIMED,
        )

    def _delivered(
        self, channel: str, group: Sequence[Reminder], ts: str, now: datetime, *, found: bool = False
    ) -> None:
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
                    **({"found_in_history": True} if found else {}),
                },
                at=now,
            )

    def _release(self, group: Sequence[Reminder], *, unsure: bool) -> None:
        """Back to ``failed`` for a later sweep; ``unsure``: the post may have gone out, look for it first."""
        if not group:
            return
        values: dict[str, Any] = {"status": FAILED}
        if unsure:
            values["unsure_since"] = func.coalesce(
                ReminderDelivery.unsure_since, ReminderDelivery.claimed_wall_at, ReminderDelivery.claimed_at
            )
        with self.ctx.transaction() as session:
            for start in range(0, len(group), _CHUNK):
                session.execute(
                    update(ReminderDelivery).where(self._mine(group[start : start + _CHUNK])).values(values)
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


_POST_HEADS = {  # (dry run, failed, digest) -> what the terminal says above a message's keys
    (True, False, False): N_("Would post reminder to {channel}:"),
    (True, False, True): N_("Would post digest of {count} keys to {channel}:"),
    (False, False, False): N_("Posted reminder to {channel}:"),
    (False, False, True): N_("Posted digest of {count} keys to {channel}:"),
    (False, True, False): N_("Could not post reminder to {channel} FAILED ({error}; a later sweep retries):"),
    (False, True, True): N_(
        "Could not post digest of {count} keys to {channel} FAILED ({error}; a later sweep retries):"
    ),
}


def describe_sweep(report: SweepReport, tz: ZoneInfo, lang: str = "en") -> list[str]:
    """Plain text lines for a terminal: what was (or would be) posted where. No secrets exist here to leak."""
    when = f"{report.now.astimezone(tz):%Y-%m-%d %H:%M} {i18n.zone_after(lang, report.now, tz)}"
    lines = []
    for post in report.posts + report.failed + report.undeliverable:
        head = _POST_HEADS[(report.dry_run and not post.error, bool(post.error), post.is_digest)]
        lines.append(t(lang, head, channel=post.channel_id, count=len(post.reminders), error=post.error))
        lines.extend(
            t(
                lang,
                "  {vendor_id}  {label}  expires {date}  {days_left}  — {headline}",
                vendor_id=r.vendor_id,
                label=r.label,
                date=i18n.day(lang, r.expires_on),
                days_left=i18n.days_left(lang, r.days_left),
                headline=i18n.render(lang, r.headline),
            )
            for r in post.reminders
        )
    total = sum(len(p.reminders) for p in report.posts)
    counts = {"time": when, "total": total, "messages": len(report.posts)}
    clauses = [
        t(lang, "Dry run at {time}: {total} reminder(s) in {messages} message(s)", **counts)
        if report.dry_run
        else t(lang, "Sweep at {time}: {total} reminder(s) in {messages} message(s) posted", **counts)
    ]
    if report.failed:
        clauses.append(t(lang, "{count} message(s) failed", count=len(report.failed)))
    if report.undeliverable:
        clauses.append(
            t(
                lang,
                "{count} reminder(s) refused by Slack in {channels} (invite the bot there)",
                count=sum(len(p.reminders) for p in report.undeliverable),
                channels=", ".join(sorted({p.channel_id for p in report.undeliverable})),
            )
        )
    if report.skipped_older:
        clauses.append(t(lang, "{count} older missed milestone(s) skipped", count=report.skipped_older))
    if report.found:
        clauses.append(t(lang, "{count} found already posted (Slack's answer was lost)", count=report.found))
    if report.no_channel:
        clauses.append(
            t(
                lang,
                "{count} skipped (no channel: {vendor_ids}; set KEYBOT_CHANNEL)",
                count=len(report.no_channel),
                vendor_ids=", ".join(sorted(report.no_channel)),
            )
        )
    lines.append(", ".join(clauses) + ".")
    return lines
