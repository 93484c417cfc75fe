"""Key rollout in Slack: the progress message in the approval thread, ``/coupang-key consumers``, its modals and
the **Push again** button. The rollout itself is :class:`bot.services.rollout.RolloutService`.

A consumer's signing secret is shown once, in the modal of the person who added it (a ``response_action``
update, never a message); no other view shows a secret or a target's query string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot import rules
from bot.bootstrap import Services
from bot.destinations import KINDS
from bot.i18n import N_, t
from bot.rules import KeybotError
from bot.services.rollout import AddedConsumer, ConsumerState, Progress
from bot.slack import ids
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.parse import parse_click
from bot.slack.views import escape

logger = logging.getLogger(__name__)

NAME, KIND, TARGET, VAULT_MOUNT = "name", "kind", "target", "vault_mount"
_VALUE = "value"
MAX_TROUBLE_LINES = 10
MAX_LISTED = 40  # one section per consumer, within Slack's 50 blocks
KIND_LABELS = {
    "webhook": "Webhook (https URL)",
    "aws-secretsmanager": "AWS Secrets Manager (secret name or ARN)",
    "aws-ssm": "AWS SSM Parameter Store (parameter name)",
    "vault": "Vault / OpenBao KV v2 (path)",
}
STATE_ICONS = {"pending": ":hourglass_flowing_sand:", "delivered": ":white_check_mark:", "confirmed": ":lock:"}


def _hhmm(at: datetime | None, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%H:%M") if at else "—"


def trouble_text(state: ConsumerState, tz: ZoneInfo, lang: str = "en") -> str:
    params = {"name": escape(state.name), "reason": escape(state.last_error or t(lang, "failed"))}
    if state.state == "pending":
        return t(lang, ":x: {name}: {reason}, next try {time}", time=_hhmm(state.next_attempt_at, tz), **params)
    return t(lang, ":x: {name}: {reason} (failed: fix it, then Push again)", **params)


def progress_text(progress: Progress, tz: ZoneInfo, lang: str = "en") -> str:
    """ "Rollout of generation 2: 3/4 delivered · 1 confirmed · ❌ erp: HTTP 500, next try 10:05"."""
    parts = [
        t(
            lang,
            "Rollout of generation {generation}: {delivered}/{total} delivered · {confirmed} confirmed",
            generation=progress.generation,
            delivered=progress.delivered,
            total=len(progress.consumers),
            confirmed=progress.confirmed,
        )
    ]
    troubled = progress.troubled
    parts += [trouble_text(s, tz, lang) for s in troubled[:MAX_TROUBLE_LINES]]
    if len(troubled) > MAX_TROUBLE_LINES:
        parts.append(t(lang, "and {count} more", count=len(troubled) - MAX_TROUBLE_LINES))
    return " · ".join(parts)


def push_button(vendor_id: str, name: str | None = None, lang: str = "en") -> ButtonElement:
    return ButtonElement(
        text=t(lang, "Push again"), action_id=ids.PUSH_CONSUMERS, value=f"{vendor_id} {name}" if name else vendor_id
    )


def build_progress_blocks(progress: Progress, tz: ZoneInfo, lang: str = "en") -> list[Block]:
    text = progress_text(progress, tz, lang)
    blocks: list[Block] = [SectionBlock(block_id="rollout", text=MarkdownTextObject(text=text))]
    if progress.troubled:
        blocks.append(ActionsBlock(block_id="rollout-actions", elements=[push_button(progress.vendor_id, lang=lang)]))
    return blocks


class SlackProgressNotifier:
    """:class:`bot.services.rollout.ProgressNotifier` over the Web API, in the team's language."""

    def __init__(self, client: WebClient, tz: ZoneInfo, lang: str = "en"):
        self.client, self.tz, self.lang = client, tz, lang

    def post(self, channel: str, thread_ts: str | None, progress: Progress) -> str:
        answer = self.client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=progress_text(progress, self.tz, self.lang),
            blocks=build_progress_blocks(progress, self.tz, self.lang),
        )
        return str(answer["ts"])

    def update(self, channel: str, ts: str, progress: Progress) -> None:
        self.client.chat_update(
            channel=channel,
            ts=ts,
            text=progress_text(progress, self.tz, self.lang),
            blocks=build_progress_blocks(progress, self.tz, self.lang),
        )


# ---------------------------------------------------------------- /coupang-key consumers


def consumer_line(state: ConsumerState, tz: ZoneInfo) -> str:
    head = f"*{escape(state.name)}* · {state.kind} `{escape(state.target)}`"
    if state.state is None:
        return f"{head}\nnothing delivered yet"
    if state.state == "failed" or state.last_error:
        return f"{head}\n{trouble_text(state, tz)}"
    when = state.confirmed_at or state.delivered_at
    at = f" {rules.format_local(when, tz)}" if when else ""
    return f"{head}\n{STATE_ICONS.get(state.state, '')} {state.state} · generation {state.generation}{at}"


def build_consumers_blocks(vendor_id: str, states: Sequence[ConsumerState], tz: ZoneInfo) -> list[Block]:
    holding = sum(s.holds_key for s in states)
    blocks: list[Block] = [
        SectionBlock(
            block_id="consumers-head",
            text=MarkdownTextObject(
                text=f"*Consumers of {vendor_id}*: {holding}/{len(states)} hold the current key"
                if states
                else f"*{vendor_id}* has no consumers yet: add the systems that use this key."
            ),
        )
    ]
    for state in states[:MAX_LISTED]:
        troubled = state.state == "failed" or bool(state.last_error)
        blocks.append(
            SectionBlock(
                block_id=f"consumer-{state.name}",
                text=MarkdownTextObject(text=consumer_line(state, tz)),
                accessory=push_button(vendor_id, state.name) if troubled else None,
            )
        )
    if len(states) > MAX_LISTED:
        more = f"…and {len(states) - MAX_LISTED} more: `coupang-keybot consumers list {vendor_id}`"
        blocks.append(ContextBlock(block_id="consumers-more", elements=[MarkdownTextObject(text=more)]))
    manage = [ButtonElement(text="Add consumer", action_id=ids.ADD_CONSUMER, value=vendor_id)]
    if states:
        manage.append(ButtonElement(text="Remove consumer", action_id=ids.REMOVE_CONSUMER, value=vendor_id))
    blocks.append(ActionsBlock(block_id="consumers-manage", elements=manage))
    return blocks


def build_add_modal(vendor_id: str) -> View:
    return View(
        type="modal",
        callback_id=ids.CONSUMER_ADD_MODAL,
        private_metadata=vendor_id,
        title=PlainTextObject(text="Add consumer"),
        submit=PlainTextObject(text="Add and deliver"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"A system that uses `{vendor_id}`'s key. It gets the current key now and every new key "
                    "the moment it is entered."
                )
            ),
            InputBlock(
                block_id=NAME,
                label=PlainTextObject(text="Name"),
                element=PlainTextInputElement(action_id=_VALUE, max_length=40, placeholder=PlainTextObject(text="erp")),
            ),
            InputBlock(
                block_id=KIND,
                label=PlainTextObject(text="Kind"),
                element=StaticSelectElement(
                    action_id=_VALUE,
                    options=[Option(value=k, text=PlainTextObject(text=KIND_LABELS[k])) for k in KINDS],
                ),
            ),
            InputBlock(
                block_id=TARGET,
                label=PlainTextObject(text="URL, secret, parameter or path"),
                element=PlainTextInputElement(action_id=_VALUE, max_length=2000),
            ),
            InputBlock(
                block_id=VAULT_MOUNT,
                optional=True,
                label=PlainTextObject(text="Vault KV mount (Vault only)"),
                element=PlainTextInputElement(
                    action_id=_VALUE, max_length=100, placeholder=PlainTextObject(text="secret")
                ),
            ),
        ],
    )


def build_secret_view(added: AddedConsumer) -> View:
    """Shown once, only to the person who added the consumer: the signing secret."""
    return View(
        type="modal",
        title=PlainTextObject(text="Consumer added"),
        close=PlainTextObject(text="Done"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*{escape(added.name)}* ({added.kind} `{escape(added.target)}`) receives "
                    f"`{added.vendor_id}`'s key now."
                )
            ),
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Signing secret, shown only this once: `{added.signing_secret}`\nThe consumer verifies "
                    "webhooks and signs `/rollout/confirm` with it: store it with the consumer now."
                )
            ),
        ],
    )


def build_remove_modal(vendor_id: str, names: Sequence[str]) -> View:
    return View(
        type="modal",
        callback_id=ids.CONSUMER_REMOVE_MODAL,
        private_metadata=vendor_id,
        title=PlainTextObject(text="Remove consumer"),
        submit=PlainTextObject(text="Remove"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            InputBlock(
                block_id=NAME,
                label=PlainTextObject(text=f"Consumer of {vendor_id}"),
                element=StaticSelectElement(
                    action_id=_VALUE, options=[Option(value=n, text=PlainTextObject(text=n)) for n in names[:100]]
                ),
            )
        ],
    )


def _selected(values: dict[str, Any], block_id: str) -> str:
    element = (values.get(block_id) or {}).get(_VALUE) or {}
    return str(element.get("value") or (element.get("selected_option") or {}).get("value") or "")


# ---------------------------------------------------------------- listeners


def register(app: App, services: Services, router: CommandRouter) -> None:
    rollout = services.rollout
    tz = services.ctx.settings.timezone
    rollout.notifier = SlackProgressNotifier(app.client, tz, services.languages.team)

    def list_reply(vendor_id: str) -> dict[str, Any]:
        states = rollout.consumers(vendor_id)
        holding = sum(s.holds_key for s in states)
        return {
            "text": f"Consumers of {vendor_id.upper()}: {holding}/{len(states)}",
            "blocks": build_consumers_blocks(vendor_id.upper(), states, tz),
            "response_type": "ephemeral",
        }

    def open_add(user_id: str, vendor_id: str, trigger_id: str, client: WebClient) -> None:
        vendor = rollout.check_can_manage(user_id, vendor_id)
        client.views_open(trigger_id=trigger_id, view=build_add_modal(vendor))

    def open_remove(user_id: str, vendor_id: str, trigger_id: str, client: WebClient) -> None:
        vendor = rollout.check_can_manage(user_id, vendor_id)
        names = [s.name for s in rollout.consumers(vendor)]
        if not names:
            raise KeybotError(f"{vendor} has no consumers to remove.")
        client.views_open(trigger_id=trigger_id, view=build_remove_modal(vendor, names))

    def handle_consumers_command(req: CommandRequest, ack: Ack, client: WebClient, respond: Respond) -> None:
        if not req.args:
            raise KeybotError(f"Usage: `{ids.COMMAND} consumers VENDOR_ID [add|remove]`")
        vendor_id, verb = req.args[0], (req.args[1].lower() if len(req.args) > 1 else "")
        if verb == "add":
            open_add(req.user_id, vendor_id, req.trigger_id, client)
            ack()
        elif verb == "remove":
            open_remove(req.user_id, vendor_id, req.trigger_id, client)
            ack()
        else:
            ack(**list_reply(vendor_id))

    router.add(
        "consumers",
        N_("consumers VENDOR_ID [add|remove]"),
        N_("the systems that receive a key when it is reissued"),
        handle_consumers_command,
    )

    def refuse(respond: Respond, error: KeybotError) -> None:
        respond(text=f":warning: {error}", response_type="ephemeral", replace_original=False)

    def modal_button(opener: Callable[[str, str, str, WebClient], None]) -> Callable[..., None]:
        def handle_click(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
            ack()
            click = parse_click(body)
            try:
                opener(click.user_id, click.value, click.trigger_id, client)
            except KeybotError as error:
                refuse(respond, error)

        return handle_click

    app.action(ids.ADD_CONSUMER)(modal_button(open_add))
    app.action(ids.REMOVE_CONSUMER)(modal_button(open_remove))

    @app.action(ids.PUSH_CONSUMERS)
    def handle_push_click(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        click = parse_click(body)
        vendor_id, _, name = click.value.partition(" ")
        try:
            names = [name] if name else [s.name for s in rollout.consumers(vendor_id) if not s.holds_key]
            if not names:
                respond(text=f"Every consumer of {vendor_id} holds the current key.", response_type="ephemeral")
                return
            pushed = rollout.push(click.user_id, vendor_id, names)
        except KeybotError as error:
            refuse(respond, error)
            return
        rollout.kick()
        respond(
            text=f"Pushing {vendor_id}'s key again to {', '.join(pushed) or 'nobody'}: progress shows here.",
            response_type="ephemeral",
            replace_original=False,
        )

    @app.view(ids.CONSUMER_ADD_MODAL)
    def handle_add_submission(ack: Ack, body: dict[str, Any]) -> None:
        view = body["view"]
        values = view["state"]["values"]
        try:
            added = rollout.add(
                body["user"]["id"],
                view.get("private_metadata", ""),
                _selected(values, NAME),
                _selected(values, KIND),
                _selected(values, TARGET),
                vault_mount=_selected(values, VAULT_MOUNT) or None,
            )
        except KeybotError as error:
            errors = getattr(error, "errors", None) or {NAME: str(error)}
            ack(
                response_action="errors",
                errors={k if k in (NAME, KIND, TARGET) else NAME: v for k, v in errors.items()},
            )
            return
        ack(response_action="update", view=build_secret_view(added))
        rollout.kick()

    @app.view(ids.CONSUMER_REMOVE_MODAL)
    def handle_remove_submission(ack: Ack, body: dict[str, Any]) -> None:
        view = body["view"]
        try:
            rollout.remove(
                body["user"]["id"], view.get("private_metadata", ""), _selected(view["state"]["values"], NAME)
            )
        except KeybotError as error:
            ack(response_action="errors", errors={NAME: str(error)})
            return
        ack()


ROLLOUT_POLL_SECONDS = 15


def add_rollout_job(scheduler: BaseScheduler, services: Services) -> None:
    """Wakes the rollout worker regularly, so retries and other processes' queued deliveries go out."""
    scheduler.add_job(
        services.rollout.kick,
        "interval",
        seconds=ROLLOUT_POLL_SECONDS,
        id="rollout",
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )
