"""What every service shares: the clock, the transaction helpers and refusals that are audited."""

from __future__ import annotations

import getpass
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.i18n import N_
from bot.rules import InvalidInput, KeybotError, local_date
from storage import db
from storage import repositories as repo
from storage.audit import AuditLog, RetiredMasterKey
from storage.repositories import KeyRepository

logger = logging.getLogger(__name__)

BUSY = N_("The database is busy — nothing was saved, try again.")
# storage.audit.RETIRED, in words the reader's language has (storage does not translate)
RETIRED_MASTER_KEY = N_(
    "The audit log is sealed with a master key this process does not have: KEYBOT_MASTER_KEY was rotated after "
    "it started. Nothing was saved; restart with the new KEYBOT_MASTER_KEY."
)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class NotAllowed(KeybotError):
    """The person may not do this; the message says who can."""


class NotFound(KeybotError):
    pass


def instance_name() -> str:
    """Who holds a claim: host, process and a random tag (unique per service object)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def cli_actor() -> str:
    """The audit actor of a command-line action: ``cli:<OS user>``, so the log says who ran it."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"[:64]


def is_cli_actor(actor: str) -> bool:
    """A command-line action (``cli`` before the OS user was recorded)."""
    return actor == "cli" or actor.startswith("cli:")


class MaybePosted(Exception):
    """A post whose answer was lost (timeout, dropped connection, 5xx): Slack may have posted it or not.

    Raised by the Slack layer; the caller looks for the message in the channel's history before posting again.
    """


class Unavailable(KeybotError):
    """The bot cannot do this right now (database busy, master key retired): nothing changed, nothing is audited."""


@dataclass(frozen=True)
class SubmissionId:
    """One submission of a form: Slack's view id and hash. Sent again unchanged, it is the same submission."""

    view_id: str
    view_hash: str


class AlreadyApplied(Exception):
    """This submission changed something before; this time nothing was done. Not a :class:`KeybotError`: the
    person did nothing wrong, so nothing is refused or audited."""


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
        """One transaction that may write; it rolls back on any error."""
        with _unavailable_as_refusal(), self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self, *, generic_plans: bool = False) -> Iterator[Session]:
        """One transaction that only reads (on SQLite it never queues behind a writer); ``generic_plans``: see
        :func:`storage.db.reading`."""
        with _unavailable_as_refusal(), db.reading(self.sessions, generic_plans=generic_plans) as session:
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

    def apply_once(self, session: Session, submission: SubmissionId | None) -> None:
        """Record ``submission`` in the transaction that applies it, so it applies once: a replay raises
        :class:`AlreadyApplied` and its transaction rolls back. A refused submission rolls back its record too,
        so the corrected form can be sent again."""
        if submission is None:
            return
        if not repo.record_submission(
            session, view_id=submission.view_id, view_hash=submission.view_hash, at=self.clock.now()
        ):
            logger.info("form %s (hash %s) was applied already: not again", submission.view_id, submission.view_hash)
            raise AlreadyApplied(submission.view_id)

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
        except Unavailable:
            raise
        except KeybotError as error:
            raise self.refuse(actor, action, vendor_id, error) from None


@contextmanager
def _unavailable_as_refusal() -> Iterator[None]:
    """A wait that ran out, or a retired master key, becomes a sentence for the person (the work rolled back)."""
    try:
        yield
    except RetiredMasterKey as error:
        logger.error("%s", error)
        raise Unavailable(RETIRED_MASTER_KEY) from None
    except Exception as error:
        if not db.is_busy(error):
            raise
        logger.warning("database busy, nothing saved (%s)", type(getattr(error, "orig", None) or error).__name__)
        raise Unavailable(BUSY) from None
