"""The one logging filter: every log record loses the secrets in it before anything writes it, at any level.

What it removes, wherever it appears in a record's message, arguments, exception or stack text:

- the values typed into secret inputs of Slack payloads (``view.state.values`` under the block_ids below): Bolt and
  slack_sdk may log whole payloads at DEBUG, as JSON, as a Python ``repr`` or form-encoded; all three are covered;
- Access and Secret Key values under their field names (``access_key``, ``secret_key``, ``new_…``, ``signing_secret``)
  in JSON, ``repr`` or JSON quoted inside either — a delivery body as botocore or hvac would log it — and Coupang's
  ``access-key=`` header field;
- ``whsec_`` signing secrets and Slack tokens (``xoxb-``, ``xoxp-``, ``xoxe-``, ``xapp-``…), by their shape;
- every value handed to :func:`hide`: the master key (each base64 entry), the Slack signing secret, the metrics and
  Vault tokens (:func:`install` hides those of the settings it is given).

:func:`install` puts the filter on every handler that exists (the root's, gunicorn's…) and in front of every record
logging creates (``logging.setLogRecordFactory``), so a handler or logger set up later — Bolt's, slack_sdk's, Socket
Mode's, urllib3's, hvac's, botocore's, gunicorn's — cannot bypass it. The filter rewrites a record, never drops it.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote_plus

if TYPE_CHECKING:
    from bot.config import Settings

SECRET_BLOCK_IDS = ("access_key", "secret_key", "new_access_key", "new_secret_key")
REDACTED = "[redacted]"
# loggers that get the filter themselves too (records they create are filtered even before any handler exists)
LOGGERS = (
    "slack_bolt",
    "slack_sdk",
    "bot",
    "urllib3",
    "hvac",
    "botocore",
    "boto3",
    "gunicorn.error",
    "gunicorn.access",
    "apscheduler",
)
SHORTEST_HIDDEN = 6  # a shorter value handed to hide() would blank ordinary words; settings never hold one

_NAMES = "|".join(SECRET_BLOCK_IDS)
# "secret_key": {"secret_key": {"type": "plain_text_input", "value": "…"}} — JSON or repr quotes, any spacing
_STATE_VALUE = re.compile(
    r"""(?P<head>(?P<q>["'])(?:"""
    + _NAMES
    + r""")(?P=q)\s*:\s*\{[^{}]*?\{[^{}]*?(?P<q2>["'])value(?P=q2)\s*:\s*)"""
    + r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
)
_ENCODED_HINT = re.compile("%22(?:" + _NAMES + ")%22")
# "secret_key": "…" / 'access_key': '…' / \"signing_secret\":\"…\" (JSON quoted inside a string) / secret_key='…',
# and unquoted key=value (a header, a query string)
_FIELD_NAMES = r"(?:new_)?(?:access_key|secret_key)|signing_secret|accessKey|secretKey"
_FIELD_VALUE = re.compile(
    r"""(?P<head>(?:(?P<q>\\*["'])(?:""" + _FIELD_NAMES + r""")(?P=q)\s*:\s*|\b(?:""" + _FIELD_NAMES + r""")=)"""
    r"""(?P<vq>\\*["']))(?P<value>.*?)(?P=vq)"""
)
_KEYWORD_VALUE = re.compile(r"""(?P<head>\b(?:""" + _FIELD_NAMES + r"""|access-key)=)(?P<value>[^\s,&'"()]+)""")
# by their shape: Standard Webhooks secrets (base64, maybe URL-encoded) and Slack tokens (xoxe.xoxp-… rotates)
_SHAPED = re.compile(
    r"(?P<head>whsec_)(?:[A-Za-z0-9+/=]|%[0-9A-Fa-f]{2})+"
    r"|(?P<slack>\b(?:xoxe\.)?xox[a-z]-|\bxapp-)[A-Za-z0-9-]+"
)

_hidden: tuple[str, ...] = ()  # longest first, so a value containing another is removed whole
_hidden_lock = threading.Lock()


def hide(*values: str | bytes | None) -> None:
    """From now on every log record loses these values (and their URL-encoded forms), wherever they appear.
    Bytes are hidden as their base64 and their ``repr``; values shorter than 6 characters are ignored."""
    global _hidden
    found: set[str] = set()
    for value in values:
        if isinstance(value, bytes):
            found.update((base64.b64encode(value).decode(), repr(value)[2:-1]))
        elif value:
            found.add(value)
    found |= {variant for value in found for variant in (quote(value, safe=""), quote_plus(value))}
    with _hidden_lock:
        merged = set(_hidden) | {v for v in found if len(v) >= SHORTEST_HIDDEN}
        _hidden = tuple(sorted(merged, key=len, reverse=True))


def hide_settings(settings: Settings) -> None:
    """Hide every secret the settings hold: master key entries, Slack tokens and signing secret, metrics and Vault
    tokens (tokens are removed by their shape as well)."""
    hide(
        *settings.master_keys,
        settings.slack_bot_token,
        settings.slack_app_token,
        settings.slack_signing_secret,
        settings.metrics_token,
        settings.vault_token,
    )


def redact(text: str) -> str:
    """``text`` without any secret this module knows how to find (see the module's docstring)."""
    if any(name in text for name in SECRET_BLOCK_IDS):
        if _ENCODED_HINT.search(text):  # a form-encoded body: decode it, so the JSON inside can be searched
            text = unquote_plus(text)
        text = _STATE_VALUE.sub(lambda m: f"{m.group('head')}{m.group('q')}{REDACTED}{m.group('q')}", text)
    if any(word in text for word in ("_key", "Key", "signing_secret", "access-key")):
        text = _FIELD_VALUE.sub(lambda m: f"{m.group('head')}{REDACTED}{m.group('vq')}", text)
        text = _KEYWORD_VALUE.sub(lambda m: f"{m.group('head')}{REDACTED}", text)
    if "whsec_" in text or "xox" in text or "xapp-" in text:
        text = _SHAPED.sub(lambda m: f"{m.group('head') or m.group('slack')}{REDACTED}", text)
    for value in _hidden:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _scrub(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class SecretRedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrite ``record`` in place without secrets: the message with its arguments, the exception and stack text.
    A record with nothing to remove is left exactly as it was (its ``args`` too)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
        message = None
    if message is not None:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(record.__dict__.items()):  # extra={...} fields, which JSON lines carry
        if name not in _STANDARD and isinstance(value, str):
            setattr(record, name, _scrub(value))
    return record


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_FILTER = SecretRedactingFilter()
_factory_installed = False


def _wrap_factory(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def create(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(factory(*args, **kwargs))

    create.keybot_redacting = True  # type: ignore[attr-defined]
    return create


def _handlers() -> Iterable[logging.Handler]:
    yield from logging.getLogger().handlers
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield from logger.handlers


def install(
    *, handlers: list[logging.Handler] | None = None, settings: Settings | None = None
) -> SecretRedactingFilter:
    """Put the filter in front of every log record: on the record factory, on ``handlers`` (default: every handler
    of every logger now) and on the bot's and libraries' loggers. ``settings``: hide its secrets too. Idempotent."""
    global _factory_installed
    if settings is not None:
        hide_settings(settings)
    with _hidden_lock:
        if not _factory_installed:
            current = logging.getLogRecordFactory()
            if not getattr(current, "keybot_redacting", False):
                logging.setLogRecordFactory(_wrap_factory(current))
            _factory_installed = True
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in handlers if handlers is not None else list(_handlers()):
        if not any(isinstance(f, SecretRedactingFilter) for f in handler.filters):
            handler.addFilter(_FILTER)
    return _FILTER
