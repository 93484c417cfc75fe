"""KeyService.status_page: the one page ``/coupang-key status`` loads, with phase counts from the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.rules import validate_linking_info
from storage.models import Consumer, ReissueRequest, RolloutDelivery
from tests import factories
from tests.clock import IN_WINDOW as NOW  # 12:00 in Seoul
from tests.conftest import ADMIN


def register(services, n: int, issued_on: str) -> None:
    services.keys.register(ADMIN, factories.form(f"A{n:08d}", issued_on=issued_on))


def test_pages_are_most_urgent_first_and_counts_cover_every_key(services):
    register(services, 1, "2026-05-01")  # expired 2026-10-28
    register(services, 2, "2026-06-01")  # expires 2026-11-28: in the window
    register(services, 3, "2026-06-14")  # 2026-12-11: D-14, still in the window
    register(services, 4, "2026-06-15")  # 2026-12-12: D-15, healthy
    register(services, 5, "2026-09-01")  # healthy
    first = services.keys.status_page(limit=2, now=NOW)
    assert [s.vendor_id for s in first.statuses] == ["A00000001", "A00000002"]
    assert (first.healthy, first.in_window, first.expired, first.matching) == (2, 2, 1, 5)
    assert first.next_offset == 2
    last = services.keys.status_page(offset=4, limit=2, now=NOW)
    assert [s.vendor_id for s in last.statuses] == ["A00000005"]
    assert last.next_offset is None
    assert [s.vendor_id for s in services.keys.status_page(limit=50, now=NOW).statuses] == [
        s.vendor_id for s in services.keys.statuses(now=NOW)
    ]


def test_expiring_shows_only_window_and_expired_keys(services):
    register(services, 1, "2026-05-01")
    register(services, 3, "2026-06-14")
    register(services, 4, "2026-06-15")
    page = services.keys.status_page(expiring_within=14, now=NOW)
    assert [s.vendor_id for s in page.statuses] == ["A00000001", "A00000003"]
    assert page.matching == 2 and page.next_offset is None


def test_edit_counts_on_a_page_are_per_key(services):
    register(services, 1, "2026-06-01")
    register(services, 2, "2026-06-02")
    services.keys.edit_linking(ADMIN, "A00000001", validate_linking_info("integrator", "Sellmate"))
    page = services.keys.status_page()
    assert {s.vendor_id: s.edits_last_7_days for s in page.statuses} == {"A00000001": 1, "A00000002": 0}


def test_an_empty_database_has_an_empty_page(services):
    page = services.keys.status_page()
    assert page.statuses == [] and page.matching == 0 and page.next_offset is None


def test_the_page_shows_the_same_facts_as_the_full_listing(services):
    """Edits, open requests and consumer counts come from per-page subqueries; they must say what the listing of
    every key (``statuses``, the ``status --json`` path) says, request by request and consumer by consumer."""
    for n, issued_on in enumerate(("2026-05-01", "2026-06-01", "2026-06-14", "2026-07-01", "2026-09-01"), start=1):
        register(services, n, issued_on)
    services.keys.edit_linking(ADMIN, "A00000002", validate_linking_info("integrator", "Sellmate"))
    hour = timedelta(hours=1)

    def request(vendor_id: str, status: str, expires_at: datetime, by: str) -> ReissueRequest:
        return ReissueRequest(
            vendor_id=vendor_id,
            generation=1,
            path="reissue",
            reason="r",
            requested_by=by,
            requested_at=NOW - hour,
            expires_at=expires_at,
            status=status,
        )

    with services.ctx.transaction() as session:
        session.add_all(
            [
                request("A00000001", "pending", NOW - hour, "UOLD00001"),  # expired: not open
                request("A00000002", "approved", NOW - hour, "UAPPROVED"),  # approved stays open past expiry
                request("A00000002", "pending", NOW + hour, "UNEWER001"),  # the newest open one is shown
                request("A00000003", "denied", NOW + hour, "UDENIED01"),
                request("A00000004", "pending", NOW + hour, "UPENDING1"),
            ]
        )
        consumers = [
            Consumer(
                vendor_id=v,
                name=name,
                kind="webhook",
                target="t",
                config_ct=b"c",
                signing_secret_ct=b"s",
                created_by=ADMIN,
                created_at=NOW,
            )
            for v, name in (("A00000002", "erp"), ("A00000002", "wms"), ("A00000002", "oms"), ("A00000005", "erp"))
        ]
        session.add_all(consumers)
        session.flush()
        session.add_all(
            RolloutDelivery(
                consumer_id=c.id,
                vendor_id=c.vendor_id,
                generation=generation,
                state=state,
                message_id=f"m{c.id}-{generation}",
                queued_at=NOW,
            )
            for c, generation, state in (
                (consumers[0], 1, "delivered"),
                (consumers[1], 1, "confirmed"),
                (consumers[2], 1, "failed"),
                (consumers[3], 0, "delivered"),  # an older generation: does not hold the current key
            )
        )
    listing = services.keys.statuses(now=NOW)
    assert [s.open_request and s.open_request.requested_by for s in listing] == [
        None,
        "UNEWER001",
        None,
        "UPENDING1",
        None,
    ]
    assert [s.consumers for s in listing] == [None, (2, 3), None, None, (0, 1)]
    assert [s.edits_last_7_days for s in listing] == [0, 1, 0, 0, 0]
    assert services.keys.status_page(limit=50, now=NOW).statuses == listing
    both = (
        services.keys.status_page(offset=1, limit=2, now=NOW).statuses
        + services.keys.status_page(offset=3, limit=2, now=NOW).statuses
    )
    assert both == listing[1:]
    expiring = services.keys.status_page(expiring_within=14, now=NOW)
    assert expiring.statuses == listing[:3] and expiring.matching == 3


def test_counts_follow_every_change_to_the_keys_and_the_date(services):
    """The counts over every key are kept between pages while the audit log says nothing changed; each change to
    which keys exist or when they expire must still show at once, as must a new day."""

    def counts(**kwargs):
        page = services.keys.status_page(now=NOW, **kwargs)
        return page.healthy, page.in_window, page.expired, page.matching

    register(services, 1, "2026-06-01")  # expires 2026-11-28: in the window
    register(services, 2, "2026-09-01")  # healthy
    assert counts() == counts() == (1, 1, 0, 2)
    assert counts(expiring_within=14) == (1, 1, 0, 1)
    register(services, 3, "2026-05-01")  # expired
    assert counts() == (1, 1, 1, 3) and counts(expiring_within=14) == (1, 1, 1, 2)
    services.keys.delete(ADMIN, "A00000003")
    assert counts() == (1, 1, 0, 2)
    linking = validate_linking_info("self", None, "Example Co", "https://shop.example.com", "211.45.10.3")
    services.keys.edit_linking(ADMIN, "A00000002", linking, expires_on="2026-12-01")  # corrected: into the window
    assert counts() == (0, 2, 0, 2) and counts(expiring_within=14) == (0, 2, 0, 2)
    later = services.keys.status_page(now=NOW + timedelta(days=2))  # a new day: A00000001 has expired
    assert (later.healthy, later.in_window, later.expired) == (0, 1, 1)
