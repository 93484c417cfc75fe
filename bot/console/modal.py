"""An open modal as numbered fields: what is typed becomes the ``state.values`` Slack would submit."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bot.console.render import NumberFor, describe_value, is_secret_field, render_blocks, text_of
from bot.i18n import ENGLISH, N_, t

CLEAR = "-"  # typed to empty an optional field
NEWLINE_ESCAPE = "\\n"  # typed inside a multi-line field for a line break
_SELECTS = ("static_select", "radio_buttons", "external_select")
_MULTI = ("checkboxes", "multi_static_select")
_USER = re.compile(r"[UW][A-Z0-9]{2,}")
A_USER_ID, A_CHANNEL_ID = N_("a user ID such as U0123ABCD"), N_("a channel ID such as C0123ABCD")
_CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,}")


class FieldInputError(ValueError):
    """What was typed cannot be the value of this field; the message (in the console's language) says what to
    type."""


def _options(element: Mapping[str, Any]) -> list[dict[str, Any]]:
    if element.get("option_groups"):
        return [o for group in element["option_groups"] for o in group.get("options", [])]
    return list(element.get("options") or [])


def _pick(element: Mapping[str, Any], typed: str, lang: str = ENGLISH) -> dict[str, Any]:
    options = _options(element)
    typed = typed.strip()
    if typed.isdigit() and 1 <= int(typed) <= len(options):
        return options[int(typed) - 1]
    for option in options:
        if typed.lower() in (text_of(option.get("text")).lower(), str(option.get("value", "")).lower()):
            return option
    starting = [o for o in options if typed and text_of(o.get("text")).lower().startswith(typed.lower())]
    if len(starting) == 1:
        return starting[0]
    raise FieldInputError(t(lang, "Type the number of one of the {count} choices.", count=len(options)))


def _ids(typed: str, prefix: str) -> list[str]:
    return [w.lstrip(prefix) for w in re.split(r"[\s,]+", typed.strip()) if w.lstrip(prefix)]


def _checked(items: list[str], pattern: re.Pattern[str], what: str, lang: str = ENGLISH) -> list[str]:
    """Slack's pickers only offer real users and channels; the console asks for well-formed IDs instead."""
    bad = [i for i in items if not pattern.fullmatch(i)]
    if bad or not items:
        value = bad[0] if bad else t(lang, "That")
        raise FieldInputError(t(lang, "{value} is not {what}.", value=value, what=t(lang, what)))
    return items


def initial_value(element: Mapping[str, Any]) -> dict[str, Any]:
    """The state entry Slack reports for an element the user has not touched."""
    kind = element.get("type", "")
    value: dict[str, Any] = {"type": kind}
    if kind in _SELECTS:
        value["selected_option"] = element.get("initial_option")
    elif kind in _MULTI:
        value["selected_options"] = list(element.get("initial_options") or [])
    elif kind == "datepicker":
        value["selected_date"] = element.get("initial_date")
    elif kind == "timepicker":
        value["selected_time"] = element.get("initial_time")
    elif kind == "users_select":
        value["selected_user"] = element.get("initial_user")
    elif kind == "multi_users_select":
        value["selected_users"] = list(element.get("initial_users") or [])
    elif kind == "channels_select":
        value["selected_channel"] = element.get("initial_channel")
    elif kind == "multi_channels_select":
        value["selected_channels"] = list(element.get("initial_channels") or [])
    elif kind == "conversations_select":
        value["selected_conversation"] = element.get("initial_conversation")
    elif kind == "multi_conversations_select":
        value["selected_conversations"] = list(element.get("initial_conversations") or [])
    else:  # plain_text_input, number_input, email_text_input, url_text_input
        value["value"] = element.get("initial_value")
    return value


def parse_typed(element: Mapping[str, Any], typed: str, lang: str = ENGLISH) -> dict[str, Any]:
    """What the user typed for one element, as the element's state entry (``CLEAR`` empties it)."""
    kind = element.get("type", "")
    value = initial_value({"type": kind})  # the empty value of this kind
    if typed.strip() == CLEAR:
        return value
    if kind in _SELECTS:
        value["selected_option"] = _pick(element, typed, lang)
    elif kind in _MULTI:
        value["selected_options"] = [_pick(element, part, lang) for part in re.split(r"[\s,]+", typed.strip()) if part]
    elif kind == "datepicker":
        try:
            value["selected_date"] = date.fromisoformat(typed.strip()).isoformat()
        except ValueError:
            raise FieldInputError(t(lang, "Type a date as YYYY-MM-DD, e.g. 2026-12-31.")) from None
    elif kind == "timepicker":
        if not re.fullmatch(r"\d{2}:\d{2}", typed.strip()):
            raise FieldInputError(t(lang, "Type a time as HH:MM, e.g. 09:00."))
        value["selected_time"] = typed.strip()
    elif kind in ("users_select", "multi_users_select"):
        users = _checked(_ids(typed, "@"), _USER, A_USER_ID, lang)
        value.update({"selected_user": users[0]} if kind == "users_select" else {"selected_users": users})
    elif kind in ("channels_select", "conversations_select"):
        channel = _checked(_ids(typed, "#"), _CHANNEL, A_CHANNEL_ID, lang)[0]
        value["selected_channel" if kind == "channels_select" else "selected_conversation"] = channel
    elif kind in ("multi_channels_select", "multi_conversations_select"):
        channels = _checked(_ids(typed, "#"), _CHANNEL, A_CHANNEL_ID, lang)
        value["selected_channels" if kind == "multi_channels_select" else "selected_conversations"] = channels
    else:
        text = typed.replace(NEWLINE_ESCAPE, "\n") if element.get("multiline") else typed
        value["value"] = text
    return value


def typing_hint(element: Mapping[str, Any], lang: str = ENGLISH) -> str:
    kind = element.get("type", "")
    if kind in _SELECTS or kind in _MULTI:
        choices = "  ".join(f"{i}) {text_of(o.get('text'))}" for i, o in enumerate(_options(element), start=1))
        return choices + (t(lang, "   (several: 1,3)") if kind in _MULTI else "")
    if kind == "datepicker":
        return t(lang, "a date, YYYY-MM-DD")
    if kind in ("users_select", "multi_users_select"):
        several = t(lang, " (several: separate by spaces)") if kind.startswith("multi") else ""
        return t(lang, "a user ID, e.g. U0123ABCD") + several
    if kind in ("channels_select", "conversations_select", "multi_channels_select", "multi_conversations_select"):
        return t(lang, "a channel ID, e.g. C0123ABCD")
    if element.get("multiline"):
        return t(lang, "several lines: type {escape} between them", escape=NEWLINE_ESCAPE)
    return ""


@dataclass
class Field:
    number: int
    block: dict[str, Any]

    @property
    def block_id(self) -> str:
        return str(self.block["block_id"])

    @property
    def element(self) -> dict[str, Any]:
        return self.block["element"]

    @property
    def action_id(self) -> str:
        return str(self.element["action_id"])

    @property
    def label(self) -> str:
        return text_of(self.block.get("label"))

    @property
    def optional(self) -> bool:
        return bool(self.block.get("optional"))

    @property
    def secret(self) -> bool:
        return is_secret_field(self.block)


@dataclass
class Modal:
    """One view of the modal stack, with the values typed so far and the errors of the last submission."""

    view: dict[str, Any]
    view_id: str
    values: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    offered: set[tuple[str, str]] = field(default_factory=set)  # fields already prompted for

    def __post_init__(self) -> None:
        self.view = copy.deepcopy(self.view)
        for n, block in enumerate(self.view.get("blocks", [])):
            block.setdefault("block_id", f"console_block_{n}")
            if block.get("type") == "input":
                block["element"].setdefault("action_id", f"console_action_{n}")
        self.values = {
            f.block_id: {f.action_id: self.values.get(f.block_id, {}).get(f.action_id) or initial_value(f.element)}
            for f in self.fields
        }

    def replace_view(self, view: dict[str, Any]) -> Modal:
        """views.update: a new layout; values of fields with the same block and action id survive."""
        return Modal(view, self.view_id, values=self.values, offered=set(self.offered))

    @property
    def fields(self) -> list[Field]:
        inputs = [b for b in self.view.get("blocks", []) if b.get("type") == "input"]
        return [Field(n, block) for n, block in enumerate(inputs, start=1)]

    def not_offered(self) -> list[Field]:
        return [f for f in self.fields if (f.block_id, f.action_id) not in self.offered]

    def field(self, number: int, lang: str = ENGLISH) -> Field:
        fields = self.fields
        if not 1 <= number <= len(fields):
            raise FieldInputError(
                t(lang, "There is no field {number}; the fields are 1 to {count}.", number=number, count=len(fields))
            )
        return fields[number - 1]

    def set(self, f: Field, typed: str, lang: str = ENGLISH) -> None:
        self.values[f.block_id][f.action_id] = parse_typed(f.element, typed, lang)
        self.errors.pop(f.block_id, None)

    def shown_value(self, f: Field, lang: str = ENGLISH) -> str:
        value = describe_value(f.element, self.values[f.block_id][f.action_id])
        if f.secret and value:
            return t(lang, "•••••••• (entered, hidden)")
        return value.replace("\n", NEWLINE_ESCAPE)  # one line, written the way it is typed

    def state(self) -> dict[str, Any]:
        return {"values": copy.deepcopy(self.values)}

    def payload_view(self, *, team_id: str, app_id: str) -> dict[str, Any]:
        """The ``view`` object of a view_submission / block_actions payload."""
        view = copy.deepcopy(self.view)
        view.update(id=self.view_id, team_id=team_id, app_id=app_id, state=self.state())
        view.setdefault("private_metadata", "")
        view.setdefault("callback_id", "")
        view.setdefault("hash", f"{self.view_id}.hash")
        return view

    def render(self, number_for: NumberFor, lang: str = ENGLISH) -> str:
        """The modal as text: non-input blocks as messages render, input blocks as numbered fields."""
        title = text_of(self.view.get("title")) or t(lang, "Form")
        lines = [f"┌─ {title} " + "─" * max(3, 50 - len(title))]
        inputs = {id(f.block): f for f in self.fields}
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            if pending:
                lines.extend("│ " + line for line in render_blocks(pending, number_for).splitlines())
                pending.clear()

        for block in self.view.get("blocks", []):
            f = inputs.get(id(block))
            if f is None:
                pending.append(block)
                continue
            flush()
            marker = t(lang, " (optional)") if f.optional else " *"
            lines.append(f"│ {f.number}. {f.label}{marker}: {self.shown_value(f, lang)}")
            hint = text_of(block.get("hint"))
            if hint:
                lines.append(f"│      {hint}")
            if f.block_id in self.errors:
                lines.append(f"│      ! {self.errors[f.block_id]}")
        flush()
        submit = text_of(self.view.get("submit"))
        close = text_of(self.view.get("close")) or t(lang, "Cancel")
        actions = ([f"s = {submit}"] if submit else []) + [f"c = {close}", t(lang, "N = change field N")]
        lines.append("└─ " + " · ".join(actions))
        return "\n".join(lines)
