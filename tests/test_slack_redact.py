"""Log records of Slack payloads lose the values typed into secret inputs, at any level, in any encoding."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest

from bot.slack import redact
from tests import factories
from tests.factories import SECRET_MARK

SECRET = factories.secret_key("A00012345")
ACCESS = factories.access_key("A00012345")


def submission() -> dict:
    values = {
        "vendor_id": {"vendor_id": {"type": "plain_text_input", "value": "A00012345"}},
        "access_key": {"access_key": {"type": "plain_text_input", "value": ACCESS}},
        "secret_key": {"secret_key": {"type": "plain_text_input", "value": SECRET}},
        "new_secret_key": {"anything": {"value": SECRET + "2", "type": "plain_text_input"}},
    }
    return {"type": "view_submission", "view": {"callback_id": "register_key", "state": {"values": values}}}


@pytest.mark.parametrize(
    "render",
    [
        lambda p: json.dumps(p),
        lambda p: json.dumps(p, indent=2),
        lambda p: repr(p),
        lambda p: urlencode({"payload": json.dumps(p)}),
    ],
    ids=["json", "indented", "repr", "form-encoded"],
)
def test_secret_inputs_are_redacted_from_debug_logs(render, caplog):
    caplog.set_level(logging.DEBUG)
    redact.install(handlers=[caplog.handler])
    for name in ("slack_bolt.App", "slack_sdk.web.base_client", "bot.slack.bolt"):
        logging.getLogger(name).debug("Received: %s", render(submission()))
    assert len(caplog.records) == 3
    assert SECRET_MARK not in caplog.text and ACCESS not in caplog.text
    assert "A00012345" in caplog.text  # the rest of the payload is still there to debug with
    assert caplog.text.count(redact.REDACTED) == 9


def test_text_without_secret_fields_is_untouched():
    text = '{"vendor_id": {"vendor_id": {"value": "A00012345"}}}'
    assert redact.redact(text) == text


def test_end_to_end_debug_logs_of_a_registration_hold_no_secret(slack, caplog):
    caplog.set_level(logging.DEBUG)
    redact.install(handlers=[caplog.handler])
    from bot.slack import ids
    from tests.conftest import ADMIN
    from tests.test_slack_keys import GOOD

    slack.slash(ADMIN, "add")
    slack.last_modal(ids.REGISTER_MODAL)
    logging.getLogger("bot.slack.bolt").debug("payload seen: %s", json.dumps(submission()))
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD).status == 200
    slack.fake.wait_for("chat.postEphemeral")
    assert caplog.records  # DEBUG logging really was on
    assert SECRET_MARK not in caplog.text and ACCESS not in caplog.text
