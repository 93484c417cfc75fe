"""App Home over HTTP: opening the tab publishes every key, sorted by expiry, with the same buttons."""

from __future__ import annotations

from bot.slack import ids
from tests import factories
from tests.conftest import ADMIN, USER
from tests.factories import SECRET_MARK


def test_opening_app_home_publishes_the_dashboard(slack):
    slack.services.keys.register(ADMIN, factories.form("A00000002", issued_on="2026-10-01"))
    slack.services.keys.register(ADMIN, factories.form("A00000001", issued_on="2026-06-01", label="<!here> shop"))
    assert slack.home_opened(USER).status == 200
    call = slack.fake.wait_for("views.publish")[0]
    assert call.params["user_id"] == USER
    view = call.params["view"]
    keys = [b["block_id"] for b in view["blocks"] if b.get("block_id", "").startswith("home-key-")]
    assert keys == ["home-key-A00000001", "home-key-A00000002"]  # soonest expiry first
    text = str(view)
    assert "▰" in text and "&lt;!here&gt;" in text and "<!here>" not in text
    assert SECRET_MARK not in slack.fake.all_text()
    assert {b["accessory"]["action_id"] for b in view["blocks"] if "accessory" in b} == {ids.EXPAND_KEY}


def test_edit_button_in_app_home_opens_the_modal_and_a_refusal_opens_a_notice(slack):
    slack.services.keys.register(ADMIN, factories.form("A00000001"))
    slack.click(ADMIN, ids.EDIT_LINKING, "A00000001", container="home")
    assert slack.last_modal(ids.EDIT_LINKING_MODAL)
    slack.click(USER, ids.EDIT_LINKING, "A00000001", container="home")
    notice = slack.fake.wait_for("views.open", count=2)[-1].params["view"]
    assert "Only" in str(notice) and notice.get("callback_id") is None
    assert slack.fake.calls_to("chat.postMessage") == []
