"""KeyService.status_page: the one page ``/coupang-key status`` loads, with phase counts from the database."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.rules import validate_linking_info
from tests import factories
from tests.conftest import ADMIN

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 12:00 in Seoul


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
