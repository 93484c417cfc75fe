"""Two processes on one database (SQLite and PostgreSQL) across a master-key rotation: the one started before it
refuses to seal or encrypt anything under the retired key, says to restart, and fails /healthz."""

from __future__ import annotations

import pytest

from bot.bootstrap import build_services
from bot.rules import Integration, KeybotError, LinkingInfo
from bot.slack import ids
from tests import factories
from tests.conftest import ADMIN, MASTER_KEY, SECOND_KEY, make_settings
from tests.slack_harness import SlackHarness
from tests.test_slack_keys import GOOD, open_register_modal

RESTART = "restart with the new KEYBOT_MASTER_KEY"


@pytest.fixture
def process(db_url):
    """``process(keys)``: the services one process would build with ``KEYBOT_MASTER_KEY=keys``."""
    built = []

    def start(master_keys: str):
        services = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_MASTER_KEY=master_keys))
        built.append(services)
        return services

    yield start
    for services in built:
        services.engine.dispose()


def test_a_process_older_than_the_rotation_refuses_writes_says_restart_and_fails_healthz(process, fake_slack):
    old = process(MASTER_KEY)
    old.keys.register(ADMIN, factories.form("A00000001"))
    rotated = process(f"{SECOND_KEY},{MASTER_KEY}")
    rotated.keys.rotate_master_key("cli")

    assert rotated.master_key_problem() is None
    assert RESTART in (old.master_key_problem() or "")
    with pytest.raises(KeybotError, match=RESTART):
        old.keys.register(ADMIN, factories.form("A00000002"))  # would encrypt under the retired key
    integrator = LinkingInfo(Integration.INTEGRATOR, integrator_name="Listing Tool Inc")
    with pytest.raises(KeybotError, match=RESTART):
        old.keys.edit_linking(ADMIN, "A00000001", integrator)
    with SlackHarness(old, fake_slack) as slack:
        assert slack.get("/healthz").status == 503
        open_register_modal(slack)
        answer = slack.submit(ADMIN, ids.REGISTER_MODAL, {**GOOD, "vendor_id": "A00000003"})
        assert RESTART in answer.json()["errors"]["vendor_id"]

    # the old key can go: nothing was sealed or encrypted under it after the rotation
    new_only = process(SECOND_KEY)
    assert new_only.audit.verify().ok
    assert [e.action for e in new_only.audit.entries()] == ["key.registered", "master_key.rotated"]
    assert [s.vendor_id for s in new_only.keys.statuses()] == ["A00000001"]
    assert new_only.keys.status("A00000001").linking.integrator_name is None
    new_only.keys.register(ADMIN, factories.form("A00000002"))
    with SlackHarness(new_only, fake_slack) as slack:
        assert slack.get("/healthz").status == 200


def test_a_process_with_the_new_key_first_writes_before_the_rotation_and_the_old_one_stops(process):
    old = process(MASTER_KEY)
    old.keys.register(ADMIN, factories.form("A00000001"))
    restarted = process(f"{SECOND_KEY},{MASTER_KEY}")
    assert restarted.master_key_problem() is None  # the chain is sealed with a key it still has
    restarted.keys.register(ADMIN, factories.form("A00000002"))
    assert RESTART in (old.master_key_problem() or "")
    with pytest.raises(KeybotError, match=RESTART):
        old.keys.delete(ADMIN, "A00000001")
    assert restarted.audit.verify().ok


def test_the_restart_refusal_is_shown_in_the_readers_language(process, fake_slack):
    old = process(MASTER_KEY)
    old.languages.choose(ADMIN, "ko")
    rotated = process(f"{SECOND_KEY},{MASTER_KEY}")
    rotated.keys.rotate_master_key("cli")
    with SlackHarness(old, fake_slack) as slack:
        open_register_modal(slack)
        answer = slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD)
    said = answer.json()["errors"]["vendor_id"]
    assert "새 KEYBOT_MASTER_KEY로 봇을 다시 시작해 주세요" in said and RESTART not in said
