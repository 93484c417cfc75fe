"""What the bot knows at a glance, for ``/metrics`` and the weekly summary: bounded reads, no secrets.

The summary is claimed like the daily chain head, in ``scheduled_posts`` (:mod:`bot.services.posts`), so several
``serve`` processes (and a restart the same day) post it once, and a failed post is retried by a later sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from bot import i18n, rules
from bot.i18n import N_, t
from bot.services.base import Context
from bot.services.posts import Claim, ScheduledPosts
from storage import repositories as repo
from storage.models import Key

MAX_KEY_SERIES = 5000  # per-key metrics for at most this many keys (most urgent first)
SUMMARY_POSTED = "summary.posted"
SUMMARY_POST = "weekly_summary"  # scheduled_posts.kind
SUMMARY_ATTENTION_LINES = 10


@dataclass(frozen=True)
class KeyFacts:
    vendor_id: str
    label: str
    expires_on: date
    days_left: int
    generation: int
    verify_ok: bool | None  # None before the first definitive check
    open_request: bool  # a reissue request is pending or approved
    owner_id: str | None = None  # whom an alert about it should reach (metrics labels)
    integrator: str | None = None  # the integrator company, for keys linked to one

    @property
    def phase(self) -> rules.Phase:
        return rules.phase_for(self.days_left)


@dataclass(frozen=True)
class Overview:
    today: date
    keys: list[KeyFacts]  # most urgent first, at most the limit asked for
    healthy: int
    reissue_window: int
    expired: int

    @property
    def total(self) -> int:
        return self.healthy + self.reissue_window + self.expired

    @property
    def phases(self) -> dict[str, int]:
        return {
            str(rules.Phase.HEALTHY): self.healthy,
            str(rules.Phase.REISSUE_WINDOW): self.reissue_window,
            str(rules.Phase.EXPIRED): self.expired,
        }

    @property
    def next_expiry(self) -> KeyFacts | None:
        return next((k for k in self.keys if k.days_left >= 0), None)

    def describe(self, lang: str = "en") -> str:
        """One line: "6 keys: all healthy; next expiry A00012345 on 2027-03-02 (94 days left)"."""
        if not self.total:
            return t(lang, "No keys registered yet: add one with /coupang-key add.")
        counts = [
            t(lang, name, count=n)
            for n, name in (
                (self.healthy, N_("{count} healthy")),
                (self.reissue_window, N_("{count} in the reissue window")),
                (self.expired, N_("{count} expired")),
            )
            if n
        ]
        state = t(lang, "all healthy") if self.healthy == self.total else ", ".join(counts)
        upcoming = self.next_expiry
        if upcoming is None:
            return t(lang, "{total} keys: {state}", total=self.total, state=state)
        return t(
            lang,
            "{total} keys: {state}; next expiry {vendor_id} on {date} ({days_left})",
            total=self.total,
            state=state,
            vendor_id=upcoming.vendor_id,
            date=i18n.day(lang, upcoming.expires_on),
            days_left=i18n.days_left(lang, upcoming.days_left),
        )

    def needing_attention(self) -> list[KeyFacts]:
        return [k for k in self.keys if k.phase != rules.Phase.HEALTHY]


def summary_due(now: datetime, ctx: Context) -> date | None:
    """The local day whose weekly summary is due at ``now`` (the summary weekday, from the reminder time on)."""
    settings = ctx.settings
    if settings.weekly_summary_day is None:
        return None
    local = now.astimezone(settings.timezone)
    if local.weekday() != settings.weekly_summary_day or local.time() < settings.reminder_time:
        return None
    return local.date()


class OverviewService:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.posts = ScheduledPosts(ctx)

    def overview(self, *, limit: int = MAX_KEY_SERIES, now: datetime | None = None) -> Overview:
        """Phase counts for every key, facts for the ``limit`` most urgent ones (ciphertexts are never read)."""
        now = now or self.ctx.clock.now()
        today = self.ctx.today(now)
        with self.ctx.transaction() as session:
            healthy, window, expired = repo.expiry_counts(
                session, today=today, window_end=today + timedelta(days=rules.REISSUE_WINDOW_DAYS)
            )
            rows = session.execute(
                select(
                    Key.vendor_id,
                    Key.label,
                    Key.expires_on,
                    Key.generation,
                    Key.verify_ok,
                    Key.owner_id,
                    Key.integrator_name,
                )
                .order_by(Key.expires_on, Key.vendor_id)
                .limit(limit)
            ).all()
            requests = repo.open_requests(session, now=now) if rows else {}
        keys = [
            KeyFacts(
                vendor_id=vendor_id,
                label=label,
                expires_on=expires_on,
                days_left=rules.days_left(expires_on, today),
                generation=generation,
                verify_ok=verify_ok,
                open_request=vendor_id in requests,
                owner_id=owner_id,
                integrator=integrator,
            )
            for vendor_id, label, expires_on, generation, verify_ok, owner_id, integrator in rows
        ]
        return Overview(today, keys, healthy, window, expired)

    def claim_weekly_summary(self, *, now: datetime | None = None) -> tuple[Claim, Overview] | None:
        """This week's summary post and what it says, when it is due (or an earlier attempt failed) and no other
        process has it, else None. Claimed in ``scheduled_posts`` (:mod:`bot.services.posts`)."""
        now = now or self.ctx.clock.now()
        if self.ctx.settings.weekly_summary_day is None:
            return None
        claim = self.posts.claim(SUMMARY_POST, summary_due(now, self.ctx), retry_days=6, action=SUMMARY_POSTED, now=now)
        if claim is None:
            return None
        return claim, self.overview(limit=SUMMARY_ATTENTION_LINES + 1, now=now)
