"""Every word the bot shows, in English (the source language) or Korean.

One function translates: ``t(lang, "Expires {date}", date=…)``. Messages are whole sentences with named
placeholders, looked up in gettext catalogs compiled by Babel (``bot/locale/<lang>/LC_MESSAGES/messages.mo``,
shipped as package data); ``make translations`` re-extracts and compiles them. Dates and times are shown the way
each language writes them: ``2026-12-07`` / ``2026년 12월 7일 (월)``, ``D-7``, ``만료 3일 지남``, ``오전 9:00``.

Imports only the standard library, Babel and the pure rules, so services, the CLI and Slack code can all use it.
"""

from __future__ import annotations

import functools
import gettext
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time

from bot.rules import Integration, LinkingInfo, Msg

ENGLISH = "en"
KOREAN = "ko"
LANGUAGES = (ENGLISH, KOREAN)
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"


@functools.cache
def _catalog(lang: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)


def t(lang: str, message: str, /, **params: object) -> str:
    """``message`` (English source text) in ``lang``, its ``{placeholders}`` filled from ``params``."""
    text = message if lang == ENGLISH else _catalog(lang).gettext(message)
    return text.format(**params) if params else text


def N_(message: str) -> str:
    """Marks English source text kept for later translation (tables, constants); returns it unchanged."""
    return message


def parse_language(raw: str | None) -> str | None:
    """``en`` or ``ko`` from what a person types (also 한국어/영어/korean/english); None when not a language."""
    word = (raw or "").strip().lower()
    aliases = {"en": ENGLISH, "english": ENGLISH, "영어": ENGLISH, "ko": KOREAN, "korean": KOREAN, "한국어": KOREAN}
    return aliases.get(word)


# ---------------------------------------------------------------- dates and times


def day(lang: str, value: date) -> str:
    """A calendar date: ``2026-12-07`` or ``2026년 12월 7일 (월)``."""
    if lang == KOREAN:
        return format_date(value, "y년 M월 d일 (E)", locale="ko")
    return value.isoformat()


def moment(lang: str, at: datetime, tz: ZoneInfo) -> str:
    """An instant on the wall clock of ``tz``: ``2026-12-07 09:00`` or ``2026년 12월 7일 (월) 오전 9:00``."""
    local = at.astimezone(tz)
    if lang == KOREAN:
        return f"{day(lang, local.date())} {format_time(local.time(), 'a h:mm', locale='ko')}"
    return local.strftime("%Y-%m-%d %H:%M")


def days_left(lang: str, days: int) -> str:
    """``7 days left`` / ``D-7``, ``expires today`` / ``오늘 만료 (D-0)``, ``만료 3일 지남``"""
    if days == 0:
        return t(lang, "expires today")
    if days == 1:
        return t(lang, "1 day left")
    if days > 0:
        return t(lang, "{days} days left", days=days)
    if days == -1:
        return t(lang, "expired 1 day ago")
    return t(lang, "expired {days} days ago", days=-days)


def render(lang: str, msg: Msg) -> str:
    """A :class:`~bot.rules.Msg` (a refusal, a stored outcome) in ``lang``; parameters that are messages too are
    translated first."""
    params = {name: render(lang, value) if isinstance(value, Msg) else value for name, value in msg.params.items()}
    return t(lang, msg.text, **params)


# ---------------------------------------------------------------- facts shown the same way everywhere


def linking_summary(lang: str, linking: LinkingInfo) -> str:
    """The linking info in WING's words: which integrator, or company, URL and IPs of a self-developed key."""
    if linking.integration is Integration.INTEGRATOR:
        return t(lang, "Integrator: {name}", name=linking.integrator_name)
    return t(
        lang,
        "Self-developed: {company} ({url}); IPs {ips}",
        company=linking.company_name,
        url=linking.company_url,
        ips=", ".join(linking.ip_addresses),
    )


OUTCOME_LABEL = {  # English shows the stored outcome itself
    "works": N_("works"),
    "near_limit": N_("works, near the call limit"),
    "invalid_key": N_("invalid key"),
    "ip_not_allowed": N_("ip not allowed"),
    "wrong_vendor": N_("wrong vendor"),
    "rate_limited": N_("rate limited"),
    "blocked": N_("blocked"),
    "unavailable": N_("unavailable"),
    "not_active_yet": N_("not active yet"),
    "not_checkable": N_("not checkable"),
    "in_progress": N_("in progress"),
}


def outcome_label(lang: str, outcome: str) -> str:
    label = OUTCOME_LABEL.get(outcome)
    return t(lang, label) if label else outcome.replace("_", " ")
