"""The command line: ``coupang-keybot`` (same as ``python -m bot``). Exit codes: 0 ok, 1 refused/failed, 2 usage/config.

This module and :mod:`bot.__main__` are the only places that read the process environment.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import functools
import io
import itertools
import logging
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn, TextIO, cast
from zoneinfo import ZoneInfo

import orjson
from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot import consumers_cli, i18n
from bot.bootstrap import Services, build_services
from bot.config import ConfigError, Settings
from bot.environment import ENV_FILE, load_environment, open_database
from bot.i18n import N_, linking_summary, render, t
from bot.logs import configure_logging
from bot.rules import (
    EDITS_PER_WEEK,
    KeybotError,
    Phase,
    path_for,
    plain,
    quote,
    wing_advice,
)
from bot.services.base import cli_actor
from bot.services.keys import CSV_COLUMNS, KeyStatus, read_csv_text
from bot.services.reminders import describe_sweep, parse_as_of
from bot.services.sheet import Columns, HeaderError, read_header
from storage.audit import VerifyResult
from storage.crypto import DecryptionError
from storage.db import upgrade

OK, FAILED, USAGE = 0, 1, 2
ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"

logger = logging.getLogger("bot")


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_env_file(path: Path, example: Path) -> None:
    """Copy ``.env.example`` with a fresh master key filled in; mode 0600 because it holds that key."""
    template = example.read_text() if example.exists() else "KEYBOT_MASTER_KEY=\n"
    lines = [
        f"KEYBOT_MASTER_KEY={new_master_key()}" if line.startswith("KEYBOT_MASTER_KEY=") else line
        for line in template.splitlines()
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- commands


def environment_language() -> str:
    """KEYBOT_LANGUAGE when it is en or ko, else English: for what is said before the settings load."""
    raw = os.environ.get("KEYBOT_LANGUAGE") or dotenv_values(ENV_FILE).get("KEYBOT_LANGUAGE") or ""
    return raw.strip().lower() if raw.strip().lower() in i18n.LANGUAGES else i18n.ENGLISH


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    lang = environment_language()
    if ENV_FILE.exists():
        print(
            t(lang, "{file} already exists; not overwriting it (it holds your master key).", file=ENV_FILE),
            file=sys.stderr,
        )
        return FAILED
    write_env_file(ENV_FILE, ENV_EXAMPLE)
    print(
        t(
            lang,
            "Wrote {file} with a new KEYBOT_MASTER_KEY (mode 600). Back that key up somewhere safe: "
            "without it the stored keys cannot be decrypted.",
            file=ENV_FILE,
        ),
        file=out,
    )
    return OK


def cmd_db_upgrade(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    upgrade(services.engine)
    print(t(services.ctx.settings.language, "Database is up to date."), file=out)
    return OK


# English prints the phase's code (scripts read it); Korean its meaning
PHASE_WORDS = {Phase.HEALTHY: N_("healthy"), Phase.REISSUE_WINDOW: N_("reissue window"), Phase.EXPIRED: N_("expired")}
REQUEST_STATES = (N_("pending"), N_("approved"))  # an open request's state, shown by its translation


def format_status(s: KeyStatus, tz: ZoneInfo, lang: str = "en") -> str:
    """One key for a terminal: the same facts as a ``/coupang-key status`` entry, in plain text."""

    lines = [
        t(
            lang,
            "{vendor_id}  {label}  (access key {mask}, secret {fingerprint}, gen {generation})",
            vendor_id=s.vendor_id,
            label=s.label,
            mask=s.access_key_mask,
            fingerprint=s.secret_fingerprint,
            generation=s.generation,
        ),
        t(
            lang,
            "  expires {date}  {days_left}  [{phase}]",
            date=i18n.day(lang, s.expires_on),
            days_left=i18n.days_left(lang, s.days_left),
            phase=s.phase if lang == i18n.ENGLISH else t(lang, PHASE_WORDS[s.phase]),
        ),
        f"  {render(lang, wing_advice(path_for(s.days_left)))}",
        t(
            lang,
            "  {linking}  ·  linking-info edits in the last 7 days {used}/{limit}",
            linking=linking_summary(lang, s.linking),
            used=s.edits_last_7_days,
            limit=EDITS_PER_WEEK,
        ),
    ]
    extra = []
    if s.propagating_until:
        extra.append(
            t(lang, "Coupang applies the last change by {time}", time=i18n.moment(lang, s.propagating_until, tz))
        )
    if s.verified_at:
        extra.append(
            t(
                lang,
                "checked {outcome} {time}",
                outcome=s.verify_outcome if lang == i18n.ENGLISH else i18n.outcome_label(lang, s.verify_outcome or ""),
                time=i18n.moment(lang, s.verified_at, tz),
            )
        )
    if s.open_request:
        state = s.open_request.status
        extra.append(t(lang, "reissue request #{id} {state}", id=s.open_request.id, state=t(lang, state)))
    if s.consumers:
        extra.append(t(lang, "consumers {done}/{total}", done=s.consumers[0], total=s.consumers[1]))
    if not s.reminder_channel:
        extra.append(t(lang, "no reminder channel: no reminders (set KEYBOT_CHANNEL)"))
    if extra:
        lines.append("  " + "  ·  ".join(extra))
    return "\n".join(lines)


def cmd_status(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    lang = services.ctx.settings.language
    close: list[str] = []  # --fail-within: noted while the keys stream past

    def watched(statuses: Iterable[KeyStatus]) -> Iterator[KeyStatus]:
        for status in statuses:
            if args.fail_within is not None and status.days_left <= args.fail_within:
                close.append(status.vendor_id)
            yield status

    statuses = watched(services.keys.each_status())
    if args.expiring is not None:
        statuses = (s for s in statuses if s.days_left <= args.expiring)
    if args.json:
        write_json_array((s.as_json() for s in statuses), out)
    elif args.expiring is not None:
        for status in statuses:  # most urgent first, as each_status gives them
            line = f"{status.vendor_id}  {status.label}  {i18n.days_left(lang, status.days_left)}  "
            print(line + i18n.day(lang, status.expires_on), file=out)
    elif (first := next(statuses, None)) is None:
        print(
            t(lang, "No keys registered yet. Add one with /coupang-key add or `coupang-keybot keys import`."), file=out
        )
    else:
        tz = services.ctx.settings.timezone
        for chunk in _batches(itertools.chain([first], statuses), WRITE_CHUNK):
            out.write("".join(format_status(status, tz, lang) + "\n" for status in chunk))
    if close:
        print(
            t(
                lang,
                "{count} key(s) expire within {days} days or have expired: {vendor_ids}.",
                count=len(close),
                days=args.fail_within,
                vendor_ids=", ".join(close),
            ),
            file=sys.stderr,
        )
        return FAILED
    return OK


def cmd_calendar(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    from bot.calendar import calendar

    now = services.ctx.clock.now()
    lang = services.ctx.settings.language
    out.write(calendar(services.keys.statuses(now=now), now, services.ctx.today(now), lang, args.days))
    return OK


WRITE_CHUNK = 1_000  # entries per write: few system calls, bounded memory


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def write_json_array(items: Iterable[Any], out: TextIO) -> None:
    """The same text as ``json.dump(list(items), out, indent=2, ensure_ascii=False)`` plus a newline, written
    chunk by chunk as the items arrive (never the whole list in memory), encoded by orjson: ten times faster."""
    opened = False
    for chunk in _batches(items, WRITE_CHUNK):
        elements = orjson.dumps(chunk, option=orjson.OPT_INDENT_2).decode()[2:-2]  # without "[\n" and "\n]"
        out.write((",\n" if opened else "[\n") + elements)
        opened = True
    out.write("\n]\n" if opened else "[]\n")


def csv_lines(text: str) -> Iterator[str]:
    """``text`` line by line with the line ends kept, as csv wants it. Not ``io.StringIO(text)``: that keeps a
    second copy at four bytes a character (60 MB beside a 15 MB file of 100,000 keys)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end


# what each CSV column holds, in WING's words: Korean names a column by its header and its meaning
COLUMN_MEANINGS = {
    "vendor_id": N_("vendor ID"),
    "label": N_("display name"),
    "access_key": N_("Access Key"),
    "secret_key": N_("Secret Key"),
    "issued_on": N_("issue date"),
    "expires_on": N_("expiry date"),
    "channel": N_("channel"),
    "owner": N_("owner"),
    "integration": N_("linking method"),
    "integrator_name": N_("integrator company"),
    "company_name": N_("company name"),
    "company_url": N_("company URL"),
    "ip_addresses": N_("IP addresses"),
}


def column_names(lang: str, columns: Iterable[str]) -> str:
    """CSV headers as the file spells them; in Korean each with its meaning: ``vendor_id(업체코드)``."""
    if lang == i18n.ENGLISH:
        return ", ".join(columns)
    return ", ".join(f"{c}({t(lang, COLUMN_MEANINGS[c])})" if c in COLUMN_MEANINGS else c for c in columns)


def header_problem(lang: str, path: Path, error: HeaderError) -> str:
    """A header the import cannot use, in ``lang``: what is missing or unknown, and what the columns are."""
    if error.missing:
        problem = t(lang, "missing columns: {columns}", columns=column_names(lang, error.missing))
    else:
        problem = t(lang, "unknown columns: {columns}", columns=", ".join(error.unknown))
    wanted = column_names(lang, CSV_COLUMNS)
    expected = t(lang, "{path}: {problem}. Expected: {columns}.", path=path, problem=problem, columns=wanted)
    hint = t(lang, "Korean headers such as 업체코드 and 만료일 work too.")
    return f"{expected} {hint}"


def cmd_keys_import(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    lang = services.ctx.settings.language
    lines = csv_lines(read_csv_text(path))
    reader = csv.reader(lines)
    required = ("vendor_id", "label") if args.update else ("vendor_id", "label", "access_key", "secret_key")
    try:
        columns = read_header(next(reader, []), required=required)
    except HeaderError as exc:
        print(header_problem(lang, path, exc), file=sys.stderr)
        return FAILED
    # rows are parsed as they are checked: 100,000 of them are never all in memory as dictionaries
    rows = ((reader.line_num, columns.row(values)) for values in reader if any(v.strip() for v in values))
    try:
        if args.update:
            return report_update(services, path, rows, columns, args, out)
        report = services.keys.import_rows(cli_actor(), rows, skip_invalid=args.skip_invalid, columns=columns.theirs)
    except csv.Error as exc:  # e.g. a quoted field of many short lines, longer than any key row
        raise KeybotError(
            "{path}: line {line} cannot be read as CSV ({reason}).", path=str(path), line=reader.line_num, reason=exc
        ) from None
    for line, reason in report.errors:
        print(f"{path}:{line}: {plain(render(lang, reason))}", file=sys.stderr)
    if report.errors and not args.skip_invalid:
        print(
            t(
                lang,
                "Nothing imported: fix the {count} row(s) above, or pass --skip-invalid.",
                count=len(report.errors),
            ),
            file=sys.stderr,
        )
        return FAILED
    if report.errors:
        done = t(
            lang,
            "Imported {count} key(s), skipped {skipped} invalid row(s).",
            count=len(report.imported),
            skipped=len(report.errors),
        )
    else:
        done = t(lang, "Imported {count} key(s).", count=len(report.imported))
    print(done, file=out)
    warn_no_channel(lang, report.no_channel)
    return OK if report.imported or not report.errors else FAILED


def report_update(
    services: Services,
    path: Path,
    rows: Iterable[tuple[int, dict[str, str]]],
    columns: Columns,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    """``keys import --update``: apply the sheet, then say what was added, updated, unchanged and refused, and
    deliver the new keys to their consumers now (a running ``serve`` retries what does not arrive)."""
    lang = services.ctx.settings.language
    report = services.sheet.update(
        cli_actor(), rows, new_keys=args.new_keys, skip_invalid=args.skip_invalid, columns=columns.theirs
    )
    for line, reason in report.refused:
        print(f"{path}:{line}: {plain(render(lang, reason))}", file=sys.stderr)
    applied = not report.refused or args.skip_invalid
    if not applied:
        print(
            t(
                lang,
                "Nothing changed: fix the {count} row(s) above, or pass --skip-invalid.",
                count=len(report.refused),
            ),
            file=sys.stderr,
        )
        return FAILED
    print(
        t(
            lang,
            "Added {added}, updated {updated}, new keys {new_keys}, unchanged {unchanged}, refused {refused}.",
            added=len(report.added),
            updated=len(report.updated),
            new_keys=len(report.new_keys),
            unchanged=len(report.unchanged),
            refused=len(report.refused),
        ),
        file=out,
    )
    for label, vendor_ids in ((N_("Added: {ids}"), report.added), (N_("Updated: {ids}"), report.updated)):
        if vendor_ids:
            print(t(lang, label, ids=", ".join(vendor_ids)), file=out)
    for vendor_id in report.new_keys:
        states = services.rollout.deliver_now(vendor_id)
        holding = sum(1 for s in states if s.state in ("delivered", "confirmed"))
        print(
            t(
                lang,
                "New key for {vendor_id}: delivered to {holding} of {total} consumer(s).",
                vendor_id=vendor_id,
                holding=holding,
                total=len(states),
            ),
            file=out,
        )
    warn_no_channel(lang, report.no_channel)
    touched = report.added or report.updated or report.new_keys or report.unchanged
    return OK if touched or not report.refused else FAILED


def warn_no_channel(lang: str, vendor_ids: Sequence[str]) -> None:
    if vendor_ids:
        print(
            t(
                lang,
                "Warning: {count} key(s) have no channel and KEYBOT_CHANNEL is not set, so they get no reminders: "
                "{vendor_ids}. Set KEYBOT_CHANNEL.",
                count=len(vendor_ids),
                vendor_ids=", ".join(vendor_ids),
            ),
            file=sys.stderr,
        )


EXPORT_ENCODINGS = {"utf-8": "utf-8-sig", "cp949": "cp949"}  # UTF-8 with a BOM, so Excel reads Korean right


def cmd_keys_export(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    """The import's columns for every key, without secrets: edit the sheet and import it with --update."""
    encoding = EXPORT_ENCODINGS[args.encoding]
    line = io.StringIO()
    writer = csv.writer(line, lineterminator="\r\n")
    chunks: list[bytes] = []
    for row in services.sheet.export():
        writer.writerow(row)
        try:
            chunks.append(line.getvalue().encode(encoding if not chunks else encoding.removesuffix("-sig")))
        except UnicodeEncodeError as exc:
            raise KeybotError(
                "{vendor_id} has characters CP949 cannot hold ({text}): export with --encoding utf-8.",
                vendor_id=row[0],
                text=quote(exc.object[exc.start : exc.end]),
            ) from None
        line.seek(0)
        line.truncate()
    data, count = b"".join(chunks), len(chunks) - 1
    if args.output:
        with open_private(Path(args.output), "wb") as handle:
            handle.write(data)
        lang = services.ctx.settings.language
        print(t(lang, "Exported {count} key(s) to {path}.", count=count, path=args.output), file=out)
    elif hasattr(out, "buffer"):
        out.flush()
        out.buffer.write(data)
    else:
        out.write(data.decode(encoding).removeprefix("\ufeff"))
    return OK


@contextlib.contextmanager
def open_private(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file only its owner can read (0600) whatever the umask, one that existed narrowed too: exports name every
    seller, like the database they come from (INTERFACE.md). A file that cannot be written is one sentence."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
    except OSError as exc:
        raise KeybotError("Cannot write {file}: {reason}.", file=str(path), reason=exc.strerror) from None
    binary = "b" in mode
    with os.fdopen(descriptor, mode, encoding=None if binary else "utf-8", newline=None if binary else "") as handle:
        yield handle


# storage.audit's reasons for a broken chain, translated here (storage does not translate)
AUDIT_BREAKS = (
    N_("expected entry {expected} here: an entry was deleted, inserted or reordered"),
    N_("does not link to the entry before it"),
    N_("was written with a master key that is not configured"),
    N_("its content does not match its MAC (edited)"),
    N_("entries after this point are missing"),
)


def describe_verify(lang: str, result: VerifyResult) -> str:
    if result.ok:
        return t(lang, "audit chain intact: {count} entries verified", count=result.checked)
    reason = t(lang, result.reason or "", expected=result.checked + 1)
    return t(lang, "audit chain broken at entry {seq}: {reason}", seq=result.broken_seq, reason=reason)


def cmd_audit_verify(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    result = services.audit.verify()
    print(describe_verify(services.ctx.settings.language, result), file=out if result.ok else sys.stderr)
    return OK if result.ok else FAILED


def cmd_audit_export(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    if args.output is None:
        services.audit.export(out, args.format)
        return OK
    target = Path(args.output)
    with open_private(target) as handle:
        services.audit.export(cast(TextIO, handle), args.format)
    print(t(services.ctx.settings.language, "Wrote the audit log to {file} (mode 600).", file=target), file=out)
    return OK


def cmd_master_key_rotate(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    rotated = services.keys.rotate_master_key(cli_actor())
    if rotated is None:
        print(
            t(
                services.ctx.settings.language,
                "KEYBOT_MASTER_KEY holds one key, so there is nothing to rotate (every secret decrypts with it). "
                "To rotate, put the new key first and the old one after it (NEW,OLD), then run this again.",
            ),
            file=out,
        )
        return OK
    keys, entries = rotated
    done = t(
        services.ctx.settings.language,
        "Re-encrypted {keys} key(s) and re-sealed {entries} audit entries under the first KEYBOT_MASTER_KEY. "
        "You can now remove the old key(s) from KEYBOT_MASTER_KEY.",
        keys=keys,
        entries=entries,
    )
    print(done, file=out)
    return OK


def cmd_verify(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    """One signed read-only call to Coupang with the stored key; exit 0 only when the key works."""
    result = services.verification.verify(cli_actor(), args.vendor_id)
    settings = services.ctx.settings
    local = result.checked_at.astimezone(settings.timezone)
    when = f"{local:%Y-%m-%d %H:%M} {i18n.zone_after(settings.language, local, settings.timezone)}"
    print(
        t(
            settings.language,
            "{vendor_id}  {outcome}  (checked {time})",
            vendor_id=result.vendor_id,
            outcome=result.outcome
            if settings.language == i18n.ENGLISH
            else i18n.outcome_label(settings.language, result.outcome),  # English: the code itself, which scripts read
            time=when,
        ),
        file=out,
    )
    print(render(settings.language, result.detail), file=out)
    return OK if result.works else FAILED


def cmd_backup(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    from bot.backup import BackupError, backup

    target = Path(args.file)
    try:
        backup(services.engine, target)
    except BackupError as exc:
        print(str(exc), file=sys.stderr)
        return USAGE if exc.usage else FAILED
    except OSError as exc:
        lang = services.ctx.settings.language
        print(t(lang, "Cannot write {target}: {reason}.", target=target, reason=exc.strerror), file=sys.stderr)
        return FAILED
    done = t(
        services.ctx.settings.language,
        "Backed up the database to {target} ({size} bytes).",
        target=target,
        size=target.stat().st_size,
    )
    print(done, file=out)
    return OK


def cmd_serve(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    from bot.serve import serve  # Slack-facing code is imported only when serving

    return serve(services, port=args.port, scheduler=not args.no_scheduler, out=out)


CONSOLE_LOG = Path("data/console.log")


def log_to_file(path: Path, lang: str, out: TextIO) -> None:
    """The console's terminal is for the conversation: log lines that would go there go to ``path`` (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.stdout):
            to_file = logging.FileHandler(path, encoding="utf-8")
            to_file.setFormatter(handler.formatter)
            for log_filter in handler.filters:
                to_file.addFilter(log_filter)
            root.removeHandler(handler)
            root.addHandler(to_file)
    print(t(lang, "Log lines go to {path}.", path=str(path)), file=out)


def cmd_console(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    from bot.console import run_console  # drives the Slack app locally

    log_to_file(CONSOLE_LOG, services.ctx.settings.language, out)
    return run_console(services, user=args.as_user, out=out)


def cmd_console_demo(args: argparse.Namespace, out: TextIO) -> int:
    """The demo needs no configuration and never opens the configured database."""
    from bot.console.demo import run_demo
    from bot.console.session import terminal_readers

    try:
        base: Settings | None = load_environment()
    except ConfigError:
        base = None
    configure_logging("WARNING")
    log_to_file(Path(tempfile.gettempdir()) / "keybot-console-demo.log", base.language if base else "en", out)
    read, read_secret = terminal_readers()
    return run_demo(base, user=args.as_user, out=out, read=read, read_secret=read_secret)


def cmd_reminders_run(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    settings = services.ctx.settings
    try:
        now = parse_as_of(args.as_of, settings.timezone) if args.as_of else None
    except ValueError:
        example = "2026-12-01T09:00+09:00"
        wrong = t(
            settings.language,
            "--as-of {value} is not an ISO-8601 time, e.g. {example}.",
            value=plain(quote(args.as_of)),
            example=example,
        )
        print(wrong, file=sys.stderr)
        return USAGE
    lang = settings.language
    if args.dry_run:
        report = services.reminders.sweep(None, now=now, dry_run=True)
        for line in describe_sweep(report, settings.timezone, lang):
            print(line, file=out)
        return OK
    if not settings.slack_bot_token:
        print(t(lang, "SLACK_BOT_TOKEN is not set: nothing can be posted (try --dry-run)."), file=sys.stderr)
        return USAGE
    from bot.slack.app import build_client  # Slack-facing code is imported only when posting
    from bot.slack.reminders import sweep_once

    with _one_line_logs():  # what failed is said below in a sentence, not as a stack trace
        run = sweep_once(services, build_client(settings), now=now)  # the scheduled sweep: reminders, then summary
    if run.report is None:
        if isinstance(run.failure, (OperationalError, InterfaceError)):
            raise run.failure  # the database: said as every command says it
        print(
            t(lang, "The reminder sweep failed ({reason}); the next sweep retries.", reason=run.error), file=sys.stderr
        )
        return FAILED
    for line in describe_sweep(run.report, settings.timezone, lang):
        print(line, file=out)
    if run.summary_posted:
        print(t(lang, "Posted the weekly summary to {channel}.", channel=settings.channel), file=out)
    elif run.summary_error is not None:
        text = N_("Could not post the weekly summary to {channel} ({reason}); the next sweep retries it.")
        print(t(lang, text, channel=settings.channel, reason=run.summary_error), file=out)
    return OK if run.ok else FAILED


@contextlib.contextmanager
def _one_line_logs() -> Iterator[None]:
    """Log records keep their line but lose their traceback while this runs (a terminal, not a server log)."""

    class NoTraceback(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            return True

    handlers, quiet = list(logging.getLogger().handlers), NoTraceback()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


# ---------------------------------------------------------------- parser

Handler = Callable[[Services, argparse.Namespace, TextIO], int]


# argparse's common complaints, as it words them (Python 3.11+), and ours
ARGPARSE_ERRORS = (
    (r"unrecognized arguments: (?P<args>.*)", N_("unknown arguments: {args}")),
    (r"the following arguments are required: (?P<args>.*)", N_("these arguments are missing: {args}")),
    (
        r"argument (?P<name>\S+): invalid choice: (?P<value>.*) \(choose from (?P<choices>.*)\)",
        N_("{name}: {value} is not one of {choices}"),
    ),
    (r"argument (?P<name>\S+): invalid int value: (?P<value>.*)", N_("{name}: {value} is not a whole number")),
    (r"argument (?P<name>\S+): expected one argument", N_("{name} needs a value")),
)


class LocalizedParser(argparse.ArgumentParser):
    """argparse with its own words (usage, section titles, -h) in ``lang``; sub-parsers inherit the language."""

    def __init__(self, *args: Any, lang: str = i18n.ENGLISH, **kwargs: Any) -> None:
        self.lang = lang
        kwargs["add_help"] = False  # our own -h, with its help in ``lang``
        super().__init__(*args, **kwargs)
        self._positionals.title = t(lang, "positional arguments")
        self._optionals.title = t(lang, "options")
        self.add_argument("-h", "--help", action="help", help=t(lang, "show this help and exit"))

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", functools.partial(LocalizedParser, lang=self.lang))
        return super().add_subparsers(**kwargs)

    def format_usage(self) -> str:
        return self._localize(super().format_usage())

    def format_help(self) -> str:
        return self._localize(super().format_help())

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        said = self._problem(message)
        self.exit(USAGE, t(self.lang, "{prog}: error: {message}", prog=self.prog, message=said) + "\n")

    def _problem(self, message: str) -> str:
        """argparse's own complaint (English, from its gettext domain) in ``lang`` when it is a common one."""
        if self.lang == i18n.ENGLISH:
            return message
        for pattern, text in ARGPARSE_ERRORS:
            if found := re.fullmatch(pattern, message):
                params = found.groupdict()
                if params.get("name", "-").endswith("command"):  # the sub-command's dest: command, db_command…
                    params["name"] = t(self.lang, "sub-command")
                return t(self.lang, text, **params)
        return message

    def _localize(self, text: str) -> str:
        usage = t(self.lang, "usage:")
        return text.replace("usage:", usage, 1) if text.startswith("usage:") else text


def build_parser(lang: str = i18n.ENGLISH) -> argparse.ArgumentParser:
    """The parser, its help in ``lang`` (``coupang-keybot --help`` reads KEYBOT_LANGUAGE)."""
    parser = LocalizedParser(
        prog="coupang-keybot", description=t(lang, "Keeps Coupang Open API keys alive."), lang=lang
    )
    sub = parser.add_subparsers(dest="command", title=t(lang, "commands"))

    serve = sub.add_parser("serve", help=t(lang, "run the bot (default)"))
    serve.add_argument("--port", type=int, default=None, help=t(lang, "HTTP port (default $PORT or 3000)"))
    serve.add_argument("--no-scheduler", action="store_true", help=t(lang, "do not run reminders and probes"))
    serve.set_defaults(handler=cmd_serve)

    sub.add_parser("init", help=t(lang, "write .env with a new master key")).set_defaults(handler=None)

    db = sub.add_parser("db", help=t(lang, "database maintenance")).add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help=t(lang, "apply migrations")).set_defaults(handler=cmd_db_upgrade)

    status = sub.add_parser("status", help=t(lang, "every key, most urgent first"))
    status.add_argument("--json", action="store_true", help=t(lang, "print JSON"))
    status.add_argument(
        "--fail-within",
        type=int,
        metavar="DAYS",
        help=t(lang, "exit 1 when a key has at most DAYS days left (for cron/CI)"),
    )
    status.add_argument(
        "--expiring",
        type=int,
        metavar="DAYS",
        help=t(lang, "one line per key with at most DAYS days left (expired too)"),
    )

    cal = sub.add_parser("calendar", help=t(lang, "iCalendar (RFC 5545): each key's D-14 day and expiry day"))
    cal.add_argument("--days", type=int, metavar="N", help=t(lang, "only the events of the next N days"))
    cal.set_defaults(handler=cmd_calendar)
    status.set_defaults(handler=cmd_status)

    verify = sub.add_parser("verify", help=t(lang, "check with Coupang that a stored key works (exit 1 if not)"))
    verify.add_argument("vendor_id", metavar="VENDOR_ID")
    verify.set_defaults(handler=cmd_verify)

    keys = sub.add_parser("keys", help=t(lang, "bulk operations")).add_subparsers(dest="keys_command", required=True)
    imp = keys.add_parser(
        "import", help=t(lang, "register keys from a CSV file ({columns})", columns=", ".join(CSV_COLUMNS))
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--skip-invalid", action="store_true", help=t(lang, "import the valid rows, report the rest"))
    imp.add_argument(
        "--update",
        action="store_true",
        help=t(lang, "also update registered keys from their rows (the sheet is the truth)"),
    )
    imp.add_argument(
        "--new-keys",
        action="store_true",
        help=t(lang, "with --update: rows with other keys record them as a reissued key"),
    )
    imp.set_defaults(handler=cmd_keys_import)
    exp = keys.add_parser("export", help=t(lang, "every key in the import's columns, without secrets (for Excel)"))
    exp.add_argument("--encoding", choices=tuple(EXPORT_ENCODINGS), default="utf-8", help=t(lang, "file encoding"))
    exp.add_argument("--output", metavar="FILE", help=t(lang, "write to FILE (mode 600) instead of standard output"))
    exp.set_defaults(handler=cmd_keys_export)

    audit = sub.add_parser("audit", help=t(lang, "the audit log")).add_subparsers(dest="audit_command", required=True)
    audit.add_parser("verify", help=t(lang, "check the chain")).set_defaults(handler=cmd_audit_verify)
    export = audit.add_parser("export", help=t(lang, "write the log to standard output"))
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv", help=t(lang, "file format"))
    export.add_argument("--output", metavar="FILE", help=t(lang, "write to FILE (mode 600) instead of standard output"))
    export.set_defaults(handler=cmd_audit_export)

    reminders = sub.add_parser("reminders", help=t(lang, "milestone reminders")).add_subparsers(
        dest="reminders_command", required=True
    )
    run = reminders.add_parser("run", help=t(lang, "one reminder sweep now"))
    run.add_argument(
        "--as-of", help=t(lang, "sweep as if the clock read this ISO-8601 time (no zone: KEYBOT_TIMEZONE)")
    )
    run.add_argument("--dry-run", action="store_true", help=t(lang, "print what would be posted; record nothing"))
    run.set_defaults(handler=cmd_reminders_run)

    mk = sub.add_parser("master-key", help=t(lang, "master key maintenance")).add_subparsers(
        dest="mk_command", required=True
    )
    mk.add_parser("rotate", help=t(lang, "re-encrypt everything under the first key")).set_defaults(
        handler=cmd_master_key_rotate
    )

    backup = sub.add_parser("backup", help=t(lang, "a consistent copy of the database, safe while the bot runs"))
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(handler=cmd_backup)
    consumers_cli.add_parser(sub, lang)

    console = sub.add_parser("console", help=t(lang, "the bot in this terminal: type /coupang-key … as in Slack"))
    console.add_argument(
        "--as", dest="as_user", metavar="U…", help=t(lang, "act as this Slack user (default: first admin)")
    )
    console.add_argument("--demo", action="store_true", help=t(lang, "throwaway database with sample keys and :tick"))
    console.set_defaults(handler=cmd_console)

    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    lang = environment_language()
    args = build_parser(lang).parse_args(argv)
    if args.command is None:
        args = build_parser(lang).parse_args(["serve", *(argv or [])])
    if args.command == "init":
        return cmd_init(args, out)
    if args.command == "console" and args.demo:
        return cmd_console_demo(args, out)
    try:
        settings = load_environment()
        engine = open_database(settings.database_url)
    except ConfigError as exc:
        lang = environment_language()
        problem = t(lang, exc.message, **exc.params)
        print(t(lang, "Configuration error: {problem}", problem=problem), file=sys.stderr)
        return USAGE
    configure_logging(settings.log_level, settings.log_format, settings=settings)
    services = build_services(settings, engine=engine)
    try:
        if args.command != "db":
            upgrade(services.engine)
        code = int(args.handler(services, args, out))
        out.flush()  # here, so a reader that went away (`| head`) is noticed while we can still exit quietly
        return code
    except BrokenPipeError:
        if out is sys.stdout:  # nothing more can reach the reader; keep the interpreter's last flush quiet too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except DecryptionError as exc:
        print(
            t(
                settings.language,
                "{problem}. Is KEYBOT_MASTER_KEY the key this database was written with?",
                problem=exc,
            ),
            file=sys.stderr,
        )
        return FAILED
    except KeybotError as exc:
        print(plain(render(settings.language, exc.msg)), file=sys.stderr)
        return FAILED
    except (OperationalError, InterfaceError) as exc:
        print(cannot_reach(settings.database_url, exc, settings.language), file=sys.stderr)
        return USAGE
    finally:
        services.engine.dispose()


def cannot_reach(url: str, exc: DBAPIError, lang: str = i18n.ENGLISH) -> str:
    parsed = make_url(url)
    reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    return t(
        lang,
        "Cannot use the database at {url}: {reason}. Check DATABASE_URL and that the database is running.",
        url=parsed.render_as_string(hide_password=True),
        reason=reason,
    )
