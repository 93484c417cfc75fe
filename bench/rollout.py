"""Key rollout: time until every consumer holds a new generation, on SQLite and PostgreSQL.

Two shapes: one key with 100 webhook consumers, and 1,000 keys with one webhook consumer each. Consumers are
real rows (encrypted configuration and signing secret); the webhooks go over loopback HTTP to a threaded
receiver that answers 200 at once, so what is measured is the bot's side: claiming each attempt in the
database, decrypting, signing, the POST, settling the delivery and its audit event.
"""

from __future__ import annotations

import base64
import tempfile
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

from sqlalchemy import select

from bench.reminder_sweep import _postgres_database
from bot.bootstrap import Services, build_services
from bot.config import load_settings
from bot.services.rollout import new_signing_secret
from storage import rollout as store
from storage.db import make_engine, upgrade
from storage.models import Consumer, Key, RolloutDelivery

MASTER_KEY = base64.b64encode(b"r" * 32).decode()  # a throwaway key for a throwaway database
EXPIRES = date(2027, 5, 1)


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _populate(services: Services, keys: int, consumers_per_key: int, url: str) -> None:
    ctx = services.ctx
    now = ctx.clock.now()
    with ctx.transaction() as session:
        ctx.record(session, "bench", "bench.populated")  # a live bot's audit chain is never empty
        for i in range(keys):
            vendor_id = f"A{i:08d}"
            key = Key(
                vendor_id=vendor_id,
                label=f"Shop {i}",
                generation=1,
                issued_on=None,
                expires_on=EXPIRES,
                integration="integrator",
                integrator_name="bench",
                ip_addresses=[],
                created_at=now,
                updated_at=now,
            )
            ctx.keys.add(session, key=key, access_key=f"AKIA{i:012d}", secret_key=f"secret-{i:024d}")
            for c in range(consumers_per_key):
                consumer = Consumer(
                    vendor_id=vendor_id, name=f"c{c}", kind="webhook", target=url, created_by="bench", created_at=now
                )
                store.seal(ctx.keys.keyring, consumer, config={"url": url}, signing_secret=new_signing_secret())
                session.add(consumer)
    with ctx.transaction() as session:  # a new generation everywhere: every consumer is due
        for key in ctx.keys.all(session):
            ctx.keys.new_generation(
                session,
                key=key,
                access_key=f"AKIA-new-{key.vendor_id}",
                secret_key=f"new-secret-{key.vendor_id}",
                issued_on=None,
                expires_on=EXPIRES,
                now=now,
            )
            store.queue_generation(session, vendor_id=key.vendor_id, generation=2, now=now, thread=None)


def _measure(url: str, keys: int, consumers_per_key: int, receiver: str) -> tuple[float, int, int]:
    settings = load_settings({"KEYBOT_MASTER_KEY": MASTER_KEY, "DATABASE_URL": url})
    services = build_services(settings)
    try:
        _populate(services, keys, consumers_per_key, receiver)
        start = time.perf_counter()
        rounds = 0
        while services.rollout.run_due():  # one sweep attempts everything due; a second finds nothing left
            rounds += 1
        took = time.perf_counter() - start
        with services.ctx.transaction() as session:
            delivered = len(
                session.scalars(select(RolloutDelivery.id).where(RolloutDelivery.state == "delivered")).all()
            )
        return took, delivered, rounds
    finally:
        services.rollout.stop()
        services.engine.dispose()


def run() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{server.server_address[1]}/hook"
    rows = []
    shapes = ((1, 100, "1 key × 100 webhooks"), (1000, 1, "1,000 keys × 1 webhook"))
    try:
        for keys, per_key, label in shapes:
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite:///{Path(folder) / 'bench.db'}"
                engine = make_engine(url)
                upgrade(engine)
                engine.dispose()
                took, delivered, rounds = _measure(url, keys, per_key, receiver)
                rows.append(("SQLite", label, took, delivered, keys * per_key, rounds))
            pg = _postgres_database()
            if pg is not None:
                url, drop = pg
                engine = make_engine(url)
                upgrade(engine)
                engine.dispose()
                try:
                    took, delivered, rounds = _measure(url, keys, per_key, receiver)
                    rows.append(("PostgreSQL", label, took, delivered, keys * per_key, rounds))
                finally:
                    drop()
    finally:
        server.shutdown()
    table = "\n".join(
        f"| {db} | {label} | {delivered:,}/{total:,} | {took * 1000:,.0f} ms | {took * 1000 / total:.1f} ms |"
        for db, label, took, delivered, total, _ in rows
    )
    return f"""## Key rollout: time until every consumer holds the new generation (bench/rollout.py)

Every consumer is due at once (a new key was just entered); `run_due` attempts them with 8 delivery threads,
each attempt claimed in the database (a lease on the consumer), decrypted, signed (Standard Webhooks), POSTed
over loopback to a receiver that answers 200 at once, then settled with one audit event. Time from the first
sweep until all are delivered.

| database | shape | delivered | until all delivered | per delivery |
|---|---|---:|---:|---:|
{table}

Each delivery is three short transactions (claim, settle + audit append; the audit chain appends one entry at
a time), so the time grows with the number of consumers, not keys; the webhook itself is a small part on
loopback. A slow real receiver (up to the 10-second timeout) occupies one of the 8 threads, not the others.
"""
