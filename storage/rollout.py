"""Consumers and their deliveries (ROLLOUT.md): encryption of their configuration, queueing, counts.

A consumer's configuration (URL, secret ID, path) and signing secret are AES-GCM ciphertexts whose associated
data names the vendor ID, the consumer and the field, like the keys' (``storage/crypto.py``). Functions take a
``Session`` and never commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.orm import Session

from storage.crypto import Keyring, associated_data
from storage.models import Consumer, ConsumerProposal, Key, RolloutDelivery, RolloutMessage

PENDING, DELIVERED, CONFIRMED, FAILED = "pending", "delivered", "confirmed", "failed"
HOLDS_KEY = (DELIVERED, CONFIRMED)
CONFIG, SIGNING_SECRET = "config", "signing_secret"


def _aad(consumer: Consumer, field: str) -> bytes:
    # generation 0: a consumer's secrets outlive key generations; the consumer's name is part of the field
    return associated_data(consumer.vendor_id, 0, f"consumer:{consumer.name}:{field}")


def seal(keyring: Keyring, consumer: Consumer, *, config: dict[str, Any], signing_secret: str) -> None:
    consumer.config_ct = keyring.encrypt(json.dumps(config, sort_keys=True), _aad(consumer, CONFIG))
    consumer.signing_secret_ct = keyring.encrypt(signing_secret, _aad(consumer, SIGNING_SECRET))


def config_of(keyring: Keyring, consumer: Consumer) -> dict[str, Any]:
    value = json.loads(keyring.decrypt(consumer.config_ct, _aad(consumer, CONFIG)))
    assert isinstance(value, dict)
    return value


def signing_secret_of(keyring: Keyring, consumer: Consumer) -> str:
    return keyring.decrypt(consumer.signing_secret_ct, _aad(consumer, SIGNING_SECRET))


def _proposal_aad(proposal: ConsumerProposal, field: str) -> bytes:
    # bound to the proposal's id too (seal after the flush): another proposal's ciphertext does not decrypt here
    return associated_data(proposal.vendor_id, 0, f"proposal:{proposal.id}:{proposal.name}:{field}")


def seal_proposal(
    keyring: Keyring, proposal: ConsumerProposal, *, config: dict[str, Any], signing_secret: str | None
) -> None:
    proposal.config_ct = keyring.encrypt(json.dumps(config, sort_keys=True), _proposal_aad(proposal, CONFIG))
    proposal.signing_secret_ct = (
        keyring.encrypt(signing_secret, _proposal_aad(proposal, SIGNING_SECRET)) if signing_secret else None
    )


def proposal_config_of(keyring: Keyring, proposal: ConsumerProposal) -> dict[str, Any]:
    value = json.loads(keyring.decrypt(proposal.config_ct, _proposal_aad(proposal, CONFIG)))
    assert isinstance(value, dict)
    return value


def proposal_secret_of(keyring: Keyring, proposal: ConsumerProposal) -> str | None:
    if proposal.signing_secret_ct is None:
        return None
    return keyring.decrypt(proposal.signing_secret_ct, _proposal_aad(proposal, SIGNING_SECRET))


def reencrypt_consumers(session: Session, keyring: Keyring) -> int:
    """``master-key rotate``: every consumer's ciphertexts under the first master key; returns how many changed."""
    changed = 0
    for consumer in session.scalars(select(Consumer)).all():
        if keyring.is_current(consumer.config_ct) and keyring.is_current(consumer.signing_secret_ct):
            continue
        seal(
            keyring, consumer, config=config_of(keyring, consumer), signing_secret=signing_secret_of(keyring, consumer)
        )
        changed += 1
    for proposal in session.scalars(select(ConsumerProposal).where(ConsumerProposal.status == "pending")).all():
        secret_ct = proposal.signing_secret_ct
        if keyring.is_current(proposal.config_ct) and (secret_ct is None or keyring.is_current(secret_ct)):
            continue
        config, secret = proposal_config_of(keyring, proposal), proposal_secret_of(keyring, proposal)
        seal_proposal(keyring, proposal, config=config, signing_secret=secret)
        changed += 1
    return changed


def queue(session: Session, *, consumer: Consumer, generation: int, now: datetime) -> RolloutDelivery:
    """The delivery of ``generation`` to ``consumer``, due now; an existing one is re-armed, keeping its id.

    Older deliveries still pending are replaced: only the newest generation is ever written.
    """
    session.execute(
        delete(RolloutDelivery).where(
            RolloutDelivery.consumer_id == consumer.id,
            RolloutDelivery.generation < generation,
            RolloutDelivery.state == PENDING,
        )
    )
    row = session.execute(
        select(RolloutDelivery).where(
            RolloutDelivery.consumer_id == consumer.id, RolloutDelivery.generation == generation
        )
    ).scalar_one_or_none()
    if row is None:
        row = RolloutDelivery(
            consumer_id=consumer.id,
            vendor_id=consumer.vendor_id,
            generation=generation,
            message_id=str(uuid.uuid4()),
            attempts=0,
        )
        session.add(row)
    row.state, row.queued_at, row.next_attempt_at, row.last_error = PENDING, now, now, None
    session.flush()
    return row


def queue_generation(
    session: Session, *, vendor_id: str, generation: int, now: datetime, thread: tuple[str, str | None] | None
) -> int:
    """A new key was stored: every consumer of ``vendor_id`` gets it. ``thread``: where to show progress."""
    consumers = session.scalars(select(Consumer).where(Consumer.vendor_id == vendor_id)).all()
    for consumer in consumers:
        queue(session, consumer=consumer, generation=generation, now=now)
    if consumers and thread is not None:
        session.add(
            RolloutMessage(vendor_id=vendor_id, generation=generation, channel_id=thread[0], thread_ts=thread[1])
        )
        session.flush()
    return len(consumers)


def consumer_counts(session: Session, *, vendor_ids: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
    """vendor ID → (consumers holding the key's current generation, consumers), for keys that have any."""
    holds = case((RolloutDelivery.state.in_(HOLDS_KEY), 1), else_=0)
    query = (
        select(Consumer.vendor_id, func.sum(holds), func.count(Consumer.id))
        .join(Key, Key.vendor_id == Consumer.vendor_id)
        .outerjoin(
            RolloutDelivery,
            and_(RolloutDelivery.consumer_id == Consumer.id, RolloutDelivery.generation == Key.generation),
        )
        .group_by(Consumer.vendor_id)
    )
    if vendor_ids is not None:
        query = query.where(Consumer.vendor_id.in_(list(vendor_ids)))
    return {vendor_id: (int(ok or 0), int(total)) for vendor_id, ok, total in session.execute(query)}


def delivery_states(session: Session) -> dict[str, int]:
    """How many deliveries of each key's current generation are in each state (for
    ``coupang_keybot_rollout_deliveries{state}``): what is left of older rollouts does not count."""
    rows = session.execute(
        select(RolloutDelivery.state, func.count())
        .join(Key, and_(Key.vendor_id == RolloutDelivery.vendor_id, Key.generation == RolloutDelivery.generation))
        .group_by(RolloutDelivery.state)
    )
    return {state: int(count) for state, count in rows}


def forget_consumers(session: Session, *, vendor_id: str) -> list[str]:
    """A deleted key takes its consumers with it: a key registered again under the vendor ID reaches no system
    until consumers are added again (by two people from Slack). Returns the names removed."""
    consumers = session.scalars(select(Consumer).where(Consumer.vendor_id == vendor_id).order_by(Consumer.name)).all()
    session.execute(  # a proposal made for the deleted key is not approved for whatever key comes next
        update(ConsumerProposal)
        .where(ConsumerProposal.vendor_id == vendor_id, ConsumerProposal.status == "pending")
        .values(status="void")
    )
    session.execute(delete(RolloutDelivery).where(RolloutDelivery.vendor_id == vendor_id))
    session.execute(delete(RolloutMessage).where(RolloutMessage.vendor_id == vendor_id))
    for consumer in consumers:
        session.delete(consumer)
    return [consumer.name for consumer in consumers]
