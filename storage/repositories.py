"""Repositories: queries and writes that take a ``Session`` and never commit (the service owns the transaction).

:class:`KeyRepository` is the storage boundary for secrets: callers hand it plain Access and Secret Keys and
get plain values back from :meth:`KeyRepository.secrets`; only ciphertext reaches the database.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Integer, Row, Text, bindparam, cast, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.crypto import DecryptionError, Keyring, associated_data
from storage.models import (
    AppliedSubmission,
    Approver,
    AuditEvent,
    AuditHead,
    Consumer,
    Key,
    KeyGeneration,
    LinkEdit,
    ReissueRequest,
    ReminderDelivery,
    RolloutDelivery,
    UserLanguage,
)
from storage.rollout import HOLDS_KEY

ACCESS, SECRET = "access_key", "secret_key"


class KeyRepository:
    def __init__(self, keyring: Keyring):
        self.keyring = keyring

    def get(self, session: Session, *, vendor_id: str, for_update: bool = False) -> Key | None:
        query = select(Key).where(Key.vendor_id == vendor_id)
        return session.execute(query.with_for_update() if for_update else query).scalar_one_or_none()

    def all(self, session: Session, *, vendor_ids: Iterable[str] | None = None) -> Sequence[Key]:
        query = select(Key).order_by(Key.expires_on, Key.vendor_id)
        if vendor_ids is not None:
            query = query.where(Key.vendor_id.in_(list(vendor_ids)))
        return session.scalars(query).all()

    def add(self, session: Session, *, key: Key, access_key: str, secret_key: str) -> Key:
        """Insert a new key (generation already set on ``key``) with its secrets encrypted."""
        self._set_secrets(key, access_key, secret_key)
        session.add(key)
        self._record_generation(session, key)
        session.flush()
        return key

    def add_many(self, session: Session, rows: Sequence[dict[str, Any]], secrets: Sequence[tuple[str, str]]) -> None:
        """Insert new keys in one statement per table (bulk import): ``rows`` are ``keys`` columns without the
        secret ones, generation included; the mask, fingerprint and ciphertexts are filled in here."""
        for row, (access_key, secret_key) in zip(rows, secrets, strict=True):
            vendor_id, generation = row["vendor_id"], row["generation"]
            row["access_key_ct"] = self.keyring.encrypt(access_key, associated_data(vendor_id, generation, ACCESS))
            row["secret_key_ct"] = self.keyring.encrypt(secret_key, associated_data(vendor_id, generation, SECRET))
            row["access_key_mask"] = _mask(access_key)
            row["secret_fingerprint"] = self.keyring.fingerprint(secret_key)
        session.execute(insert(Key), rows)
        session.execute(
            insert(KeyGeneration),
            [
                {
                    "vendor_id": r["vendor_id"],
                    "generation": r["generation"],
                    "access_key_mask": r["access_key_mask"],
                    "secret_fingerprint": r["secret_fingerprint"],
                    "issued_on": r["issued_on"],
                    "expires_on": r["expires_on"],
                    "created_at": r["updated_at"],
                }
                for r in rows
            ],
        )

    @staticmethod
    def registered(session: Session, vendor_ids: Sequence[str]) -> set[str]:
        """Which of these vendor IDs have a key now (any number of IDs: asked in chunks)."""
        return {
            vendor_id
            for chunk in _chunks(vendor_ids)
            for vendor_id in session.scalars(select(Key.vendor_id).where(Key.vendor_id.in_(chunk)))
        }

    @staticmethod
    def next_generations(session: Session, vendor_ids: Sequence[str]) -> dict[str, int]:
        """:meth:`next_generation` of many vendor IDs at once (most were never registered: 1)."""
        last: dict[str, int] = {}
        for chunk in _chunks(vendor_ids):
            query = (
                select(KeyGeneration.vendor_id, func.max(KeyGeneration.generation))
                .where(KeyGeneration.vendor_id.in_(chunk))
                .group_by(KeyGeneration.vendor_id)
            )
            last.update({vendor_id: generation for vendor_id, generation in session.execute(query)})
        return {vendor_id: last.get(vendor_id, 0) + 1 for vendor_id in vendor_ids}

    def new_generation(
        self,
        session: Session,
        *,
        key: Key,
        access_key: str,
        secret_key: str,
        issued_on: date | None,
        expires_on: date,
        now: datetime,
    ) -> Key:
        """Replace the secrets with a reissued pair: generation + 1, the old one kept as a fingerprint only."""
        session.execute(
            select(KeyGeneration)
            .where(KeyGeneration.vendor_id == key.vendor_id, KeyGeneration.generation == key.generation)
            .with_for_update()
        ).scalar_one().retired_at = now
        key.generation += 1
        key.issued_on, key.expires_on, key.updated_at = issued_on, expires_on, now
        self._set_secrets(key, access_key, secret_key)
        self._record_generation(session, key)
        session.flush()
        return key

    def secrets(self, key: Key) -> tuple[str, str]:
        """The plain Access and Secret Key. Raises DecryptionError naming the vendor ID, never a value."""
        try:
            return (
                self.keyring.decrypt(key.access_key_ct, associated_data(key.vendor_id, key.generation, ACCESS)),
                self.keyring.decrypt(key.secret_key_ct, associated_data(key.vendor_id, key.generation, SECRET)),
            )
        except DecryptionError as exc:
            raise DecryptionError(f"could not decrypt the key of {key.vendor_id}: {exc}") from None

    def reencrypt(self, key: Key) -> bool:
        """Re-encrypt under the primary master key; False when it already is."""
        if self.keyring.is_current(key.access_key_ct) and self.keyring.is_current(key.secret_key_ct):
            return False
        access_key, secret_key = self.secrets(key)
        self._set_secrets(key, access_key, secret_key, keep_fingerprint=True)
        return True

    def delete(self, session: Session, *, key: Key, now: datetime) -> None:
        generation = session.execute(
            select(KeyGeneration).where(
                KeyGeneration.vendor_id == key.vendor_id, KeyGeneration.generation == key.generation
            )
        ).scalar_one_or_none()
        if generation is not None and generation.retired_at is None:
            generation.retired_at = now
        session.delete(key)
        session.flush()

    def next_generation(self, session: Session, *, vendor_id: str) -> int:
        """A re-registered vendor ID continues its generation count, so old reminders never match."""
        last = session.scalar(select(func.max(KeyGeneration.generation)).where(KeyGeneration.vendor_id == vendor_id))
        return (last or 0) + 1

    def _set_secrets(self, key: Key, access_key: str, secret_key: str, *, keep_fingerprint: bool = False) -> None:
        key.access_key_ct = self.keyring.encrypt(access_key, associated_data(key.vendor_id, key.generation, ACCESS))
        key.secret_key_ct = self.keyring.encrypt(secret_key, associated_data(key.vendor_id, key.generation, SECRET))
        key.access_key_mask = _mask(access_key)
        if not keep_fingerprint:
            key.secret_fingerprint = self.keyring.fingerprint(secret_key)

    @staticmethod
    def _record_generation(session: Session, key: Key) -> None:
        session.add(
            KeyGeneration(
                vendor_id=key.vendor_id,
                generation=key.generation,
                access_key_mask=key.access_key_mask,
                secret_fingerprint=key.secret_fingerprint,
                issued_on=key.issued_on,
                expires_on=key.expires_on,
                created_at=key.updated_at,
            )
        )


def _chunks(items: Sequence[str], size: int = 900) -> Iterable[Sequence[str]]:
    """Slices small enough for an ``IN (…)`` list on every database (SQLite caps bound parameters)."""
    return (items[start : start + size] for start in range(0, len(items), size))


def _mask(value: str) -> str:
    return f"{value[:4]}…{value[-4:]}" if len(value) > 8 else "…"


_STATUS_COLUMNS = tuple(
    Key.__table__.c[name]
    for name in (
        "vendor_id",
        "label",
        "access_key_mask",
        "secret_fingerprint",
        "generation",
        "issued_on",
        "expires_on",
        "owner_id",
        "channel_id",
        "access_deadline",
        "verify_outcome",
        "verified_at",
        "integration",
        "integrator_name",
        "company_name",
        "company_url",
        "ip_addresses",
    )
)  # what a status shows: no ciphertexts, no bookkeeping


# the IP list as the database stores it (JSON text): keys sharing a linking info share the text, so the caller
# decodes it once per distinct linking info instead of once per row (100,000 rows)
_STATUS_ROW_COLUMNS = (
    *(c for c in _STATUS_COLUMNS if c.name != "ip_addresses"),
    cast(Key.__table__.c.ip_addresses, Text).label("ip_addresses_json"),
)
# a plain named tuple: reading a field of SQLAlchemy's Row costs ~0.5 µs, 2 s over 100,000 statuses
StatusRow = namedtuple("StatusRow", [c.name for c in _STATUS_ROW_COLUMNS])  # type: ignore[misc]


def status_rows(session: Session, *, vendor_ids: Sequence[str] | None = None) -> Iterator[Any]:
    """The columns a status shows of every key (or the ones named), most urgent first, as :data:`StatusRow`
    tuples fetched in chunks (a server-side cursor on PostgreSQL): 100,000 keys are never all in memory, nor
    ORM objects. ``ip_addresses`` comes as ``ip_addresses_json``, undecoded."""
    query = select(*_STATUS_ROW_COLUMNS).order_by(Key.expires_on, Key.vendor_id).execution_options(yield_per=2_000)
    if vendor_ids is not None:
        query = query.where(Key.vendor_id.in_(vendor_ids))
    session.flush()  # this transaction's own changes first: the connection does not autoflush like the session
    make = StatusRow._make
    for row in session.connection().execute(query):  # core rows, without the ORM's result processing
        yield make(row)


def forget_reminders(session: Session, *, vendor_id: str, generation: int) -> int:
    """Deletes the reminder records of one key generation (its dates were corrected); returns how many."""
    result = session.execute(
        delete(ReminderDelivery).where(
            ReminderDelivery.vendor_id == vendor_id, ReminderDelivery.generation == generation
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


# The statements of ``/coupang-key status`` and App Home, built once: each request only binds its values, and
# SQLAlchemy's compiled cache does the rest (building a select() per call costs more than SQLite running it).
_keys, _edits, _requests = Key.__table__, LinkEdit.__table__, ReissueRequest.__table__
_consumers, _deliveries = Consumer.__table__, RolloutDelivery.__table__


def _count_keys(*conditions: Any) -> Any:
    return select(func.count()).select_from(_keys).where(*conditions).scalar_subquery()


# Which keys exist and when they expire changes only with an audited change (register, import, delete, new key,
# corrected expiry: each appends to the audit log in the transaction that makes the change), so the audit head's
# sequence number tells a caller whether counts it holds still hold. The page statement returns it, and counts
# only when it moved past ``:counted_at`` (a one-time filter: the scans do not run otherwise).
_HEAD_SEQ = select(AuditHead.__table__.c.seq).scalar_subquery()
_MOVED = _HEAD_SEQ.is_distinct_from(bindparam("counted_at"))
_TODAY: BindParameter[Any] = bindparam("today")
_BEFORE: BindParameter[Any] = bindparam("before")


def _counts(*, expiring: bool, skippable: bool) -> tuple[Any, ...]:
    """Labelled count subqueries: ``total``, ``in_window``, ``expired`` and, when ``expiring``, ``matching``
    (keys expiring on or before ``:before``). A bare count(*) (one pass over the smallest index) and short range
    counts over the expires_on index, for the keys near or past expiry are few."""
    moved = (_MOVED,) if skippable else ()
    counts = [
        _count_keys(*moved).label("total"),
        _count_keys(_keys.c.expires_on >= _TODAY, _keys.c.expires_on <= bindparam("window_end"), *moved).label(
            "in_window"
        ),
        _count_keys(_keys.c.expires_on < _TODAY, *moved).label("expired"),
    ]
    if expiring:
        counts.append(_count_keys(_keys.c.expires_on <= _BEFORE, *moved).label("matching"))
    return tuple(counts)


_EXPIRY_COUNTS = select(*_counts(expiring=False, skippable=False))
_EXPIRY_COUNTS_AND_EXPIRING = select(*_counts(expiring=True, skippable=False))


def _page_with_facts(expiring: bool) -> Any:
    """One page of keys by expiry with, per key, what its status line shows besides the key itself: edits this
    week, consumers (all, and holding the current generation) and its newest open reissue request. The facts
    are correlated subqueries over the page (an index probe each, for 15 rows), not joins over every key; the
    counts over every key ride along on each row (uncorrelated: computed once), saving a round trip."""
    inner = select(*_STATUS_COLUMNS).order_by(_keys.c.expires_on, _keys.c.vendor_id)
    if expiring:
        inner = inner.where(_keys.c.expires_on <= _BEFORE)
    # LIMIT and OFFSET as literals: as parameters, PostgreSQL's generic plan (below) would expect 10 % of the keys
    limit, offset = (bindparam(name, type_=Integer, literal_execute=True) for name in ("limit", "offset"))
    page = inner.limit(limit).offset(offset).subquery("page")
    edits = select(func.count()).where(_edits.c.vendor_id == page.c.vendor_id, _edits.c.edited_at > bindparam("since"))
    consumers = select(func.count()).where(_consumers.c.vendor_id == page.c.vendor_id)
    holding = (
        select(func.count())
        .select_from(_consumers.join(_deliveries, _deliveries.c.consumer_id == _consumers.c.id))
        .where(
            _consumers.c.vendor_id == page.c.vendor_id,
            _deliveries.c.generation == page.c.generation,
            _deliveries.c.state.in_(HOLDS_KEY),
        )
    )
    request_id = select(func.max(_requests.c.id)).where(  # what open_requests() keeps: the newest open one
        _requests.c.vendor_id == page.c.vendor_id,
        _requests.c.status.in_(("pending", "approved")),  # OPEN_STATUSES
        _requests.c.expires_at > bindparam("now"),  # an approved request expires too (24 h, SECURITY.md)
    )
    facts = select(
        page,
        edits.scalar_subquery().label("edits"),
        consumers.scalar_subquery().label("consumers"),
        holding.scalar_subquery().label("holding"),
        request_id.scalar_subquery().label("request_id"),
    ).subquery("facts")
    return (
        select(
            facts,
            _requests.c.status.label("request_status"),
            _requests.c.path.label("request_path"),
            _requests.c.requested_by.label("request_by"),
            _HEAD_SEQ.label("head_seq"),
            *_counts(expiring=expiring, skippable=True),
        )
        .select_from(facts.outerjoin(_requests, _requests.c.id == facts.c.request_id))
        .order_by(facts.c.expires_on, facts.c.vendor_id)
    )


_PAGE, _EXPIRING_PAGE = _page_with_facts(False), _page_with_facts(True)


@dataclass(frozen=True)
class KeyPage:
    """:func:`key_page_with_facts`: rows of :data:`_STATUS_COLUMNS` plus ``edits``, ``consumers``, ``holding``
    and the newest open reissue request (``request_id``, ``request_status``, ``request_path``, ``request_by``,
    all None without one); counts over every key, None when they are the ones counted at ``head_seq``."""

    rows: Sequence[Row[Any]]
    head_seq: int | None  # the audit head the counts belong to (None: nothing was ever audited)
    counts: tuple[int, int, int, int] | None  # healthy, in window, expired, matching (``expiring_before``, or all)


def key_page_with_facts(
    session: Session,
    *,
    offset: int,
    limit: int,
    today: date,
    window_end: date,
    edits_since: datetime,
    now: datetime,
    expiring_before: date | None = None,
    counted_at: int | None = None,
) -> KeyPage:
    """What ``/coupang-key status`` and App Home show, in one query (two when the page is empty): one page of
    keys by expiry with each key's facts and the phase counts over every key. Plain rows: no ORM objects, no
    ciphertexts. ``counted_at``: the audit head at which the caller counted with these dates; when the head is
    still there, the counts are not run again (``KeyPage.counts`` is None).

    Run it in ``storage.db.reading(…, generic_plans=True)``: psycopg prepares the statement, and left to itself
    PostgreSQL plans it again on every execution (0.5 ms, more than running it), as its generic plan's estimates
    look costlier than a custom plan's. The generic plan is the same walk over the indexes (bench/RESULTS.md,
    ack_latency)."""
    session.flush()  # this transaction's own changes first: the connection does not autoflush like the session
    connection = session.connection()
    params = {
        "offset": offset,
        "limit": limit,
        "today": today,
        "window_end": window_end,
        "before": expiring_before,
        "since": edits_since,
        "now": now,
        "counted_at": -1 if counted_at is None else counted_at,  # sequence numbers start at 1
    }
    page, counts = (_PAGE, _EXPIRY_COUNTS) if expiring_before is None else (_EXPIRING_PAGE, _EXPIRY_COUNTS_AND_EXPIRING)
    rows = connection.execute(page, params).all()
    if rows and counted_at is not None and rows[0].head_seq == counted_at:
        return KeyPage(rows, counted_at, None)
    # the counts are on every row of the page; an empty page (no keys, or past the last) asks for them alone
    counted = rows[0] if rows else connection.execute(counts, params).one()
    total, window, expired = counted.total, counted.in_window, counted.expired
    matching = total if expiring_before is None else counted.matching
    head_seq = rows[0].head_seq if rows else None  # an empty page's counts are not worth keeping
    return KeyPage(rows, head_seq, (total - window - expired, window, expired, matching))


def expiry_counts(session: Session, *, today: date, window_end: date) -> tuple[int, int, int]:
    """(healthy, in reissue window, expired) counted in the database, without loading any key."""
    session.flush()
    params = {"today": today, "window_end": window_end}
    total, window, expired = session.connection().execute(_EXPIRY_COUNTS, params).one()
    return total - window - expired, window, expired


# ---------------------------------------------------------------- linking-info edits


def edit_times(session: Session, *, vendor_id: str, since: datetime) -> list[datetime]:
    return list(
        session.scalars(
            select(LinkEdit.edited_at).where(LinkEdit.vendor_id == vendor_id, LinkEdit.edited_at > since)
        ).all()
    )


def edit_counts(session: Session, *, since: datetime, vendor_ids: Sequence[str] | None = None) -> dict[str, int]:
    query = select(LinkEdit.vendor_id, func.count()).where(LinkEdit.edited_at > since)
    if vendor_ids is not None:
        query = query.where(LinkEdit.vendor_id.in_(list(vendor_ids)))
    rows = session.execute(query.group_by(LinkEdit.vendor_id))
    return {vendor_id: count for vendor_id, count in rows}


def record_edit(session: Session, *, vendor_id: str, at: datetime, by: str) -> None:
    session.add(LinkEdit(vendor_id=vendor_id, edited_at=at, edited_by=by))
    session.flush()


# ---------------------------------------------------------------- reissue requests and approvers

OPEN_STATUSES = ("pending", "approved")


def open_requests(session: Session, *, now: datetime) -> dict[str, ReissueRequest]:
    """Pending or approved-but-not-completed requests not yet expired (24 h either way), by vendor ID."""
    rows = session.scalars(
        select(ReissueRequest).where(ReissueRequest.status.in_(OPEN_STATUSES)).order_by(ReissueRequest.id)
    ).all()
    return {r.vendor_id: r for r in rows if r.expires_at > now}


def approver_ids(session: Session) -> set[str]:
    return set(session.scalars(select(Approver.user_id)).all())


def add_approver(session: Session, *, user_id: str, by: str, at: datetime) -> bool:
    if session.get(Approver, user_id) is not None:
        return False
    session.add(Approver(user_id=user_id, added_by=by, added_at=at))
    session.flush()
    return True


def remove_approver(session: Session, *, user_id: str) -> bool:
    approver = session.get(Approver, user_id)
    if approver is None:
        return False
    session.delete(approver)
    session.flush()
    return True


# ---------------------------------------------------------------- languages


def user_language(session: Session, *, user_id: str) -> str | None:
    row = session.get(UserLanguage, user_id)
    return row.language if row else None


def set_user_language(session: Session, *, user_id: str, language: str, at: datetime) -> None:
    row = session.get(UserLanguage, user_id)
    if row is None:
        session.add(UserLanguage(user_id=user_id, language=language, chosen_at=at))
    else:
        row.language, row.chosen_at = language, at
    session.flush()


# ---------------------------------------------------------------- form submissions

SUBMISSION_MEMORY = timedelta(days=1)  # far longer than a replay lives: Bolt refuses requests signed 5 minutes ago


def record_submission(session: Session, *, view_id: str, view_hash: str, at: datetime) -> bool:
    """Record a form submission as applied in this transaction; False when it already was. A transaction
    recording the same one at the same time waits here for that one to commit (then False) or roll back."""
    session.execute(delete(AppliedSubmission).where(AppliedSubmission.applied_at < at - SUBMISSION_MEMORY))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(AppliedSubmission)
        .values(view_id=view_id, view_hash=view_hash, applied_at=at)
        .on_conflict_do_nothing()
        .returning(AppliedSubmission.view_id)
    )
    return session.execute(statement).first() is not None


# ---------------------------------------------------------------- audit reads


def audit_events(
    session: Session, *, vendor_id: str | None = None, limit: int | None = None, newest_first: bool = False
) -> Sequence[AuditEvent]:
    query = select(AuditEvent)
    if vendor_id is not None:
        query = query.where(AuditEvent.vendor_id == vendor_id)
    query = query.order_by(AuditEvent.seq.desc() if newest_first else AuditEvent.seq)
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()


def week_ago(now: datetime) -> datetime:
    return now - timedelta(days=7)
