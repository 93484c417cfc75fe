"""Reading the audit chain: verify, export, recent events and a key's history."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TextIO

from bot.services.base import Context
from bot.services.posts import Claim, ScheduledPosts
from storage import repositories as repo
from storage.audit import VerifyResult

HEAD_POSTED = "audit.head_posted"
HEAD_POST = "audit_head"  # scheduled_posts.kind
EXPORT_COLUMNS = ("seq", "at", "actor", "action", "vendor_id", "details", "mac")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    vendor_id: str | None
    details: dict[str, Any]
    mac: str

    def as_row(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "vendor_id": self.vendor_id,
            "details": self.details,
            "mac": self.mac,
        }


def spreadsheet_safe(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text instead of running it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class AuditService:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.posts = ScheduledPosts(ctx)

    def verify(self) -> VerifyResult:
        with self.ctx.reading() as session:
            return self.ctx.audit.verify(session)

    def head(self) -> tuple[int, str] | None:
        """The newest entry's number and MAC: posted to Slack daily so a rewrite can be noticed."""
        with self.ctx.reading() as session:
            head = self.ctx.audit.head(session)
            return (head.seq, head.mac) if head else None

    def claim_daily_head(self) -> tuple[Claim, tuple[int, str]] | None:
        """Today's chain-head post and the head to post, from the reminder time on, or None when there is nothing
        to post or another process (or an earlier run) has it. Claimed in ``scheduled_posts``
        (:mod:`bot.services.posts`): a failed post is retried by a later run the same day, and posted once."""
        now = self.ctx.clock.now()
        head = self.head()
        if head is None:
            return None
        settings = self.ctx.settings
        due = self.ctx.today(now) if now.astimezone(settings.timezone).time() >= settings.reminder_time else None
        claim = self.posts.claim(HEAD_POST, due, retry_days=0, action=HEAD_POSTED, now=now)
        if claim is None:
            return None
        return replace(claim, details={"seq": head[0], "mac": head[1][:16]}), head

    def entries(self, *, vendor_id: str | None = None, limit: int | None = None) -> Sequence[AuditEntry]:
        """Newest first when ``limit`` is given (the latest N), otherwise the whole log in order."""
        with self.ctx.reading() as session:
            events = repo.audit_events(session, vendor_id=vendor_id, limit=limit, newest_first=limit is not None)
            return [
                AuditEntry(e.seq, e.at, e.actor, e.action, e.vendor_id, json.loads(e.details), e.mac) for e in events
            ]

    def export(self, out: TextIO, fmt: str = "csv") -> int:
        entries = self.entries()
        if fmt == "jsonl":
            for entry in entries:
                out.write(json.dumps(entry.as_row(), ensure_ascii=False, sort_keys=True) + "\n")
        else:  # for spreadsheets: a BOM so Excel reads UTF-8 (Korean), times in KEYBOT_TIMEZONE
            out.write("\ufeff")
            writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for entry in entries:
                row = entry.as_row()
                row["at"] = entry.at.astimezone(self.ctx.settings.timezone).isoformat(sep=" ")
                row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
                writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
        return len(entries)
