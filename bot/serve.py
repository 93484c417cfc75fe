"""``coupang-keybot serve``: connect to Slack, or explain how to.

Socket Mode when ``SLACK_APP_TOKEN`` is set; otherwise HTTP through gunicorn (one worker process with threads,
so the scheduler runs exactly once, inside that worker) serving :mod:`bot.wsgi`. For HTTP this process checks
the settings, then becomes a small gunicorn master (``python -m bot.serve``); the worker loads the bot.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from bot.bootstrap import Services

logger = logging.getLogger(__name__)
# Slack requests' threads; /healthz and /metrics have bot.http_worker.OPS_THREADS more of their own. A request
# that waits for a thread spends its 2 s database budget waiting (it counts from arrival).
HTTP_THREADS = 8


def _setup_help(lang: str, missing: str) -> str:
    from bot.i18n import N_, t  # here, not above: gunicorn's master runs this module and loads nothing of the bot

    text = N_(
        """\
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
    )
    return t(lang, text, missing=missing)


def serve(services: Services, *, port: int | None, scheduler: bool, out: TextIO) -> int:
    from bot.i18n import t

    settings = services.ctx.settings
    lang = settings.language
    if not settings.slack_configured:
        print(_setup_help(lang, ", ".join(settings.missing_slack_settings())), file=out)
        if sys.stdin.isatty():  # a person at a terminal: show them the bot working meanwhile
            from bot.console import run_console

            meanwhile = t(lang, "Meanwhile, here is the bot in this terminal (same database). :quit leaves.")
            print(f"\n{meanwhile}\n", file=out)
            return run_console(services, out=out)
        return 2
    from bot.slack import redact

    redact.install(settings=settings)
    if settings.slack_app_token:
        return _serve_socket_mode(services, port=port or settings.port, scheduler=scheduler, out=out)
    return _serve_http(services, port=port or settings.port, scheduler=scheduler, out=out)


def _serve_socket_mode(services: Services, *, port: int, scheduler: bool, out: TextIO) -> int:
    from bot.confirm import CONFIRM_PATH, build_confirm_app
    from bot.i18n import t
    from bot.ops_http import build_ops_listener, listen_address, serve_ops
    from bot.scheduler import build_scheduler
    from bot.slack.app import KeybotSocketModeHandler, build_app

    settings = services.ctx.settings
    app = build_app(services)
    # Slack needs no inbound port; monitoring does, and consumers proving they hold a new key. On KEYBOT_OPS_ADDR
    # /metrics needs no token; on KEYBOT_BIND:PORT, which anyone may reach, it needs KEYBOT_METRICS_TOKEN.
    host, listen_port = settings.ops_addr or (settings.bind, port)
    routes = {CONFIRM_PATH: build_confirm_app(services.rollout, services.monitor)}
    listener = build_ops_listener(services, token_free=settings.ops_addr is not None, routes=routes)
    address = listen_address(host, listen_port)
    try:
        ops: WSGIServer | None = serve_ops(listener, host, listen_port)
    except OSError as exc:
        variable = "KEYBOT_OPS_ADDR" if settings.ops_addr else "KEYBOT_BIND and PORT"
        logger.error("Cannot listen on %s (%s); set %s to a free address", address, exc.strerror, variable)
        ops = None
    jobs = build_scheduler(services, app) if scheduler else None
    if jobs is not None:
        jobs.start()
    services.monitor.started(scheduler=scheduler)
    connecting = t(
        settings.language,
        "Connecting to Slack in Socket Mode… (/healthz, /metrics and /rollout/confirm on http://{address})",
        address=address,
    )
    print(connecting, file=out, flush=True)
    # app.client: SLACK_API_URL and the retry handlers, so a 5xx or a lost connection on apps.connections.open
    # is retried instead of ending serve (the SDK sends the app token, not the bot token, for that call)
    handler = KeybotSocketModeHandler(app, settings.slack_app_token, web_client=app.client)
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
    from bot.i18n import t

    settings = services.ctx.settings
    if not settings.slack_signing_secret:
        print(
            t(settings.language, "HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode)."),
            file=out,
        )
        return 2
    if settings.ops_addr is not None and settings.ops_addr[1] == port:
        busy = t(
            settings.language,
            "KEYBOT_OPS_ADDR needs a port of its own: PORT ({port}) already serves Slack (e.g. 127.0.0.1:9464).",
            port=port,
        )
        print(busy, file=out)
        return 2
    from bot.ops_http import listen_address

    serving = t(
        settings.language,
        "Serving Slack requests on http://{address}/slack/events (also /rollout/confirm, /healthz, /metrics)",
        address=listen_address(settings.bind, port),
    )
    print(serving, file=out, flush=True)
    if settings.ops_addr is not None:
        ops = t(
            settings.language,
            "/healthz and /metrics without a token on http://{address} (KEYBOT_OPS_ADDR)",
            address=listen_address(*settings.ops_addr),
        )
        print(ops, file=out, flush=True)
    services.engine.dispose()
    sys.stderr.flush()
    # gunicorn's master only watches its worker: a fresh interpreter that never imports the bot holds ~20 MB,
    # where this process (SQLAlchemy, Bolt, the services) would hold ~80 MB next to the worker's own copy
    flags = [str(port), settings.bind, settings.log_level, settings.log_format]
    flags.append("scheduler" if scheduler else "no-scheduler")
    os.execv(sys.executable, [sys.executable, "-m", "bot.serve", *flags])  # noqa: S606 - our own interpreter
    return 0  # not reached


OPS_BIND_TRIES = 30  # one a second: a worker that replaces another waits for it to let go of KEYBOT_OPS_ADDR


def _serve_ops_address(services: Services) -> None:
    """HTTP mode's ``KEYBOT_OPS_ADDR`` listener (``/healthz``, ``/metrics`` without a token), from the worker."""
    from bot.ops_http import build_ops_listener, listen_address, serve_ops

    assert services.ctx.settings.ops_addr is not None
    host, port = services.ctx.settings.ops_addr
    app = build_ops_listener(services, token_free=True)
    for attempt in range(1, OPS_BIND_TRIES + 1):
        try:
            serve_ops(app, host, port)
            return
        except OSError as exc:
            if attempt == OPS_BIND_TRIES:
                address = listen_address(host, port)
                logger.error("Cannot listen on %s (%s); set KEYBOT_OPS_ADDR to a free address", address, exc.strerror)
            else:
                time.sleep(1)


def run_http(port: int, *, bind: str = "0.0.0.0", scheduler: bool, log_level: str, log_format: str) -> int:
    """gunicorn's master (``python -m bot.serve``) on ``bind:port``: the worker builds the services and the Bolt app
    itself, and serves ``KEYBOT_OPS_ADDR`` (``/healthz`` and ``/metrics`` without a token) from a thread."""
    from gunicorn.app.base import BaseApplication

    from bot.logs import configure_logging, gunicorn_logconfig
    from bot.slack import redact

    configure_logging(log_level, log_format)
    redact.install()
    worker: dict[str, Any] = {}

    def build_worker_wsgi() -> Any:
        # everything the bot needs is imported here, in the worker only
        from bot.bootstrap import build_services
        from bot.confirm import CONFIRM_PATH, build_confirm_app
        from bot.environment import load_environment, open_database
        from bot.ops_http import build_ops_wsgi
        from bot.slack.app import build_app
        from bot.wsgi import build_wsgi

        settings = load_environment()
        redact.install(settings=settings)  # the worker's handlers, and the secrets it now holds
        services = build_services(settings, engine=open_database(settings.database_url))
        app = build_app(services)
        worker.update(services=services, app=app)
        # /rollout/confirm stays here, where consumers already reach the bot; KEYBOT_OPS_ADDR serves only ops
        routes = {CONFIRM_PATH: build_confirm_app(services.rollout, services.monitor)}
        return build_wsgi(app, ops=build_ops_wsgi(services), routes=routes)

    def post_worker_init(process: Any) -> None:
        services = worker["services"]
        if services.ctx.settings.ops_addr is not None:
            threading.Thread(target=_serve_ops_address, args=(services,), name="ops-bind", daemon=True).start()
        if scheduler:
            from bot.scheduler import build_scheduler

            build_scheduler(services, worker["app"]).start()
            logger.info("scheduler started in worker %s", process.pid)
        services.monitor.started(scheduler=scheduler)

    options = {
        "bind": f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}",
        "workers": 1,
        "worker_class": "bot.http_worker.KeybotThreadWorker",  # gthread, plus arrival stamps and an ops pool
        "threads": HTTP_THREADS,
        "timeout": 30,
        "graceful_timeout": 10,
        "post_worker_init": post_worker_init,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level.lower(),
    }
    if log_format == "json":
        options["logconfig_dict"] = gunicorn_logconfig(log_level)

    class KeybotHTTP(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return build_worker_wsgi()

    try:
        KeybotHTTP().run()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


if __name__ == "__main__":  # the master exec'd by _serve_http: PORT BIND LOG_LEVEL LOG_FORMAT scheduler|no-scheduler
    from bot.serve import run_http as run  # by module name, so its log lines say bot.serve

    port, bind, level, fmt, jobs = sys.argv[1:6]
    sys.exit(run(int(port), bind=bind, scheduler=jobs == "scheduler", log_level=level, log_format=fmt))
