"""Block Kit and mrkdwn as plain terminal text. Pure functions: the console prints what these return.

Buttons are numbered by the caller (``number_for``), so the same number can be typed to click them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
RULE = "─" * 60
_EMOJI = re.compile(r":([a-z0-9_+-]+):")
EMOJI = {
    "alarm_clock": "⏰",
    "warning": "⚠️",
    "red_circle": "🔴",
    "large_orange_circle": "🟠",
    "large_green_circle": "🟢",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔",
    "x": "❌",
    "key": "🔑",
    "lock": "🔒",
    "hourglass_flowing_sand": "⏳",
    "no_entry": "⛔",
    "information_source": "ℹ️",
    "grey_question": "❔",
}
SECRET_WORDS = ("secret", "access_key", "access key")

# (element, block_id) -> the number the user types to click it
NumberFor = Callable[[Mapping[str, Any], str], int]


def mrkdwn_to_text(text: str) -> str:
    """Slack's link syntax to something readable; entities back to characters (user text stays inert)."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return f"@{label or target[1:]}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            special = target[1:].split("^")[0]
            return label or f"@{special}"
        return f"{label} ({target})" if label and label != target else target

    text = _LINK.sub(link, text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def text_of(obj: Any) -> str:
    """A text object (plain_text or mrkdwn), or a bare string."""
    if obj is None:
        return ""
    if isinstance(obj, str):
        return mrkdwn_to_text(obj)
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_text(obj.get("text", ""))
    return str(obj.get("text", ""))


def _rich_text(element: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for child in element.get("elements", []):
        kind = child.get("type")
        if kind == "text":
            parts.append(child.get("text", ""))
        elif kind == "link":
            parts.append(child.get("text") or child.get("url", ""))
        elif kind == "user":
            parts.append(f"@{child.get('user_id', '')}")
        elif kind == "channel":
            parts.append(f"#{child.get('channel_id', '')}")
        elif kind == "emoji":
            parts.append(f":{child.get('name', '')}:")
        elif "elements" in child:
            prefix = "• " if kind == "rich_text_list" else ""
            parts.append(prefix + _rich_text(child) + ("\n" if kind != "rich_text_section" else ""))
    return "".join(parts)


def render_element(element: Mapping[str, Any], block_id: str, number_for: NumberFor) -> str:
    """An interactive element of a message or a modal's non-input block."""
    kind = element.get("type")
    if kind == "button":
        style = {"primary": "", "danger": " (!)"}.get(element.get("style", ""), "")
        return f"[#{number_for(element, block_id)} {text_of(element.get('text'))}{style}]"
    if kind in ("static_select", "overflow", "users_select", "channels_select", "conversations_select"):
        placeholder = text_of(element.get("placeholder")) or "choose…"
        return f"[#{number_for(element, block_id)} {placeholder} ▾]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("mrkdwn", "plain_text"):
        return text_of(element)
    return f"[{kind}]"


def render_blocks(blocks: Sequence[Mapping[str, Any]], number_for: NumberFor) -> str:
    """Non-input blocks as lines of text (input blocks are the modal renderer's business)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        block_id = str(block.get("block_id", ""))
        if kind == "header":
            title = text_of(block.get("text"))
            lines += [title, "=" * min(len(title), 60)]
        elif kind == "section":
            if block.get("text"):
                lines.append(text_of(block.get("text")))
            fields = [" ".join(text_of(f).split("\n")) for f in block.get("fields") or []]
            for left, right in zip(fields[::2], [*fields[1::2], ""], strict=False):
                lines.append(f"  {left:<38} {right}".rstrip())
            if block.get("accessory"):
                lines.append("  " + render_element(block["accessory"], block_id, number_for))
        elif kind == "context":
            lines.append("  " + "  ·  ".join(render_element(e, block_id, number_for) for e in block["elements"]))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "actions":
            lines.append("  ".join(render_element(e, block_id, number_for) for e in block.get("elements", [])))
        elif kind == "rich_text":
            lines.append(_rich_text(block).rstrip("\n"))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind != "input":
            lines.append(f"[{kind} block]")
    return "\n".join(lines)


def render_message(text: str, blocks: Sequence[Mapping[str, Any]] | None, number_for: NumberFor) -> str:
    """Blocks when there are any (Slack shows those), else the text."""
    if blocks:
        return render_blocks(blocks, number_for)
    return mrkdwn_to_text(text or "")


def is_secret_field(block: Mapping[str, Any]) -> bool:
    """Fields whose value must never be shown back (typed without echo, shown as hidden)."""
    element = block.get("element") or {}
    names = f"{block.get('block_id', '')} {element.get('action_id', '')} {text_of(block.get('label'))}".lower()
    return any(word in names for word in SECRET_WORDS)


def describe_value(element: Mapping[str, Any], value: Mapping[str, Any] | None) -> str:
    """The current value of an input element as it would read in the modal."""
    if not value:
        return ""
    kind = element.get("type")
    if kind in ("static_select", "radio_buttons", "external_select"):
        option = value.get("selected_option")
        return text_of(option.get("text")) if option else ""
    if kind in ("checkboxes", "multi_static_select"):
        return ", ".join(text_of(o.get("text")) for o in value.get("selected_options") or [])
    if kind == "datepicker":
        return value.get("selected_date") or ""
    if kind == "timepicker":
        return value.get("selected_time") or ""
    if kind == "users_select":
        return f"@{value['selected_user']}" if value.get("selected_user") else ""
    if kind == "multi_users_select":
        return ", ".join(f"@{u}" for u in value.get("selected_users") or [])
    if kind == "channels_select":
        return f"#{value['selected_channel']}" if value.get("selected_channel") else ""
    if kind == "conversations_select":
        return f"#{value['selected_conversation']}" if value.get("selected_conversation") else ""
    if kind == "multi_channels_select":
        return ", ".join(f"#{c}" for c in value.get("selected_channels") or [])
    if kind == "multi_conversations_select":
        return ", ".join(f"#{c}" for c in value.get("selected_conversations") or [])
    return str(value.get("value") or "")
