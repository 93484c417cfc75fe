"""Integrator scale: `keys import` and `status --json` of BENCH_KEYS keys (default 100,000), SQLite and PostgreSQL.

Each command runs as its own process (``python -m bot …``, as an operator runs it); wall time and peak RSS of
that process come from ``os.wait4``. ``audit verify`` runs after the import (the chain must still verify).
``BENCH_BEFORE=/path/to/old/tree`` runs the same commands against another checkout (for the "before" column).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.reminder_sweep import MASTER_KEY, PG_ADMIN_URL, _postgres_database

KEYS = int(os.environ.get("BENCH_KEYS", "100000"))
TODAY = date(2026, 12, 1)
CODE = os.environ.get("BENCH_CODE")  # another checkout to measure (PYTHONPATH), e.g. the code before a change


def write_csv(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "vendor_id",
                "label",
                "access_key",
                "secret_key",
                "expires_on",
                "channel",
                "integration",
                "integrator_name",
            ]
        )
        for i in range(n):
            expires = TODAY + timedelta(days=i % 190 - 10)
            writer.writerow(
                [
                    f"A{i:08d}",
                    f"Shop {i}",
                    f"ak-{i:036d}",
                    f"sk-{i:036d}",
                    expires.isoformat(),
                    f"CBENCH{i % 40:03d}",
                    "integrator",
                    "Bench Integrator",
                ]
            )


def run_cli(
    url: str, cwd: Path, *args: str, stdout: Path | None = None, code: str | None = CODE
) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of one ``python -m bot`` process (``code``: another checkout)."""
    env = {**os.environ, "DATABASE_URL": url, "KEYBOT_MASTER_KEY": MASTER_KEY, "LOG_LEVEL": "WARNING"}
    if code:
        env["PYTHONPATH"] = code
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stdout:
        out.close()  # type: ignore[union-attr]
    if proc.returncode:
        print(err.decode()[-2000:], file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def bench_backend(name: str, url: str, tmp: Path, csv_path: Path) -> list[str]:
    rows = []
    run_cli(url, tmp, "db", "upgrade")
    seconds, rss, code = run_cli(url, tmp, "keys", "import", str(csv_path))
    rows.append(f"| {name} | `keys import` {KEYS:,} rows | {seconds:.1f} s | {rss:.0f} MB | exit {code} |")
    if code and CODE:  # the old code could not import them: seed with this checkout, measure the rest
        run_cli(url, tmp, "keys", "import", str(csv_path), code=None)
    seconds, rss, code = run_cli(url, tmp, "audit", "verify")
    rows.append(f"| {name} | `audit verify` after it | {seconds:.1f} s | {rss:.0f} MB | exit {code} |")
    out = tmp / f"status-{name}.json"
    seconds, rss, code = run_cli(url, tmp, "status", "--json", stdout=out)
    rows.append(
        f"| {name} | `status --json` at {KEYS:,} keys | {seconds:.2f} s | {rss:.0f} MB | exit {code}, "
        f"{out.stat().st_size / 1e6:.1f} MB written |"
    )
    return rows


def run() -> str:
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        csv_path = tmp / "keys.csv"
        write_csv(csv_path, KEYS)
        rows += bench_backend("SQLite", f"sqlite:///{tmp / 'bench.db'}", tmp, csv_path)
        pg = _postgres_database()
        if pg is None:
            rows.append(f"| PostgreSQL | not reachable at {make_url(PG_ADMIN_URL).host} | | | |")
        else:
            url, drop = pg
            try:
                rows += bench_backend("PostgreSQL", url, tmp, csv_path)
            finally:
                drop()
    return "\n".join(["| database | command | time | peak RSS | |", "|---|---|---:|---:|---|", *rows])


if __name__ == "__main__":
    print(run())
