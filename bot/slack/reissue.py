"""Reissue in Slack: the request modal, the approval message, the new-key modal, approvers and the audit log.

Listeners parse the payload, call :class:`bot.services.reissue.ReissueService`, build a view with the pure
``build_*`` functions below and send it. Refusals go back to the clicker only (``respond`` ephemeral); the
service has already audited them. Secrets typed into the new-key modal go to the service and nowhere else.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from slack_bolt import Ack, App, BoltContext, Respond
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

from bot import i18n, rules
from bot.bootstrap import Services
from bot.i18n import N_, linking_summary, render, t
from bot.rules import InvalidInput, KeybotError, Msg, ReissuePath
from bot.services.audit import AuditEntry
from bot.services.base import AlreadyApplied, Clock, MaybePosted
from bot.services.posts import is_legacy
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
    mention,
    no_groups,
)
from bot.services.rollout import ConsumerState
from bot.slack import ids
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.failures import after_ack, later
from bot.slack.parse import parse_submission_id
from bot.slack.posting import conversation_of, post_claimed, post_once, posted_since, posting_client
from bot.slack.views import audit_action_label, escape, form_errors, history_actor, refusal_text
from storage.db import lift_deadline

logger = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60
POST_RETRY_MINUTES = 2
AUDIT_LIMIT = 20
REASON = "reason"
EMERGENCY = "emergency"
NEW_SECRET_KEY, NEW_ACCESS_KEY, NEW_EXPIRES_ON = "new_secret_key", "new_access_key", "new_expires_on"
_VALUE = "value"  # action_id of every input element in these modals
# message metadata: {"claim": the request's post claim ID, "request_id": N, "vendor_id": ..., "generation": N}
EVENT_TYPE = "keybot_reissue_request"


def request_payload(info: ReissueInfo) -> dict[str, Any]:
    return {
        "claim": info.post_claim_id,
        "request_id": info.id,
        "vendor_id": info.vendor_id,
        "generation": info.generation,
    }


def is_request_post(payload: dict[str, Any], message: dict[str, Any], info: ReissueInfo) -> bool:
    """The message found in the history is this request's (not another installation's with the same row ID): it
    names the request's claim ID and key; an older version's message (``{"request_id": N}``) counts only for a
    request claimed before claim IDs existed, and only when it shows the same vendor ID."""
    if "claim" in payload:
        return payload == request_payload(info)
    return (
        is_legacy(info.post_claim_id)
        and payload.get("request_id") == info.id
        and info.vendor_id in json.dumps(message.get("blocks") or [])
    )


_REQUEST_ID = re.compile(r"[0-9]{1,9}")  # a request id as buttons and forms carry it: fits every INTEGER column


def _when(at: datetime | None, tz: ZoneInfo, lang: str = "en") -> str:
    return f"{i18n.moment(lang, at, tz)} ({i18n.zone_name(lang, tz.key)})" if at else "—"


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


@dataclass(frozen=True)
class DenySubmission:
    user_id: str
    request_id: int
    reason: str


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


def _form_request_id(view: dict[str, Any], button: Msg) -> int:
    metadata = view.get("private_metadata") or ""
    if not _REQUEST_ID.fullmatch(metadata):
        raise InvalidInput.one(
            "request",
            "This form lost its reissue request: close this form, then click *{button}* on the request again.",
            button=button,
        )
    return int(metadata)


def parse_deny_submission(body: dict[str, Any]) -> DenySubmission:
    view = body["view"]
    return DenySubmission(
        user_id=body["user"]["id"],
        request_id=_form_request_id(view, Msg("Deny")),
        reason=_input(view["state"]["values"], REASON).get("value") or "",
    )


def parse_new_key_submission(body: dict[str, Any]) -> NewKeySubmission:
    view = body["view"]
    values = view["state"]["values"]
    return NewKeySubmission(
        user_id=body["user"]["id"],
        request_id=_form_request_id(view, Msg("Enter new key")),
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


LINKING_LOCKED = N_(  # DOMAIN.md fact 16, Coupang's article 20543949252249
    ":lock: After a delete and issue, the new key's linking info can be edited only 7 days after its last edit "
    "(“마지막 수정일을 기준으로 7일 이후”), and Coupang will not tell you the date: enter the right IP addresses "
    "when you issue it."
)


def build_path_warning(lang: str, plan: ReissuePlan) -> str:
    delay = render(lang, rules.describe_delay(plan.path))
    params = {
        "vendor_id": plan.vendor_id,
        "days_left": i18n.days_left(lang, plan.days_left),
        "date": i18n.day(lang, plan.expires_on),
        "delay": delay,
    }
    if plan.path is ReissuePath.REISSUE:
        return t(
            lang,
            ":information_source: *{vendor_id}* is inside the reissue window ({days_left}, expiry {date}): WING's "
            "*Reissue (재발급)* button works. The old Secret Key stops working the moment it is reissued; the new "
            "one works within *{delay}*. Every system using this key must then be updated.",
            **params,
        )
    if plan.path is ReissuePath.AFTER_EXPIRY:
        return t(
            lang,
            ":warning: *Expired: issue a new key.* {vendor_id} {days_left} ({date}), so WING's Reissue flow is "
            "over: press *Issue (발급)*, agree to the terms and choose the linking info (Integrator or "
            "self-developed) again. The new key *may take {delay}* to start working; every order, stock and "
            "shipping sync using this key fails until then.",
            **params,
        )
    window_opens = i18n.day(lang, rules.milestone_date(plan.expires_on, rules.REISSUE_WINDOW_DAYS))
    early = t(
        lang,
        ":warning: *Early reissue: delete and issue.* {vendor_id} still has {days} days left, so WING's Reissue "
        "button is not active yet (it opens on {opens}). The only way now is *Delete (삭제)*, then *Issue (발급)*: "
        "*the old key stops working at once*, and the new key *may take {delay} or more* to start working. Every "
        "order, stock and shipping sync using this key stops until then. Unless the key leaked, consider waiting "
        "until {opens}.",
        vendor_id=plan.vendor_id,
        days=plan.days_left,
        opens=window_opens,
        delay=delay,
    )
    return f"{early}\n{t(lang, LINKING_LOCKED)}"


def build_request_modal(lang: str, plan: ReissuePlan, *, approval: bool = True) -> View:
    if approval:
        submit, note = (
            t(lang, "Ask for approval"),
            t(lang, "An approver other than you must approve; the request expires after 24 hours."),
        )
    else:
        submit, note = (
            t(lang, "Request"),
            t(lang, "No approval step (KEYBOT_REISSUE_APPROVAL=none): the WING steps follow at once."),
        )
    return View(
        type="modal",
        callback_id=ids.REISSUE_REQUEST_MODAL,
        private_metadata=plan.vendor_id,
        title=PlainTextObject(text=t(lang, "Request reissue")),
        submit=PlainTextObject(text=submit),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=t(
                        lang,
                        "*{label}* (`{vendor_id}`), generation {generation}",
                        label=escape(plan.label),
                        vendor_id=plan.vendor_id,
                        generation=plan.generation,
                    )
                )
            ),
            SectionBlock(text=MarkdownTextObject(text=build_path_warning(lang, plan))),
            InputBlock(
                block_id=REASON,
                label=PlainTextObject(text=t(lang, "Reason")),
                element=PlainTextInputElement(
                    action_id=_VALUE,
                    multiline=True,
                    max_length=1000,
                    placeholder=PlainTextObject(
                        text=t(lang, "Why does this key need a new secret? Approvers read this.")
                    ),
                ),
            ),
            InputBlock(
                block_id=EMERGENCY,
                optional=True,
                label=PlainTextObject(text=t(lang, "Emergency")),
                element=CheckboxesElement(
                    action_id=_VALUE,
                    options=[
                        Option(
                            value=EMERGENCY,
                            text=MarkdownTextObject(text=t(lang, "*Emergency:* the key leaked")),
                        )
                    ],
                ),
            ),
            ContextBlock(elements=[MarkdownTextObject(text=note)]),
        ],
    )


def build_deny_modal(lang: str, info: ReissueInfo) -> View:
    return View(
        type="modal",
        callback_id=ids.DENY_MODAL,
        private_metadata=str(info.id),
        title=PlainTextObject(text=t(lang, "Deny reissue")),
        submit=PlainTextObject(text=t(lang, "Deny")),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=request_text(lang, info))),
            InputBlock(
                block_id=REASON,
                optional=True,
                label=PlainTextObject(text=t(lang, "Reason")),
                element=PlainTextInputElement(
                    action_id=_VALUE,
                    multiline=True,
                    max_length=1000,
                    placeholder=PlainTextObject(text=t(lang, "Why not? The requester reads this.")),
                ),
            ),
        ],
    )


def _path_name(lang: str, path: ReissuePath) -> str:
    params = {"action": render(lang, rules.WING_ACTION[path]), "delay": render(lang, rules.describe_delay(path))}
    if path is ReissuePath.REISSUE:
        return t(lang, "reissue, {action} (access within {delay})", **params)
    if path is ReissuePath.AFTER_EXPIRY:
        return t(lang, "issue after expiry, {action} (the new key may take {delay})", **params)
    return t(
        lang, "early delete-and-issue, {action} (old key dies at once, new key may take {delay} or more)", **params
    )


def wing_steps(lang: str, path: ReissuePath) -> str:
    """DOMAIN.md "How a key is reissued", for the path this request takes, with WING's Korean words."""
    delay = render(lang, rules.describe_delay(path))
    if path is ReissuePath.REISSUE:
        step2 = t(lang, "Find the Open API key and click *Reissue (재발급)*.")
        step4 = t(
            lang, "The old key stopped when you reissued. Wait up to *{delay}* before calling the API.", delay=delay
        )
    elif path is ReissuePath.AFTER_EXPIRY:
        step2 = t(
            lang,
            "The key has expired, so there is no Reissue: find the Open API key and click *Issue (발급)*, agree "
            "to the terms and choose the linking info again: *Integrator (연동업체 선택)* or *self-developed "
            "(직접 입력)* with company name (업체명), URL and IP addresses (IP 주소).",
        )
        step4 = t(lang, "API calls fail until the new key works, which may take up to *{delay}*.", delay=delay)
    else:
        step2 = t(
            lang,
            "Find the Open API key, click *Delete (삭제)*, then *Issue (발급)*: agree to the terms and choose "
            "Integrator (연동업체 선택) or self-developed (직접 입력) again, with the same linking info.",
        )
        step4 = t(
            lang,
            "The old key stopped when you deleted it. The new one may take *{delay} or more* to work.",
            delay=delay,
        )
        step2 = f"{step2}\n    {t(lang, LINKING_LOCKED)}"
    return "\n".join(
        [
            t(lang, "*Do it in WING*"),
            t(
                lang,
                "1. Log in to <https://wing.coupang.com|WING>, click the account ID at the top right and open "
                "*Seller Information (판매자정보)* (or *Additional Sales Information (추가판매정보)*).",
            ),
            # Coupang's expiry email ("Open API Key 만료안내 예정") names the place this way (DOMAIN.md fact 15)
            "    " + t(lang, "Coupang's expiry email calls it “Wing > 판매자정보 > 추가판매정보- OPEN API 키 발급”."),
            f"2. {step2}",
            t(
                lang,
                "3. Copy the new Access Key and Secret Key (both change) into *Enter new key* below — "
                "never into a channel.",
            ),
            f"4. {step4}",
            t(lang, "A new key is valid for 180 days (about 6 months); WING's key panel shows its expiry date."),
        ]
    )


# Cafe24 Marketplus is the one integrator whose re-entry steps are documented (DOMAIN.md fact 18)
CAFE24_NAMES = ("cafe24", "카페24", "마켓플러스", "marketplus")
CAFE24_PATH = (
    "마켓플러스 > 기본 > 계정관리 > 마켓계정관리 > 목록의 마켓명/쿠팡 or 관리/수정 버튼 > 마켓계정수정 > "
    "'연동인증' 정보 수정 > 저장"
)


def reentry_steps(lang: str, info: ReissueInfo) -> str:
    """After WING: the stored linking info to choose again when issuing anew, and where an integrator's user
    enters the new key — Cafe24's documented path, a generic step for others (never an invented menu)."""
    linking = info.linking
    if linking is None:
        return ""
    lines = []
    if info.path is not ReissuePath.REISSUE:
        stored = escape(linking_summary(lang, linking))
        lines.append(t(lang, "• Choose the same linking info as stored: {linking}", linking=stored))
    if linking.integration is rules.Integration.INTEGRATOR:
        lines.append(integrator_step(lang, linking.integrator_name or ""))
    return "\n".join(lines)


def integrator_step(lang: str, integrator: str) -> str:
    squeezed = re.sub(r"\s+", "", integrator).lower()
    if any(name in squeezed for name in CAFE24_NAMES):
        return t(lang, "• Then enter the new keys in Cafe24 Marketplus: {path} (Cafe24's guide).", path=CAFE24_PATH)
    return t(
        lang,
        "• Then give the new keys to {integrator}: in its Coupang account settings replace the Access Key and Secret "
        "Key with the new ones and save.",
        integrator=escape(integrator),
    )


REQUEST_STATUS = {  # English shows the stored status itself
    PENDING: N_("pending"),
    APPROVED: N_("approved"),
    DENIED: N_("denied"),
    EXPIRED: N_("expired"),
    VOID: N_("void"),
    COMPLETED: N_("completed"),
    SUPERSEDED: N_("superseded"),
}


def request_text(lang: str, info: ReissueInfo) -> str:
    return t(
        lang,
        "Reissue request #{id} for {vendor_id} {label}: {status}",
        id=info.id,
        vendor_id=info.vendor_id,
        label=escape(info.label),
        status=t(lang, REQUEST_STATUS.get(info.status, info.status)),
    )


def build_request_blocks(lang: str, info: ReissueInfo, approvers: Sequence[str], tz: ZoneInfo) -> list[Block]:
    """The request message in the channel, in every state: buttons only while something can be done."""
    params = {
        "requester": f"<@{info.requested_by}>",
        "label": escape(info.label),
        "vendor_id": info.vendor_id,
        "generation": info.generation,
        "path": _path_name(lang, info.path),
        "reason": escape(info.reason),
    }
    if info.emergency:
        head = t(
            lang,
            ":rotating_light: *EMERGENCY — leaked key.* {requester} asks to reissue the key of *{label}* "
            "(`{vendor_id}`, generation {generation}).\n*Path:* {path}\n*Reason:* {reason}",
            **params,
        )
    else:
        head = t(
            lang,
            "{requester} asks to reissue the key of *{label}* (`{vendor_id}`, generation {generation}).\n"
            "*Path:* {path}\n*Reason:* {reason}",
            **params,
        )
    blocks: list[Block] = [SectionBlock(block_id="request", text=MarkdownTextObject(text=head))]
    value = str(info.id)
    approvers = [a for a in approvers if a != params["requester"]]  # they cannot decide their own request
    if info.status == PENDING:
        who = ", ".join(approvers) if approvers else t(lang, "nobody yet (set KEYBOT_APPROVERS)")
        line = t(lang, "Approvers: {who} · expires {time} if undecided", who=who, time=_when(info.expires_at, tz, lang))
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=line)]))
        blocks.append(
            ActionsBlock(
                block_id="decision",
                elements=[
                    ButtonElement(text=t(lang, "Approve"), action_id=ids.APPROVE_REISSUE, value=value, style="primary"),
                    ButtonElement(text=t(lang, "Deny"), action_id=ids.DENY_REISSUE, value=value, style="danger"),
                ],
            )
        )
        return blocks
    decider, decided = f"<@{info.decided_by}>", _when(info.decided_at, tz, lang)
    if info.status == APPROVED:
        if info.decided_by is None:
            approved = t(lang, ":white_check_mark: No approval step (KEYBOT_REISSUE_APPROVAL=none): go ahead.")
            if info.owner_id:
                who_enters = t(
                    lang, "Only the key's owner {owner} or an admin can enter the new key.", owner=f"<@{info.owner_id}>"
                )
            else:
                who_enters = t(lang, "Only an admin can enter the new key.")
        else:
            approved = t(lang, ":white_check_mark: Approved by {user} at {time}.", user=decider, time=decided)
            who_enters = t(
                lang,
                "Only {requester}, {approver} or an admin can enter the new key.",
                requester=params["requester"],
                approver=decider,
            )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=approved)))
        steps = "\n".join(filter(None, [wing_steps(lang, info.path), reentry_steps(lang, info)]))
        blocks.append(SectionBlock(text=MarkdownTextObject(text=steps)))
        blocks.append(
            ActionsBlock(
                block_id="new_key",
                elements=[
                    ButtonElement(
                        text=t(lang, "Enter new key"), action_id=ids.ENTER_NEW_KEY, value=value, style="primary"
                    )
                ],
            )
        )
        until = t(lang, "Enter it before {time}, or the request expires.", time=_when(info.expires_at, tz, lang))
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"{who_enters} {until}")]))
        return blocks
    outcomes = {
        DENIED: N_(":no_entry: Denied by {user} at {time}."),
        EXPIRED: N_(":hourglass: Expired undecided at {expires}."),
        VOID: N_(":heavy_multiplication_x: Void: the key changed after this request was made."),
        COMPLETED: N_(":key: Done: approved by {user}, new key entered."),
        SUPERSEDED: N_(":heavy_multiplication_x: Replaced by a newer request for the same key."),
    }
    if info.status == COMPLETED and info.decided_by is None:
        outcome = t(lang, ":key: Done: new key entered (no approval step).")
    elif info.expired_approved:
        outcome = t(
            lang,
            ":hourglass: Expired at {expires}: the new key was not entered within 24 hours of the request.",
            expires=_when(info.expires_at, tz, lang),
        )
    elif info.status in outcomes:
        outcome = t(lang, outcomes[info.status], user=decider, time=decided, expires=_when(info.expires_at, tz, lang))
    else:
        outcome = t(lang, "Status: {status}", status=info.status)
    blocks.append(SectionBlock(block_id="outcome", text=MarkdownTextObject(text=outcome)))
    return blocks


def build_new_key_modal(lang: str, info: ReissueInfo, default_expiry: date) -> View:
    """Nothing prefilled but the date: secrets are written once and never shown back."""
    intro = t(
        lang,
        "New key for *{label}* (`{vendor_id}`): WING gives a new Access Key *and* a new Secret Key, so paste both. "
        "They are stored encrypted and never shown again; the channel sees only the fingerprint.",
        label=escape(info.label),
        vendor_id=info.vendor_id,
    )
    return View(
        type="modal",
        callback_id=ids.NEW_KEY_MODAL,
        private_metadata=str(info.id),
        title=PlainTextObject(text=t(lang, "Enter new key")),
        submit=PlainTextObject(text=t(lang, "Save")),
        close=PlainTextObject(text=t(lang, "Cancel")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=intro)),
            InputBlock(
                block_id=NEW_ACCESS_KEY,
                label=PlainTextObject(text=t(lang, "New Access Key")),
                element=PlainTextInputElement(action_id=_VALUE, max_length=128),
            ),
            InputBlock(
                block_id=NEW_SECRET_KEY,
                label=PlainTextObject(text=t(lang, "New Secret Key")),
                element=PlainTextInputElement(action_id=_VALUE, max_length=128),
            ),
            InputBlock(
                block_id=NEW_EXPIRES_ON,
                label=PlainTextObject(text=t(lang, "Expiry date WING shows")),
                element=DatePickerElement(action_id=_VALUE, initial_date=default_expiry.isoformat()),
            ),
        ],
    )


# how the completion names each consumer's state (ROLLOUT.md); the progress message in the thread keeps updating
CONSUMER_HOLDS = {
    "pending": N_("{name}: being delivered"),
    "delivered": N_("{name}: delivered automatically"),
    "confirmed": N_("{name}: delivered automatically, confirmed"),
    "failed": N_("{name}: delivery failed"),
}


def consumers_text(lang: str, vendor_id: str, consumers: Sequence[ConsumerState], *, threaded: bool = True) -> str:
    """Which systems get the new key by themselves, and in what state; or, with none, that people update them.
    ``threaded``: the request has a message whose thread shows the rollout's progress."""
    if not consumers:
        return t(
            lang,
            "No system receives this key automatically: update every system that uses it by hand. So the next key "
            "reaches them by itself, add them as consumers: `/coupang-key consumers {vendor_id} add`.",
            vendor_id=vendor_id,
        )
    states = "; ".join(
        t(lang, CONSUMER_HOLDS.get(c.state or "pending", CONSUMER_HOLDS["pending"]), name=escape(c.name))
        for c in consumers
    )
    if not threaded:
        return t(
            lang,
            "Consumers: {states}. See their progress with `/coupang-key consumers {vendor_id}`.",
            states=states,
            vendor_id=vendor_id,
        )
    return t(lang, "Consumers: {states}. Progress is updated in the request's thread.", states=states)


def completion_text(lang: str, done: Completion, tz: ZoneInfo, consumers: Sequence[ConsumerState] = ()) -> str:
    """The channel's announcement of a new key; ``consumers``: the key's consumers, with their delivery of it."""
    info = done.request
    if info.decided_by is None:  # every unapproved step is announced as such
        template = N_(
            ":key: {vendor_id} *{label}* reissued by {user} without approval (KEYBOT_REISSUE_APPROVAL=none): "
            "generation {generation}, new expiry {date}, fingerprint `{fingerprint}` (was `{old_fingerprint}`). "
            "Propagating until {time}."
        )
    else:
        template = N_(
            ":key: {vendor_id} *{label}* reissued by {user}: generation {generation}, new expiry {date}, "
            "fingerprint `{fingerprint}` (was `{old_fingerprint}`). Propagating until {time}."
        )
    text = t(
        lang,
        template,
        vendor_id=info.vendor_id,
        label=escape(info.label),
        user=f"<@{done.completed_by}>",
        generation=done.generation,
        date=i18n.day(lang, done.expires_on),
        fingerprint=done.fingerprint,
        old_fingerprint=done.old_fingerprint,
        time=_when(done.access_deadline, tz, lang),
    )
    text += "\n" + consumers_text(lang, info.vendor_id, consumers, threaded=info.channel_id is not None)
    if info.linking is not None and info.linking.integration is rules.Integration.INTEGRATOR:
        text += "\n" + integrator_step(lang, info.linking.integrator_name or "")
    return text


def expired_text(lang: str, info: ReissueInfo) -> str:
    """What the requester hears when their request expires, undecided or approved without its new key."""
    if info.expired_approved:
        return t(
            lang,
            ":hourglass: Your reissue request #{id} for {vendor_id} expired: its new key was not entered within 24 "
            "hours of the request, and an approval is not reused. Ask again with `/coupang-key reissue {vendor_id}` "
            "if the key still needs a new secret.",
            id=info.id,
            vendor_id=info.vendor_id,
        )
    return t(
        lang,
        ":hourglass: Your reissue request #{id} for {vendor_id} expired: nobody decided it within 24 hours. "
        "Ask again with `/coupang-key reissue {vendor_id}` if the key still needs a new secret.",
        id=info.id,
        vendor_id=info.vendor_id,
    )


def build_approvers_text(lang: str, approvers: ApproverList) -> str:
    lines = [t(lang, "*Reissue approvers*")]
    if approvers.configured_users or approvers.configured_groups:
        named = [f"<@{u}>" for u in approvers.configured_users]
        named += [f"<!subteam^{g}>" for g in approvers.configured_groups]
        lines.append(t(lang, "From KEYBOT_APPROVERS: {names}", names=", ".join(named)))
    if approvers.added:
        lines.append(t(lang, "Added here: {names}", names=", ".join(mention(a) for a in approvers.added)))
    if len(lines) == 1:
        lines.append(t(lang, "Nobody yet. Set KEYBOT_APPROVERS or ask an admin: `/coupang-key approvers add @user`."))
    return "\n".join(lines)


def nudge_text(lang: str, info: ReissueInfo) -> str:
    """Posted once in the request's thread when the approved new key is still not entered after 2 hours."""
    return t(
        lang,
        ":bell: {requester} the reissue of {vendor_id} was approved 2 hours ago, but the new key is not entered yet. "
        "Do the WING steps above, then click *Enter new key*; until then the bot still holds the old key.",
        requester=f"<@{info.requested_by}>",
        vendor_id=info.vendor_id,
    )


def build_audit_text(lang: str, entries: Sequence[AuditEntry], tz: ZoneInfo) -> str:
    if not entries:
        return t(lang, "The audit log is empty.")
    lines = [t(lang, "*Latest {count} audit events* (newest first)", count=len(entries))]
    for e in entries:
        vendor = f" {e.vendor_id}" if e.vendor_id else ""
        actor = history_actor(lang, e.actor)  # the bot's own jobs read "The bot" / "봇"
        action = audit_action_label(lang, e.action)
        lines.append(f"#{e.seq} {_when(e.at, tz, lang)} {actor} `{action}`{vendor}")
    return "\n".join(lines)


def chain_head_text(lang: str, head: tuple[int, str] | None) -> str:
    if head is None:
        return t(lang, "Audit chain head: the log is empty.")
    seq, mac = head
    return t(
        lang,
        ":link: Audit chain head: entry #{seq}, MAC `{mac}`. If `coupang-keybot audit verify` ever disagrees with "
        "these daily posts, the database was rewritten.",
        seq=seq,
        mac=mac[:16],
    )


# ---------------------------------------------------------------- sending


class ReissueMessages:
    """Posting and updating request messages; shared by listeners and scheduler jobs."""

    def __init__(self, services: Services, client: WebClient):
        self.services, self.client = services, client
        self.poster = posting_client(client)
        self.lang = services.languages.team  # request messages are channel posts

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
        if unsure_since is not None:  # a DM is looked up in the DM conversation, whose ID is what chat.update takes
            for payload, ts, message in posted_since(self.poster, channel, unsure_since, EVENT_TYPE):
                if is_request_post(payload, message, info):
                    logger.info("Reissue request #%s was already posted (ts %s): not posted again", info.id, ts)
                    reissues.set_message(info.id, channel_id=conversation_of(self.poster, channel), ts=ts)
                    return
        blocks = build_request_blocks(self.lang, info, reissues.approver_mentions(), self.tz)
        try:
            answer = post_once(
                self.poster,
                event_type=EVENT_TYPE,
                payload=request_payload(info),
                channel=channel,
                text=request_text(self.lang, info),
                blocks=blocks,
            )
        except Exception as exc:
            reissues.post_failed(info.id, unsure=isinstance(exc, MaybePosted))
            raise
        reissues.set_message(info.id, channel_id=answer["channel"], ts=answer["ts"])
        current = reissues.get(info.id)
        if current.status != info.status:  # replaced or expired while it was being posted: show that
            self.refresh(current)

    def tell_not_posted(self, info: ReissueInfo) -> None:
        """The requester alone learns that approvers cannot see the request yet, and that it is retried."""
        where = f"<#{info.channel_id}>" if info.channel_id else "Slack"
        text = t(
            self.services.languages.of(info.requested_by),
            ":warning: Your reissue request #{id} for {vendor_id} is saved, but it could not be posted to {where} "
            "yet, so approvers have not seen it. The bot tries again every few minutes; nothing to do unless you "
            "want to ask again (a new request replaces this one).",
            id=info.id,
            vendor_id=info.vendor_id,
            where=where,
        )
        try:
            self.client.chat_postMessage(channel=info.requested_by, text=text)
        except Exception:  # Slack is down for this too: the scheduler still posts the request
            logger.exception("could not tell %s that request #%s is not posted yet", info.requested_by, info.id)

    def tell_requester(self, info: ReissueInfo, text: Callable[[str], str]) -> None:
        """A direct message to the requester, in their language; a failure is logged (the channel shows it)."""
        try:
            self.client.chat_postMessage(
                channel=info.requested_by, text=text(self.services.languages.of(info.requested_by))
            )
        except Exception:  # noqa: BLE001
            logger.exception("could not tell %s about reissue request #%s", info.requested_by, info.id)

    def expired(self, info: ReissueInfo) -> None:
        """An expired request: its message shows it, and the requester hears it."""
        try:
            self.refresh(info)
        except Exception:  # one message we cannot update must not stop the others; the DB is already right
            logger.exception("could not update the message of expired reissue request %s", info.id)
        self.tell_requester(info, lambda lang: expired_text(lang, info))

    def denied(self, info: ReissueInfo, reason: str) -> None:
        def text(lang: str) -> str:
            params = {"id": info.id, "vendor_id": info.vendor_id, "user": f"<@{info.decided_by}>"}
            if reason:
                return t(
                    lang,
                    ":no_entry: {user} denied your reissue request #{id} for {vendor_id}: {reason}",
                    reason=escape(reason),
                    **params,
                )
            return t(lang, ":no_entry: {user} denied your reissue request #{id} for {vendor_id}.", **params)

        self.tell_requester(info, text)

    def refresh(self, info: ReissueInfo, click: Click | None = None) -> None:
        """Re-render the request message in place; a click's own message when the post is not recorded yet."""
        channel, ts = info.channel_id, info.message_ts
        if not ts and click is not None:
            channel, ts = click.channel_id, click.message_ts
        if not (channel and ts):
            return
        blocks = build_request_blocks(self.lang, info, self.services.reissues.approver_mentions(), self.tz)
        self.client.chat_update(channel=channel, ts=ts, text=request_text(self.lang, info), blocks=blocks)


def _refuse(lang: str, respond: Respond, error: KeybotError) -> None:
    respond(text=refusal_text(lang, error), response_type="ephemeral", replace_original=False)


def register(app: App, services: Services, router: CommandRouter) -> None:
    reissues = services.reissues
    if reissues.group_members is no_groups:  # build_services was given no resolver: ask this app's Slack
        reissues.group_members = SlackGroupMembers(app.client, services.ctx.clock)
    messages = ReissueMessages(services, app.client)
    tz = services.ctx.settings.timezone

    def request_modal(lang: str, user_id: str, vendor_id: str) -> View:
        plan = reissues.plan(user_id, vendor_id)
        return build_request_modal(lang, plan, approval=services.ctx.settings.reissue_approval)

    def handle_reissue_command(
        req: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        view = request_modal(req.lang, req.user_id, req.args[0] if req.args else "")
        ack()
        later(context, client.views_open, trigger_id=req.trigger_id, view=view)

    def handle_approvers_command(
        req: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        verb = req.args[0].lower() if req.args else ""
        target = req.args[1] if len(req.args) > 1 else ""
        if verb not in ("add", "remove"):
            ack(text=build_approvers_text(req.lang, reissues.approvers()), response_type="ephemeral")
            return
        if verb == "add":
            user_id = reissues.add_approver(req.user_id, target)
            said = N_("{user} may now approve reissues.")
            announced = N_(":busts_in_silhouette: {admin} made {user} a reissue approver.")
        else:
            user_id = reissues.remove_approver(req.user_id, target)
            said = N_("{user} may no longer approve reissues.")
            announced = N_(":busts_in_silhouette: {admin} removed {user} from the reissue approvers.")
        ack(text=t(req.lang, said, user=mention(user_id)), response_type="ephemeral")
        if services.ctx.settings.channel:  # who may approve is the team's business: said where the team reads
            text = t(services.languages.team, announced, admin=mention(req.user_id), user=mention(user_id))
            later(context, client.chat_postMessage, channel=services.ctx.settings.channel, text=text)

    def handle_audit_command(
        req: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        entries = reissues.recent_audit(req.user_id, limit=AUDIT_LIMIT)
        ack(text=build_audit_text(req.lang, entries, tz), response_type="ephemeral")

    router.add("reissue", N_("reissue VENDOR_ID"), N_("ask for approval to reissue a key"), handle_reissue_command)
    router.add(
        "approvers",
        N_("approvers [add|remove @user]"),
        N_("list or manage reissue approvers"),
        handle_approvers_command,
    )
    usage, summary = N_("audit"), N_("the latest audit events (admins, approvers)")
    router.add("audit", usage, summary, handle_audit_command, follow_up=False)

    def handle_request_reissue(
        ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        ack()
        click = parse_click(body)
        lang = services.languages.of(click.user_id)
        try:
            view = request_modal(lang, click.user_id, click.value)
        except KeybotError as error:
            later(context, _refuse, lang, respond, error)
            return
        later(context, client.views_open, trigger_id=click.trigger_id, view=view)

    def handle_request_submission(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        sub = parse_request_submission(body)
        try:
            info = reissues.request(
                sub.user_id, sub.vendor_id, sub.reason, emergency=sub.emergency, submission=parse_submission_id(body)
            )
        except AlreadyApplied:
            ack()
            return
        except KeybotError as error:
            lang = services.languages.of(sub.user_id)
            ack(response_action="errors", errors=form_errors(lang, error, (REASON, EMERGENCY), REASON))
            return
        ack()
        later(context, post_request, info)

    def post_request(info: ReissueInfo) -> None:
        # The person has their answer. Posting the request and recording the post is the bot's own work: it must
        # not be refused as "busy" because Slack's rate limits used up the step's 2 s database budget.
        lift_deadline()
        try:
            messages.post(info)
        except Exception:  # noqa: BLE001 - the scheduler posts it later; the requester is told privately
            logger.exception("could not post reissue request #%s; the scheduler retries", info.id)
            messages.tell_not_posted(info)

    def decide(
        decision: Callable[[str, int], ReissueInfo], body: dict[str, Any], respond: Respond
    ) -> ReissueInfo | None:
        """Approve, or check a Deny click; None when refused (the clicker was told)."""
        click = parse_click(body)
        try:
            request_id = request_id_of(click.value)
            for expired in reissues.expire_due(request_ids=[request_id]):  # past its 24 h: closed by this click
                messages.expired(expired)
            info = decision(click.user_id, request_id)
        except KeybotError as error:
            _refuse(services.languages.of(click.user_id), respond, error)
            if _REQUEST_ID.fullmatch(click.value):
                try:
                    current = reissues.get(int(click.value))
                except KeybotError:
                    return None
                if current.status == VOID:  # this click closed it: show that to everyone
                    messages.refresh(current, click)
            return None
        return info

    def approve(body: dict[str, Any], respond: Respond) -> None:
        info = decide(reissues.approve, body, respond)
        if info is not None:
            messages.refresh(info, parse_click(body))

    def open_deny_modal(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        info = decide(reissues.check_can_deny, body, respond)
        if info is not None:  # a reason first (optional), in a modal
            view = build_deny_modal(services.languages.of(body["user"]["id"]), info)
            client.views_open(trigger_id=body.get("trigger_id", ""), view=view)

    def handle_approve(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        ack()  # deciding updates the request's message (and may close expired ones): all after the answer
        later(context, approve, body, respond)

    def handle_deny(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext) -> None:
        ack()
        later(context, open_deny_modal, body, client, respond)

    def handle_deny_submission(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        try:
            sub = parse_deny_submission(body)
            info = reissues.deny(sub.user_id, sub.request_id, sub.reason)
        except KeybotError as error:
            lang = services.languages.of(body["user"]["id"])
            ack(response_action="errors", errors=form_errors(lang, error, (REASON,), REASON))
            return
        ack()
        later(context, messages.refresh, info)
        later(context, messages.denied, info, sub.reason.strip())

    def close_if_due(context: BoltContext, request_id: int) -> None:
        """A request past its 24 hours is closed before anyone may enter its key; its message and requester
        learn it after the answer."""
        for expired in reissues.expire_due(request_ids=[request_id]):
            later(context, messages.expired, expired)

    def show_if_closed(context: BoltContext, request_id: int) -> None:
        """The refused attempt closed the request (its key changed): show that on its message."""
        try:
            current = reissues.get(request_id)
        except KeybotError:
            return
        if current.status == VOID:
            later(context, messages.refresh, current)

    def handle_enter_new_key(
        ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        ack()
        click = parse_click(body)
        lang = services.languages.of(click.user_id)
        try:
            request_id = request_id_of(click.value)
            close_if_due(context, request_id)
            info = reissues.check_can_enter(click.user_id, request_id)
        except KeybotError as error:
            later(context, _refuse, lang, respond, error)
            if _REQUEST_ID.fullmatch(click.value):
                show_if_closed(context, int(click.value))
            return
        view = build_new_key_modal(lang, info, reissues.default_expiry())
        later(context, client.views_open, trigger_id=click.trigger_id, view=view)

    def announce_completion(client: WebClient, channel: str, lang: str, done: Completion) -> None:
        consumers = services.rollout.progress(done.request.vendor_id, done.generation).consumers
        client.chat_postMessage(channel=channel, text=completion_text(lang, done, tz, consumers))

    def handle_new_key_submission(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        request_id: int | None = None
        try:
            sub = parse_new_key_submission(body)
            request_id = sub.request_id
            close_if_due(context, request_id)
            done = reissues.complete(sub.user_id, sub.request_id, sub.form, submission=parse_submission_id(body))
        except AlreadyApplied:
            ack()
            return
        except KeybotError as error:
            blocks = (NEW_SECRET_KEY, NEW_ACCESS_KEY, NEW_EXPIRES_ON)
            lang = services.languages.of(body["user"]["id"])
            ack(response_action="errors", errors=form_errors(lang, error, blocks, NEW_SECRET_KEY))
            if request_id is not None:
                show_if_closed(context, request_id)
            return
        ack()
        channel = done.request.channel_id or sub.user_id
        lang = messages.lang if done.request.channel_id else services.languages.of(sub.user_id)
        later(context, messages.refresh, done.request)
        later(context, announce_completion, client, channel, lang, done)

    then = after_ack(services.languages)
    app.action(ids.any_key(ids.REQUEST_REISSUE))(ack=handle_request_reissue, lazy=then)
    app.view(ids.REISSUE_REQUEST_MODAL)(ack=handle_request_submission, lazy=then)
    app.action(ids.APPROVE_REISSUE)(ack=handle_approve, lazy=then)
    app.action(ids.DENY_REISSUE)(ack=handle_deny, lazy=then)
    app.view(ids.DENY_MODAL)(ack=handle_deny_submission, lazy=then)
    app.action(ids.ENTER_NEW_KEY)(ack=handle_enter_new_key, lazy=then)
    app.view(ids.NEW_KEY_MODAL)(ack=handle_new_key_submission, lazy=then)


# ---------------------------------------------------------------- scheduler jobs


def expire_requests(services: Services, client: WebClient) -> int:
    """Close requests undecided for 24 hours and show it on their messages."""
    expired = services.reissues.expire_due()
    messages = ReissueMessages(services, client)
    for info in expired:
        messages.expired(info)
    return len(expired)


def nudge_approved_requests(services: Services, client: WebClient) -> int:
    """One reminder in the thread of each request approved 2 hours ago whose new key is still not entered."""
    nudged = 0
    for claim, info in services.reissues.claim_nudges():
        assert info.channel_id is not None
        try:
            post_claimed(
                services.reissues.posts,
                client,
                claim,
                info.channel_id,
                text=nudge_text(services.languages.team, info),
                thread_ts=info.message_ts,
            )
            nudged += 1
        except Exception:  # noqa: BLE001 - released for the next run; one failure must not stop the others
            logger.exception("could not nudge reissue request #%s; retried in a few minutes", info.id)
    return nudged


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
    """Once a day from the reminder time on, whichever process gets here first posts the chain head; the others
    find it claimed. A failed post raises and is retried by a later run that day, posted once."""
    channel = services.ctx.settings.channel
    if not channel:
        logger.warning("KEYBOT_CHANNEL is not set: the audit chain head is not posted")
        return False
    claimed = services.audit.claim_daily_head()
    if claimed is None:
        return False
    claim, head = claimed
    post_claimed(services.audit.posts, client, claim, channel, text=chain_head_text(services.languages.team, head))
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
    scheduler.add_job(
        nudge_approved_requests,
        "interval",
        minutes=POST_RETRY_MINUTES,
        args=[services, client],
        id="reissue_nudges",
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        post_chain_head,
        "interval",
        minutes=POST_RETRY_MINUTES,
        args=[services, client],
        id="audit_chain_head",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
    )
