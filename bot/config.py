"""Settings: read once from the environment (after ``.env``) and frozen.

Only entry points call :func:`load_settings`; everything else receives a :class:`Settings`.
Every bad value fails here, at start-up, with a sentence that says how to fix it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DATABASE_URL = "sqlite:///data/keybot.db"
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_APPROVER_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# shown as '***' by repr()/str() of Settings (a traceback, a debugger, a log line must not carry them)
SECRET_SETTINGS = frozenset(
    {"master_keys", "slack_bot_token", "slack_signing_secret", "slack_app_token", "metrics_token", "vault_token"}
)
_URL_PASSWORD = re.compile(r"(://[^/?#@:]*:)[^/?#@]*@")


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it.

    Like :class:`bot.rules.KeybotError`: English source text with ``{placeholders}`` filled from ``params``, so the
    CLI can show it in ``KEYBOT_LANGUAGE`` (``t(lang, error.message, **error.params)``)."""

    def __init__(self, message: str, /, **params: object) -> None:
        super().__init__(message.format(**params) if params else message)
        self.message, self.params = message, params


@dataclass(frozen=True)
class Settings:
    master_keys: tuple[bytes, ...]
    database_url: str = DEFAULT_DATABASE_URL
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    admins: frozenset[str] = frozenset()
    approvers: frozenset[str] = frozenset()
    channel: str | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Seoul"))
    language: str = "en"  # KEYBOT_LANGUAGE: channel posts, App Home, CLI and people who chose none
    reissue_approval: bool = True  # KEYBOT_REISSUE_APPROVAL=required; none: no approval step (small teams)
    reminder_time: time = time(9, 0)
    reminder_days: tuple[int, ...] = (14, 7, 1, 0)
    coupang_api_url: str = "https://api-gateway.coupang.com"
    verify_daily: bool = False
    port: int = 3000
    bind: str = "0.0.0.0"  # KEYBOT_BIND: the address the HTTP server (or Socket Mode's ops server) listens on
    ops_addr: tuple[str, int] | None = None  # KEYBOT_OPS_ADDR: /healthz and /metrics on a listener of their own
    log_level: str = "INFO"
    # operations (issue 12): logs, monitoring, weekly summary
    log_format: str = "text"
    heartbeat_url: str | None = None
    metrics_token: str | None = None
    weekly_summary_day: int | None = 0  # Monday=0 … Sunday=6; None: off
    # key rollout to Vault / OpenBao consumers (hvac); AWS consumers use boto3's own AWS_* chain
    vault_addr: str | None = None
    vault_token: str | None = field(default=None, repr=False)
    vault_namespace: str | None = None
    # KEYBOT_CONSUMER_ALLOW: (kind, pattern) pairs that targets added from Slack must match; None: the safe default
    # (ROLLOUT.md "Where to")
    consumer_allow: tuple[tuple[str, str], ...] | None = None

    def __repr__(self) -> str:
        """Every field, with the secrets as '***' and the database URL without its password."""
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in SECRET_SETTINGS and value:
                text = "'***'"
            elif item.name == "database_url":
                text = repr(_URL_PASSWORD.sub(r"\1***@", value))
            else:
                text = repr(value)
            shown.append(f"{item.name}={text}")
        return f"Settings({', '.join(shown)})"

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))

    def missing_slack_settings(self) -> list[str]:
        """Names of the variables still needed to connect to Slack (empty when ready)."""
        missing = []
        if not self.slack_bot_token:
            missing.append("SLACK_BOT_TOKEN")
        if not (self.slack_signing_secret or self.slack_app_token):
            missing.append("SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP)")
        return missing


def parse_master_keys(raw: str | None) -> tuple[bytes, ...]:
    if not raw or not raw.strip():
        raise ConfigError("KEYBOT_MASTER_KEY is not set. Run `coupang-keybot init` to write a .env with a fresh key.")
    keys = []
    for position, item in enumerate(raw.split(","), start=1):
        try:
            key = base64.b64decode(item.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError(
                "KEYBOT_MASTER_KEY entry {position} is not a base64-encoded 32-byte key. Run `coupang-keybot init` "
                "to write a .env with a fresh key.",
                position=position,
            )
        keys.append(key)
    return tuple(keys)


def _ids(name: str, raw: str | None, pattern: re.Pattern[str]) -> frozenset[str]:
    ids = frozenset(item.strip() for item in (raw or "").replace(" ", ",").split(",") if item.strip())
    bad = ", ".join(sorted(i for i in ids if not pattern.match(i)))
    if bad and pattern is _SLACK_USER_ID:
        raise ConfigError("{name} has {ids}, which is not a Slack user ID (U…).", name=name, ids=bad)
    if bad:
        raise ConfigError("{name} has {ids}, which is not a user ID (U…) or user-group ID (S…).", name=name, ids=bad)
    return ids


def _token(name: str, raw: str | None, prefix: str) -> str | None:
    if not raw:
        return None
    if not raw.startswith(prefix):
        raise ConfigError(
            "{name} must start with '{prefix}' (copy it from your Slack app's settings).", name=name, prefix=prefix
        )
    return raw


CONSUMER_KINDS = ("webhook", "aws-secretsmanager", "aws-ssm", "vault")  # bot.destinations.KINDS


def parse_consumer_allow(raw: str | None) -> tuple[tuple[str, str], ...] | None:
    """``KIND:PATTERN,…`` (``*`` matches anything) → pairs; None when unset (the default rules apply)."""
    if raw is None:
        return None
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        kind, colon, pattern = item.partition(":")
        if not item or not colon or kind.strip() not in CONSUMER_KINDS or not pattern.strip():
            raise ConfigError(
                "KEYBOT_CONSUMER_ALLOW has {item!r}: give KIND:PATTERN entries separated by commas, KIND one of "
                "{kinds}, e.g. webhook:https://erp.example.com/*,aws-ssm:/coupang/*.",
                item=item,
                kinds=", ".join(CONSUMER_KINDS),
            )
        pairs.append((kind.strip(), pattern.strip()))
    return tuple(pairs)


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")


def _listen_host(raw: str) -> str | None:
    """``raw`` as an address to listen on (an IP address or a host name), or None when it is neither."""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return raw if _HOSTNAME.fullmatch(raw) else None


def parse_bind(raw: str | None) -> str:
    """``KEYBOT_BIND``: the address to listen on (default 0.0.0.0)."""
    host = _listen_host(raw or "0.0.0.0")
    if host is None:
        raise ConfigError(
            "KEYBOT_BIND={value!r} must be an address to listen on: 0.0.0.0 (every interface) or 127.0.0.1 "
            "(behind a proxy on the same machine).",
            value=raw,
        )
    return host


def parse_ops_addr(raw: str | None) -> tuple[str, int] | None:
    """``KEYBOT_OPS_ADDR``: ``(host, port)`` from ``HOST:PORT`` (``[::1]:PORT`` for IPv6), None when unset."""
    if raw is None:
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", raw)
    host = _listen_host(match.group(1) or match.group(3)) if match else None
    port = int(match.group(2) or match.group(4)) if match else 0
    if host is None or not 0 < port < 65536:
        raise ConfigError(
            "KEYBOT_OPS_ADDR={value!r} must be HOST:PORT, e.g. 127.0.0.1:9464 ([::1]:9464 for IPv6).", value=raw
        )
    return host, port


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https(name: str, url: str | None, example: str) -> str | None:
    """``url`` unchanged when it is https, or plain http to this machine (tests, a local proxy); else refused:
    tokens and keys travel over these connections."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        scheme, host = "", ""
    if not host or scheme not in ("https", "http") or (scheme == "http" and not _is_loopback(host)):
        raise ConfigError(
            "{name} must be an https:// URL such as {example} (plain http:// only to 127.0.0.1 or localhost): "
            "tokens and keys travel over it.",
            name=name,
            example=example,
        )
    return url


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build settings from an environment mapping (``os.environ`` after ``load_dotenv()``)."""

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value and value.strip() else None

    tz_name = get("KEYBOT_TIMEZONE") or "Asia/Seoul"
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            "KEYBOT_TIMEZONE={value!r} is not a known time zone (try Asia/Seoul).", value=tz_name
        ) from None

    raw_time = get("KEYBOT_REMINDER_TIME") or "09:00"
    try:
        reminder_time = time.fromisoformat(raw_time)
        if not re.fullmatch(r"\d{2}:\d{2}", raw_time):
            raise ValueError
    except ValueError:
        raise ConfigError("KEYBOT_REMINDER_TIME={value!r} must be HH:MM, e.g. 09:00.", value=raw_time) from None

    raw_days = get("KEYBOT_REMINDER_DAYS") or "14,7,1,0"
    try:
        days = sorted({int(d) for d in raw_days.split(",")}, reverse=True)
        if any(d < 0 or d > 179 for d in days):
            raise ValueError
    except ValueError:
        raise ConfigError(
            "KEYBOT_REMINDER_DAYS={value!r} must be whole days before expiry between 0 and 179, "
            "separated by commas, e.g. 14,7,1,0.",
            value=raw_days,
        ) from None

    raw_port = get("PORT") or "3000"
    if not re.fullmatch(r"[0-9]+", raw_port) or not 0 < int(raw_port) < 65536:  # isdigit() takes "²"
        raise ConfigError("PORT={value!r} must be a port number between 1 and 65535.", value=raw_port)

    channel = get("KEYBOT_CHANNEL")
    if channel and not _SLACK_CHANNEL_ID.match(channel):
        raise ConfigError("KEYBOT_CHANNEL={value!r} must be a channel ID such as C0123ABCD, not a name.", value=channel)

    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError("LOG_LEVEL={value!r} must be DEBUG, INFO, WARNING, ERROR or CRITICAL.", value=log_level)

    verify_daily = (get("KEYBOT_VERIFY_DAILY") or "false").lower()
    if verify_daily not in {"true", "false", "1", "0", "yes", "no"}:
        raise ConfigError("KEYBOT_VERIFY_DAILY={value!r} must be true or false.", value=verify_daily)

    slack_api_url = _https("SLACK_API_URL", get("SLACK_API_URL"), "https://slack.com/api/") or "https://slack.com/api/"
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in {"text", "json"}:
        raise ConfigError("LOG_FORMAT={value!r} must be text or json.", value=log_format)
    heartbeat_url = get("KEYBOT_HEARTBEAT_URL")
    if heartbeat_url and not re.match(r"https?://[^/\s]+", heartbeat_url):
        raise ConfigError("KEYBOT_HEARTBEAT_URL must be an http(s) URL such as https://hc-ping.com/<uuid>.")
    heartbeat_url = _https("KEYBOT_HEARTBEAT_URL", heartbeat_url, "https://hc-ping.com/<uuid>")
    coupang_api_url = _https("COUPANG_API_URL", get("COUPANG_API_URL"), "https://api-gateway.coupang.com")
    vault_addr = _https("VAULT_ADDR", get("VAULT_ADDR"), "https://vault.example.com:8200")
    bind, ops_addr = parse_bind(get("KEYBOT_BIND")), parse_ops_addr(get("KEYBOT_OPS_ADDR"))
    summary = (get("KEYBOT_WEEKLY_SUMMARY") or "mon").lower()
    if summary not in (*WEEKDAYS, "off"):
        raise ConfigError("KEYBOT_WEEKLY_SUMMARY={value!r} must be a weekday (mon, tue, … sun) or off.", value=summary)
    language = (get("KEYBOT_LANGUAGE") or "en").lower()
    if language not in ("en", "ko"):
        raise ConfigError("KEYBOT_LANGUAGE={value!r} must be en (English) or ko (Korean).", value=language)
    approval = (get("KEYBOT_REISSUE_APPROVAL") or "required").lower()
    if approval not in ("required", "none"):
        raise ConfigError(
            "KEYBOT_REISSUE_APPROVAL={value!r} must be required (another person approves every reissue) "
            "or none (no approval step, for teams without a second approver).",
            value=approval,
        )
    return Settings(
        master_keys=parse_master_keys(get("KEYBOT_MASTER_KEY")),
        database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        slack_bot_token=_token("SLACK_BOT_TOKEN", get("SLACK_BOT_TOKEN"), "xoxb-"),
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        slack_app_token=_token("SLACK_APP_TOKEN", get("SLACK_APP_TOKEN"), "xapp-"),
        slack_api_url=slack_api_url if slack_api_url.endswith("/") else slack_api_url + "/",
        admins=_ids("KEYBOT_ADMINS", get("KEYBOT_ADMINS"), _SLACK_USER_ID),
        approvers=_ids("KEYBOT_APPROVERS", get("KEYBOT_APPROVERS"), _SLACK_APPROVER_ID),
        channel=channel,
        timezone=tz,
        language=language,
        reissue_approval=approval == "required",
        reminder_time=reminder_time,
        reminder_days=tuple(days),
        coupang_api_url=(coupang_api_url or "https://api-gateway.coupang.com").rstrip("/"),
        verify_daily=verify_daily in {"true", "1", "yes"},
        port=int(raw_port),
        bind=bind,
        ops_addr=ops_addr,
        log_level=log_level,
        log_format=log_format,
        heartbeat_url=heartbeat_url.rstrip("/") if heartbeat_url else None,
        metrics_token=get("KEYBOT_METRICS_TOKEN"),
        weekly_summary_day=None if summary == "off" else WEEKDAYS.index(summary),
        vault_addr=vault_addr,
        vault_token=get("VAULT_TOKEN"),
        vault_namespace=get("VAULT_NAMESPACE"),
        consumer_allow=parse_consumer_allow(get("KEYBOT_CONSUMER_ALLOW")),
    )
