"""Engine, sessions, migrations, and a bound on every database wait.

SQLite: a transaction that writes starts with ``BEGIN IMMEDIATE`` (the recipe from SQLAlchemy's pysqlite docs), so
two writers queue on the database lock instead of failing half-way; a read-only transaction (:func:`reading`)
starts with a plain ``BEGIN``, so in WAL mode it never waits behind a writer. PostgreSQL: conditional updates and
row locks, with ``lock_timeout`` and ``statement_timeout`` set for each transaction.

Every wait is bounded: by default :data:`WAIT_SECONDS` for a lock and :data:`STATEMENT_SECONDS` for a
PostgreSQL statement (``serve``'s scheduler, the CLI), and inside
:func:`deadline` (each Slack request) by the time left until that deadline. A wait that runs out raises an error
for which :func:`is_busy` is true, and the transaction rolls back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
WAIT_SECONDS = 10.0  # the longest wait for a lock outside a Slack request
STATEMENT_SECONDS = 60.0  # PostgreSQL: the longest statement outside a Slack request (exports, migrations)
CONNECT_SECONDS = 5  # PostgreSQL connect timeout: an unreachable host fails instead of hanging
_READ_ONLY = "keybot_read_only"  # execution option marking a transaction that only reads
_GENERIC_PLANS = "keybot_generic_plans"  # execution option: PostgreSQL's plan_cache_mode = force_generic_plan
_deadline: ContextVar[float | None] = ContextVar("keybot_db_deadline", default=None)


class DeadlinePassed(Exception):
    """The deadline set by :func:`deadline` passed before this transaction could start."""


@contextmanager
def deadline(seconds: float, *, since: float | None = None) -> Iterator[None]:
    """Database waits started in this block (in this thread) end ``seconds`` after ``since`` at the latest: a
    :func:`time.monotonic` reading, such as when the request arrived; now when None. Once that has passed, the
    first wait fails at once (:class:`DeadlinePassed`)."""
    token = _deadline.set((time.monotonic() if since is None else since) + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def lift_deadline() -> None:
    """The answer has gone out: from here on this thread's waits have the ordinary bounds, not the deadline's."""
    _deadline.set(None)


def _wait_ms(longest: float = WAIT_SECONDS) -> int:
    """How long the transaction about to begin may wait, in milliseconds: ``longest``, or less near a deadline."""
    limit = _deadline.get()
    if limit is None:
        return int(longest * 1000)
    left = limit - time.monotonic()
    if left <= 0:
        raise DeadlinePassed("the database did not answer in time")
    return max(1, int(min(left, longest) * 1000))


def is_busy(error: BaseException) -> bool:
    """True for a wait that ran out: SQLite's lock, PostgreSQL's lock or statement timeout, the pool, a deadline."""
    if isinstance(error, DeadlinePassed | sa_exc.TimeoutError):
        return True
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) in ("55P03", "57014"):  # lock_not_available, query_canceled
        return True
    return isinstance(error, sa_exc.OperationalError) and any(
        word in str(orig) for word in ("database is locked", "database is busy")
    )


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    kwargs.setdefault("hide_parameters", True)  # SQL errors never carry values (ciphertexts, user text) into logs
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        postgres = parsed.get_backend_name() == "postgresql"
        if postgres and "connect_timeout" not in parsed.query:
            kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_SECONDS})
        engine = create_engine(url, **kwargs)
        if postgres:

            @event.listens_for(engine, "begin")
            def _bound_waits(connection: Any) -> None:
                lock, statement = _wait_ms(), _wait_ms(STATEMENT_SECONDS)
                sql = f"SET LOCAL lock_timeout = {lock}; SET LOCAL statement_timeout = {statement}"
                if connection.get_execution_options().get(_GENERIC_PLANS):
                    sql += "; SET LOCAL plan_cache_mode = force_generic_plan"  # same round trip
                connection.exec_driver_sql(sql)

        return engine

    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        _owner_only(Path(parsed.database))
    engine = create_engine(url, connect_args={"timeout": WAIT_SECONDS, "check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event below emit BEGIN
        cursor = dbapi_connection.cursor()
        if parsed.database and parsed.database != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {_wait_ms()}")
        read_only = connection.get_execution_options().get(_READ_ONLY)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _owner_only(database: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (it would use 0644, and gives its -wal and -shm files the
    database's mode); an existing database, -wal or -shm with a wider mode is narrowed, when it is ours to change."""
    with suppress(OSError):  # a folder, or no write access: SQLite fails on it next, with its own error
        os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        with suppress(OSError):  # missing, or another user's file: leave it
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def reading(sessions: sessionmaker[Session], *, generic_plans: bool = False) -> Iterator[Session]:
    """A transaction for reads only: on SQLite it starts deferred, so it never waits behind a writer.
    ``generic_plans``: PostgreSQL runs its prepared statements with their generic plan, not planning each anew."""
    with sessions() as session, session.begin():
        session.connection(execution_options={_READ_ONLY: True, _GENERIC_PLANS: generic_plans})
        yield session


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def ping(engine: Engine, timeout: float = 1.0) -> bool:
    """True when the database answers ``SELECT 1`` within ``timeout`` seconds; never takes longer than that.

    The query runs in a daemon thread, so even a connection attempt that hangs is abandoned on time.
    """
    answered = threading.Event()

    def attempt() -> None:
        # any failure means "not answering"
        with suppress(Exception), deadline(timeout), engine.connect() as connection:
            connection.execution_options(**{_READ_ONLY: True}).execute(text("SELECT 1"))
            answered.set()

    threading.Thread(target=attempt, name="db-ping", daemon=True).start()
    return answered.wait(timeout)
