"""``coupang-keybot verify VENDOR_ID``: exit 0 only for a working key, never a secret on screen or in logs."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.bootstrap import build_services
from bot.cli import main
from tests.conftest import ADMIN, MASTER_KEY, make_settings
from tests.factories import SECRET_MARK, access_key, form, secret_key
from tests.fake_coupang import FakeCoupang

VENDOR = "A00012345"


@pytest.fixture
def gateway() -> Iterator[FakeCoupang]:
    with FakeCoupang(clock=lambda: datetime.now(UTC)) as fake:  # real time: the CLI signs with the system clock
        yield fake


@pytest.fixture
def cli(db_url, gateway, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("KEYBOT_", "SLACK_", "COUPANG_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("KEYBOT_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COUPANG_API_URL", gateway.url)
    services = build_services(make_settings(DATABASE_URL=db_url))
    services.keys.register(ADMIN, form(VENDOR))
    services.engine.dispose()

    def run(*argv: str) -> tuple[int, str, str]:
        out = io.StringIO()
        code = main(list(argv), out=out)
        return code, out.getvalue(), capsys.readouterr().err

    return run


def test_a_working_key_exits_0_and_says_so(cli, gateway, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR)
    code, out, err = cli("verify", VENDOR.lower())
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{VENDOR}  works  (checked ")
    assert "The key works" in out
    assert len(gateway.requests) == 1
    assert SECRET_MARK not in out + err + caplog.text
    assert access_key(VENDOR) not in out + err + caplog.text


def test_a_refused_key_exits_1_with_what_to_fix(cli, gateway, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR, allowed_ips=("203.0.113.7",))
    code, out, err = cli("verify", VENDOR)
    assert code == 1
    assert "ip_not_allowed" in out and "IP list" in out and "127.0.0.1" in out
    assert SECRET_MARK not in out + err + caplog.text


def test_an_unknown_vendor_id_exits_1_without_calling_coupang(cli, gateway) -> None:
    code, out, err = cli("verify", "A00000009")
    assert (code, out) == (1, "")
    assert "No key is registered for A00000009" in err
    code, _, err = cli("verify", "nope")
    assert code == 1 and "A followed by 8 digits" in err
    assert gateway.requests == []


def test_a_second_run_within_10_seconds_repeats_the_result(cli, gateway) -> None:
    gateway.add_key(access_key(VENDOR), secret_key(VENDOR), VENDOR)
    assert cli("verify", VENDOR)[0] == 0
    code, out, _ = cli("verify", VENDOR)
    assert code == 0 and "ago (at most one check per vendor ID every 10 seconds)" in out
    assert len(gateway.requests) == 1


def test_status_shows_the_last_check(cli, gateway) -> None:
    gateway.add_key(access_key(VENDOR), "SomeoneElsesSecretKey000", VENDOR)
    code, out, _ = cli("status")
    assert code == 0 and "checked" not in out
    assert cli("verify", VENDOR)[0] == 1
    code, out, _ = cli("status")
    assert code == 0 and "checked invalid_key 20" in out
    code, out, _ = cli("status", "--json")
    assert '"verify_outcome": "invalid_key"' in out
