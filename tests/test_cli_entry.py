"""Mistakes caught at data entry from the command line: dates, file encodings, all-bad imports; the calendar and
``status --fail-within`` for cron and CI."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import time_machine

from tests.factories import SECRET_MARK
from tests.test_cli import HEADER, cli, row  # noqa: F401  (cli: the fixture)

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
        tmp_path, csv_text(row("A00000001", issued_on="2026-11-27"), row("A00000002", issued_on="", expires_on=far)).encode()
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
    ],
    ids=["utf-16", "utf-16-no-bom", "binary", "200-kb-field"],
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
