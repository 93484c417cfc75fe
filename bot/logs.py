"""Log set-up: ``LOG_FORMAT=text`` (a line for people) or ``json`` (one JSON object a line, for log shippers).

JSON lines carry ``time`` (UTC, ISO-8601), ``level``, ``logger``, ``message``, the traceback as ``exception`` when
there is one, the fields bound with :func:`bind_log_fields` (the Slack request's ``request_id`` and ``user_id``)
and every extra field the call passed (``logger.info(..., extra={"vendor_id": ...})``).

:func:`configure_logging` installs the one secret filter (:mod:`bot.slack.redact`) in front of every record, and
each text field of a JSON line goes through it again here, so no secret reaches the log in either format.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.slack import redact as redaction
from bot.slack.redact import redact

if TYPE_CHECKING:
    from bot.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("log_fields", default={})  # noqa: B039 - never mutated


def bind_log_fields(**fields: str) -> None:
    """From now on in this context (a request's thread, and work handed on with the context), JSON lines carry
    ``fields``, until the next bind replaces them: each Slack request binds its own on arrival."""
    _CONTEXT.set(fields)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **_CONTEXT.get(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = redact(value) if isinstance(value, str) else value
        exception = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exception:
            line["exception"] = redact(exception)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str = "text", *, settings: Settings | None = None) -> None:
    """Log to standard error at ``level`` in ``fmt``, every record through the secret filter (which also hides the
    secrets ``settings`` hold)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)
    redaction.install(settings=settings)


def gunicorn_logconfig(level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict`` for ``LOG_FORMAT=json``: its own lines as JSON too, at ``LOG_LEVEL``.

    gunicorn merges this over its defaults, whose handlers use the "generic" formatter replaced here; access
    lines stay off as in text mode.
    """

    def logger(name: str, logger_level: str) -> dict[str, Any]:
        return {"level": logger_level, "handlers": ["error_console"], "propagate": False, "qualname": name}

    return {
        "root": {"level": level, "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": logger("gunicorn.error", level),
            "gunicorn.access": logger("gunicorn.access", "WARNING"),
        },
        "formatters": {"generic": {"()": JsonFormatter}},
    }
