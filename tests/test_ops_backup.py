"""``backup FILE`` and the README's restore drill, performed while a serve-like writer keeps writing."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from bot.bootstrap import build_services
from bot.cli import main
from tests.conftest import ADMIN, MASTER_KEY, _truncate, make_settings
from tests.factories import SECRET_MARK, access_key, form, secret_key


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run the CLI in-process in an empty folder against ``url``; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("KEYBOT_", "SLACK_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("KEYBOT_MASTER_KEY", MASTER_KEY)

    def run(url: str, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setenv("DATABASE_URL", url)
        out = io.StringIO()
        code = main(list(argv), out=out)
        return code, out.getvalue(), capsys.readouterr().err

    return run


class Writer(threading.Thread):
    """Registers keys one transaction at a time (each with its audit entries), as ``serve`` does, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.services = build_services(make_settings(DATABASE_URL=url))
        self.stop = threading.Event()
        self.written = 0
        self.progress = threading.Condition()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.services.keys.register(ADMIN, form(f"A{self.written + 1:08d}"))
                with self.progress:
                    self.written += 1
                    self.progress.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.services.engine.dispose()

    def wait_for(self, count: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: self.written >= count or self.error is not None, timeout=30)
        assert self.error is None, self.error


def test_restore_drill_on_sqlite_while_the_bot_writes(tmp_path, cli):
    live = tmp_path / "data" / "keybot.db"
    url = f"sqlite:///{live}"
    assert cli(url, "db", "upgrade")[0] == 0
    writer = Writer(url)
    writer.start()
    try:
        writer.wait_for(5)
        code, out, err = cli(url, "backup", str(tmp_path / "backup.db"))
        before = writer.written
        writer.wait_for(before + 3)  # the bot kept writing during and after the backup
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert (code, err) == (0, ""), err
    assert "Backed up the database to" in out and SECRET_MARK not in out

    # the drill from the README: copy the backup to a fresh path, then status and audit verify there
    restored = tmp_path / "restored" / "keybot.db"
    restored.parent.mkdir()
    shutil.copy(tmp_path / "backup.db", restored)
    restored_url = f"sqlite:///{restored}"
    code, out, _ = cli(restored_url, "status", "--json")
    assert code == 0
    vendors = [k["vendor_id"] for k in json.loads(out)]
    assert len(vendors) >= 5
    code, out, err = cli(restored_url, "audit", "verify")
    assert code == 0, err

    services = build_services(make_settings(DATABASE_URL=restored_url))
    with services.ctx.transaction() as session:
        keys = services.ctx.keys.all(session)
        assert sorted(k.vendor_id for k in keys) == sorted(vendors)
        for key in keys:
            assert services.ctx.keys.secrets(key) == (access_key(key.vendor_id), secret_key(key.vendor_id))
    services.engine.dispose()


def test_a_failed_backup_leaves_no_file_and_says_why(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'keybot.db'}"
    code, _, err = cli(url, "backup", str(tmp_path / "no-such-dir" / "backup.db"))
    assert code == 1 and "no-such-dir does not exist" in err
    assert not (tmp_path / "no-such-dir").exists()


@pytest.mark.postgres
def test_postgres_backup_uses_pg_dump_or_says_it_is_missing(postgres_url, tmp_path, cli, monkeypatch):
    services = build_services(make_settings(DATABASE_URL=postgres_url))
    _truncate(services.engine)
    services.keys.register(ADMIN, form("A00012345"))
    services.engine.dispose()
    target = tmp_path / "keybot.dump"
    if shutil.which("pg_dump") and shutil.which("pg_restore"):
        code, out, err = cli(postgres_url, "backup", str(target))
        assert code == 0, err
        listing = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True)
        assert "TABLE DATA public keys" in listing.stdout and "TABLE DATA public audit_events" in listing.stdout

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no pg_dump anywhere
    code, _, err = cli(postgres_url, "backup", str(tmp_path / "other.dump"))
    assert code == 2
    assert "pg_dump is not installed" in err and "postgresql-client" in err
    assert not (tmp_path / "other.dump").exists()


def test_backup_refuses_what_it_cannot_copy(tmp_path, cli):
    code, _, err = cli("sqlite:///:memory:", "backup", str(tmp_path / "x.db"))
    assert code == 2 and "in-memory" in err
    assert not Path(tmp_path / "x.db").exists()
