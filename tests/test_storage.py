"""Storage and crypto against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from sqlalchemy import text

from bot.bootstrap import build_services
from bot.rules import InvalidInput, LinkingInfo, validate_linking_info
from bot.services.base import NotAllowed
from storage.crypto import DecryptionError
from storage.models import Key
from tests.clock import IN_WINDOW as NOW  # 12:00 in Seoul
from tests.conftest import ADMIN, MASTER_KEY, OWNER, SECOND_KEY, USER, make_settings
from tests.factories import SECRET_MARK, access_key, form, secret_key


def dump(services) -> str:
    """Every row of every table as text: what someone holding the database file would see."""
    with services.engine.connect() as connection:
        tables = ["keys", "key_generations", "audit_events", "link_edits", "audit_head"]
        return "\n".join(str(row) for t in tables for row in connection.execute(text(f"SELECT * FROM {t}")))


@time_machine.travel(NOW, tick=False)
def test_register_round_trip_and_no_plaintext_at_rest(services):
    services.keys.register(ADMIN, form("A00012345"))
    with services.ctx.transaction() as session:
        key = services.ctx.keys.get(session, vendor_id="A00012345")
        assert services.ctx.keys.secrets(key) == (access_key("A00012345"), secret_key("A00012345"))
    status = services.keys.status("A00012345")
    assert status.expires_on == date(2026, 11, 28)  # 2026-06-01 + 180 days
    assert status.days_left == 1
    assert status.access_key_mask == "AKIA…key0"
    assert SECRET_MARK not in dump(services)
    assert access_key("A00012345") not in dump(services)


@time_machine.travel(NOW, tick=False)
def test_tampered_ciphertext_fails_loudly(services):
    services.keys.register(ADMIN, form("A00012345"))
    with services.ctx.transaction() as session:
        key = services.ctx.keys.get(session, vendor_id="A00012345")
        key.secret_key_ct = key.secret_key_ct[:-1] + bytes([key.secret_key_ct[-1] ^ 1])
    with services.ctx.transaction() as session:
        key = services.ctx.keys.get(session, vendor_id="A00012345")
        with pytest.raises(DecryptionError, match="A00012345") as caught:
            services.ctx.keys.secrets(key)
        assert SECRET_MARK not in str(caught.value)


@time_machine.travel(NOW, tick=False)
def test_ciphertext_swapped_between_rows_or_fields_does_not_decrypt(services):
    services.keys.register(ADMIN, form("A00012345"))
    services.keys.register(ADMIN, form("A00099999"))
    with services.ctx.transaction() as session:
        a = services.ctx.keys.get(session, vendor_id="A00012345")
        b = services.ctx.keys.get(session, vendor_id="A00099999")
        a.secret_key_ct, b.secret_key_ct = b.secret_key_ct, a.secret_key_ct
        b.access_key_ct, b.secret_key_ct = b.secret_key_ct, b.access_key_ct
    with services.ctx.transaction() as session:
        for vendor_id in ("A00012345", "A00099999"):
            with pytest.raises(DecryptionError):
                services.ctx.keys.secrets(services.ctx.keys.get(session, vendor_id=vendor_id))


@time_machine.travel(NOW, tick=False)
def test_master_key_rotation_keeps_everything(settings, db_url):
    old = build_services(settings)
    for vendor_id in ("A00000001", "A00000002", "A00000003"):
        old.keys.register(ADMIN, form(vendor_id))
    old.engine.dispose()

    rotating = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_MASTER_KEY=f"{SECOND_KEY},{MASTER_KEY}"))
    assert rotating.keys.rotate_master_key("cli") == (3, 3)
    rotating.engine.dispose()

    new_only = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_MASTER_KEY=SECOND_KEY))
    with new_only.ctx.transaction() as session:
        for key in new_only.ctx.keys.all(session):
            assert new_only.ctx.keys.secrets(key) == (access_key(key.vendor_id), secret_key(key.vendor_id))
    assert new_only.audit.verify().ok
    new_only.engine.dispose()


@time_machine.travel(NOW, tick=False)
def test_wrong_master_key_names_vendor_and_changes_nothing(settings, db_url):
    good = build_services(settings)
    good.keys.register(ADMIN, form("A00012345"))
    before = dump(good)
    good.engine.dispose()
    wrong = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_MASTER_KEY=SECOND_KEY))
    with pytest.raises(DecryptionError, match="A00012345"):
        wrong.keys.rotate_master_key("cli")
    with wrong.ctx.transaction() as session, pytest.raises(DecryptionError, match="A00012345"):
        wrong.ctx.keys.secrets(wrong.ctx.keys.get(session, vendor_id="A00012345"))
    assert dump(wrong) == before
    wrong.engine.dispose()


@time_machine.travel(NOW, tick=False)
def test_duplicate_vendor_refused_with_pointer_and_audited(services):
    services.keys.register(ADMIN, form("A00012345"))
    with pytest.raises(InvalidInput, match="reissue A00012345") as caught:
        services.keys.register(ADMIN, form("A00012345", label="Other"))
    assert "vendor_id" in caught.value.errors
    assert len(services.keys.statuses()) == 1
    actions = [e.action for e in services.audit.entries()]
    assert actions == ["key.registered", "key.register.refused"]


@time_machine.travel(NOW, tick=False)
def test_only_admins_register_and_owner_or_admin_edit(services):
    with pytest.raises(NotAllowed, match=ADMIN):
        services.keys.register(USER, form("A00012345"))
    services.keys.register(ADMIN, form("A00012345", owner_id=OWNER))
    integrator = validate_linking_info("integrator", integrator_name="Sellmate")
    with pytest.raises(NotAllowed, match="owner"):
        services.keys.edit_linking(USER, "A00012345", integrator)
    services.keys.edit_linking(OWNER, "A00012345", integrator)
    assert services.keys.status("A00012345").linking == integrator
    assert [e.action for e in services.audit.entries()] == [
        "key.register.refused",
        "key.registered",
        "key.edit.refused",
        "key.linking_edited",
    ]


def test_eleventh_edit_in_a_week_is_refused_and_changes_nothing(services):
    with time_machine.travel("2026-11-20T00:00:00Z", tick=False) as traveller:
        services.keys.register(ADMIN, form("A00012345"))
        for i in range(10):
            traveller.shift(3600)
            services.keys.edit_linking(ADMIN, "A00012345", validate_linking_info("integrator", f"Integrator {i}"))
        traveller.shift(3600)
        with pytest.raises(InvalidInput, match=r"next edit is possible at 2026-11-27 10:00"):
            services.keys.edit_linking(ADMIN, "A00012345", validate_linking_info("integrator", "One too many"))
        status = services.keys.status("A00012345")
        assert status.linking.integrator_name == "Integrator 9"
        assert status.edits_last_7_days == 10
        traveller.move_to("2026-11-27T01:00:01Z")
        services.keys.edit_linking(ADMIN, "A00012345", validate_linking_info("integrator", "Next week"))


@time_machine.travel(NOW, tick=False)
def test_edit_starts_thirty_minute_propagation(services):
    services.keys.register(ADMIN, form("A00012345"))
    result = services.keys.edit_linking(ADMIN, "A00012345", LinkingInfo(integration="integrator", integrator_name="X"))
    assert result.changed and result.status.propagating_until.isoformat() == "2026-11-27T03:30:00+00:00"


@time_machine.travel(NOW, tick=False)
def test_delete_keeps_history_and_reregistration_continues_generations(services):
    services.keys.register(ADMIN, form("A00012345"))
    services.keys.delete(ADMIN, "A00012345")
    assert services.keys.statuses() == []
    services.keys.register(ADMIN, form("A00012345"))
    assert services.keys.status("A00012345").generation == 2
    with services.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM key_generations")).scalar() == 2
        assert connection.execute(select_keys()).scalar() == 1


def select_keys():
    return text("SELECT count(*) FROM keys")


def test_status_ordering_and_phases(services):
    with time_machine.travel(NOW, tick=False):
        services.keys.register(ADMIN, form("A00000001", issued_on="2026-10-01"))  # healthy
        services.keys.register(ADMIN, form("A00000002", issued_on=None, expires_on="2026-12-05"))  # window
        services.keys.register(ADMIN, form("A00000003", issued_on=None, expires_on="2026-11-20"))  # expired
        statuses = services.keys.statuses()
    assert [s.vendor_id for s in statuses] == ["A00000003", "A00000002", "A00000001"]
    assert [str(s.phase) for s in statuses] == ["expired", "reissue_window", "healthy"]
    assert [s.days_left for s in statuses] == [-7, 8, 123]  # 2026-10-01 + 180 days = 2027-03-30


def test_key_model_stores_aware_utc(services):
    with time_machine.travel("2026-11-27T23:30:00+09:00", tick=False):
        services.keys.register(ADMIN, form("A00012345"))
    with services.ctx.transaction() as session:
        key = session.query(Key).one()
        assert key.created_at.utcoffset().total_seconds() == 0
        assert key.created_at.isoformat() == "2026-11-27T14:30:00+00:00"


def test_forms_holding_secrets_never_show_them_in_a_repr():
    from bot.services.keys import validate_registration

    typed = form("A00012345")
    assert SECRET_MARK not in repr(typed)
    assert SECRET_MARK not in repr(validate_registration(typed, date(2026, 11, 27)))


@time_machine.travel(NOW, tick=False)
def test_rotation_refuses_a_tampered_audit_chain_and_changes_nothing(settings, db_url):
    services = build_services(settings)
    services.keys.register(ADMIN, form("A00012345"))
    with services.engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'UMALLORY1' WHERE seq = 1"))
    before = dump(services)
    services.engine.dispose()
    rotating = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_MASTER_KEY=f"{SECOND_KEY},{MASTER_KEY}"))
    with pytest.raises(NotAllowed, match="Refusing to rotate: audit chain broken at entry 1"):
        rotating.keys.rotate_master_key("cli")
    assert dump(rotating) == before  # the secrets were not re-encrypted either
    rotating.engine.dispose()
