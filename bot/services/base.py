"""What every service shares: the clock, the transaction helper and refusals that are audited."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.rules import InvalidInput, KeybotError, local_date
from storage.audit import AuditLog
from storage.repositories import KeyRepository


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class NotAllowed(KeybotError):
    """The person may not do this; the message says who can."""


class NotFound(KeybotError):
    pass


@dataclass
class Context:
    """The wiring every service receives."""

    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    keys: KeyRepository
    audit: AuditLog
    # called after a new key generation is committed: wakes the background rollout (bot/services/rollout.py)
    wake_rollout: Callable[[], None] = lambda: None

    def today(self, now: datetime | None = None) -> Any:
        return local_date(now or self.clock.now(), self.settings.timezone)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    def record(
        self,
        session: Session,
        actor: str,
        action: str,
        vendor_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> None:
        self.audit.append(
            session,
            at=at or self.clock.now(),
            actor=actor,
            action=action,
            vendor_id=vendor_id,
            details=details,
        )

    def refuse(self, actor: str, action: str, vendor_id: str | None, error: KeybotError) -> KeybotError:
        """Audit a refused attempt in its own transaction (the attempt itself changed nothing)."""
        details: dict[str, Any] = {"reason": str(error)}
        if isinstance(error, InvalidInput):
            # field names and our own messages only: what was typed could be a secret
            details = {"fields": sorted(error.errors)}
        with self.transaction() as session:
            self.record(session, actor, f"{action}.refused", vendor_id, details)
        return error

    def audited(self, actor: str, action: str, vendor_id: str | None, work: Callable[[Session], Any]) -> Any:
        """Run ``work`` in one transaction; a refusal rolls it back and is audited on its own."""
        try:
            with self.transaction() as session:
                return work(session)
        except KeybotError as error:
            raise self.refuse(actor, action, vendor_id, error) from None
