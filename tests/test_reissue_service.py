"""ReissueService on a real SQLite and PostgreSQL: who may decide, one decision per request, the new key."""

from __future__ import annotations

import json
import threading
from datetime import date

import pytest
import time_machine
from sqlalchemy import text

from bot.rules import InvalidInput, ReissuePath
from bot.services.base import NotAllowed
from bot.services.reissue import NewKeyForm, parse_user_ref
from tests.clock import IN_WINDOW
from tests.conftest import ADMIN, make_settings
from tests.factories import SECRET_MARK, form, secret_key

APPROVER, APPROVER2, REQUESTER = "UAPPROVE1", "UAPPROVE2", "UREQUEST1"
VENDOR = "A00012345"
NEW_SECRET = f"{SECRET_MARK}NEWnew0123456789abcdef"
NEW_ACCESS = "AKIAnewaccess0123456789"
# form() issues on 2026-06-01 → expires 2026-11-28: inside the window on 2026-11-27


@pytest.fixture
def services(db_url):
    from bot.bootstrap import build_services

    built = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=f"{APPROVER},{APPROVER2},SGROUP001"))
    yield built
    built.engine.dispose()


@pytest.fixture
def travel():
    with time_machine.travel(IN_WINDOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def key(services, travel):
    return services.keys.register(ADMIN, form(VENDOR))


def actions(services) -> list[str]:
    return [e.action for e in services.audit.entries()]


def test_request_in_window_is_a_reissue_and_a_second_one_is_refused(services, key):
    plan = services.reissues.plan(REQUESTER, VENDOR)
    assert plan.path is ReissuePath.REISSUE and plan.days_left == 1
    info = services.reissues.request(REQUESTER, VENDOR, "expiring tomorrow")
    assert (info.status, info.generation, info.channel_id) == ("pending", 1, "CSHOP0001")
    with pytest.raises(NotAllowed, match=f"open reissue request #{info.id}"):
        services.reissues.request(APPROVER, VENDOR, "me too")
    assert actions(services)[-2:] == ["reissue.requested", "reissue.request.refused"]


def test_request_before_the_window_is_the_early_path(services, travel):
    services.keys.register(ADMIN, form(VENDOR, issued_on="2026-11-01"))
    assert services.reissues.plan(REQUESTER, VENDOR).path is ReissuePath.EARLY


def test_reason_is_required(services, key):
    with pytest.raises(InvalidInput) as caught:
        services.reissues.request(REQUESTER, VENDOR, "   ")
    assert "reason" in caught.value.errors
    assert actions(services)[-1] == "reissue.request.refused"


def test_only_approvers_other_than_the_requester_decide_once(services, key):
    info = services.reissues.request(APPROVER, VENDOR, "leak")
    with pytest.raises(NotAllowed, match="Only approvers"):
        services.reissues.approve(REQUESTER, info.id)
    with pytest.raises(NotAllowed, match="someone else"):
        services.reissues.approve(APPROVER, info.id)
    assert services.reissues.approve(APPROVER2, info.id).status == "approved"
    with pytest.raises(NotAllowed, match="Already approved"):
        services.reissues.approve(APPROVER2, info.id)
    with pytest.raises(NotAllowed, match="Already approved"):
        services.reissues.deny(APPROVER2, info.id)
    assert actions(services).count("reissue.approved") == 1
    assert actions(services).count("reissue.approve.refused") == 3


def test_group_members_are_approvers_at_click_time(services, key):
    members: set[str] = set()
    services.reissues.group_members = lambda group: members if group == "SGROUP001" else set()
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    with pytest.raises(NotAllowed):
        services.reissues.approve("UGROUPIE1", info.id)
    members.add("UGROUPIE1")
    assert services.reissues.approve("UGROUPIE1", info.id).decided_by == "UGROUPIE1"


def test_added_approvers_and_admin_only_management(services, key):
    with pytest.raises(NotAllowed):
        services.reissues.add_approver(REQUESTER, "UNEW00001")
    assert services.reissues.add_approver(ADMIN, "<@UNEW00001|new>") == "UNEW00001"
    assert "UNEW00001" in services.reissues.approvers().added
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    services.reissues.approve("UNEW00001", info.id)
    services.reissues.remove_approver(ADMIN, "UNEW00001")
    assert not services.reissues.is_approver("UNEW00001")
    assert {"approver.added", "approver.removed", "approver.add.refused"} <= set(actions(services))


def test_request_expires_after_24_hours(services, key, travel):
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    travel.shift(24 * 3600 + 1)
    with pytest.raises(NotAllowed, match="expired"):
        services.reissues.approve(APPROVER, info.id)
    assert services.reissues.get(info.id).status == "expired"
    assert services.reissues.expire_due() == []  # already closed, audited once
    assert actions(services).count("reissue.expired") == 1
    services.reissues.request(REQUESTER, VENDOR, "again")  # no longer open


def test_sweep_expires_undecided_requests(services, key, travel):
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    travel.shift(23 * 3600)
    assert services.reissues.expire_due() == []
    travel.shift(3600)
    assert [e.id for e in services.reissues.expire_due()] == [info.id]


def test_approval_of_a_changed_key_is_void(services, key):
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    with services.engine.begin() as connection:
        connection.execute(text("UPDATE keys SET generation = 2"))
    with pytest.raises(NotAllowed, match="void"):
        services.reissues.approve(APPROVER, info.id)
    assert services.reissues.get(info.id).status == "void"
    assert {"reissue.voided", "reissue.approve.refused"} <= set(actions(services))


def new_key(secret: str = NEW_SECRET, access: str = NEW_ACCESS, **values) -> NewKeyForm:
    return NewKeyForm(new_secret_key=secret, new_access_key=access, **values)


def test_complete_stores_a_new_generation(services, key):
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    services.reissues.approve(APPROVER, info.id)
    with pytest.raises(NotAllowed, match="Only the requester"):
        services.reissues.complete(APPROVER2, info.id, new_key())
    with pytest.raises(InvalidInput) as caught:
        services.reissues.complete(REQUESTER, info.id, new_key("short secret"))
    assert set(caught.value.errors) == {"new_secret_key"}
    done = services.reissues.complete(REQUESTER, info.id, new_key(new_expires_on="2027-05-26"))
    assert (done.generation, done.expires_on) == (2, date(2027, 5, 26))
    with services.ctx.transaction() as session:
        stored = services.ctx.keys.get(session, vendor_id=VENDOR)
        assert services.ctx.keys.secrets(stored) == (NEW_ACCESS, NEW_SECRET)
        assert stored.access_deadline is not None
    status = services.keys.status(VENDOR)
    assert status.generation == 2 and status.open_request is None
    assert services.audit.verify().ok
    details = json.dumps([e.details for e in services.audit.entries()])
    assert SECRET_MARK not in details and secret_key(VENDOR) not in details
    with pytest.raises(NotAllowed, match="already done"):
        services.reissues.complete(APPROVER, info.id, new_key())


def test_the_new_key_needs_both_keys_and_a_secret_that_is_not_the_stored_one(services, key):
    """A reissue changes the Access Key and the Secret Key; the stored secret pasted again is a mistake."""
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    services.reissues.approve(APPROVER, info.id)
    with pytest.raises(InvalidInput) as caught:
        services.reissues.complete(REQUESTER, info.id, NewKeyForm(new_secret_key=NEW_SECRET))
    assert set(caught.value.errors) == {"new_access_key"}
    with pytest.raises(InvalidInput) as caught:
        services.reissues.complete(REQUESTER, info.id, new_key(f"  {secret_key(VENDOR)} "))
    assert set(caught.value.errors) == {"new_secret_key"}
    assert "already stored" in caught.value.errors["new_secret_key"]
    assert secret_key(VENDOR) not in str(caught.value)
    assert services.keys.status(VENDOR).generation == 1  # nothing saved
    assert services.reissues.get(info.id).status == "approved"
    assert actions(services)[-2:] == ["reissue.complete.refused", "reissue.complete.refused"]
    details = json.dumps([e.details for e in services.audit.entries()])
    assert SECRET_MARK not in details and NEW_ACCESS not in details


def test_audit_log_is_for_admins_and_approvers(services, key):
    with pytest.raises(NotAllowed):
        services.reissues.recent_audit(REQUESTER)
    assert services.reissues.recent_audit(APPROVER)[0].action == "audit.read.refused"
    assert services.reissues.recent_audit(ADMIN, limit=1)[0].seq == services.audit.head()[0]


def test_parse_user_ref():
    assert parse_user_ref("<@U123ABC|bob>") == "U123ABC"
    assert parse_user_ref("@u123abc") == "U123ABC"
    with pytest.raises(InvalidInput):
        parse_user_ref("@bob")


def test_concurrent_approvals_yield_one_decision(services, key):
    info = services.reissues.request(REQUESTER, VENDOR, "rotate")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def click(user: str) -> None:
        barrier.wait()
        try:
            services.reissues.approve(user, info.id)
            outcomes.append("approved")
        except NotAllowed as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=click, args=(u,)) for u in (APPROVER, APPROVER2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("approved") == 1
    assert actions(services).count("reissue.approved") == 1
    assert actions(services).count("reissue.approve.refused") == 1
    assert services.audit.verify().ok
