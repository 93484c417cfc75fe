# ruff: noqa: F811  (the `cli` fixture is imported from test_cli)
"""Mistakes caught at data entry from the command line: dates, file encodings, all-bad imports; the calendar and
``status --fail-within`` for cron and CI."""

from __future__ import annotations

import json
from datetime import date, timedelta

import icalendar
import pytest
import time_machine

from tests.factories import SECRET_MARK
from tests.test_cli import HEADER, cli, row  # noqa: F401

TODAY = "2026-11-27T03:00:00Z"  # noon in Seoul


def write(tmp_path, data: bytes) -> str:
    path = tmp_path / "keys.csv"
    path.write_bytes(data)
    return str(path)


def csv_text(*rows: str) -> str:
    return "\r\n".join([HEADER, *rows]) + "\r\n"


def imported(cli) -> list[str]:
    return [k["vendor_id"] for k in json.loads(cli("status", "--json")[1])]


@time_machine.travel(TODAY, tick=False)
def test_a_future_issue_date_or_a_far_expiry_is_refused_naming_the_line(cli, tmp_path):
    path = write(
        tmp_path,
        csv_text(
            row("A00000001", issued_on="2027-06-01"),  # the year mistyped: issued in the future
            row("A00000002", issued_on="", expires_on="2027-11-27"),  # a year out
            row("A00000003", issued_on="2026-02-30"),
        ).encode(),
    )
    code, out, err = cli("keys", "import", path)
    assert code == 1
    assert "keys.csv:2: issued_on: Issue date 2027-06-01 is in the future" in err
    assert "keys.csv:3: expires_on: Expiry date 2027-11-27 is more than 180 days after today" in err
    assert "keys.csv:4: issued_on: Issue date '2026-02-30': there is no such date." in err
    assert imported(cli) == []


@time_machine.travel(TODAY, tick=False)
def test_the_last_possible_dates_are_accepted(cli, tmp_path):
    far = (date(2026, 11, 27) + timedelta(days=180)).isoformat()
    path = write(
        tmp_path,
        csv_text(row("A00000001", issued_on="2026-11-27"), row("A00000002", issued_on="", expires_on=far)).encode(),
    )
    assert cli("keys", "import", path)[0] == 0
    assert sorted(imported(cli)) == ["A00000001", "A00000002"]


@time_machine.travel(TODAY, tick=False)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp949", "euc-kr"])
def test_korean_labels_are_read_in_utf8_and_cp949(cli, tmp_path, encoding):
    text = csv_text(row("A00000001").replace("Shop A00000001", "쿠팡 본점"))
    code, out, err = cli("keys", "import", write(tmp_path, text.encode(encoding)))
    assert (code, err) == (0, "")
    assert [k["label"] for k in json.loads(cli("status", "--json")[1])] == ["쿠팡 본점"]


@time_machine.travel(TODAY, tick=False)
@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        (csv_text(row("A00000001")).encode("utf-16"), "is not a text CSV in UTF-8 or CP949"),
        (csv_text(row("A00000001")).encode("utf-16-le"), "is not a text CSV in UTF-8 or CP949"),
        (bytes(range(256)) * 40, "is not a text CSV in UTF-8 or CP949"),
        (csv_text(row("A00000001").replace("Example Co", "x" * 200_000)).encode(), "line 2 is 200"),
        (csv_text(row("A00000001").replace("Example Co", '"' + "x\n" * 100_000 + '"')).encode(), "cannot be read"),
    ],
    ids=["utf-16", "utf-16-no-bom", "binary", "200-kb-field", "200-kb-field-of-short-lines"],
)
def test_anything_else_is_refused_in_one_sentence(cli, tmp_path, data, sentence):
    code, out, err = cli("keys", "import", write(tmp_path, data))
    assert code == 1
    assert sentence in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert imported(cli) == []


@time_machine.travel(TODAY, tick=False)
def test_skip_invalid_with_every_row_bad_fails(cli, tmp_path):
    path = write(tmp_path, csv_text(row("A0000001"), row("A00000003", ips="10.0.0.5")).encode())
    code, out, err = cli("keys", "import", path, "--skip-invalid")
    assert code == 1 and "Imported 0 key(s), skipped 2 invalid row(s)." in out
    assert SECRET_MARK not in out + err


def import_keys(cli, tmp_path, *rows: str) -> None:
    assert cli("keys", "import", write(tmp_path, csv_text(*rows).encode()))[0] == 0


@time_machine.travel(TODAY, tick=False)
def test_calendar_is_rfc5545_with_a_d14_and_an_expiry_event_per_key(cli, tmp_path):
    label = "쿠팡; 본점, \\ 최고의 상점 이름이 아주 길어서 한 줄에 다 들어가지 않습니다"
    import_keys(
        cli,
        tmp_path,
        row("A00000001", issued_on="", expires_on="2026-12-07").replace("Shop A00000001", f'"{label}"'),
        row("A00000002", issued_on="", expires_on="2027-03-01"),
    )
    code, out, err = cli("calendar")
    assert (code, err) == (0, "")
    raw = out.encode()
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    parsed = icalendar.Calendar.from_ical(raw)
    events = {
        (str(e["UID"]), e.decoded("DTSTART"), e.decoded("DTEND"), str(e["SUMMARY"])) for e in parsed.walk("VEVENT")
    }
    assert {(day, end) for _, day, end, _ in events} == {
        (date(2026, 11, 23), date(2026, 11, 24)),
        (date(2026, 12, 7), date(2026, 12, 8)),
        (date(2027, 2, 15), date(2027, 2, 16)),
        (date(2027, 3, 1), date(2027, 3, 2)),
    }
    summaries = {day: summary for _, day, _, summary in events}
    assert summaries[date(2026, 12, 7)] == f"Coupang key A00000001 {label} expires today"
    assert "D-14" in summaries[date(2027, 2, 15)]
    assert parsed["VERSION"] == "2.0" and parsed["PRODID"]
    again = {str(e["UID"]) for e in icalendar.Calendar.from_ical(cli("calendar")[1].encode()).walk("VEVENT")}
    assert again == {uid for uid, *_ in events} and len(again) == 4  # stable and unique
    soon = icalendar.Calendar.from_ical(cli("calendar", "--days", "30")[1].encode())
    assert [e.decoded("DTSTART") for e in soon.walk("VEVENT")] == [date(2026, 12, 7)]  # D-14 already passed
    assert SECRET_MARK not in out


@time_machine.travel(TODAY, tick=False)
def test_status_fail_within_exits_1_when_a_key_is_that_close(cli, tmp_path):
    import_keys(cli, tmp_path, row("A00000001", issued_on="", expires_on="2026-12-07"))  # 10 days left
    assert cli("status", "--fail-within", "9")[0] == 0
    code, out, err = cli("status", "--fail-within", "10")
    assert code == 1 and "A00000001" in out and "A00000001" in err
    assert cli("status", "--json", "--fail-within", "10")[0] == 1


@time_machine.travel("2026-12-20T03:00:00Z", tick=False)
def test_status_fail_within_counts_expired_keys(cli, tmp_path):
    with time_machine.travel(TODAY, tick=False):
        import_keys(cli, tmp_path, row("A00000001", issued_on="", expires_on="2026-12-07"))
    assert cli("status", "--fail-within", "0")[0] == 1


@time_machine.travel(TODAY, tick=False)
def test_a_key_without_any_channel_is_warned_about_and_counted_in_the_sweep(cli, tmp_path):
    nowhere = row("A00000001", issued_on="", expires_on="2026-12-04").replace(",CSHOP0001,", ",,")
    code, out, err = cli("keys", "import", write(tmp_path, csv_text(nowhere, row("A00000002")).encode()))
    assert code == 0 and "Imported 2 key(s)." in out
    assert "1 key(s) have no channel and KEYBOT_CHANNEL is not set, so they get no reminders: A00000001" in err
    status = cli("status")[1]
    assert status.count("no reminder channel") == 1
    code, out, _ = cli("reminders", "run", "--dry-run", "--as-of", "2026-11-27T09:00")  # D-7 of A00000001
    assert code == 0 and "1 skipped (no channel: A00000001; set KEYBOT_CHANNEL)" in out


@time_machine.travel(TODAY, tick=False)
def test_keybot_channel_is_a_channel_for_every_key(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYBOT_CHANNEL", "CTEAM0001")
    nowhere = row("A00000001", issued_on="", expires_on="2026-12-04").replace(",CSHOP0001,", ",,")
    code, out, err = cli("keys", "import", write(tmp_path, csv_text(nowhere).encode()))
    assert (code, err) == (0, "")
    assert "no reminder channel" not in cli("status")[1]
    out = cli("reminders", "run", "--dry-run", "--as-of", "2026-11-27T09:00")[1]
    assert "CTEAM0001" in out and "no channel" not in out
