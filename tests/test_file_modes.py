"""Files the bot writes are readable by their owner only (0600), whatever the umask (INTERFACE.md "Files the bot
writes"): the SQLite database with its -wal and -shm, ``backup`` output, ``audit export --output`` files, ``.env``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.bootstrap import build_services
from storage.db import upgrade
from tests.conftest import ADMIN, _truncate, make_settings
from tests.factories import form
from tests.test_ops_backup import cli  # noqa: F401  (fixture)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The usual umask, which leaves new files readable by everyone (0644)."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_sqlite_database_and_its_wal_and_shm_are_0600(tmp_path):
    database = tmp_path / "data" / "keybot.db"
    services = build_services(make_settings(DATABASE_URL=f"sqlite:///{database}"))
    try:
        upgrade(services.engine)
        services.keys.register(ADMIN, form("A00012345"))
        with services.engine.connect():  # while a connection is open, the -wal and -shm files exist
            files = [database, database.with_name("keybot.db-wal"), database.with_name("keybot.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        services.engine.dispose()


def test_a_database_written_0644_before_is_narrowed_to_0600(tmp_path, cli):  # noqa: F811
    database = tmp_path / "keybot.db"
    sqlite3.connect(database).close()
    database.chmod(0o644)
    code, _, err = cli(f"sqlite:///{database}", "db", "upgrade")
    assert code == 0, err
    assert mode(database) == 0o600


def test_sqlite_backup_is_0600(tmp_path, cli):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'keybot.db'}"
    target = tmp_path / "backup.db"
    code, _, err = cli(url, "backup", str(target))
    assert code == 0, err
    assert mode(target) == 0o600
    assert sqlite3.connect(target).execute("SELECT count(*) FROM audit_head").fetchone() is not None


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_postgres_backup_is_0600(postgres_url, tmp_path, cli):  # noqa: F811
    services = build_services(make_settings(DATABASE_URL=postgres_url))
    _truncate(services.engine)
    services.engine.dispose()
    target = tmp_path / "keybot.dump"
    code, _, err = cli(postgres_url, "backup", str(target))
    assert code == 0, err
    assert mode(target) == 0o600 and target.stat().st_size > 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_audit_export_output_is_0600_and_holds_what_standard_output_would(tmp_path, cli, fmt):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'keybot.db'}"
    services = build_services(make_settings(DATABASE_URL=url))
    upgrade(services.engine)
    services.keys.register(ADMIN, form("A00012345"))
    services.engine.dispose()
    target = tmp_path / f"audit.{fmt}"
    target.write_text("old")
    target.chmod(0o644)  # an existing file is narrowed too
    code, out, err = cli(url, "audit", "export", "--format", fmt, "--output", str(target))
    assert code == 0, err
    assert str(target) in out and mode(target) == 0o600
    _, printed, _ = cli(url, "audit", "export", "--format", fmt)
    assert target.read_bytes().decode() == printed and "key.registered" in printed


def test_audit_export_to_a_missing_folder_says_so(tmp_path, cli):  # noqa: F811
    code, _, err = cli(f"sqlite:///{tmp_path / 'keybot.db'}", "audit", "export", "--output", str(tmp_path / "no" / "a"))
    assert code == 1 and "Cannot write" in err and "No such file or directory" in err


def test_init_writes_env_0600(tmp_path, cli):  # noqa: F811
    code, _, err = cli(f"sqlite:///{tmp_path / 'keybot.db'}", "init")
    assert code == 0, err
    assert mode(tmp_path / ".env") == 0o600
