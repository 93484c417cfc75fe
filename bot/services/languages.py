"""Which language a person reads: their own choice (``/coupang-key language``), else ``KEYBOT_LANGUAGE``."""

from __future__ import annotations

from bot.i18n import LANGUAGES
from bot.rules import InvalidInput
from bot.services.base import Context
from storage import repositories as repo


class LanguageService:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @property
    def team(self) -> str:
        """The language of channel posts, App Home and everyone who chose nothing."""
        return self.ctx.settings.language

    def of(self, user_id: str | None) -> str:
        if not user_id:
            return self.team
        with self.ctx.reading() as session:
            return repo.user_language(session, user_id=user_id) or self.team

    def choose(self, user_id: str, language: str) -> None:
        if language not in LANGUAGES:
            raise InvalidInput.one("language", "Choose en (English) or ko (Korean).")
        with self.ctx.transaction() as session:
            repo.set_user_language(session, user_id=user_id, language=language, at=self.ctx.clock.now())
            self.ctx.record(session, user_id, "language.chosen", None, {"language": language})
