"""The suite's clock (tests/clock.py): KEYBOT_TEST_NOW / KEYBOT_TEST_SHIFT_DAYS move a whole pytest run, and a
pinned test still sees its own instant inside it. This is how `make test-clocks` runs the date-sensitive modules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from tests.clock import (
    AFTER_SEOUL_MIDNIGHT,
    BEFORE_SEOUL_MIDNIGHT,
    MONDAY_1000_KST,
    NOW_VARIABLE,
    SHIFT_VARIABLE,
    START,
    Clock,
    process_travel,
)

ROOT = Path(__file__).resolve().parents[1]

PROBES = """
from datetime import UTC, datetime, timedelta

import time_machine

from tests.clock import START, seoul_today

IMPORTED_ON = seoul_today()  # what a module constant would keep


def test_the_run_reads_the_moved_clock():
    real = time_machine.escape_hatch.datetime.datetime.now(UTC)
    print("RUN-CLOCK", seoul_today().isoformat(), (datetime.now(UTC) - real).days, IMPORTED_ON.isoformat())


def test_a_pinned_test_sees_its_own_instant(clock):
    assert datetime.now(UTC) == START == clock.now()
    clock.advance(days=3)
    assert datetime.now(UTC) == START + timedelta(days=3)


def test_after_it_the_run_clock_is_back():
    print("RUN-CLOCK-AFTER", seoul_today().isoformat())
"""


def run_probes(tmp_path: Path, **env: str) -> dict[str, list[str]]:
    probes = tmp_path / "test_probes.py"
    probes.write_text(PROBES)
    environ = {k: v for k, v in os.environ.items() if k not in (NOW_VARIABLE, SHIFT_VARIABLE)} | env
    environ["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-s", "-q", str(probes)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    return {name: values.split() for name, values in re.findall(r"(RUN-CLOCK\S*) ([^\n.]*\d)", done.stdout)}


def test_keybot_test_now_moves_a_whole_run_to_a_monday_morning_in_seoul(tmp_path):
    printed = run_probes(tmp_path, **{NOW_VARIABLE: "2026-12-14T10:00+09:00"})
    assert printed["RUN-CLOCK"][0] == "2026-12-14"
    assert printed["RUN-CLOCK-AFTER"] == ["2026-12-14"]  # the pinned test's travel ended with it


def test_just_after_seoul_midnight_the_modules_were_imported_the_day_before(tmp_path):
    """So a date computed at import (SEOUL_TODAY in test_ops_monitoring, issue 19) fails this run."""
    printed = run_probes(tmp_path, **{NOW_VARIABLE: AFTER_SEOUL_MIDNIGHT.isoformat()})
    today, _, imported_on = printed["RUN-CLOCK"]
    assert (imported_on, today) == ("2026-12-15", "2026-12-16")


def test_keybot_test_shift_days_moves_a_whole_run_by_whole_days(tmp_path):
    printed = run_probes(tmp_path, **{SHIFT_VARIABLE: "180"})
    assert int(printed["RUN-CLOCK"][1]) in (179, 180)  # 180 days ahead of the real clock (timedelta floors)


def test_instant_without_offset_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="needs an offset"):
        process_travel({NOW_VARIABLE: "2026-12-14T10:00"})
    assert process_travel({}) is None and process_travel({NOW_VARIABLE: " ", SHIFT_VARIABLE: ""}) is None


def test_an_instant_and_a_shift_add_up():
    traveller = process_travel({NOW_VARIABLE: "2026-12-15T23:59:30+09:00", SHIFT_VARIABLE: "1"})
    assert traveller is not None
    with traveller:
        assert datetime.now(UTC).date() == date(2026, 12, 16)  # 14:59:30 UTC, one day later
        assert datetime.now(UTC) - datetime(2026, 12, 16, 14, 59, 30, tzinfo=UTC) < timedelta(minutes=1)


def test_the_clock_fixture_pins_the_process_and_moves_with_it(clock: Clock):
    assert datetime.now(UTC) == clock.now() == START
    clock.at = START + timedelta(hours=14)  # past midnight in Seoul
    assert datetime.now(UTC) == START + timedelta(hours=14)


def test_make_test_clocks_runs_at_the_named_instants_and_ci_runs_it():
    makefile = (ROOT / "Makefile").read_text()
    instants = re.search(r"^CLOCK_INSTANTS := (.+)$", makefile, re.MULTILINE)
    assert instants is not None
    named = [datetime.fromisoformat(text) for text in instants.group(1).split()]
    assert named == [MONDAY_1000_KST, BEFORE_SEOUL_MIDNIGHT, AFTER_SEOUL_MIDNIGHT]
    assert MONDAY_1000_KST.weekday() == 0  # the weekly summary's default day, after the 09:00 reminder time
    before, after = (at.astimezone(UTC) for at in (BEFORE_SEOUL_MIDNIGHT, AFTER_SEOUL_MIDNIGHT))
    assert after - before == timedelta(minutes=1) and BEFORE_SEOUL_MIDNIGHT.date() != AFTER_SEOUL_MIDNIGHT.date()
    assert before.date() == after.date() != AFTER_SEOUL_MIDNIGHT.date()  # UTC still on the day Seoul left
    assert "make test-clocks" in (ROOT / ".ci/run").read_text()


def test_moving_the_clock_inside_a_nested_travel_keeps_the_nested_one(clock: Clock):
    with time_machine.travel(MONDAY_1000_KST, tick=False):
        clock.advance(hours=1)
        assert datetime.now(UTC) == MONDAY_1000_KST  # the inner travel still wins
        assert clock.now() == START + timedelta(hours=1)
    assert datetime.now(UTC) == START + timedelta(hours=1)
