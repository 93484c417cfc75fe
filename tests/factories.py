"""Sample keys for tests. The secrets are recognisable so leak checks can search for them."""

from __future__ import annotations

from datetime import date

from bot.services.keys import RegistrationForm

SECRET_MARK = "SeCrEt"


def access_key(vendor_id: str) -> str:
    return f"AKIA{vendor_id}accesskey0"


def secret_key(vendor_id: str) -> str:
    return f"{SECRET_MARK}{vendor_id}xyz0123456789"


def form(vendor_id: str = "A00012345", *, issued_on: date | str | None = "2026-06-01", **overrides) -> RegistrationForm:
    values = dict(
        vendor_id=vendor_id,
        label=f"Shop {vendor_id}",
        access_key=access_key(vendor_id),
        secret_key=secret_key(vendor_id),
        issued_on=issued_on,
        channel_id="CSHOP0001",
        owner_id="UOWNER001",
        integration="self",
        company_name="Example Co",
        company_url="https://shop.example.com",
        ip_addresses="211.45.10.3\n8.8.8.8",
    )
    values.update(overrides)
    return RegistrationForm(**values)
