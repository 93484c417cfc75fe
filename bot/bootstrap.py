"""The one place that wires settings, database, crypto and services together (tests call it too)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from bot.config import Settings
from bot.coupang import CoupangClient
from bot.destinations import Destinations
from bot.monitor import Monitor, RolloutCollector, UndeliverableCollector
from bot.services.audit import AuditService
from bot.services.base import Clock, Context, SystemClock
from bot.services.keys import KeyService
from bot.services.languages import LanguageService
from bot.services.overview import OverviewService
from bot.services.reissue import GroupMembers, ReissueService
from bot.services.reminders import ReminderService
from bot.services.rollout import RolloutService
from bot.services.sheet import SheetService
from bot.services.verification import KeyChecker, VerificationService
from storage.audit import AuditLog
from storage.crypto import Keyring
from storage.db import make_engine, make_session_factory
from storage.repositories import KeyRepository


@dataclass
class Services:
    ctx: Context
    keys: KeyService
    audit: AuditService
    verification: VerificationService
    reissues: ReissueService
    reminders: ReminderService
    overview: OverviewService
    languages: LanguageService
    monitor: Monitor  # this process's sweeps and Slack answers, and the /metrics registry
    rollout: RolloutService
    sheet: SheetService  # keys export and import --update

    @property
    def engine(self) -> Engine:
        bind = self.ctx.sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    def master_key_problem(self) -> str | None:
        """Why this process must be restarted (KEYBOT_MASTER_KEY rotated since it started), or None: for /healthz."""
        with self.ctx.reading() as session:
            return self.ctx.audit.retired_key_problem(session)


def build_services(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    coupang: KeyChecker | None = None,
    group_members: GroupMembers | None = None,
    destinations: Destinations | None = None,
) -> Services:
    keyring = Keyring(settings.master_keys)
    ctx = Context(
        settings=settings,
        sessions=make_session_factory(engine or make_engine(settings.database_url)),
        clock=clock or SystemClock(),
        keys=KeyRepository(keyring),
        audit=AuditLog(keyring),
    )
    overview = OverviewService(ctx)
    rollout = RolloutService(
        ctx,
        destinations
        or Destinations(
            vault_addr=settings.vault_addr, vault_token=settings.vault_token, vault_namespace=settings.vault_namespace
        ),
    )
    ctx.wake_rollout = rollout.kick
    reissues = ReissueService(ctx, group_members)
    rollout.approvers = reissues  # consumers from Slack are approved by the reissue approvers (ROLLOUT.md)
    monitor = Monitor(settings, ctx.clock, overview)
    monitor.add_collector(RolloutCollector(rollout.delivery_states))
    keys = KeyService(ctx)
    reminders = ReminderService(ctx)
    monitor.add_collector(UndeliverableCollector(reminders.undeliverable))
    return Services(
        ctx=ctx,
        keys=keys,
        audit=AuditService(ctx),
        verification=VerificationService(ctx, coupang or CoupangClient(settings.coupang_api_url)),
        reissues=reissues,
        reminders=reminders,
        overview=overview,
        languages=LanguageService(ctx),
        monitor=monitor,
        rollout=rollout,
        sheet=SheetService(ctx, keys),
    )
