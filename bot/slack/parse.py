"""Slack payloads parsed at the edge into small frozen dataclasses; services never see ``state.values``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.rules import KeybotError
from bot.services.base import SubmissionId
from bot.services.keys import RegistrationForm
from bot.slack import ids


def _state(view: dict[str, Any]) -> dict[str, Any]:
    return (view.get("state") or {}).get("values") or {}


def _value(view: dict[str, Any], block_id: str) -> str | None:
    """Whatever the input in ``block_id`` holds, as a string (None when empty)."""
    block = _state(view).get(block_id) or {}
    for element in block.values():
        for name in (
            "value",
            "selected_date",
            "selected_channel",
            "selected_conversation",
            "selected_user",
        ):
            if element.get(name):
                return str(element[name])
        option = element.get("selected_option")
        if option:
            return str(option.get("value"))
    return None


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        loaded = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def parse_submission_id(body: dict[str, Any]) -> SubmissionId | None:
    """The submitted view's id and hash: Slack sends a new hash when the form changed (e.g. corrected after an
    error), the same one when the same submission is sent again."""
    view = body.get("view") or {}
    view_id, view_hash = view.get("id"), view.get("hash")
    if not (view_id and view_hash and isinstance(view_id, str) and isinstance(view_hash, str)):
        return None
    return SubmissionId(view_id[:64], view_hash[:64])  # the columns' width; Slack's are far shorter


@dataclass(frozen=True)
class ModalSubmission:
    user_id: str
    channel_id: str | None  # where the modal was opened from, for the confirmation


@dataclass(frozen=True)
class LinkingSubmission:
    user_id: str
    vendor_id: str
    channel_id: str | None
    integration: str | None
    integrator_name: str | None
    company_name: str | None
    company_url: str | None
    ip_addresses: str | None
    expires_on: str | None = None  # only in an admin's form: a corrected expiry date
    label: str | None = None  # these three too: the key's label, reminder channel and owner
    key_channel_id: str | None = None
    owner_id: str | None = None


@dataclass(frozen=True)
class ButtonClick:
    user_id: str
    action_id: str
    value: str
    trigger_id: str
    channel_id: str | None
    response_url: str | None
    in_home: bool


def parse_registration(body: dict[str, Any]) -> tuple[ModalSubmission, RegistrationForm]:
    view = body.get("view") or {}
    form = RegistrationForm(
        vendor_id=_value(view, "vendor_id") or "",
        label=_value(view, "label") or "",
        access_key=_value(view, "access_key") or "",
        secret_key=_value(view, "secret_key") or "",
        issued_on=_value(view, "issued_on"),
        expires_on=_value(view, "expires_on"),
        channel_id=_value(view, "channel_id"),
        owner_id=_value(view, "owner_id"),
        integration=_value(view, "integration"),
        integrator_name=_value(view, "integrator_name"),
        company_name=_value(view, "company_name"),
        company_url=_value(view, "company_url"),
        ip_addresses=_value(view, "ip_addresses"),
    )
    meta = _metadata(view)
    return ModalSubmission((body.get("user") or {}).get("id", ""), meta.get("channel")), form


def parse_linking(body: dict[str, Any]) -> LinkingSubmission:
    view = body.get("view") or {}
    meta = _metadata(view)
    return LinkingSubmission(
        user_id=(body.get("user") or {}).get("id", ""),
        vendor_id=str(meta.get("vendor_id") or ""),
        channel_id=meta.get("channel"),
        integration=_value(view, "integration"),
        integrator_name=_value(view, "integrator_name"),
        company_name=_value(view, "company_name"),
        company_url=_value(view, "company_url"),
        ip_addresses=_value(view, "ip_addresses"),
        expires_on=_value(view, "expires_on"),
        label=_value(view, "label"),
        key_channel_id=_value(view, "channel_id"),
        owner_id=_value(view, "owner_id"),
    )


def parse_click(body: dict[str, Any]) -> ButtonClick:
    action = (body.get("actions") or [{}])[0]
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    view = body.get("view") or {}
    return ButtonClick(
        user_id=(body.get("user") or {}).get("id", ""),
        action_id=action.get("action_id", ""),
        value=action.get("value") or "",
        trigger_id=body.get("trigger_id", ""),
        channel_id=channel,
        response_url=body.get("response_url"),
        in_home=view.get("type") == "home",
    )


@dataclass(frozen=True)
class PageRequest:
    offset: int
    expiring: int | None  # ``status expiring DAYS``: only keys with at most this many days left


MAX_EXPIRING_DAYS = 3650


MAX_PAGE_OFFSET = 1_000_000  # far beyond any key count, yet a number every database takes as an OFFSET


def parse_page(value: str) -> PageRequest:
    """The next-page button's value. A damaged one is refused with a sentence rather than reaching the database."""
    try:
        data = json.loads(value)
        offset, expiring = data.get("offset", 0), data.get("expiring")
    except (ValueError, AttributeError):
        offset = expiring = ""
    if (
        type(offset) is not int
        or not 0 <= offset <= MAX_PAGE_OFFSET
        or not (expiring is None or (type(expiring) is int and 0 <= expiring <= MAX_EXPIRING_DAYS))
    ):
        raise KeybotError(
            "This page button is damaged or out of date: run `{command} status` again.", command=ids.COMMAND
        )
    return PageRequest(offset, expiring)
