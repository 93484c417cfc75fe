"""Background jobs inside ``serve``: APScheduler 3 with no state of its own (the database remembers)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt import App

from bot.bootstrap import Services
from bot.slack.reissue import add_reissue_jobs
from bot.slack.reminders import add_reminder_job
from bot.slack.rollout import add_rollout_job
from bot.slack.verify import add_verification_jobs

logger = logging.getLogger(__name__)


def build_scheduler(services: Services, app: App) -> BackgroundScheduler:
    """Every job the bot runs; each feature adds its own ``scheduler.add_job(...)`` line here."""
    scheduler = BackgroundScheduler(timezone=services.ctx.settings.timezone)
    add_reminder_job(scheduler, services, app.client)
    add_verification_jobs(scheduler, services, app.client)
    add_reissue_jobs(scheduler, services, app.client)
    add_rollout_job(scheduler, services)
    return scheduler
