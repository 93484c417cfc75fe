"""Reissue in Slack: the request modal, the approval message, the new-key modal, approvers and the audit log.

Listeners parse the payload, call :class:`bot.services.reissue.ReissueService`, build a view with the pure
``build_*`` functions below and send it. Refusals go back to the clicker only (``respond`` ephemeral); the
service has already audited them. Secrets typed into the new-key modal go to the service and nowhere else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DatePickerElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import rules
from bot.bootstrap import Services
from bot.i18n import N_
from bot.rules import InvalidInput, KeybotError, ReissuePath
from bot.services.audit import AuditEntry
from bot.services.base import AlreadyApplied, Clock, MaybePosted
from bot.services.reissue import (
    APPROVED,
    COMPLETED,
    DENIED,
    EXPIRED,
    PENDING,
    SUPERSEDED,
    VOID,
    ApproverList,
    Completion,
    NewKeyForm,
    ReissueInfo,
    ReissuePlan,
    no_groups,
)
from bot.slack import ids
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.parse import parse_submission_id
from bot.slack.posting import post_once, posted_since, posting_client
from bot.slack.views import escape
from storage.db import lift_deadline

logger = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60
POST_RETRY_MINUTES = 2
AUDIT_LIMIT = 20
REASON = "reason"
EMERGENCY = "emergency"
NEW_SECRET_KEY, NEW_ACCESS_KEY, NEW_EXPIRES_ON = "new_secret_key", "new_access_key", "new_expires_on"
_VALUE = "value"  # action_id of every input element in these modals
EVENT_TYPE = "keybot_reissue_request"  # message metadata: {"request_id": N}
_REQUEST_ID = re.compile(r"[0-9]{1,9}")  # a request id as buttons and forms carry it: fits every INTEGER column


def _when(at: datetime | None, tz: ZoneInfo) -> str:
    return f"{rules.format_local(at, tz)} ({tz.key})" if at else "—"


# ---------------------------------------------------------------- user groups (the service's GroupMembers)


class SlackGroupMembers:
    """``usergroups.users.list``, cached briefly so a burst of clicks makes one call, yet removals apply soon."""

    def __init__(self, client: WebClient, clock: Clock, ttl_seconds: int = GROUP_CACHE_SECONDS):
        self.client, self.clock, self.ttl = client, clock, timedelta(seconds=ttl_seconds)
        self._cache: dict[str, tuple[datetime, set[str]]] = {}

    def __call__(self, group_id: str) -> set[str]:
        now = self.clock.now()
        cached = self._cache.get(group_id)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        members = set(self.client.usergroups_users_list(usergroup=group_id).get("users") or [])
        self._cache[group_id] = (now, members)
        return members


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class RequestSubmission:
    user_id: str
    vendor_id: str
    reason: str
    emergency: bool


@dataclass(frozen=True, repr=False)
class NewKeySubmission:
    user_id: str
    request_id: int
    form: NewKeyForm

    def __repr__(self) -> str:
        return f"NewKeySubmission(user_id={self.user_id!r}, request_id={self.request_id})"


@dataclass(frozen=True)
class Click:
    user_id: str
    value: str
    trigger_id: str
    channel_id: str | None
    message_ts: str | None


def _input(values: dict[str, Any], block_id: str) -> dict[str, Any]:
    return (values.get(block_id) or {}).get(_VALUE) or {}


def parse_request_submission(body: dict[str, Any]) -> RequestSubmission:
    view = body["view"]
    values = view["state"]["values"]
    chosen = _input(values, EMERGENCY).get("selected_options") or []
    return RequestSubmission(
        user_id=body["user"]["id"],
        vendor_id=view.get("private_metadata", ""),
        reason=_input(values, REASON).get("value") or "",
        emergency=any(o.get("value") == EMERGENCY for o in chosen),
    )


def parse_new_key_submission(body: dict[str, Any]) -> NewKeySubmission:
    view = body["view"]
    values = view["state"]["values"]
    metadata = view.get("private_metadata") or ""
    if not _REQUEST_ID.fullmatch(metadata):
        raise InvalidInput.one(
            "request",
            "This form lost its reissue request: close this form, then click "
            "*Enter new key* on the approved request again.",
        )
    return NewKeySubmission(
        user_id=body["user"]["id"],
        request_id=int(metadata),
        form=NewKeyForm(
            new_secret_key=_input(values, NEW_SECRET_KEY).get("value") or "",
            new_access_key=_input(values, NEW_ACCESS_KEY).get("value") or "",
            new_expires_on=_input(values, NEW_EXPIRES_ON).get("selected_date"),
        ),
    )


def parse_click(body: dict[str, Any]) -> Click:
    container = body.get("container") or {}
    return Click(
        user_id=body["user"]["id"],
        value=(body.get("actions") or [{}])[0].get("value") or "",
        trigger_id=body.get("trigger_id", ""),
        channel_id=container.get("channel_id") or (body.get("channel") or {}).get("id"),
        message_ts=container.get("message_ts"),
    )


def request_id_of(value: str) -> int:
    if not _REQUEST_ID.fullmatch(value):
        raise InvalidInput.one("request", "This button does not name a reissue request.")
    return int(value)


# ---------------------------------------------------------------- builders (pure)


def build_path_warning(plan: ReissuePlan) -> str:
    delay = rules.describe_delay(plan.path)
    if plan.path is ReissuePath.REISSUE:
        return (
            f":information_source: *{plan.vendor_id}* is inside the reissue window "
            f"({rules.describe_days_left(plan.days_left)}, expiry {plan.expires_on.isoformat()}): WING's "
            f"*Reissue (재발급)* button works. The old Secret Key stops working the moment it is reissued; the new "
            f"one works within *{delay}*. Every system using this key must then be updated."
        )
    if plan.path is ReissuePath.AFTER_EXPIRY:
        return (
            f":warning: *Expired: issue a new key.* {plan.vendor_id} {rules.describe_days_left(plan.days_left)} "
            f"({plan.expires_on.isoformat()}), so WING's Reissue flow is over: press *Issue (발급)*, agree to the "
            "terms and choose the linking info (Integrator or self-developed) again. The new key *may take "
            f"{delay}* to start working; every order, stock and shipping sync using this key fails until then."
        )
    window_opens = rules.milestone_date(plan.expires_on, rules.REISSUE_WINDOW_DAYS)
    return (
        f":warning: *Early reissue: delete and issue.* {plan.vendor_id} still has {plan.days_left} days left, "
        f"so WING's Reissue button is not active yet (it opens on {window_opens.isoformat()}). The only way now "
        "is *Delete (삭제)*, then *Issue (발급)*: *the old key stops working at once*, and the new key "
        f"*may take {delay} or more* to start working. Every order, stock and shipping sync using this key "
        f"stops until then. Unless the key leaked, consider waiting until {window_opens.isoformat()}."
    )


def build_request_modal(plan: ReissuePlan) -> View:
    return View(
        type="modal",
        callback_id=ids.REISSUE_REQUEST_MODAL,
        private_metadata=plan.vendor_id,
        title=PlainTextObject(text="Request reissue"),
        submit=PlainTextObject(text="Ask for approval"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*{escape(plan.label)}* (`{plan.vendor_id}`), generation {plan.generation}"
                )
            ),
            SectionBlock(text=MarkdownTextObject(text=build_path_warning(plan))),
            InputBlock(
                block_id=REASON,
                label=PlainTextObject(text="Reason"),
                element=PlainTextInputElement(
                    action_id=_VALUE,
                    multiline=True,
                    max_length=1000,
                    placeholder=PlainTextObject(text="Why does this key need a new secret? Approvers read this."),
                ),
            ),
            InputBlock(
                block_id=EMERGENCY,
                optional=True,
                label=PlainTextObject(text="Emergency"),
                element=CheckboxesElement(
                    action_id=_VALUE,
                    options=[
                        Option(
                            value=EMERGENCY,
                            text=MarkdownTextObject(text="*Emergency:* the key leaked"),
                        )
                    ],
                ),
            ),
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text="An approver other than you must approve; the request expires after 24 hours."
                    )
                ]
            ),
        ],
    )


def _path_name(path: ReissuePath) -> str:
    delay = rules.describe_delay(path)
    if path is ReissuePath.REISSUE:
        return f"reissue, {rules.WING_ACTION[path]} (access within {delay})"
    if path is ReissuePath.AFTER_EXPIRY:
        return f"issue after expiry, {rules.WING_ACTION[path]} (the new key may take {delay})"
    return f"early delete-and-issue, {rules.WING_ACTION[path]} (old key dies at once, new key may take {delay} or more)"


def wing_steps(path: ReissuePath) -> str:
    """DOMAIN.md "How a key is reissued", for the path this request takes, with WING's Korean words."""
    delay = rules.describe_delay(path)
    if path is ReissuePath.REISSUE:
        step2 = "Find the Open API key and click *Reissue (재발급)*."
        step4 = f"The old key stopped when you reissued. Wait up to *{delay}* before calling the API."
    elif path is ReissuePath.AFTER_EXPIRY:
        step2 = (
            "The key has expired, so there is no Reissue: find the Open API key and click *Issue (발급)*, agree "
            "to the terms and choose the linking info again: *Integrator (연동업체 선택)* or *self-developed "
            "(직접 입력)* with company name (업체명), URL and IP addresses (IP 주소)."
        )
        step4 = f"API calls fail until the new key works, which may take up to *{delay}*."
    else:
        step2 = (
            "Find the Open API key, click *Delete (삭제)*, then *Issue (발급)*: agree to the terms and choose "
            "Integrator (연동업체 선택) or self-developed (직접 입력) again, with the same linking info."
        )
        step4 = f"The old key stopped when you deleted it. The new one may take *{delay} or more* to work."
    return "\n".join(
        [
            "*Do it in WING*",
            "1. Log in to <https://wing.coupang.com|WING>, click the account ID at the top right and open "
            "*Seller Information (판매자정보)* (or *Additional Sales Information (추가판매정보)*).",
            f"2. {step2}",
            "3. Copy the new Access Key and Secret Key (both change) into *Enter new key* below — "
            "never into a channel.",
            f"4. {step4}",
        ]
    )


def request_text(info: ReissueInfo) -> str:
    return f"Reissue request #{info.id} for {info.vendor_id} {escape(info.label)}: {info.status}"


def build_request_blocks(info: ReissueInfo, approvers: Sequence[str], tz: ZoneInfo) -> list[Block]:
    """The request message in the channel, in every state: buttons only while something can be done."""
    emergency = ":rotating_light: *EMERGENCY — leaked key.* " if info.emergency else ""
    head = (
        f"{emergency}<@{info.requested_by}> asks to reissue the key of *{escape(info.label)}* "
        f"(`{info.vendor_id}`, generation {info.generation}).\n"
        f"*Path:* {_path_name(info.path)}\n*Reason:* {escape(info.reason)}"
    )
    blocks: list[Block] = [SectionBlock(block_id="request", text=MarkdownTextObject(text=head))]
    value = str(info.id)
    if info.status == PENDING:
        who = ", ".join(approvers) if approvers else "nobody yet (set KEYBOT_APPROVERS)"
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(text=f"Approvers: {who} · expires {_when(info.expires_at, tz)} if undecided")
                ]
            )
        )
        blocks.append(
            ActionsBlock(
                block_id="decision",
                elements=[
                    ButtonElement(text="Approve", action_id=ids.APPROVE_REISSUE, value=value, style="primary"),
                    ButtonElement(text="Deny", action_id=ids.DENY_REISSUE, value=value, style="danger"),
                ],
            )
        )
        return blocks
    if info.status == APPROVED:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f":white_check_mark: Approved by <@{info.decided_by}> at {_when(info.decided_at, tz)}."
                )
            )
        )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=wing_steps(info.path))))
        blocks.append(
            ActionsBlock(
                block_id="new_key",
                elements=[
                    ButtonElement(text="Enter new key", action_id=ids.ENTER_NEW_KEY, value=value, style="primary")
                ],
            )
        )
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"Only <@{info.requested_by}> or <@{info.decided_by}> can enter the new key."
                    )
                ]
            )
        )
        return blocks
    outcome = {
        DENIED: f":no_entry: Denied by <@{info.decided_by}> at {_when(info.decided_at, tz)}.",
        EXPIRED: f":hourglass: Expired undecided at {_when(info.expires_at, tz)}.",
        VOID: ":heavy_multiplication_x: Void: the key changed after this request was made.",
        COMPLETED: f":key: Done: approved by <@{info.decided_by}>, new key entered.",
        SUPERSEDED: ":heavy_multiplication_x: Replaced by a newer request for the same key.",
    }.get(info.status, f"Status: {info.status}")
    blocks.append(SectionBlock(block_id="outcome", text=MarkdownTextObject(text=outcome)))
    return blocks


def build_new_key_modal(info: ReissueInfo, default_expiry: date) -> View:
    """Nothing prefilled but the date: secrets are written once and never shown back."""
    return View(
        type="modal",
        callback_id=ids.NEW_KEY_MODAL,
        private_metadata=str(info.id),
        title=PlainTextObject(text="Enter new key"),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"New key for *{escape(info.label)}* (`{info.vendor_id}`): WING gives a new Access Key "
                    "*and* a new Secret Key, so paste both. They are stored encrypted and never shown again; "
                    "the channel sees only the fingerprint."
                )
            ),
            InputBlock(
                block_id=NEW_ACCESS_KEY,
                label=PlainTextObject(text="New Access Key"),
                element=PlainTextInputElement(action_id=_VALUE, max_length=128),
            ),
            InputBlock(
                block_id=NEW_SECRET_KEY,
                label=PlainTextObject(text="New Secret Key"),
                element=PlainTextInputElement(action_id=_VALUE, max_length=128),
            ),
            InputBlock(
                block_id=NEW_EXPIRES_ON,
                label=PlainTextObject(text="Expiry date WING shows"),
                element=DatePickerElement(action_id=_VALUE, initial_date=default_expiry.isoformat()),
            ),
        ],
    )


def completion_text(done: Completion, tz: ZoneInfo) -> str:
    info = done.request
    return (
        f":key: {info.vendor_id} *{escape(info.label)}* reissued by <@{done.completed_by}>: "
        f"generation {done.generation}, new expiry {done.expires_on.isoformat()}, "
        f"fingerprint `{done.fingerprint}` (was `{done.old_fingerprint}`). "
        f"Propagating until {_when(done.access_deadline, tz)}: update every system that uses this key."
    )


def build_approvers_text(approvers: ApproverList) -> str:
    lines = ["*Reissue approvers*"]
    if approvers.configured_users or approvers.configured_groups:
        named = [f"<@{u}>" for u in approvers.configured_users]
        named += [f"<!subteam^{g}>" for g in approvers.configured_groups]
        lines.append("From KEYBOT_APPROVERS: " + ", ".join(named))
    if approvers.added:
        lines.append("Added here: " + ", ".join(f"<@{u}>" for u in approvers.added))
    if len(lines) == 1:
        lines.append("Nobody yet. Set KEYBOT_APPROVERS or ask an admin: `/coupang-key approvers add @user`.")
    return "\n".join(lines)


def build_audit_text(entries: Sequence[AuditEntry], tz: ZoneInfo) -> str:
    if not entries:
        return "The audit log is empty."
    lines = [f"*Latest {len(entries)} audit events* (newest first)"]
    for e in entries:
        vendor = f" {e.vendor_id}" if e.vendor_id else ""
        actor = f"<@{e.actor}>" if e.actor[:1] in ("U", "W") else escape(e.actor)
        lines.append(f"#{e.seq} {_when(e.at, tz)} {actor} `{e.action}`{vendor}")
    return "\n".join(lines)


def chain_head_text(head: tuple[int, str] | None) -> str:
    if head is None:
        return "Audit chain head: the log is empty."
    seq, mac = head
    return (
        f":link: Audit chain head: entry #{seq}, MAC `{mac[:16]}`. "
        "If `coupang-keybot audit verify` ever disagrees with these daily posts, the database was rewritten."
    )


# ---------------------------------------------------------------- sending


class ReissueMessages:
    """Posting and updating request messages; shared by listeners and scheduler jobs."""

    def __init__(self, services: Services, client: WebClient):
        self.services, self.client = services, client
        self.poster = posting_client(client)

    @property
    def tz(self) -> ZoneInfo:
        return self.services.ctx.settings.timezone

    def post(self, info: ReissueInfo, *, unsure_since: datetime | None = None) -> None:
        """Post a claimed request's message once (to its channel, or the requester's DM when none is set).

        ``unsure_since``: an earlier attempt lost its answer, so look for it in the history first. On failure
        the claim is released for the scheduler's next try, and the error is raised.
        """
        reissues = self.services.reissues
        channel = info.channel_id or info.requested_by
        if unsure_since is not None:
            for payload, ts in posted_since(self.poster, channel, unsure_since, EVENT_TYPE):
                if payload.get("request_id") == info.id:
                    logger.info("Reissue request #%s was already posted (ts %s): not posted again", info.id, ts)
                    reissues.set_message(info.id, channel_id=channel, ts=ts)
                    return
        blocks = build_request_blocks(info, reissues.approver_mentions(), self.tz)
        try:
            answer = post_once(
                self.poster,
                event_type=EVENT_TYPE,
                payload={"request_id": info.id},
                channel=channel,
                text=request_text(info),
                blocks=blocks,
            )
        except Exception as exc:
            reissues.post_failed(info.id, unsure=isinstance(exc, MaybePosted))
            raise
        reissues.set_message(info.id, channel_id=answer["channel"], ts=answer["ts"])
        current = reissues.get(info.id)
        if current.status != PENDING:  # replaced or expired while it was being posted: show that
            self.refresh(current)

    def tell_not_posted(self, info: ReissueInfo) -> None:
        """The requester alone learns that approvers cannot see the request yet, and that it is retried."""
        where = f"<#{info.channel_id}>" if info.channel_id else "Slack"
        text = (
            f":warning: Your reissue request #{info.id} for {info.vendor_id} is saved, but it could not be "
            f"posted to {where} yet, so approvers have not seen it. The bot tries again every few minutes; "
            "nothing to do unless you want to ask again (a new request replaces this one)."
        )
        try:
            self.client.chat_postMessage(channel=info.requested_by, text=text)
        except Exception:  # Slack is down for this too: the scheduler still posts the request
            logger.exception("could not tell %s that request #%s is not posted yet", info.requested_by, info.id)

    def refresh(self, info: ReissueInfo, click: Click | None = None) -> None:
        """Re-render the request message in place; a click's own message when the post is not recorded yet."""
        channel, ts = info.channel_id, info.message_ts
        if not ts and click is not None:
            channel, ts = click.channel_id, click.message_ts
        if not (channel and ts):
            return
        blocks = build_request_blocks(info, self.services.reissues.approver_mentions(), self.tz)
        self.client.chat_update(channel=channel, ts=ts, text=request_text(info), blocks=blocks)


def _refuse(respond: Respond, error: KeybotError) -> None:
    respond(text=f":warning: {error}", response_type="ephemeral", replace_original=False)


def _form_errors(error: KeybotError, default_block: str, blocks: Sequence[str]) -> dict[str, str]:
    if isinstance(error, InvalidInput):
        mapped = {k: v for k, v in error.errors.items() if k in blocks}
        if mapped:
            return mapped
    return {default_block: str(error)}


def register(app: App, services: Services, router: CommandRouter) -> None:
    reissues = services.reissues
    if reissues.group_members is no_groups:  # build_services was given no resolver: ask this app's Slack
        reissues.group_members = SlackGroupMembers(app.client, services.ctx.clock)
    messages = ReissueMessages(services, app.client)
    tz = services.ctx.settings.timezone

    def open_request_modal(user_id: str, vendor_id: str, trigger_id: str, client: WebClient) -> None:
        plan = reissues.plan(user_id, vendor_id)
        client.views_open(trigger_id=trigger_id, view=build_request_modal(plan))

    def handle_reissue_command(req: CommandRequest, ack: Ack, client: WebClient, respond: Respond) -> None:
        ack()
        open_request_modal(req.user_id, req.args[0] if req.args else "", req.trigger_id, client)

    def handle_approvers_command(req: CommandRequest, ack: Ack, client: WebClient, respond: Respond) -> None:
        verb = req.args[0].lower() if req.args else ""
        target = req.args[1] if len(req.args) > 1 else ""
        if verb == "add":
            user_id = reissues.add_approver(req.user_id, target)
            ack(text=f"<@{user_id}> may now approve reissues.", response_type="ephemeral")
        elif verb == "remove":
            user_id = reissues.remove_approver(req.user_id, target)
            ack(text=f"<@{user_id}> may no longer approve reissues.", response_type="ephemeral")
        else:
            ack(text=build_approvers_text(reissues.approvers()), response_type="ephemeral")

    def handle_audit_command(req: CommandRequest, ack: Ack, client: WebClient, respond: Respond) -> None:
        entries = reissues.recent_audit(req.user_id, limit=AUDIT_LIMIT)
        ack(text=build_audit_text(entries, tz), response_type="ephemeral")

    router.add("reissue", N_("reissue VENDOR_ID"), N_("ask for approval to reissue a key"), handle_reissue_command)
    router.add(
        "approvers",
        N_("approvers [add|remove @user]"),
        N_("list or manage reissue approvers"),
        handle_approvers_command,
    )
    router.add("audit", N_("audit"), N_("the latest audit events (admins, approvers)"), handle_audit_command)

    @app.action(ids.any_key(ids.REQUEST_REISSUE))
    def handle_request_reissue(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        click = parse_click(body)
        try:
            open_request_modal(click.user_id, click.value, click.trigger_id, client)
        except KeybotError as error:
            _refuse(respond, error)

    @app.view(ids.REISSUE_REQUEST_MODAL)
    def handle_request_submission(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        sub = parse_request_submission(body)
        try:
            info = reissues.request(
                sub.user_id, sub.vendor_id, sub.reason, emergency=sub.emergency, submission=parse_submission_id(body)
            )
        except AlreadyApplied:
            ack()
            return
        except KeybotError as error:
            ack(response_action="errors", errors=_form_errors(error, REASON, (REASON, EMERGENCY)))
            return
        ack()
        # The person has their answer. Posting the request and recording the post is the bot's own work: it must
        # not be refused as "busy" because Slack's rate limits used up the request's 2 s database budget.
        lift_deadline()
        try:
            messages.post(info)
        except Exception:  # noqa: BLE001 - the scheduler posts it later; the requester is told privately
            logger.exception("could not post reissue request #%s; the scheduler retries", info.id)
            messages.tell_not_posted(info)

    def decide(decision: Callable[[str, int], ReissueInfo], body: dict[str, Any], respond: Respond) -> None:
        click = parse_click(body)
        try:
            request_id = request_id_of(click.value)
            info = decision(click.user_id, request_id)
        except KeybotError as error:
            _refuse(respond, error)
            if _REQUEST_ID.fullmatch(click.value):
                try:
                    current = reissues.get(int(click.value))
                except KeybotError:
                    return
                if current.status in (EXPIRED, VOID):  # this click closed it: show that to everyone
                    messages.refresh(current, click)
            return
        messages.refresh(info, click)

    @app.action(ids.APPROVE_REISSUE)
    def handle_approve(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        decide(reissues.approve, body, respond)

    @app.action(ids.DENY_REISSUE)
    def handle_deny(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        decide(reissues.deny, body, respond)

    @app.action(ids.ENTER_NEW_KEY)
    def handle_enter_new_key(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        click = parse_click(body)
        try:
            info = reissues.check_can_enter(click.user_id, request_id_of(click.value))
        except KeybotError as error:
            _refuse(respond, error)
            return
        client.views_open(trigger_id=click.trigger_id, view=build_new_key_modal(info, reissues.default_expiry()))

    @app.view(ids.NEW_KEY_MODAL)
    def handle_new_key_submission(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        try:
            sub = parse_new_key_submission(body)
            done = reissues.complete(sub.user_id, sub.request_id, sub.form, submission=parse_submission_id(body))
        except AlreadyApplied:
            ack()
            return
        except KeybotError as error:
            blocks = (NEW_SECRET_KEY, NEW_ACCESS_KEY, NEW_EXPIRES_ON)
            ack(response_action="errors", errors=_form_errors(error, NEW_SECRET_KEY, blocks))
            return
        ack()
        messages.refresh(done.request)
        channel = done.request.channel_id or sub.user_id
        client.chat_postMessage(channel=channel, text=completion_text(done, tz))


# ---------------------------------------------------------------- scheduler jobs


def expire_requests(services: Services, client: WebClient) -> int:
    """Close requests undecided for 24 hours and show it on their messages."""
    expired = services.reissues.expire_due()
    messages = ReissueMessages(services, client)
    for info in expired:
        try:
            messages.refresh(info)
        except Exception:  # one message we cannot update must not stop the others; the DB is already right
            logger.exception("could not update the message of expired reissue request %s", info.id)
    return len(expired)


def post_unposted_requests(services: Services, client: WebClient) -> int:
    """Post the request messages that failed (or whose process died) before approvers could see them."""
    messages = ReissueMessages(services, client)
    posted = 0
    for info, unsure_since in services.reissues.claim_unposted():
        try:
            messages.post(info, unsure_since=unsure_since)
            posted += 1
        except Exception:  # noqa: BLE001 - released for the next run; one failure must not stop the others
            logger.exception("posting reissue request #%s failed again; retried in a few minutes", info.id)
    return posted


def post_chain_head(services: Services, client: WebClient) -> bool:
    """Once a day, whichever process gets here first posts the chain head; the others find it claimed."""
    channel = services.ctx.settings.channel
    if not channel:
        logger.warning("KEYBOT_CHANNEL is not set: the audit chain head is not posted")
        return False
    head = services.audit.claim_daily_head()
    if head is None:
        return False
    client.chat_postMessage(channel=channel, text=chain_head_text(head))
    return True


def add_reissue_jobs(scheduler: BaseScheduler, services: Services, client: WebClient) -> None:
    scheduler.add_job(
        expire_requests, "interval", minutes=5, args=[services, client], id="reissue_expiry", coalesce=True
    )
    scheduler.add_job(
        post_unposted_requests,
        "interval",
        minutes=POST_RETRY_MINUTES,
        args=[services, client],
        id="reissue_posts",
        coalesce=True,
        max_instances=1,
    )
    reminder = services.ctx.settings.reminder_time
    scheduler.add_job(
        post_chain_head,
        "cron",
        hour=reminder.hour,
        minute=reminder.minute,
        args=[services, client],
        id="audit_chain_head",
        coalesce=True,
    )
