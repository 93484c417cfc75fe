"""App Home: the most urgent keys and counts over all of them, refreshed each time someone opens it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.bootstrap import Services
from bot.slack import views
from bot.slack.failures import after_ack, later

logger = logging.getLogger(__name__)


def publish_home(services: Services, client: WebClient, user_id: str, *, expanded: str | None = None) -> None:
    """The dashboard for ``user_id``; ``expanded``: the key whose Details button was pressed."""
    lang = services.languages.of(user_id)
    page = services.keys.status_page(limit=views.HOME_MAX_KEYS)  # never every key: 100,000 would not fit
    problems = services.reminders.undeliverable()  # a channel refusing reminders is shown first
    view = views.build_home_view(lang, page, services.ctx.settings.timezone, expanded=expanded, problems=problems)
    client.views_publish(user_id=user_id, view=view)


def register(app: App, services: Services) -> None:
    def handle_app_home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        if event.get("tab", "home") == "home":
            later(context, publish_home, services, client, event["user"])

    then = after_ack(services.languages)
    app.event("app_home_opened")(ack=handle_app_home_opened, lazy=then)
