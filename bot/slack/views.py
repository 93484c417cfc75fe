"""Pure Block Kit builders: data in, ``slack_sdk.models`` out. No I/O, no services, no secrets.

Every piece of user-typed text goes through :func:`escape` before it lands in mrkdwn, so a label such as
``<!channel>`` pings nobody. Secret inputs are never prefilled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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

from bot import rules
from bot.rules import Integration, LinkingInfo, Phase
from bot.services.audit import AuditEntry
from bot.services.keys import KeyStatus, StatusPage
from bot.slack import ids

PAGE_SIZE = 15
MAX_BLOCKS = 50
HOME_MAX_KEYS = 45  # App Home allows 100 blocks; each key takes two
HISTORY_LIMIT = 20
BAR_CELLS = 12

PHASE_LABEL = {
    Phase.HEALTHY: ":large_green_circle: healthy",
    Phase.REISSUE_WINDOW: ":large_orange_circle: reissue window",
    Phase.EXPIRED: ":red_circle: expired",
}
INTEGRATION_LABEL = {
    Integration.INTEGRATOR: "Through an integrator (e.g. a listing tool)",
    Integration.SELF: "Self-developed (our own program)",
}


def escape(text: object) -> str:
    """User text made inert for mrkdwn: ``&``, ``<`` and ``>`` become entities."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- status


def days_left_bar(days: int, cells: int = BAR_CELLS) -> str:
    """A bar of the key's remaining life out of 180 days: full when new, empty when expired."""
    lifetime = rules.KEY_LIFETIME.days
    filled = 0 if days <= 0 else min(cells, max(1, round(cells * days / lifetime)))
    return "▰" * filled + "▱" * (cells - filled)


def key_summary_text(status: KeyStatus, tz: ZoneInfo) -> str:
    """The mrkdwn body of one key's section (≤ 3000 characters)."""
    reissue = rules.wing_advice(rules.path_for(status.days_left))
    lines = [
        f"*{escape(status.vendor_id)}* · {escape(_truncate(status.label, 100))}",
        f"Access key `{escape(status.access_key_mask)}` · expires *{status.expires_on.isoformat()}* "
        f"({rules.describe_days_left(status.days_left)}) · {PHASE_LABEL[status.phase]}",
        f"{reissue} · linking-info edits this week: {status.edits_last_7_days}/{rules.EDITS_PER_WEEK}",
        f"Linking: {escape(_truncate(status.linking.summary(), 600))}",
    ]
    if status.propagating_until:
        works_by = rules.format_local(status.propagating_until, tz)
        lines.append(f":hourglass: Coupang is applying a change: the key works by {works_by}")
    if status.verify_outcome and status.verified_at:
        outcome = status.verify_outcome.replace("_", " ")
        lines.append(f"Last check: {escape(outcome)} ({rules.format_local(status.verified_at, tz)})")
    if status.owner_id:
        lines.append(f"Owner: <@{escape(status.owner_id)}>")
    if status.consumers:
        lines.append(
            f"Rollout: consumers {status.consumers[0]}/{status.consumers[1]} hold generation {status.generation}"
        )
    if status.open_request:
        lines.append(
            f":hourglass_flowing_sand: Reissue request #{status.open_request.id} is "
            f"{escape(status.open_request.status)} (by <@{escape(status.open_request.requested_by)}>)"
        )
    return "\n".join(lines)


def build_key_buttons(status: KeyStatus) -> ActionsBlock:
    return ActionsBlock(
        block_id=f"key-actions-{status.vendor_id}",
        elements=[
            ButtonElement(text="Edit linking info", action_id=ids.EDIT_LINKING, value=status.vendor_id),
            ButtonElement(
                text="Request reissue",
                action_id=ids.REQUEST_REISSUE,
                value=status.vendor_id,
                style="primary" if status.phase is not Phase.HEALTHY else None,
            ),
            ButtonElement(text="Verify", action_id=ids.VERIFY_KEY, value=status.vendor_id),
        ],
    )


def build_key_blocks(status: KeyStatus, tz: ZoneInfo) -> list[Block]:
    return [
        SectionBlock(block_id=f"key-{status.vendor_id}", text=_mrkdwn(key_summary_text(status, tz))),
        build_key_buttons(status),
    ]


def summary_line(page: StatusPage) -> str:
    total = page.healthy + page.in_window + page.expired
    return (
        f"{total} key{'s' if total != 1 else ''}: {page.healthy} healthy · "
        f"{page.in_window} in the reissue window · {page.expired} expired"
    )


def next_page_value(offset: int, expiring: bool) -> str:
    return json.dumps({"offset": offset, "expiring": expiring}, separators=(",", ":"))


def build_status_blocks(page: StatusPage, tz: ZoneInfo, *, expiring: bool = False) -> list[Block]:
    """The ``status`` reply: a summary, one section + buttons per key, and a next-page button (≤ 50 blocks)."""
    if not page.statuses:
        text = (
            "No key is in or near its reissue window."
            if expiring and page.offset == 0
            else "No keys registered yet. Register one with `/coupang-key add`."
            if page.offset == 0
            else "No more keys."
        )
        return [SectionBlock(text=_mrkdwn(text)), ContextBlock(elements=[_mrkdwn(summary_line(page))])]
    first, last = page.offset + 1, page.offset + len(page.statuses)
    scope = "expiring keys" if expiring else "keys"
    blocks: list[Block] = [
        ContextBlock(
            block_id="status-summary",
            elements=[_mrkdwn(f"{summary_line(page)}. Showing {scope} {first}–{last} of {page.matching}.")],
        )
    ]
    for status in page.statuses[:PAGE_SIZE]:
        blocks.extend(build_key_blocks(status, tz))
    if page.next_offset is not None:
        blocks.append(
            ActionsBlock(
                block_id="status-pages",
                elements=[
                    ButtonElement(
                        text=f"Next page ({page.matching - last} more)",
                        action_id=ids.STATUS_NEXT_PAGE,
                        value=next_page_value(page.next_offset, expiring),
                    )
                ],
            )
        )
    assert len(blocks) <= MAX_BLOCKS
    return blocks


def build_single_status_blocks(status: KeyStatus, tz: ZoneInfo) -> list[Block]:
    return build_key_blocks(status, tz)


def status_fallback_text(page: StatusPage) -> str:
    return summary_line(page)


# ---------------------------------------------------------------- App Home


def build_home_view(page: StatusPage, tz: ZoneInfo) -> View:
    """The most urgent keys with a days-left bar and the same buttons, and the counts over every key: App Home
    holds 100 blocks, so the page (``KeyService.status_page``) is all that is loaded, at any number of keys."""
    shown = page.statuses[:HOME_MAX_KEYS]
    blocks: list[Block] = [
        HeaderBlock(text="Coupang Open API keys"),
        ContextBlock(
            elements=[
                _mrkdwn(
                    f"{page.matching} keys: {page.healthy} healthy · {page.in_window} in the reissue window · "
                    f"{page.expired} expired"
                )
            ]
        ),
        DividerBlock(),
    ]
    if not shown:
        blocks.append(SectionBlock(text=_mrkdwn("No keys registered yet. Register one with `/coupang-key add`.")))
    for status in shown:
        bar = f"`{days_left_bar(status.days_left)}` {rules.describe_days_left(status.days_left)}"
        text = f"{bar}\n{key_summary_text(status, tz)}"
        blocks.append(SectionBlock(block_id=f"home-key-{status.vendor_id}", text=_mrkdwn(text)))
        blocks.append(build_key_buttons(status))
    if page.matching > len(shown):
        blocks.append(
            ContextBlock(
                elements=[
                    _mrkdwn(
                        f"…and {page.matching - len(shown)} more expiring later. See them all with "
                        "`/coupang-key status`."
                    )
                ]
            )
        )
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


def _integration_options() -> list[Option]:
    return [Option(value=str(kind), text=label) for kind, label in INTEGRATION_LABEL.items()]


def _linking_inputs(linking: LinkingInfo | None) -> list[Block]:
    options = _integration_options()
    initial = next((o for o in options if linking and o.value == str(linking.integration)), None)
    return [
        InputBlock(
            block_id="integration",
            label="How is the key used?",
            element=RadioButtonsElement(action_id="integration", options=options, initial_option=initial),
        ),
        _text_input(
            "integrator_name",
            "Integrator company (integrator only)",
            optional=True,
            initial=linking.integrator_name if linking else None,
            max_length=200,
        ),
        _text_input(
            "company_name",
            "Company name (self-developed only)",
            optional=True,
            initial=linking.company_name if linking else None,
            max_length=200,
        ),
        _text_input(
            "company_url",
            "Company or service URL (self-developed only)",
            optional=True,
            initial=linking.company_url if linking else None,
            placeholder="https://… or wing.coupang.com",
            max_length=500,
        ),
        _text_input(
            "ip_addresses",
            "Public IPv4 addresses that call the API (self-developed only)",
            optional=True,
            initial="\n".join(linking.ip_addresses) if linking else None,
            multiline=True,
            hint="One per line, up to 10.",
        ),
    ]


def build_register_modal(*, channel_id: str | None = None) -> View:
    """The registration form. ``private_metadata`` carries where to confirm (never any key material)."""
    blocks: list[Block] = [
        _text_input("vendor_id", "Vendor ID", placeholder="A00012345", max_length=9),
        _text_input("label", "Label", placeholder="Shop name your team recognises", max_length=100),
        _text_input("access_key", "Access Key", max_length=128),
        _text_input("secret_key", "Secret Key", max_length=128, hint="Stored encrypted; never shown again."),
        InputBlock(
            block_id="issued_on",
            label="Issued on",
            optional=True,
            hint="Either the issue date or the expiry date WING shows.",
            element=DatePickerElement(action_id="issued_on"),
        ),
        InputBlock(
            block_id="expires_on",
            label="Expires on (as WING shows it)",
            optional=True,
            element=DatePickerElement(action_id="expires_on"),
        ),
        InputBlock(
            block_id="channel_id",
            label="Reminder channel",
            optional=True,
            element=ConversationSelectElement(
                action_id="channel_id",
                filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True),
            ),
        ),
        InputBlock(
            block_id="owner_id",
            label="Owner",
            optional=True,
            element=UserSelectElement(action_id="owner_id"),
        ),
        *_linking_inputs(None),
    ]
    return View(
        type="modal",
        callback_id=ids.REGISTER_MODAL,
        title="Register a key",
        submit="Register",
        close="Cancel",
        private_metadata=json.dumps({"channel": channel_id}) if channel_id else "",
        blocks=blocks,
    )


def build_edit_linking_modal(status: KeyStatus, quota: rules.EditQuota, *, channel_id: str | None = None) -> View:
    """Linking info prefilled from the stored key (which holds no secret in these fields)."""
    blocks: list[Block] = [
        SectionBlock(
            text=_mrkdwn(
                f"*{escape(status.vendor_id)}* · {escape(_truncate(status.label, 100))}\n"
                "Saving counts as one edit and Coupang takes up to 30 minutes to apply it."
            )
        ),
        ContextBlock(
            block_id="edits_left",
            elements=[_mrkdwn(f"Edits left this week: {quota.remaining} of {rules.EDITS_PER_WEEK}")],
        ),
        *_linking_inputs(status.linking),
    ]
    metadata = {"vendor_id": status.vendor_id, "channel": channel_id}
    return View(
        type="modal",
        callback_id=ids.EDIT_LINKING_MODAL,
        title="Edit linking info",
        submit="Save",
        close="Cancel",
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    )


def field_errors(errors: dict[str, str], block_ids: Sequence[str], fallback: str) -> dict[str, str]:
    """Errors keyed by block_id; a field the form does not show lands under ``fallback``."""
    mapped: dict[str, str] = {}
    for name, message in errors.items():
        target = name if name in block_ids else fallback
        mapped[target] = _truncate(f"{mapped[target]} {message}" if target in mapped else message, 2000)
    return mapped


def input_block_ids(view: View) -> list[str]:
    return [b.block_id for b in view.blocks or [] if isinstance(b, InputBlock) and b.block_id]


# ---------------------------------------------------------------- delete, history, messages


def build_delete_confirmation(status: KeyStatus) -> list[Block]:
    return [
        SectionBlock(
            text=_mrkdwn(
                f"Delete the key of *{escape(status.vendor_id)}* ({escape(status.label)})? The bot forgets it "
                "and stops reminding; the key itself keeps working in WING until you delete it there."
            )
        ),
        ActionsBlock(
            block_id="delete-confirm",
            elements=[
                ButtonElement(
                    text="Delete",
                    action_id=ids.DELETE_KEY,
                    value=status.vendor_id,
                    style="danger",
                    confirm=ConfirmObject(
                        title="Delete this key?",
                        text=f"{status.vendor_id} will be removed from the bot. This cannot be undone.",
                        confirm="Delete",
                        deny="Keep it",
                        style="danger",
                    ),
                )
            ],
        ),
    ]


def _details_text(details: dict[str, object]) -> str:
    parts = [f"{key}: {value}" for key, value in details.items()]
    return _truncate("; ".join(parts), 400)


def build_history_blocks(vendor_id: str, entries: Sequence[AuditEntry], tz: ZoneInfo) -> list[Block]:
    """The last events of one key, newest first (audit details never hold secrets)."""
    blocks: list[Block] = [
        SectionBlock(text=_mrkdwn(f"*History of {escape(vendor_id)}* (latest {HISTORY_LIMIT} events)"))
    ]
    if not entries:
        blocks.append(ContextBlock(elements=[_mrkdwn("Nothing recorded for this vendor ID.")]))
    for entry in entries[:HISTORY_LIMIT]:
        when = rules.format_local(entry.at, tz)
        details = _details_text(entry.details)
        text = f"`{when}` *{escape(entry.action)}* by {escape(entry.actor)}"
        if details:
            text += f"\n{escape(details)}"
        blocks.append(ContextBlock(elements=[_mrkdwn(text)]))
    return blocks


def registered_text(status: KeyStatus) -> str:
    return (
        f":white_check_mark: Registered *{escape(status.vendor_id)}* ({escape(status.label)}): expires "
        f"{status.expires_on.isoformat()}, {rules.describe_days_left(status.days_left)}."
    )


def edited_text(status: KeyStatus, tz: ZoneInfo) -> str:
    until = f" until {rules.format_local(status.propagating_until, tz)}" if status.propagating_until else ""
    return (
        f":white_check_mark: Saved the linking info of *{escape(status.vendor_id)}*. Coupang may take up to "
        f"30 minutes to apply it (propagating{until}). Edits this week: {status.edits_last_7_days}/"
        f"{rules.EDITS_PER_WEEK}."
    )


def build_notice_modal(text: str) -> View:
    """A one-message modal, for answers to clicks that have no conversation to reply in (App Home)."""
    return View(
        type="modal",
        title="Coupang Keybot",
        close="OK",
        blocks=[SectionBlock(text=_mrkdwn(_truncate(text, 3000)))],
    )


def refusal_text(message: str) -> str:
    return f":warning: {message}"
