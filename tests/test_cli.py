"""The command line as an operator uses it: init, import, status, audit, master-key rotation, exit codes."""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import text

from bot.cli import main
from storage.db import make_engine
from tests.conftest import MASTER_KEY, SECOND_KEY
from tests.factories import SECRET_MARK, access_key, secret_key

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "vendor_id,label,access_key,secret_key,issued_on,expires_on,channel,owner,integration,"
    "integrator_name,company_name,company_url,ip_addresses"
)


def row(
    vendor_id: str, *, issued_on: str = "2026-06-01", expires_on: str = "", ips: str = "211.45.10.3;8.8.8.8"
) -> str:
    return (
        f"{vendor_id},Shop {vendor_id},{access_key(vendor_id)},{secret_key(vendor_id)},{issued_on},{expires_on},"
        f"CSHOP0001,UOWNER001,self,,Example Co,https://shop.example.com,{ips}"
    )


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch, capsys):
    """Run the CLI in-process in an empty folder with this test's database; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("KEYBOT_", "SLACK_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("KEYBOT_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("DATABASE_URL", db_url)

    def run(*argv: str) -> tuple[int, str, str]:
        out = io.StringIO()
        code = main(list(argv), out=out)
        return code, out.getvalue(), capsys.readouterr().err

    return run


def write_csv(tmp_path: Path, *rows: str) -> str:
    path = tmp_path / "keys.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return str(path)


@time_machine.travel("2026-11-27T14:59:59Z", tick=False)  # 23:59:59 in Seoul
def test_import_then_status_json_in_korean_days(cli, tmp_path):
    code, out, err = cli(
        "keys", "import", write_csv(tmp_path, row("A00000001"), row("A00000002", issued_on="", expires_on="2026-12-11"))
    )
    assert (code, out.strip()) == (0, "Imported 2 key(s).")
    code, out, _ = cli("status", "--json")
    assert code == 0
    keys = {k["vendor_id"]: k for k in json.loads(out)}
    assert keys["A00000001"]["expires_on"] == "2026-11-28"
    assert keys["A00000001"]["days_left"] == 1
    assert keys["A00000001"]["phase"] == "reissue_window"
    assert keys["A00000002"]["days_left"] == 14
    assert {"label", "generation", "edits_last_7_days"} <= set(keys["A00000002"])
    assert SECRET_MARK not in out


def test_import_with_a_bad_row_imports_nothing_and_names_the_line(cli, tmp_path):
    path = write_csv(tmp_path, row("A00000001"), row("A0000002"), row("A00000003", ips="10.0.0.5"))
    code, out, err = cli("keys", "import", path)
    assert code == 1
    assert "keys.csv:3: vendor_id" in err
    assert "keys.csv:4: ip_addresses: IP 10.0.0.5 is a private address" in err
    assert SECRET_MARK not in err + out
    assert json.loads(cli("status", "--json")[1]) == []


def test_import_skip_invalid_keeps_the_good_rows(cli, tmp_path):
    path = write_csv(tmp_path, row("A00000001"), row("A00000003", ips="10.0.0.5"))
    code, out, err = cli("keys", "import", path, "--skip-invalid")
    assert code == 0 and "Imported 1 key(s), skipped 1 invalid row(s)." in out
    assert [k["vendor_id"] for k in json.loads(cli("status", "--json")[1])] == ["A00000001"]


def test_one_audit_entry_per_import_commits_to_every_row(cli, tmp_path):
    """An auditor recomputes the import's digest from `status --json`: any row added, dropped or changed shows."""
    rows = row("A00000002"), row("A00000001", issued_on="", expires_on="2027-01-05")
    cli("keys", "import", write_csv(tmp_path, *rows))
    entries = [json.loads(line) for line in cli("audit", "export", "--format", "jsonl")[1].splitlines()]
    assert [(e["action"], e["vendor_id"]) for e in entries] == [("key.imported", None)]
    details = entries[0]["details"]
    statuses = {k["vendor_id"]: k for k in json.loads(cli("status", "--json")[1])}
    digest = hashlib.sha256()
    for vendor_id in ("A00000002", "A00000001"):  # file order
        k = statuses[vendor_id]
        facts = {f: k[f] for f in ("vendor_id", "label", "generation", "expires_on", "linking")}
        facts["fingerprint"] = k["secret_fingerprint"]
        digest.update(hashlib.sha256(json.dumps(facts, sort_keys=True, ensure_ascii=False).encode()).digest())
    assert details == {"keys": 2, "rows_sha256": digest.hexdigest()}


def test_import_refuses_rows_of_registered_keys_by_line(cli, tmp_path):
    cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    code, _, err = cli("keys", "import", write_csv(tmp_path, row("A00000002"), row("A00000001")))
    assert code == 1 and "keys.csv:3: vendor_id: A00000001 already has a key." in err
    assert [k["vendor_id"] for k in json.loads(cli("status", "--json")[1])] == ["A00000001"]
    code, out, _ = cli("keys", "import", write_csv(tmp_path, row("A00000002"), row("A00000001")), "--skip-invalid")
    assert code == 0 and "Imported 1 key(s), skipped 1 invalid row(s)." in out
    assert cli("audit", "verify")[0] == 0


def test_import_refuses_unknown_columns(cli, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("vendor,label\nA00000001,x\n")
    code, _, err = cli("keys", "import", str(path))
    assert code == 1 and "missing columns: vendor_id" in err


def test_audit_verify_exit_codes_and_export(cli, tmp_path, db_url):
    cli("keys", "import", write_csv(tmp_path, row("A00000001"), row("A00000002")))
    cli("keys", "import", write_csv(tmp_path, row("A00000003")))
    assert cli("audit", "verify")[:2] == (0, "audit chain intact: 2 entries verified\n")
    code, out, _ = cli("audit", "export", "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == 2 and SECRET_MARK not in out
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET details = '{}' WHERE seq = 1"))
    engine.dispose()
    code, _, err = cli("audit", "verify")
    assert code == 1 and "broken at entry 1" in err


def test_audit_verify_and_init_speak_keybot_language(cli, tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("KEYBOT_LANGUAGE", "ko")
    code, out, _ = cli("init")
    assert code == 0 and "안전한 곳에 따로 보관해 주세요" in out and "Back that key up" not in out
    assert "이미 있어 덮어쓰지 않았습니다" in cli("init")[2]
    cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    assert cli("audit", "verify")[:2] == (0, "감사 기록 체인 정상: 1건 검증됨\n")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET details = '{}' WHERE seq = 1"))
    engine.dispose()
    code, _, err = cli("audit", "verify")
    assert (code, err) == (1, "감사 기록 체인이 1번 항목에서 깨졌습니다: 내용이 MAC과 맞지 않습니다(수정됨)\n")


def test_master_key_rotate_then_old_key_can_go(cli, tmp_path, monkeypatch):
    cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    monkeypatch.setenv("KEYBOT_MASTER_KEY", f"{SECOND_KEY},{MASTER_KEY}")
    code, out, _ = cli("master-key", "rotate")
    assert code == 0 and "Re-encrypted 1 key(s)" in out
    monkeypatch.setenv("KEYBOT_MASTER_KEY", SECOND_KEY)
    assert cli("audit", "verify")[0] == 0
    assert json.loads(cli("status", "--json")[1])[0]["vendor_id"] == "A00000001"


def test_audit_csv_opens_in_excel_with_local_times_and_the_os_user(cli, tmp_path):
    with time_machine.travel("2026-11-27T15:30:00Z", tick=False):  # 00:30 the next day in Seoul
        cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    code, out, _ = cli("audit", "export")
    assert code == 0 and out.startswith("\ufeffseq,at,actor,")  # the BOM makes Excel read UTF-8
    [entry] = list(csv.DictReader(io.StringIO(out.removeprefix("\ufeff"))))
    assert entry["at"] == "2026-11-28 00:30:00+09:00"
    assert entry["actor"] == f"cli:{getpass.getuser()}"
    assert json.loads(cli("audit", "export", "--format", "jsonl")[1])["actor"] == f"cli:{getpass.getuser()}"


def test_master_key_rotate_with_one_key_has_nothing_to_rotate(cli, tmp_path):
    cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    before = cli("audit", "export", "--format", "jsonl")[1]
    code, out, _ = cli("master-key", "rotate")
    assert code == 0 and "nothing to rotate" in out and "Re-encrypted" not in out
    assert cli("audit", "export", "--format", "jsonl")[1] == before  # nothing written, not even an audit entry


def test_wrong_master_key_fails_loudly_and_changes_nothing(cli, tmp_path, monkeypatch):
    cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    monkeypatch.setenv("KEYBOT_MASTER_KEY", SECOND_KEY)
    code, out, err = cli("master-key", "rotate")
    assert code == 1 and "could not decrypt the key of A00000001" in err and "KEYBOT_MASTER_KEY" in err
    monkeypatch.setenv("KEYBOT_MASTER_KEY", MASTER_KEY)
    assert cli("audit", "verify")[0] == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KEYBOT_MASTER_KEY", "", "coupang-keybot init"),
        ("KEYBOT_TIMEZONE", "Mars/Olympus", "KEYBOT_TIMEZONE"),
        ("KEYBOT_REMINDER_DAYS", "14,seven", "KEYBOT_REMINDER_DAYS"),
        ("SLACK_BOT_TOKEN", "xoxp-user-token", "SLACK_BOT_TOKEN"),
    ],
)
def test_bad_configuration_is_a_usage_error_with_a_sentence(cli, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    code, _, err = cli("status")
    assert code == 2 and message in err and "Traceback" not in err


def test_configuration_errors_speak_keybot_language_when_it_parsed(cli, monkeypatch):
    monkeypatch.setenv("KEYBOT_LANGUAGE", "ko")
    monkeypatch.setenv("KEYBOT_TIMEZONE", "Mars/Olympus")
    code, _, err = cli("status")
    assert code == 2
    assert err.startswith(
        "설정 오류: KEYBOT_TIMEZONE='Mars/Olympus'는 알 수 없는 시간대입니다. Asia/Seoul처럼 입력해 주세요."
    )
    monkeypatch.setenv("DATABASE_URL", "nonsense")
    monkeypatch.delenv("KEYBOT_TIMEZONE")
    assert "데이터베이스 URL이 아닙니다" in cli("status")[2]
    monkeypatch.setenv("KEYBOT_LANGUAGE", "klingon")
    code, _, err = cli("status")
    assert code == 2 and err == "Configuration error: KEYBOT_LANGUAGE='klingon' must be en (English) or ko (Korean).\n"


def test_env_file_is_read_and_process_environment_wins(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("KEYBOT_MASTER_KEY")
    (tmp_path / ".env").write_text(f"KEYBOT_MASTER_KEY={MASTER_KEY}\nKEYBOT_TIMEZONE=Mars/Olympus\n")
    monkeypatch.setenv("KEYBOT_TIMEZONE", "Asia/Seoul")
    assert cli("status")[0] == 0


def test_init_writes_private_env_once(cli, tmp_path):
    code, out, _ = cli("init")
    assert code == 0 and "Back that key up" in out
    env = (tmp_path / ".env").read_text()
    key_line = next(line for line in env.splitlines() if line.startswith("KEYBOT_MASTER_KEY="))
    assert len(key_line.split("=", 1)[1]) == 44  # base64 of 32 bytes
    assert key_line.split("=", 1)[1] not in out
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert "SLACK_BOT_TOKEN=" in env  # copied from .env.example, commented variables included
    assert cli("init")[0] == 1
    assert (tmp_path / ".env").read_text() == env


def test_fresh_start_without_slack_explains_and_exits_non_zero(tmp_path):
    """What `make run` does on a new machine, with no terminal: init, migrate, then serve explains Slack setup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYBOT_", "SLACK_", "DATABASE_URL"))}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "bot", *a],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert run("init").returncode == 0
    assert run("db", "upgrade").returncode == 0
    assert (tmp_path / "data" / "keybot.db").exists()
    served = run("serve")
    assert served.returncode != 0
    assert "SLACK_BOT_TOKEN" in served.stdout and "manifest.yml" in served.stdout


def test_import_row_errors_follow_keybot_language(cli, tmp_path, monkeypatch):
    """An ops team reading Korean gets every per-row reason in Korean, still named by line and column."""
    monkeypatch.setenv("KEYBOT_LANGUAGE", "ko")
    cli("keys", "import", write_csv(tmp_path, row("A00000001")))
    rows = row("A00000002"), row("A00000002"), row("A00000001"), row("B123", ips="10.0.0.5")
    code, _, err = cli("keys", "import", write_csv(tmp_path, *rows))
    assert code == 1
    assert "keys.csv:3: vendor_id: 업체코드 A00000002: 이미 2번째 줄에 있습니다. 그 줄을 쓰고" in err
    assert "keys.csv:4: vendor_id: A00000001에는 이미 등록된 키가 있습니다." in err
    assert "keys.csv:5: vendor_id: 업체코드 'B123'은 올바르지 않습니다" in err
    assert "is not valid" not in err and "already" not in err
    assert "가져오지 않았습니다" in err


def test_import_never_prints_a_key_even_from_a_shifted_row(cli, tmp_path):
    shifted = f"{secret_key('A00000001')},Shop,{access_key('A00000001')},{secret_key('A00000001')},2026-06-01"
    code, out, err = cli("keys", "import", write_csv(tmp_path, shifted))
    assert code == 1 and "keys.csv:2: vendor_id" in err
    assert "[secret_key hidden]" in err
    assert SECRET_MARK not in err + out


@time_machine.travel("2026-11-28T03:00:00Z", tick=False)  # the key below expires in 9 days: in the reissue window
def test_the_cli_follows_keybot_language(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYBOT_LANGUAGE", "ko")
    code, out, _ = cli("keys", "import", write_csv(tmp_path, row("A00000001", issued_on="", expires_on="2026-12-07")))
    assert (code, out.strip()) == (0, "키 1개를 가져왔습니다.")
    code, out, _ = cli("status")
    assert code == 0 and "만료 2026년 12월 7일(월)" in out and "WING의 재발급 버튼" in out
    code, _, err = cli("verify", "B0000001")
    assert code != 0 and "업체코드 'B0000001'은 올바르지 않습니다" in err
    code, out, _ = cli("reminders", "run", "--dry-run", "--as-of", "2026-11-30T09:00")  # D-7 in Seoul
    assert code == 0 and "CSHOP0001에 알림을 올릴 예정:" in out and "만료 1주일 전" in out and "시험 실행" in out


@pytest.mark.parametrize(
    ("language", "expected", "english_only"),
    [
        ("en", "Slack is not configured yet: SLACK_BOT_TOKEN", None),
        ("ko", "Slack 연결이 아직 설정되지 않았습니다: SLACK_BOT_TOKEN", "To connect the bot"),
    ],
)
def test_serve_without_slack_explains_the_setup_in_keybot_language(cli, monkeypatch, language, expected, english_only):
    """The first thing a team sees after `make run` is how to connect the bot: in their language."""
    monkeypatch.setenv("KEYBOT_LANGUAGE", language)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)  # no person at a terminal: no console meanwhile
    code, out, _ = cli("serve")
    assert code == 2 and out.startswith(expected) and "manifest.yml" in out and "make run" in out
    assert english_only is None or english_only not in out
