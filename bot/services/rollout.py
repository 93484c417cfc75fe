"""Key rollout (ROLLOUT.md): the new key reaches every consumer, retried until it does, and consumers prove it.

Deliveries are rows (consumer × generation). Each attempt is claimed in the database first: a conditional UPDATE
takes a lease on the consumer (``lease_until``), so several processes never deliver one attempt twice and one
consumer is written by one process at a time; the delivery's own generation is re-checked against the key's
under that lease, so generation N is never written after N+1. No transaction is open while a destination
answers. A crash leaves a lease that expires and a delivery still due: nothing is lost.

Attempts run in the background (:meth:`RolloutService.kick` wakes a worker thread; a pool runs the attempts in
parallel), never inside a Slack request. Progress goes to a :class:`ProgressNotifier` (the Slack layer's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook, WebhookVerificationError

from bot import rules
from bot.destinations import (
    AWS_PARAMETER,
    AWS_SECRET,
    KINDS,
    VAULT,
    WEBHOOK,
    Delivery,
    Destinations,
    Outcome,
    is_loopback,
)
from bot.rules import InvalidInput
from bot.services.base import Context, NotAllowed, NotFound, Unavailable, is_cli_actor
from storage import rollout as store
from storage.crypto import Keyring
from storage.models import AuditEvent, Consumer, Key, RolloutDelivery, RolloutMessage
from storage.rollout import CONFIRMED, DELIVERED, FAILED, HOLDS_KEY, PENDING

logger = logging.getLogger(__name__)

# after the 1st, 2nd… failed attempt; then every 15 minutes until 24 hours after the delivery was queued
BACKOFF = tuple(timedelta(minutes=m) for m in (0.5, 1, 2, 4, 8, 15))
RETRY_FOR = timedelta(hours=24)
LEASE = timedelta(minutes=2)  # longer than any attempt (two 10-second calls at most)
POLL_SECONDS = 15.0
ERROR_CHARS = 200
WORKERS = 8

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_AWS_ID = re.compile(r"[A-Za-z0-9/_+=.@:-]{1,512}")
_SSM_NAME = re.compile(r"[A-Za-z0-9/_.:-]{1,1011}")
_VAULT_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


# ---------------------------------------------------------------- what callers see


@dataclass(frozen=True)
class ConsumerState:
    """One consumer and its latest delivery, as ``consumers list`` prints it. No secret, no query string."""

    vendor_id: str
    name: str
    kind: str
    target: str
    state: str | None
    generation: int | None
    attempts: int
    delivered_at: datetime | None
    confirmed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "vendor_id": self.vendor_id,
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "generation": self.generation,
            "attempts": self.attempts,
            "delivered_at": iso(self.delivered_at),
            "confirmed_at": iso(self.confirmed_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "last_error": self.last_error,
        }

    @property
    def holds_key(self) -> bool:
        return self.state in HOLDS_KEY


@dataclass(frozen=True, repr=False)
class AddedConsumer:
    """A new consumer; ``signing_secret`` is shown to the person who added it, once."""

    vendor_id: str
    name: str
    kind: str
    target: str
    signing_secret: str

    def __repr__(self) -> str:
        return f"AddedConsumer(vendor_id={self.vendor_id!r}, name={self.name!r}, kind={self.kind!r})"


@dataclass(frozen=True)
class Progress:
    """One generation's rollout, as the Slack message shows it."""

    vendor_id: str
    generation: int
    consumers: tuple[ConsumerState, ...]

    @property
    def delivered(self) -> int:
        return sum(c.holds_key for c in self.consumers)

    @property
    def confirmed(self) -> int:
        return sum(c.state == CONFIRMED for c in self.consumers)

    @property
    def troubled(self) -> list[ConsumerState]:
        """Failed consumers and those waiting to retry after an error."""
        return [c for c in self.consumers if c.state == FAILED or (c.state == PENDING and c.last_error)]


@dataclass(frozen=True)
class ConfirmAnswer:
    status: int
    body: dict[str, Any]
    reason: str | None = None  # why it was refused, for coupang_keybot_rollout_confirm_refused_total{reason}


CONFIRM_FIELDS = 'send a JSON object {"vendor_id": "...", "generation": 2, "consumer": "...", "proof": "<hex>"}'
# bad or stale signature and unknown vendor/consumer answer alike: nobody can list consumers by asking
UNVERIFIED = {"ok": False, "error": "bad or stale signature, or unknown vendor_id/consumer"}
REFUSALS_AUDITED_EVERY = timedelta(hours=1)


class ProgressNotifier(Protocol):
    """Shows a rollout's progress: ``post`` a reply in ``thread_ts`` (returns its ts) or ``update`` it in place."""

    def post(self, channel: str, thread_ts: str | None, progress: Progress) -> str: ...

    def update(self, channel: str, ts: str, progress: Progress) -> None: ...


@dataclass
class _Claim:
    delivery_id: int
    consumer: str
    vendor_id: str
    generation: int
    attempt: Delivery
    secrets: tuple[str, ...]  # scrubbed from any error text


# ---------------------------------------------------------------- pure helpers


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def proof_for(secret_key: str, vendor_id: str, generation: int) -> str:
    """What a consumer holding the new Secret Key sends to /rollout/confirm."""
    return hmac.new(secret_key.encode(), f"{vendor_id}:{generation}".encode(), hashlib.sha256).hexdigest()


def _confirmation(body: bytes) -> tuple[str, int, str, str] | None:
    """``(vendor_id, generation, consumer, proof)`` from a ``/rollout/confirm`` body; None when it is not a JSON
    object with exactly those types (a proof is ASCII text)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested deeper than the parser goes
        return None
    if not isinstance(payload, dict):
        return None
    vendor_id, generation = payload.get("vendor_id"), payload.get("generation")
    name, proof = payload.get("consumer"), payload.get("proof")
    if not (isinstance(vendor_id, str) and isinstance(name, str) and isinstance(proof, str)):
        return None
    if isinstance(generation, bool) or not isinstance(generation, int) or not proof.isascii():
        return None
    return vendor_id, generation, name, proof


def next_attempt(attempts: int, queued_at: datetime, now: datetime, backoff: Sequence[timedelta]) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; None once the 24 hours are used up."""
    delay = backoff[attempts - 1] if attempts <= len(backoff) else backoff[-1]
    at = now + delay
    return at if at <= queued_at + RETRY_FOR else None


def scrub(text: str, secrets_: Iterable[str]) -> str:
    """A destination's error text, cut to 200 characters, with every secret value removed first."""
    for value in secrets_:
        if value:
            text = text.replace(value, "[hidden]")
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def parse_target(kind: str, raw: str, vault_mount: str | None = None) -> tuple[dict[str, Any], str]:
    """(configuration, what people see) for a consumer; InvalidInput("target") says what to fix."""
    value = (raw or "").strip()
    if kind == WEBHOOK:
        try:
            url = urlsplit(value)
            host = url.hostname or ""
            _ = url.port  # a port that is not a number raises here
        except ValueError:
            raise InvalidInput.one("target", "That is not a URL: give https://host/path.") from None
        if url.username or url.password:
            raise InvalidInput.one("target", "Put no user:password in the URL: receivers check the signature.")
        if url.scheme not in ("https", "http") or not host:
            raise InvalidInput.one("target", "Give the webhook as https://host/path.")
        if url.scheme == "http" and not is_loopback(host):
            raise InvalidInput.one("target", "Webhooks must use https:// (plain http:// only to 127.0.0.1).")
        return {"url": value}, f"{url.scheme}://{url.netloc}{url.path or '/'}"
    if kind == AWS_SECRET:
        if not _AWS_ID.fullmatch(value):
            raise InvalidInput.one("target", "Give the secret's name or ARN (letters, digits and /_+=.@-).")
        return {"secret_id": value}, value
    if kind == AWS_PARAMETER:
        if not _SSM_NAME.fullmatch(value):
            raise InvalidInput.one("target", "Give the parameter's name, e.g. /orders/coupang-key.")
        return {"parameter": value}, value
    if kind == VAULT:
        mount = (vault_mount or "secret").strip().strip("/")
        path = value.strip("/")
        segments = f"{mount}/{path}".split("/")
        if not (_VAULT_PATH.fullmatch(path) and _VAULT_PATH.fullmatch(mount)) or {".", ".."} & set(segments):
            raise InvalidInput.one("target", "Give the KV v2 path, e.g. apps/orders/coupang (letters, digits, /_.-).")
        return {"path": path, "mount": mount}, f"{mount}/{path}"
    raise InvalidInput.one("kind", "Choose one of: {kinds}.", kinds=", ".join(KINDS))


# ---------------------------------------------------------------- the service


class RolloutService:
    def __init__(
        self,
        ctx: Context,
        destinations: Destinations,
        *,
        backoff: Sequence[timedelta] = BACKOFF,
        poll_seconds: float = POLL_SECONDS,
        workers: int = WORKERS,
        instance: str | None = None,
    ):
        self.ctx, self.destinations, self.backoff = ctx, destinations, tuple(backoff)
        self.poll_seconds, self.workers = poll_seconds, workers
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.notifier: ProgressNotifier | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._start_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._refusals_lock = threading.Lock()
        self._refusals_noted: dict[tuple[str, str, str], datetime] = {}  # (vendor ID, consumer, how) -> last

    @property
    def keyring(self) -> Keyring:
        return self.ctx.keys.keyring

    # ------------------------------------------------------------ who may manage

    def _key(self, session: Session, vendor_id: str) -> Key:
        valid = rules.validate_vendor_id((vendor_id or "").strip().upper())
        key = self.ctx.keys.get(session, vendor_id=valid)
        if key is None:
            raise NotFound(
                "No key is registered for {vendor_id}. Register it with `/coupang-key add`.", vendor_id=valid
            )
        return key

    def _require_manager(self, actor: str, key: Key) -> None:
        if is_cli_actor(actor) or actor in self.ctx.settings.admins or actor == key.owner_id:
            return
        if key.owner_id:
            raise NotAllowed(
                "Only admins or its owner {owner} may manage the consumers of {vendor_id}.",
                owner=f"<@{key.owner_id}>",
                vendor_id=key.vendor_id,
            )
        raise NotAllowed("Only admins may manage the consumers of {vendor_id}.", vendor_id=key.vendor_id)

    def check_can_manage(self, actor: str, vendor_id: str) -> str:
        """Before opening a modal: the key exists and ``actor`` may manage its consumers (refusals audited)."""

        def work(session: Session) -> str:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            return key.vendor_id

        return self.ctx.audited(actor, "consumer.manage", _vendor(vendor_id), work)

    # ------------------------------------------------------------ consumers

    def add(
        self, actor: str, vendor_id: str, name: str, kind: str, target: str, *, vault_mount: str | None = None
    ) -> AddedConsumer:
        """A new consumer, its first delivery (the key's current generation) due now. Call :meth:`kick` after."""

        def work(session: Session) -> AddedConsumer:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            clean = (name or "").strip().lower()
            if not _NAME.fullmatch(clean):
                raise InvalidInput.one("name", "Name it with 1–40 lowercase letters, digits, - or _ (e.g. erp).")
            config, shown = parse_target(kind, target, vault_mount)
            exists = session.scalar(
                select(Consumer.id).where(Consumer.vendor_id == key.vendor_id, Consumer.name == clean)
            )
            if exists is not None:
                raise InvalidInput.one(
                    "name", "{vendor_id} already has a consumer named {name}.", vendor_id=key.vendor_id, name=clean
                )
            now = self.ctx.clock.now()
            secret = new_signing_secret()
            consumer = Consumer(
                vendor_id=key.vendor_id, name=clean, kind=kind, target=shown, created_by=actor, created_at=now
            )
            store.seal(self.keyring, consumer, config=config, signing_secret=secret)
            session.add(consumer)
            session.flush()
            store.queue(session, consumer=consumer, generation=key.generation, now=now)
            self.ctx.record(
                session, actor, "consumer.added", key.vendor_id, {"name": clean, "kind": kind, "target": shown}
            )
            return AddedConsumer(key.vendor_id, clean, kind, shown, secret)

        return self.ctx.audited(actor, "consumer.add", _vendor(vendor_id), work)

    def remove(self, actor: str, vendor_id: str, name: str) -> None:
        def work(session: Session) -> None:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            consumer = self._consumer(session, key.vendor_id, name)
            session.execute(
                RolloutDelivery.__table__.delete().where(RolloutDelivery.consumer_id == consumer.id)  # type: ignore[attr-defined]
            )
            session.delete(consumer)
            self.ctx.record(session, actor, "consumer.removed", key.vendor_id, {"name": consumer.name})

        self.ctx.audited(actor, "consumer.remove", _vendor(vendor_id), work)

    def push(self, actor: str, vendor_id: str, names: Sequence[str] = ()) -> list[str]:
        """Deliver the current generation again now to ``names`` (default: every consumer). Call :meth:`kick` after."""

        def work(session: Session) -> list[str]:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            if names:
                consumers = [self._consumer(session, key.vendor_id, n) for n in names]
            else:
                consumers = list(session.scalars(select(Consumer).where(Consumer.vendor_id == key.vendor_id)))
                if not consumers:
                    raise NotFound(
                        "{vendor_id} has no consumers. Add one with `consumers add`.", vendor_id=key.vendor_id
                    )
            now = self.ctx.clock.now()
            for consumer in consumers:
                store.queue(session, consumer=consumer, generation=key.generation, now=now)
            pushed = [c.name for c in consumers]
            self.ctx.record(
                session, actor, "consumer.pushed", key.vendor_id, {"names": pushed, "generation": key.generation}
            )
            return pushed

        return self.ctx.audited(actor, "consumer.push", _vendor(vendor_id), work)

    def consumers(self, vendor_id: str | None = None) -> list[ConsumerState]:
        """Every consumer (of one vendor ID) with its latest delivery."""
        with self.ctx.transaction() as session:
            if vendor_id is not None:
                vendor_id = self._key(session, vendor_id).vendor_id
            return self._states(session, vendor_id)

    def _states(self, session: Session, vendor_id: str | None, generation: int | None = None) -> list[ConsumerState]:
        latest = (
            select(RolloutDelivery.consumer_id, func.max(RolloutDelivery.generation).label("generation"))
            .group_by(RolloutDelivery.consumer_id)
            .subquery()
        )
        query = (
            select(Consumer, RolloutDelivery)
            .outerjoin(latest, latest.c.consumer_id == Consumer.id)
            .outerjoin(
                RolloutDelivery,
                and_(
                    RolloutDelivery.consumer_id == Consumer.id,
                    RolloutDelivery.generation == (generation if generation is not None else latest.c.generation),
                ),
            )
            .order_by(Consumer.vendor_id, Consumer.name)
        )
        if vendor_id is not None:
            query = query.where(Consumer.vendor_id == vendor_id)
        return [_state(c, d) for c, d in session.execute(query).all()]

    def counts(self, vendor_ids: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
        with self.ctx.transaction() as session:
            return store.consumer_counts(session, vendor_ids=vendor_ids)

    def delivery_states(self) -> dict[str, int]:
        with self.ctx.reading() as session:
            return store.delivery_states(session)

    def progress(self, vendor_id: str, generation: int) -> Progress:
        with self.ctx.transaction() as session:
            return Progress(vendor_id, generation, tuple(self._states(session, vendor_id, generation)))

    @staticmethod
    def _consumer(session: Session, vendor_id: str, name: str) -> Consumer:
        clean = (name or "").strip().lower()
        consumer = session.execute(
            select(Consumer).where(Consumer.vendor_id == vendor_id, Consumer.name == clean)
        ).scalar_one_or_none()
        if consumer is None:
            raise NotFound("{vendor_id} has no consumer named {name}.", vendor_id=vendor_id, name=clean or "(none)")
        return consumer

    # ------------------------------------------------------------ delivering

    def run_due(self, *, vendor_id: str | None = None, names: Sequence[str] = ()) -> int:
        """Attempt every delivery that is due now (optionally of some consumers), in parallel; returns attempts."""
        now = self.ctx.clock.now()
        with self.ctx.transaction() as session:
            query = (
                select(RolloutDelivery.id, RolloutDelivery.consumer_id)
                .join(Consumer, Consumer.id == RolloutDelivery.consumer_id)
                .join(Key, _current(RolloutDelivery))
                .where(
                    RolloutDelivery.state == PENDING,
                    RolloutDelivery.next_attempt_at <= now,
                    or_(Consumer.lease_until.is_(None), Consumer.lease_until < now),
                )
                .order_by(RolloutDelivery.next_attempt_at)
            )
            if vendor_id is not None:
                query = query.where(RolloutDelivery.vendor_id == vendor_id)
            if names:
                query = query.where(Consumer.name.in_([n.strip().lower() for n in names]))
            due = session.execute(query).all()
        if not due:
            return 0
        results = list(self._executor().map(lambda row: self._attempt(row[0], row[1]), due))
        for vendor, generation in sorted({r for r in results if r is not None}):
            self.report(vendor, generation)
        return sum(r is not None for r in results)

    def _attempt(self, delivery_id: int, consumer_id: int) -> tuple[str, int] | None:
        try:
            claim = self._claim(delivery_id, consumer_id)
            if claim is None:
                return None
            try:
                outcome = self.destinations.deliver(claim.attempt, self.ctx.clock.now())
            except Exception as exc:  # noqa: BLE001 - a bug or a library surprise: retried like a lost connection
                logger.exception("delivery to %s of %s crashed; retried later", claim.consumer, claim.vendor_id)
                outcome = Outcome(ok=False, retry=True, error=type(exc).__name__)
            self._settle(claim, outcome)
            return claim.vendor_id, claim.generation
        except Exception:
            logger.exception("rollout delivery %s could not be attempted", delivery_id)
            return None

    def _claim(self, delivery_id: int, consumer_id: int) -> _Claim | None:
        with self.ctx.transaction() as session:
            now = self.ctx.clock.now()
            leased = session.execute(
                update(Consumer)
                .where(Consumer.id == consumer_id, or_(Consumer.lease_until.is_(None), Consumer.lease_until < now))
                .values(lease_until=now + LEASE, lease_by=self.instance)
                .execution_options(synchronize_session=False)
            )
            if leased.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another process is delivering to this consumer
            delivery = session.get(RolloutDelivery, delivery_id)
            consumer = session.get(Consumer, consumer_id)
            key = self.ctx.keys.get(session, vendor_id=delivery.vendor_id) if delivery else None
            if (
                delivery is None
                or consumer is None
                or key is None
                or delivery.state != PENDING
                or delivery.next_attempt_at is None
                or delivery.next_attempt_at > now
                or delivery.generation != key.generation  # only the newest generation is ever written
            ):
                if consumer is not None:
                    consumer.lease_until = consumer.lease_by = None
                return None
            delivery.attempts += 1
            delivery.last_attempt_at = now
            access, secret = self.ctx.keys.secrets(key)
            signing_secret = store.signing_secret_of(self.keyring, consumer)
            data = {
                "vendor_id": key.vendor_id,
                "generation": key.generation,
                "access_key": access,
                "secret_key": secret,
                "issued_on": key.issued_on.isoformat() if key.issued_on else None,
                "expires_on": key.expires_on.isoformat(),
                "fingerprint": key.secret_fingerprint,
            }
            attempt = Delivery(
                consumer.kind, store.config_of(self.keyring, consumer), delivery.message_id, data, signing_secret
            )
            return _Claim(
                delivery.id, consumer.name, key.vendor_id, key.generation, attempt, (access, secret, signing_secret)
            )

    def _settle(self, claim: _Claim, outcome: Outcome) -> None:
        with self.ctx.transaction() as session:
            now = self.ctx.clock.now()
            # locked: a confirmation committed meanwhile must be read, not overwritten
            delivery = session.get(RolloutDelivery, claim.delivery_id, with_for_update=True)
            consumer = session.get(Consumer, delivery.consumer_id) if delivery else None
            if consumer is not None and consumer.lease_by == self.instance:
                consumer.lease_until = consumer.lease_by = None
            if delivery is None:
                return  # the consumer was removed meanwhile
            details: dict[str, Any] = {
                "name": claim.consumer,
                "generation": claim.generation,
                "attempt": delivery.attempts,
            }
            if outcome.ok:  # a consumer that proved this generation before a push stays confirmed
                delivery.state = CONFIRMED if delivery.confirmed_at else DELIVERED
                delivery.delivered_at, delivery.next_attempt_at, delivery.last_error = now, None, None
                action = "rollout.delivered"
            else:
                error = scrub(outcome.error or "failed", claim.secrets)
                retry_at = (
                    next_attempt(delivery.attempts, delivery.queued_at, now, self.backoff) if outcome.retry else None
                )
                delivery.last_error = error
                delivery.state, delivery.next_attempt_at = (PENDING, retry_at) if retry_at else (FAILED, None)
                details |= {"error": error, "next_attempt_at": retry_at.isoformat() if retry_at else None}
                action = "rollout.retrying" if retry_at else "rollout.failed"
            self.ctx.record(session, "keybot", action, claim.vendor_id, details, at=now)
        level = logging.INFO if outcome.ok else logging.WARNING
        logger.log(level, "%s %s to %s (generation %s)", action, claim.vendor_id, claim.consumer, claim.generation)

    def deliver_now(self, vendor_id: str, names: Sequence[str] = ()) -> list[ConsumerState]:
        """The command line's synchronous attempt: deliver what is due now, then the consumers' states."""
        self.run_due(vendor_id=vendor_id, names=names)
        wanted = {n.strip().lower() for n in names}
        return [c for c in self.consumers(vendor_id) if not wanted or c.name in wanted]

    # ------------------------------------------------------------ progress in Slack

    def report(self, vendor_id: str, generation: int) -> None:
        """Post or update the rollout message of this generation, if it has one (once per process at a time)."""
        if self.notifier is None:
            return
        with self._report_lock:
            try:
                self._report(vendor_id, generation)
            except Exception:  # Slack down: the next change updates it; deliveries are unaffected
                logger.exception("could not show the rollout progress of %s", vendor_id)

    def _report(self, vendor_id: str, generation: int) -> None:
        assert self.notifier is not None
        now = self.ctx.clock.now()
        with self.ctx.transaction() as session:
            message = session.execute(
                select(RolloutMessage).where(
                    RolloutMessage.vendor_id == vendor_id, RolloutMessage.generation == generation
                )
            ).scalar_one_or_none()
            if message is None:
                return
            message_id, channel, thread_ts, ts = message.id, message.channel_id, message.thread_ts, message.message_ts
            if ts is None:  # claim the one post (another process may be posting it right now)
                won = session.execute(
                    update(RolloutMessage)
                    .where(
                        RolloutMessage.id == message_id,
                        RolloutMessage.message_ts.is_(None),
                        or_(RolloutMessage.claimed_at.is_(None), RolloutMessage.claimed_at < now - LEASE),
                    )
                    .values(claimed_at=now)
                    .execution_options(synchronize_session=False)
                )
                if won.rowcount != 1:  # type: ignore[attr-defined]
                    return
        progress = self.progress(vendor_id, generation)
        if ts is not None:
            self.notifier.update(channel, ts, progress)
            return
        posted = self.notifier.post(channel, thread_ts, progress)
        with self.ctx.transaction() as session:
            session.execute(update(RolloutMessage).where(RolloutMessage.id == message_id).values(message_ts=posted))

    # ------------------------------------------------------------ proof of possession

    def confirm(self, body: bytes, headers: Mapping[str, str], *, address: str = "") -> ConfirmAnswer:
        """``POST /rollout/confirm`` (ROLLOUT.md "Proof of possession"): 200 confirmed, 400 malformed, 401 bad or
        stale signature **or** unknown vendor/consumer (one answer, so nobody lists consumers by asking), 409 not
        the current generation, 422 wrong proof.

        A request whose signature does not verify only reads: it writes nothing, so a stream of forged calls can
        neither fill the audit log nor queue behind writers; a warning is logged once per consumer per hour. A signed
        request that is refused (409, 422) writes at most one audit entry per consumer per hour
        (:meth:`_audit_refusal`). ``address``: the caller's, for both. Every refusal carries a ``reason`` for the
        metric ``coupang_keybot_rollout_confirm_refused_total``."""
        fields = _confirmation(body)
        if fields is None:
            return ConfirmAnswer(400, {"ok": False, "error": CONFIRM_FIELDS}, reason="malformed")
        vendor_id, generation, name, proof = fields
        with self.ctx.reading() as session:
            consumer = session.execute(
                select(Consumer).where(Consumer.vendor_id == vendor_id, Consumer.name == name)
            ).scalar_one_or_none()
            key = self.ctx.keys.get(session, vendor_id=vendor_id) if consumer is not None else None
            # an unknown consumer is checked too, against a throwaway secret: the timing says little either way
            secret = (
                _DECOY_SECRET if consumer is None or key is None else store.signing_secret_of(self.keyring, consumer)
            )
            try:
                Webhook(secret).verify(body, dict(headers), json_parse=False)
                verified = secret is not _DECOY_SECRET
            except (WebhookVerificationError, ValueError, TypeError):
                verified = False
            consumer_id = consumer.id if consumer is not None else None
            current = key.generation if key is not None else 0
            right_proof = (
                verified
                and key is not None
                and generation == current
                and hmac.compare_digest(
                    proof_for(self.ctx.keys.secrets(key)[1], vendor_id, generation).encode(), proof.lower().encode()
                )
            )
        if consumer_id is None:
            return ConfirmAnswer(401, UNVERIFIED, reason="unknown")
        if not verified:
            if self._first_this_hour(vendor_id, name, "log"):
                logger.warning(
                    "refused a confirmation for consumer %s of %s from %s: bad or stale signature (more this hour are "
                    "only counted in coupang_keybot_rollout_confirm_refused_total)",
                    name, vendor_id, address[:64] or "an unknown address",
                )  # fmt: skip
            return ConfirmAnswer(401, UNVERIFIED, reason="signature")
        if generation != current:
            reason = f"generation {current} is current, not {generation}"
            self._audit_refusal(vendor_id, name, 409, reason, address)
            return ConfirmAnswer(409, {"ok": False, "error": reason}, reason="generation")
        if not right_proof:
            reason = "the proof does not match the current Secret Key"
            self._audit_refusal(vendor_id, name, 422, reason, address)
            return ConfirmAnswer(422, {"ok": False, "error": reason}, reason="proof")
        with self.ctx.transaction() as session:
            key = self.ctx.keys.get(session, vendor_id=vendor_id)
            confirmed = session.get(Consumer, consumer_id)
            if key is None or confirmed is None or key.generation != generation:  # changed since the check above
                stale = {"ok": False, "error": "the key changed meanwhile: fetch the new one and prove that"}
                return ConfirmAnswer(409, stale, reason="generation")
            now = self.ctx.clock.now()
            delivery = _delivery(session, consumer_id, generation) or store.queue(
                session, consumer=confirmed, generation=generation, now=now
            )
            if delivery.state != CONFIRMED:
                delivery.state, delivery.confirmed_at = CONFIRMED, now
                delivery.next_attempt_at, delivery.last_error = None, None
                self.ctx.record(
                    session,
                    f"consumer:{name}",
                    "rollout.confirmed",
                    vendor_id,
                    {"name": name, "generation": generation},
                )
        self.report(vendor_id, generation)
        return ConfirmAnswer(200, {"ok": True, "state": CONFIRMED})

    def _first_this_hour(self, vendor_id: str, name: str, how: str) -> bool:
        """True once per consumer per hour for each ``how`` (this process's memory; bounded)."""
        now, key = self.ctx.clock.now(), (vendor_id, name, how)
        with self._refusals_lock:
            last = self._refusals_noted.get(key)
            if last is not None and last > now - REFUSALS_AUDITED_EVERY:
                return False
            self._refusals_noted[key] = now
            if len(self._refusals_noted) > 10_000:  # forget the oldest half: they are long past the hour
                for old in sorted(self._refusals_noted, key=self._refusals_noted.__getitem__)[:5_000]:
                    del self._refusals_noted[old]
            return True

    def _audit_refusal(self, vendor_id: str, name: str, status: int, reason: str, address: str) -> None:
        """One audit entry per consumer per hour for its refused (signed) confirmations, checked in this process and
        in the audit log, so several processes agree; the rest are only counted in the metric."""
        if not self._first_this_hour(vendor_id, name, "audit"):
            return
        actor, since = f"consumer:{name}", self.ctx.clock.now() - REFUSALS_AUDITED_EVERY
        with self.ctx.reading() as session:
            recent = session.scalar(
                select(func.max(AuditEvent.at)).where(
                    AuditEvent.vendor_id == vendor_id,
                    AuditEvent.action == "rollout.confirm.refused",
                    AuditEvent.actor == actor,
                    AuditEvent.at > since,
                )
            )
        if recent is not None:
            return
        details = {"name": name, "status": status, "reason": reason, "address": address[:64]}
        try:
            with self.ctx.transaction() as session:
                self.ctx.record(session, actor, "rollout.confirm.refused", vendor_id, details)
        except Unavailable:  # the refusal stands; the next one tries to record again
            with self._refusals_lock:
                self._refusals_noted.pop((vendor_id, name, "audit"), None)
            logger.warning("could not audit a refused confirmation of %s/%s: the database is busy", vendor_id, name)

    # ------------------------------------------------------------ the background worker

    def _executor(self) -> ThreadPoolExecutor:
        with self._start_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rollout")
            return self._pool

    def kick(self) -> None:
        """Deliver what is due now, in the background. The worker thread runs while deliveries are pending."""
        with self._start_lock:
            self._wake.set()
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="rollout-worker", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=15)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_due()
                wait = self._seconds_to_next()
            except Exception:  # the database is away: try again at the next poll
                logger.exception("rollout sweep failed")
                wait = self.poll_seconds
            if wait is None:  # nothing pending: end here (unless kicked meanwhile); the next kick starts anew
                with self._start_lock:
                    if not self._wake.is_set():
                        self._thread = None
                        return
                continue
            self._wake.wait(timeout=wait)
        with self._start_lock:
            self._thread = None

    def _seconds_to_next(self) -> float | None:
        """Seconds until the soonest pending attempt (at most the poll interval); None when nothing is pending."""
        with self.ctx.transaction() as session:
            soonest = session.scalar(
                select(func.min(RolloutDelivery.next_attempt_at))
                .join(Key, _current(RolloutDelivery))
                .where(RolloutDelivery.state == PENDING)
            )
        if soonest is None:
            return None
        seconds = (soonest - self.ctx.clock.now()).total_seconds()
        return min(self.poll_seconds, max(0.1, seconds))


def _delivery(session: Session, consumer_id: int, generation: int) -> RolloutDelivery | None:
    return session.execute(
        select(RolloutDelivery)
        .where(RolloutDelivery.consumer_id == consumer_id, RolloutDelivery.generation == generation)
        .with_for_update()
    ).scalar_one_or_none()


def _current(delivery: type[RolloutDelivery]) -> Any:
    """The join condition "this delivery is of the key's current generation": only those are ever attempted."""
    return and_(Key.vendor_id == delivery.vendor_id, Key.generation == delivery.generation)


_DECOY_SECRET = new_signing_secret()


def _vendor(raw: str) -> str | None:
    typed = (raw or "").strip().upper()
    return typed if rules.is_vendor_id(typed) else None


def _state(consumer: Consumer, delivery: RolloutDelivery | None) -> ConsumerState:
    return ConsumerState(
        vendor_id=consumer.vendor_id,
        name=consumer.name,
        kind=consumer.kind,
        target=consumer.target,
        state=delivery.state if delivery else None,
        generation=delivery.generation if delivery else None,
        attempts=delivery.attempts if delivery else 0,
        delivered_at=delivery.delivered_at if delivery else None,
        confirmed_at=delivery.confirmed_at if delivery else None,
        next_attempt_at=delivery.next_attempt_at if delivery and delivery.state == PENDING else None,
        last_error=delivery.last_error if delivery else None,
    )
