"""``coupang-keybot serve``: connect to Slack, or explain how to.

Socket Mode when ``SLACK_APP_TOKEN`` is set; otherwise HTTP through gunicorn (one worker process with threads,
so the scheduler runs exactly once, inside that worker) serving :mod:`bot.wsgi`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO
from wsgiref.simple_server import WSGIServer

from bot.bootstrap import Services

logger = logging.getLogger(__name__)
HTTP_THREADS = 8

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
Then run `make run` again. Until then, `.venv/bin/coupang-keybot console --demo` shows the bot in a terminal."""


def serve(services: Services, *, port: int | None, scheduler: bool, out: TextIO) -> int:
    settings = services.ctx.settings
    if not settings.slack_configured:
        print(SETUP_HELP.format(missing=" and ".join(settings.missing_slack_settings())), file=out)
        if sys.stdin.isatty():  # a person at a terminal: show them the bot working meanwhile
            from bot.console import run_console

            print("\nMeanwhile, here is the bot in this terminal (same database). :quit leaves.\n", file=out)
            return run_console(services, out=out)
        return 2
    from bot.slack import redact

    redact.install()
    if settings.slack_app_token:
        return _serve_socket_mode(services, port=port or settings.port, scheduler=scheduler, out=out)
    return _serve_http(services, port=port or settings.port, scheduler=scheduler, out=out)


def _serve_socket_mode(services: Services, *, port: int, scheduler: bool, out: TextIO) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.ops_http import build_ops_wsgi, serve_ops
    from bot.scheduler import build_scheduler
    from bot.slack.app import build_app

    settings = services.ctx.settings
    app = build_app(services)
    try:  # Slack needs no inbound port; monitoring does
        ops: WSGIServer | None = serve_ops(build_ops_wsgi(services), port)
    except OSError as exc:
        logger.error("Cannot serve /healthz and /metrics on port %s (%s); set PORT to a free port", port, exc.strerror)
        ops = None
    jobs = build_scheduler(services, app) if scheduler else None
    if jobs is not None:
        jobs.start()
    services.monitor.started(scheduler=scheduler)
    print(f"Connecting to Slack in Socket Mode… (health and metrics on port {port})", file=out, flush=True)
    # app.client: SLACK_API_URL and the retry handlers, so a 5xx or a lost connection on apps.connections.open
    # is retried instead of ending serve (the SDK sends the app token, not the bot token, for that call)
    handler = SocketModeHandler(app, settings.slack_app_token, web_client=app.client)
    try:
        handler.start()  # blocks until interrupted
    except KeyboardInterrupt:
        pass
    finally:
        if ops is not None:
            ops.shutdown()
        if jobs is not None:
            jobs.shutdown(wait=False)
    return 0


def _serve_http(services: Services, *, port: int, scheduler: bool, out: TextIO) -> int:
    from gunicorn.app.base import BaseApplication

    from bot.confirm import CONFIRM_PATH, build_confirm_app
    from bot.logs import gunicorn_logconfig
    from bot.ops_http import build_ops_wsgi
    from bot.scheduler import build_scheduler
    from bot.slack.app import build_app
    from bot.wsgi import build_wsgi

    if not services.ctx.settings.slack_signing_secret:
        print("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode).", file=out)
        return 2
    app = build_app(services)
    wsgi = build_wsgi(app, ops=build_ops_wsgi(services), routes={CONFIRM_PATH: build_confirm_app(services.rollout)})

    def post_worker_init(worker: Any) -> None:
        # connections opened before the fork (migrations) must not be shared with the worker
        services.engine.dispose(close=False)
        if scheduler:
            build_scheduler(services, app).start()
            logger.info("scheduler started in worker %s", worker.pid)
        services.monitor.started(scheduler=scheduler)

    options = {
        "bind": f"0.0.0.0:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": HTTP_THREADS,
        "timeout": 30,
        "graceful_timeout": 10,
        "post_worker_init": post_worker_init,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": services.ctx.settings.log_level.lower(),
    }
    if services.ctx.settings.log_format == "json":
        options["logconfig_dict"] = gunicorn_logconfig(services.ctx.settings.log_level)

    class KeybotHTTP(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return wsgi

    print(
        f"Serving Slack requests on http://0.0.0.0:{port}/slack/events (health: /healthz, metrics: /metrics)",
        file=out,
        flush=True,
    )
    try:
        KeybotHTTP().run()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0
