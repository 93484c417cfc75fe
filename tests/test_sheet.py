"""The Excel sheet as the source of truth: `keys export`, `keys import --update` / `--new-keys`, Korean sheets,
and `status --expiring` — through the real command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import pytest
import time_machine

from bot.rules import validate_linking_info
from tests.factories import SECRET_MARK, access_key, secret_key
from tests.rollout_support import receiver  # noqa: F401  (fixture)
from tests.test_cli import HEADER, cli, row  # noqa: F401  (cli: fixture)

NOW = "2026-11-27T03:00:00Z"  # 12:00 in Seoul; the keys below were issued in June and September


@pytest.fixture
def sheet(cli, tmp_path):  # noqa: F811
    """Import two keys, then hand back a function that exports them and parses the CSV."""
    with time_machine.travel(NOW, tick=True):
        path = tmp_path / "first.csv"
        path.write_text("\n".join([HEADER, row("A00000001"), row("A00000002", issued_on="2026-09-01")]) + "\n")
        assert cli("keys", "import", str(path))[0] == 0

        def export(*options: str) -> list[dict[str, str]]:
            code, out, err = cli("keys", "export", *options)
            assert code == 0, err
            return list(csv.DictReader(io.StringIO(out)))

        yield export


def write_rows(tmp_path, rows: list[dict[str, str]], name: str = "sheet.csv", encoding: str = "utf-8-sig") -> str:
    path = tmp_path / name
    with path.open("w", newline="", encoding=encoding) as file:
        writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(name for r in rows for name in r)))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def statuses(cli) -> dict[str, dict]:  # noqa: F811
    return {k["vendor_id"]: k for k in json.loads(cli("status", "--json")[1])}


def audit_actions(cli) -> list[str]:  # noqa: F811
    return [json.loads(line)["action"] for line in cli("audit", "export", "--format", "jsonl")[1].splitlines()]


def test_export_has_the_import_columns_and_no_secret(cli, sheet):  # noqa: F811
    rows = sheet()
    assert list(rows[0]) == HEADER.split(",")
    assert [r["vendor_id"] for r in rows] == ["A00000001", "A00000002"]
    assert all(r["access_key"] == r["secret_key"] == "" for r in rows)
    assert rows[1]["issued_on"] == "2026-09-01" and rows[1]["expires_on"] == "2027-02-28"
    assert rows[0]["ip_addresses"] == "211.45.10.3 8.8.8.8"
    assert SECRET_MARK not in json.dumps(rows)


def test_an_exported_sheet_imports_back_unchanged(cli, sheet, tmp_path):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        before = statuses(cli)
        code, out, err = cli("keys", "import", write_rows(tmp_path, sheet()), "--update")
        assert (code, err) == (0, "")
        assert "Added 0, updated 0, new keys 0, unchanged 2, refused 0." in out
        assert statuses(cli) == before
        assert audit_actions(cli) == ["key.imported"]  # nothing changed, nothing recorded


def test_update_applies_label_owner_linking_and_expiry_each_audited(cli, sheet, tmp_path):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        rows = sheet()
        rows[0].update(label="=HYPERLINK(1)", owner="UNEWOWNER", ip_addresses="211.45.10.3")
        rows[1].update(issued_on="", expires_on="2027-01-15")
        code, out, err = cli("keys", "import", write_rows(tmp_path, rows), "--update")
        assert code == 0, err
        assert "Added 0, updated 2, new keys 0, unchanged 0, refused 0." in out
        keys = statuses(cli)
        assert keys["A00000001"]["label"] == "=HYPERLINK(1)"
        assert keys["A00000001"]["owner"] == "UNEWOWNER"
        assert keys["A00000001"]["linking"].endswith("IPs 211.45.10.3")
        assert keys["A00000001"]["edits_last_7_days"] == 1  # one of Coupang's 10 weekly edits
        assert keys["A00000002"]["expires_on"] == "2027-01-15"
        assert sorted(audit_actions(cli)[1:]) == ["key.dates_corrected", "key.details_edited", "key.linking_edited"]
        # the formula-looking label is exported inert, and comes back as typed
        exported = sheet()
        assert exported[0]["label"] == "'=HYPERLINK(1)"
        code, out, _ = cli("keys", "import", write_rows(tmp_path, exported), "--update")
        assert "unchanged 2" in out and statuses(cli)["A00000001"]["label"] == "=HYPERLINK(1)"


def test_update_with_a_bad_row_changes_nothing_and_names_the_files_column(cli, sheet, tmp_path):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        rows = [
            {"업체코드": r["vendor_id"], "이름": r["label"] + " 새 이름", "만료일": r["expires_on"], "IP": "10.0.0.5"}
            for r in sheet()
        ]
        for r in rows:
            r.update({"연동 방식": "직접 입력", "업체명": "Example Co", "URL": "shop.example.com"})
        rows[0]["IP"] = "211.45.10.3"
        before = statuses(cli)
        code, out, err = cli("keys", "import", write_rows(tmp_path, rows), "--update")
        assert code == 1
        assert "sheet.csv:3: IP: IP 10.0.0.5 is a private address" in err
        assert "Nothing changed: fix the 1 row(s) above" in err
        assert statuses(cli) == before


def test_keys_reissued_in_wing_need_new_keys_and_reach_the_consumers(cli, sheet, tmp_path, receiver):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        code, out, err = cli("consumers", "add", "A00000001", "erp", "--webhook", receiver.endpoint("/erp"))
        assert code == 0, err
        receiver.secrets["/erp"] = out.split("Signing secret (shown only this once): ")[1].split()[0]
        rows = sheet()
        rows[0].update(access_key=access_key("A00000001") + "N", secret_key=secret_key("A00000001") + "NEW")
        path = write_rows(tmp_path, rows)

        code, out, err = cli("keys", "import", path, "--update")
        assert code == 1 and "sheet.csv:2: secret_key: These keys differ from the stored ones" in err
        assert "--new-keys" in err and SECRET_MARK not in err + out
        assert statuses(cli)["A00000001"]["generation"] == 1

        code, out, err = cli("keys", "import", path, "--update", "--new-keys")
        assert code == 0, err
        assert "new keys 1" in out and "New key for A00000001: delivered to 1 of 1 consumer(s)." in out
        key = statuses(cli)["A00000001"]
        assert (key["generation"], key["expires_on"]) == (2, "2027-05-26")  # 180 days from today in Seoul
        hit = [h for h in receiver.hits("/erp") if h.body["data"]["generation"] == 2][0]
        assert hit.verified and hit.body["data"]["secret_key"] == secret_key("A00000001") + "NEW"
        assert "key.new_key_imported" in audit_actions(cli)
        assert SECRET_MARK not in cli("audit", "export")[1]


def test_a_new_key_must_change_both_halves(cli, sheet, tmp_path):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        rows = sheet()
        rows[1].update(access_key=access_key("A00000002"), secret_key=secret_key("A00000002") + "NEW")
        code, _, err = cli("keys", "import", write_rows(tmp_path, rows), "--update", "--new-keys")
        assert code == 1 and "changes only one of them" in err
        assert statuses(cli)["A00000002"]["generation"] == 1


def test_update_registers_new_vendor_ids_and_respects_the_weekly_edit_limit(cli, sheet, tmp_path):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        rows = sheet()
        new = dict(rows[0], vendor_id="A00000009", label="New shop")
        code, _, err = cli("keys", "import", write_rows(tmp_path, [*rows, new]), "--update")
        assert code == 1 and "A00000009 is not registered yet: fill in its Access Key and Secret Key." in err
        new.update(access_key=access_key("A00000009"), secret_key=secret_key("A00000009"))
        code, out, err = cli("keys", "import", write_rows(tmp_path, [*rows, new]), "--update")
        assert code == 0 and "Added 1," in out and "Added: A00000009" in out
        for ip in ["8.8.4.4", "1.1.1.1"] * 5:  # ten edits in a week: Coupang's limit
            rows[1]["ip_addresses"] = ip
            assert cli("keys", "import", write_rows(tmp_path, rows), "--update")[0] == 0
        rows[1]["ip_addresses"] = "9.9.9.9"
        code, out, err = cli("keys", "import", write_rows(tmp_path, rows), "--update", "--skip-invalid")
        assert "sheet.csv:3: integration: The linking info was already edited 10 times" in err
        assert code == 0 and "refused 1" in out
        assert statuses(cli)["A00000002"]["edits_last_7_days"] == 10


def test_korean_sheet_in_cp949_with_excel_dates_imports(cli, tmp_path):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        rows = [
            {
                "업체코드": "A00000001",
                "이름": "한빛상점",
                "Access Key": access_key("A00000001"),
                "Secret Key": secret_key("A00000001"),
                "발급일": "2026.09.01",
                "채널": "CSHOP0001",
                "연동 방식": "연동업체",
                "연동업체": "셀러허브",
            },
            {
                "업체코드": "A00000002",
                "이름": "두리상점",
                "Access Key": access_key("A00000002"),
                "Secret Key": secret_key("A00000002"),
                "발급일": "2026/9/1",
                "채널": "CSHOP0001",
                "연동 방식": "직접 입력",
                "업체명": "두리",
                "URL": "",
                "IP": "211.45.10.3",
            },
        ]
        code, out, err = cli("keys", "import", write_rows(tmp_path, rows, encoding="cp949"))
        assert (code, err) == (0, ""), err
        keys = statuses(cli)
        assert keys["A00000001"]["label"] == "한빛상점" and keys["A00000001"]["expires_on"] == "2027-02-28"
        assert keys["A00000001"]["linking"] == "Integrator: 셀러허브"
        assert "(wing.coupang.com)" in keys["A00000002"]["linking"]  # no URL: Coupang's own advice

        code, out, err = cli("keys", "export", "--encoding", "cp949", "--output", "keys-cp949.csv")
        assert code == 0 and "Exported 2 key(s)" in out
        text = (tmp_path / "keys-cp949.csv").read_bytes().decode("cp949")
        assert "한빛상점" in text and SECRET_MARK not in text


def test_duplicate_vendor_id_says_which_line_is_used(cli, tmp_path):  # noqa: F811
    path = tmp_path / "dup.csv"
    path.write_text("\n".join([HEADER, row("A00000001"), row("A00000001")]) + "\n")
    with time_machine.travel(NOW, tick=True):
        code, _, err = cli("keys", "import", str(path))
    assert code == 1 and "dup.csv:3: vendor_id: A00000001 is already on line 2: that line is used" in err


def test_export_file_is_private_whatever_the_umask(cli, sheet, tmp_path):  # noqa: F811
    old = os.umask(0o022)
    try:
        assert cli("keys", "export", "--output", "keys.csv")[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys.csv").stat().st_mode) == 0o600
    assert (tmp_path / "keys.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM: Excel reads UTF-8 Korean


def test_export_refuses_a_label_cp949_cannot_hold(cli, tmp_path):  # noqa: F811
    path = tmp_path / "emoji.csv"
    path.write_text(HEADER + "\n" + row("A00000001").replace("Shop A00000001", "Shop 🛒"), encoding="utf-8")
    with time_machine.travel(NOW, tick=True):
        assert cli("keys", "import", str(path))[0] == 0
        code, out, err = cli("keys", "export", "--encoding", "cp949")
    assert code == 1 and "A00000001 has characters CP949 cannot hold" in err and out == ""


def test_status_expiring_lists_one_line_per_key_most_urgent_first(cli, sheet):  # noqa: F811
    with time_machine.travel(NOW, tick=True):
        code, out, err = cli("status", "--expiring", "5")
        assert (code, out) == (0, "A00000001  Shop A00000001  1 day left  2026-11-28\n")
        code, out, _ = cli("status", "--expiring", "100")
        assert [line.split()[0] for line in out.splitlines()] == ["A00000001", "A00000002"]


def test_self_developed_key_without_url_links_wing():
    info = validate_linking_info("self", company_name="Shop", company_url="", ip_addresses="211.45.10.3")
    assert info.company_url == "wing.coupang.com"
