"""``coupang-keybot console``: the real bot (same Bolt app, listeners, services, database) in a terminal.

Typed ``/coupang-key …`` lines become signed Slack requests dispatched through Bolt; what the bot sends to
Slack is drawn as text. See :mod:`bot.console.session`; ``--demo`` is :mod:`bot.console.demo`.
"""

from bot.console.session import HELP, Console, InlineExecutor, run_console, terminal_readers

__all__ = ["HELP", "Console", "InlineExecutor", "run_console", "terminal_readers"]
