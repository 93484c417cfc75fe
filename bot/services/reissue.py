"""Approval-gated reissue: request → approve/deny (by someone else) → enter the new key → done.

Every change and every refused attempt writes an audit event in the same transaction as the change.
Decisions are conditional UPDATEs (``... WHERE status = 'pending' AND expires_at > now``), so two approvers
clicking at once, or one clicking twice, produce exactly one decision. An approval names the request, the key's
generation and the action: if the key changed in the meantime it is void.

Slack user groups are resolved by an injected :data:`GroupMembers` (the Slack layer implements it), at the
moment someone clicks, never when the request was made.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, Executable, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from bot import rules
from bot.rules import InvalidInput, KeybotError, LinkingInfo, Msg, ReissuePath
from bot.services.audit import AuditEntry
from bot.services.base import Context, NotAllowed, NotFound, SubmissionId, instance_name
from bot.services.keys import linking_of
from bot.services.posts import Claim, ScheduledPosts, new_claim_id, wall_clock
from storage import repositories as repo
from storage import rollout
from storage.models import Key, ReissueRequest

logger = logging.getLogger(__name__)

REQUEST_TTL = timedelta(hours=24)
NUDGE_AFTER = timedelta(hours=2)  # an approved request without its new key this long gets one nudge in its thread
NUDGE_KIND = "reissue_nudge:{id}"  # scheduled_posts.kind: claimed once per request, whatever the processes
POST_CLAIM_TIMEOUT = timedelta(minutes=10)  # a post claimed this long ago by a process that died is re-claimed
MAX_REASON = 1000
SYSTEM_ACTOR = "keybot"

PENDING, APPROVED, DENIED, EXPIRED, VOID, COMPLETED, SUPERSEDED = (
    "pending",
    "approved",
    "denied",
    "expired",
    "void",
    "completed",
    "superseded",  # never posted, and replaced by a newer request for the same key
)
# posting the request message (post_status)
POST_CLAIMED, POST_DELIVERED, POST_FAILED = "claimed", "delivered", "failed"

# group ID (S…) -> the user IDs in it; raises or returns an empty set when it cannot tell
GroupMembers = Callable[[str], set[str]]

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
_GROUP_MENTION = re.compile(r"<!subteam\^(S[A-Z0-9]{2,})(?:\|[^>]*)?>")


def no_groups(group_id: str) -> set[str]:
    """The resolver until the Slack layer installs one: nobody is in any group."""
    return set()


def parse_user_ref(raw: str) -> str:
    """``<@U123|name>``, ``<@U123>``, ``@U123``, ``U123`` → ``U123``; a user group ``<!subteam^S123|@team>`` or
    ``S123`` → ``S123``."""
    text = (raw or "").strip()
    match = _MENTION.fullmatch(text) or _GROUP_MENTION.fullmatch(text)
    if match:
        return match.group(1)
    bare = text.removeprefix("@").upper()
    if _USER_ID.fullmatch(bare) or _GROUP_ID.fullmatch(bare):
        return bare
    raise InvalidInput.one(
        "user",
        "{value} is not a Slack user or user group: mention them (@name, picked from the list) "
        "or give their member ID (U0123ABCD, from their profile's ⋮ menu).",
        value=rules.quote(text) if text else Msg("Nothing"),
    )


def mention(slack_id: str) -> str:
    """``<@U…>`` for a person, ``<!subteam^S…>`` for a user group."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


@dataclass(frozen=True)
class ReissuePlan:
    """What the request modal shows before anything is stored."""

    vendor_id: str
    label: str
    generation: int
    expires_on: date
    days_left: int
    path: ReissuePath


@dataclass(frozen=True)
class ReissueInfo:
    """One request, as messages show it. No secrets."""

    id: int
    vendor_id: str
    label: str
    generation: int
    path: ReissuePath
    reason: str
    emergency: bool
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    channel_id: str | None
    message_ts: str | None
    key_expires_on: date | None
    owner_id: str | None = None  # the key's owner now (with approval `none`, they and admins enter the key)
    expired_approved: bool = False  # expired after it was approved (or made without approval), key not entered
    linking: LinkingInfo | None = None  # the key's stored linking info, to enter again when issuing anew
    post_claim_id: str = ""  # the request message's metadata names it (bot/slack/posting.py)


@dataclass(frozen=True)
class Completion:
    """A finished reissue: what the channel is told."""

    request: ReissueInfo
    completed_by: str
    generation: int
    fingerprint: str
    old_fingerprint: str
    expires_on: date
    access_deadline: datetime


@dataclass(frozen=True, repr=False)
class NewKeyForm:
    """What the new-key modal returned, unvalidated. Field names are the modal's block IDs."""

    new_secret_key: str = ""
    new_access_key: str = ""
    new_expires_on: str | date | None = None

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"NewKeyForm(new_expires_on={self.new_expires_on!r})"


@dataclass(frozen=True)
class ApproverList:
    configured_users: tuple[str, ...]
    configured_groups: tuple[str, ...]
    added: tuple[str, ...]


class ReissueService:
    def __init__(self, ctx: Context, group_members: GroupMembers | None = None):
        self.ctx = ctx
        self.group_members: GroupMembers = group_members or no_groups
        self.instance = instance_name()
        self.posts = ScheduledPosts(ctx)

    # ------------------------------------------------------------ who may do what

    def _approver_ids(self, session: Session | None) -> tuple[list[str], list[str]]:
        """(user IDs, user-group IDs) of KEYBOT_APPROVERS and of the approvers added in Slack."""
        if session is None:
            with self.ctx.reading() as own:
                return self._approver_ids(own)
        every = sorted(set(self.ctx.settings.approvers) | repo.approver_ids(session))
        return [a for a in every if not a.startswith("S")], [a for a in every if a.startswith("S")]

    def is_approver(self, user_id: str, session: Session | None = None) -> bool:
        """Checked at click time: approver users, then members of approver groups."""
        users, groups = self._approver_ids(session)
        return user_id in users or any(user_id in self._members(group, unknown=set()) for group in groups)

    def _members(self, group: str, *, unknown: set[str]) -> set[str]:
        try:
            return self.group_members(group)
        except Exception:  # a Slack outage must not crash the caller; it decides what "cannot tell" means
            logger.exception("could not resolve user group %s", group)
            return unknown

    def _others_may_approve(self, session: Session, actor: str) -> bool:
        """Someone besides ``actor`` may approve (a group Slack cannot resolve now counts as someone)."""
        users, groups = self._approver_ids(session)
        return bool(set(users) - {actor}) or any(self._members(g, unknown={"?"}) - {actor} for g in groups)

    def approver_mentions(self, session: Session | None = None) -> list[str]:
        """``<@U…>`` and ``<!subteam^S…>`` for everyone who may approve (for the request message)."""
        users, groups = self._approver_ids(session)
        return [mention(a) for a in users + groups]

    def _who_approves(self, session: Session) -> str | Msg:
        mentions = self.approver_mentions(session)
        return ", ".join(mentions) if mentions else Msg("nobody yet (set KEYBOT_APPROVERS)")

    def _require_second_person(self, session: Session, actor: str) -> None:
        """With approval required, a request nobody else may approve is refused before it is made."""
        if self.ctx.settings.reissue_approval and not self._others_may_approve(session, actor):
            raise NotAllowed(
                "Nobody but you may approve reissue requests, so nobody could approve this one. Ask an admin to "
                "add an approver (`/coupang-key approvers add @user`), or, for a team without a second person, "
                "set KEYBOT_REISSUE_APPROVAL=none."
            )

    def _require_approver(self, session: Session, actor: str) -> None:
        if not self.is_approver(actor, session):
            raise NotAllowed(
                "Only approvers may decide reissue requests. Approvers: {approvers}.",
                approvers=self._who_approves(session),
            )

    def _require_admin(self, actor: str) -> None:
        if actor not in self.ctx.settings.admins:
            raise NotAllowed("Only admins may manage approvers. Admins: {admins}.", admins=self._admins())

    def _admins(self) -> str | Msg:
        return ", ".join(f"<@{a}>" for a in sorted(self.ctx.settings.admins)) or Msg("nobody (set KEYBOT_ADMINS)")

    def _owner_or_admin(self, actor: str, owner_id: str | None) -> bool:
        return actor in self.ctx.settings.admins or (owner_id is not None and actor == owner_id)

    def _require_unapproved_reissuer(self, key: Key, actor: str) -> None:
        """With approval `none` nobody checks a second time, so only admins and the key's owner may reissue."""
        if self.ctx.settings.reissue_approval or self._owner_or_admin(actor, key.owner_id):
            return
        if key.owner_id:
            raise NotAllowed(
                "Without an approval step (KEYBOT_REISSUE_APPROVAL=none) only the key's owner {owner} or an admin "
                "may reissue {vendor_id}. Admins: {admins}.",
                owner=f"<@{key.owner_id}>",
                vendor_id=key.vendor_id,
                admins=self._admins(),
            )
        raise NotAllowed(
            "Without an approval step (KEYBOT_REISSUE_APPROVAL=none) only admins may reissue {vendor_id} (it has "
            "no owner). Admins: {admins}.",
            vendor_id=key.vendor_id,
            admins=self._admins(),
        )

    # ------------------------------------------------------------ request

    def plan(self, actor: str, vendor_id: str) -> ReissuePlan:
        """Before opening the request modal: the key exists and has no open request (refusals audited)."""
        typed = (vendor_id or "").strip().upper()

        def work(session: Session) -> ReissuePlan:
            valid = rules.validate_vendor_id(typed)
            key = self._key(session, valid)
            self._require_unapproved_reissuer(key, actor)
            self._refuse_if_open(session, key)
            self._require_second_person(session, actor)
            return self._plan(key)

        return self.ctx.audited(actor, "reissue.request", typed if rules.is_vendor_id(typed) else None, work)

    def request(
        self,
        actor: str,
        vendor_id: str,
        reason: str,
        *,
        emergency: bool = False,
        submission: SubmissionId | None = None,
    ) -> ReissueInfo:
        typed = (vendor_id or "").strip().upper()
        reason = (reason or "").strip()

        def work(session: Session) -> int:
            self.ctx.apply_once(session, submission)
            valid = rules.validate_vendor_id(typed)
            if not reason:
                raise InvalidInput.one("reason", "Say why the key needs a new secret (approvers read this).")
            if len(reason) > MAX_REASON:
                raise InvalidInput.one("reason", "Keep the reason under {limit} characters.", limit=MAX_REASON)
            key = self._key(session, valid, for_update=True)  # serialises two requests for one key
            self._require_unapproved_reissuer(key, actor)
            self._refuse_if_open(session, key)
            self._require_second_person(session, actor)
            now = self.ctx.clock.now()
            approval = self.ctx.settings.reissue_approval
            self._supersede_unposted(session, actor, key.vendor_id, now)
            plan = self._plan(key, now)
            row = ReissueRequest(
                vendor_id=key.vendor_id,
                generation=key.generation,
                path=str(plan.path),
                reason=reason,
                emergency=emergency,
                requested_by=actor,
                requested_at=now,
                expires_at=now + REQUEST_TTL,
                # no approval step: approved by nobody from the start, so the WING steps show at once
                status=PENDING if approval else APPROVED,
                decided_at=None if approval else now,
                channel_id=key.channel_id or self.ctx.settings.channel,
                # the caller posts the message right away: claimed by this process, like a reminder
                post_status=POST_CLAIMED,
                post_claimed_at=now,
                post_claimed_by=self.instance,
                post_claim_id=new_claim_id(),
                post_claimed_wall_at=wall_clock(),
            )
            session.add(row)
            session.flush()
            self.ctx.record(
                session,
                actor,
                "reissue.requested",
                key.vendor_id,
                {
                    "request_id": row.id,
                    "generation": key.generation,
                    "path": str(plan.path),
                    "emergency": emergency,
                    "reason": reason,
                    **({} if approval else {"approval": "none"}),  # audited as unapproved
                },
            )
            return row.id

        request_id = self.ctx.audited(actor, "reissue.request", typed if rules.is_vendor_id(typed) else None, work)
        return self.get(request_id)

    def set_message(self, request_id: int, *, channel_id: str, ts: str) -> None:
        """Remember where the request was posted, so later outcomes update that message in place."""
        with self.ctx.transaction() as session:
            session.execute(
                update(ReissueRequest)
                .where(ReissueRequest.id == request_id)
                .values(channel_id=channel_id, message_ts=ts, post_status=POST_DELIVERED)
            )

    # ------------------------------------------------------------ posting the request message

    def post_failed(self, request_id: int, *, unsure: bool) -> None:
        """The post did not go out (a later :meth:`claim_unposted` retries it); ``unsure``: it may have."""
        values: dict[str, Any] = {"post_status": POST_FAILED}
        if unsure:
            values["post_unsure_since"] = func.coalesce(
                ReissueRequest.post_unsure_since, ReissueRequest.post_claimed_wall_at, ReissueRequest.post_claimed_at
            )
        with self.ctx.transaction() as session:
            session.execute(
                update(ReissueRequest)
                .where(ReissueRequest.id == request_id, ReissueRequest.post_status == POST_CLAIMED)
                .values(values)
                .execution_options(synchronize_session=False)
            )

    def claim_unposted(self, now: datetime | None = None) -> list[tuple[ReissueInfo, datetime | None]]:
        """Pending requests whose message is not posted (a failed post, or a claim left by a dead process).

        Each is claimed by a conditional UPDATE, so one process posts it. Returns each request with the wall-clock
        time from which the channel's history must be searched first (None: certainly never posted).
        """
        now = now or self.ctx.clock.now()
        retry = or_(
            ReissueRequest.post_status == POST_FAILED,
            and_(
                ReissueRequest.post_status == POST_CLAIMED,
                ReissueRequest.post_claimed_at < now - POST_CLAIM_TIMEOUT,
            ),
        )
        unposted = and_(
            or_(
                and_(ReissueRequest.status == PENDING, ReissueRequest.expires_at > now),
                and_(  # no approval step
                    ReissueRequest.status == APPROVED,
                    ReissueRequest.decided_by.is_(None),
                    ReissueRequest.expires_at > now,
                ),
            ),
            ReissueRequest.message_ts.is_(None),
            retry,
        )
        claimed: list[tuple[ReissueInfo, datetime | None]] = []
        wall = wall_clock()
        with self.ctx.transaction() as session:
            for request_id in session.scalars(select(ReissueRequest.id).where(unposted).order_by(ReissueRequest.id)):
                won = session.execute(
                    update(ReissueRequest)
                    .where(ReissueRequest.id == request_id, unposted)
                    .values(
                        post_status=POST_CLAIMED,
                        post_claimed_at=now,
                        post_claimed_by=self.instance,
                        post_claimed_wall_at=wall,
                        post_attempts=ReissueRequest.post_attempts + 1,
                        post_unsure_since=func.coalesce(
                            ReissueRequest.post_unsure_since,
                            case(
                                (
                                    ReissueRequest.post_status == POST_CLAIMED,
                                    func.coalesce(ReissueRequest.post_claimed_wall_at, ReissueRequest.post_claimed_at),
                                ),
                                else_=None,
                            ),
                        ),
                    )
                    .returning(ReissueRequest.post_unsure_since)
                    .execution_options(synchronize_session=False)
                ).first()
                if won is not None:
                    claimed.append((self._info(session, self._request(session, request_id)), won.post_unsure_since))
        return claimed

    def _supersede_unposted(self, session: Session, actor: str, vendor_id: str, now: datetime) -> None:
        """A pending request nobody could see (its message could not be posted) gives way to a new one."""
        pending = session.scalars(
            select(ReissueRequest).where(ReissueRequest.vendor_id == vendor_id, ReissueRequest.status == PENDING)
        ).all()
        for request_id in [r.id for r in pending if _not_posted(r, now)]:
            if _changed(
                session,
                update(ReissueRequest)
                .where(ReissueRequest.id == request_id, ReissueRequest.status == PENDING)
                .values(status=SUPERSEDED, decided_at=now)
                .execution_options(synchronize_session=False),
            ):
                self.ctx.record(session, actor, "reissue.superseded", vendor_id, {"request_id": request_id}, at=now)

    def get(self, request_id: int) -> ReissueInfo:
        with self.ctx.transaction() as session:
            return self._info(session, self._request(session, request_id))

    # ------------------------------------------------------------ decide

    def approve(self, actor: str, request_id: int) -> ReissueInfo:
        return self._decide(actor, request_id, APPROVED)

    def deny(self, actor: str, request_id: int, reason: str = "") -> ReissueInfo:
        """``reason`` (optional) is audited and told to the requester."""
        return self._decide(actor, request_id, DENIED, reason=(reason or "").strip())

    def check_can_deny(self, actor: str, request_id: int) -> ReissueInfo:
        """Before opening the deny modal (refusals audited): the same checks as the decision itself."""
        self.expire_due(request_ids=[request_id])

        def work(session: Session) -> ReissueInfo:
            request = self._request(session, request_id)
            self._check_decider(session, request, actor)
            return self._info(session, request)

        return self.ctx.audited(actor, "reissue.deny", self._vendor_of(request_id), work)

    def _check_decider(self, session: Session, request: ReissueRequest, actor: str) -> None:
        self._require_approver(session, actor)
        if actor == request.requested_by:
            raise NotAllowed("You asked for this reissue, so someone else has to decide it.")
        if request.status != PENDING:
            raise self._closed(request)

    def _decide(self, actor: str, request_id: int, outcome: str, *, reason: str = "") -> ReissueInfo:
        action = "reissue.approve" if outcome == APPROVED else "reissue.deny"
        vendor_id = self._vendor_of(request_id)
        self.expire_due(request_ids=[request_id])  # an undecided request past its 24 h is closed first
        voided = False

        def work(session: Session) -> None:
            nonlocal voided
            if len(reason) > MAX_REASON:
                raise InvalidInput.one("reason", "Keep the reason under {limit} characters.", limit=MAX_REASON)
            request = self._request(session, request_id)
            self._check_decider(session, request, actor)
            now = self.ctx.clock.now()
            key = self.ctx.keys.get(session, vendor_id=request.vendor_id)
            if outcome == APPROVED and (key is None or key.generation != request.generation):
                voided = True
                return
            decided = _changed(
                session,
                update(ReissueRequest)
                .where(
                    ReissueRequest.id == request_id,
                    ReissueRequest.status == PENDING,
                    ReissueRequest.expires_at > now,
                )
                .values(status=outcome, decided_by=actor, decided_at=now)
                .execution_options(synchronize_session=False),
            )
            if decided != 1:  # someone else's click won the race
                session.expire(request)
                raise self._closed(self._request(session, request_id))
            self.ctx.record(
                session,
                actor,
                "reissue.approved" if outcome == APPROVED else "reissue.denied",
                request.vendor_id,
                {
                    "request_id": request_id,
                    "generation": request.generation,
                    "path": request.path,
                    **({"reason": reason} if reason else {}),
                },
            )

        self.ctx.audited(actor, action, vendor_id, work)
        if voided:
            self._void(actor, request_id, action)
        return self.get(request_id)

    def _void(self, actor: str, request_id: int, action: str) -> None:
        """The key changed since the request: close it (audited) and refuse the click (audited)."""
        with self.ctx.transaction() as session:
            request = self._request(session, request_id)
            key = self.ctx.keys.get(session, vendor_id=request.vendor_id)
            changed = _changed(
                session,
                update(ReissueRequest)
                .where(ReissueRequest.id == request_id, ReissueRequest.status.in_((PENDING, APPROVED)))
                .values(status=VOID, decided_at=self.ctx.clock.now())
                .execution_options(synchronize_session=False),
            )
            if changed:
                self.ctx.record(
                    session,
                    actor,
                    "reissue.voided",
                    request.vendor_id,
                    {
                        "request_id": request_id,
                        "generation": request.generation,
                        "key_generation": key.generation if key else None,
                    },
                )
        params = {"generation": request.generation, "vendor_id": request.vendor_id}
        if key is None:
            error = NotAllowed(
                "This request was for generation {generation} of {vendor_id}'s key, which was deleted: "
                "the request is void. Ask again if a new key is still needed.",
                **params,
            )
        else:
            error = NotAllowed(
                "This request was for generation {generation} of {vendor_id}'s key, which is now generation {now}: "
                "the request is void. Ask again if a new key is still needed.",
                now=key.generation,
                **params,
            )
        raise self.ctx.refuse(actor, action, request.vendor_id, error)

    def _closed(self, request: ReissueRequest) -> KeybotError:
        if request.status == APPROVED and request.decided_by is None:
            return NotAllowed("This request needs no approval (KEYBOT_REISSUE_APPROVAL=none): nothing to decide.")
        if request.status == APPROVED:
            return NotAllowed("Already approved by {user}.", user=f"<@{request.decided_by}>")
        if request.status == DENIED:
            return NotAllowed("Already denied by {user}.", user=f"<@{request.decided_by}>")
        if request.status == EXPIRED and _expired_approved(request):
            return _expired_error(request)
        if request.status == EXPIRED:
            return NotAllowed(
                "This request expired after 24 hours undecided. Ask again with `/coupang-key reissue {vendor_id}`.",
                vendor_id=request.vendor_id,
            )
        if request.status == COMPLETED:
            return NotAllowed("This reissue is already done.")
        if request.status == VOID:
            return NotAllowed("This request is void: the key changed after it was made.")
        if request.status == SUPERSEDED:
            return NotAllowed("This request was replaced by a newer one for the same key.")
        return NotAllowed("This request is {status}.", status=request.status)

    # ------------------------------------------------------------ expiry

    def expire_due(self, *, now: datetime | None = None, request_ids: Sequence[int] | None = None) -> list[ReissueInfo]:
        """Close requests older than 24 h, pending or approved without their new key (each one audited); returns
        them so messages can be updated. An approved one keeps its decision, so it reads "approved, then expired"."""
        now = now or self.ctx.clock.now()
        expired: list[ReissueInfo] = []
        with self.ctx.transaction() as session:
            query = select(ReissueRequest.id, ReissueRequest.status).where(
                ReissueRequest.status.in_((PENDING, APPROVED)), ReissueRequest.expires_at <= now
            )
            if request_ids is not None:
                query = query.where(ReissueRequest.id.in_(list(request_ids)))
            for request_id, status in session.execute(query.order_by(ReissueRequest.id)).all():
                changed = _changed(
                    session,
                    update(ReissueRequest)
                    .where(ReissueRequest.id == request_id, ReissueRequest.status == status)
                    .values(status=EXPIRED, **({"decided_at": now} if status == PENDING else {}))
                    .execution_options(synchronize_session=False),
                )
                if not changed:
                    continue  # another sweep, a click or the new key got there first
                request = self._request(session, request_id)
                session.refresh(request)
                self.ctx.record(
                    session,
                    SYSTEM_ACTOR,
                    "reissue.expired" if status == PENDING else "reissue.approval_expired",
                    request.vendor_id,
                    {"request_id": request_id, "generation": request.generation},
                    at=now,
                )
                expired.append(self._info(session, request))
        return expired

    # ------------------------------------------------------------ nudge

    def claim_nudges(self, now: datetime | None = None) -> list[tuple[Claim, ReissueInfo]]:
        """Approved requests still waiting for their new key :data:`NUDGE_AFTER` later, each claimed once in
        ``scheduled_posts`` (so several processes, or a restart, nudge once; a failed post is retried)."""
        now = now or self.ctx.clock.now()
        with self.ctx.reading() as session:
            waiting = session.scalars(
                select(ReissueRequest)
                .where(
                    ReissueRequest.status == APPROVED,
                    ReissueRequest.message_ts.is_not(None),
                    ReissueRequest.decided_at <= now - NUDGE_AFTER,
                    ReissueRequest.decided_at > now - NUDGE_AFTER - timedelta(days=2),
                )
                .order_by(ReissueRequest.id)
            ).all()
            infos = [self._info(session, r) for r in waiting]
        claimed = []
        for info in infos:
            assert info.decided_at is not None
            kind = NUDGE_KIND.format(id=info.id)
            claim = self.posts.claim(kind, self.ctx.today(info.decided_at), retry_days=3, action="reissue.nudged")
            if claim is not None:
                claimed.append((replace(claim, details={"request_id": info.id, "vendor_id": info.vendor_id}), info))
        return claimed

    # ------------------------------------------------------------ the new key

    def check_can_enter(self, actor: str, request_id: int) -> ReissueInfo:
        """Before opening the new-key modal (refusals audited)."""
        self._close_if_due(actor, request_id)

        def work(session: Session) -> ReissueInfo:
            request = self._request(session, request_id)
            self._require_enterer(session, request, actor)
            return self._info(session, request)

        info = self.ctx.audited(actor, "reissue.complete", self._vendor_of(request_id), work)
        self._check_generation(actor, info)
        return info

    def default_expiry(self) -> date:
        return rules.expiry_from_issue(self.ctx.today())

    def complete(
        self, actor: str, request_id: int, form: NewKeyForm, *, submission: SubmissionId | None = None
    ) -> Completion:
        """Store the new key and queue it for every consumer, in one transaction that first closes the request
        with a conditional UPDATE: only while it is approved, unexpired and for the key's generation now. An
        expired or outdated request stores nothing and sends nothing."""
        vendor_id = self._vendor_of(request_id)
        self._close_if_due(actor, request_id)
        stale = expired = False

        def work(session: Session) -> Completion | None:
            nonlocal stale, expired
            self.ctx.apply_once(session, submission)
            request = session.execute(
                select(ReissueRequest).where(ReissueRequest.id == request_id).with_for_update()
            ).scalar_one_or_none()
            if request is None:
                raise NotFound("There is no reissue request #{id}.", id=request_id)
            self._require_enterer(session, request, actor)
            key = self.ctx.keys.get(session, vendor_id=request.vendor_id, for_update=True)
            if key is None or key.generation != request.generation:
                stale = True
                return None
            secret, access, expires_on = self._validate(form, self.ctx.keys.secrets(key)[1])
            now = self.ctx.clock.now()
            closed = _changed(  # still valid at this instant, or nothing is stored and nothing is sent
                session,
                update(ReissueRequest)
                .where(
                    ReissueRequest.id == request_id,
                    ReissueRequest.status == APPROVED,
                    ReissueRequest.expires_at > now,
                    ReissueRequest.generation == key.generation,
                )
                .values(status=COMPLETED, completed_at=now)
                .execution_options(synchronize_session=False),
            )
            if closed != 1:
                session.refresh(request)
                if request.status == APPROVED:  # only its 24 hours can have run out
                    expired = True
                    return None
                raise self._closed(request)
            session.refresh(request)
            old_fingerprint = key.secret_fingerprint
            path = rules.path_now(ReissuePath(request.path), key.expires_on, self.ctx.today(now))
            self.ctx.keys.new_generation(
                session,
                key=key,
                access_key=access,
                secret_key=secret,
                issued_on=self.ctx.today(now),
                expires_on=expires_on,
                now=now,
            )
            key.access_deadline = rules.access_deadline(path, now)
            rollout.queue_generation(  # every consumer gets the new key (ROLLOUT.md), progress in the request's thread
                session,
                vendor_id=key.vendor_id,
                generation=key.generation,
                now=now,
                thread=(request.channel_id, request.message_ts) if request.channel_id else None,
            )
            key.verified_at = key.verify_outcome = key.verify_detail = None
            self.ctx.record(
                session,
                actor,
                "reissue.completed",
                key.vendor_id,
                {
                    "request_id": request_id,
                    "generation": key.generation,
                    "old_fingerprint": old_fingerprint,
                    "fingerprint": key.secret_fingerprint,
                    "expires_on": expires_on.isoformat(),
                    "path": str(path),
                    **({} if request.decided_by else {"approval": "none"}),  # audited as unapproved
                },
            )
            session.flush()
            return Completion(
                request=self._info(session, request),
                completed_by=actor,
                generation=key.generation,
                fingerprint=key.secret_fingerprint,
                old_fingerprint=old_fingerprint,
                expires_on=expires_on,
                access_deadline=key.access_deadline,
            )

        done = self.ctx.audited(actor, "reissue.complete", vendor_id, work)
        if stale:
            self._void(actor, request_id, "reissue.complete")
        if expired:
            self._close_if_due(actor, request_id)  # raises, unless a sweep closed it a moment ago
            raise self.ctx.refuse(actor, "reissue.complete", vendor_id, self._closed(self._request_now(request_id)))
        assert done is not None
        self.ctx.wake_rollout()  # after the commit, in the background: the Slack request never waits for it
        return done

    def _close_if_due(self, actor: str, request_id: int) -> None:
        """A request past its 24 hours is closed (audited) and the attempt refused (audited): nothing entered into
        it is stored or sent."""
        for info in self.expire_due(request_ids=[request_id]):
            raise self.ctx.refuse(actor, "reissue.complete", info.vendor_id, _expired_error(info))

    def _validate(self, form: NewKeyForm, stored_secret: str) -> tuple[str, str, date]:
        """Both keys (a reissue changes both) and a Secret Key that is not the one already stored."""
        errors: dict[str, str] = {}
        secret = access = None
        try:
            secret = rules.validate_key_part("new_secret_key", form.new_secret_key, "Secret Key")
            if hmac.compare_digest(secret.encode(), stored_secret.encode()):
                raise InvalidInput.one(
                    "new_secret_key",
                    "This is the Secret Key already stored: a reissue gives a new one, and the old one stops "
                    "working at once. Copy the new Secret Key from WING.",
                )
        except InvalidInput as exc:
            errors.update(exc.errors)
        try:
            access = rules.validate_key_part("new_access_key", form.new_access_key, "Access Key")
        except InvalidInput as exc:
            errors.update(exc.errors)
        expires_on = self._expiry(form.new_expires_on, errors)
        if errors:
            raise InvalidInput(errors)
        assert secret is not None and access is not None and expires_on is not None
        return secret, access, expires_on

    def _expiry(self, raw: str | date | None, errors: dict[str, str]) -> date | None:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return self.default_expiry()
        try:
            value = raw if isinstance(raw, date) else date.fromisoformat(raw.strip())
        except ValueError:
            errors["new_expires_on"] = "Pick the expiry date WING shows for the new key (YYYY-MM-DD)."
            return None
        today = self.ctx.today()
        if value <= today:
            errors["new_expires_on"] = "The new key's expiry date must be after today: pick the date WING shows."
        elif value > rules.expiry_from_issue(today):
            errors["new_expires_on"] = "A new key is valid for 180 days at most: pick the date WING shows."
        return value

    def _require_enterer(self, session: Session, request: ReissueRequest, actor: str) -> None:
        """The request is approved and this person may enter its key: the requester, the approver or an admin; for
        a request made without approval, only admins and the key's owner, once it is announced in the channel."""
        if request.status != APPROVED:
            raise (
                self._closed(request) if request.status != PENDING else NotAllowed("This request is not approved yet.")
            )
        if request.decided_by is not None:
            if actor in (request.requested_by, request.decided_by) or actor in self.ctx.settings.admins:
                return
            raise NotAllowed(
                "Only the requester {requester}, the approver {approver} or an admin may enter the new key.",
                requester=f"<@{request.requested_by}>",
                approver=f"<@{request.decided_by}>",
            )
        if self.ctx.settings.reissue_approval:  # made under `none`, and approval is required now
            raise NotAllowed(
                "This request was made without approval (KEYBOT_REISSUE_APPROVAL=none), and approval is required "
                "now: ask again with `/coupang-key reissue {vendor_id}`.",
                vendor_id=request.vendor_id,
            )
        key = self.ctx.keys.get(session, vendor_id=request.vendor_id)
        owner = key.owner_id if key is not None else None
        if not self._owner_or_admin(actor, owner):
            if owner:
                raise NotAllowed(
                    "Without an approval step (KEYBOT_REISSUE_APPROVAL=none) only the key's owner {owner} or an "
                    "admin may enter the new key. Admins: {admins}.",
                    owner=f"<@{owner}>",
                    admins=self._admins(),
                )
            raise NotAllowed(
                "Without an approval step (KEYBOT_REISSUE_APPROVAL=none) only admins may enter the new key of a key "
                "without an owner. Admins: {admins}.",
                admins=self._admins(),
            )
        if request.message_ts is None:  # every step is announced: not before the channel has seen the request
            raise NotAllowed(
                "This request is not in the channel yet (Slack could not post it); the bot tries again every few "
                "minutes. Enter the new key from its message there."
            )

    def _check_generation(self, actor: str, info: ReissueInfo) -> None:
        with self.ctx.transaction() as session:
            key = self.ctx.keys.get(session, vendor_id=info.vendor_id)
            current = key is not None and key.generation == info.generation
        if not current:
            self._void(actor, info.id, "reissue.complete")

    # ------------------------------------------------------------ approvers and audit

    def approvers(self) -> ApproverList:
        configured = sorted(self.ctx.settings.approvers)
        with self.ctx.reading() as session:
            added = sorted(repo.approver_ids(session))
        return ApproverList(
            tuple(a for a in configured if not a.startswith("S")),
            tuple(a for a in configured if a.startswith("S")),
            tuple(added),
        )

    def add_approver(self, actor: str, user: str) -> str:
        def work(session: Session) -> str:
            self._require_admin(actor)
            user_id = parse_user_ref(user)
            if repo.add_approver(session, user_id=user_id, by=actor, at=self.ctx.clock.now()):
                self.ctx.record(session, actor, "approver.added", None, {"user_id": user_id})
            return user_id

        return self.ctx.audited(actor, "approver.add", None, work)

    def remove_approver(self, actor: str, user: str) -> str:
        def work(session: Session) -> str:
            self._require_admin(actor)
            user_id = parse_user_ref(user)
            if not repo.remove_approver(session, user_id=user_id):
                if user_id in self.ctx.settings.approvers:
                    raise InvalidInput.one(
                        "user",
                        "{user} was not added as an approver here. It is set in KEYBOT_APPROVERS; change it there.",
                        user=mention(user_id),
                    )
                raise InvalidInput.one("user", "{user} was not added as an approver here.", user=mention(user_id))
            self.ctx.record(session, actor, "approver.removed", None, {"user_id": user_id})
            return user_id

        return self.ctx.audited(actor, "approver.remove", None, work)

    def recent_audit(self, actor: str, limit: int = 20) -> list[AuditEntry]:
        """The latest events, newest first: for admins and approvers only (refusal audited)."""

        def work(session: Session) -> None:
            if actor not in self.ctx.settings.admins and not self.is_approver(actor, session):
                raise NotAllowed("Only admins and approvers may read the audit log.")

        self.ctx.audited(actor, "audit.read", None, work)
        with self.ctx.transaction() as session:
            events = repo.audit_events(session, limit=limit, newest_first=True)
            return [AuditEntry(e.seq, e.at, e.actor, e.action, e.vendor_id, _json(e.details), e.mac) for e in events]

    # ------------------------------------------------------------ helpers

    def _key(self, session: Session, vendor_id: str, *, for_update: bool = False) -> Key:
        key = self.ctx.keys.get(session, vendor_id=vendor_id, for_update=for_update)
        if key is None:
            raise NotFound(
                "No key is registered for {vendor_id}. Register it with `/coupang-key add`.", vendor_id=vendor_id
            )
        return key

    def _refuse_if_open(self, session: Session, key: Key) -> None:
        now = self.ctx.clock.now()
        open_one = repo.open_requests(session, now=now).get(key.vendor_id)
        if open_one is None or _not_posted(open_one, now):
            return  # a request whose message could not be posted blocks nobody: nobody could decide it
        state = Msg("approved, waiting for the new key") if open_one.status == APPROVED else Msg("waiting for approval")
        params = {"vendor_id": key.vendor_id, "id": open_one.id, "state": state, "user": f"<@{open_one.requested_by}>"}
        if open_one.channel_id:
            raise NotAllowed(
                "{vendor_id} already has an open reissue request #{id} in {channel} ({state}, asked by {user}). "
                "Finish or decide that one first.",
                channel=f"<#{open_one.channel_id}>",
                **params,
            )
        raise NotAllowed(
            "{vendor_id} already has an open reissue request #{id} ({state}, asked by {user}). "
            "Finish or decide that one first.",
            **params,
        )

    def _plan(self, key: Key, now: datetime | None = None) -> ReissuePlan:
        today = self.ctx.today(now)
        return ReissuePlan(
            vendor_id=key.vendor_id,
            label=key.label,
            generation=key.generation,
            expires_on=key.expires_on,
            days_left=rules.days_left(key.expires_on, today),
            path=rules.reissue_path(key.expires_on, today),
        )

    @staticmethod
    def _request(session: Session, request_id: int) -> ReissueRequest:
        request = session.get(ReissueRequest, request_id)
        if request is None:
            raise NotFound("There is no reissue request #{id}.", id=request_id)
        return request

    def _request_now(self, request_id: int) -> ReissueRequest:
        with self.ctx.transaction() as session:
            request = self._request(session, request_id)
            session.expunge(request)
            return request

    def _vendor_of(self, request_id: int) -> str | None:
        with self.ctx.transaction() as session:
            return session.scalar(select(ReissueRequest.vendor_id).where(ReissueRequest.id == request_id))

    def _info(self, session: Session, request: ReissueRequest) -> ReissueInfo:
        key = self.ctx.keys.get(session, vendor_id=request.vendor_id)
        path = ReissuePath(request.path)
        if key is not None:  # the steps shown follow the key's state now: expired since the request → Issue
            path = rules.path_now(path, key.expires_on, self.ctx.today())
        return ReissueInfo(
            id=request.id,
            vendor_id=request.vendor_id,
            label=key.label if key else request.vendor_id,
            generation=request.generation,
            path=path,
            reason=request.reason,
            emergency=request.emergency,
            requested_by=request.requested_by,
            requested_at=request.requested_at,
            expires_at=request.expires_at,
            status=request.status,
            decided_by=request.decided_by,
            decided_at=request.decided_at,
            channel_id=request.channel_id,
            message_ts=request.message_ts,
            key_expires_on=key.expires_on if key else None,
            owner_id=key.owner_id if key else None,
            expired_approved=request.status == EXPIRED and _expired_approved(request),
            linking=linking_of(key) if key else None,
            post_claim_id=request.post_claim_id,
        )


def _not_posted(request: ReissueRequest, now: datetime) -> bool:
    """Pending without a message, and not being posted right now (the post failed, or its process died)."""
    return (
        request.status == PENDING
        and request.message_ts is None
        and (
            request.post_status == POST_FAILED
            or (request.post_claimed_at is not None and request.post_claimed_at < now - POST_CLAIM_TIMEOUT)
        )
    )


def _expired_approved(request: ReissueRequest | ReissueInfo) -> bool:
    """Expired after approval (or made without one): an approved request keeps its decision time, which is before
    its expiry; an undecided one is stamped when it expires, at or after it."""
    return request.decided_at is not None and request.decided_at < request.expires_at


def _expired_error(request: ReissueRequest | ReissueInfo) -> NotAllowed:
    return NotAllowed(
        "Reissue request #{id} expired: its new key was not entered within 24 hours of the request, so nothing "
        "was stored or sent. Ask again with `/coupang-key reissue {vendor_id}`.",
        id=request.id,
        vendor_id=request.vendor_id,
    )


def _changed(session: Session, statement: Executable) -> int:
    """Rows a conditional UPDATE changed: 0 means its condition no longer held (someone else got there first)."""
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}
