"""``GET /healthz``: a list of named checks, each answering "ok" (or "disabled"/"unknown") or a sentence.

A sentence makes the answer unhealthy (503), except a warning's (``reminder_channels``: a channel refuses the
bot's reminders), which a person must fix but which restarting or replacing the process would not.

The answer always comes within a second: the database check runs in a thread of its own with a deadline, and a
check still stuck from an earlier request is reported as failing instead of queueing another one behind it.
Checks that only read memory (the scheduler's last sweep, Slack's last answer) cost nothing.
Add a check by appending a :class:`HealthCheck` to :func:`standard_checks`' list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select, text

from bot.bootstrap import Services
from bot.monitor import Monitor
from storage.models import Key

logger = logging.getLogger(__name__)

DATABASE_DEADLINE_SECONDS = 0.7
SWEEP_FRESHNESS = timedelta(minutes=15)
OK = "ok"


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    state: str  # "ok", "disabled", "unknown" when healthy; otherwise a sentence saying what is wrong


@dataclass(frozen=True)
class HealthCheck:
    name: str
    run: Callable[[], Verdict]


class BoundedCheck:
    """A check that reads the database, given :data:`DATABASE_DEADLINE_SECONDS` to answer.

    ``read`` returns None when healthy, or a sentence saying what is wrong.
    """

    def __init__(
        self, read: Callable[[], str | None], *, deadline: float = DATABASE_DEADLINE_SECONDS, warning: bool = False
    ):
        self.read = read
        self.deadline = deadline
        self.warning = warning  # the sentence names something a person must fix; the process itself is fine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz-db")
        self._pending: Future[str | None] | None = None
        self._started = 0.0  # time.monotonic() when the pending read began
        self._lock = threading.Lock()

    def start(self) -> Future[str | None]:
        """Begin the read (unless one is still running), so several checks wait for the database side by side."""
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = self._executor.submit(self.read)
                self._started = time.monotonic()
            return self._pending

    def __call__(self) -> Verdict:
        with self._lock:  # a read still running, or one just started by health_report, is not asked again
            pending = self._pending
            if pending is not None and pending.done() and time.monotonic() - self._started >= self.deadline:
                pending = None
        pending = pending or self.start()
        try:  # the deadline counts from the read's start: checks started together end together
            problem = pending.result(timeout=max(0.0, self._started + self.deadline - time.monotonic()))
        except FutureTimeout:
            if self.warning:  # the database check says it
                return Verdict(True, "unknown")
            return Verdict(False, f"The database did not answer within {self.deadline:g} s (locked or unreachable).")
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; the log says why
            logger.warning("health check: the database does not answer: %s", exc.__class__.__name__)
            if self.warning:
                return Verdict(True, "unknown")
            return Verdict(False, f"The database does not answer ({exc.__class__.__name__}).")
        return Verdict(problem is None or self.warning, problem or OK)


def read_keys(engine: Engine) -> None:
    """One real read of the keys table."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":  # the stuck query ends on its own, too
            connection.execute(text("SET LOCAL statement_timeout = 5000"))
        connection.execute(select(Key.id).limit(1)).all()


def scheduler_check(monitor: Monitor) -> Verdict:
    started = monitor.scheduler_started_at
    if started is None:
        return Verdict(True, "disabled")
    last = monitor.last_sweep_at
    if monitor.clock.now() - (last or started) <= SWEEP_FRESHNESS:
        return Verdict(True, OK)
    since = f"since {last.isoformat(timespec='seconds')}" if last else "since start-up"
    minutes = int(SWEEP_FRESHNESS.total_seconds() // 60)
    return Verdict(False, f"The scheduler has not finished a reminder sweep {since} (limit {minutes} minutes).")


def slack_check(monitor: Monitor) -> Verdict:
    state = monitor.slack_state
    if state in (OK, "unknown"):
        return Verdict(True, state)
    return Verdict(False, f"Slack refuses the bot token ({state}): reinstall the app or update SLACK_BOT_TOKEN.")


def reminder_channels_problem(services: Services) -> str | None:
    """Channels that refuse the bot's reminders: a person must invite it. Reported, but healthy: restarting the
    process would not help, and ``/healthz`` failing would take a working bot out of service."""
    problems = services.reminders.undeliverable()
    if not problems:
        return None
    named = ", ".join(f"{p.channel_id} ({p.error}: {len(p.vendor_ids)} key(s))" for p in problems)
    return f"Reminders cannot be posted in {named}: invite the bot to each channel (see status in Slack)."


def standard_checks(services: Services) -> list[HealthCheck]:
    monitor = services.monitor
    return [
        HealthCheck("database", BoundedCheck(lambda: read_keys(services.engine))),
        HealthCheck("master_key", BoundedCheck(services.master_key_problem)),
        HealthCheck("scheduler", lambda: scheduler_check(monitor)),
        HealthCheck("slack", lambda: slack_check(monitor)),
        HealthCheck("reminder_channels", BoundedCheck(lambda: reminder_channels_problem(services), warning=True)),
    ]


def health_report(checks: list[HealthCheck], monitor: Monitor) -> tuple[bool, dict[str, Any]]:
    for check in checks:  # the database reads run side by side: the answer still comes within one deadline
        if isinstance(check.run, BoundedCheck):
            check.run.start()
    verdicts = {check.name: check.run() for check in checks}
    ok = all(v.healthy for v in verdicts.values())
    last = monitor.last_sweep_at
    return ok, {
        "ok": ok,
        "checks": {name: v.state for name, v in verdicts.items()},
        "last_sweep_at": last.isoformat() if last else None,
    }
