"""Key rollout in Slack: the progress message in the approval thread, ``/coupang-key consumers``, its modals and
the **Push again** button. The rollout itself is :class:`bot.services.rollout.RolloutService`.

A consumer added or retargeted here is a *proposal* (ROLLOUT.md "Who may send a key where"): posted in the key's
channel with Approve / Deny (Approve first shows that approver the target, in a modal: the channel sees names and
kinds only), decided by an approver other than the proposer; nothing is delivered before. With
``KEYBOT_REISSUE_APPROVAL=none`` only admins add, directly, and each add is announced in the channel; removals are
announced too. A new consumer's signing secret is shown once, in the proposer's own modal (a ``response_action``
update, never a message); no view shows a secret or a target's query string, and targets and last errors only to
admins, the key's owner and approvers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
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
from bot.destinations import HINTS, KINDS
from bot.i18n import N_, t
from bot.rules import InvalidInput, KeybotError
from bot.services.base import AlreadyApplied
from bot.services.rollout import (
    ADD,
    APPROVED,
    DENIED,
    EXPIRED,
    PROPOSED,
    VOID,
    AddedConsumer,
    ConsumerChange,
    ConsumerState,
    Progress,
    ProposalInfo,
    Proposed,
)
from bot.slack import ids, views
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.failures import after_ack, later
from bot.slack.parse import parse_click, parse_submission_id
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


def error_text(lang: str, error: str | None) -> str:
    """A stored delivery error (English, as the command line shows it) with its hints in the reader's language."""
    if not error:
        return t(lang, "failed")
    for hint in HINTS:
        error = error.replace(hint, t(lang, hint))
    return error


def trouble_text(state: ConsumerState, tz: ZoneInfo, lang: str = "en") -> str:
    params = {"name": escape(state.name), "reason": escape(error_text(lang, state.last_error))}
    if state.state == "confirmed":  # a re-push failed; the consumer's proof of this generation stands
        return t(lang, ":warning: {name}: confirmed; the last push failed: {reason}", **params)
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

    def update(self, channel: str, ts: str, progress: Progress, *, thread_ts: str | None = None) -> str | None:
        """Update the progress message in place; when Slack no longer has it (someone deleted it), post it again
        in the thread and return the new ts."""
        try:
            self.client.chat_update(
                channel=channel,
                ts=ts,
                text=progress_text(progress, self.tz, self.lang),
                blocks=build_progress_blocks(progress, self.tz, self.lang),
            )
        except SlackApiError as exc:
            if exc.response.get("error") != "message_not_found":
                raise
            logger.info("The rollout message of %s (ts %s) is gone: posted again", progress.vendor_id, ts)
            return self.post(channel, thread_ts, progress)
        return None


# ---------------------------------------------------------------- /coupang-key consumers


def consumer_line(state: ConsumerState, tz: ZoneInfo, lang: str = "en", *, detailed: bool = True) -> str:
    """``detailed``: the target and the last error too (admins, the key's owner and approvers only)."""
    kind = kind_name(lang, state.kind)
    head = f"*{escape(state.name)}* · {kind} `{escape(state.target)}`" if detailed else f"*{escape(state.name)}*"
    if state.state is None:
        return f"{head}\n{t(lang, 'nothing delivered yet')}"
    if (state.state == "failed" or state.last_error) and detailed:
        return f"{head}\n{trouble_text(state, tz, lang)}"
    if state.state == "failed":
        return f"{head}\n:x: {t(lang, 'failed')}"
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
    vendor_id: str, states: Sequence[ConsumerState], tz: ZoneInfo, lang: str = "en", *, detailed: bool = True
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
                text=MarkdownTextObject(text=consumer_line(state, tz, lang, detailed=detailed)),
                accessory=push_button(vendor_id, state.name, lang) if troubled and detailed else None,
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
        manage.append(ButtonElement(text=t(lang, "Change target"), action_id=ids.RETARGET_CONSUMER, value=vendor_id))
        manage.append(ButtonElement(text=t(lang, "Remove consumer"), action_id=ids.REMOVE_CONSUMER, value=vendor_id))
    blocks.append(ActionsBlock(block_id="consumers-manage", elements=manage))
    return blocks


def build_add_modal(
    vendor_id: str, lang: str = "en", *, approval: bool = True, retarget: Sequence[str] | None = None
) -> View:
    """Add a consumer, or (``retarget``: the consumers' names) point one elsewhere. With ``approval`` the
    submission is a proposal another approver decides."""
    if retarget is not None:
        intro = t(
            lang,
            "Point a consumer of `{vendor_id}` somewhere else. It gets the current key there at once, and every new "
            "key from then on.",
            vendor_id=vendor_id,
        )
    else:
        intro = t(
            lang,
            "A system that uses `{vendor_id}`'s key. It gets the current key now and every new key the moment it is "
            "entered.",
            vendor_id=vendor_id,
        )
    if approval:
        note = t(
            lang,
            "An approver other than you approves it in the key's channel first: nothing is delivered before, and "
            "the proposal expires after 24 hours.",
        )
    else:
        note = t(lang, "No approval step (KEYBOT_REISSUE_APPROVAL=none): this is announced in the key's channel.")
    name_input = (
        InputBlock(
            block_id=NAME,
            label=PlainTextObject(text=t(lang, "Consumer of {vendor_id}", vendor_id=vendor_id)),
            element=StaticSelectElement(
                action_id=_VALUE, options=[Option(value=n, text=PlainTextObject(text=n)) for n in retarget[:100]]
            ),
        )
        if retarget is not None
        else InputBlock(
            block_id=NAME,
            label=PlainTextObject(text=t(lang, "Name")),
            element=PlainTextInputElement(action_id=_VALUE, max_length=40, placeholder=PlainTextObject(text="erp")),
        )
    )
    if approval:
        submit = t(lang, "Propose")
    else:
        submit = t(lang, "Change target") if retarget is not None else t(lang, "Add and deliver")
    return View(
        type="modal",
        callback_id=ids.CONSUMER_RETARGET_MODAL if retarget is not None else ids.CONSUMER_ADD_MODAL,
        private_metadata=vendor_id,
        title=PlainTextObject(text=t(lang, "Change target") if retarget is not None else t(lang, "Add consumer")),
        submit=PlainTextObject(text=submit),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=intro)),
            name_input,
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
            ContextBlock(elements=[MarkdownTextObject(text=note)]),
        ],
    )


def _secret_text(secret: str, lang: str) -> str:
    return t(
        lang,
        "Signing secret, shown only this once: `{secret}`\nThe consumer verifies webhooks and signs "
        "`/rollout/confirm` with it: store it with the consumer now.",
        secret=secret,
    )


def build_proposed_view(proposed: Proposed, lang: str = "en") -> View:
    """The proposer's own modal after proposing: what happens next and, for a new consumer, its signing secret
    (shown here once; it is useless without the approval, and never posted in a channel)."""
    info = proposed.proposal
    where = f"<#{info.channel_id}>" if info.channel_id else t(lang, "the key's channel")
    text = t(
        lang,
        "*{name}* ({kind} `{target}`) is proposed for `{vendor_id}`. An approver other than you decides in "
        "{channel}; nothing is delivered before, and the proposal expires after 24 hours.",
        name=escape(info.name),
        kind=info.kind,
        target=escape(info.target),
        vendor_id=info.vendor_id,
        channel=where,
    )
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    if proposed.signing_secret:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_secret_text(proposed.signing_secret, lang))))
    return View(
        type="modal",
        title=PlainTextObject(text=t(lang, "Consumer proposed")),
        close=PlainTextObject(text=t(lang, "Done")),
        blocks=blocks,
    )


def proposal_text(lang: str, info: ProposalInfo) -> str:
    """The proposal as the channel reads it: what and for which key, not where (only approvers see the target)."""
    params = {"proposer": f"<@{info.proposed_by}>", "name": escape(info.name), "kind": info.kind}
    if info.action == ADD:
        return t(
            lang,
            ":inbox_tray: {proposer} proposes that a new consumer *{name}* ({kind}) receive `{vendor_id}`'s key: "
            "the current one at once, and every new one. Approvers see where it goes when they click Approve.",
            vendor_id=info.vendor_id,
            **params,
        )
    return t(
        lang,
        ":inbox_tray: {proposer} proposes that consumer *{name}* of `{vendor_id}` receive the key at a new {kind} "
        "target from now on, starting with the current one. Approvers see where it goes when they click Approve.",
        vendor_id=info.vendor_id,
        **params,
    )


def build_approve_modal(lang: str, info: ProposalInfo) -> View:
    """Shown to an approver (other than the proposer) who clicked Approve: the exact target, then the decision."""
    text = t(
        lang,
        "{proposer} proposes that *{name}* of `{vendor_id}` receive the key at:\n{kind} `{target}`\nApprove only "
        "if you know this system: it gets the current key at once, and every new one.",
        proposer=f"<@{info.proposed_by}>",
        name=escape(info.name),
        vendor_id=info.vendor_id,
        kind=info.kind,
        target=escape(info.target),
    )
    return View(
        type="modal",
        callback_id=ids.CONSUMER_APPROVE_MODAL,
        private_metadata=str(info.id),
        title=PlainTextObject(text=t(lang, "Approve consumer")),
        submit=PlainTextObject(text=t(lang, "Approve")),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[SectionBlock(block_id="proposal", text=MarkdownTextObject(text=text))],
    )


def build_notice_view(lang: str, text: str) -> View:
    return View(
        type="modal",
        title=PlainTextObject(text=t(lang, "Approve consumer")),
        close=PlainTextObject(text=t(lang, "Done")),
        blocks=[SectionBlock(text=MarkdownTextObject(text=text))],
    )


def build_proposal_blocks(lang: str, info: ProposalInfo, approvers: Sequence[str], tz: ZoneInfo) -> list[Block]:
    """The proposal in the key's channel, in every state: buttons only while it is pending."""
    blocks: list[Block] = [SectionBlock(block_id="proposal", text=MarkdownTextObject(text=proposal_text(lang, info)))]

    def when(at: datetime | None) -> str:
        return f"{i18n.moment(lang, at, tz)} ({tz.key})" if at else "—"

    if info.status == PROPOSED:
        others = [a for a in approvers if a != f"<@{info.proposed_by}>"]
        who = ", ".join(others) if others else t(lang, "nobody yet (set KEYBOT_APPROVERS)")
        line = t(lang, "Approvers: {who} · expires {time} if undecided", who=who, time=when(info.expires_at))
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=line)]))
        value = str(info.id)
        blocks.append(
            ActionsBlock(
                block_id="decision",
                elements=[
                    ButtonElement(
                        text=t(lang, "Approve"), action_id=ids.APPROVE_CONSUMER, value=value, style="primary"
                    ),
                    ButtonElement(text=t(lang, "Deny"), action_id=ids.DENY_CONSUMER, value=value, style="danger"),
                ],
            )
        )
        return blocks
    outcomes = {
        APPROVED: N_(":white_check_mark: Approved by {user} at {time}: the key goes there now."),
        DENIED: N_(":no_entry: Denied by {user} at {time}."),
        EXPIRED: N_(":hourglass: Expired undecided at {expires}."),
        VOID: N_(":heavy_multiplication_x: Void: the consumer or the key changed, or a newer proposal replaced it."),
    }
    outcome = t(
        lang,
        outcomes.get(info.status, N_("Status: {status}")),
        user=f"<@{info.decided_by}>",
        time=when(info.decided_at),
        expires=when(info.expires_at),
        status=info.status,
    )
    blocks.append(SectionBlock(block_id="outcome", text=MarkdownTextObject(text=outcome)))
    return blocks


def change_text(lang: str, change: AddedConsumer | ConsumerChange, actor: str) -> str:
    """The channel's announcement of a change made without a second person (approval none, or a removal)."""
    params = {
        "user": f"<@{actor}>",
        "name": escape(change.name),
        "kind": change.kind,
        "target": escape(change.target),
        "vendor_id": change.vendor_id,
    }
    if isinstance(change, AddedConsumer):
        return t(
            lang,
            ":satellite_antenna: {user} added consumer *{name}* ({kind} `{target}`) to `{vendor_id}` without "
            "approval (KEYBOT_REISSUE_APPROVAL=none): it receives the key now.",
            **params,
        )
    if change.action == "retargeted":
        return t(
            lang,
            ":satellite_antenna: {user} pointed consumer *{name}* of `{vendor_id}` to {kind} `{target}` without "
            "approval (KEYBOT_REISSUE_APPROVAL=none): it receives the key there now.",
            **params,
        )
    return t(
        lang,
        ":wastebasket: {user} removed consumer *{name}* of `{vendor_id}`: it no longer receives the key.",
        **params,
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
    secret = _secret_text(added.signing_secret, lang)
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


class ProposalMessages:
    """Posting and updating consumer proposals and announcements in the key's channel (team language)."""

    def __init__(self, services: Services, client: WebClient):
        self.services, self.client = services, client
        self.lang = services.languages.team

    def blocks(self, info: ProposalInfo) -> list[Block]:
        tz = self.services.ctx.settings.timezone
        return build_proposal_blocks(self.lang, info, self.services.rollout.approver_mentions(), tz)

    def post(self, info: ProposalInfo) -> None:
        if not info.channel_id:
            return
        try:
            answer = self.client.chat_postMessage(
                channel=info.channel_id, text=proposal_text(self.lang, info), blocks=self.blocks(info)
            )
        except Exception:  # noqa: BLE001 - nobody can approve it then: the proposer hears it and proposes again
            logger.exception("could not post consumer proposal #%s", info.id)
            text = t(
                self.services.languages.of(info.proposed_by),
                ":warning: Your consumer proposal #{id} for {vendor_id} could not be posted in <#{channel}>, so "
                "no approver can see it. Propose it again in a moment.",
                id=info.id,
                vendor_id=info.vendor_id,
                channel=info.channel_id,
            )
            self.client.chat_postMessage(channel=info.proposed_by, text=text)
            return
        self.services.rollout.set_proposal_message(info.id, channel_id=str(answer["channel"]), ts=str(answer["ts"]))

    def refresh(self, info: ProposalInfo, channel: str | None = None, ts: str | None = None) -> None:
        current = self.services.rollout.proposal(info.id)  # a click may have raced an update: show what is stored
        channel, ts = current.channel_id or channel, current.message_ts or ts
        if not (channel and ts):
            return
        try:
            self.client.chat_update(
                channel=channel, ts=ts, text=proposal_text(self.lang, current), blocks=self.blocks(current)
            )
        except Exception:  # noqa: BLE001 - the database is right; the message catches up on the next change
            logger.exception("could not update the message of consumer proposal #%s", info.id)

    def announce(self, change: AddedConsumer | ConsumerChange, actor: str) -> None:
        channel = change.channel_id
        if channel:
            self.client.chat_postMessage(channel=channel, text=change_text(self.lang, change, actor))


def _proposal_id(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value or ""):
        raise InvalidInput.one("proposal", "This button does not name a consumer proposal.")
    return int(value)


def register(app: App, services: Services, router: CommandRouter) -> None:
    rollout = services.rollout
    tz = services.ctx.settings.timezone
    rollout.notifier = SlackProgressNotifier(app.client, tz, services.languages.team)
    messages = ProposalMessages(services, app.client)
    rollout.proposal_notifier = messages

    def approval() -> bool:
        return services.ctx.settings.reissue_approval

    def list_reply(user_id: str, lang: str, vendor_id: str) -> dict[str, Any]:
        states = rollout.consumers(vendor_id)
        holding = sum(s.holds_key for s in states)
        detailed = rollout.can_see_targets(user_id, vendor_id)
        return {
            "text": t(
                lang,
                "Consumers of {vendor_id}: {holding}/{total}",
                vendor_id=vendor_id.upper(),
                holding=holding,
                total=len(states),
            ),
            "blocks": build_consumers_blocks(vendor_id.upper(), states, tz, lang, detailed=detailed),
            "response_type": "ephemeral",
        }

    def add_modal(user_id: str, vendor_id: str) -> View:
        vendor = rollout.check_can_manage(user_id, vendor_id, adding=True)
        return build_add_modal(vendor, services.languages.of(user_id), approval=approval())

    def retarget_modal(user_id: str, vendor_id: str) -> View:
        vendor = rollout.check_can_manage(user_id, vendor_id, adding=True)
        names = [s.name for s in rollout.consumers(vendor)]
        if not names:
            raise KeybotError(N_("{vendor_id} has no consumers yet."), vendor_id=vendor)
        return build_add_modal(vendor, services.languages.of(user_id), approval=approval(), retarget=names)

    def remove_modal(user_id: str, vendor_id: str) -> View:
        vendor = rollout.check_can_manage(user_id, vendor_id)
        names = [s.name for s in rollout.consumers(vendor)]
        if not names:
            raise KeybotError(N_("{vendor_id} has no consumers to remove."), vendor_id=vendor)
        return build_remove_modal(vendor, names, services.languages.of(user_id))

    modals = {"add": add_modal, "remove": remove_modal, "retarget": retarget_modal}

    def handle_consumers_command(
        req: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        if not req.args:
            raise KeybotError(N_("Usage: `{command} consumers VENDOR_ID [add|retarget|remove]`"), command=ids.COMMAND)
        vendor_id, verb = req.args[0], (req.args[1].lower() if len(req.args) > 1 else "")
        if verb in modals:
            view = modals[verb](req.user_id, vendor_id)
            ack()
            later(context, client.views_open, trigger_id=req.trigger_id, view=view)
        else:
            ack(**list_reply(req.user_id, req.lang, vendor_id))

    router.add(
        "consumers",
        N_("consumers VENDOR_ID [add|retarget|remove]"),
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
    app.action(ids.RETARGET_CONSUMER)(ack=modal_button(retarget_modal), lazy=then)
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

    def submission(retarget: bool) -> Callable[..., None]:
        def handle_submission(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
            view = body["view"]
            values = view["state"]["values"]
            user_id = body["user"]["id"]
            lang = services.languages.of(user_id)
            fields = (
                view.get("private_metadata", ""),
                _selected(values, NAME),
                _selected(values, KIND),
                _selected(values, TARGET),
            )
            mount = _selected(values, VAULT_MOUNT) or None
            try:
                if approval():
                    proposed = rollout.propose(
                        user_id,
                        *fields,
                        vault_mount=mount,
                        retarget=retarget,
                        submission=parse_submission_id(body),
                    )
                elif retarget:
                    change = rollout.retarget(user_id, *fields, vault_mount=mount)
                else:
                    added = rollout.add(user_id, *fields, vault_mount=mount)
            except AlreadyApplied:
                ack()
                return
            except KeybotError as error:
                ack(response_action="errors", errors=views.form_errors(lang, error, (NAME, KIND, TARGET), NAME))
                return
            if approval():
                ack(response_action="update", view=build_proposed_view(proposed, lang))
                for replaced in proposed.replaced:
                    later(context, messages.refresh, replaced)
                later(context, messages.post, proposed.proposal)
                return
            if retarget:
                ack()
                later(context, messages.announce, change, user_id)
            else:
                ack(response_action="update", view=build_secret_view(added, lang))
                later(context, messages.announce, added, user_id)
            rollout.kick()

        return handle_submission

    app.view(ids.CONSUMER_ADD_MODAL)(ack=submission(retarget=False), lazy=then)
    app.view(ids.CONSUMER_RETARGET_MODAL)(ack=submission(retarget=True), lazy=then)

    def handle_remove_submission(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        view = body["view"]
        user_id = body["user"]["id"]
        try:
            change = rollout.remove(user_id, view.get("private_metadata", ""), _selected(view["state"]["values"], NAME))
        except KeybotError as error:
            lang = services.languages.of(user_id)
            ack(response_action="errors", errors=views.form_errors(lang, error, (NAME,), NAME))
            return
        ack()
        later(context, messages.announce, change, user_id)

    app.view(ids.CONSUMER_REMOVE_MODAL)(ack=handle_remove_submission, lazy=then)

    def decide(
        decision: Callable[[str, int], ProposalInfo],
        body: dict[str, Any],
        respond: Respond,
        opened: Callable[[ProposalInfo], Any] | None = None,
    ) -> None:
        """Deny, or check an Approve click (``opened`` then shows the approver the target)."""
        click = parse_click(body)
        container = body.get("container") or {}
        where = (container.get("channel_id") or click.channel_id, container.get("message_ts"))
        try:
            proposal_id = _proposal_id(click.value)
            for expired in rollout.expire_proposals(ids=[proposal_id]):  # past its 24 h: closed by this click
                messages.refresh(expired, *where)
            info = decision(click.user_id, proposal_id)
        except KeybotError as error:
            lang = services.languages.of(click.user_id)
            respond(text=views.refusal_text(lang, error), response_type="ephemeral", replace_original=False)
            if re.fullmatch(r"[0-9]{1,9}", click.value):
                try:
                    current = rollout.proposal(int(click.value))
                except KeybotError:
                    return
                if current.status == VOID:  # this click found it void: show that to everyone
                    messages.refresh(current, *where)
            return
        if opened is not None:
            opened(info)
        else:
            messages.refresh(info, *where)

    def open_approve_modal(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """Approve shows the target first, to an approver other than the proposer only; the modal decides."""
        decide(
            rollout.check_can_decide,
            body,
            respond,
            opened=lambda info: client.views_open(
                trigger_id=body.get("trigger_id", ""),
                view=build_approve_modal(services.languages.of(body["user"]["id"]), info),
            ),
        )

    def handle_approve(
        ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        ack()
        later(context, open_approve_modal, body, client, respond)

    def refresh_by_id(proposal_id: int) -> None:
        try:
            messages.refresh(rollout.proposal(proposal_id))
        except KeybotError:
            return

    def handle_approve_submission(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        user_id = body["user"]["id"]
        metadata = body["view"].get("private_metadata") or ""
        try:
            info = rollout.approve_proposal(user_id, _proposal_id(metadata))
        except KeybotError as error:
            lang = services.languages.of(user_id)
            ack(response_action="update", view=build_notice_view(lang, views.refusal_text(lang, error)))
            if re.fullmatch(r"[0-9]{1,9}", metadata):
                later(context, refresh_by_id, int(metadata))  # void or expired now: show it
            return
        ack()
        later(context, messages.refresh, info)

    def handle_deny(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        ack()
        later(context, decide, rollout.deny_proposal, body, respond)

    app.action(ids.APPROVE_CONSUMER)(ack=handle_approve, lazy=then)
    app.view(ids.CONSUMER_APPROVE_MODAL)(ack=handle_approve_submission, lazy=then)
    app.action(ids.DENY_CONSUMER)(ack=handle_deny, lazy=then)


def expire_proposals(services: Services) -> int:
    """Close consumer proposals undecided for 24 hours and show it on their messages."""
    expired = services.rollout.expire_proposals()
    notifier = services.rollout.proposal_notifier
    for info in expired:
        if notifier is not None:
            notifier.refresh(info)
    return len(expired)


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
    scheduler.add_job(
        expire_proposals, "interval", minutes=5, args=[services], id="consumer_proposal_expiry", coalesce=True
    )
