"""Pure Block Kit builders: data in, ``slack_sdk.models`` out. No I/O, no services, no secrets.

Every piece of user-typed text goes through :func:`escape` before it lands in mrkdwn, so a label such as
``<!channel>`` pings nobody. Secret inputs are never prefilled.

The ``status`` overview (:func:`build_status_blocks`, :func:`build_key_line`) is the exception: it is built as
plain Block Kit dicts, because ``/coupang-key status`` acknowledges with it and the models' validation and
``to_dict()`` cost more than the rest of the reply. Its texts are bounded here (labels truncated, IDs validated
upstream), and tests/test_views.py parses every such block with ``Block.parse(d).to_dict() == d``, so they are
exactly what the models would produce, validated.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    ConversationFilter,
    ConversationSelectElement,
    DatePickerElement,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    SectionBlock,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot import i18n, rules
from bot.i18n import N_, linking_summary, outcome_label, t
from bot.rules import Integration, InvalidInput, KeybotError, LinkingInfo, Phase
from bot.services.audit import AuditEntry
from bot.services.keys import EditResult, KeyStatus, StatusPage
from bot.services.reminders import Undeliverable
from bot.slack import ids

PAGE_SIZE = 15
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
HOME_MAX_KEYS = 45  # App Home allows 100 blocks; each key takes two
HISTORY_LIMIT = 20
BAR_CELLS = 12

PHASE_LABEL = {
    Phase.HEALTHY: N_(":large_green_circle: healthy"),
    Phase.REISSUE_WINDOW: N_(":large_orange_circle: reissue window"),
    Phase.EXPIRED: N_(":red_circle: expired"),
}
INTEGRATION_LABEL = {
    Integration.INTEGRATOR: N_("Through an integrator (e.g. a listing tool)"),
    Integration.SELF: N_("Self-developed (our own program)"),
}


def escape(text: object) -> str:
    """User text made inert for mrkdwn: ``&``, ``<`` and ``>`` become entities."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


BlockDict = dict[str, Any]  # a block as Slack's JSON, what ``Block.to_dict()`` would give


def _mrkdwn_dict(text: str) -> BlockDict:
    return {"type": "mrkdwn", "text": text}


def _button_dict(text: str, action_id: str, value: str) -> BlockDict:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
    }


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


DIGEST_LABEL_CHARS = 60  # a key's label in a digest line or the weekly summary

# ---------------------------------------------------------------- status


def days_left_bar(days: int, cells: int = BAR_CELLS) -> str:
    """A bar of the key's remaining life out of 180 days: full when new, empty when expired."""
    lifetime = rules.KEY_LIFETIME.days
    filled = 0 if days <= 0 else min(cells, max(1, round(cells * days / lifetime)))
    return "▰" * filled + "▱" * (cells - filled)


def key_summary_text(lang: str, status: KeyStatus, tz: ZoneInfo) -> str:
    """The mrkdwn body of one key's section (≤ 3000 characters)."""
    reissue = i18n.render(lang, rules.wing_advice(rules.path_for(status.days_left)))
    lines = [
        f"*{escape(status.vendor_id)}* · {escape(_truncate(status.label, 100))}",
        t(
            lang,
            "Access key `{mask}` · expires *{date}* ({days_left}) · {phase}",
            mask=escape(status.access_key_mask),
            date=i18n.day(lang, status.expires_on),
            days_left=i18n.days_left(lang, status.days_left),
            phase=t(lang, PHASE_LABEL[status.phase]),
        ),
        t(
            lang,
            "{advice} · linking-info edits in the last 7 days: {used}/{limit}",
            advice=reissue,
            used=status.edits_last_7_days,
            limit=rules.EDITS_PER_WEEK,
        ),
        t(lang, "Linking: {linking}", linking=escape(_truncate(linking_summary(lang, status.linking), 600))),
    ]
    if status.days_left > rules.REISSUE_WINDOW_DAYS:
        opens = i18n.day(lang, rules.milestone_date(status.expires_on, rules.REISSUE_WINDOW_DAYS))
        lines.append(t(lang, ":calendar: WING's Reissue button opens on {date}", date=opens))
    if status.propagating_until:
        works_by = i18n.moment(lang, status.propagating_until, tz)
        lines.append(t(lang, ":hourglass: Coupang is applying a change: the key works by {time}", time=works_by))
    if status.verify_outcome and status.verified_at:
        lines.append(
            t(
                lang,
                "Last check: {outcome} ({time})",
                outcome=escape(outcome_label(lang, status.verify_outcome)),
                time=i18n.moment(lang, status.verified_at, tz),
            )
        )
    if status.owner_id:
        lines.append(t(lang, "Owner: {user}", user=f"<@{escape(status.owner_id)}>"))
    if not status.reminder_channel:
        lines.append(no_channel_text(lang))
    if status.consumers:
        lines.append(
            t(
                lang,
                "Rollout: consumers {done}/{total} hold generation {generation}",
                done=status.consumers[0],
                total=status.consumers[1],
                generation=status.generation,
            )
        )
    if status.open_request:
        lines.append(
            t(
                lang,
                ":hourglass_flowing_sand: Reissue request #{id} is {state} (by {user})",
                id=status.open_request.id,
                state=t(lang, REQUEST_STATE.get(status.open_request.status, status.open_request.status)),
                user=f"<@{escape(status.open_request.requested_by)}>",
            )
        )
    return "\n".join(lines)


def key_line_text(lang: str, status: KeyStatus) -> str:
    """One key in one line, for the overview: days left, phase, expiry, owner and rollout progress."""
    text = t(
        lang,
        "*{vendor_id}* {label} · {days_left} · {phase} · expires {date}",
        vendor_id=escape(status.vendor_id),
        label=escape(_truncate(status.label, 60)),
        days_left=i18n.days_left(lang, status.days_left),
        phase=t(lang, PHASE_LABEL[status.phase]),
        date=i18n.day(lang, status.expires_on),
    )
    if status.owner_id:
        text += " · " + t(lang, "Owner: {user}", user=f"<@{escape(status.owner_id)}>")
    if status.consumers:
        text += " · " + t(lang, "consumers {done}/{total}", done=status.consumers[0], total=status.consumers[1])
    if not status.reminder_channel:
        text += " · " + t(lang, ":warning: no reminder channel")
    return text


def build_key_line(lang: str, status: KeyStatus, block_id: str, prefix: str = "") -> BlockDict:
    """A key's overview line with a Details button that expands it (the full entry with its buttons)."""
    return {
        "type": "section",
        "block_id": block_id,
        "text": _mrkdwn_dict(prefix + key_line_text(lang, status)),
        "accessory": _button_dict(t(lang, "Details"), ids.EXPAND_KEY, status.vendor_id),
    }


# what ``status`` shows for a stored verification outcome and an open request's state
REQUEST_STATE = {"pending": N_("pending"), "approved": N_("approved")}  # English shows the state itself


def build_key_buttons(lang: str, status: KeyStatus) -> ActionsBlock:
    return ActionsBlock(
        block_id=f"key-actions-{status.vendor_id}",
        elements=[
            ButtonElement(text=t(lang, "Edit linking info"), action_id=ids.EDIT_LINKING, value=status.vendor_id),
            ButtonElement(
                text=t(lang, "Request reissue"),
                action_id=ids.REQUEST_REISSUE,
                value=status.vendor_id,
                style="primary" if status.phase is not Phase.HEALTHY else None,
            ),
            ButtonElement(text=t(lang, "Verify"), action_id=ids.VERIFY_KEY, value=status.vendor_id),
        ],
    )


def build_key_blocks(lang: str, status: KeyStatus, tz: ZoneInfo) -> list[Block]:
    return [
        SectionBlock(block_id=f"key-{status.vendor_id}", text=_mrkdwn(key_summary_text(lang, status, tz))),
        build_key_buttons(lang, status),
    ]


def summary_line(lang: str, page: StatusPage) -> str:
    return counts_line(lang, page.healthy, page.in_window, page.expired)


def counts_line(lang: str, healthy: int, window: int, expired: int) -> str:
    total = healthy + window + expired
    message = (
        N_("1 key: {healthy} healthy · {window} in the reissue window · {expired} expired")
        if total == 1
        else N_("{total} keys: {healthy} healthy · {window} in the reissue window · {expired} expired")
    )
    return t(lang, message, total=total, healthy=healthy, window=window, expired=expired)


def next_page_value(offset: int, expiring: int | None) -> str:
    return json.dumps({"offset": offset, "expiring": expiring}, separators=(",", ":"))


NO_KEYS = N_("No keys registered yet. Register one with `/coupang-key add`.")


UNDELIVERABLE_KEYS_SHOWN = 10
UNDELIVERABLE_REASONS = {
    "not_in_channel": N_(
        ":warning: Reminders for {keys} cannot be posted in <#{channel}>: the bot is not a member. Invite me to "
        "<#{channel}> (`/invite @Coupang Keybot` there); the reminder is posted a few minutes later."
    ),
    "channel_not_found": N_(
        ":warning: Reminders for {keys} cannot be posted in <#{channel}>: Slack does not let the bot see it (a "
        "private channel it was not invited to, or a deleted one). Invite me to <#{channel}>, or move the keys "
        "to another channel with `/coupang-key edit VENDOR_ID`."
    ),
    "is_archived": N_(
        ":warning: Reminders for {keys} cannot be posted in <#{channel}>: the channel is archived. Unarchive it and "
        "invite me, or move the keys to another channel with `/coupang-key edit VENDOR_ID`."
    ),
}


def undeliverable_text(lang: str, problem: Undeliverable) -> str:
    """What to do about a channel that refuses the bot's reminders (DMs, KEYBOT_CHANNEL, status, App Home)."""
    shown = [f"`{v}`" for v in problem.vendor_ids[:UNDELIVERABLE_KEYS_SHOWN]]
    if len(problem.vendor_ids) > UNDELIVERABLE_KEYS_SHOWN:
        shown.append(t(lang, "{count} more", count=len(problem.vendor_ids) - UNDELIVERABLE_KEYS_SHOWN))
    reason = UNDELIVERABLE_REASONS.get(problem.error, UNDELIVERABLE_REASONS["channel_not_found"])
    return t(lang, reason, keys=", ".join(shown), channel=problem.channel_id)


def undeliverable_block(lang: str, problems: Sequence[Undeliverable], block_id: str) -> BlockDict | None:
    """One section naming every channel that refuses reminders (None when there is none)."""
    if not problems:
        return None
    text = "\n".join(undeliverable_text(lang, p) for p in problems)
    if len(text) > MAX_SECTION_TEXT:
        text = text[: MAX_SECTION_TEXT - 1] + "…"
    return {"type": "section", "block_id": block_id, "text": _mrkdwn_dict(text)}


def build_status_blocks(
    lang: str,
    page: StatusPage,
    tz: ZoneInfo,
    *,
    expiring: int | None = None,
    problems: Sequence[Undeliverable] = (),
) -> list[BlockDict]:
    """The ``status`` reply: channels that refuse reminders (``problems``), a summary, one line per key with a
    Details button, and a next-page button (≤ 50 blocks), as plain dicts (see the module's docstring).
    ``expiring``: the page holds only keys with at most that many days left."""
    warning = undeliverable_block(lang, problems, "status-undeliverable")
    if warning is not None:
        return [warning, *build_status_blocks(lang, page, tz, expiring=expiring)]
    if not page.statuses:
        if page.offset:
            text = t(lang, "No more keys.")
        elif expiring is not None:
            text = t(lang, "No key has {days} days or fewer left.", days=expiring)
        else:
            text = t(lang, NO_KEYS)
        return [
            {"type": "section", "text": _mrkdwn_dict(text)},
            {"type": "context", "elements": [_mrkdwn_dict(summary_line(lang, page))]},
        ]
    first, last = page.offset + 1, page.offset + len(page.statuses)
    counts = {"summary": summary_line(lang, page), "first": first, "last": last, "total": page.matching}
    showing = (
        t(lang, "{summary}. Showing keys {first}–{last} of {total}.", **counts)
        if expiring is None
        else t(
            lang, "{summary}. Keys with {days} days or fewer left: {first}–{last} of {total}.", days=expiring, **counts
        )
    )
    blocks = [{"type": "context", "block_id": "status-summary", "elements": [_mrkdwn_dict(showing)]}]
    for status in page.statuses[:PAGE_SIZE]:
        blocks.append(build_key_line(lang, status, f"key-{status.vendor_id}"))
    if page.next_offset is not None:
        more = t(lang, "Next page ({count} more)", count=page.matching - last)
        button = _button_dict(more, ids.STATUS_NEXT_PAGE, next_page_value(page.next_offset, expiring))
        blocks.append({"type": "actions", "block_id": "status-pages", "elements": [button]})
    assert len(blocks) <= MAX_BLOCKS
    return blocks


def build_single_status_blocks(lang: str, status: KeyStatus, tz: ZoneInfo) -> list[Block]:
    return build_key_blocks(lang, status, tz)


def status_fallback_text(lang: str, page: StatusPage) -> str:
    return summary_line(lang, page)


# ---------------------------------------------------------------- App Home


def build_home_view(
    lang: str,
    page: StatusPage,
    tz: ZoneInfo,
    *,
    expanded: str | None = None,
    problems: Sequence[Undeliverable] = (),
) -> View:
    """The most urgent keys, one line each with a days-left bar and a Details button (the ``expanded`` key shows
    its full entry and buttons instead), and the counts over every key: App Home holds 100 blocks, so the page
    (``KeyService.status_page``) is all that is loaded, at any number of keys. Channels that refuse reminders
    (``problems``) come first."""
    shown = page.statuses[:HOME_MAX_KEYS]
    blocks: list[Block | BlockDict] = [
        HeaderBlock(text=t(lang, "Coupang Open API keys")),
        ContextBlock(elements=[_mrkdwn(counts_line(lang, page.healthy, page.in_window, page.expired))]),
        DividerBlock(),
    ]
    warning = undeliverable_block(lang, problems, "home-undeliverable")
    if warning is not None:
        blocks.insert(2, warning)
    if not shown:
        blocks.append(SectionBlock(text=_mrkdwn(t(lang, NO_KEYS))))
    for status in shown:
        block_id = f"home-key-{status.vendor_id}"
        bar = f"`{days_left_bar(status.days_left)}` "
        if status.vendor_id == expanded:
            text = f"{bar}{i18n.days_left(lang, status.days_left)}\n{key_summary_text(lang, status, tz)}"
            blocks.append(SectionBlock(block_id=block_id, text=_mrkdwn(text)))
            blocks.append(build_key_buttons(lang, status))
        else:
            blocks.append(build_key_line(lang, status, block_id, prefix=bar))
    if page.matching > len(shown):
        more = t(
            lang,
            "…and {count} more expiring later. See them all with `/coupang-key status`.",
            count=page.matching - len(shown),
        )
        blocks.append(ContextBlock(elements=[_mrkdwn(more)]))
    return View(type="home", blocks=blocks)


# ---------------------------------------------------------------- modals


def _text_input(
    block_id: str,
    label: str,
    *,
    optional: bool = False,
    initial: str | None = None,
    multiline: bool = False,
    placeholder: str | None = None,
    hint: str | None = None,
    max_length: int | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        hint=hint,
        element=PlainTextInputElement(
            action_id=block_id,
            initial_value=initial or None,
            multiline=multiline,
            placeholder=placeholder,
            max_length=max_length,
        ),
    )


def _integration_options(lang: str) -> list[Option]:
    return [Option(value=str(kind), text=t(lang, label)) for kind, label in INTEGRATION_LABEL.items()]


def _linking_inputs(lang: str, linking: LinkingInfo | None) -> list[Block]:
    options = _integration_options(lang)
    initial = next((o for o in options if linking and o.value == str(linking.integration)), None)
    return [
        InputBlock(
            block_id="integration",
            label=t(lang, "How is the key used?"),
            element=RadioButtonsElement(action_id="integration", options=options, initial_option=initial),
        ),
        _text_input(
            "integrator_name",
            t(lang, "Integrator company (integrator only)"),
            optional=True,
            initial=linking.integrator_name if linking else None,
            max_length=200,
        ),
        _text_input(
            "company_name",
            t(lang, "Company name (self-developed only)"),
            optional=True,
            initial=linking.company_name if linking else None,
            max_length=200,
        ),
        _text_input(
            "company_url",
            t(lang, "Company or service URL (self-developed only)"),
            optional=True,
            initial=linking.company_url if linking else None,
            placeholder=t(lang, "https://… or wing.coupang.com"),
            max_length=500,
        ),
        _text_input(
            "ip_addresses",
            t(lang, "Public IPv4 addresses that call the API (self-developed only)"),
            optional=True,
            initial="\n".join(linking.ip_addresses) if linking else None,
            multiline=True,
            hint=t(lang, "One per line, up to 10."),
        ),
    ]


def build_register_modal(lang: str, *, channel_id: str | None = None) -> View:
    """The registration form. ``private_metadata`` carries where to confirm (never any key material)."""
    blocks: list[Block] = [
        _text_input("vendor_id", t(lang, "Vendor ID"), placeholder="A00012345", max_length=9),
        _text_input("label", t(lang, "Label"), placeholder=t(lang, "Shop name your team recognises"), max_length=100),
        _text_input("access_key", "Access Key", max_length=128),
        _text_input("secret_key", "Secret Key", max_length=128, hint=t(lang, "Stored encrypted; never shown again.")),
        InputBlock(
            block_id="issued_on",
            label=t(lang, "Issued on"),
            optional=True,
            hint=t(lang, "Either the issue date or the expiry date WING shows."),
            element=DatePickerElement(action_id="issued_on"),
        ),
        InputBlock(
            block_id="expires_on",
            label=t(lang, "Expires on (as WING shows it)"),
            optional=True,
            element=DatePickerElement(action_id="expires_on"),
        ),
        InputBlock(
            block_id="channel_id",
            label=t(lang, "Reminder channel"),
            optional=True,
            element=ConversationSelectElement(
                action_id="channel_id",
                filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True),
            ),
        ),
        InputBlock(
            block_id="owner_id",
            label=t(lang, "Owner"),
            optional=True,
            element=UserSelectElement(action_id="owner_id"),
        ),
        *_linking_inputs(lang, None),
    ]
    return View(
        type="modal",
        callback_id=ids.REGISTER_MODAL,
        title=t(lang, "Register a key"),
        submit=t(lang, "Register"),
        close=t(lang, "Cancel"),
        private_metadata=json.dumps({"channel": channel_id}) if channel_id else "",
        blocks=blocks,
    )


def build_edit_linking_modal(
    lang: str, status: KeyStatus, quota: rules.EditQuota, *, channel_id: str | None = None, admin: bool = False
) -> View:
    """Linking info prefilled from the stored key (which holds no secret in these fields); for an ``admin`` also
    its label, channel, owner and expiry date (to correct a mistyped one)."""
    intro = t(lang, "Saving counts as one edit and Coupang takes up to 30 minutes to apply it.")
    blocks: list[Block] = [
        SectionBlock(text=_mrkdwn(f"*{escape(status.vendor_id)}* · {escape(_truncate(status.label, 100))}\n{intro}")),
        ContextBlock(
            block_id="edits_left",
            elements=[
                _mrkdwn(
                    t(
                        lang,
                        "Edits left in the last 7 days: {left} of {limit}",
                        left=quota.remaining,
                        limit=rules.EDITS_PER_WEEK,
                    )
                )
            ],
        ),
        *_linking_inputs(lang, status.linking),
    ]
    if admin:
        blocks.append(
            InputBlock(
                block_id="expires_on",
                label=t(lang, "Expires on (as WING shows it)"),
                hint=t(lang, "Correct it if it was entered wrong: its reminders start over. This uses no edit."),
                element=DatePickerElement(action_id="expires_on", initial_date=status.expires_on.isoformat()),
            )
        )
        blocks.extend(_details_inputs(lang, status))
    metadata = {"vendor_id": status.vendor_id, "channel": channel_id}
    return View(
        type="modal",
        callback_id=ids.EDIT_LINKING_MODAL,
        title=t(lang, "Edit linking info"),
        submit=t(lang, "Save"),
        close=t(lang, "Cancel"),
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    )


def _details_inputs(lang: str, status: KeyStatus) -> list[Block]:
    """An admin's fields for label, reminder channel and owner, prefilled (none of them uses a Coupang edit)."""
    return [
        _text_input("label", t(lang, "Label"), initial=status.label, max_length=100),
        InputBlock(
            block_id="channel_id",
            label=t(lang, "Reminder channel"),
            optional=True,
            element=ConversationSelectElement(
                action_id="channel_id",
                initial_conversation=status.channel_id,
                filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True),
            ),
        ),
        InputBlock(
            block_id="owner_id",
            label=t(lang, "Owner"),
            optional=True,
            element=UserSelectElement(action_id="owner_id", initial_user=status.owner_id),
        ),
    ]


def form_errors(lang: str, error: KeybotError, block_ids: Sequence[str], fallback: str) -> dict[str, str]:
    """``ack(response_action="errors", errors=…)`` for a refused form, in ``lang``: each field's message under its
    block (a field the form does not show lands under ``fallback``), any other refusal under ``fallback``.
    Slack shows these as plain text, where nothing pings, so what a person typed reads as typed, not ``&lt;``."""
    messages = error.messages if isinstance(error, InvalidInput) else {fallback: error.msg}
    mapped: dict[str, str] = {}
    for name, msg in messages.items():
        message = rules.plain(i18n.render(lang, msg))
        target = name if name in block_ids else fallback
        mapped[target] = _truncate(f"{mapped[target]} {message}" if target in mapped else message, 2000)
    return mapped


def input_block_ids(view: View) -> list[str]:
    return [b.block_id for b in view.blocks or [] if isinstance(b, InputBlock) and b.block_id]


# ---------------------------------------------------------------- delete, history, messages


def build_delete_confirmation(lang: str, status: KeyStatus) -> list[Block]:
    question = t(
        lang,
        "Delete the key of *{vendor_id}* ({label})? The bot forgets it and stops reminding; "
        "the key itself keeps working in WING until you delete it there.",
        vendor_id=escape(status.vendor_id),
        label=escape(status.label),
    )
    return [
        SectionBlock(text=_mrkdwn(question)),
        ActionsBlock(
            block_id="delete-confirm",
            elements=[
                ButtonElement(
                    text=t(lang, "Delete"),
                    action_id=ids.DELETE_KEY,
                    value=status.vendor_id,
                    style="danger",
                    confirm=ConfirmObject(
                        title=t(lang, "Delete this key?"),
                        text=t(
                            lang,
                            "{vendor_id} will be removed from the bot, with its consumers. This cannot be undone.",
                            vendor_id=status.vendor_id,
                        ),
                        confirm=t(lang, "Delete"),
                        deny=t(lang, "Keep it"),
                        style="danger",
                    ),
                )
            ],
        ),
    ]


# one sentence per audit action in a key's history; details fill the {placeholders} (missing ones show "?")
HISTORY_SENTENCES = {
    "key.registered": N_("{actor} registered the key {label} (generation {generation}, expires {expires_on})."),
    "key.imported": N_("{actor} imported the key {label} (generation {generation}, expires {expires_on})."),
    "key.linking_edited": N_("{actor} edited the linking info: {linking}."),
    "key.dates_corrected": N_(
        "{actor} corrected the expiry date from {expires_on_before} to {expires_on}; its reminders start over."
    ),
    "key.deleted": N_("{actor} deleted the key."),
    "key.details_edited": N_("{actor} changed the key's label, channel or owner."),
    "key.new_key_imported": N_(
        "{actor} imported the key reissued in WING: generation {generation}, expires {expires_on}."
    ),
    "key.verified": N_("{actor} verified the key: {outcome}."),
    "key.verify_repeated": N_("{actor} asked to verify again within 10 seconds: {outcome}."),
    "reissue.requested": N_("{actor} asked to reissue the key (request #{request_id}): {reason}"),
    "reissue.approved": N_("{actor} approved the reissue request #{request_id}."),
    "reissue.denied": N_("{actor} denied the reissue request #{request_id}."),
    "reissue.completed": N_(
        "{actor} entered the new key of reissue request #{request_id}: generation {generation}, expires {expires_on}."
    ),
    "reissue.expired": N_("The reissue request #{request_id} expired undecided."),
    "reissue.approval_expired": N_(
        "The reissue request #{request_id} expired: its new key was not entered within 24 hours."
    ),
    "reissue.superseded": N_("{actor} asked again, which replaced the unposted reissue request #{request_id}."),
    "reissue.voided": N_("The reissue request #{request_id} became void: the key changed."),
    "reminder.posted": N_("{actor} posted a reminder."),
    "consumer.added": N_("{actor} added the consumer {name}."),
    "consumer.removed": N_("{actor} removed the consumer {name}."),
    "consumer.pushed": N_("{actor} pushed generation {generation} to {names}."),
    "rollout.confirmed": N_("{actor} confirmed it uses generation {generation}."),
    "rollout.delivered": N_("{actor} delivered generation {generation} to {name}."),
    "rollout.retrying": N_("{actor} could not deliver generation {generation} to {name} (attempt {attempt}): {error}"),
    "rollout.failed": N_(
        "{actor} gave up delivering generation {generation} to {name} after attempt {attempt}: {error}"
    ),
}


def history_actor(lang: str, actor: str) -> str:
    """A Slack user as a mention; the bot's own jobs as "The bot"; CLI and consumers as recorded."""
    if re.fullmatch(r"[UW][A-Z0-9]{2,}", actor):
        return f"<@{actor}>"
    if actor in ("keybot", "scheduler"):
        return t(lang, "The bot")
    return escape(actor)


def history_sentence(lang: str, entry: AuditEntry) -> str:
    """An audit entry as a sentence in ``lang`` ("<@U…> approved the reissue request #3.")."""
    actor = history_actor(lang, entry.actor)
    base = entry.action.removesuffix(".refused")
    if base != entry.action:
        reason = entry.details.get("reason") or ", ".join(map(str, entry.details.get("fields") or [])) or "?"
        action = audit_action_label(lang, base)
        return t(lang, "{actor} was refused ({action}): {reason}", actor=actor, action=action, reason=escape(reason))
    template = HISTORY_SENTENCES.get(entry.action)
    if template is None:
        return t(lang, "{actor}: {action}", actor=actor, action=escape(audit_action_label(lang, entry.action)))
    params: dict[str, object] = collections.defaultdict(lambda: "?")
    params.update({k: escape(str(v)) for k, v in entry.details.items() if not isinstance(v, (dict, list))})
    if isinstance(entry.details.get("names"), list):
        params["names"] = escape(", ".join(map(str, entry.details["names"])))
    if "outcome" in entry.details:
        params["outcome"] = outcome_label(lang, str(entry.details["outcome"]))
    linking = entry.details.get("after")
    if isinstance(linking, dict):
        with contextlib.suppress(KeyError, ValueError):  # unreadable: "?"
            params["linking"] = escape(linking_summary(lang, LinkingInfo.from_details(linking)))
    params["actor"] = actor
    return _truncate(i18n.fill(lang, template, params), 600)


def audit_action_label(lang: str, action: str) -> str:
    """An audit action as shown: the stored code in English, its meaning in Korean."""
    base = action.removesuffix(".refused")
    if base not in AUDIT_ACTIONS:
        return action
    return t(lang, "{action}.refused", action=t(lang, base)) if base != action else t(lang, base)


# audit codes stay language-neutral in the database; English shows the code, Korean its meaning
AUDIT_ACTIONS = frozenset(
    {
        N_("key.registered"),
        N_("key.register"),
        N_("key.imported"),
        N_("key.import"),
        N_("key.linking_edited"),
        N_("key.dates_corrected"),
        N_("key.details_edited"),
        N_("key.new_key_imported"),
        N_("key.edit"),
        N_("key.deleted"),
        N_("key.delete"),
        N_("key.verified"),
        N_("key.verify"),
        N_("reissue.requested"),
        N_("reissue.request"),
        N_("reissue.approved"),
        N_("reissue.approve"),
        N_("reissue.denied"),
        N_("reissue.deny"),
        N_("reissue.completed"),
        N_("reissue.complete"),
        N_("reissue.expired"),
        N_("reissue.approval_expired"),
        N_("reissue.superseded"),
        N_("reissue.voided"),
        N_("reissue.nudged"),
        N_("approver.added"),
        N_("approver.removed"),
        N_("consumer.removed"),
        N_("consumer.added"),
        N_("consumer.add"),
        N_("consumer.remove"),
        N_("consumer.pushed"),
        N_("consumer.push"),
        N_("consumer.manage"),
        N_("consumer.propose"),
        N_("consumer.proposed"),
        N_("consumer.approve"),
        N_("consumer.deny"),
        N_("consumer.retarget"),
        N_("consumer.retargeted"),
        N_("consumer.proposal.approved"),
        N_("consumer.proposal.denied"),
        N_("consumer.proposal.expired"),
        N_("consumer.proposal.voided"),
        N_("approver.add"),
        N_("approver.remove"),
        N_("key.verify_repeated"),
        N_("reminder.posted"),
        N_("rollout.delivered"),
        N_("rollout.retrying"),
        N_("rollout.failed"),
        N_("rollout.confirmed"),
        N_("summary.posted"),
        N_("audit.head_posted"),
        N_("audit.read"),
        N_("master_key.rotated"),
        N_("language.chosen"),
    }
)


def build_history_blocks(lang: str, vendor_id: str, entries: Sequence[AuditEntry], tz: ZoneInfo) -> list[Block]:
    """The last events of one key, newest first (audit details never hold secrets)."""
    title = t(
        lang, "*History of {vendor_id}* (latest {count} events)", vendor_id=escape(vendor_id), count=HISTORY_LIMIT
    )
    blocks: list[Block] = [SectionBlock(text=_mrkdwn(title))]
    if not entries:
        blocks.append(ContextBlock(elements=[_mrkdwn(t(lang, "Nothing recorded for this vendor ID."))]))
    for entry in entries[:HISTORY_LIMIT]:
        text = f"`{i18n.moment(lang, entry.at, tz)}` {history_sentence(lang, entry)}"
        blocks.append(ContextBlock(elements=[_mrkdwn(text)]))
    return blocks


def no_channel_text(lang: str) -> str:
    return t(lang, ":warning: No reminder channel (none given, KEYBOT_CHANNEL not set): this key gets no reminders.")


def registered_text(lang: str, status: KeyStatus) -> str:
    text = t(
        lang,
        ":white_check_mark: Registered *{vendor_id}* ({label}): expires {date}, {days_left}.",
        vendor_id=escape(status.vendor_id),
        label=escape(status.label),
        date=i18n.day(lang, status.expires_on),
        days_left=i18n.days_left(lang, status.days_left),
    )
    lines = [text, no_channel_text(lang) if not status.reminder_channel else next_steps_text(lang, status)]
    lines.append(
        t(
            lang,
            "So the new key reaches the systems that use this one (order sync, ERP), add them: "
            "`/coupang-key consumers {vendor_id} add`.",
            vendor_id=escape(status.vendor_id),
        )
    )
    if status.linking.integration is rules.Integration.SELF:
        lines.append(
            t(lang, "To let the bot check the key with Coupang, list the bot server's public IP among its IPs.")
        )
    return "\n".join(lines)


def next_steps_text(lang: str, status: KeyStatus) -> str:
    """When the team hears about this key next: the first reminder, at the D-14 milestone if it is ahead."""
    if status.days_left > rules.REISSUE_WINDOW_DAYS:
        return t(
            lang,
            "Next: a reminder on {date} (D-14), when WING's Reissue button opens.",
            date=i18n.day(lang, rules.milestone_date(status.expires_on, rules.REISSUE_WINDOW_DAYS)),
        )
    advice = i18n.render(lang, rules.wing_advice(rules.path_for(status.days_left)))
    return t(lang, "Next: {advice}.", advice=advice)


def edited_text(lang: str, status: KeyStatus, tz: ZoneInfo) -> str:
    params = {"vendor_id": escape(status.vendor_id), "used": status.edits_last_7_days, "limit": rules.EDITS_PER_WEEK}
    if status.propagating_until:
        saved = t(
            lang,
            ":white_check_mark: Saved the linking info of *{vendor_id}*. Coupang may take up to 30 minutes to "
            "apply it (propagating until {time}). Edits in the last 7 days: {used}/{limit}.",
            time=i18n.moment(lang, status.propagating_until, tz),
            **params,
        )
    else:
        saved = t(
            lang,
            ":white_check_mark: Saved the linking info of *{vendor_id}*. Coupang may take up to 30 minutes to "
            "apply it (propagating). Edits in the last 7 days: {used}/{limit}.",
            **params,
        )
    wing = t(
        lang,
        "The bot only records it: change it in WING too with Edit (수정), or Coupang keeps the old linking info.",
    )
    return f"{saved}\n{wing}"


def edit_result_text(lang: str, result: EditResult, tz: ZoneInfo) -> str:
    """The confirmation of the edit form: the linking info saved (or unchanged), and a corrected expiry."""
    status = result.status
    text = edited_text(lang, status, tz) if result.changed else unchanged_text(lang, status)
    if result.details_changed:
        details = t(
            lang,
            "Saved the label, channel and owner of *{vendor_id}*: {label}, {channel}, {owner}.",
            vendor_id=escape(status.vendor_id),
            label=escape(status.label),
            channel=f"<#{status.channel_id}>" if status.channel_id else t(lang, "no channel"),
            owner=f"<@{status.owner_id}>" if status.owner_id else t(lang, "no owner"),
        )
        text = details if not result.changed and not result.dates_corrected else f"{text}\n{details}"
    if result.dates_corrected:
        corrected = t(
            lang,
            ":calendar: Expiry of *{vendor_id}* corrected to {date} ({days_left}); its reminders start over.",
            vendor_id=escape(status.vendor_id),
            date=i18n.day(lang, status.expires_on),
            days_left=i18n.days_left(lang, status.days_left),
        )
        text = corrected if not result.changed else f"{text}\n{corrected}"
    return text


def deleted_announcement(lang: str, user_id: str, vendor_id: str, label: str) -> str:
    return t(
        lang,
        ":wastebasket: <@{user}> deleted the key of *{vendor_id}* ({label}) from the bot: it gets no more reminders.",
        user=user_id,
        vendor_id=escape(vendor_id),
        label=escape(label),
    )


def unchanged_text(lang: str, status: KeyStatus) -> str:
    return t(
        lang,
        "Nothing changed: the linking info of *{vendor_id}* is the same as before, so no edit was used "
        "(edits in the last 7 days: {used}/{limit}).",
        vendor_id=escape(status.vendor_id),
        used=status.edits_last_7_days,
        limit=rules.EDITS_PER_WEEK,
    )


def build_notice_modal(lang: str, text: str) -> View:
    """A one-message modal, for answers to clicks that have no conversation to reply in (App Home)."""
    return View(
        type="modal",
        title=t(lang, "Coupang Keybot"),
        close=t(lang, "OK"),
        blocks=[SectionBlock(text=_mrkdwn(_truncate(text, 3000)))],
    )


def refusal_text(lang: str, error: KeybotError) -> str:
    return t(lang, ":warning: {reason}", reason=i18n.render(lang, error.msg))
