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
import ipaddress
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

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
    is_public_address,
    verify_signature,
)
from bot.rules import InvalidInput, KeybotError, Msg
from bot.services.base import Context, NotAllowed, NotFound, SubmissionId, Unavailable, is_cli_actor
from storage import rollout as store
from storage.crypto import Keyring
from storage.models import AuditEvent, Consumer, ConsumerProposal, Key, RolloutDelivery, RolloutMessage
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
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# the two-person rule (ROLLOUT.md "Who may send a key where")
PROPOSAL_TTL = timedelta(hours=24)
ADD, RETARGET = "add", "retarget"
PROPOSED, APPROVED, DENIED, EXPIRED, VOID = "pending", "approved", "denied", "expired", "void"
SYSTEM_ACTOR = "keybot"
SLACK, CLI = "slack", "cli"  # Consumer.source


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
    channel_id: str | None = None  # added from Slack without a proposal (approval none): announced here

    def __repr__(self) -> str:
        return f"AddedConsumer(vendor_id={self.vendor_id!r}, name={self.name!r}, kind={self.kind!r})"


@dataclass(frozen=True)
class ConsumerChange:
    """A consumer retargeted or removed from Slack, announced in the key's channel (``channel_id``)."""

    vendor_id: str
    name: str
    action: str  # "retargeted" or "removed"
    actor: str
    kind: str
    target: str
    channel_id: str | None


@dataclass(frozen=True)
class ProposalInfo:
    """A consumer proposal, as its message in the key's channel shows it. No secret, no query string."""

    id: int
    vendor_id: str
    name: str
    action: str  # ADD or RETARGET
    kind: str
    target: str
    status: str
    proposed_by: str
    proposed_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    channel_id: str | None
    message_ts: str | None


@dataclass(frozen=True, repr=False)
class Proposed:
    """A new proposal; ``signing_secret`` (a new consumer's) is shown to the proposer, once, privately."""

    proposal: ProposalInfo
    signing_secret: str | None
    replaced: tuple[ProposalInfo, ...]  # older pending proposals for the same consumer, void now

    def __repr__(self) -> str:
        return f"Proposed(proposal={self.proposal.id})"


class ProposalNotifier(Protocol):
    def refresh(self, info: ProposalInfo) -> None: ...


class Approvers(Protocol):
    """Who may approve (the reissue approvers: ``bot.services.reissue.ReissueService``), resolved at click time."""

    def is_approver(self, user_id: str, session: Session | None = None) -> bool: ...

    def approver_mentions(self, session: Session | None = None) -> list[str]: ...


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
        """Failed consumers, those waiting to retry after an error, and confirmed ones a re-push failed on."""
        return [c for c in self.consumers if c.state == FAILED or (c.state in (PENDING, CONFIRMED) and c.last_error)]


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
    """Shows a rollout's progress: ``post`` a reply in ``thread_ts`` (returns its ts) or ``update`` it in place;
    ``update`` returns the ts of a new message when the old one is gone (deleted in Slack) and it posted again."""

    def post(self, channel: str, thread_ts: str | None, progress: Progress) -> str: ...

    def update(self, channel: str, ts: str, progress: Progress, *, thread_ts: str | None = None) -> str | None: ...


@dataclass
class _Claim:
    delivery_id: int
    consumer: str
    vendor_id: str
    generation: int
    attempt: Delivery  # its repr names the kind and message only
    secrets: tuple[str, ...] = field(repr=False)  # scrubbed from any error text; never in a repr or traceback
    refused: str | None = None  # a Slack-added target KEYBOT_CONSUMER_ALLOW no longer allows: failed, not sent


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
        return _webhook_target(value)
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


def _webhook_target(value: str) -> tuple[dict[str, Any], str]:
    """Every check a URL needs before it is stored, so a delivery never trips over it later (issue 20 item 10)."""
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInput.one(
            "target",
            "Write the URL without spaces or other special characters: percent-encode them (a space is %20).",
        )
    try:
        url = urlsplit(value)
        host = url.hostname or ""
        port = url.port  # a port that is not a number, or above 65535, raises here
    except ValueError:
        raise InvalidInput.one("target", "That is not a URL: give https://host/path.") from None
    if url.username is not None or url.password is not None or "@" in url.netloc:
        raise InvalidInput.one("target", "Put no user:password in the URL: receivers check the signature.")
    if url.scheme not in ("https", "http") or not host:
        raise InvalidInput.one("target", "Give the webhook as https://host/path.")
    if not _valid_host(host):
        raise InvalidInput.one("target", "{host} is not a valid host name or IP address.", host=rules.quote(host))
    if port == 0:
        raise InvalidInput.one("target", "Give a port between 1 and 65535, or none.")
    if url.scheme == "http" and not is_loopback(host):
        raise InvalidInput.one("target", "Webhooks must use https:// (plain http:// only to 127.0.0.1).")
    return {"url": value}, f"{url.scheme}://{url.netloc}{url.path or '/'}"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253 or re.fullmatch(r"[0-9.]+", host):
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def _allow_subject(kind: str, config: Mapping[str, Any]) -> str:
    """What a ``KEYBOT_CONSUMER_ALLOW`` pattern is matched against: the URL without query, the ID, mount/path."""
    if kind == WEBHOOK:
        url = urlsplit(str(config["url"]))
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{(url.hostname or '').lower()}{port}{url.path or '/'}"
    if kind == AWS_SECRET:
        return str(config["secret_id"])
    if kind == AWS_PARAMETER:
        return str(config["parameter"])
    return f"{config.get('mount', 'secret')}/{config['path']}"


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def check_allowed(kind: str, config: Mapping[str, Any], allow: Sequence[tuple[str, str]] | None) -> None:
    """A target added from Slack must match ``KEYBOT_CONSUMER_ALLOW`` (``allow``), or the default rules when it is
    unset (ROLLOUT.md "Where to"); InvalidInput("target") says why not. Webhook addresses are checked again after
    DNS resolution, at every delivery (``Delivery.public_only``)."""
    subject = _allow_subject(kind, config)
    if allow is not None:
        if not any(k == kind and _glob(pattern).fullmatch(subject) for k, pattern in allow):
            raise InvalidInput.one(
                "target",
                "{target} is not allowed for consumers added from Slack (KEYBOT_CONSUMER_ALLOW). Ask an admin "
                "to add it on the server with `coupang-keybot consumers add`, or to allow it.",
                target=rules.quote(subject),
            )
        return
    if kind == WEBHOOK:
        url = urlsplit(str(config["url"]))
        host = (url.hostname or "").lower()
        literal = _ip_or_none(host)
        if (
            url.scheme != "https"
            or host == "localhost"
            or host.endswith(".localhost")
            or (literal is not None and not is_public_address(literal))
        ):
            raise InvalidInput.one(
                "target",
                "From Slack, webhooks go only to public https:// hosts (no localhost, private or internal "
                "addresses). An admin can add others on the server with `coupang-keybot consumers add`.",
            )
    elif kind == AWS_SECRET and not subject.startswith("coupang/"):
        raise InvalidInput.one("target", "From Slack, AWS secrets must be named coupang/…, e.g. coupang/orders.")
    elif kind == AWS_PARAMETER and not subject.startswith("/coupang/"):
        raise InvalidInput.one("target", "From Slack, SSM parameters must be named /coupang/…, e.g. /coupang/orders.")
    elif kind == VAULT and not (config.get("mount") == "secret" and str(config["path"]).startswith("coupang/")):
        raise InvalidInput.one(
            "target", "From Slack, Vault paths must be under coupang/ at the mount secret, e.g. coupang/orders."
        )


def _ip_or_none(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _digest(kind: str, config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps([kind, config], sort_keys=True).encode()).hexdigest()


def _clean_name(name: str) -> str:
    clean = (name or "").strip().lower()
    if not _NAME.fullmatch(clean):
        raise InvalidInput.one("name", "Name it with 1–40 lowercase letters, digits, - or _ (e.g. erp).")
    return clean


def _changed(session: Session, statement: Any) -> int:
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount


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
        self.approvers: Approvers | None = None  # the reissue approvers (bootstrap wires them); None: nobody
        self.proposal_notifier: ProposalNotifier | None = None  # shows a proposal's state (the Slack layer's)
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

    def _key(self, session: Session, vendor_id: str, *, for_update: bool = False) -> Key:
        valid = rules.validate_vendor_id((vendor_id or "").strip().upper())
        key = self.ctx.keys.get(session, vendor_id=valid, for_update=for_update)
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

    def _require_direct(self, actor: str) -> None:
        """Adding or retargeting without a proposal: the command line, or an admin when there is no approval step."""
        if is_cli_actor(actor):
            return
        if self.ctx.settings.reissue_approval:
            raise NotAllowed(
                "From Slack, a consumer is proposed and an approver other than you approves it: nothing is "
                "delivered before."
            )
        if actor not in self.ctx.settings.admins:
            admins = ", ".join(f"<@{a}>" for a in sorted(self.ctx.settings.admins)) or Msg("nobody (set KEYBOT_ADMINS)")
            raise NotAllowed(
                "With no approval step (KEYBOT_REISSUE_APPROVAL=none), only admins may add consumers or change "
                "their targets. Admins: {admins}.",
                admins=admins,
            )

    def _channel(self, key: Key) -> str | None:
        return key.channel_id or self.ctx.settings.channel

    def check_can_manage(self, actor: str, vendor_id: str, *, adding: bool = False) -> str:
        """Before opening a modal: the key exists and ``actor`` may manage its consumers (refusals audited).
        ``adding`` (add or change a target): with no approval step, admins only."""

        def work(session: Session) -> str:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            if adding and not self.ctx.settings.reissue_approval:
                self._require_direct(actor)
            return key.vendor_id

        return self.ctx.audited(actor, "consumer.manage", _vendor(vendor_id), work)

    def can_see_targets(self, actor: str, vendor_id: str) -> bool:
        """Targets and last errors are for admins, the key's owner and approvers (checked now, groups too)."""
        if is_cli_actor(actor) or actor in self.ctx.settings.admins:
            return True
        with self.ctx.reading() as session:
            key = self.ctx.keys.get(session, vendor_id=(vendor_id or "").strip().upper())
            if key is not None and actor == key.owner_id:
                return True
            return self.approvers is not None and self.approvers.is_approver(actor, session)

    # ------------------------------------------------------------ consumers

    def add(
        self, actor: str, vendor_id: str, name: str, kind: str, target: str, *, vault_mount: str | None = None
    ) -> AddedConsumer:
        """A new consumer at once, its first delivery (the key's current generation) due now; call :meth:`kick`
        after. Only the command line, or an admin when there is no approval step (then announced and held to
        ``KEYBOT_CONSUMER_ALLOW``); from Slack otherwise a consumer is proposed (:meth:`propose`)."""

        def work(session: Session) -> AddedConsumer:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            self._require_direct(actor)
            clean = _clean_name(name)
            config, shown = parse_target(kind, target, vault_mount)
            from_slack = not is_cli_actor(actor)
            if from_slack:
                check_allowed(kind, config, self.ctx.settings.consumer_allow)
            self._refuse_taken(session, key.vendor_id, clean)
            secret = new_signing_secret()
            self._create(
                session, key, clean, kind, config, shown, secret, by=actor, source=SLACK if from_slack else CLI
            )
            details = {"name": clean, "kind": kind, "target": shown, **({"approval": "none"} if from_slack else {})}
            self.ctx.record(session, actor, "consumer.added", key.vendor_id, details)
            channel = self._channel(key) if from_slack else None
            return AddedConsumer(key.vendor_id, clean, kind, shown, secret, channel)

        return self.ctx.audited(actor, "consumer.add", _vendor(vendor_id), work)

    def retarget(
        self, actor: str, vendor_id: str, name: str, kind: str, target: str, *, vault_mount: str | None = None
    ) -> ConsumerChange:
        """A consumer's new target at once (same permissions as :meth:`add`); it gets the current generation."""

        def work(session: Session) -> ConsumerChange:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            self._require_direct(actor)
            consumer = self._consumer(session, key.vendor_id, name)
            config, shown = parse_target(kind, target, vault_mount)
            from_slack = not is_cli_actor(actor)
            if from_slack:
                check_allowed(kind, config, self.ctx.settings.consumer_allow)
            self._point(session, key, consumer, kind, config, shown, source=SLACK if from_slack else CLI)
            details = {"name": consumer.name, "kind": kind, "target": shown}
            self.ctx.record(
                session,
                actor,
                "consumer.retargeted",
                key.vendor_id,
                details | ({"approval": "none"} if from_slack else {}),
            )
            return ConsumerChange(
                key.vendor_id,
                consumer.name,
                "retargeted",
                actor,
                kind,
                shown,
                self._channel(key) if from_slack else None,
            )

        return self.ctx.audited(actor, "consumer.retarget", _vendor(vendor_id), work)

    def _refuse_taken(self, session: Session, vendor_id: str, name: str) -> None:
        exists = session.scalar(select(Consumer.id).where(Consumer.vendor_id == vendor_id, Consumer.name == name))
        if exists is not None:
            raise InvalidInput.one(
                "name", "{vendor_id} already has a consumer named {name}.", vendor_id=vendor_id, name=name
            )

    def _create(
        self,
        session: Session,
        key: Key,
        name: str,
        kind: str,
        config: dict[str, Any],
        shown: str,
        secret: str,
        *,
        by: str,
        source: str,
    ) -> Consumer:
        now = self.ctx.clock.now()
        consumer = Consumer(
            vendor_id=key.vendor_id, name=name, kind=kind, target=shown, created_by=by, created_at=now, source=source
        )
        store.seal(self.keyring, consumer, config=config, signing_secret=secret)
        session.add(consumer)
        session.flush()
        store.queue(session, consumer=consumer, generation=key.generation, now=now)
        return consumer

    def _point(
        self,
        session: Session,
        key: Key,
        consumer: Consumer,
        kind: str,
        config: dict[str, Any],
        shown: str,
        *,
        source: str,
    ) -> None:
        """Point ``consumer`` somewhere else (its signing secret stays); the current generation goes there now."""
        secret = store.signing_secret_of(self.keyring, consumer)
        consumer.kind, consumer.target, consumer.source = kind, shown, source
        store.seal(self.keyring, consumer, config=config, signing_secret=secret)
        store.queue(session, consumer=consumer, generation=key.generation, now=self.ctx.clock.now())

    def remove(self, actor: str, vendor_id: str, name: str) -> ConsumerChange:
        """Needs no second person (the consumer then receives nothing); Slack announces it in the key's channel."""

        def work(session: Session) -> ConsumerChange:
            key = self._key(session, vendor_id)
            self._require_manager(actor, key)
            consumer = self._consumer(session, key.vendor_id, name)
            change = ConsumerChange(
                key.vendor_id, consumer.name, "removed", actor, consumer.kind, consumer.target, self._channel(key)
            )
            session.execute(
                RolloutDelivery.__table__.delete().where(RolloutDelivery.consumer_id == consumer.id)  # type: ignore[attr-defined]
            )
            session.delete(consumer)
            self.ctx.record(session, actor, "consumer.removed", key.vendor_id, {"name": consumer.name})
            return change

        return self.ctx.audited(actor, "consumer.remove", _vendor(vendor_id), work)

    # ------------------------------------------------------------ proposals (the two-person rule)

    def propose(
        self,
        actor: str,
        vendor_id: str,
        name: str,
        kind: str,
        target: str,
        *,
        vault_mount: str | None = None,
        retarget: bool = False,
        submission: SubmissionId | None = None,
    ) -> Proposed:
        """A consumer added (or, ``retarget``, pointed elsewhere) from Slack: nothing changes until an approver
        other than ``actor`` approves. A newer proposal for the same consumer voids an older pending one."""

        def work(session: Session) -> Proposed:
            self.ctx.apply_once(session, submission)
            key = self._key(session, vendor_id, for_update=True)  # two proposals for one key: one at a time
            self._require_manager(actor, key)
            if not self.ctx.settings.reissue_approval:
                self._require_direct(actor)  # admins add directly then; others are told so
                raise NotAllowed("With no approval step, admins add consumers directly.")
            clean = _clean_name(name)
            config, shown = parse_target(kind, target, vault_mount)
            check_allowed(kind, config, self.ctx.settings.consumer_allow)
            base = None
            if retarget:
                consumer = self._consumer(session, key.vendor_id, clean)
                base = _digest(consumer.kind, store.config_of(self.keyring, consumer))
                if base == _digest(kind, config):
                    raise InvalidInput.one("target", "{name} already goes there.", name=clean)
            else:
                self._refuse_taken(session, key.vendor_id, clean)
            channel = self._channel(key)
            if channel is None:
                raise NotAllowed(
                    "{vendor_id} has no channel, so no approver would see the proposal: set the key's channel "
                    "(`/coupang-key edit {vendor_id}`) or KEYBOT_CHANNEL.",
                    vendor_id=key.vendor_id,
                )
            if not [m for m in self._mentions(session) if m != f"<@{actor}>"]:
                raise NotAllowed(
                    "Nobody but you may approve, so nobody could approve this consumer. Ask an admin to add an "
                    "approver (`/coupang-key approvers add @user`)."
                )
            now = self.ctx.clock.now()
            replaced = self._void_pending(session, actor, key.vendor_id, clean, now)
            secret = None if retarget else new_signing_secret()
            row = ConsumerProposal(
                vendor_id=key.vendor_id,
                name=clean,
                action=RETARGET if retarget else ADD,
                kind=kind,
                target=shown,
                config_ct=b"",
                base_digest=base,
                status=PROPOSED,
                proposed_by=actor,
                proposed_at=now,
                expires_at=now + PROPOSAL_TTL,
                channel_id=channel,
            )
            session.add(row)
            session.flush()
            store.seal_proposal(self.keyring, row, config=config, signing_secret=secret)
            self.ctx.record(
                session,
                actor,
                "consumer.proposed",
                key.vendor_id,
                {"proposal_id": row.id, "name": clean, "action": row.action, "kind": kind, "target": shown},
            )
            return Proposed(_proposal_info(row), secret, tuple(replaced))

        return self.ctx.audited(actor, "consumer.propose", _vendor(vendor_id), work)

    def _mentions(self, session: Session) -> list[str]:
        return self.approvers.approver_mentions(session) if self.approvers is not None else []

    def approver_mentions(self) -> list[str]:
        with self.ctx.reading() as session:
            return self._mentions(session)

    def _void_pending(
        self, session: Session, actor: str, vendor_id: str, name: str, now: datetime
    ) -> list[ProposalInfo]:
        voided = []
        pending = session.scalars(
            select(ConsumerProposal).where(
                ConsumerProposal.vendor_id == vendor_id,
                ConsumerProposal.name == name,
                ConsumerProposal.status == PROPOSED,
            )
        ).all()
        for row in pending:
            if _changed(
                session,
                update(ConsumerProposal)
                .where(ConsumerProposal.id == row.id, ConsumerProposal.status == PROPOSED)
                .values(status=VOID, decided_at=now)
                .execution_options(synchronize_session=False),
            ):
                session.refresh(row)
                self.ctx.record(
                    session, actor, "consumer.proposal.voided", vendor_id, {"proposal_id": row.id, "name": name}, at=now
                )
                voided.append(_proposal_info(row))
        return voided

    def proposal(self, proposal_id: int) -> ProposalInfo:
        with self.ctx.transaction() as session:
            return _proposal_info(self._proposal(session, proposal_id))

    def set_proposal_message(self, proposal_id: int, *, channel_id: str, ts: str) -> None:
        with self.ctx.transaction() as session:
            session.execute(
                update(ConsumerProposal)
                .where(ConsumerProposal.id == proposal_id)
                .values(channel_id=channel_id, message_ts=ts)
            )

    def approve_proposal(self, actor: str, proposal_id: int) -> ProposalInfo:
        """An approver other than the proposer approves: the consumer is created (or retargeted) and gets the
        current generation in the background. A proposal whose consumer changed meanwhile is void."""
        stale = False

        def work(session: Session) -> None:
            nonlocal stale
            row = self._proposal(session, proposal_id)
            self._check_decider(session, row, actor)
            key = self.ctx.keys.get(session, vendor_id=row.vendor_id, for_update=True)
            existing = session.execute(
                select(Consumer).where(Consumer.vendor_id == row.vendor_id, Consumer.name == row.name)
            ).scalar_one_or_none()
            if (
                key is None
                or (row.action == ADD and existing is not None)
                or (
                    row.action == RETARGET
                    and (
                        existing is None
                        or _digest(existing.kind, store.config_of(self.keyring, existing)) != row.base_digest
                    )
                )
            ):
                stale = True
                return
            now = self.ctx.clock.now()
            if not _changed(
                session,
                update(ConsumerProposal)
                .where(
                    ConsumerProposal.id == proposal_id,
                    ConsumerProposal.status == PROPOSED,
                    ConsumerProposal.expires_at > now,
                )
                .values(status=APPROVED, decided_by=actor, decided_at=now)
                .execution_options(synchronize_session=False),
            ):
                session.refresh(row)
                raise self._closed(row)  # another click won, or it expired this instant
            config, secret = store.proposal_config_of(self.keyring, row), store.proposal_secret_of(self.keyring, row)
            if row.action == ADD:
                assert secret is not None
                self._create(
                    session, key, row.name, row.kind, config, row.target, secret, by=row.proposed_by, source=SLACK
                )
            else:
                assert existing is not None
                self._point(session, key, existing, row.kind, config, row.target, source=SLACK)
            details = {
                "proposal_id": row.id,
                "name": row.name,
                "kind": row.kind,
                "target": row.target,
                "proposed_by": row.proposed_by,
            }
            self.ctx.record(
                session, actor, "consumer.proposal.approved", row.vendor_id, details | {"action": row.action}
            )
            self.ctx.record(
                session,
                actor,
                "consumer.added" if row.action == ADD else "consumer.retargeted",
                row.vendor_id,
                details | {"approved_by": actor},
            )

        self.ctx.audited(actor, "consumer.approve", self._proposal_vendor(proposal_id), work)
        if stale:
            self._void(actor, proposal_id)
        self.kick()  # after the commit, in the background
        return self.proposal(proposal_id)

    def check_can_decide(self, actor: str, proposal_id: int) -> ProposalInfo:
        """Before showing a proposal's target to decide it: the same checks as the decision (refusals audited)."""

        def work(session: Session) -> ProposalInfo:
            row = self._proposal(session, proposal_id)
            self._check_decider(session, row, actor)
            return _proposal_info(row)

        return self.ctx.audited(actor, "consumer.approve", self._proposal_vendor(proposal_id), work)

    def deny_proposal(self, actor: str, proposal_id: int) -> ProposalInfo:
        def work(session: Session) -> None:
            row = self._proposal(session, proposal_id)
            self._check_decider(session, row, actor)
            now = self.ctx.clock.now()
            if not _changed(
                session,
                update(ConsumerProposal)
                .where(ConsumerProposal.id == proposal_id, ConsumerProposal.status == PROPOSED)
                .values(status=DENIED, decided_by=actor, decided_at=now)
                .execution_options(synchronize_session=False),
            ):
                session.refresh(row)
                raise self._closed(row)
            details = {"proposal_id": row.id, "name": row.name, "action": row.action, "proposed_by": row.proposed_by}
            self.ctx.record(session, actor, "consumer.proposal.denied", row.vendor_id, details)

        self.ctx.audited(actor, "consumer.deny", self._proposal_vendor(proposal_id), work)
        return self.proposal(proposal_id)

    def expire_proposals(self, *, now: datetime | None = None, ids: Sequence[int] | None = None) -> list[ProposalInfo]:
        """Close pending proposals older than 24 hours (each audited); returns them so messages can show it."""
        now = now or self.ctx.clock.now()
        expired = []
        with self.ctx.transaction() as session:
            query = select(ConsumerProposal).where(
                ConsumerProposal.status == PROPOSED, ConsumerProposal.expires_at <= now
            )
            if ids is not None:
                query = query.where(ConsumerProposal.id.in_(list(ids)))
            for row in session.scalars(query.order_by(ConsumerProposal.id)).all():
                if not _changed(
                    session,
                    update(ConsumerProposal)
                    .where(ConsumerProposal.id == row.id, ConsumerProposal.status == PROPOSED)
                    .values(status=EXPIRED, decided_at=now)
                    .execution_options(synchronize_session=False),
                ):
                    continue
                session.refresh(row)
                details = {"proposal_id": row.id, "name": row.name, "action": row.action}
                self.ctx.record(session, SYSTEM_ACTOR, "consumer.proposal.expired", row.vendor_id, details, at=now)
                expired.append(_proposal_info(row))
        return expired

    def _check_decider(self, session: Session, row: ConsumerProposal, actor: str) -> None:
        if self.approvers is None or not self.approvers.is_approver(actor, session):
            mentions = self._mentions(session)
            raise NotAllowed(
                "Only approvers may decide consumer proposals. Approvers: {approvers}.",
                approvers=", ".join(mentions) if mentions else Msg("nobody yet (set KEYBOT_APPROVERS)"),
            )
        if actor == row.proposed_by:
            raise NotAllowed("You proposed this consumer, so someone else has to decide it.")
        if row.status != PROPOSED:
            raise self._closed(row)

    def _void(self, actor: str, proposal_id: int) -> None:
        """The consumer or key changed since the proposal: close it (audited) and refuse the click (audited)."""
        with self.ctx.transaction() as session:
            row = self._proposal(session, proposal_id)
            if _changed(
                session,
                update(ConsumerProposal)
                .where(ConsumerProposal.id == proposal_id, ConsumerProposal.status == PROPOSED)
                .values(status=VOID, decided_at=self.ctx.clock.now())
                .execution_options(synchronize_session=False),
            ):
                details = {"proposal_id": proposal_id, "name": row.name}
                self.ctx.record(session, actor, "consumer.proposal.voided", row.vendor_id, details)
            vendor_id = row.vendor_id
        error = NotAllowed(
            "This proposal is void: the consumer or the key changed after it was made. Propose it again if it is "
            "still needed."
        )
        raise self.ctx.refuse(actor, "consumer.approve", vendor_id, error)

    @staticmethod
    def _closed(row: ConsumerProposal) -> KeybotError:
        if row.status == APPROVED:
            return NotAllowed("Already approved by {user}.", user=f"<@{row.decided_by}>")
        if row.status == DENIED:
            return NotAllowed("Already denied by {user}.", user=f"<@{row.decided_by}>")
        if row.status == EXPIRED:
            return NotAllowed("This proposal expired after 24 hours undecided. Propose it again if still needed.")
        if row.status == VOID:
            return NotAllowed(
                "This proposal is void: the consumer or the key changed after it was made, or a newer proposal "
                "replaced it."
            )
        return NotAllowed("This proposal is {status}.", status=row.status)

    @staticmethod
    def _proposal(session: Session, proposal_id: int) -> ConsumerProposal:
        row = session.get(ConsumerProposal, proposal_id)
        if row is None:
            raise NotFound("There is no consumer proposal #{id}.", id=proposal_id)
        return row

    def _proposal_vendor(self, proposal_id: int) -> str | None:
        with self.ctx.reading() as session:
            return session.scalar(select(ConsumerProposal.vendor_id).where(ConsumerProposal.id == proposal_id))

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
                outcome = (
                    Outcome(ok=False, error=claim.refused)
                    if claim.refused
                    else self.destinations.deliver(claim.attempt)
                )
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
            config = store.config_of(self.keyring, consumer)
            allow = self.ctx.settings.consumer_allow
            refused = None
            if consumer.source == SLACK:  # held to the allow list at every delivery, not only when it was added
                try:
                    check_allowed(consumer.kind, config, allow)
                except InvalidInput as error:
                    refused = str(error)
            public_only = consumer.source == SLACK and allow is None and consumer.kind == WEBHOOK
            attempt = Delivery(consumer.kind, config, delivery.message_id, data, signing_secret, public_only)
            return _Claim(
                delivery.id,
                consumer.name,
                key.vendor_id,
                key.generation,
                attempt,
                (access, secret, signing_secret),
                refused,
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
                if delivery.confirmed_at is not None:
                    # the consumer proved it holds this generation: a failed re-push does not take that back, and
                    # is not retried by itself (Push again tries once more); the error is kept for people to see
                    delivery.state, delivery.next_attempt_at = CONFIRMED, None
                    details |= {"error": error, "next_attempt_at": None, "state": CONFIRMED}
                    action = "rollout.failed"
                else:
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
            posted = self.notifier.update(channel, ts, progress, thread_ts=thread_ts)
            if posted is None:
                return
        else:
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
            # the signature's timestamp is held to the real wall clock, never to the bot's (moved, in the demo)
            try:
                signed = verify_signature(secret, body, dict(headers), now=self.destinations.wall_clock())
            except (ValueError, TypeError):
                signed = False
            verified = signed and secret is not _DECOY_SECRET
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


def _proposal_info(row: ConsumerProposal) -> ProposalInfo:
    return ProposalInfo(
        id=row.id,
        vendor_id=row.vendor_id,
        name=row.name,
        action=row.action,
        kind=row.kind,
        target=row.target,
        status=row.status,
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        expires_at=row.expires_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        channel_id=row.channel_id,
        message_ts=row.message_ts,
    )
