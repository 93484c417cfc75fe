"""A logging filter that blanks the values typed into secret inputs before a log record is written.

Slack payloads (view submissions) carry ``view.state.values``; the Access and Secret Key inputs live under the
block_ids below. Bolt and slack_sdk may log whole payloads at DEBUG, as JSON, as a Python ``repr`` or
form-encoded; all three are covered. The filter rewrites the record, it never drops it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

SECRET_BLOCK_IDS = ("access_key", "secret_key", "new_access_key", "new_secret_key")
REDACTED = "[redacted]"
LOGGERS = ("slack_bolt", "slack_sdk", "bot")

_NAMES = "|".join(SECRET_BLOCK_IDS)
# "secret_key": {"secret_key": {"type": "plain_text_input", "value": "…"}} — JSON or repr quotes, any spacing
_STATE_VALUE = re.compile(
    r"""(?P<head>(?P<q>["'])(?:"""
    + _NAMES
    + r""")(?P=q)\s*:\s*\{[^{}]*?\{[^{}]*?(?P<q2>["'])value(?P=q2)\s*:\s*)"""
    + r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
)
_ENCODED_HINT = re.compile("%22(?:" + _NAMES + ")%22")


def redact(text: str) -> str:
    """``text`` with the value of every secret input replaced by ``[redacted]``."""
    if not any(name in text for name in SECRET_BLOCK_IDS):
        return text
    if _ENCODED_HINT.search(text):  # a form-encoded body: decode it, so the JSON inside can be searched
        text = unquote_plus(text)
    return _STATE_VALUE.sub(lambda m: f"{m.group('head')}{m.group('q')}{REDACTED}{m.group('q')}", text)


class SecretRedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(*, handlers: list[logging.Handler] | None = None) -> SecretRedactingFilter:
    """Attach the filter to the Slack and bot loggers and to the root handlers (children propagate there)."""
    redacting = SecretRedactingFilter()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if redacting not in logger.filters:
            logger.addFilter(redacting)
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, SecretRedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting
