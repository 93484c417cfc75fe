"""Reminder and digest messages: pure ``build_*`` Block Kit builders and the Slack :class:`SlackNotifier`.

The sweep itself lives in :mod:`bot.services.reminders`; this module only turns its reminders into messages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot import i18n
from bot.bootstrap import Services
from bot.i18n import KOREAN, render, t
from bot.services.base import MaybePosted
from bot.services.posts import is_legacy
from bot.services.reminders import CannotPost, Notifier, PostFailed, Reminder, SweepReport, Undeliverable
from bot.slack import ids
from bot.slack.posting import CHANNEL_REFUSALS, post_once, posted_since, posting_client
from bot.slack.views import DIGEST_LABEL_CHARS, escape, undeliverable_text

logger = logging.getLogger(__name__)

MAX_BLOCKS = 50  # Slack's limit per message
MAX_SECTION_TEXT = 2900  # Slack allows 3000 characters in a section's text
BUTTONS_PER_ACTIONS = 25
# message metadata: {"reminders": [{"claim": claim ID, "vendor_id": ..., "generation": N, "milestone": N}, ...]}
# names the claimed rows (an older version wrote {"delivery_ids": [row IDs]})
EVENT_TYPE = "keybot_reminder"


def reminder_payload(reminders: Sequence[Reminder]) -> dict[str, Any]:
    return {
        "reminders": [
            {"claim": r.claim_id, "vendor_id": r.vendor_id, "generation": r.generation, "milestone": r.milestone}
            for r in reminders
            if r.claim_id is not None
        ]
    }


def _legacy_post_of(message: dict[str, Any], reminder: Reminder) -> bool:
    """An older version's message (row IDs only) is about ``reminder``: its Request reissue buttons name the key,
    and a single reminder's footer names the milestone (a digest names none: the key suffices)."""
    blocks = message.get("blocks") or []
    keys = [e.get("value") for b in blocks if b.get("type") == "actions" for e in b.get("elements") or []]
    if reminder.vendor_id not in keys:
        return False
    if len(keys) > 1:
        return True
    footer = " ".join(
        str(e.get("text", "")) for b in blocks if b.get("type") == "context" for e in b.get("elements") or []
    )
    named = f"D-{reminder.milestone}" if reminder.milestone >= 0 else f"D+{-reminder.milestone}"  # as they wrote it
    return re.search(rf"(?<![\w+-]){re.escape(named)}(?![\w])", footer) is not None


def _owner(reminder: Reminder, lang: str) -> str:
    return f"<@{reminder.owner_id}>" if reminder.owner_id else t(lang, "no owner set")


def _milestone_name(reminder: Reminder, lang: str) -> str:
    if reminder.milestone == 0 and lang == KOREAN:
        return "D-Day"  # Koreans never say D-0
    return f"D-{reminder.milestone}" if reminder.milestone >= 0 else f"D+{-reminder.milestone}"


def reissue_button(vendor_id: str, *, text: str, action_id: str = ids.REQUEST_REISSUE) -> ButtonElement:
    return ButtonElement(text=text, action_id=action_id, value=vendor_id, style="primary")


def reminder_text(reminder: Reminder, lang: str = "en") -> str:
    """The notification text (also what screen readers and the console show)."""
    return f"{reminder.vendor_id} {escape(reminder.label)}: {render(lang, reminder.headline)}"


def _field(name: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=f"*{name}*\n{value}")


def build_reminder_blocks(reminder: Reminder, lang: str = "en") -> list[Block]:
    """One key's reminder: headline, vendor ID, label, expiry, days left, owner, and a Request reissue button."""
    fields = [
        _field(t(lang, "Vendor ID"), f"`{reminder.vendor_id}`"),
        _field(t(lang, "Label"), escape(reminder.label)),
        _field(t(lang, "Expires"), i18n.day(lang, reminder.expires_on)),
        _field(t(lang, "Days left"), i18n.days_left(lang, reminder.days_left)),
        _field(t(lang, "Owner"), _owner(reminder, lang)),
    ]
    footer = t(
        lang,
        "Coupang key reminder {milestone} · generation {generation}",
        milestone=_milestone_name(reminder, lang),
        generation=reminder.generation,
    )
    return [
        SectionBlock(text=MarkdownTextObject(text=f":alarm_clock: *{render(lang, reminder.headline)}*"), fields=fields),
        ActionsBlock(elements=[reissue_button(reminder.vendor_id, text=t(lang, "Request reissue"))]),
        ContextBlock(elements=[MarkdownTextObject(text=footer)]),
    ]


def _digest_line(reminder: Reminder, lang: str) -> str:
    label = reminder.label
    if len(label) > DIGEST_LABEL_CHARS:
        label = label[: DIGEST_LABEL_CHARS - 1] + "…"
    return t(
        lang,
        "• `{vendor_id}` {label} — {headline} — expires {date} ({days_left}) — {owner}",
        vendor_id=reminder.vendor_id,
        label=escape(label),
        headline=render(lang, reminder.headline),
        date=i18n.day(lang, reminder.expires_on),
        days_left=i18n.days_left(lang, reminder.days_left),
        owner=_owner(reminder, lang),
    )


def digest_text(reminders: Sequence[Reminder], lang: str = "en") -> str:
    return t(lang, "{count} Coupang API keys need attention", count=len(reminders))


def build_digest_blocks(reminders: Sequence[Reminder], lang: str = "en") -> list[Block]:
    """Many keys of one channel in one message: the list, then a Request reissue button per key."""
    title = t(
        lang,
        ":alarm_clock: *{title}* (one message instead of {count})",
        title=digest_text(reminders, lang),
        count=len(reminders),
    )
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=title))]
    lines: list[str] = []
    for reminder in reminders:
        line = _digest_line(reminder, lang)
        if lines and sum(len(x) + 1 for x in lines) + len(line) > MAX_SECTION_TEXT:
            blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(lines))))
            lines = []
        lines.append(line)
    if lines:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(lines))))
    for start in range(0, len(reminders), BUTTONS_PER_ACTIONS):
        chunk = reminders[start : start + BUTTONS_PER_ACTIONS]
        blocks.append(
            ActionsBlock(
                elements=[
                    reissue_button(
                        r.vendor_id,
                        text=t(lang, "Reissue {vendor_id}", vendor_id=r.vendor_id),
                        action_id=ids.for_key(ids.REQUEST_REISSUE, r.vendor_id),
                    )
                    for r in chunk
                ]
            )
        )
    return blocks


def digest_parts(
    reminders: Sequence[Reminder], max_blocks: int = MAX_BLOCKS, lang: str = "en"
) -> list[tuple[Reminder, ...]]:
    """Consecutive runs of ``reminders`` whose :func:`build_digest_blocks` each fit in one message."""
    parts: list[tuple[Reminder, ...]] = []
    part: list[Reminder] = []
    sections = section_chars = 0
    for reminder in reminders:
        line = len(_digest_line(reminder, lang)) + 1
        new_section = not part or section_chars + line > MAX_SECTION_TEXT
        buttons = len(part) + 1
        blocks = 1 + sections + new_section + -(-buttons // BUTTONS_PER_ACTIONS)
        if part and blocks > max_blocks:
            parts.append(tuple(part))
            part, sections, section_chars, new_section = [], 0, 0, True
        part.append(reminder)
        sections, section_chars = (sections + 1, line) if new_section else (sections, section_chars + line)
    return parts + [tuple(part)] if part else parts


class SlackNotifier(Notifier):
    """Reminders over the Web API: one message per part, tagged with its delivery IDs, never retried blindly."""

    def __init__(
        self,
        client: WebClient,
        *,
        max_blocks: int = MAX_BLOCKS,
        lang: str = "en",
        language_of: Callable[[str], str] | None = None,
    ):
        self.client = posting_client(client)
        self.max_blocks = max_blocks
        self.lang = lang  # channel posts speak the team's language (KEYBOT_LANGUAGE)
        self.language_of = language_of or (lambda _user: lang)  # a direct message speaks its reader's

    def parts(self, reminders: Sequence[Reminder]) -> list[tuple[Reminder, ...]]:
        return digest_parts(reminders, self.max_blocks, self.lang)

    def post(self, channel: str, reminders: Sequence[Reminder]) -> str:
        if len(reminders) == 1:
            text, blocks = reminder_text(reminders[0], self.lang), build_reminder_blocks(reminders[0], self.lang)
        else:
            text, blocks = digest_text(reminders, self.lang), build_digest_blocks(reminders, self.lang)
        try:
            response = post_once(
                self.client,
                event_type=EVENT_TYPE,
                payload=reminder_payload(reminders),
                channel=channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            if exc.response.get("error") in CHANNEL_REFUSALS:
                raise CannotPost(str(exc.response["error"])) from exc
            raise PostFailed(failure_reason(exc)) from exc
        return str(response["ts"])

    def tell(self, problem: Undeliverable) -> bool:
        """A direct message to each owner and a post in KEYBOT_CHANNEL (when it is another channel): "invite me
        to #channel". True when at least one of them went out."""
        heard = False
        readers = [(owner, self.language_of(owner)) for owner in problem.owners]
        if problem.also:
            readers.append((problem.also, self.lang))
        for where, lang in readers:
            try:
                self.client.chat_postMessage(channel=where, text=undeliverable_text(lang, problem))
                heard = True
            except Exception:  # noqa: BLE001 - that one cannot hear it (or is refused too): the others may
                logger.warning("Could not tell %s that %s refuses reminders", where, problem.channel_id, exc_info=True)
        return heard

    def find(self, channel: str, since: datetime, reminders: Sequence[Reminder]) -> dict[int, str]:
        """A message counts for a reminder only when it names the reminder's claim ID *and* its key, generation and
        milestone; an older version's message (``delivery_ids``) only for a row claimed before claim IDs existed,
        and only when it shows the same key (and milestone)."""
        by_claim = {r.claim_id: r for r in reminders if r.claim_id is not None}
        legacy = {r.delivery_id: r for r in reminders if r.claim_id is not None and is_legacy(r.claim_id)}
        found: dict[int, str] = {}
        for payload, ts, message in posted_since(self.client, channel, since, EVENT_TYPE):
            for entry in payload.get("reminders") or []:
                reminder = by_claim.get(str(entry.get("claim"))) if isinstance(entry, dict) else None
                if reminder is not None and reminder_payload([reminder])["reminders"] == [entry]:
                    found[reminder.delivery_id or 0] = ts
            for row_id in payload.get("delivery_ids") or []:
                reminder = legacy.get(row_id)
                if reminder is not None and _legacy_post_of(message, reminder):
                    found[row_id] = ts
        return found


SWEEP_EVERY_MINUTES = 5


@dataclass
class SweepRun:
    """What one sweep did: the reminders' report (None when the reminder sweep itself failed: ``error`` says why)
    and the weekly summary (``summary_posted``, or ``summary_error`` when it failed)."""

    report: SweepReport | None
    error: str | None = None
    failure: Exception | None = None
    summary_posted: bool = False
    summary_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None and not self.report.failed and self.summary_error is None


def failure_reason(exc: Exception) -> str:
    """What went wrong, in a few words and without a traceback (a lost answer says so; Slack's error code)."""
    if isinstance(exc, MaybePosted):
        return str(exc)
    if isinstance(exc, SlackApiError):
        return f"Slack answered {exc.response.get('error') or exc.response.status_code}"
    return exc.__class__.__name__


def sweep_once(services: Services, client: WebClient, *, now: datetime | None = None) -> SweepRun:
    """Due reminders, then the weekly summary when due: what the scheduler runs every few minutes and
    ``coupang-keybot reminders run`` once (``now``: ``--as-of``). Never raises: a failure is logged and returned,
    and the next sweep retries. A weekly summary that fails does not undo reminders that went out."""
    from bot.slack.summary import post_weekly_summary

    try:
        notifier = SlackNotifier(client, lang=services.languages.team, language_of=services.languages.of)
        report = services.reminders.sweep(notifier, now=now)
    except Exception as exc:  # noqa: BLE001 - the database or Slack is down: report it, the next sweep retries
        logger.exception("The reminder sweep failed; the next one retries")
        return SweepRun(None, error=failure_reason(exc), failure=exc)
    run = SweepRun(report)
    try:
        run.summary_posted = post_weekly_summary(services, client, now=now)
    except Exception as exc:  # noqa: BLE001 - the reminders above stand; the next sweep retries the summary
        logger.exception("The weekly summary could not be posted; the next sweep retries")
        run.summary_error = failure_reason(exc)
    return run


def run_sweep(services: Services, client: WebClient) -> SweepReport | None:
    """One scheduled sweep (:func:`sweep_once`); the monitor hears how it went (``/healthz``, ``/metrics`` and the
    heartbeat ping).

    The reminders' report is returned (None only when the reminder sweep itself failed). A failed weekly summary
    is logged, the reminders' count still reaches ``/metrics``, and the sweep finishes as failed (the heartbeat
    pings ``/fail``; the last-success gauge stays put) until a later sweep posts the summary, which the claim in
    ``scheduled_posts`` lets every sweep retry."""
    run = sweep_once(services, client)
    if run.report is None:
        services.monitor.sweep_finished(ok=False)
        return None
    services.monitor.sweep_finished(ok=run.ok, posted=run.report.delivered)
    return run.report


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
