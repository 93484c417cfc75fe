"""Alembic environment: the engine comes from the caller (``storage.db.upgrade``) or DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context

from storage.db import make_engine
from storage.models import Base

config = context.config
engine = config.attributes.get("engine") or make_engine(os.environ.get("DATABASE_URL", "sqlite:///data/keybot.db"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
