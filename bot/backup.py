"""``coupang-keybot backup FILE``: a consistent copy of the database while the bot keeps running.

Copying the SQLite file misses whatever still sits in the write-ahead log (half the audit log, in one report), so
SQLite goes through its online backup API: one step under a read snapshot, which writers in WAL mode do not wait
for. PostgreSQL goes through ``pg_dump -Fc`` (restore with ``pg_restore``). The copy is written next to FILE and
renamed over it only when complete, so a failed backup never leaves a truncated file behind. The copy holds every
(encrypted) key and the audit log, so it is readable by its owner only (0600), whatever the umask.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy import Engine


class BackupError(Exception):
    """The backup could not be made; the message says why and what to do. ``usage``: a setup problem (exit 2)."""

    def __init__(self, message: str, *, usage: bool = False):
        super().__init__(message)
        self.usage = usage


def backup(engine: Engine, target: Path) -> None:
    url = engine.url
    if not target.parent.is_dir():
        raise BackupError(f"Cannot write {target}: the folder {target.parent} does not exist.")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        # created 0600 here, whatever the umask: SQLite and pg_dump write into it and keep its mode
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                raise BackupError("An in-memory SQLite database cannot be backed up.", usage=True)
            _sqlite(Path(url.database), partial)
        elif url.get_backend_name() == "postgresql":
            _pg_dump(engine, partial)
        else:
            raise BackupError(f"backup knows SQLite and PostgreSQL, not {url.get_backend_name()}.", usage=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _sqlite(source: Path, partial: Path) -> None:
    if not source.exists():
        raise BackupError(f"The database file {source} does not exist.", usage=True)
    try:
        with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)  # pages=-1: the whole database in one step, from one consistent snapshot
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy {source}: {exc}.") from None


def _pg_dump(engine: Engine, partial: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError(
            "pg_dump is not installed, so a PostgreSQL database cannot be backed up from here: install the "
            "PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client) or run "
            "`pg_dump -Fc` where they are.",
            usage=True,
        )
    url = engine.url
    # libpq's URL without the driver name; the password goes by environment, never on the command line
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = {**os.environ, **({"PGPASSWORD": str(url.password)} if url.password else {})}
    done = subprocess.run(  # noqa: S603 - fixed program, arguments are ours
        [pg_dump, "-Fc", "--no-owner", f"--file={partial}", f"--dbname={conninfo}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise BackupError(f"pg_dump failed: {detail}")
