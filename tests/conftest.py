"""Shared fixtures: settings, a real database on SQLite and PostgreSQL, services.

PostgreSQL tests use ``DATABASE_URL_TEST`` or 127.0.0.1:5432 (user postgres). Each pytest process gets its own
throwaway database. When it cannot be reached the tests skip locally but fail under CI (``CI`` set).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bot.bootstrap import Services, build_services
from bot.config import Settings, load_settings
from storage.db import make_engine, upgrade
from storage.models import Base
from tests.clock import RUN_LEAD, START, Clock, process_travel
from tests.slack_harness import fake_slack, slack  # noqa: F401  (end-to-end fixtures)

PG_ADMIN_URL = os.environ.get("DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MASTER_KEY = base64.b64encode(b"k" * 32).decode()
SECOND_KEY = base64.b64encode(b"s" * 32).decode()
ADMIN, OWNER, USER = "UADMIN001", "UOWNER001", "UUSER0001"
_PROCESS_TRAVEL = pytest.StashKey[time_machine.travel]()


def pytest_configure(config: pytest.Config) -> None:
    """KEYBOT_TEST_NOW / KEYBOT_TEST_SHIFT_DAYS move the whole process (see tests/clock.py, make test-clocks)."""
    traveller = process_travel(lead=RUN_LEAD)
    if traveller is not None:
        traveller.start()
        config.stash[_PROCESS_TRAVEL] = traveller


def pytest_unconfigure(config: pytest.Config) -> None:
    traveller = config.stash.get(_PROCESS_TRAVEL, None)
    if traveller is not None:
        traveller.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    if _PROCESS_TRAVEL in config.stash:
        return f"clock: the process starts at {datetime.now(UTC).isoformat(timespec='seconds')} (time-machine)"
    return None


@pytest.fixture(autouse=True)
def _each_test_starts_at_the_run_clock() -> Iterator[None]:
    """Under KEYBOT_TEST_NOW / KEYBOT_TEST_SHIFT_DAYS every test starts at that instant; a pin inside wins."""
    traveller = process_travel()
    if traveller is None:
        yield
        return
    with traveller:
        yield


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The suite's clock: pinned at START (Friday 2026-11-27 10:00 in Seoul), the process travelled there too."""
    pinned = Clock(START).travel()
    yield pinned
    pinned.stop()


def make_settings(**env: str) -> Settings:
    base = {"KEYBOT_MASTER_KEY": MASTER_KEY, "KEYBOT_ADMINS": ADMIN, "KEYBOT_CHANNEL": "CREMIND01"}
    base.update(env)
    return load_settings(base)


def scratch_postgres() -> Iterator[str]:
    """A new empty PostgreSQL database's URL, dropped afterwards; unreachable skips locally and fails under CI."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"keybot_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI requires it: .ci/run starts it)")
        pytest.skip(message)
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    for url in scratch_postgres():
        migrated = make_engine(url)
        upgrade(migrated)
        migrated.dispose()
        yield url


def _truncate(engine: Engine) -> None:
    with engine.begin() as connection:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A migrated, empty database: one SQLite file per test, or the shared PostgreSQL one truncated."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keybot.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    _truncate(engine)
    engine.dispose()
    return url


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(DATABASE_URL=db_url)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    yield built
    built.engine.dispose()
