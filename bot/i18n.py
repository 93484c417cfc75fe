"""Every word the bot shows, in English (the source language) or Korean.

One function translates: ``t(lang, "Expires {date}", date=…)``. Messages are whole sentences with named
placeholders, looked up in gettext catalogs compiled by Babel (``bot/locale/<lang>/LC_MESSAGES/messages.mo``,
shipped as package data); ``make translations`` re-extracts and compiles them. Dates and times are shown the way
each language writes them: ``2026-12-07`` / ``2026년 12월 7일(월)``, ``D-7``, ``만료 3일 지남``, ``오전 9:00``.

Imports only the standard library, Babel and the pure rules, so services, the CLI and Slack code can all use it.
"""

from __future__ import annotations

import functools
import gettext
import string
from collections.abc import Mapping
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
    """``message`` (English source text) in ``lang``, its ``{placeholders}`` filled from ``params``.

    A Korean translation puts a particle after a value with a format spec naming it: ``{vendor_id:은}`` gives
    ``A00012343은`` or ``A00012345는``; see :func:`particle`."""
    text = message if lang == ENGLISH else _catalog(lang).gettext(message)
    if not params:
        return text
    return _FORMATTER.vformat(text, (), params) if _has_particles(text) else text.format(**params)


# ---------------------------------------------------------------- Korean particles after a value

# each particle pair: (after a final consonant, after a vowel); (으)로 also takes 로 after ㄹ
PARTICLES = {
    "은": ("은", "는"),
    "이": ("이", "가"),
    "을": ("을", "를"),
    "과": ("과", "와"),
    "으로": ("으로", "로"),
    "이다": ("이다", "다"),
}
_SPELLINGS = {spelling: pair for pair in PARTICLES.values() for spelling in pair} | {
    "은(는)": PARTICLES["은"],
    "이(가)": PARTICLES["이"],
    "을(를)": PARTICLES["을"],
    "과(와)": PARTICLES["과"],
    "(으)로": PARTICLES["으로"],
}
_RIEUL = "ㄹ"
_HANGUL_FINALS = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"  # a syllable's final, by (code - 가) % 28
# how a digit is read at the end of a number: 0 영/십/백/천/만, 1 일, 3 삼, 6 육, 7 칠, 8 팔 end in a consonant
_DIGIT_FINAL = {"0": "ㅇ", "1": _RIEUL, "3": "ㅁ", "6": "ㄱ", "7": _RIEUL, "8": _RIEUL}
# a Latin letter read as its name (acronyms, single letters): 엘, 엠, 엔, 알 end in a consonant
_LETTER_FINAL = {"L": _RIEUL, "M": "ㅁ", "N": "ㄴ", "R": _RIEUL}
# the last letter of a word read as a word: ...l (mail 메일), ...m (team 팀), ...n (plan 플랜), ...ng (sync 싱크 no)
_WORD_FINAL = {"l": _RIEUL, "m": "ㅁ", "n": "ㄴ"}


def final_consonant(value: str) -> str | None:
    """The final consonant (받침) a Korean reader hears at the end of ``value``: ``""`` for a vowel, ``"ㄹ"``,
    another jamo for other consonants, None when it cannot be told (no letter or digit at all). Closing
    punctuation and markup (``'``, ``)``, ``*``, `` ` ``) are skipped."""
    if value.rstrip().endswith(">"):  # a Slack mention or link: Slack shows a name we do not know
        return None
    stripped = value.rstrip(" \t'\"`*_)]}.,;:!?")
    if not stripped:
        return None
    last = stripped[-1]
    if "가" <= last <= "힣":
        return _HANGUL_FINALS[(ord(last) - 0xAC00) % 28].strip()
    if last.isdigit() and last.isascii():
        return _DIGIT_FINAL.get(last, "")
    if last.isascii() and last.isalpha():
        word = stripped[len(stripped.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")) :]
        if len(word) == 1 or word.isupper():  # read letter by letter: VPN 브이피엔, A 에이
            return _LETTER_FINAL.get(last.upper(), "")
        if word.lower().endswith("ng"):
            return "ㅇ"
        return _WORD_FINAL.get(last.lower(), "")
    return None


def particle(value: object, which: str) -> str:
    """The particle ``which`` (은, 이, 을, 과, 으로, 이다 or either spelling of each) that fits after ``value``:
    ``particle("A00012343", "은") == "은"``, ``particle("order-sync", "을") == "를"``, ``particle("erp", "으로")
    == "로"``. When the end of the value cannot be read, both spellings: ``은(는)``."""
    pair = _SPELLINGS[which]
    final = final_consonant(str(value))
    if final is None:
        return f"{pair[0]}({pair[1]})" if pair[0] != "으로" else "(으)로"
    if pair[0] == "으로":
        return "으로" if final and final != _RIEUL else "로"
    return pair[0] if final else pair[1]


class _ParticleFormatter(string.Formatter):
    """``str.format`` plus one spec: ``{name:은}`` is the value followed by the particle that fits it."""

    def format_field(self, value: object, format_spec: str) -> str:
        if format_spec in _SPELLINGS:
            text = format(value)
            return text + particle(text, format_spec)
        return super().format_field(value, format_spec)


_FORMATTER = _ParticleFormatter()


@functools.cache
def _has_particles(text: str) -> bool:
    """Whether ``text`` has a ``{name:은}`` field (most do not, and plain ``str.format`` is faster)."""
    return any(spec in _SPELLINGS for _, _, spec, _ in _FORMATTER.parse(text) if spec)


def fill(lang: str, message: str, params: Mapping[str, object]) -> str:
    """``message`` in ``lang`` filled from a mapping (e.g. a defaultdict that shows ``?`` for a missing value)."""
    text = message if lang == ENGLISH else _catalog(lang).gettext(message)
    return _FORMATTER.vformat(text, (), params) if _has_particles(text) else text.format_map(params)


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
    """A calendar date: ``2026-12-07`` or ``2026년 12월 7일(월)`` (no space before the day, as Korean writes it)."""
    if lang == KOREAN:
        return format_date(value, "y년 M월 d일(E)", locale="ko")
    return value.isoformat()


def moment(lang: str, at: datetime, tz: ZoneInfo) -> str:
    """An instant on the wall clock of ``tz``: ``2026-12-07 09:00`` or ``2026년 12월 7일(월) 오전 9:00``."""
    local = at.astimezone(tz)
    if lang == KOREAN:
        return f"{day(lang, local.date())} {format_time(local.time(), 'a h:mm', locale='ko')}"
    return local.strftime("%Y-%m-%d %H:%M")


def days_left(lang: str, days: int) -> str:
    """``7 days left`` / ``D-7``, ``expires today`` / ``오늘 만료 (D-Day)``, ``만료 3일 지남``"""
    if days == 0:
        return t(lang, "expires today")
    if days == 1:
        return t(lang, "1 day left")
    if days > 0:
        return t(lang, "{days} days left", days=days)
    if days == -1:
        return t(lang, "expired 1 day ago")
    return t(lang, "expired {days} days ago", days=-days)


KOREAN_ZONES = {"Asia/Seoul": "한국 시간"}


def zone_name(lang: str, zone: str) -> str:
    """A time zone as the reader says it: ``한국 시간`` for Asia/Seoul in Korean, else its IANA name."""
    return KOREAN_ZONES.get(zone, zone) if lang == KOREAN else zone


def zone_after(lang: str, at: datetime, tz: ZoneInfo) -> str:
    """The zone written after a time: its abbreviation (``KST``) in English, ``한국 시간`` in Korean."""
    if lang == KOREAN:
        return zone_name(lang, tz.key)
    return at.astimezone(tz).tzname() or tz.key


def render(lang: str, msg: Msg) -> str:
    """A :class:`~bot.rules.Msg` (a refusal, a stored outcome) in ``lang``; parameters that are messages too are
    translated first, and a ``zone`` (an IANA name) is said the reader's way."""
    params = {name: render(lang, value) if isinstance(value, Msg) else value for name, value in msg.params.items()}
    if isinstance(params.get("zone"), str):
        params["zone"] = zone_name(lang, str(params["zone"]))
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
