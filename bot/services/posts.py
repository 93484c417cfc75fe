"""Posts the bot makes once per day or week (the weekly summary, the audit chain head): never lost, never twice.

The same promise as reminders (``bot/services/reminders.py``): a post is claimed in ``scheduled_posts`` before it
is made (the unique (kind, day) constraint makes a racing process lose the claim), marked delivered with its
``ts`` after, and released as failed when it did not go out, so a later sweep re-claims it; a claim left by a
crash is re-claimed after :data:`CLAIM_TIMEOUT`. When an attempt ended without an answer the row keeps
``unsure_since`` (the wall-clock time of that claim), and the Slack layer looks for the message in the channel's
history before posting again. Each row carries a random ``claim_id`` that the message's metadata names, so a message
of another installation (or of a restored backup) with the same row ID never stands in for this one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.services.base import Context, instance_name
from storage.models import ScheduledPost

CLAIM_TIMEOUT = timedelta(minutes=10)
CLAIMED, DELIVERED, FAILED = "claimed", "delivered", "failed"
LEGACY_CLAIM = "legacy"  # claim IDs given by migration 0010 to rows claimed before: their messages name row IDs


def wall_clock() -> datetime:
    """The real time, whatever the service clock says (``reminders run --as-of``, the console demo): Slack stamps
    messages with it, so the history lookup after a lost answer starts from it."""
    return datetime.now(UTC)


def new_claim_id() -> str:
    """A claim's ID: random, so no other database (a second installation, a restored backup) produces it."""
    return uuid.uuid4().hex


def is_legacy(claim_id: str) -> bool:
    """A row claimed before claim IDs existed: its message (if an attempt made one) names only its row ID."""
    return claim_id.startswith(LEGACY_CLAIM)


@dataclass(frozen=True)
class Claim:
    """One post this process may make now. ``action``/``details``: the audit entry written once it is posted."""

    id: int
    kind: str
    day: date
    unsure_since: datetime | None  # an earlier attempt may have posted it: look in the history from here
    action: str
    details: dict[str, Any] = field(default_factory=dict)
    claim_id: str = ""  # the message's metadata names it: see :func:`new_claim_id`


class ScheduledPosts:
    def __init__(self, ctx: Context, *, instance: str | None = None, claim_timeout: timedelta = CLAIM_TIMEOUT):
        self.ctx = ctx
        self.instance = instance or instance_name()
        self.claim_timeout = claim_timeout

    def claim(
        self, kind: str, due: date | None, *, retry_days: int, action: str, now: datetime | None = None
    ) -> Claim | None:
        """Claim the ``kind`` post for ``due`` (None: nothing new is due), else one that failed (or whose process
        died) in the last ``retry_days`` days, else None: nothing to post, or another process has it."""
        now = now or self.ctx.clock.now()
        wall = wall_clock()
        with self.ctx.transaction() as session:
            if due is not None and (won := self._insert(session, kind, due, now, wall)) is not None:
                return Claim(won[0], kind, due, None, action, claim_id=won[1])
            retry = and_(
                ScheduledPost.kind == kind,
                ScheduledPost.day >= self.ctx.today(now) - timedelta(days=retry_days),
                or_(
                    ScheduledPost.status == FAILED,
                    and_(ScheduledPost.status == CLAIMED, ScheduledPost.claimed_at < now - self.claim_timeout),
                ),
            )
            for post_id in session.scalars(select(ScheduledPost.id).where(retry).order_by(ScheduledPost.day.desc())):
                # conditional: of two sweeps re-claiming it, one wins. A stale claim's post may have gone out
                # before its process died: it is unsure from that claim on.
                row = session.execute(
                    update(ScheduledPost)
                    .where(ScheduledPost.id == post_id, retry)
                    .values(
                        status=CLAIMED,
                        claimed_at=now,
                        claimed_by=self.instance,
                        claimed_wall_at=wall,
                        attempts=ScheduledPost.attempts + 1,
                        unsure_since=func.coalesce(
                            ScheduledPost.unsure_since,
                            case(
                                (
                                    ScheduledPost.status == CLAIMED,
                                    func.coalesce(ScheduledPost.claimed_wall_at, ScheduledPost.claimed_at),
                                ),
                                else_=None,
                            ),
                        ),
                    )
                    .returning(ScheduledPost.day, ScheduledPost.unsure_since, ScheduledPost.claim_id)
                    .execution_options(synchronize_session=False)
                ).first()
                if row is not None:
                    return Claim(post_id, kind, row.day, row.unsure_since, action, claim_id=row.claim_id)
        return None

    def _insert(self, session: Session, kind: str, day: date, now: datetime, wall: datetime) -> tuple[int, str] | None:
        """INSERT … ON CONFLICT DO NOTHING: the new row's ID and claim ID, or None when the post was claimed
        already."""
        dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
        claim_id = new_claim_id()
        values = {
            "kind": kind,
            "day": day,
            "status": CLAIMED,
            "claimed_at": now,
            "claimed_by": self.instance,
            "attempts": 1,
            "claim_id": claim_id,
            "claimed_wall_at": wall,
        }
        statement = dialect.insert(ScheduledPost).values(values).on_conflict_do_nothing().returning(ScheduledPost.id)
        post_id = session.scalar(statement)
        return None if post_id is None else (post_id, claim_id)

    def _mine(self, claim: Claim) -> Any:
        return and_(
            ScheduledPost.id == claim.id, ScheduledPost.claimed_by == self.instance, ScheduledPost.status == CLAIMED
        )

    def delivered(self, claim: Claim, *, channel: str, ts: str, found: bool = False) -> None:
        """Mark the post made and audit it (``found``: an earlier attempt posted it, its answer was lost)."""
        now = self.ctx.clock.now()
        with self.ctx.transaction() as session:
            session.execute(
                update(ScheduledPost)
                .where(self._mine(claim))
                .values(status=DELIVERED, delivered_at=now, channel_id=channel, message_ts=ts)
            )
            details = {"day": claim.day.isoformat(), **claim.details, "channel": channel, "ts": ts}
            if found:
                details["found_in_history"] = True
            self.ctx.record(session, "scheduler", claim.action, None, details, at=now)

    def failed(self, claim: Claim, *, unsure: bool) -> None:
        """Back to ``failed`` for a later sweep; ``unsure``: the post may have gone out, look for it first."""
        values: dict[str, Any] = {"status": FAILED}
        if unsure:
            values["unsure_since"] = func.coalesce(
                ScheduledPost.unsure_since, ScheduledPost.claimed_wall_at, ScheduledPost.claimed_at
            )
        with self.ctx.transaction() as session:
            session.execute(update(ScheduledPost).where(self._mine(claim)).values(values))

    def rows(self, kind: str) -> list[ScheduledPost]:
        """Every post of ``kind`` (tests, status views)."""
        with self.ctx.reading() as session:
            return list(session.scalars(select(ScheduledPost).where(ScheduledPost.kind == kind)))
