"""The suite's one clock: named instants, and a hand-moved :class:`Clock` that moves the whole process with it.

A test never depends on today's date. It either

- takes the ``clock`` fixture (tests/conftest.py): a :class:`Clock` pinned at :data:`START` that also travels the
  process there with time-machine, so what the services read through the injected clock and what Bolt, the fakes
  and ``datetime.now()`` read agree; ``clock.advance(minutes=16)`` or ``clock.at = MONDAY_1000_KST`` move both; or
- uses the real clock on purpose (a key "10 days from today": :func:`seoul_today`, read when the test runs, never
  at import), and then runs under ``KEYBOT_TEST_NOW`` / ``KEYBOT_TEST_SHIFT_DAYS`` too (see :func:`process_travel`
  and ``make test-clocks``), so a test that depends on the day fails the day it is written.

Tests whose data expire at fixed dates stay pinned (the fixture, or ``time_machine.travel`` at one of the
instants below); a pinned travel nests inside the process-wide one and wins.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import time_machine

SEOUL = ZoneInfo("Asia/Seoul")  # KEYBOT_TIMEZONE's default


def kst(day: date, hour: int = 9, minute: int = 0, second: int = 0) -> datetime:
    """``day`` at ``hour:minute`` in Seoul."""
    return datetime.combine(day, time(hour, minute, second), tzinfo=SEOUL)


def seoul_today() -> date:
    """Today in Seoul by the (possibly travelled) process clock, read when called: never keep it in a constant."""
    return datetime.now(UTC).astimezone(SEOUL).date()


# ------------------------------------------------------------------------------------------ the named instants
# tests.factories.form() keys expire on 2026-11-28 (issued 2026-06-01, 180 days)
START = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)  # Friday 10:00 in Seoul: D-1 for form() keys, in the window
IN_WINDOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # Friday 12:00 in Seoul: D-1 for form() keys
MONDAY_0900_SEOUL = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # the weekly summary's default day and hour
MONDAY_1000_KST = kst(date(2026, 12, 14), 10)  # a Monday morning: the weekly summary is due (issue 19)
BEFORE_SEOUL_MIDNIGHT = kst(date(2026, 12, 15), 23, 59, 30)  # Tuesday 23:59:30 in Seoul (14:59:30 UTC)
AFTER_SEOUL_MIDNIGHT = kst(date(2026, 12, 16), 0, 0, 30)  # Wednesday 00:00:30 in Seoul (15:00:30 UTC)


class Clock:
    """A clock moved by hand (``bot.services.base.Clock``). With :meth:`travel` it also moves the process clock
    (time-machine, not ticking), so everything in the process reads the same instant."""

    def __init__(self, at: datetime = START) -> None:
        self._at = at
        self._lock = threading.Lock()
        self._traveller: time_machine.travel | None = None
        self._coordinates: time_machine.Coordinates | None = None

    def now(self) -> datetime:
        with self._lock:
            return self._at

    @property
    def at(self) -> datetime:
        return self.now()

    @at.setter
    def at(self, value: datetime) -> None:
        with self._lock:
            self._at = value
            if self._coordinates is not None:  # moved in place: a travel nested inside it stays on top
                self._coordinates.move_to(value)

    def advance(self, **delta: float) -> None:
        with self._lock:
            moved = self._at + timedelta(**delta)
        self.at = moved

    def travel(self) -> Clock:
        """Move the process clock here too, until :meth:`stop`."""
        with self._lock:
            if self._traveller is None:
                self._traveller = time_machine.travel(self._at, tick=False)
                self._coordinates = self._traveller.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._traveller is not None:
                self._traveller.stop()
                self._traveller = self._coordinates = None


# --------------------------------------------------------------------- the process-wide clock for a whole run
NOW_VARIABLE = "KEYBOT_TEST_NOW"  # an ISO instant with its offset, e.g. 2026-12-14T10:00+09:00
SHIFT_VARIABLE = "KEYBOT_TEST_SHIFT_DAYS"  # whole days added to the real date, e.g. 180


RUN_LEAD = timedelta(minutes=1)  # imports and collection happen this long before the instant the tests start at


def process_travel(
    environ: os._Environ[str] | dict[str, str] = os.environ, *, lead: timedelta = timedelta(0)
) -> time_machine.travel | None:
    """The travel ``KEYBOT_TEST_NOW`` / ``KEYBOT_TEST_SHIFT_DAYS`` ask for (ticking: time still passes), or None.

    Both may be given: the shift is added to the instant (or to the real time, read past any travel). Unset or
    empty: the real clock. conftest starts one for the whole process (collection and session fixtures included)
    and a fresh one for each test, so every test starts at the instant: at 23:59:30 each test sees the last
    seconds of the Seoul day, not only the first test of the run. The process starts ``lead`` earlier
    (:data:`RUN_LEAD`): at 00:00:30 the modules are imported on the day before the tests run, so a date kept in a
    module constant fails there, as it would in a run that crosses midnight."""
    at_text = environ.get(NOW_VARIABLE, "").strip()
    shift_text = environ.get(SHIFT_VARIABLE, "").strip()
    if not at_text and not shift_text:
        return None
    if at_text:
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError(f"{NOW_VARIABLE}={at_text!r} needs an offset, e.g. 2026-12-14T10:00+09:00")
    else:
        escape = time_machine.escape_hatch
        at = escape.datetime.datetime.now(UTC) if escape.is_travelling() else datetime.now(UTC)
    return time_machine.travel(at + timedelta(days=int(shift_text or 0)) - lead, tick=True)
