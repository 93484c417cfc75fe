"""The tamper-evident audit chain.

Entry n stores ``prev_mac`` (entry n-1's MAC) and ``mac = HMAC-SHA256(k, prev_mac | canonical JSON of entry n)``,
where k is derived from a master key named by the entry's ``key_id``. Editing, deleting, inserting or reordering
an entry breaks the MAC or the link of that entry or the next one; ``verify`` names the first one broken.
Appends lock the single ``audit_head`` row, so concurrent writers queue instead of forking the chain.

A process whose master keys predate a rotation must not seal entries (or encrypt secrets) under the retired key:
when the newest entry is sealed with a key this process does not have, appends raise :class:`RetiredMasterKey`.
Every encrypting write appends in the same transaction, so its ciphertext rolls back with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.crypto import Keyring, derive
from storage.models import AuditEvent, AuditHead

GENESIS = "0" * 64
_HEAD_ID = 1
RETIRED = (
    "The audit log is sealed with a master key this process does not have: KEYBOT_MASTER_KEY was rotated after "
    "it started. Nothing was saved; restart with the new KEYBOT_MASTER_KEY."
)


class RetiredMasterKey(Exception):
    """This process's master keys are older than the one the audit chain is sealed with."""


def canonical(event: AuditEvent) -> bytes:
    body = {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "vendor_id": event.vendor_id,
        "details": event.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(master_key: bytes, prev_mac: str, event: AuditEvent) -> str:
    return hmac.new(
        derive(master_key, "audit"), prev_mac.encode() + b"|" + canonical(event), hashlib.sha256
    ).hexdigest()


class AuditLog:
    def __init__(self, keyring: Keyring):
        self._keyring = keyring

    def append(
        self,
        session: Session,
        *,
        at: datetime,
        actor: str,
        action: str,
        vendor_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        head = self.lock_head(session)
        if head is None:
            head = AuditHead(id=_HEAD_ID, seq=0, mac=GENESIS)
            session.add(head)
        elif self.retired_key_problem(session, head):
            raise RetiredMasterKey(RETIRED)
        event = AuditEvent(
            seq=head.seq + 1,
            at=at,
            actor=actor,
            action=action,
            vendor_id=vendor_id,
            details=json.dumps(dict(details or {}), sort_keys=True, ensure_ascii=False, default=str),
            key_id=self._keyring.primary_id.hex(),
            prev_mac=head.mac,
        )
        event.mac = _mac(self._keyring.primary, head.mac, event)
        head.seq, head.mac = event.seq, event.mac
        session.add(event)
        session.flush()
        return event

    def verify(self, session: Session) -> VerifyResult:
        """Walk the chain in order; the first entry whose link or MAC does not hold is named.

        The head is read first: on PostgreSQL each statement sees what was committed when it started, so entries
        appended while the walk runs may follow the head read, and they are checked like every other entry."""
        head = session.get(AuditHead, _HEAD_ID)
        head_seq, head_mac = (head.seq, head.mac) if head is not None else (None, None)
        prev_mac, expected_seq, count, mac_at_head = GENESIS, 1, 0, None
        for event in _in_order(session):
            problem = self._check(event, prev_mac, expected_seq)
            if problem:
                return VerifyResult(False, count, event.seq, problem)
            if event.seq == head_seq:
                mac_at_head = event.mac
            prev_mac, expected_seq, count = event.mac, event.seq + 1, count + 1
        if head_seq is not None and head_seq > 0 and mac_at_head != head_mac:
            return VerifyResult(False, count, expected_seq, "entries after this point are missing")
        return VerifyResult(True, count, None, None)

    def _check(self, event: AuditEvent, prev_mac: str, expected_seq: int) -> str | None:
        if event.seq != expected_seq:
            return "expected entry {expected} here: an entry was deleted, inserted or reordered"  # see describe
        if event.prev_mac != prev_mac:
            return "does not link to the entry before it"
        master = self._keyring.master_key(bytes.fromhex(event.key_id))
        if master is None:
            return "was written with a master key that is not configured"
        if not hmac.compare_digest(event.mac, _mac(master, prev_mac, event)):
            return "its content does not match its MAC (edited)"
        return None

    def rechain(self, session: Session) -> int:
        """Re-MAC every entry under the primary key (after a successful ``verify``, during key rotation)."""
        prev_mac, count = GENESIS, 0
        for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all():
            event.prev_mac, event.key_id = prev_mac, self._keyring.primary_id.hex()
            event.mac = _mac(self._keyring.primary, prev_mac, event)
            prev_mac, count = event.mac, count + 1
        head = session.get(AuditHead, _HEAD_ID)
        if head is not None:
            head.mac = prev_mac
        session.flush()
        return count

    def retired_key_problem(self, session: Session, head: AuditHead | None = None) -> str | None:
        """Why this process must not write (see the module docstring), or None.

        A head entry sealed with a key we have but not the first one is an older key (the chain is not rotated
        yet), which is fine; only a key we do not have means someone rotated after we started.
        """
        head = head or self.head(session)
        if head is None or head.seq == 0:
            return None
        sealed_with = session.scalar(select(AuditEvent.key_id).where(AuditEvent.seq == head.seq))
        return None if sealed_with is None or self._keyring.knows(sealed_with) else RETIRED

    @staticmethod
    def head(session: Session) -> AuditHead | None:
        return session.get(AuditHead, _HEAD_ID)

    @staticmethod
    def lock_head(session: Session) -> AuditHead | None:
        """The head row, locked until the transaction ends: appends and claims made under it are serialised."""
        return session.execute(select(AuditHead).where(AuditHead.id == _HEAD_ID).with_for_update()).scalar_one_or_none()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None
    reason: str | None

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} entries verified"
        reason = (self.reason or "").format(expected=self.checked + 1)  # entries verified so far, then this one
        return f"audit chain broken at entry {self.broken_seq}: {reason}"


def _in_order(session: Session) -> Iterator[AuditEvent]:
    # ordered by insertion id, not seq: a reordered or renumbered entry then shows up as a seq mismatch
    yield from session.execute(select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=500)).scalars()
