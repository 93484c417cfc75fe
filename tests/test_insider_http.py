"""An outsider alone — someone who can reach the Slack-facing port and knows a vendor ID and a consumer's name, but
holds no signing secret and no metrics token — gets nothing from ``/rollout/confirm`` or ``/metrics``.

Each attempt below is one a person might make; the test then checks that nothing they could use came back (no
vendor ID, shop name or expiry, no hint which consumers exist), that no consumer's state changed, and that the
audit log was not flooded. The two-person rules for Slack paths are in the Slack insider tests.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from bot.services.base import cli_actor
from bot.services.rollout import proof_for
from tests.conftest import ADMIN, make_settings
from tests.factories import form, secret_key
from tests.slack_harness import Response, SlackHarness

VENDOR = "A00012345"
SHOP = f"Shop {VENDOR}"


@pytest.fixture(params=[None, "scrape-me-7"], ids=["no-metrics-token", "metrics-token"])
def settings(db_url, request):
    extra = {"KEYBOT_METRICS_TOKEN": request.param} if request.param else {}
    return make_settings(DATABASE_URL=db_url, **extra)


def forged(payload: dict, *, secret: str = "whsec_" + "B" * 32) -> tuple[bytes, dict[str, str]]:
    """Signed with a secret the outsider made up: the one thing they can do."""
    body, now, msg_id = json.dumps(payload).encode(), datetime.now(UTC), f"msg_{time.monotonic_ns()}"
    return body, {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def leaked(answer: Response) -> list[str]:
    """What an answer gave away."""
    found = [word for word in (VENDOR, SHOP, "erp", "expiry", "coupang_key_") if word in answer.text]
    return found + [f"status {answer.status}"] * (answer.status < 400)


def test_an_outsider_alone_gets_nothing_from_rollout_confirm_or_metrics(slack: SlackHarness, services, settings):
    services.keys.register(ADMIN, form(VENDOR))
    services.rollout.add(cli_actor(), VENDOR, "erp", "webhook", "http://127.0.0.1:9/hook")
    right_proof = proof_for(secret_key(VENDOR), VENDOR, 1)  # even knowing the key itself does not help
    attempts: dict[str, Response] = {
        "scrape /metrics": slack.get("/metrics"),
        "scrape /metrics with a guessed token": slack.get("/metrics", {"Authorization": "Bearer scrape-me"}),
        "scrape /metrics with an empty bearer": slack.get("/metrics", {"Authorization": "Bearer "}),
    }
    for name in ("erp", "crm", "wms"):  # which consumers exist?
        payload = {"vendor_id": VENDOR, "generation": 1, "consumer": name, "proof": right_proof}
        attempts[f"probe consumer {name}"] = slack.post("/rollout/confirm", *forged(payload))
    for vendor in (VENDOR, "A99999999"):  # which vendor IDs exist?
        payload = {"vendor_id": vendor, "generation": 1, "consumer": "erp", "proof": right_proof}
        attempts[f"probe vendor {vendor}"] = slack.post("/rollout/confirm", *forged(payload))
    unsigned = json.dumps({"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": right_proof}).encode()
    attempts["confirm without a signature"] = slack.post(
        "/rollout/confirm", unsigned, {"Content-Type": "application/json"}
    )
    for n in range(30):  # keep trying: the address is cut off
        payload = {"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": f"{n:064x}"}
        attempts["flood"] = slack.post("/rollout/confirm", *forged(payload))

    body, headers = forged({"vendor_id": VENDOR, "generation": 1, "consumer": "erp", "proof": right_proof})
    attempts["flood, claiming another address"] = slack.post(
        "/rollout/confirm", body, {**headers, "X-Forwarded-For": "203.0.113.99", "X-Real-IP": "203.0.113.99"}
    )

    gave_away = {what: leaked(answer) for what, answer in attempts.items() if leaked(answer)}
    assert gave_away == {}, gave_away  # 0 single-person paths
    probes = {a.text for what, a in attempts.items() if what.startswith("probe")}
    assert len(probes) == 1  # the same answer for a consumer that exists and one that does not
    assert attempts["flood"].status == attempts["flood, claiming another address"].status == 429
    assert attempts["scrape /metrics"].status == (401 if settings.metrics_token else 403)

    assert [c.state for c in services.rollout.consumers(VENDOR)] == ["pending"]  # nothing confirmed
    assert [e for e in services.audit.entries() if e.action.startswith("rollout.")] == []  # nothing written
