"""Which language a person reads: their own choice (``/coupang-key language``), else ``KEYBOT_LANGUAGE``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bot.i18n import LANGUAGES
from bot.rules import InvalidInput
from bot.services.base import Context
from storage import repositories as repo

CACHE_SECONDS = 30.0
CACHE_SIZE = 10_000  # people, far more than a team has; past it the cache starts over


class LanguageService:
    """``of`` answers from a small in-process cache, so a Slack request does not open a database transaction
    just to learn the reader's language (most requests need it, ``/coupang-key status`` before anything else).

    Why stale answers are bounded and acceptable: :meth:`choose` updates this process's cache after its commit,
    so the person who chose sees the new language at once here. Another process (a second worker during a
    deploy, Socket Mode beside the CLI) learns it when its entry expires, at most :data:`CACHE_SECONDS` later.
    Until then that process answers in the previous language: wording only — nothing is refused, lost or
    decided by it, and the person can read both languages' replies.
    """

    def __init__(self, ctx: Context, *, monotonic: Callable[[], float] = time.monotonic):
        self.ctx = ctx
        self._monotonic = monotonic
        self._cache: dict[str, tuple[str | None, float]] = {}  # user ID -> (their choice or None, expires at)
        self._lock = threading.Lock()

    @property
    def team(self) -> str:
        """The language of channel posts, App Home and everyone who chose nothing."""
        return self.ctx.settings.language

    def of(self, user_id: str | None) -> str:
        if not user_id:
            return self.team
        cached = self._cache.get(user_id)
        if cached is not None and cached[1] > self._monotonic():
            return cached[0] or self.team
        with self.ctx.reading() as session:
            chosen = repo.user_language(session, user_id=user_id)
        self._remember(user_id, chosen)
        return chosen or self.team

    def choose(self, user_id: str, language: str) -> None:
        if language not in LANGUAGES:
            raise InvalidInput.one("language", "Choose en (English) or ko (Korean).")
        with self.ctx.transaction() as session:
            repo.set_user_language(session, user_id=user_id, language=language, at=self.ctx.clock.now())
            self.ctx.record(session, user_id, "language.chosen", None, {"language": language})
        self._remember(user_id, language)  # after the commit: a refused choice changes nothing here either

    def _remember(self, user_id: str, language: str | None) -> None:
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[user_id] = (language, self._monotonic() + CACHE_SECONDS)
