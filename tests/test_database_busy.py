"""A slow or broken database, end to end over HTTP on SQLite and PostgreSQL: every Slack request is answered in
time, says the database is busy, and then nothing is saved; a database error in a modal is a sentence."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.i18n import t
from bot.services.base import BUSY
from bot.slack import ids
from bot.slack.failures import DATABASE_FAILED
from storage.db import make_engine, ping
from tests import factories
from tests.conftest import ADMIN, OWNER, USER
from tests.factories import SECRET_MARK
from tests.test_slack_keys import GOOD, open_register_modal

SLACK_BUDGET = 2.5  # Slack gives up at 3 s; the bot promises an answer by 2.5 s
HOLD_AT_MOST = 6.0  # the lock is released by the test; this only stops a failing test from hanging


@contextmanager
def audit_log_locked(db_url: str) -> Iterator[None]:
    """A second connection holds the audit log's write lock until the block ends (SQLite: the database's)."""
    locked, release, failed = threading.Event(), threading.Event(), []
    url = make_url(db_url)

    def hold() -> None:
        try:
            if url.get_backend_name() == "sqlite":
                connection = sqlite3.connect(url.database, isolation_level=None)
                connection.execute("BEGIN IMMEDIATE")
            else:
                connection = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
                connection.execute("LOCK TABLE audit_head IN EXCLUSIVE MODE")  # plain reads still pass
            locked.set()
            release.wait(HOLD_AT_MOST)
            connection.rollback()
            connection.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)
            locked.set()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait()
    assert not failed, failed
    try:
        yield
    finally:
        release.set()
        holder.join()


def timed(send):
    started = time.monotonic()
    answer = send()
    return answer, time.monotonic() - started


def test_an_add_while_the_audit_log_is_locked_is_answered_busy_in_time_and_saves_nothing(slack, db_url):
    open_register_modal(slack)
    with audit_log_locked(db_url):
        answer, seconds = timed(lambda: slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD))
        status = slack.slash(USER, "status")  # reading does not queue behind the writer
    assert answer.status == 200 and seconds < SLACK_BUDGET
    assert answer.json() == {"response_action": "errors", "errors": {"vendor_id": BUSY}}
    assert "busy" not in status.text_of() and "No keys" in status.text_of()
    # the lock is gone: nothing was saved late
    assert slack.services.keys.statuses() == []
    assert slack.services.audit.entries() == []
    # and trying again, as the sentence says, saves the key once
    again = slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD)
    assert again.text == ""
    assert [s.vendor_id for s in slack.services.keys.statuses()] == ["A00012345"]
    assert [e.action for e in slack.services.audit.entries()] == ["key.registered"]


def test_an_edit_while_the_audit_log_is_locked_is_answered_busy_in_time_and_uses_no_weekly_edit(slack, db_url):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    slack.slash(OWNER, "edit A00012345")
    slack.last_modal(ids.EDIT_LINKING_MODAL)
    with audit_log_locked(db_url):
        answer, seconds = timed(lambda: slack.submit(OWNER, ids.EDIT_LINKING_MODAL, {"ip_addresses": "8.8.4.4"}))
    assert answer.status == 200 and seconds < SLACK_BUDGET
    assert answer.json()["errors"] == {"integration": BUSY}
    status = slack.services.keys.status("A00012345")
    assert status.linking.ip_addresses == ("211.45.10.3", "8.8.8.8")
    assert status.edits_last_7_days == 0 and status.propagating_until is None
    assert [e.action for e in slack.services.audit.entries()] == ["key.registered"]


def test_a_button_while_the_database_is_locked_answers_busy_privately(slack, db_url):
    slack.services.keys.register(ADMIN, factories.form("A00012345"))
    with audit_log_locked(db_url):
        answer, seconds = timed(lambda: slack.click(ADMIN, ids.DELETE_KEY, "A00012345"))
        note = slack.fake.wait_for("response_url")[0].params
    assert answer.status == 200 and seconds < SLACK_BUDGET
    assert note["response_type"] == "ephemeral" and BUSY in note["text"]
    assert [s.vendor_id for s in slack.services.keys.statuses()] == ["A00012345"]


def test_the_bounded_ping_answers_while_a_writer_holds_the_lock(services, db_url):
    with audit_log_locked(db_url):
        assert ping(services.engine, timeout=1.0)
    unreachable = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/keybot")
    assert not ping(unreachable, timeout=1.0)
    unreachable.dispose()


def rename_table(db_url: str, old: str, new: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    engine.dispose()


def test_a_database_error_is_shown_in_the_readers_own_language(slack, db_url):
    slack.services.languages.choose(ADMIN, "ko")  # the team reads English
    open_register_modal(slack)
    rename_table(db_url, "key_generations", "key_generations_gone")
    try:
        answer = slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD)
    finally:
        rename_table(db_url, "key_generations_gone", "key_generations")
    assert answer.json() == {"response_action": "errors", "errors": {"vendor_id": t("ko", DATABASE_FAILED)}}
    assert "데이터베이스" in t("ko", DATABASE_FAILED)


def test_a_database_error_during_a_modal_submit_is_a_sentence_under_the_form(slack, db_url, caplog):
    open_register_modal(slack)
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE key_generations RENAME TO key_generations_gone"))
    try:
        with caplog.at_level(logging.INFO):
            answer = slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE key_generations_gone RENAME TO key_generations"))
        engine.dispose()
    assert answer.status == 200
    assert answer.json() == {"response_action": "errors", "errors": {"vendor_id": DATABASE_FAILED}}
    assert slack.services.keys.statuses() == []
    failures = [r for r in caplog.records if r.name == "bot.slack.failures"]
    assert len(failures) == 1 and failures[0].exc_info is None  # one line, no traceback
    assert SECRET_MARK not in caplog.text and GOOD["access_key"] not in caplog.text
