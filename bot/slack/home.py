"""App Home: the most urgent keys and counts over all of them, refreshed each time someone opens it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.bootstrap import Services
from bot.slack import views

logger = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def handle_app_home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        lang = services.languages.of(event["user"])
        page = services.keys.status_page(limit=views.HOME_MAX_KEYS)  # never every key: 100,000 would not fit
        client.views_publish(
            user_id=event["user"], view=views.build_home_view(lang, page, services.ctx.settings.timezone)
        )

    app.event("app_home_opened")(handle_app_home_opened)
