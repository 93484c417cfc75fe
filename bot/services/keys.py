"""Registering, listing, editing and deleting keys; bulk import; master-key rotation."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from bot import rules
from bot.i18n import N_
from bot.rules import InvalidInput, KeybotError, LinkingInfo, Msg, Phase
from bot.services.audit import FORMULA_START
from bot.services.base import Context, NotAllowed, NotFound, SubmissionId
from storage import repositories as repo
from storage.models import Key, ReissueRequest
from storage.rollout import consumer_counts, forget_consumers, reencrypt_consumers

_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


@dataclass(frozen=True)
class RegistrationForm:
    """What a person typed (modal or CSV row), unvalidated. Dates as ``YYYY-MM-DD`` or date objects."""

    vendor_id: str = ""
    label: str = ""
    access_key: str = field(default="", repr=False)  # never in a repr, log or traceback
    secret_key: str = field(default="", repr=False)
    issued_on: str | date | None = None
    expires_on: str | date | None = None
    channel_id: str | None = None
    owner_id: str | None = None
    integration: str | None = None
    integrator_name: str | None = None
    company_name: str | None = None
    company_url: str | None = None
    ip_addresses: str | None = None


@dataclass(frozen=True, repr=False, slots=True)  # 100,000 of them at once in an import
class NewKey:
    vendor_id: str
    label: str
    access_key: str
    secret_key: str
    issued_on: date | None
    expires_on: date
    channel_id: str | None
    owner_id: str | None
    linking: LinkingInfo

    def __repr__(self) -> str:  # never show the secrets, even in a traceback
        return f"NewKey(vendor_id={self.vendor_id!r}, label={self.label!r}, expires_on={self.expires_on})"


@dataclass(frozen=True)
class OpenRequest:
    id: int
    status: str
    path: str
    requested_by: str


@dataclass(frozen=True)
class KeyStatus:
    """Everything status views show about one key, computed for one instant. No secrets."""

    vendor_id: str
    label: str
    access_key_mask: str
    secret_fingerprint: str
    generation: int
    issued_on: date | None
    expires_on: date
    days_left: int
    phase: Phase
    reissue_button_active: bool
    linking: LinkingInfo
    edits_last_7_days: int
    owner_id: str | None
    channel_id: str | None
    propagating_until: datetime | None  # set only while Coupang may still be applying a change
    verify_outcome: str | None
    verified_at: datetime | None
    open_request: OpenRequest | None = None
    consumers: tuple[int, int] | None = None  # (holding the current generation, all) when it has consumers
    reminder_channel: str | None = None  # its own channel, else KEYBOT_CHANNEL; None: it gets no reminders

    def as_json(self) -> dict[str, Any]:
        return {
            "vendor_id": self.vendor_id,
            "label": self.label,
            "access_key": self.access_key_mask,
            "secret_fingerprint": self.secret_fingerprint,
            "issued_on": self.issued_on.isoformat() if self.issued_on else None,
            "expires_on": self.expires_on.isoformat(),
            "days_left": self.days_left,
            "phase": str(self.phase),
            "reissue_button_active": self.reissue_button_active,
            "generation": self.generation,
            "edits_last_7_days": self.edits_last_7_days,
            "integration": str(self.linking.integration),
            "linking": self.linking.summary(),
            "integrator": self.linking.integrator_name,
            "owner": self.owner_id,
            "channel": self.channel_id,
            "propagating_until": self.propagating_until.isoformat() if self.propagating_until else None,
            "verify_outcome": self.verify_outcome,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "open_request": self.open_request.status if self.open_request else None,
            "consumers": {"delivered": self.consumers[0], "total": self.consumers[1]} if self.consumers else None,
        }


@dataclass(frozen=True)
class StatusPage:
    """One page of statuses plus counts over every key (for the summary line)."""

    statuses: list[KeyStatus]
    offset: int
    matching: int  # keys the filter matches, across all pages
    healthy: int
    in_window: int
    expired: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.statuses)
        return end if end < self.matching else None


@dataclass(frozen=True)
class EditResult:
    status: KeyStatus
    changed: bool  # the linking info changed (one of Coupang's weekly edits)
    dates_corrected: bool
    details_changed: bool = False  # label, channel or owner (admins)


DETAIL_FIELDS = ("label", "channel_id", "owner_id")


@dataclass(frozen=True)
class KeyDetails:
    """What an admin may change about a key besides its linking info: none of Coupang's business."""

    label: str
    channel_id: str | None
    owner_id: str | None


def validate_details(label: str | None, channel_id: str | None, owner_id: str | None) -> KeyDetails:
    """The same checks as registration's, for the edit form and sheet rows."""
    errors: dict[str, str | Msg] = {}
    label = (label or "").strip()
    if not label:
        errors["label"] = "Give the key a label your team recognises, e.g. the shop name."
    elif len(label) > 100:
        errors["label"] = "Keep the label under 100 characters."
    channel_id = (channel_id or "").strip() or None
    if channel_id and not _CHANNEL_ID.fullmatch(channel_id):
        errors["channel_id"] = f"{rules.quote(channel_id)} is not a Slack channel ID (it looks like C0123ABCD)."
    owner_id = (owner_id or "").strip() or None
    if owner_id and not _USER_ID.fullmatch(owner_id):
        errors["owner_id"] = f"{rules.quote(owner_id)} is not a Slack user ID (it looks like U0123ABCD)."
    if errors:
        raise InvalidInput(errors)
    return KeyDetails(label, channel_id, owner_id)


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    errors: list[tuple[int, Msg]] = field(default_factory=list)  # (line number, reason: "column: sentence; …")
    no_channel: list[str] = field(default_factory=list)  # imported, but no channel and no KEYBOT_CHANNEL


def _parse_date(value: str | date | None, name: str, field_name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    value = value.strip()
    if not value:
        return None
    problem = InvalidInput.one(
        field_name, "{name} {value} is not a date: use YYYY-MM-DD.", name=name, value=rules.quote(value)
    )
    # 2026-09-01, and as Korean Excel writes it: 2026.09.01, 2026/09/01, 2026. 9. 1.
    parts = re.fullmatch(r"(\d{4})\s*([-./])\s*(\d{1,2})\s*\2\s*(\d{1,2})\.?", value)
    if parts is None:
        raise problem
    try:
        return date(int(parts[1]), int(parts[3]), int(parts[4]))
    except ValueError:
        raise InvalidInput.one(
            field_name, "{name} {value}: there is no such date.", name=name, value=rules.quote(value)
        ) from None


def validate_registration(form: RegistrationForm, today: date, *, keys_required: bool = True) -> NewKey:
    """Every field checked at once, so a form shows all its errors together; dates are checked against ``today``.
    Without ``keys_required`` (a sheet row of a registered key) both key fields may be empty: the stored keys stay."""
    errors: dict[str, str | Msg] = {}

    def check(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except InvalidInput as exc:
            errors.update(exc.messages)
            return None

    vendor_id = check(rules.validate_vendor_id, form.vendor_id)
    details = check(validate_details, form.label, form.channel_id, form.owner_id)
    if keys_required or form.access_key or form.secret_key:
        access_key = check(rules.validate_key_part, "access_key", form.access_key, "Access Key")
        secret_key = check(rules.validate_key_part, "secret_key", form.secret_key, "Secret Key")
    else:
        access_key = secret_key = ""
    if access_key and secret_key and access_key == secret_key:
        errors["secret_key"] = "The Secret Key is the same as the Access Key: paste the Secret Key here."  # noqa: S105
    issued_on = check(_parse_date, form.issued_on, "Issue date", "issued_on")
    expires_on = check(_parse_date, form.expires_on, "Expiry date", "expires_on")
    dates = None
    if "issued_on" not in errors and "expires_on" not in errors:
        dates = check(rules.resolve_dates, issued_on, expires_on)
        if dates is not None:
            check(rules.check_dates, *dates, today)
    linking = check(
        rules.validate_linking_info,
        form.integration,
        form.integrator_name,
        form.company_name,
        form.company_url,
        form.ip_addresses,
    )
    if errors:
        raise InvalidInput(errors)
    assert dates is not None and details is not None
    keys = access_key or "", secret_key or ""
    return NewKey(vendor_id, details.label, *keys, dates[0], dates[1], details.channel_id, details.owner_id, linking)


class KeyService:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        # status_page's counts over every key (a pass over all of them: ~1 ms at 10,000 on PostgreSQL), kept with
        # the audit head they were counted at: every change to which keys exist or when they expire is audited
        # in its transaction, so while the head has not moved they still hold (checked in the page's query).
        # (today, window end, expiring before) -> (head sequence number, (healthy, window, expired, matching))
        self._counts: dict[tuple[date, date, date | None], tuple[int, tuple[int, int, int, int]]] = {}

    # ------------------------------------------------------------ permissions

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.ctx.settings.admins

    def _admins_text(self) -> str | Msg:
        admins = sorted(self.ctx.settings.admins)
        return ", ".join(f"<@{a}>" for a in admins) if admins else Msg("nobody yet (set KEYBOT_ADMINS)")

    def require_admin(self, actor: str) -> None:
        if not self.is_admin(actor):
            raise NotAllowed("Only admins may do this. Admins: {admins}.", admins=self._admins_text())

    def require_owner_or_admin(self, actor: str, key: Key) -> None:
        if not (self.is_admin(actor) or key.owner_id == actor):
            admins = self._admins_text()
            if key.owner_id:
                raise NotAllowed(
                    "Only the key's owner {owner} or an admin may change {vendor_id}. Admins: {admins}.",
                    owner=f"<@{key.owner_id}>",
                    vendor_id=key.vendor_id,
                    admins=admins,
                )
            raise NotAllowed(
                "Only an admin may change {vendor_id}. Admins: {admins}.", vendor_id=key.vendor_id, admins=admins
            )

    # ------------------------------------------------------------ reads

    def statuses(self, *, vendor_ids: Iterable[str] | None = None, now: datetime | None = None) -> list[KeyStatus]:
        """All keys (or the ones named), most urgent first."""
        with self.ctx.reading() as session:
            return self._statuses(session, vendor_ids=vendor_ids, now=now)

    def each_status(self, *, now: datetime | None = None) -> Iterator[KeyStatus]:
        """Every key, most urgent first, streamed: one chunk of rows in memory at a time (100,000 keys)."""
        with self.ctx.reading() as session:
            yield from self._each_status(session, now=now)

    def _statuses(
        self, session: Session, *, vendor_ids: Iterable[str] | None = None, now: datetime | None = None
    ) -> list[KeyStatus]:
        return list(self._each_status(session, vendor_ids=vendor_ids, now=now))

    def _each_status(
        self, session: Session, *, vendor_ids: Iterable[str] | None = None, now: datetime | None = None
    ) -> Iterator[KeyStatus]:
        now = now or self.ctx.clock.now()
        vendor_ids = None if vendor_ids is None else list(vendor_ids)
        edits = repo.edit_counts(session, since=repo.week_ago(now))
        requests = repo.open_requests(session, now=now)
        today = self.ctx.today(now)
        counts = consumer_counts(session, vendor_ids=vendor_ids)
        linkings: dict[tuple[Any, ...], LinkingInfo] = {}  # an integrator's keys share one linking: built once
        # ordered by (expires_on, vendor_id), which is (days_left, vendor_id): most urgent first
        for key in repo.status_rows(session, vendor_ids=vendor_ids):
            facts = (key.integration, key.integrator_name, key.company_name, key.company_url, key.ip_addresses_json)
            linking = linkings.get(facts)
            if linking is None:
                ips = tuple(json.loads(key.ip_addresses_json or "[]"))
                linking = linkings[facts] = LinkingInfo(rules.Integration(facts[0]), *facts[1:4], ip_addresses=ips)
            request = requests.get(key.vendor_id)
            yield self._status(key, now, today, edits.get(key.vendor_id, 0), request, counts, linking)

    def status(self, vendor_id: str, *, now: datetime | None = None) -> KeyStatus:
        vendor_id = rules.validate_vendor_id(vendor_id)
        found = self.statuses(vendor_ids=[vendor_id], now=now)
        if not found:
            raise NotFound(
                "No key is registered for {vendor_id}. Register it with `/coupang-key add`.", vendor_id=vendor_id
            )
        return found[0]

    def status_page(
        self, *, offset: int = 0, limit: int = 15, expiring_within: int | None = None, now: datetime | None = None
    ) -> StatusPage:
        """Only one page of keys is loaded; the phase counts come from the database (fast at 10,000 keys).
        ``expiring_within``: only the keys with at most that many days left (expired ones included)."""
        now = now or self.ctx.clock.now()
        today = self.ctx.today(now)
        window_end = today + timedelta(days=rules.REISSUE_WINDOW_DAYS)
        expiring_before = None if expiring_within is None else today + timedelta(days=expiring_within)
        dates = (today, window_end, expiring_before)
        cached = self._counts.get(dates)
        with self.ctx.reading(generic_plans=True) as session:
            found = repo.key_page_with_facts(
                session,
                offset=max(offset, 0),
                limit=limit,
                today=today,
                window_end=window_end,
                edits_since=repo.week_ago(now),
                now=now,
                expiring_before=expiring_before,
                counted_at=cached[0] if cached else None,
            )
        if found.counts is None:
            assert cached is not None
            counts = cached[1]
        else:
            counts = found.counts
            if found.head_seq is not None:
                if len(self._counts) >= 64:  # a few dates and ``expiring`` days in use at a time
                    self._counts.clear()
                self._counts[dates] = (found.head_seq, counts)
        page = []
        for row in found.rows:
            request = (
                None
                if row.request_id is None
                else OpenRequest(row.request_id, row.request_status, row.request_path, row.request_by)
            )
            consumers = {row.vendor_id: (row.holding, row.consumers)} if row.consumers else {}
            page.append(self._status(row, now, today, row.edits, request, consumers))
        healthy, in_window, expired, matching = counts
        return StatusPage(page, max(offset, 0), matching, healthy, in_window, expired)

    def check_can_register(self, actor: str) -> None:
        """Before opening the registration form: only admins (refusal audited)."""
        self.ctx.audited(actor, "key.register", None, lambda s: self.require_admin(actor))

    def edits_left(self, vendor_id: str, *, now: datetime | None = None) -> rules.EditQuota:
        now = now or self.ctx.clock.now()
        with self.ctx.reading() as session:
            return rules.edit_quota(repo.edit_times(session, vendor_id=vendor_id, since=repo.week_ago(now)), now)

    def _status(
        self,
        key: Key | Row[Any],
        now: datetime,
        today: date,
        edits: int,
        request: ReissueRequest | OpenRequest | None,
        consumers: Mapping[str, tuple[int, int]],
        linking: LinkingInfo | None = None,
    ) -> KeyStatus:
        days = rules.days_left(key.expires_on, today)
        return KeyStatus(
            vendor_id=key.vendor_id,
            label=key.label,
            access_key_mask=key.access_key_mask,
            secret_fingerprint=key.secret_fingerprint,
            generation=key.generation,
            issued_on=key.issued_on,
            expires_on=key.expires_on,
            days_left=days,
            phase=rules.phase_for(days),
            reissue_button_active=rules.reissue_button_active(days),
            linking=linking or linking_of(key),
            edits_last_7_days=edits,
            owner_id=key.owner_id,
            channel_id=key.channel_id,
            propagating_until=key.access_deadline if key.access_deadline and key.access_deadline > now else None,
            verify_outcome=key.verify_outcome,
            verified_at=key.verified_at,
            open_request=(
                OpenRequest(request.id, request.status, request.path, request.requested_by) if request else None
            ),
            consumers=consumers.get(key.vendor_id),
            reminder_channel=key.channel_id or self.ctx.settings.channel or None,
        )

    # ------------------------------------------------------------ writes

    def register(self, actor: str, form: RegistrationForm, *, submission: SubmissionId | None = None) -> KeyStatus:
        def work(session: Session) -> KeyStatus:
            self.ctx.apply_once(session, submission)
            self.require_admin(actor)
            new = validate_registration(form, self.ctx.today())
            self._insert(session, actor, new, "key.registered")
            return self._statuses(session, vendor_ids=[new.vendor_id])[0]

        typed = (form.vendor_id or "").strip().upper()
        # the status comes from the same transaction: once it commits, nothing left can fail and say "not saved"
        status: KeyStatus = self.ctx.audited(actor, "key.register", typed if rules.is_vendor_id(typed) else None, work)
        return status

    def _insert(self, session: Session, actor: str, new: NewKey, action: str) -> None:
        if self.ctx.keys.get(session, vendor_id=new.vendor_id) is not None:
            raise InvalidInput.one(
                "vendor_id",
                "{vendor_id} already has a key. Use `/coupang-key edit {vendor_id}` to change its "
                "linking info or `/coupang-key reissue {vendor_id}` for a new key.",
                vendor_id=new.vendor_id,
            )
        now = self.ctx.clock.now()
        key = Key(
            vendor_id=new.vendor_id,
            label=new.label,
            generation=self.ctx.keys.next_generation(session, vendor_id=new.vendor_id),
            issued_on=new.issued_on,
            expires_on=new.expires_on,
            channel_id=new.channel_id,
            owner_id=new.owner_id,
            created_at=now,
            updated_at=now,
        )
        apply_linking(key, new.linking)
        self.ctx.keys.add(session, key=key, access_key=new.access_key, secret_key=new.secret_key)
        self.ctx.record(
            session,
            actor,
            action,
            new.vendor_id,
            {
                "label": new.label,
                "generation": key.generation,
                "expires_on": new.expires_on.isoformat(),
                "fingerprint": key.secret_fingerprint,
                "linking": new.linking.details(),
            },
        )

    def edit_linking(
        self,
        actor: str,
        vendor_id: str,
        linking: LinkingInfo,
        *,
        expires_on: str | date | None = None,
        details: KeyDetails | None = None,
        submission: SubmissionId | None = None,
    ) -> EditResult:
        """Saves the linking info and, given a different ``expires_on``, corrects the key's expiry (admins only;
        its reminders for this generation start over); given ``details`` that differ, changes label, channel and
        owner (admins only). Saving the same linking info is not an edit: it uses none of Coupang's weekly edits
        and is not recorded."""
        vendor_id = rules.validate_vendor_id(vendor_id)

        def work(session: Session) -> EditResult:
            self.ctx.apply_once(session, submission)
            key = self._get(session, vendor_id, for_update=True)
            self.require_owner_or_admin(actor, key)
            now = self.ctx.clock.now()
            corrected = self._correct_expiry(session, actor, key, expires_on, now)
            described = details is not None and details != details_of(key)
            if described:
                self.require_admin(actor)
                assert details is not None
                self.set_details(session, actor, key, details, now)
            if linking == linking_of(key):
                status = self._statuses(session, vendor_ids=[vendor_id], now=now)[0]
                return EditResult(status, False, corrected, described)
            times = repo.edit_times(session, vendor_id=vendor_id, since=repo.week_ago(now))
            rules.check_edit_allowed(times, now, self.ctx.settings.timezone)
            self.record_linking_edit(session, actor, key, linking, now)
            return EditResult(self._statuses(session, vendor_ids=[vendor_id], now=now)[0], True, corrected, described)

        result: EditResult = self.ctx.audited(actor, "key.edit", vendor_id, work)
        return result

    def set_details(self, session: Session, actor: str, key: Key, details: KeyDetails, now: datetime) -> bool:
        """Label, channel and owner as given (checked by the caller); audited with what changed. False: nothing did."""
        before, after = details_of(key), details
        changed = [name for name in DETAIL_FIELDS if getattr(before, name) != getattr(after, name)]
        if not changed:
            return False
        key.label, key.channel_id, key.owner_id = after.label, after.channel_id, after.owner_id
        key.updated_at = now
        self.ctx.record(
            session,
            actor,
            "key.details_edited",
            key.vendor_id,
            {
                "before": {name: getattr(before, name) for name in changed},
                "after": {name: getattr(after, name) for name in changed},
            },
        )
        return True

    def record_linking_edit(self, session: Session, actor: str, key: Key, linking: LinkingInfo, now: datetime) -> None:
        """One of Coupang's weekly edits (the caller checked the quota): saved, counted and audited."""
        before = linking_of(key).details()
        apply_linking(key, linking)
        key.access_deadline = rules.access_deadline(rules.ReissuePath.REISSUE, now)
        key.updated_at = now
        repo.record_edit(session, vendor_id=key.vendor_id, at=now, by=actor)
        used = len(repo.edit_times(session, vendor_id=key.vendor_id, since=repo.week_ago(now)))
        self.ctx.record(
            session,
            actor,
            "key.linking_edited",
            key.vendor_id,
            {"before": before, "after": linking.details(), "edits_last_7_days": used},
        )

    def _correct_expiry(self, session: Session, actor: str, key: Key, typed: str | date | None, now: datetime) -> bool:
        """A mistyped expiry put right: checked like a new key's, audited, and the reminders of this generation
        start over so that the milestones of the corrected date fire. False when it is unchanged."""
        expires_on = _parse_date(typed, "Expiry date", "expires_on")
        if expires_on is None or expires_on == key.expires_on:
            return False
        self.require_admin(actor)
        rules.check_dates(None, expires_on, self.ctx.today(now))
        self.set_expiry(session, actor, key, expires_on, now)
        return True

    def set_expiry(self, session: Session, actor: str, key: Key, expires_on: date, now: datetime) -> None:
        """A checked expiry date put in: audited, and the reminders of this generation start over."""
        before = key.expires_on.isoformat()
        key.expires_on = expires_on
        if key.issued_on is not None and rules.expiry_from_issue(key.issued_on) != expires_on:
            key.issued_on = None  # WING's expiry date is what counts now
        key.updated_at = now
        reset = repo.forget_reminders(session, vendor_id=key.vendor_id, generation=key.generation)
        self.ctx.record(
            session,
            actor,
            "key.dates_corrected",
            key.vendor_id,
            {
                "generation": key.generation,
                "expires_on_before": before,
                "expires_on": expires_on.isoformat(),
                "reminders_reset": reset,
            },
        )

    def delete(self, actor: str, vendor_id: str) -> tuple[str, str | None]:
        """Forget a key; its label and the channel its reminders went to (None: none), to announce it there."""
        vendor_id = rules.validate_vendor_id(vendor_id)

        def work(session: Session) -> tuple[str, str | None]:
            key = self._get(session, vendor_id, for_update=True)
            self.require_owner_or_admin(actor, key)
            details: dict[str, Any] = {
                "label": key.label,
                "generation": key.generation,
                "fingerprint": key.secret_fingerprint,
            }
            announced = key.label, key.channel_id or self.ctx.settings.channel
            self.ctx.keys.delete(session, key=key, now=self.ctx.clock.now())
            # else a key registered again under this vendor ID would reach them without a second person's say
            details["consumers_removed"] = forget_consumers(session, vendor_id=vendor_id)
            self.ctx.record(session, actor, "key.deleted", vendor_id, details)
            return announced

        deleted: tuple[str, str | None] = self.ctx.audited(actor, "key.delete", vendor_id, work)
        return deleted

    def check_can_change(self, actor: str, vendor_id: str, action: str) -> KeyStatus:
        """Before opening a form: the key exists and this person may change it (refusal audited)."""
        status = self.status(vendor_id)
        self.ctx.audited(
            actor,
            action,
            status.vendor_id,
            lambda s: self.require_owner_or_admin(actor, self._get(s, status.vendor_id)),
        )
        return status

    def _get(self, session: Session, vendor_id: str, *, for_update: bool = False) -> Key:
        key = self.ctx.keys.get(session, vendor_id=vendor_id, for_update=for_update)
        if key is None:
            raise NotFound(
                "No key is registered for {vendor_id}. Register it with `/coupang-key add`.", vendor_id=vendor_id
            )
        return key

    # ------------------------------------------------------------ bulk import

    def import_rows(
        self,
        actor: str,
        rows: Iterable[tuple[int, Mapping[str, str | None]]],
        *,
        skip_invalid: bool = False,
        columns: Mapping[str, str] | None = None,
    ) -> ImportReport:
        """Check every row first; import all or nothing unless ``skip_invalid``. Messages never echo secrets.

        The keys go in with one INSERT per table and chunk, and one audit entry covers the whole import: it
        names how many keys and a SHA-256 over every imported row's digest (:func:`row_digest`)."""
        report = ImportReport()
        valid: list[NewKey] = []
        seen: dict[str, int] = {}
        today = self.ctx.today()
        for line, row in rows:
            try:
                new = validate_registration(form_from_csv(row), today)
                if (first := seen.get(new.vendor_id)) is not None:
                    again = N_("{vendor_id} is already on line {line}: that line is used, this one is not.")
                    raise InvalidInput.one("vendor_id", again, vendor_id=new.vendor_id, line=first)
                seen[new.vendor_id] = line
                valid.append(new)
            except InvalidInput as error:
                report.errors.append((line, describe_row_error(error, row, columns)))

        def work(session: Session) -> None:
            existing = self.ctx.keys.registered(session, list(seen))
            taken = N_("{vendor_id} already has a key.")
            report.errors.extend(
                (seen[v], describe_row_error(InvalidInput.one("vendor_id", taken, vendor_id=v), {}, columns))
                for v in seen
                if v in existing
            )
            report.errors.sort()
            fresh = [n for n in valid if n.vendor_id not in existing]
            if report.errors and not skip_invalid:
                raise InvalidInput({"file": f"{len(report.errors)} invalid row(s)"})
            if not fresh:
                return
            now = self.ctx.clock.now()
            generations = self.ctx.keys.next_generations(session, [n.vendor_id for n in fresh])
            digest = hashlib.sha256()
            for start in range(0, len(fresh), IMPORT_CHUNK):
                chunk = fresh[start : start + IMPORT_CHUNK]
                key_rows = [_key_row(n, generations[n.vendor_id], now) for n in chunk]
                self.ctx.keys.add_many(session, key_rows, [(n.access_key, n.secret_key) for n in chunk])
                for new, key_row in zip(chunk, key_rows, strict=True):
                    digest.update(row_digest(new, key_row["generation"], key_row["secret_fingerprint"]))
            self.ctx.record(
                session, actor, "key.imported", None, {"keys": len(fresh), "rows_sha256": digest.hexdigest()}
            )
            report.imported = [n.vendor_id for n in fresh]

        try:
            self.ctx.audited(actor, "key.import", None, work)
        except InvalidInput:
            if not report.errors:
                raise
        if not self.ctx.settings.channel:
            imported = set(report.imported)
            report.no_channel = [n.vendor_id for n in valid if not n.channel_id and n.vendor_id in imported]
        return report

    # ------------------------------------------------------------ master key

    def rotate_master_key(self, actor: str) -> tuple[int, int] | None:
        """Re-encrypt every secret and re-MAC the audit chain under the first master key.

        Every secret must decrypt (a failure names the vendor ID) and the chain must verify before anything is
        re-sealed; any failure raises and the transaction rolls back, changing nothing. With a single master key
        everything is checked the same way, but there is nothing to rotate: None, and nothing is written.
        """
        with self.ctx.transaction() as session:
            changed = sum(self.ctx.keys.reencrypt(key) for key in self.ctx.keys.all(session))
            reencrypt_consumers(session, self.ctx.keys.keyring)
            check = self.ctx.audit.verify(session)
            if not check.ok:
                raise NotAllowed(f"Refusing to rotate: {check.describe()}. Run `coupang-keybot audit verify`.")
            if len(self.ctx.settings.master_keys) == 1:
                return None
            entries = self.ctx.audit.rechain(session)
            self.ctx.record(session, actor, "master_key.rotated", None, {"keys": changed, "audit_entries": entries})
        return changed, entries


IMPORT_CHUNK = 2_000  # keys per INSERT in a bulk import: bounded memory, few round trips


def _key_row(new: NewKey, generation: int, now: datetime) -> dict[str, Any]:
    """The ``keys`` columns of a new key, without its secrets (the repository encrypts those)."""
    linking = new.linking
    return {
        "vendor_id": new.vendor_id,
        "label": new.label,
        "generation": generation,
        "issued_on": new.issued_on,
        "expires_on": new.expires_on,
        "channel_id": new.channel_id,
        "owner_id": new.owner_id,
        "integration": str(linking.integration),
        "integrator_name": linking.integrator_name,
        "company_name": linking.company_name,
        "company_url": linking.company_url,
        "ip_addresses": list(linking.ip_addresses),
        "created_at": now,
        "updated_at": now,
    }


def row_digest(new: NewKey, generation: int, fingerprint: str) -> bytes:
    """SHA-256 of what a single registration's audit entry would say about one imported key (no secrets).

    An import's audit entry stores ``rows_sha256``: SHA-256 over these digests in file order, so the chain
    commits to every imported row without one entry per key."""
    facts = {
        "vendor_id": new.vendor_id,
        "label": new.label,
        "generation": generation,
        "expires_on": new.expires_on.isoformat(),
        "fingerprint": fingerprint,
        "linking": new.linking.summary(),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, ensure_ascii=False).encode()).digest()


FIELD_COLUMNS = {"channel_id": "channel", "owner_id": "owner"}  # a form field's CSV column, where the names differ


def describe_row_error(
    error: InvalidInput, row: Mapping[str, str | None], columns: Mapping[str, str] | None = None
) -> Msg:
    """A CSV row's refusal: each column's sentence after the column's name as the file spells it (``업체코드: …;
    label: …``), still to be rendered in a language, never quoting the row's keys."""
    names = columns or {}

    def heading(name: str) -> str:
        column = FIELD_COLUMNS.get(name, name)
        return names.get(column, column).replace("{", "{{").replace("}", "}}")

    each_column = "; ".join(f"{heading(name)}: {{{name}}}" for name in error.messages)
    return _without_secrets(Msg(each_column, error.messages), row)


def _without_secrets(msg: Msg, row: Mapping[str, str | None]) -> Msg:
    """A row whose columns slipped can put a key where a message quotes the value: never print it."""
    keys = [(v, f"[{c} hidden]") for c in ("access_key", "secret_key") if len(v := (row.get(c) or "").strip()) >= 8]

    def hide(value: Any) -> Any:
        if isinstance(value, Msg):
            return Msg(value.text, {name: hide(param) for name, param in value.params.items()})
        if isinstance(value, str):
            for secret, mark in keys:
                value = value.replace(secret, mark)
        return value

    return hide(msg) if keys else msg


CSV_ENCODINGS = ("utf-8-sig", "cp949")  # UTF-8 with or without BOM; CP949 (Excel on Korean Windows) ⊇ EUC-KR
CSV_MAX_LINE = 4096  # characters; a key row is a few hundred


def read_csv_text(path: Path) -> str:
    """The text of a CSV file in UTF-8 (with or without BOM) or CP949/EUC-KR; anything else (UTF-16, a binary
    file, a line no key row could fill) is refused with one sentence."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeybotError("Cannot read {path}: {reason}.", path=str(path), reason=exc.strerror) from None
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = ""
    if (not text and data) or re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text):
        raise KeybotError(
            "{path} is not a text CSV in UTF-8 or CP949 (EUC-KR): in Excel choose Save As › CSV UTF-8.",
            path=str(path),
        )
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > CSV_MAX_LINE:
            raise KeybotError(
                "{path}: line {line} is {length} characters long, far more than a key row: is this the right file?",
                path=str(path),
                line=number,
                length=len(line),
            )
    return text


CSV_COLUMNS = (
    "vendor_id",
    "label",
    "access_key",
    "secret_key",
    "issued_on",
    "expires_on",
    "channel",
    "owner",
    "integration",
    "integrator_name",
    "company_name",
    "company_url",
    "ip_addresses",
)


# the kind of integration as WING words it, as well as our own words
INTEGRATION_WORDS = {
    "integrator": "integrator",
    "연동업체": "integrator",
    "연동업체선택": "integrator",
    "self": "self",
    "직접입력": "self",
    "자체개발": "self",
}


def form_from_csv(row: Mapping[str, str | None]) -> RegistrationForm:
    def get(name: str) -> str:
        value = (row.get(name) or "").strip()
        # undo the apostrophe `keys export` puts before a cell a spreadsheet would run as a formula
        return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_START else value

    integration = re.sub(r"\s+", "", get("integration")).lower()

    return RegistrationForm(
        vendor_id=get("vendor_id"),
        label=get("label"),
        access_key=get("access_key"),
        secret_key=get("secret_key"),
        issued_on=get("issued_on") or None,
        expires_on=get("expires_on") or None,
        channel_id=get("channel") or None,
        owner_id=get("owner") or None,
        integration=INTEGRATION_WORDS.get(integration, integration) or None,
        integrator_name=get("integrator_name") or None,
        company_name=get("company_name") or None,
        company_url=get("company_url") or None,
        ip_addresses=get("ip_addresses") or None,
    )


def details_of(key: Key) -> KeyDetails:
    return KeyDetails(key.label, key.channel_id, key.owner_id)


def linking_of(key: Key | Row[Any]) -> LinkingInfo:
    return LinkingInfo(
        integration=rules.Integration(key.integration),
        integrator_name=key.integrator_name,
        company_name=key.company_name,
        company_url=key.company_url,
        ip_addresses=tuple(key.ip_addresses or ()),
    )


def apply_linking(key: Key, linking: LinkingInfo) -> None:
    key.integration = str(linking.integration)
    key.integrator_name = linking.integrator_name
    key.company_name = linking.company_name
    key.company_url = linking.company_url
    key.ip_addresses = list(linking.ip_addresses)
