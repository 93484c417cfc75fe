"""Verifying a key from Slack: ``/coupang-key verify VENDOR_ID``, the **Verify** button, and the scheduled checks.

The Coupang call can take seconds (retries included), so every listener acks first and answers afterwards with
``respond()`` (or an ephemeral / direct message when the click has no response URL, e.g. in App Home).
The scheduled jobs post in the key's channel (or ``KEYBOT_CHANNEL``): the post-deadline result after a reissue or
an edit, and, with ``KEYBOT_VERIFY_DAILY=true``, the daily probe's changes only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot import i18n
from bot.bootstrap import Services
from bot.i18n import N_, render, t
from bot.rules import KeybotError, quote
from bot.services.verification import WHAT_TO_CHECK, VerifyOutcome, VerifyResult
from bot.slack import ids
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.failures import after_ack, later
from bot.slack.views import escape

logger = logging.getLogger(__name__)

CHECK_EVERY_MINUTES = 5
USAGE = N_("Usage: `{command} verify VENDOR_ID`, e.g. `{command} verify A00012345`.")

_ICON = {
    VerifyOutcome.WORKS: ":white_check_mark:",
    VerifyOutcome.NEAR_LIMIT: ":white_check_mark:",
    VerifyOutcome.INVALID_KEY: ":x:",
    VerifyOutcome.IP_NOT_ALLOWED: ":no_entry:",
    VerifyOutcome.WRONG_VENDOR: ":x:",
    VerifyOutcome.RATE_LIMITED: ":hourglass:",
    VerifyOutcome.BLOCKED: ":hourglass:",
    VerifyOutcome.UNAVAILABLE: ":grey_question:",
    VerifyOutcome.NOT_ACTIVE_YET: ":hourglass_flowing_sand:",
    VerifyOutcome.IN_PROGRESS: ":hourglass_flowing_sand:",
    VerifyOutcome.NOT_CHECKABLE: ":information_source:",
}
_TITLE = {  # Korean titles quote Coupang's FAQ wording ("Invalid signature", "Not allowed IP") to search for
    VerifyOutcome.WORKS: N_("works"),
    VerifyOutcome.NEAR_LIMIT: N_("works (Coupang warned it is near the call limit: the bot backs off)"),
    VerifyOutcome.INVALID_KEY: N_("was refused: invalid or expired key"),
    VerifyOutcome.IP_NOT_ALLOWED: N_("was refused: the bot's IP is not allowed"),
    VerifyOutcome.WRONG_VENDOR: N_("was refused: wrong vendor ID or path"),
    VerifyOutcome.RATE_LIMITED: N_("could not be checked: Coupang is rate-limiting"),
    VerifyOutcome.BLOCKED: N_("could not be checked: Coupang is blocking the bot for a while (wait)"),
    VerifyOutcome.UNAVAILABLE: N_("could not be checked: Coupang unavailable"),
    VerifyOutcome.NOT_ACTIVE_YET: N_("is not active yet"),
    VerifyOutcome.IN_PROGRESS: N_("is being checked"),
    VerifyOutcome.NOT_CHECKABLE: N_("cannot be checked from the bot (it is called from the integrator's IPs)"),
}


@dataclass(frozen=True)
class VerifyClick:
    """A click on a **Verify** button (action_id ``VERIFY_KEY``, value = vendor ID)."""

    user_id: str
    vendor_id: str
    channel_id: str | None
    response_url: str | None


def parse_verify_click(body: dict[str, Any]) -> VerifyClick:
    action = (body.get("actions") or [{}])[0]
    return VerifyClick(
        user_id=(body.get("user") or {}).get("id", ""),
        vendor_id=str(action.get("value") or ""),
        channel_id=(body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id"),
        response_url=body.get("response_url"),
    )


# ---------------------------------------------------------------- views (pure)


def _when(lang: str, at: datetime, tz: ZoneInfo) -> str:
    return f"{i18n.moment(lang, at, tz)} {i18n.zone_after(lang, at, tz)}"


def result_text(lang: str, result: VerifyResult) -> str:
    """The notification / fallback text."""
    return t(
        lang,
        "{icon} {vendor_id} {label}: the key {outcome}.",
        icon=_ICON[result.outcome],
        vendor_id=result.vendor_id,
        label=escape(result.label),
        outcome=t(lang, _TITLE[result.outcome]),
    )


def _context(lang: str, result: VerifyResult, tz: ZoneInfo, how: str) -> ContextBlock:
    when = _when(lang, result.checked_at, tz)
    if result.paused_until is not None:
        text = t(lang, "{how} · checked {time} (no new call to Coupang: the bot is backing off)", how=how, time=when)
        return ContextBlock(elements=[MarkdownTextObject(text=text)])
    text = (
        t(lang, "{how} · checked {time}", how=how, time=when)
        if result.fresh
        else t(
            lang,
            "{how} · checked {time} (repeated: at most one check per vendor ID every 10 seconds)",
            how=how,
            time=when,
        )
    )
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def build_result_blocks(lang: str, result: VerifyResult, tz: ZoneInfo) -> list[Block]:
    """The answer to one person's check."""
    detail = escape(render(lang, result.detail))
    return [
        SectionBlock(text=MarkdownTextObject(text=f"{result_text(lang, result)}\n{detail}")),
        _context(lang, result, tz, t(lang, "Signed read-only call to Coupang (returnShippingCenters)")),
    ]


def build_checklist(lang: str) -> str:
    return t(lang, "*What to check:*") + "\n" + "\n".join(f"• {render(lang, item)}" for item in WHAT_TO_CHECK)


def _check_blocks(lang: str, result: VerifyResult, tz: ZoneInfo, *, works: str, fails: str, source: str) -> list[Block]:
    """A check the bot made by itself, posted to the key's channel; a failure comes with what to check."""
    name = f"*{result.vendor_id}* {escape(result.label)}"
    head = (
        f":white_check_mark: {name}: {t(lang, works)}"
        if result.works
        else t(
            lang,
            ":rotating_light: {name}: {what} ({outcome}).",
            name=name,
            what=t(lang, fails),
            outcome=t(lang, _TITLE[result.outcome]),
        )
    )
    detail = escape(render(lang, result.detail))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=f"{head}\n{detail}"))]
    if not result.works:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=build_checklist(lang))))
    blocks.append(_context(lang, result, tz, t(lang, source)))
    return blocks


def build_deadline_blocks(lang: str, result: VerifyResult, tz: ZoneInfo) -> list[Block]:
    """The automatic check once a reissued or edited key's access deadline has passed."""
    return _check_blocks(
        lang,
        result,
        tz,
        works=N_("the key works with Coupang now."),
        fails=N_("the key still fails after its activation deadline"),
        source=N_("Automatic check after a reissue or a linking-info edit"),
    )


def build_probe_change_blocks(lang: str, result: VerifyResult, tz: ZoneInfo) -> list[Block]:
    """The daily probe found a change: a key that stopped working, or works again."""
    return _check_blocks(
        lang,
        result,
        tz,
        works=N_("the key works again."),
        fails=N_("the key stopped working"),
        source=N_("Daily key probe"),
    )


def _dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


# ---------------------------------------------------------------- listeners


class VerifyListeners:
    def __init__(self, services: Services):
        self.services = services

    def handle_command(
        self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        """``/coupang-key verify VENDOR_ID``: ack at once, answer when Coupang has."""
        lang = request.lang
        if len(request.args) != 1:
            ack(text=t(lang, USAGE, command=ids.COMMAND), response_type="ephemeral")
            return
        ack(
            text=t(
                lang, ":hourglass_flowing_sand: Checking {vendor_id} with Coupang…", vendor_id=quote(request.args[0])
            ),
            response_type="ephemeral",
        )
        later(context, self._answer, lang, request.user_id, request.args[0], respond)

    def _answer(self, lang: str, user_id: str, vendor_id: str, respond: Respond) -> None:
        result = self.services.verification.verify(user_id, vendor_id)  # a KeybotError: after_ack says it
        blocks = _dicts(build_result_blocks(lang, result, self.services.ctx.settings.timezone))
        respond(text=result_text(lang, result), blocks=blocks, response_type="ephemeral")

    def handle_click(
        self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        """The **Verify** button on a status entry (message or App Home)."""
        ack()
        later(context, self._answer_click, body, client, respond)

    def _answer_click(self, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        click = parse_verify_click(body)
        lang = self.services.languages.of(click.user_id)
        try:
            result = self.services.verification.verify(click.user_id, click.vendor_id)
            text = result_text(lang, result)
            blocks: list[dict[str, Any]] | None = _dicts(
                build_result_blocks(lang, result, self.services.ctx.settings.timezone)
            )
        except KeybotError as error:
            text, blocks = t(lang, ":warning: {reason}", reason=render(lang, error.msg)), None
        if click.response_url:
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        elif click.channel_id:
            client.chat_postEphemeral(channel=click.channel_id, user=click.user_id, text=text, blocks=blocks)
        else:  # App Home: no channel to whisper in, so a direct message
            client.chat_postMessage(channel=click.user_id, text=text, blocks=blocks)


def register(app: App, services: Services, router: CommandRouter) -> None:
    listeners = VerifyListeners(services)
    router.add(
        "verify", N_("verify VENDOR_ID"), N_("check with Coupang that the stored key works"), listeners.handle_command
    )
    app.action(ids.VERIFY_KEY)(ack=listeners.handle_click, lazy=after_ack(services.languages))


# ---------------------------------------------------------------- scheduled jobs


def _post(lang: str, client: WebClient, result: VerifyResult, blocks: Sequence[Block]) -> bool:
    if not result.channel_id:
        logger.warning("verification of %s has no channel to post in (set KEYBOT_CHANNEL)", result.vendor_id)
        return False
    try:
        client.chat_postMessage(channel=result.channel_id, text=result_text(lang, result), blocks=_dicts(blocks))
    except SlackApiError:
        logger.exception("could not post the verification of %s", result.vendor_id)
        return False
    return True


def post_deadline_checks(services: Services, client: WebClient) -> int:
    """Run the post-deadline checks and post each result in the key's channel; returns how many were posted."""
    tz, lang = services.ctx.settings.timezone, services.languages.team
    results = services.verification.run_deadline_checks()
    return sum(_post(lang, client, r, build_deadline_blocks(lang, r, tz)) for r in results)


def post_probe_changes(services: Services, client: WebClient) -> int:
    """Run the daily probe's due checks and post only the changes."""
    tz, lang = services.ctx.settings.timezone, services.languages.team
    changes = services.verification.run_daily_probe()
    return sum(_post(lang, client, r, build_probe_change_blocks(lang, r, tz)) for r in changes)


def add_verification_jobs(scheduler: BaseScheduler, services: Services, client: WebClient) -> None:
    """Every few minutes: post-deadline checks, and the daily probe when KEYBOT_VERIFY_DAILY is on."""
    scheduler.add_job(
        post_deadline_checks,
        "interval",
        args=[services, client],
        minutes=CHECK_EVERY_MINUTES,
        id="verify_after_deadline",
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )
    if services.ctx.settings.verify_daily:
        scheduler.add_job(
            post_probe_changes,
            "interval",
            args=[services, client],
            minutes=CHECK_EVERY_MINUTES,
            id="verify_daily_probe",
            max_instances=1,
            coalesce=True,
        )
