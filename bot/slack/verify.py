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
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.bootstrap import Services
from bot.i18n import N_
from bot.rules import KeybotError, quote
from bot.services.verification import WHAT_TO_CHECK, VerifyOutcome, VerifyResult
from bot.slack import ids
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.views import escape

logger = logging.getLogger(__name__)

CHECK_EVERY_MINUTES = 5
USAGE = f"Usage: `{ids.COMMAND} verify VENDOR_ID`, e.g. `{ids.COMMAND} verify A00012345`."

_ICON = {
    VerifyOutcome.WORKS: ":white_check_mark:",
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
_TITLE = {
    VerifyOutcome.WORKS: "works",
    VerifyOutcome.INVALID_KEY: "was refused: invalid or expired key",
    VerifyOutcome.IP_NOT_ALLOWED: "was refused: the bot's IP is not allowed",
    VerifyOutcome.WRONG_VENDOR: "was refused: wrong vendor ID or path",
    VerifyOutcome.RATE_LIMITED: "could not be checked: Coupang is rate-limiting",
    VerifyOutcome.BLOCKED: "could not be checked: Coupang is blocking the bot for a while (wait)",
    VerifyOutcome.UNAVAILABLE: "could not be checked: Coupang unavailable",
    VerifyOutcome.NOT_ACTIVE_YET: "is not active yet",
    VerifyOutcome.IN_PROGRESS: "is being checked",
    VerifyOutcome.NOT_CHECKABLE: "cannot be checked from the bot (it is called from the integrator's IPs)",
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


def _when(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or tz}"


def result_text(result: VerifyResult) -> str:
    """The notification / fallback text."""
    return f"{_ICON[result.outcome]} {result.vendor_id} {escape(result.label)}: the key {_TITLE[result.outcome]}."


def _context(result: VerifyResult, tz: ZoneInfo, how: str) -> ContextBlock:
    note = "" if result.fresh else " (repeated: at most one check per vendor ID every 10 seconds)"
    return ContextBlock(elements=[MarkdownTextObject(text=f"{how} · checked {_when(result.checked_at, tz)}{note}")])


def build_result_blocks(result: VerifyResult, tz: ZoneInfo) -> list[Block]:
    """The answer to one person's check."""
    return [
        SectionBlock(text=MarkdownTextObject(text=f"{result_text(result)}\n{escape(result.detail)}")),
        _context(result, tz, "Signed read-only call to Coupang (returnShippingCenters)"),
    ]


def build_checklist() -> str:
    return "*What to check:*\n" + "\n".join(f"• {item}" for item in WHAT_TO_CHECK)


def _check_blocks(result: VerifyResult, tz: ZoneInfo, *, works: str, fails: str, source: str) -> list[Block]:
    """A check the bot made by itself, posted to the key's channel; a failure comes with what to check."""
    name = f"*{result.vendor_id}* {escape(result.label)}"
    head = (
        f":white_check_mark: {name}: {works}"
        if result.works
        else f":rotating_light: {name}: {fails} ({_TITLE[result.outcome]})."
    )
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=f"{head}\n{escape(result.detail)}"))]
    if not result.works:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=build_checklist())))
    blocks.append(_context(result, tz, source))
    return blocks


def build_deadline_blocks(result: VerifyResult, tz: ZoneInfo) -> list[Block]:
    """The automatic check once a reissued or edited key's access deadline has passed."""
    return _check_blocks(
        result,
        tz,
        works="the key works with Coupang now.",
        fails="the key still fails after its activation deadline",
        source="Automatic check after a reissue or a linking-info edit",
    )


def build_probe_change_blocks(result: VerifyResult, tz: ZoneInfo) -> list[Block]:
    """The daily probe found a change: a key that stopped working, or works again."""
    return _check_blocks(
        result, tz, works="the key works again.", fails="the key stopped working", source="Daily key probe"
    )


def _dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


# ---------------------------------------------------------------- listeners


class VerifyListeners:
    def __init__(self, services: Services):
        self.services = services

    def handle_command(self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond) -> None:
        """``/coupang-key verify VENDOR_ID``: ack at once, answer when Coupang has (a KeybotError: the router)."""
        if len(request.args) != 1:
            ack(text=USAGE, response_type="ephemeral")
            return
        ack(
            text=f":hourglass_flowing_sand: Checking {escape(quote(request.args[0]))} with Coupang…",
            response_type="ephemeral",
        )
        result = self.services.verification.verify(request.user_id, request.args[0])
        blocks = _dicts(build_result_blocks(result, self.services.ctx.settings.timezone))
        respond(text=result_text(result), blocks=blocks, response_type="ephemeral")

    def handle_click(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """The **Verify** button on a status entry (message or App Home)."""
        ack()
        click = parse_verify_click(body)
        try:
            result = self.services.verification.verify(click.user_id, click.vendor_id)
            text = result_text(result)
            blocks: list[dict[str, Any]] | None = _dicts(
                build_result_blocks(result, self.services.ctx.settings.timezone)
            )
        except KeybotError as error:
            text, blocks = f":warning: {escape(error)}", None
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
    app.action(ids.VERIFY_KEY)(listeners.handle_click)


# ---------------------------------------------------------------- scheduled jobs


def _post(client: WebClient, result: VerifyResult, blocks: Sequence[Block]) -> bool:
    if not result.channel_id:
        logger.warning("verification of %s has no channel to post in (set KEYBOT_CHANNEL)", result.vendor_id)
        return False
    try:
        client.chat_postMessage(channel=result.channel_id, text=result_text(result), blocks=_dicts(blocks))
    except SlackApiError:
        logger.exception("could not post the verification of %s", result.vendor_id)
        return False
    return True


def post_deadline_checks(services: Services, client: WebClient) -> int:
    """Run the post-deadline checks and post each result in the key's channel; returns how many were posted."""
    tz = services.ctx.settings.timezone
    results = services.verification.run_deadline_checks()
    return sum(_post(client, r, build_deadline_blocks(r, tz)) for r in results)


def post_probe_changes(services: Services, client: WebClient) -> int:
    """Run the daily probe's due checks and post only the changes."""
    tz = services.ctx.settings.timezone
    changes = services.verification.run_daily_probe()
    return sum(_post(client, r, build_probe_change_blocks(r, tz)) for r in changes)


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
