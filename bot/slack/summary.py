"""The weekly summary: one message to ``KEYBOT_CHANNEL`` even when nothing is due, so silence never reads as "fine".

Posted during the reminder sweep on ``KEYBOT_WEEKLY_SUMMARY``'s weekday from the reminder time on; the claim in
:meth:`bot.services.overview.OverviewService.claim_weekly_summary` makes it once a week however many processes run,
and a post that failed is retried by a later sweep (within the week) without being posted twice.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot import rules
from bot.bootstrap import Services
from bot.services.overview import SUMMARY_ATTENTION_LINES, KeyFacts, Overview
from bot.slack.posting import post_claimed
from bot.slack.reminders import DIGEST_LABEL_CHARS
from bot.slack.views import escape

logger = logging.getLogger(__name__)


def _line(key: KeyFacts) -> str:
    label = key.label if len(key.label) <= DIGEST_LABEL_CHARS else key.label[: DIGEST_LABEL_CHARS - 1] + "…"
    request = " — reissue request open" if key.open_request else ""
    return (
        f"• `{key.vendor_id}` {escape(label)} — expires {key.expires_on.isoformat()} "
        f"({rules.describe_days_left(key.days_left)}){request}"
    )


def build_summary_blocks(overview: Overview) -> list[Block]:
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=f":bar_chart: *Weekly key summary*: {overview.describe()}"))
    ]
    attention = overview.needing_attention()[:SUMMARY_ATTENTION_LINES]
    if attention:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(_line(k) for k in attention))))
    more = overview.reissue_window + overview.expired - len(attention)
    if more > 0:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=f"…and {more} more: `/coupang-key status expiring`")])
        )
    return blocks


def post_weekly_summary(services: Services, client: WebClient) -> bool:
    """Post this week's summary when it is due (or an earlier attempt failed) and unclaimed; True when this call
    posted it (or found the earlier attempt posted it). A failed post raises; a later sweep retries it."""
    channel = services.ctx.settings.channel
    if channel is None:
        return False
    claimed = services.overview.claim_weekly_summary()
    if claimed is None:
        return False
    claim, overview = claimed
    text = f"Weekly key summary: {overview.describe()}"
    post_claimed(services.overview.posts, client, claim, channel, text=text, blocks=build_summary_blocks(overview))
    return True
