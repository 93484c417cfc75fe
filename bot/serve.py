"""``coupang-keybot serve``: connect to Slack, or explain how to."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.bootstrap import Services

SETUP_HELP = """\
Slack is not configured yet: {missing} missing.

To connect the bot to Slack:
  1. Open https://api.slack.com/apps, choose "Create New App" -> "From an app manifest",
     pick your workspace and paste manifest.yml from this repository.
  2. Socket Mode (no public URL needed): in manifest.yml set settings.socket_mode_enabled to true first.
     Then under "Basic Information" -> "App-Level Tokens" create a token with connections:write
     and put it in .env as SLACK_APP_TOKEN=xapp-...
     HTTP instead: replace YOUR-HOST in manifest.yml with your public host, and put the
     "Signing Secret" from "Basic Information" in .env as SLACK_SIGNING_SECRET.
  3. Install the app to your workspace and put the "Bot User OAuth Token" in .env as SLACK_BOT_TOKEN=xoxb-...
  4. Invite the bot to your reminder channel and set KEYBOT_CHANNEL to that channel's ID.
Then run `make run` again."""


def serve(services: Services, *, port: int | None, scheduler: bool, out: TextIO) -> int:
    settings = services.ctx.settings
    if not settings.slack_configured:
        print(SETUP_HELP.format(missing=" and ".join(settings.missing_slack_settings())), file=out)
        if sys.stdin.isatty():  # a person at a terminal: show them the bot working meanwhile
            from bot.console import run_console

            print("\nMeanwhile, here is the bot in this terminal (same database). :quit leaves.\n", file=out)
            return run_console(services, out=out)
        return 2
    raise NotImplementedError("Slack serving arrives with the Slack app")
