"""The keys' dates as an iCalendar file (RFC 5545) for a team calendar: an all-day event on each key's D-14 day
(WING's Reissue button opens) and on its expiry day. Pure: statuses and the clock are passed in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from bot.i18n import t
from bot.rules import REISSUE_WINDOW_DAYS
from bot.services.keys import KeyStatus

PRODID = "-//coupang-keybot//calendar//EN"
LINE_OCTETS = 75  # RFC 5545 3.1: lines longer than this are folded


def escape(text: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newlines escaped."""
    return (
        text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\r\n", "\\n").replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """One content line, folded to at most 75 octets per line, never inside a UTF-8 character (RFC 5545 3.1)."""
    parts: list[str] = []
    current, size, limit = "", 0, LINE_OCTETS
    for char in line:
        octets = len(char.encode())
        if size + octets > limit:
            parts.append(current)
            current, size, limit = "", 0, LINE_OCTETS - 1  # continuation lines start with a space
        current += char
        size += octets
    parts.append(current)
    return "\r\n ".join(parts)


def _event(uid: str, day: date, summary: str, description: str, stamp: str) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART;VALUE=DATE:{day:%Y%m%d}",
        f"DTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}",
        f"SUMMARY:{escape(summary)}",
        f"DESCRIPTION:{escape(description)}",
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
    ]


def calendar(statuses: Iterable[KeyStatus], now: datetime, today: date, lang: str, days: int | None = None) -> str:
    """The whole file, CRLF line ends. With ``days``, only events from today to ``days`` days ahead. Each event's
    UID stays the same for a key's generation, so a calendar that re-imports the file updates it in place."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    for s in statuses:
        key = f"{s.vendor_id} {s.label}"
        window = s.expires_on - timedelta(days=REISSUE_WINDOW_DAYS)
        events = [
            (
                "d14",
                window,
                t(lang, "Coupang key {key}: WING's Reissue button opens (D-14)", key=key),
                t(lang, "Start the reissue with /coupang-key reissue {vendor_id}.", vendor_id=s.vendor_id),
            ),
            (
                "expiry",
                s.expires_on,
                t(lang, "Coupang key {key} expires today", key=key),
                t(lang, "After today the key stops working; in WING the way back is Issue (발급)."),
            ),
        ]
        for kind, day, summary, description in events:
            if days is not None and not today <= day <= today + timedelta(days=days):
                continue
            uid = f"{s.vendor_id}-g{s.generation}-{kind}@coupang-keybot"
            lines += _event(uid, day, summary, description, stamp)
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
