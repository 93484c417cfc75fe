"""The audit chain finds every kind of tampering and names the entry; exports are safe for spreadsheets."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
import time_machine
from sqlalchemy import text

from bot.services.audit import spreadsheet_safe
from tests.clock import IN_WINDOW
from tests.conftest import ADMIN
from tests.factories import SECRET_MARK, form


@pytest.fixture
def chained(services):
    with time_machine.travel(IN_WINDOW, tick=False):
        for n in range(1, 6):
            services.keys.register(ADMIN, form(f"A0000000{n}"))
    assert services.audit.verify().ok
    return services


def execute(services, sql: str) -> None:
    with services.engine.begin() as connection:
        connection.execute(text(sql))


def test_intact_chain_verifies(chained):
    result = chained.audit.verify()
    assert result.ok and result.checked == 5
    assert chained.audit.head()[0] == 5


def test_edited_entry_is_named(chained):
    execute(chained, "UPDATE audit_events SET actor = 'UMALLORY1' WHERE seq = 3")
    result = chained.audit.verify()
    assert not result.ok and result.broken_seq == 3
    assert "edited" in result.describe()


def test_deleted_entry_is_named(chained):
    execute(chained, "DELETE FROM audit_events WHERE seq = 2")
    result = chained.audit.verify()
    assert (result.ok, result.broken_seq) == (False, 3)


def test_deleted_last_entry_is_detected(chained):
    execute(chained, "DELETE FROM audit_events WHERE seq = 5")
    result = chained.audit.verify()
    assert (result.ok, result.broken_seq) == (False, 5)


def test_inserted_entry_is_named(chained):
    execute(
        chained,
        "INSERT INTO audit_events (id, seq, at, actor, action, vendor_id, details, key_id, prev_mac, mac) "
        "SELECT 100, 99, at, actor, 'key.deleted', vendor_id, details, key_id, mac, mac "
        "FROM audit_events WHERE seq = 5",
    )
    result = chained.audit.verify()
    assert (result.ok, result.broken_seq) == (False, 99)


def test_reordered_entries_are_named(chained):
    # swap the contents of rows 2 and 3, keeping each row's place and seq
    execute(chained, "UPDATE audit_events SET id = -2 WHERE id = 2")
    execute(chained, "UPDATE audit_events SET id = 2 WHERE id = 3")
    execute(chained, "UPDATE audit_events SET id = 3 WHERE id = -2")
    result = chained.audit.verify()
    assert not result.ok and result.broken_seq == 3


def test_export_has_no_secrets_and_neutralises_formulas(chained):
    with time_machine.travel("2026-11-27T04:00:00Z", tick=False):
        chained.keys.register(ADMIN, form("A00000009", label='=HYPERLINK("http://evil")'))
    out = io.StringIO()
    assert chained.audit.export(out, "csv") == 6
    assert SECRET_MARK not in out.getvalue()
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert json.loads(rows[-1]["details"])["label"].startswith("=HYPERLINK")  # JSON cell starts with {
    jsonl = io.StringIO()
    chained.audit.export(jsonl, "jsonl")
    lines = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert SECRET_MARK not in jsonl.getvalue()


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_spreadsheet_formula_cells_are_prefixed(cell):
    assert spreadsheet_safe(cell) == "'" + cell


def test_plain_cells_are_unchanged():
    assert spreadsheet_safe("Shop A") == "Shop A"
    assert spreadsheet_safe(None) == ""


def test_the_chain_verifies_while_other_writers_append(services):
    """`audit verify` on a running bot: entries committed while the walk runs are not read as a broken chain (on
    PostgreSQL each statement sees a newer snapshot, and the head used to be read after the entries)."""
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            with services.ctx.transaction() as session:
                services.ctx.record(session, ADMIN, "test.appended")

    writer = threading.Thread(target=append)
    writer.start()
    try:
        results = [services.audit.verify() for _ in range(60)]
    finally:
        stop.set()
        writer.join()
    assert [r for r in results if not r.ok] == []
    assert services.audit.verify().ok
