"""The spreadsheet as the source of truth: ``keys export`` writes the import's columns (never a secret), and
``keys import --update`` reads the sheet back — new vendor IDs are registered, registered ones updated, each
change checked like the forms check it and audited per key. Keys reissued in WING go in with ``--new-keys``.

Korean Excel habits are understood here: Korean column names (업체코드, 만료일 …), dates such as 2026.09.01, and
the WING words 연동업체 / 직접 입력 for the kind of integration (see :func:`bot.services.keys.form_from_csv`)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import rules
from bot.i18n import N_
from bot.rules import InvalidInput, KeybotError, Msg
from bot.services.audit import spreadsheet_safe
from bot.services.base import Context
from bot.services.keys import (
    CSV_COLUMNS,
    KeyDetails,
    KeyService,
    NewKey,
    apply_linking,
    describe_row_error,
    form_from_csv,
    linking_of,
    validate_registration,
)
from storage import repositories as repo
from storage.models import Key
from storage.rollout import queue_generation

# each column's other names, as Korean teams head their sheets; matched without spaces, "_" or case
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {
    "vendor_id": ("업체코드", "vendor id"),
    "label": ("이름", "라벨"),
    "access_key": ("access key", "액세스키"),
    "secret_key": ("secret key", "시크릿키"),
    "issued_on": ("발급일",),
    "expires_on": ("만료일", "유효기간"),
    "channel": ("채널",),
    "owner": ("담당자",),
    "integration": ("연동 방식", "연동방식"),
    "integrator_name": ("연동업체", "연동업체명"),
    "company_name": ("업체명",),
    "company_url": ("url",),
    "ip_addresses": ("ip", "ip 주소", "ip주소"),
}


def _squeeze(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lstrip("\ufeff")).lower()


_BY_NAME = {_squeeze(alias): column for column, aliases in COLUMN_ALIASES.items() for alias in (column, *aliases)}


@dataclass(frozen=True)
class Columns:
    """A sheet's header: our column for each of the file's, and the file's own name for each of ours."""

    ours: tuple[str | None, ...]  # by position in the file; None for a column we do not know
    theirs: Mapping[str, str]  # our name -> the file's name, for messages

    def row(self, values: Sequence[str]) -> dict[str, str]:
        return {name: value for name, value in zip(self.ours, values, strict=False) if name is not None}


class HeaderError(KeybotError):
    """A header row without a required column or with one the bot does not know (the CLI names them as the
    person reads them: ``vendor_id(업체코드)`` in Korean)."""

    def __init__(self, missing: Sequence[str], unknown: Sequence[str]):
        self.missing, self.unknown = list(missing), list(unknown)
        super().__init__("missing columns: {missing}; unknown columns: {unknown}", missing=missing, unknown=unknown)


def read_header(header: Sequence[str], *, required: Iterable[str]) -> Columns:
    """Map a sheet's header row onto :data:`CSV_COLUMNS`, or refuse it with one sentence naming what to fix."""
    ours: list[str | None] = []
    theirs: dict[str, str] = {}
    unknown: list[str] = []
    for typed in header:
        column = _BY_NAME.get(_squeeze(typed))
        if column is None and typed.strip():
            unknown.append(typed.strip())
        elif column is not None and column in theirs:
            raise KeybotError(
                "Columns {first} and {second} both mean {column}: keep one.",
                first=theirs[column],
                second=typed.strip(),
                column=column,
            )
        elif column is not None:
            theirs[column] = typed.strip()
        ours.append(column)
    missing = [c for c in required if c not in theirs]
    if missing or unknown:
        raise HeaderError(missing, unknown)
    return Columns(tuple(ours), theirs)


# ---------------------------------------------------------------- export


def export_rows(session: Session) -> Iterator[list[str]]:
    """Each key as a row of :data:`CSV_COLUMNS`, by vendor ID; the key columns stay empty (secrets never leave)."""
    yield list(CSV_COLUMNS)
    for key in session.scalars(select(Key).order_by(Key.vendor_id).execution_options(yield_per=1_000)):
        linking = linking_of(key)
        row = {
            "vendor_id": key.vendor_id,
            "label": key.label,
            "issued_on": key.issued_on.isoformat() if key.issued_on else "",
            "expires_on": key.expires_on.isoformat(),
            "channel": key.channel_id or "",
            "owner": key.owner_id or "",
            "integration": str(linking.integration),
            "integrator_name": linking.integrator_name or "",
            "company_name": linking.company_name or "",
            "company_url": linking.company_url or "",
            "ip_addresses": " ".join(linking.ip_addresses),
        }
        yield [spreadsheet_safe(row.get(column, "")) for column in CSV_COLUMNS]


# ---------------------------------------------------------------- update


@dataclass
class SheetReport:
    """What one ``keys import --update`` did, by vendor ID. ``refused``: (line, reason) of rows not applied."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)  # a new generation recorded (and queued to its consumers)
    unchanged: list[str] = field(default_factory=list)
    refused: list[tuple[int, Msg]] = field(default_factory=list)
    no_channel: list[str] = field(default_factory=list)


KEYS_DIFFER = N_(
    "These keys differ from the stored ones. If you reissued the key in WING, import with --new-keys to record "
    "them as its new key."
)
BOTH_NEW = N_("A reissue gives a new Access Key and a new Secret Key: this row changes only one of them.")
NEEDS_KEYS = N_("{vendor_id} is not registered yet: fill in its Access Key and Secret Key.")


class SheetService:
    def __init__(self, ctx: Context, keys: KeyService):
        self.ctx = ctx
        self.keys = keys

    def export(self) -> Iterator[list[str]]:
        with self.ctx.reading() as session:
            yield from export_rows(session)

    def update(
        self,
        actor: str,
        rows: Iterable[tuple[int, Mapping[str, str | None]]],
        *,
        new_keys: bool = False,
        skip_invalid: bool = False,
        columns: Mapping[str, str] | None = None,
    ) -> SheetReport:
        """Apply a whole sheet: all rows or none, unless ``skip_invalid``. Every row is checked before anything is
        written, the rows of registered vendor IDs against the stored key too, so a refusal names each line.
        New keys are queued to their consumers; the caller delivers them (the CLI does at once)."""
        report = SheetReport()
        parsed: list[tuple[int, NewKey]] = []
        seen: dict[str, int] = {}
        today = self.ctx.today()
        for line, row in rows:
            try:
                new = validate_registration(form_from_csv(row), today, keys_required=False)
                if (first := seen.get(new.vendor_id)) is not None:
                    raise InvalidInput.one(
                        "vendor_id",
                        N_("{vendor_id} is already on line {line}: that line is used, this one is not."),
                        vendor_id=new.vendor_id,
                        line=first,
                    )
                seen[new.vendor_id] = line
                parsed.append((line, new))
            except InvalidInput as error:
                report.refused.append((line, describe_row_error(error, row, columns)))

        outcome = SheetReport()

        def work(session: Session) -> SheetReport:
            nonlocal outcome
            outcome = done = SheetReport(refused=list(report.refused))
            now = self.ctx.clock.now()
            for line, new in parsed:
                key = self.ctx.keys.get(session, vendor_id=new.vendor_id, for_update=True)
                try:  # every check of a row comes before its first write, so a refused row changes nothing
                    if key is None:
                        if not new.access_key:
                            raise InvalidInput.one("access_key", NEEDS_KEYS, vendor_id=new.vendor_id)
                        self.keys._insert(session, actor, new, "key.registered")
                        done.added.append(new.vendor_id)
                    else:
                        kind = self._update(session, actor, key, new, new_keys=new_keys, now=now)
                        getattr(done, kind).append(new.vendor_id)
                except InvalidInput as error:
                    done.refused.append((line, describe_row_error(error, {}, columns)))
            done.refused.sort(key=lambda refusal: refusal[0])
            if done.refused and not skip_invalid:
                raise InvalidInput({"file": f"{len(done.refused)} invalid row(s)"})  # rolls every row back
            return done

        try:
            report = self.ctx.audited(actor, "key.import", None, work)
        except InvalidInput:
            if not outcome.refused:
                raise
            report = SheetReport(refused=outcome.refused)  # nothing was applied
        if not self.ctx.settings.channel:
            touched = set(report.added) | set(report.updated) | set(report.new_keys)
            report.no_channel = [n.vendor_id for _, n in parsed if not n.channel_id and n.vendor_id in touched]
        return report

    def _check(self, session: Session, key: Key, new: NewKey, *, new_keys: bool, now: datetime) -> tuple[bool, bool]:
        """Whether the row carries a new key and changes the linking info; refuses what cannot be applied."""
        reissued = False
        if new.access_key:
            access, secret = self.ctx.keys.secrets(key)
            same_access = hmac.compare_digest(new.access_key.encode(), access.encode())
            same_secret = hmac.compare_digest(new.secret_key.encode(), secret.encode())
            if not (same_access and same_secret):
                if not new_keys:
                    raise InvalidInput.one("secret_key", KEYS_DIFFER)
                if same_access or same_secret:
                    raise InvalidInput.one("secret_key", BOTH_NEW)
                reissued = True
        relinked = new.linking != linking_of(key)
        if relinked and not reissued:  # with a new key the linking info was chosen when issuing it in WING
            times = repo.edit_times(session, vendor_id=key.vendor_id, since=repo.week_ago(now))
            rules.check_edit_allowed(times, now, self.ctx.settings.timezone)
        return reissued, relinked

    def _update(self, session: Session, actor: str, key: Key, new: NewKey, *, new_keys: bool, now: datetime) -> str:
        """One registered key brought in line with its row: the name of the report list it belongs in."""
        reissued, relinked = self._check(session, key, new, new_keys=new_keys, now=now)
        changed = self.keys.set_details(session, actor, key, KeyDetails(new.label, new.channel_id, new.owner_id), now)
        if reissued:
            self._new_generation(session, actor, key, new, now)
            return "new_keys"
        if relinked:
            self.keys.record_linking_edit(session, actor, key, new.linking, now)
        dated = new.expires_on != key.expires_on
        if dated:
            self.keys.set_expiry(session, actor, key, new.expires_on, now)
        return "updated" if changed or relinked or dated else "unchanged"

    def _new_generation(self, session: Session, actor: str, key: Key, new: NewKey, now: datetime) -> None:
        """The key reissued in WING: generation + 1 with the row's keys, delivered to every consumer. The row's
        dates count when they were changed; an unchanged row (an export with new keys pasted in) gets WING's
        180 days from today."""
        today = self.ctx.today(now)
        path = rules.reissue_path(key.expires_on, today)
        if new.expires_on != key.expires_on:
            issued_on, expires_on = new.issued_on, new.expires_on
        else:
            issued_on, expires_on = today, rules.expiry_from_issue(today)
        old_fingerprint = key.secret_fingerprint
        if new.linking != linking_of(key):
            apply_linking(key, new.linking)
        self.ctx.keys.new_generation(
            session,
            key=key,
            access_key=new.access_key,
            secret_key=new.secret_key,
            issued_on=issued_on,
            expires_on=expires_on,
            now=now,
        )
        key.access_deadline = rules.access_deadline(path, now)
        key.verified_at = key.verify_outcome = key.verify_detail = None
        consumers = queue_generation(session, vendor_id=key.vendor_id, generation=key.generation, now=now, thread=None)
        self.ctx.record(
            session,
            actor,
            "key.new_key_imported",
            key.vendor_id,
            {
                "generation": key.generation,
                "old_fingerprint": old_fingerprint,
                "fingerprint": key.secret_fingerprint,
                "expires_on": expires_on.isoformat(),
                "path": str(path),
                "consumers": consumers,
                "linking": new.linking.details(),
            },
        )
