"""The verification jobs' idle tick at BENCH_KEYS self-developed keys (default 100,000), SQLite and PostgreSQL.

Every few minutes the scheduler runs the post-deadline check and (``KEYBOT_VERIFY_DAILY=true``) the daily probe.
On a quiet day nothing is due: every key was probed after its slot today and no access deadline passed, so no
Coupang call is made and the tick is pure database + Python time. Keys are inserted with core INSERTs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from bench.integrator import KEYS
from bench.reminder_sweep import MASTER_KEY, _populate, _postgres_database
from bot.bootstrap import build_services
from bot.config import load_settings
from storage.db import make_engine, upgrade
from storage.models import Key


def _median_ms(work: object, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def bench_backend(name: str, url: str) -> str:
    engine = make_engine(url)
    upgrade(engine)
    env = {"KEYBOT_MASTER_KEY": MASTER_KEY, "DATABASE_URL": url, "KEYBOT_VERIFY_DAILY": "true"}
    services = build_services(load_settings(env), engine=engine)
    _populate(engine, services, KEYS)
    with engine.begin() as connection:  # self-developed (the ones checked), each probed already today
        connection.execute(update(Key).values(integration="self", probed_at=datetime.now(UTC)))
    verification = services.verification
    deadline = _median_ms(verification.run_deadline_checks)
    probe = _median_ms(verification.run_daily_probe)
    assert verification.run_deadline_checks() == [] and verification.run_daily_probe() == []
    engine.dispose()
    return f"| {name} | {KEYS:,} | {deadline:,.1f} ms | {probe:,.0f} ms |"


def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_backend("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}"))
    pg = _postgres_database()
    if pg is not None:
        url, drop = pg
        try:
            rows.append(bench_backend("PostgreSQL", url))
        finally:
            drop()
    return "\n".join(
        [
            "## Verification jobs at 100,000 keys, nothing due (bench/verify_probe.py)",
            "",
            "`python -m bench verify_probe` (`BENCH_KEYS`): every self-developed key already probed today and no "
            "access deadline passed, so a tick makes no Coupang call; median of 5 ticks. The scheduler runs both "
            "every few minutes. The post-deadline check is one filtered query; the daily probe reads "
            "`(vendor_id, probed_at, access_deadline)` of every self-developed key and computes each one's slot "
            "in Python. Unchanged by this work (no budget was recorded before); figures for the record.",
            "",
            "| database | self-developed keys | post-deadline check, idle | daily probe, idle |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(run())
