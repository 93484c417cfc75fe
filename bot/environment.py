"""Where the bot's settings and database come from: the process environment over ``.env``, and ``DATABASE_URL``.

Used by the command line and by the gunicorn worker (``bot.serve``), which must not import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bot.config import ConfigError, Settings, load_settings
from storage.db import make_engine

ENV_FILE = Path(".env")


def load_environment() -> Settings:
    """The process environment, falling back to ``.env`` (read without changing ``os.environ``)."""
    file_values = {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
    return load_settings({**file_values, **os.environ})


def open_database(url: str) -> Engine:
    """The engine for ``DATABASE_URL``; a URL that cannot name a usable database is a ConfigError."""
    use = "sqlite:///data/keybot.db or postgresql+psycopg://user:password@host/keybot"
    try:
        return make_engine(url)
    except (NoSuchModuleError, ImportError):
        raise ConfigError(
            "DATABASE_URL names a database this bot has no driver for ({scheme}): use {use}.",
            scheme=url.split(":", 1)[0],
            use=use,
        ) from None
    except (ArgumentError, ValueError):
        raise ConfigError("DATABASE_URL is not a database URL: use {use}.", use=use) from None
    except OSError as exc:  # the SQLite file's folder cannot be created
        raise ConfigError(
            "DATABASE_URL points to a folder that cannot be created ({reason}): use {use}.",
            reason=exc.strerror,
            use=use,
        ) from None
