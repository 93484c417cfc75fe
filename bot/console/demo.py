"""``console --demo``: a throwaway database with sample keys at different ages, and a clock you can move.

Time travel exists only here: the demo's settings point at a temporary SQLite file with its own master key,
so nothing the demo does (or its clock) ever touches the configured database.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from bot.bootstrap import Services, build_services
from bot.config import Settings
from bot.console.session import Console, Read
from bot.i18n import KOREAN, N_, t
from bot.services.keys import RegistrationForm
from bot.services.reminders import describe_sweep
from bot.slack.reissue import expire_requests, nudge_approved_requests
from bot.slack.reminders import SlackNotifier
from storage.db import upgrade

DEMO_ADMIN, DEMO_APPROVER, DEMO_MEMBER = "U0DEMOADMIN", "U0DEMOAPPROVER", "U0DEMOMEMBER"
DEMO_CHANNEL = "C0DEMOKEYS"
DEMO_NAMES = {DEMO_ADMIN: "Ada (admin)", DEMO_APPROVER: "Bo (approver)", DEMO_MEMBER: "Cy (member)"}
KOREAN_NAMES = {DEMO_ADMIN: "관리자 김관리", DEMO_APPROVER: "승인자 박승인", DEMO_MEMBER: "팀원 이팀원"}
UNREACHABLE = "http://127.0.0.1:9"  # the demo's keys are made up: never send them to Coupang

INTRO = N_("""\
Demo mode: a throwaway database with four sample keys, and a clock that jumps a day when you say :tick.
  You are {admin_name} = {admin}. {approver_name} = {approver} may approve reissues
  (:as {approver} to be them). Try: {status}, :tick, {reissue}.
  The sample keys are made up, so Verify reaches no Coupang server here.""")
# the sample keys' labels (and the demo's people) in the team's language, so a Korean demo reads Korean
SAMPLE_LABELS = {
    "en": ("Healthy Home Goods", "Spring Sale Store", "Outlet & Co", "Old Storefront", "Demo Trading"),
    KOREAN: ("행복한 생활용품", "봄맞이 특가 스토어", "아울렛 상회", "옛날 상점", "데모 상사"),
}


def intro(lang: str) -> str:
    """The demo's first words: who you are, who approves, what to try (the commands in the team's words)."""
    names = KOREAN_NAMES if lang == KOREAN else DEMO_NAMES
    korean = lang == KOREAN
    return t(
        lang,
        INTRO,
        admin_name=names[DEMO_ADMIN],
        admin=DEMO_ADMIN,
        approver_name=names[DEMO_APPROVER],
        approver=DEMO_APPROVER,
        status="/coupang-key 상태" if korean else "/coupang-key status",
        reissue="/coupang-key 재발급 A00010002" if korean else "/coupang-key reissue A00010002",
    )


class MovableClock:
    """The demo's clock: runs with real time from ``start``, and :tick moves it a day ahead. Running, not standing
    still, so what counts seconds (the 10-second verification limit) counts real seconds."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, *, days: int = 0, hours: int = 0) -> None:
        self._offset += timedelta(days=days, hours=hours)


def demo_settings(base: Settings | None, directory: Path) -> Settings:
    """The configured calendar and reminder settings; everything else the demo's own."""
    base = base or Settings(master_keys=(secrets.token_bytes(32),))
    return replace(
        base,
        master_keys=(secrets.token_bytes(32),),
        database_url=f"sqlite:///{directory / 'demo.db'}",
        slack_bot_token=None,
        slack_signing_secret=None,
        slack_app_token=None,
        admins=frozenset({DEMO_ADMIN}),
        approvers=frozenset({DEMO_APPROVER}),
        channel=DEMO_CHANNEL,
        coupang_api_url=UNREACHABLE,
        verify_daily=False,
    )


def demo_start(settings: Settings, real_now: datetime) -> datetime:
    """Today, just after the reminder time, so each :tick lands on a day whose milestone is already due."""
    tz = settings.timezone
    local = real_now.astimezone(tz)
    start = datetime.combine(local.date(), settings.reminder_time, tzinfo=tz) + timedelta(minutes=5)
    return start.astimezone(UTC)


def seed(services: Services) -> None:
    """Four keys: healthy, D-15 and D-8 (one :tick from the D-14 and D-7 reminders), and expired."""
    today = services.ctx.today()
    *labels, company = SAMPLE_LABELS.get(services.ctx.settings.language, SAMPLE_LABELS["en"])
    samples = [
        ("A00010001", labels[0], {"issued_on": today - timedelta(days=30)}),
        ("A00010002", labels[1], {"expires_on": today + timedelta(days=15)}),
        ("A00010003", labels[2], {"expires_on": today + timedelta(days=8)}),
        ("A00010004", labels[3], {"expires_on": today - timedelta(days=3)}),
    ]
    for vendor_id, label, dates in samples:
        form = RegistrationForm(
            vendor_id=vendor_id,
            label=label,
            access_key=f"demo-access-{secrets.token_hex(8)}",
            secret_key=f"demo-secret-{secrets.token_hex(16)}",
            channel_id=DEMO_CHANNEL,
            owner_id=DEMO_ADMIN,
            integration="self",
            company_name=company,
            company_url="https://wing.coupang.com",
            ip_addresses="211.45.10.3",
            **dates,
        )
        services.keys.register(DEMO_ADMIN, form)


def sweep_reminders(console: Console) -> list[str]:
    """What the scheduler runs after the clock moved, with the same functions, posting through the console's
    Slack stand-in: one reminder sweep, then reissue requests expired after 24 hours (their messages updated, the
    requester told) and the nudge of requests approved 2 hours ago without their new key, so "the approver is
    away" can be rehearsed."""
    report = console.bot.reminders.sweep(SlackNotifier(console.client, lang=console.bot.languages.team))
    lang = console.lang
    lines = describe_sweep(report, console.bot.ctx.settings.timezone, lang)
    # in the order a running server would have done them in the time skipped: the nudge 2 hours after an approval,
    # the expiry 24 hours after the request
    nudged = nudge_approved_requests(console.bot, console.client)
    if nudged:
        lines.append(t(lang, "{count} approved request(s) still without their new key: nudged.", count=nudged))
    expired = expire_requests(console.bot, console.client)
    if expired:
        lines.append(t(lang, "{count} reissue request(s) expired after 24 hours.", count=expired))
    return lines


def run_demo(
    base: Settings | None,
    *,
    out: TextIO,
    read: Read,
    read_secret: Read | None = None,
    user: str | None = None,
    real_now: datetime | None = None,
) -> int:
    with tempfile.TemporaryDirectory(prefix="keybot-demo-") as directory:
        settings = demo_settings(base, Path(directory))
        clock = MovableClock(demo_start(settings, real_now or datetime.now(UTC)))
        services = build_services(settings, clock=clock)
        try:
            upgrade(services.engine)
            seed(services)
            console = Console(
                services,
                user=user or DEMO_ADMIN,
                out=out,
                read=read,
                read_secret=read_secret,
                channel=DEMO_CHANNEL,
                clock=clock,
                sweep=sweep_reminders,
                user_names=dict(KOREAN_NAMES if settings.language == KOREAN else DEMO_NAMES),
            )
            console.say(intro(settings.language))
            console.run_sweep()  # as `serve` does at start-up
            return console.run()
        finally:
            services.engine.dispose()
