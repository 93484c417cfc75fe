"""SQLAlchemy 2 typed models. Every timestamp is timezone-aware UTC; secrets are ciphertext only.

Tables that record what happened to a vendor ID (edits, reminders, requests, history, audit) key on
``vendor_id`` rather than a foreign key, so they outlive a deleted key: Coupang's edit count does too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Key(Base):
    """The current key of one vendor ID."""

    __tablename__ = "keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    access_key_ct: Mapped[bytes] = mapped_column(LargeBinary)
    secret_key_ct: Mapped[bytes] = mapped_column(LargeBinary)
    access_key_mask: Mapped[str] = mapped_column(String(16))
    secret_fingerprint: Mapped[str] = mapped_column(String(32))
    issued_on: Mapped[date | None] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date, index=True)
    channel_id: Mapped[str | None] = mapped_column(String(32))
    owner_id: Mapped[str | None] = mapped_column(String(32))
    integration: Mapped[str] = mapped_column(String(16))
    integrator_name: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(200))
    company_url: Mapped[str | None] = mapped_column(String(500))
    ip_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    access_deadline: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()
    verify_outcome: Mapped[str | None] = mapped_column(String(32))
    verify_detail: Mapped[str | None] = mapped_column(String(500))
    # verification bookkeeping: the 10-second slot claimed by a conditional UPDATE, the last definitive
    # state (True works, False fails; unknown results leave it alone), the automatic post-deadline check
    # and the daily probe, each claimed the same way so every process runs it once
    verify_attempted_at: Mapped[datetime | None] = mapped_column()
    verify_ok: Mapped[bool | None] = mapped_column(Boolean)
    deadline_checked_at: Mapped[datetime | None] = mapped_column()
    probed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class KeyGeneration(Base):
    """Every generation a vendor ID has had: fingerprints and dates, never secrets."""

    __tablename__ = "key_generations"
    __table_args__ = (UniqueConstraint("vendor_id", "generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    access_key_mask: Mapped[str] = mapped_column(String(16))
    secret_fingerprint: Mapped[str] = mapped_column(String(32))
    issued_on: Mapped[date | None] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()


class LinkEdit(Base):
    """One edit of the linking info, for Coupang's 10-per-week limit."""

    __tablename__ = "link_edits"
    __table_args__ = (Index("ix_link_edits_vendor_at", "vendor_id", "edited_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    edited_at: Mapped[datetime] = mapped_column()
    edited_by: Mapped[str] = mapped_column(String(32))


class ReminderDelivery(Base):
    """A reminder claimed (then delivered) for one key generation and milestone: at most one row each.

    ``milestone`` is days before expiry; after expiry it is negative (-3 = "expired 3 days ago").
    """

    __tablename__ = "reminder_deliveries"
    __table_args__ = (UniqueConstraint("vendor_id", "generation", "milestone"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    milestone: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime] = mapped_column()
    claimed_by: Mapped[str] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column()
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # claimed → delivered; failed (a post that did not go out: a later sweep may re-claim it);
    # skipped (a milestone missed during downtime, superseded by a later one: never posted)
    status: Mapped[str] = mapped_column(String(16), default="claimed")
    # set when an attempt ended without knowing whether Slack posted it (timeout, dropped connection, 5xx,
    # a crash mid-post): the wall-clock time of that attempt's claim, from which the channel's history is searched
    unsure_since: Mapped[datetime | None] = mapped_column()
    # a random ID (uuid4 hex) no other database can produce, carried in the message's metadata: a message is this
    # row's post only when it names this claim (a restored backup or a second installation reuses row IDs)
    claim_id: Mapped[str] = mapped_column(String(32), default=lambda: uuid.uuid4().hex)
    # the real time of the latest claim (``claimed_at`` is the sweep's clock, which ``--as-of`` or the demo moves):
    # Slack's message ts are wall-clock, so a lost attempt is looked for in the history from here
    claimed_wall_at: Mapped[datetime | None] = mapped_column()


class ReminderProblem(Base):
    """Slack refused to post a key's reminder in its channel (``not_in_channel``, ``channel_not_found``,
    ``is_archived``): shown in status, App Home, ``/healthz`` and ``/metrics`` until a reminder gets through.
    ``told_at``: when the key's owner and KEYBOT_CHANNEL were told (once per key, channel and error)."""

    __tablename__ = "reminder_problems"
    __table_args__ = (UniqueConstraint("vendor_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    channel_id: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(String(64))
    since: Mapped[datetime] = mapped_column()
    told_at: Mapped[datetime | None] = mapped_column()


class ScheduledPost(Base):
    """A channel post made once per day (the audit chain head) or week (the summary): claimed, then delivered.

    Claimed like a reminder delivery: claimed → delivered (``message_ts`` set), or failed (a later sweep
    re-claims it); ``unsure_since``, ``claim_id`` and ``claimed_wall_at`` as in ReminderDelivery.
    """

    __tablename__ = "scheduled_posts"
    __table_args__ = (UniqueConstraint("kind", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    day: Mapped[date] = mapped_column(Date)  # the local day it is for
    status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column()
    claimed_by: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    unsure_since: Mapped[datetime | None] = mapped_column()
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    delivered_at: Mapped[datetime | None] = mapped_column()
    claim_id: Mapped[str] = mapped_column(String(32), default=lambda: uuid.uuid4().hex)
    claimed_wall_at: Mapped[datetime | None] = mapped_column()


class ReissueRequest(Base):
    __tablename__ = "reissue_requests"
    __table_args__ = (Index("ix_reissue_requests_vendor_status", "vendor_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    # posting the request message, claimed like a reminder delivery: claimed → delivered (message_ts set),
    # or failed (the scheduler re-claims it); unsure_since, claim_id and claimed_wall_at as in ReminderDelivery
    post_status: Mapped[str] = mapped_column(String(16), default="claimed", server_default="delivered")
    post_claimed_at: Mapped[datetime | None] = mapped_column()
    post_claimed_by: Mapped[str | None] = mapped_column(String(64))
    post_attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    post_unsure_since: Mapped[datetime | None] = mapped_column()
    post_claim_id: Mapped[str] = mapped_column(String(32), default=lambda: uuid.uuid4().hex)
    post_claimed_wall_at: Mapped[datetime | None] = mapped_column()


class Approver(Base):
    """Approvers added in Slack by an admin (besides those named in KEYBOT_APPROVERS)."""

    __tablename__ = "approvers"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    added_by: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column()


class AuditEvent(Base):
    """One link of the audit chain. ``mac`` = HMAC(key, prev_mac | canonical JSON of this entry)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    vendor_id: Mapped[str | None] = mapped_column(String(16), index=True)
    details: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(16))
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """A single row locked while appending, so concurrent writers cannot fork the chain."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))


class AppliedSubmission(Base):
    """A form submission that changed something, by Slack's view id and hash. It is written in the same transaction
    as the change, so the same submission sent again (a replay, a re-sent click) finds its row and changes nothing.
    A form corrected after an error comes back with a new hash. Rows older than a day are pruned."""

    __tablename__ = "applied_submissions"

    view_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    view_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(index=True)


class Consumer(Base):
    """A system that uses one vendor ID's key (ROLLOUT.md). Where it lives and its signing secret are ciphertext.

    ``target`` is what people see: the URL without credentials or query string, the secret ID, the path.
    ``lease_until`` serialises deliveries to one consumer across processes, so generation N is never written
    after generation N+1.
    """

    __tablename__ = "consumers"
    __table_args__ = (UniqueConstraint("vendor_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(500))
    config_ct: Mapped[bytes] = mapped_column(LargeBinary)
    signing_secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column()
    lease_by: Mapped[str | None] = mapped_column(String(64))
    # where its target was last set: "cli" (the server, not limited) or "slack" (must match KEYBOT_CONSUMER_ALLOW,
    # checked again at every delivery)
    source: Mapped[str] = mapped_column(String(8), server_default="cli")


class RolloutDelivery(Base):
    """One consumer × one generation: pending → delivered → confirmed, or failed (``last_error`` says why).

    ``message_id`` is the ``webhook-id`` / ``ClientRequestToken``: the same on every retry of this row.
    """

    __tablename__ = "rollout_deliveries"
    __table_args__ = (
        UniqueConstraint("consumer_id", "generation"),
        Index("ix_rollout_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consumer_id: Mapped[int] = mapped_column(Integer, ForeignKey("consumers.id", ondelete="CASCADE"))
    vendor_id: Mapped[str] = mapped_column(String(16), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column()  # the 24-hour retry budget counts from here
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    confirmed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(300))


class RolloutMessage(Base):
    """The progress message of one generation's rollout, a reply in the approval thread, posted once."""

    __tablename__ = "rollout_messages"
    __table_args__ = (UniqueConstraint("vendor_id", "generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column()


class ConsumerProposal(Base):
    """A consumer added or retargeted from Slack, waiting for an approver other than its proposer (ROLLOUT.md).

    ``action`` is ``add`` or ``retarget``; ``config_ct`` (and, for ``add``, the signing secret shown to the proposer)
    are ciphertexts like the consumer's own. A proposal never changes once made: a newer one for the same consumer
    voids it. ``base_digest`` is the SHA-256 of the consumer's configuration when a retarget was proposed, so an
    approval of a consumer that changed meanwhile is void.
    """

    __tablename__ = "consumer_proposals"
    __table_args__ = (Index("ix_consumer_proposals_open", "vendor_id", "name", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(500))
    config_ct: Mapped[bytes] = mapped_column(LargeBinary)
    signing_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    base_digest: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column()
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))


class UserLanguage(Base):
    """The language a person chose with ``/coupang-key language`` (people who chose nothing have no row)."""

    __tablename__ = "user_languages"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    language: Mapped[str] = mapped_column(String(8))
    chosen_at: Mapped[datetime] = mapped_column()
