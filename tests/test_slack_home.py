"""App Home over HTTP: opening the tab publishes every key, sorted by expiry, with the same buttons."""

from __future__ import annotations

from datetime import timedelta

import time_machine

from bot.slack import ids
from tests import factories
from tests.clock import seoul_today
from tests.conftest import ADMIN, USER
from tests.factories import SECRET_MARK


@time_machine.travel("2026-11-28T03:00:00Z", tick=False)  # both keys below still valid: progress bars show
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


def test_app_home_at_many_keys_shows_the_most_urgent_and_counts_them_all(slack):
    """An integrator's 60 keys: the 45 expiring first fit Slack's 100 blocks, the header counts all 60."""
    rows = [
        (
            n + 2,
            {
                "vendor_id": f"A{n:08d}",
                "label": f"Shop {n}",
                "access_key": factories.access_key(f"A{n:08d}"),
                "secret_key": factories.secret_key(f"A{n:08d}"),
                "expires_on": (seoul_today() + timedelta(days=30 + (n * 7) % 60)).isoformat(),  # healthy, in range
                "integration": "integrator",
                "integrator_name": "Integrator Co",
            },
        )
        for n in range(60)
    ]
    assert len(slack.services.keys.import_rows(ADMIN, rows).imported) == 60
    assert slack.home_opened(USER).status == 200
    view = slack.fake.wait_for("views.publish")[0].params["view"]
    shown = [b["block_id"][len("home-key-") :] for b in view["blocks"] if b.get("block_id", "").startswith("home-key-")]
    urgent = sorted(rows, key=lambda r: (r[1]["expires_on"], r[1]["vendor_id"]))[:45]
    assert shown == [r[1]["vendor_id"] for r in urgent]
    text = str(view)
    assert "60 keys: 60 healthy" in text and "15 more expiring later" in text and len(view["blocks"]) <= 100
