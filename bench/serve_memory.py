"""`serve` at BENCH_KEYS keys (default 100,000): RSS of gunicorn's master and worker after `/coupang-key status`
and an App Home open, and how long App Home takes to be published, SQLite and PostgreSQL.

The bot runs as operators run it (``python -m bot serve``, gunicorn, ``--no-scheduler`` so no sweep runs
meanwhile) with Slack faked on loopback (tests/fake_slack.py, which refuses a Home view of more than 100 blocks).
Keys are inserted with core INSERTs (bench/reminder_sweep.py's ``_populate``). ``BENCH_CODE=/path`` serves
another checkout (the "before" column).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from bench.integrator import CODE, KEYS
from bench.reminder_sweep import MASTER_KEY, _populate, _postgres_database
from bot.bootstrap import build_services
from bot.config import load_settings
from storage.db import make_engine, upgrade
from tests.fake_slack import FakeSlack
from tests.slack_harness import SIGNING_SECRET, signed_headers
from tests.test_slack_serve import free_port, request, wait_until_up

ADMIN = "UADMIN001"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def status_command(port: int, fake: FakeSlack) -> float:
    form = urlencode(
        {
            "command": "/coupang-key",
            "text": "status",
            "user_id": ADMIN,
            "channel_id": "CBENCH001",
            "team_id": "T0FAKE",
            "trigger_id": fake.new_trigger_id(),
            "response_url": fake.response_url(),
        }
    )
    start = time.perf_counter()
    code, _ = request(port, "POST", "/slack/events", form, signed_headers(SIGNING_SECRET, form))
    assert code == 200
    return time.perf_counter() - start


def home_opened(port: int, fake: FakeSlack, n: int) -> float:
    """Seconds from sending ``app_home_opened`` until Slack received views.publish."""
    body = json.dumps(
        {
            "team_id": "T0FAKE",
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": f"EvBENCH{n:04d}",
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": ADMIN, "channel": "D0HOME001", "tab": "home"},
        }
    )
    before = len(fake.calls_to("views.publish"))
    start = time.perf_counter()
    code, _ = request(
        port, "POST", "/slack/events", body, signed_headers(SIGNING_SECRET, body, content_type="application/json")
    )
    assert code == 200
    fake.wait_for("views.publish", count=before + 1, timeout=60)
    return time.perf_counter() - start


def bench_backend(name: str, url: str, tmp: Path) -> str:
    engine = make_engine(url)
    upgrade(engine)
    services = build_services(load_settings({"KEYBOT_MASTER_KEY": MASTER_KEY, "DATABASE_URL": url}), engine=engine)
    _populate(engine, services, KEYS)
    engine.dispose()
    port = free_port()
    with FakeSlack() as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "DATABASE_URL"))},
            "KEYBOT_MASTER_KEY": MASTER_KEY,
            "KEYBOT_ADMINS": ADMIN,
            "DATABASE_URL": url,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.base_url,
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        if CODE:
            env["PYTHONPATH"] = CODE
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-scheduler"],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until_up(port, process, timeout=120)
            idle = rss_mb(process.pid) + sum(rss_mb(c) for c in children(process.pid))
            status = min(status_command(port, fake) for _ in range(5))
            homes = sorted(home_opened(port, fake, n) for n in range(3))
            workers = children(process.pid)
            master, worker = rss_mb(process.pid), sum(rss_mb(c) for c in workers)
            blocks = len(fake.calls_to("views.publish")[-1].params["view"]["blocks"])
            refused = len(fake.refused)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return (
        f"| {name} | this run | {KEYS:,} | {idle:.0f} MB | {status * 1000:.0f} ms "
        f"| {homes[0]:.2f} s / {homes[-1]:.2f} s "
        f"| {blocks} blocks, {refused} refused | {master:.0f} + {worker:.0f} = **{master + worker:.0f} MB** |"
    )


# measured on the code before this work (commit 77a41a7) with BENCH_CODE=<that checkout> python -m bench serve_memory
BEFORE = {
    "SQLite": "| 172 MB | 12 ms | 4.57 s / 4.63 s | 94 blocks, 0 refused | 94 + 189 = 283 MB |",
    "PostgreSQL": "| 187 MB | 24 ms | 4.61 s / 5.23 s | 94 blocks, 0 refused | 103 + 505 = 607 MB |",
}


def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rows.append("| SQLite | before | 100,000 " + BEFORE["SQLite"])
        rows.append(bench_backend("SQLite", f"sqlite:///{tmp / 'bench.db'}", tmp))
        pg = _postgres_database()
        if pg is not None:
            url, drop = pg
            rows.append("| PostgreSQL | before | 100,000 " + BEFORE["PostgreSQL"])
            try:
                rows.append(bench_backend("PostgreSQL", url, tmp))
            finally:
                drop()
    return "\n".join(
        [
            "## `serve` at 100,000 keys: memory and App Home (bench/serve_memory.py)",
            "",
            "`python -m bench serve_memory` (`BENCH_KEYS`, default 100,000): `python -m bot serve --no-scheduler` "
            "(gunicorn, one worker) with Slack faked on loopback (tests/fake_slack.py refuses a Home view of more "
            "than 100 blocks); five `/coupang-key status` commands, then three `app_home_opened` events, each "
            "timed until Slack received `views.publish`. RSS from /proc of the master and its worker after that.",
            "Goals: master + worker ≤ 150 MB; App Home published within 2 s.",
            "",
            "| database | code | keys | RSS at start | status reply (best of 5) | App Home published (best / worst "
            "of 3) | Home view | RSS master + worker after |",
            "|---|---|---:|---:|---:|---:|---|---:|",
            *rows,
            "",
            "Before, App Home built a status for every key (100,000 of them, ORM objects included) to show 45; "
            "now it loads the page of the 45 most urgent and counts the rest in the database "
            "(plans in the integrator section). gunicorn's master used to be the CLI process itself, holding "
            "everything the bot imports beside the worker's copy; now it is a fresh interpreter that loads only "
            "gunicorn, and only the worker loads the bot. boto3 and hvac (10–25 MB) load only when a consumer "
            "of that kind is delivered to.",
        ]
    )


if __name__ == "__main__":
    print(run())
