"""Coupang's key rules (DOMAIN.md), pure: no Slack, no SQL, and the clock is always passed in.

Each refusal is an :class:`InvalidInput` naming the field and saying, for a person, what to fix.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

KEY_LIFETIME = timedelta(days=180)
REISSUE_WINDOW_DAYS = 14
REISSUE_ACCESS_DELAY = timedelta(minutes=30)
NEW_KEY_ACCESS_DELAY = timedelta(hours=24)
EDITS_PER_WEEK = 10
EDIT_WINDOW = timedelta(days=7)
MAX_IPS = 10
WING_URL = "wing.coupang.com"

_VENDOR_ID = re.compile(r"A[0-9]{8}")  # not \d: full-width or other Unicode digits are not an ID
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_KEY_SHAPE = re.compile(r"[A-Za-z0-9_\-+/=]{16,128}")


@dataclass(frozen=True)
class Msg:
    """A sentence for a person, kept as English source text and named parameters, so that each reader gets it
    in their own language (``bot.i18n.render``); ``str()`` is the English sentence."""

    text: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        params = {name: str(value) if isinstance(value, Msg) else value for name, value in self.params.items()}
        return self.text.format(**params) if params else self.text


class KeybotError(Exception):
    """Something a person asked for that the bot refuses; ``str(error)`` is written for that person (in English;
    ``error.msg`` renders in any language)."""

    def __init__(self, message: str | Msg = "", /, **params: object):
        self.msg = message if isinstance(message, Msg) else Msg(message, params)
        super().__init__(str(self.msg))


class InvalidInput(KeybotError):
    """Input that breaks a rule. ``errors`` maps field names to messages (several at once for forms)."""

    def __init__(self, errors: Mapping[str, str | Msg]):
        self.messages = {name: m if isinstance(m, Msg) else Msg(m) for name, m in errors.items()}
        self.errors = {name: str(m) for name, m in self.messages.items()}
        every_field = " ".join(f"{{{name}}}" for name in self.messages)  # each field's message, in its order
        super().__init__(Msg(every_field, self.messages))

    @classmethod
    def one(cls, field: str, message: str, /, **params: object) -> InvalidInput:
        return cls({field: Msg(message, params)})


QUOTE_LIMIT = 100  # characters of what a person typed that a reply repeats


def quote(text: object) -> str:
    """What a person typed, as every reply quotes it back: in quotes, newlines shown as ``\\n``, and cut to
    ``QUOTE_LIMIT`` characters, so a megabyte pasted into a command is not sent back whole.

    Replies go to Slack, so ``&``, ``<`` and ``>`` become entities: a quoted ``<!channel>`` or ``<@U…>`` pings
    nobody, while the bot's own mentions around it still work. A terminal shows it through :func:`plain`."""
    value = str(text)
    if len(value) > QUOTE_LIMIT:
        value = value[: QUOTE_LIMIT - 1] + "…"
    return repr(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(sentence: object) -> str:
    """A sentence for Slack (e.g. a refusal quoting what was typed) as a terminal should print it."""
    return str(sentence).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Phase(enum.StrEnum):
    HEALTHY = "healthy"
    REISSUE_WINDOW = "reissue_window"
    EXPIRED = "expired"


class ReissuePath(enum.StrEnum):
    """How a key is replaced in WING, which depends only on the days left (DOMAIN.md facts 5, 6, 7 and 12)."""

    REISSUE = "reissue"  # D-14 to D-0: WING's Reissue (재발급) button; works within 30 minutes
    EARLY = "early"  # before D-14: Delete (삭제), then Issue (발급); may take 24 hours
    AFTER_EXPIRY = "after_expiry"  # past expiry: Issue (발급), linking info chosen again; may take 24 hours


class Integration(enum.StrEnum):
    INTEGRATOR = "integrator"
    SELF = "self"


# ---------------------------------------------------------------- dates


def local_date(now: datetime, tz: ZoneInfo) -> date:
    """The calendar date at instant ``now`` in ``tz`` (Coupang's days are Korean days)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(tz).date()


def expiry_from_issue(issued_on: date) -> date:
    return issued_on + KEY_LIFETIME


def resolve_dates(issued_on: date | None, expires_on: date | None) -> tuple[date | None, date]:
    """One of the two dates; the expiry follows from the issue date unless WING's date is given. Both are taken
    when they agree (as ``keys export`` writes them)."""
    if issued_on and expires_on and expiry_from_issue(issued_on) == expires_on:
        return issued_on, expires_on
    if issued_on and expires_on:
        raise InvalidInput.one("expires_on", "Give either the issue date or the expiry date WING shows, not both.")
    if expires_on:
        return None, expires_on
    if issued_on:
        return issued_on, expiry_from_issue(issued_on)
    raise InvalidInput.one("issued_on", "Give the date the key was issued, or the expiry date WING shows.")


def check_dates(issued_on: date | None, expires_on: date, today: date) -> None:
    """A key is never issued after today nor expires more than its lifetime after today: such a date is a typo
    (usually the year), and a key with it would never get a reminder. The field typed is the one named."""
    if issued_on is not None and issued_on > today:
        raise InvalidInput.one(
            "issued_on",
            "Issue date {date} is in the future (today is {today}): check the year.",
            date=issued_on.isoformat(),
            today=today.isoformat(),
        )
    if expires_on > today + KEY_LIFETIME:
        raise InvalidInput.one(
            "expires_on",
            "Expiry date {date} is more than {days} days after today, longer than a key lives: check the year.",
            date=expires_on.isoformat(),
            days=KEY_LIFETIME.days,
        )


def days_left(expires_on: date, today: date) -> int:
    return (expires_on - today).days


def phase_for(days: int) -> Phase:
    if days < 0:
        return Phase.EXPIRED
    if days <= REISSUE_WINDOW_DAYS:
        return Phase.REISSUE_WINDOW
    return Phase.HEALTHY


def describe_days_left(days: int) -> str:
    if days == 0:
        return "expires today"
    if days > 0:
        return f"{days} day{'s' if days != 1 else ''} left"
    return f"expired {-days} day{'s' if days != -1 else ''} ago"


def reissue_button_active(days: int) -> bool:
    """WING's Reissue button works from D-14 to D-0; after expiry the way back is Issue (발급)."""
    return path_for(days) is ReissuePath.REISSUE


def milestone_date(expires_on: date, days_before: int) -> date:
    return expires_on - timedelta(days=days_before)


def format_local(at: datetime, tz: ZoneInfo) -> str:
    """``YYYY-MM-DD HH:MM`` on the wall clock of ``tz``: how every time is shown to a person."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``tz``, as an aware UTC datetime."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def milestone_due_at(expires_on: date, days_before: int, at: time, tz: ZoneInfo) -> datetime:
    return local_instant(milestone_date(expires_on, days_before), at, tz)


def path_for(days: int) -> ReissuePath:
    """The way to a new key with ``days`` left: delete + issue before D-14, Reissue to D-0, Issue after."""
    if days < 0:
        return ReissuePath.AFTER_EXPIRY
    if days <= REISSUE_WINDOW_DAYS:
        return ReissuePath.REISSUE
    return ReissuePath.EARLY


def reissue_path(expires_on: date, today: date) -> ReissuePath:
    return path_for(days_left(expires_on, today))


def path_now(planned: ReissuePath, expires_on: date, today: date) -> ReissuePath:
    """A request's path today: once the key has expired, whatever was planned, the way back is Issue."""
    current = reissue_path(expires_on, today)
    return current if current is ReissuePath.AFTER_EXPIRY else planned


def access_delay(path: ReissuePath) -> timedelta:
    """How long Coupang may take to accept a key replaced by ``path``: 30 minutes for a reissue, else 24 hours."""
    return REISSUE_ACCESS_DELAY if path is ReissuePath.REISSUE else NEW_KEY_ACCESS_DELAY


def access_deadline(path: ReissuePath, at: datetime) -> datetime:
    """When a key changed at ``at`` by ``path`` is guaranteed to work."""
    return at + access_delay(path)


def describe_delay(path: ReissuePath) -> Msg:
    """``30 minutes`` or ``24 hours``."""
    minutes = int(access_delay(path).total_seconds()) // 60
    if minutes % 60 == 0:
        return Msg("{hours} hours", {"hours": minutes // 60})
    return Msg("{minutes} minutes", {"minutes": minutes})


# WING's buttons, in WING's own (Korean) words
WING_ACTION = {
    ReissuePath.REISSUE: Msg("Reissue (재발급)"),
    ReissuePath.EARLY: Msg("Delete (삭제), then Issue (발급)"),
    ReissuePath.AFTER_EXPIRY: Msg("Issue (발급), choosing the linking info (Integrator or self-developed) again"),
}


def wing_advice(path: ReissuePath) -> Msg:
    """One sentence, for status and reminders: what to press in WING now and how long the new key takes."""
    delay = describe_delay(path)
    if path is ReissuePath.REISSUE:
        return Msg("WING's Reissue (재발급) button is active: the new key works within {delay}", {"delay": delay})
    if path is ReissuePath.AFTER_EXPIRY:
        return Msg(
            "In WING press {action}; the new key may take {delay} to work",
            {"action": WING_ACTION[path], "delay": delay},
        )
    return Msg(
        "WING's Reissue button opens {days} days before expiry (before that: {action})",
        {"days": REISSUE_WINDOW_DAYS, "action": WING_ACTION[path]},
    )


# ---------------------------------------------------------------- identifiers and secrets


def is_vendor_id(value: str) -> bool:
    return bool(_VENDOR_ID.fullmatch(value))


def validate_vendor_id(raw: str) -> str:
    value = (raw or "").strip().upper()
    if not _VENDOR_ID.fullmatch(value):
        raise InvalidInput.one(
            "vendor_id",
            "Vendor ID {value} is not valid: it is A followed by 8 digits, e.g. A00012345.",
            value=quote((raw or "").strip()),
        )
    return value


def validate_key_part(field: str, raw: str, name: str) -> str:
    """Shape check for an Access or Secret Key. The message never repeats what was typed."""
    value = (raw or "").strip()
    if not value:
        raise InvalidInput.one(field, "Paste the {name}.", name=name)
    if not _KEY_SHAPE.fullmatch(value):
        raise InvalidInput.one(
            field,
            "That does not look like a Coupang {name}: paste it exactly as WING shows it "
            "(16 to 128 letters, digits or - _ + / =, no spaces).",
            name=name,
        )
    return value


# ---------------------------------------------------------------- linking info


@dataclass(frozen=True, slots=True)  # one per key: 100,000 at once in an import
class LinkingInfo:
    integration: Integration
    integrator_name: str | None = None
    company_name: str | None = None
    company_url: str | None = None
    ip_addresses: tuple[str, ...] = ()

    def details(self) -> dict[str, object]:
        """Language-neutral values for the audit log (each reader's language shows them, see ``from_details``)."""
        if self.integration is Integration.INTEGRATOR:
            return {"integration": str(self.integration), "integrator_name": self.integrator_name}
        return {
            "integration": str(self.integration),
            "company_name": self.company_name,
            "company_url": self.company_url,
            "ip_addresses": list(self.ip_addresses),
        }

    @classmethod
    def from_details(cls, details: Mapping[str, object]) -> LinkingInfo:
        ips = details.get("ip_addresses")
        return cls(
            Integration(str(details["integration"])),
            integrator_name=_text_or_none(details.get("integrator_name")),
            company_name=_text_or_none(details.get("company_name")),
            company_url=_text_or_none(details.get("company_url")),
            ip_addresses=tuple(str(ip) for ip in ips) if isinstance(ips, list) else (),
        )

    def summary(self) -> str:
        if self.integration is Integration.INTEGRATOR:
            return f"Integrator: {self.integrator_name}"
        ips = ", ".join(self.ip_addresses)
        return f"Self-developed: {self.company_name} ({self.company_url}); IPs {ips}"


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def split_ips(raw: str | Iterable[str] | None) -> list[str]:
    if raw is None:
        return []
    text = raw if isinstance(raw, str) else "\n".join(raw)
    return [part for part in re.split(r"[\s;,]+", text) if part]


def validate_ip(raw: str) -> str:
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise InvalidInput.one(
            "ip_addresses", "{value} is not an IPv4 address such as 211.45.10.3.", value=quote(raw)
        ) from None
    if address.version != 4:
        raise InvalidInput.one(
            "ip_addresses", "{value} is IPv6; Coupang's allow-list takes IPv4 addresses only.", value=quote(raw)
        )
    if address.is_loopback:
        reason = Msg("a loopback address")
    elif any(address in network for network in _PRIVATE_NETWORKS):
        reason = Msg("a private address")
    elif address.is_multicast or not address.is_global:
        reason = Msg("a reserved address (not reachable on the internet)")
    else:
        return str(address)
    raise InvalidInput.one(
        "ip_addresses",
        "IP {ip} is {reason}; Coupang sees your public address, so enter that one.",
        ip=raw,
        reason=reason,
    )


def validate_url(raw: str) -> str:
    """A web address; a bare domain (``example.com``) is taken as ``https://example.com``."""
    value = (raw or "").strip()
    if value.lower() in {WING_URL, f"https://{WING_URL}", f"http://{WING_URL}"}:
        return value
    typed = value
    if value and "://" not in value and not any(ch.isspace() for ch in value):
        value = f"https://{value}"
    try:
        parts = urlsplit(value)
        host, scheme = parts.hostname or "", parts.scheme
        _ = parts.port  # raises ValueError for "host:abc" or a port above 65535
    except ValueError:  # e.g. "http://[abc": a refusal, not a crash
        host = scheme = ""
    if (
        scheme not in {"http", "https"}
        or "." not in host
        or any(ch.isspace() for ch in value)  # urlsplit silently drops tabs and newlines
        or host.startswith(".")
    ):
        raise InvalidInput.one(
            "company_url",
            "{value} is not a web address: enter your homepage or service page starting with "
            "http:// or https://, or {wing} if you have none.",
            value=quote(typed),
            wing=WING_URL,
        )
    return value


def validate_linking_info(
    integration: str | None,
    integrator_name: str | None = None,
    company_name: str | None = None,
    company_url: str | None = None,
    ip_addresses: str | Sequence[str] | None = None,
) -> LinkingInfo:
    """Either exactly one integrator, or self-developed with company, URL and 1–10 unique public IPv4s. Fields of
    the other kind of integration are ignored (a form may still hold what was typed before switching)."""
    errors: dict[str, Msg] = {}
    integrator_name = (integrator_name or "").strip()
    company_name = (company_name or "").strip()
    company_url = (company_url or "").strip()
    ips = split_ips(ip_addresses)

    if integration == Integration.INTEGRATOR:
        if not integrator_name:
            errors["integrator_name"] = Msg("Name the integrator company (only one integrator can be linked).")
        elif re.search(r"[;\n]", integrator_name):  # "Co., Ltd." and "A and B Inc." are single names
            errors["integrator_name"] = Msg("Only one integrator can be linked: enter a single company name.")
        if errors:
            raise InvalidInput(errors)
        return LinkingInfo(Integration.INTEGRATOR, integrator_name=integrator_name)

    if integration != Integration.SELF:
        raise InvalidInput.one("integration", "Choose how the key is used: an integrator, or self-developed.")
    if not company_name:
        errors["company_name"] = Msg("Enter the company name.")
    try:
        company_url = validate_url(company_url or WING_URL)  # Coupang: "wing.coupang.com if there is none"
    except InvalidInput as exc:
        errors.update(exc.messages)
    clean: list[str] = []
    try:
        if not ips:
            raise InvalidInput.one(
                "ip_addresses",
                "Enter the public IPv4 address of each PC or server that calls the API (1 to 10).",
            )
        for raw in ips:
            ip = validate_ip(raw)
            if ip in clean:
                raise InvalidInput.one("ip_addresses", "IP {ip} is listed twice.", ip=ip)
            clean.append(ip)
        if len(clean) > MAX_IPS:
            raise InvalidInput.one(
                "ip_addresses",
                "Coupang allows at most {limit} IP addresses; you entered {count}.",
                limit=MAX_IPS,
                count=len(clean),
            )
    except InvalidInput as exc:
        errors.update(exc.messages)
    if errors:
        raise InvalidInput(errors)
    return LinkingInfo(Integration.SELF, company_name=company_name, company_url=company_url, ip_addresses=tuple(clean))


# ---------------------------------------------------------------- edit quota


@dataclass(frozen=True)
class EditQuota:
    used: int
    next_possible_at: datetime | None  # None while an edit is possible now

    @property
    def remaining(self) -> int:
        return max(EDITS_PER_WEEK - self.used, 0)


def edit_quota(edit_times: Iterable[datetime], now: datetime) -> EditQuota:
    """Edits in the rolling 7 days before ``now``; when full, the moment the oldest one drops out."""
    recent = sorted(t for t in edit_times if now - EDIT_WINDOW < t <= now)
    if len(recent) < EDITS_PER_WEEK:
        return EditQuota(len(recent), None)
    return EditQuota(len(recent), recent[len(recent) - EDITS_PER_WEEK] + EDIT_WINDOW)


def check_edit_allowed(edit_times: Iterable[datetime], now: datetime, tz: ZoneInfo) -> EditQuota:
    return require_edit_slot(edit_quota(edit_times, now), tz)


def require_edit_slot(quota: EditQuota, tz: ZoneInfo) -> EditQuota:
    """The quota, or a refusal saying when (in ``tz``) the next edit becomes possible."""
    if quota.next_possible_at is not None:
        when = format_local(quota.next_possible_at, tz)
        raise InvalidInput.one(
            "integration",
            "The linking info was already edited {limit} times in the last 7 days, which is "
            "Coupang's limit. The next edit is possible at {when} ({zone}).",
            limit=EDITS_PER_WEEK,
            when=when,
            zone=tz.key,
        )
    return quota
