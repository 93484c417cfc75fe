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
from slack_bolt import Ack, App, BoltContext, Respond
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

from bot import i18n
from bot.bootstrap import Services
from bot.destinations import KINDS
from bot.i18n import N_, t
from bot.rules import KeybotError
from bot.services.rollout import AddedConsumer, ConsumerState, Progress
from bot.slack import ids, views
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.failures import after_ack, later
from bot.slack.parse import parse_click
from bot.slack.views import escape

logger = logging.getLogger(__name__)

NAME, KIND, TARGET, VAULT_MOUNT = "name", "kind", "target", "vault_mount"
_VALUE = "value"
MAX_TROUBLE_LINES = 10
MAX_LISTED = 40  # one section per consumer, within Slack's 50 blocks
KIND_LABELS = {
    "webhook": N_("Webhook (https URL)"),
    "aws-secretsmanager": N_("AWS Secrets Manager (secret name or ARN)"),
    "aws-ssm": N_("AWS SSM Parameter Store (parameter name)"),
    "vault": N_("Vault / OpenBao KV v2 (path)"),
}
KIND_NAMES = {"webhook": N_("webhook"), "aws-secretsmanager": N_("AWS Secrets Manager"), "aws-ssm": N_("AWS SSM")}


def kind_name(lang: str, kind: str) -> str:
    """A destination kind in a line: the code in English (as typed on the CLI), a Korean word in Korean."""
    return kind if lang == i18n.ENGLISH or kind not in KIND_NAMES else t(lang, KIND_NAMES[kind])


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


def consumer_line(state: ConsumerState, tz: ZoneInfo, lang: str = "en") -> str:
    head = f"*{escape(state.name)}* · {kind_name(lang, state.kind)} `{escape(state.target)}`"
    if state.state is None:
        return f"{head}\n{t(lang, 'nothing delivered yet')}"
    if state.state == "failed" or state.last_error:
        return f"{head}\n{trouble_text(state, tz, lang)}"
    when = state.confirmed_at or state.delivered_at
    line = t(
        lang,
        "{icon} {state} · generation {generation}",
        icon=STATE_ICONS.get(state.state, ""),
        state=t(lang, DELIVERY_STATE.get(state.state, state.state)),
        generation=state.generation,
    )
    return f"{head}\n{line} {i18n.moment(lang, when, tz)}" if when else f"{head}\n{line}"


DELIVERY_STATE = {"pending": N_("pending"), "delivered": N_("delivered"), "confirmed": N_("confirmed")}


def build_consumers_blocks(
    vendor_id: str, states: Sequence[ConsumerState], tz: ZoneInfo, lang: str = "en"
) -> list[Block]:
    holding = sum(s.holds_key for s in states)
    head = (
        t(
            lang,
            "*Consumers of {vendor_id}*: {holding}/{total} hold the current key",
            vendor_id=vendor_id,
            holding=holding,
            total=len(states),
        )
        if states
        else t(lang, "*{vendor_id}* has no consumers yet: add the systems that use this key.", vendor_id=vendor_id)
    )
    blocks: list[Block] = [SectionBlock(block_id="consumers-head", text=MarkdownTextObject(text=head))]
    for state in states[:MAX_LISTED]:
        troubled = state.state == "failed" or bool(state.last_error)
        blocks.append(
            SectionBlock(
                block_id=f"consumer-{state.name}",
                text=MarkdownTextObject(text=consumer_line(state, tz, lang)),
                accessory=push_button(vendor_id, state.name, lang) if troubled else None,
            )
        )
    if len(states) > MAX_LISTED:
        more = t(
            lang,
            "…and {count} more: `coupang-keybot consumers list {vendor_id}`",
            count=len(states) - MAX_LISTED,
            vendor_id=vendor_id,
        )
        blocks.append(ContextBlock(block_id="consumers-more", elements=[MarkdownTextObject(text=more)]))
    manage = [ButtonElement(text=t(lang, "Add consumer"), action_id=ids.ADD_CONSUMER, value=vendor_id)]
    if states:
        manage.append(ButtonElement(text=t(lang, "Remove consumer"), action_id=ids.REMOVE_CONSUMER, value=vendor_id))
    blocks.append(ActionsBlock(block_id="consumers-manage", elements=manage))
    return blocks


def build_add_modal(vendor_id: str, lang: str = "en") -> View:
    intro = t(
        lang,
        "A system that uses `{vendor_id}`'s key. It gets the current key now and every new key the moment it is "
        "entered.",
        vendor_id=vendor_id,
    )
    return View(
        type="modal",
        callback_id=ids.CONSUMER_ADD_MODAL,
        private_metadata=vendor_id,
        title=PlainTextObject(text=t(lang, "Add consumer")),
        submit=PlainTextObject(text=t(lang, "Add and deliver")),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=intro)),
            InputBlock(
                block_id=NAME,
                label=PlainTextObject(text=t(lang, "Name")),
                element=PlainTextInputElement(action_id=_VALUE, max_length=40, placeholder=PlainTextObject(text="erp")),
            ),
            InputBlock(
                block_id=KIND,
                label=PlainTextObject(text=t(lang, "Kind")),
                element=StaticSelectElement(
                    action_id=_VALUE,
                    options=[Option(value=k, text=PlainTextObject(text=t(lang, KIND_LABELS[k]))) for k in KINDS],
                ),
            ),
            InputBlock(
                block_id=TARGET,
                label=PlainTextObject(text=t(lang, "URL, secret, parameter or path")),
                element=PlainTextInputElement(action_id=_VALUE, max_length=2000),
            ),
            InputBlock(
                block_id=VAULT_MOUNT,
                optional=True,
                label=PlainTextObject(text=t(lang, "Vault KV mount (Vault only)")),
                element=PlainTextInputElement(
                    action_id=_VALUE, max_length=100, placeholder=PlainTextObject(text="secret")
                ),
            ),
        ],
    )


def build_secret_view(added: AddedConsumer, lang: str = "en") -> View:
    """Shown once, only to the person who added the consumer: the signing secret."""
    receives = t(
        lang,
        "*{name}* ({kind} `{target}`) receives `{vendor_id}`'s key now.",
        name=escape(added.name),
        kind=kind_name(lang, added.kind),
        target=escape(added.target),
        vendor_id=added.vendor_id,
    )
    secret = t(
        lang,
        "Signing secret, shown only this once: `{secret}`\nThe consumer verifies webhooks and signs "
        "`/rollout/confirm` with it: store it with the consumer now.",
        secret=added.signing_secret,
    )
    return View(
        type="modal",
        title=PlainTextObject(text=t(lang, "Consumer added")),
        close=PlainTextObject(text=t(lang, "Done")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=receives)),
            SectionBlock(text=MarkdownTextObject(text=secret)),
        ],
    )


def build_remove_modal(vendor_id: str, names: Sequence[str], lang: str = "en") -> View:
    return View(
        type="modal",
        callback_id=ids.CONSUMER_REMOVE_MODAL,
        private_metadata=vendor_id,
        title=PlainTextObject(text=t(lang, "Remove consumer")),
        submit=PlainTextObject(text=t(lang, "Remove")),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[
            InputBlock(
                block_id=NAME,
                label=PlainTextObject(text=t(lang, "Consumer of {vendor_id}", vendor_id=vendor_id)),
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

    def list_reply(lang: str, vendor_id: str) -> dict[str, Any]:
        states = rollout.consumers(vendor_id)
        holding = sum(s.holds_key for s in states)
        return {
            "text": t(
                lang,
                "Consumers of {vendor_id}: {holding}/{total}",
                vendor_id=vendor_id.upper(),
                holding=holding,
                total=len(states),
            ),
            "blocks": build_consumers_blocks(vendor_id.upper(), states, tz, lang),
            "response_type": "ephemeral",
        }

    def add_modal(user_id: str, vendor_id: str) -> View:
        vendor = rollout.check_can_manage(user_id, vendor_id)
        return build_add_modal(vendor, services.languages.of(user_id))

    def remove_modal(user_id: str, vendor_id: str) -> View:
        vendor = rollout.check_can_manage(user_id, vendor_id)
        names = [s.name for s in rollout.consumers(vendor)]
        if not names:
            raise KeybotError(N_("{vendor_id} has no consumers to remove."), vendor_id=vendor)
        return build_remove_modal(vendor, names, services.languages.of(user_id))

    def handle_consumers_command(
        req: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        if not req.args:
            raise KeybotError(N_("Usage: `{command} consumers VENDOR_ID [add|remove]`"), command=ids.COMMAND)
        vendor_id, verb = req.args[0], (req.args[1].lower() if len(req.args) > 1 else "")
        if verb in ("add", "remove"):
            view = (add_modal if verb == "add" else remove_modal)(req.user_id, vendor_id)
            ack()
            later(context, client.views_open, trigger_id=req.trigger_id, view=view)
        else:
            ack(**list_reply(req.lang, vendor_id))

    router.add(
        "consumers",
        N_("consumers VENDOR_ID [add|remove]"),
        N_("the systems that receive a key when it is reissued"),
        handle_consumers_command,
    )

    def refuse(context: BoltContext, user_id: str, respond: Respond, error: KeybotError) -> None:
        text = views.refusal_text(services.languages.of(user_id), error)
        later(context, respond, text=text, response_type="ephemeral", replace_original=False)

    def modal_button(modal: Callable[[str, str], View]) -> Callable[..., None]:
        def handle_click(
            ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
        ) -> None:
            ack()
            click = parse_click(body)
            try:
                view = modal(click.user_id, click.value)
            except KeybotError as error:
                refuse(context, click.user_id, respond, error)
                return
            later(context, client.views_open, trigger_id=click.trigger_id, view=view)

        return handle_click

    then = after_ack(services.languages)
    app.action(ids.ADD_CONSUMER)(ack=modal_button(add_modal), lazy=then)
    app.action(ids.REMOVE_CONSUMER)(ack=modal_button(remove_modal), lazy=then)

    def handle_push_click(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        ack()
        click = parse_click(body)
        lang = services.languages.of(click.user_id)
        vendor_id, _, name = click.value.partition(" ")
        try:
            names = [name] if name else [s.name for s in rollout.consumers(vendor_id) if not s.holds_key]
            if not names:
                text = t(lang, "Every consumer of {vendor_id} holds the current key.", vendor_id=vendor_id)
                later(context, respond, text=text, response_type="ephemeral")
                return
            pushed = rollout.push(click.user_id, vendor_id, names)
        except KeybotError as error:
            refuse(context, click.user_id, respond, error)
            return
        rollout.kick()
        later(
            context,
            respond,
            text=t(
                lang,
                "Pushing {vendor_id}'s key again to {names}: progress shows here.",
                vendor_id=vendor_id,
                names=", ".join(pushed) or t(lang, "nobody"),
            ),
            response_type="ephemeral",
            replace_original=False,
        )

    app.action(ids.PUSH_CONSUMERS)(ack=handle_push_click, lazy=then)

    @app.view(ids.CONSUMER_ADD_MODAL)
    def handle_add_submission(ack: Ack, body: dict[str, Any]) -> None:
        view = body["view"]
        values = view["state"]["values"]
        lang = services.languages.of(body["user"]["id"])
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
            ack(response_action="errors", errors=views.form_errors(lang, error, (NAME, KIND, TARGET), NAME))
            return
        ack(response_action="update", view=build_secret_view(added, lang))
        rollout.kick()

    @app.view(ids.CONSUMER_REMOVE_MODAL)
    def handle_remove_submission(ack: Ack, body: dict[str, Any]) -> None:
        view = body["view"]
        try:
            rollout.remove(
                body["user"]["id"], view.get("private_metadata", ""), _selected(view["state"]["values"], NAME)
            )
        except KeybotError as error:
            lang = services.languages.of(body["user"]["id"])
            ack(response_action="errors", errors=views.form_errors(lang, error, (NAME,), NAME))
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
