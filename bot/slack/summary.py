"""The weekly summary: one message to ``KEYBOT_CHANNEL`` even when nothing is due, so silence never reads as "fine".

Posted during the reminder sweep on ``KEYBOT_WEEKLY_SUMMARY``'s weekday from the reminder time on; the claim in
:meth:`bot.services.overview.OverviewService.claim_weekly_summary` makes it once a week however many processes run,
and a post that failed is retried by a later sweep (within the week) without being posted twice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot import i18n
from bot.bootstrap import Services
from bot.i18n import t
from bot.services.overview import SUMMARY_ATTENTION_LINES, KeyFacts, Overview
from bot.slack.posting import post_claimed
from bot.slack.views import DIGEST_LABEL_CHARS, escape

logger = logging.getLogger(__name__)


def _line(lang: str, key: KeyFacts) -> str:
    label = key.label if len(key.label) <= DIGEST_LABEL_CHARS else key.label[: DIGEST_LABEL_CHARS - 1] + "…"
    params = {
        "vendor_id": key.vendor_id,
        "label": escape(label),
        "date": i18n.day(lang, key.expires_on),
        "days_left": i18n.days_left(lang, key.days_left),
    }
    if key.open_request:
        return t(lang, "• `{vendor_id}` {label} — expires {date} ({days_left}) — reissue request open", **params)
    return t(lang, "• `{vendor_id}` {label} — expires {date} ({days_left})", **params)


def build_summary_blocks(overview: Overview, lang: str = "en") -> list[Block]:
    title = t(lang, ":bar_chart: *Weekly key summary*: {overview}", overview=overview.describe(lang))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=title))]
    attention = overview.needing_attention()[:SUMMARY_ATTENTION_LINES]
    if attention:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(_line(lang, k) for k in attention))))
    more = overview.reissue_window + overview.expired - len(attention)
    if more > 0:
        text = t(lang, "…and {count} more: `/coupang-key status expiring`", count=more)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=text)]))
    return blocks


def post_weekly_summary(services: Services, client: WebClient, *, now: datetime | None = None) -> bool:
    """Post this week's summary when it is due at ``now`` (or an earlier attempt failed) and unclaimed; True when
    this call posted it (or found the earlier attempt posted it). A failed post raises; a later sweep retries it."""
    channel = services.ctx.settings.channel
    if channel is None:
        return False
    claimed = services.overview.claim_weekly_summary(now=now)
    if claimed is None:
        return False
    claim, overview = claimed
    lang = services.languages.team
    post_claimed(
        services.overview.posts,
        client,
        claim,
        channel,
        text=t(lang, "Weekly key summary: {overview}", overview=overview.describe(lang)),
        blocks=build_summary_blocks(overview, lang),
    )
    return True
