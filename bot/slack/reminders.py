"""Reminder and digest messages: pure ``build_*`` Block Kit builders and the Slack :class:`SlackNotifier`.

The sweep itself lives in :mod:`bot.services.reminders`; this module only turns its reminders into messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from slack_sdk import WebClient
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot import rules
from bot.bootstrap import Services
from bot.services.reminders import Reminder, SweepReport
from bot.slack import ids
from bot.slack.views import escape

logger = logging.getLogger(__name__)

MAX_BLOCKS = 50  # Slack's limit per message
MAX_SECTION_TEXT = 2900  # Slack allows 3000 characters in a section's text
BUTTONS_PER_ACTIONS = 25
DIGEST_LABEL_CHARS = 60


def _owner(reminder: Reminder) -> str:
    return f"<@{reminder.owner_id}>" if reminder.owner_id else "no owner set"


def _milestone_name(reminder: Reminder) -> str:
    return f"D-{reminder.milestone}" if reminder.milestone >= 0 else f"D+{-reminder.milestone}"


def reissue_button(vendor_id: str, *, text: str = "Request reissue") -> ButtonElement:
    return ButtonElement(text=text, action_id=ids.REQUEST_REISSUE, value=vendor_id, style="primary")


def reminder_text(reminder: Reminder) -> str:
    """The notification text (also what screen readers and the console show)."""
    return f"{reminder.vendor_id} {escape(reminder.label)}: {reminder.headline}"


def build_reminder_blocks(reminder: Reminder) -> list[Block]:
    """One key's reminder: headline, vendor ID, label, expiry, days left, owner, and a Request reissue button."""
    fields = [
        MarkdownTextObject(text=f"*Vendor ID*\n`{reminder.vendor_id}`"),
        MarkdownTextObject(text=f"*Label*\n{escape(reminder.label)}"),
        MarkdownTextObject(text=f"*Expires*\n{reminder.expires_on.isoformat()}"),
        MarkdownTextObject(text=f"*Days left*\n{rules.describe_days_left(reminder.days_left)}"),
        MarkdownTextObject(text=f"*Owner*\n{_owner(reminder)}"),
    ]
    return [
        SectionBlock(text=MarkdownTextObject(text=f":alarm_clock: *{reminder.headline}*"), fields=fields),
        ActionsBlock(elements=[reissue_button(reminder.vendor_id)]),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"Coupang key reminder {_milestone_name(reminder)} · generation {reminder.generation}"
                )
            ]
        ),
    ]


def _digest_line(reminder: Reminder) -> str:
    label = reminder.label
    if len(label) > DIGEST_LABEL_CHARS:
        label = label[: DIGEST_LABEL_CHARS - 1] + "…"
    return (
        f"• `{reminder.vendor_id}` {escape(label)} — {reminder.headline} — expires "
        f"{reminder.expires_on.isoformat()} ({rules.describe_days_left(reminder.days_left)}) — {_owner(reminder)}"
    )


def digest_text(reminders: Sequence[Reminder]) -> str:
    return f"{len(reminders)} Coupang API keys need attention"


def build_digest_blocks(reminders: Sequence[Reminder]) -> list[Block]:
    """Many keys of one channel in one message: the list, then a Request reissue button per key."""
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=f":alarm_clock: *{digest_text(reminders)}* (one message instead of {len(reminders)})"
            )
        )
    ]
    lines: list[str] = []
    for reminder in reminders:
        line = _digest_line(reminder)
        if lines and sum(len(x) + 1 for x in lines) + len(line) > MAX_SECTION_TEXT:
            blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(lines))))
            lines = []
        lines.append(line)
    if lines:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(lines))))
    for start in range(0, len(reminders), BUTTONS_PER_ACTIONS):
        chunk = reminders[start : start + BUTTONS_PER_ACTIONS]
        blocks.append(
            ActionsBlock(elements=[reissue_button(r.vendor_id, text=f"Reissue {r.vendor_id}") for r in chunk])
        )
    return blocks


def split_messages(blocks: list[Block]) -> list[list[Block]]:
    """Slack takes at most 50 blocks a message; a digest for hundreds of keys may need a continuation."""
    return [blocks[start : start + MAX_BLOCKS] for start in range(0, len(blocks), MAX_BLOCKS)] or [[]]


class SlackNotifier:
    """:class:`bot.services.reminders.Notifier` over the Web API (the client's retry handlers honour Retry-After)."""

    def __init__(self, client: WebClient):
        self.client = client

    def post(self, channel: str, reminders: Sequence[Reminder]) -> str:
        if len(reminders) == 1:
            text, messages = reminder_text(reminders[0]), [build_reminder_blocks(reminders[0])]
        else:
            text, messages = digest_text(reminders), split_messages(build_digest_blocks(reminders))
        first_ts = ""
        for blocks in messages:
            response = self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
            )
            first_ts = first_ts or str(response["ts"])
        return first_ts


SWEEP_EVERY_MINUTES = 5


def run_sweep(services: Services, client: WebClient) -> SweepReport | None:
    """One scheduled sweep: due reminders, then the weekly summary when due; the monitor hears how it went
    (``/healthz``, ``/metrics`` and the heartbeat ping)."""
    from bot.slack.summary import post_weekly_summary

    try:
        report = services.reminders.sweep(SlackNotifier(client))
        post_weekly_summary(services, client)
    except Exception:  # noqa: BLE001 - the database or Slack is down: report it, the next sweep retries
        logger.exception("The reminder sweep failed; the next one retries")
        services.monitor.sweep_finished(ok=False)
        return None
    services.monitor.sweep_finished(ok=not report.failed, posted=report.delivered)
    return report


def add_reminder_job(scheduler: BaseScheduler, services: Services, client: WebClient) -> None:
    """The sweep runs at start-up and every few minutes; the database, not the scheduler, remembers."""
    scheduler.add_job(
        run_sweep,
        "interval",
        args=[services, client],
        minutes=SWEEP_EVERY_MINUTES,
        id="reminders",
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )
