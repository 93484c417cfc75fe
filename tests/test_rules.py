"""Coupang key rules pinned to DOMAIN.md: one test (or small group) per fact and per Day-arithmetic rule.

Expected values are worked out from the spec by hand (calendar dates, UTC offsets), never read back
from the implementation.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.rules import (
    MAX_IPS,
    WING_URL,
    Integration,
    InvalidInput,
    LinkingInfo,
    Phase,
    ReissuePath,
    access_deadline,
    check_edit_allowed,
    days_left,
    describe_days_left,
    edit_quota,
    expiry_from_issue,
    local_date,
    milestone_date,
    milestone_due_at,
    path_for,
    path_now,
    phase_for,
    reissue_button_active,
    reissue_path,
    resolve_dates,
    split_ips,
    validate_ip,
    validate_linking_info,
    validate_url,
    validate_vendor_id,
    wing_advice,
)
from tests.clock import SEOUL

NINE_AM = time(9, 0)

PUBLIC_IPS = [f"211.45.10.{n}" for n in range(1, 12)]  # 11 distinct public addresses


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def self_developed(**overrides):
    fields = {
        "integration": "self",
        "company_name": "Hanbit Trading",
        "company_url": "https://hanbit.example.co.kr",
        "ip_addresses": "211.45.10.3",
    }
    fields.update(overrides)
    return validate_linking_info(**fields)


def refusal(call, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    assert str(caught.value).strip(), "a refusal must say something to the person"
    return caught.value


# ---------------------------------------------------------------- fact 1: vendor ID


@pytest.mark.parametrize(
    ("raw", "vendor_id"),
    [("A00012345", "A00012345"), ("  A00012345\n", "A00012345"), ("A99999999", "A99999999")],
)
def test_vendor_id_is_A_followed_by_8_digits(raw, vendor_id):
    assert validate_vendor_id(raw) == vendor_id


def test_lower_case_vendor_id_is_normalised_to_the_form_wing_shows():
    # Typing "a00012345" can only mean A00012345; storing it upper-case keeps one key per vendor ID.
    assert validate_vendor_id("a00012345") == "A00012345"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "A0001234",  # 7 digits
        "A000123456",  # 9 digits
        "00012345",  # no A
        "B00012345",
        "A0001234X",
        "A 00012345",
        "AA0012345",
        "A０００１２３４５",  # full-width digits from a Korean IME: not the ID Coupang knows
        "A٠٠٠١٢٣٤٥",  # Arabic-Indic digits
    ],
)
def test_malformed_vendor_id_is_refused_naming_the_field(raw):
    error = refusal(validate_vendor_id, raw)
    assert set(error.errors) == {"vendor_id"}
    assert "A00012345" in str(error)  # shows the expected shape


# ---------------------------------------------------------------- fact 3: 180-day lifetime


@pytest.mark.parametrize(
    ("issued", "expires"),
    [
        (date(2025, 1, 1), date(2025, 6, 30)),
        (date(2025, 7, 1), date(2025, 12, 28)),
        (date(2025, 12, 1), date(2026, 5, 30)),
    ],
)
def test_key_expires_180_days_after_issue(issued, expires):
    assert expiry_from_issue(issued) == expires
    assert resolve_dates(issued, None) == (issued, expires)


def test_date_wing_shows_is_taken_as_is():
    # WING's own date wins even when it is not issue + 180 (e.g. the key was issued before we knew).
    assert resolve_dates(None, date(2025, 8, 15)) == (None, date(2025, 8, 15))


def test_issue_date_and_wing_date_that_disagree_are_refused():
    error = refusal(resolve_dates, date(2025, 1, 1), date(2025, 7, 30))
    assert set(error.errors) == {"expires_on"}


def test_issue_date_and_wing_date_that_agree_are_taken():
    # `keys export` writes both, and the exported sheet imports back
    assert resolve_dates(date(2025, 1, 1), date(2025, 6, 30)) == (date(2025, 1, 1), date(2025, 6, 30))


def test_neither_date_is_refused():
    error = refusal(resolve_dates, None, None)
    assert set(error.errors) == {"issued_on"}


# ---------------------------------------------------------------- days_left and phase


EXPIRES = date(2025, 6, 30)


@pytest.mark.parametrize(
    ("today", "days", "phase", "button"),
    [
        (date(2025, 1, 1), 180, Phase.HEALTHY, False),
        (date(2025, 6, 15), 15, Phase.HEALTHY, False),  # D-15
        (date(2025, 6, 16), 14, Phase.REISSUE_WINDOW, True),  # D-14: WING's Reissue button appears
        (date(2025, 6, 23), 7, Phase.REISSUE_WINDOW, True),
        (date(2025, 6, 29), 1, Phase.REISSUE_WINDOW, True),
        (date(2025, 6, 30), 0, Phase.REISSUE_WINDOW, True),  # D-0: "expires today", still usable
        (date(2025, 7, 1), -1, Phase.EXPIRED, False),  # the day after expiry: Issue (발급), not Reissue
        (date(2025, 9, 1), -63, Phase.EXPIRED, None),
    ],
)
def test_days_left_and_phase_at_the_boundaries(today, days, phase, button):
    assert days_left(EXPIRES, today) == days
    assert phase_for(days) is phase
    if button is not None:
        assert reissue_button_active(days) is button


def test_d0_reads_expires_today_and_the_day_after_reads_expired():
    assert describe_days_left(0) == "expires today"
    assert "expired" in describe_days_left(-1)
    assert "1" in describe_days_left(-1)
    assert "14" in describe_days_left(14)
    assert "expire" not in describe_days_left(14)


def test_days_left_counts_the_leap_day():
    assert days_left(date(2028, 3, 1), date(2028, 2, 28)) == 2
    assert days_left(date(2027, 3, 1), date(2027, 2, 28)) == 1


# ---------------------------------------------------------------- fact 11: Korean calendar days


@pytest.mark.parametrize(
    ("instant", "korean_date"),
    [
        (utc(2025, 6, 15, 14, 59, 59), date(2025, 6, 15)),  # 23:59:59 in Seoul
        (utc(2025, 6, 15, 15, 0, 1), date(2025, 6, 16)),  # 00:00:01 in Seoul, UTC still says the 15th
        (utc(2025, 6, 15, 15, 0, 0), date(2025, 6, 16)),  # midnight exactly is the new day
        (utc(2025, 12, 31, 15, 0, 0), date(2026, 1, 1)),  # new year arrives in Korea first
    ],
)
def test_local_date_is_the_korean_calendar_date(instant, korean_date):
    assert local_date(instant, SEOUL) == korean_date


def test_days_left_is_not_a_day_off_around_korean_midnight():
    expires_on = date(2025, 6, 30)
    last_second_of_d1 = utc(2025, 6, 29, 14, 59, 59)  # 2025-06-29 23:59:59 KST
    first_second_of_d0 = utc(2025, 6, 29, 15, 0, 1)  # 2025-06-30 00:00:01 KST, UTC date still 06-29
    assert days_left(expires_on, local_date(last_second_of_d1, SEOUL)) == 1
    assert days_left(expires_on, local_date(first_second_of_d0, SEOUL)) == 0

    first_second_expired = utc(2025, 6, 30, 15, 0, 1)  # 2025-07-01 00:00:01 KST
    assert phase_for(days_left(expires_on, local_date(first_second_expired, SEOUL))) is Phase.EXPIRED


def test_window_opens_at_korean_midnight_not_utc_midnight():
    expires_on = date(2025, 6, 30)
    d15_late = utc(2025, 6, 15, 14, 59, 59)  # 06-15 23:59:59 KST → D-15
    d14_early = utc(2025, 6, 15, 15, 0, 1)  # 06-16 00:00:01 KST → D-14
    assert phase_for(days_left(expires_on, local_date(d15_late, SEOUL))) is Phase.HEALTHY
    assert phase_for(days_left(expires_on, local_date(d14_early, SEOUL))) is Phase.REISSUE_WINDOW


def test_local_date_refuses_a_naive_datetime():
    with pytest.raises(ValueError):
        local_date(datetime(2025, 6, 15, 12, 0), SEOUL)


# ---------------------------------------------------------------- leap years


@pytest.mark.parametrize(
    ("issued", "expires"),
    [
        (date(2028, 1, 1), date(2028, 6, 29)),  # Feb 2028 has 29 days
        (date(2027, 1, 1), date(2027, 6, 30)),  # same issue day, common year
        (date(2027, 9, 1), date(2028, 2, 28)),  # over the start of Feb 2028
        (date(2027, 9, 15), date(2028, 3, 13)),  # over 29 Feb 2028
        (date(2026, 9, 15), date(2027, 3, 14)),  # same span, no leap day
        (date(2028, 2, 29), date(2028, 8, 27)),  # issued on the leap day itself
    ],
)
def test_expiry_over_leap_years(issued, expires):
    assert expiry_from_issue(issued) == expires


# ---------------------------------------------------------------- fact 4 and milestones


@pytest.mark.parametrize(
    ("days_before", "due"),
    [(14, date(2025, 6, 16)), (7, date(2025, 6, 23)), (1, date(2025, 6, 29)), (0, date(2025, 6, 30))],
)
def test_milestone_d_n_falls_n_days_before_expiry(days_before, due):
    assert milestone_date(date(2025, 6, 30), days_before) == due


def test_milestone_crossing_a_leap_day():
    assert milestone_date(date(2028, 3, 10), 14) == date(2028, 2, 25)
    assert milestone_date(date(2027, 3, 10), 14) == date(2027, 2, 24)


def test_milestone_is_due_at_nine_in_seoul_which_is_midnight_utc_the_same_day():
    due = milestone_due_at(date(2025, 6, 30), 14, NINE_AM, SEOUL)
    assert due == utc(2025, 6, 16, 0, 0)
    assert due.utcoffset() == timedelta(0)


def test_milestone_due_time_early_in_the_korean_morning_is_the_previous_utc_day():
    due = milestone_due_at(date(2025, 6, 30), 7, time(8, 30), SEOUL)
    assert due == utc(2025, 6, 22, 23, 30)


def test_milestone_due_time_in_another_zone():
    due = milestone_due_at(date(2025, 6, 30), 0, NINE_AM, ZoneInfo("UTC"))
    assert due == utc(2025, 6, 30, 9, 0)


# ---------------------------------------------------------------- facts 5–7: reissue path


AT = utc(2025, 6, 20, 3, 0)


@pytest.mark.parametrize(
    ("today", "path", "delay"),
    [
        (date(2025, 6, 15), ReissuePath.EARLY, timedelta(hours=24)),  # D-15: delete + issue
        (date(2025, 1, 1), ReissuePath.EARLY, timedelta(hours=24)),
        (date(2025, 6, 16), ReissuePath.REISSUE, timedelta(minutes=30)),  # D-14: Reissue button
        (date(2025, 6, 30), ReissuePath.REISSUE, timedelta(minutes=30)),  # D-0
        (date(2025, 7, 1), ReissuePath.AFTER_EXPIRY, timedelta(hours=24)),  # D+1: Issue, linking info again
        (date(2025, 12, 5), ReissuePath.AFTER_EXPIRY, timedelta(hours=24)),
    ],
)
def test_reissue_path_and_access_deadline(today, path, delay):
    chosen = reissue_path(date(2025, 6, 30), today)
    assert chosen is path
    assert access_deadline(chosen, AT) == AT + delay


@pytest.mark.parametrize("planned", list(ReissuePath))
def test_a_request_whose_key_expires_before_it_is_done_takes_the_issue_path(planned):
    assert path_now(planned, date(2025, 6, 30), date(2025, 6, 30)) is planned  # D-0: as planned
    assert path_now(planned, date(2025, 6, 30), date(2025, 7, 1)) is ReissuePath.AFTER_EXPIRY


def test_wing_advice_names_the_button_in_wings_korean_words_and_the_delay():
    window, early, expired = (str(wing_advice(path_for(d))) for d in (14, 15, -1))
    assert "Reissue (재발급)" in window and "30 minutes" in window
    assert "Delete (삭제), then Issue (발급)" in early
    assert "Issue (발급)" in expired and "linking info" in expired and "24 hours" in expired
    assert "재발급" not in expired


# ---------------------------------------------------------------- fact 8: linking info, integrator


def test_integrator_needs_one_name_and_nothing_else():
    info = validate_linking_info("integrator", integrator_name="  Sellmate  ")
    assert info.integration == "integrator"
    assert info.integrator_name == "Sellmate"
    assert info.ip_addresses == ()
    assert info.company_url is None


def test_integrator_without_a_name_is_refused():
    error = refusal(validate_linking_info, "integrator", integrator_name="  ")
    assert "integrator_name" in error.errors


@pytest.mark.parametrize("names", ["Sellmate; PlayAuto", "Sellmate\nPlayAuto"])
def test_a_second_integrator_is_refused(names):
    error = refusal(validate_linking_info, "integrator", integrator_name=names)
    assert "integrator_name" in error.errors


@pytest.mark.parametrize("name", ["Sellmate Co., Ltd.", "Marks and Spencer", "A/S Korea"])
def test_one_integrator_with_punctuation_in_its_name_is_accepted(name):
    assert validate_linking_info("integrator", integrator_name=name).integrator_name == name


@pytest.mark.parametrize(
    "extra",
    [
        {"company_name": "Hanbit"},
        {"company_url": "https://hanbit.example"},
        {"ip_addresses": "211.45.10.3"},
    ],
)
def test_self_developed_fields_are_ignored_for_an_integrator(extra):
    info = validate_linking_info("integrator", integrator_name="Sellmate", **extra)
    assert info == LinkingInfo(Integration.INTEGRATOR, integrator_name="Sellmate")


@pytest.mark.parametrize("integration", [None, "", "both", "INTEGRATOR?"])
def test_unknown_integration_is_refused(integration):
    error = refusal(validate_linking_info, integration)
    assert "integration" in error.errors


# ---------------------------------------------------------------- fact 8: linking info, self-developed


def test_self_developed_with_company_url_and_ips():
    info = self_developed(ip_addresses="211.45.10.3; 52.78.1.20\n13.124.0.7")
    assert info.integration == "self"
    assert info.company_name == "Hanbit Trading"
    assert info.company_url == "https://hanbit.example.co.kr"
    assert info.ip_addresses == ("211.45.10.3", "52.78.1.20", "13.124.0.7")
    assert info.integrator_name is None


def test_ip_list_may_be_given_as_a_list():
    assert self_developed(ip_addresses=["211.45.10.3", "52.78.1.20"]).ip_addresses == (
        "211.45.10.3",
        "52.78.1.20",
    )


@pytest.mark.parametrize("url", ["wing.coupang.com", "https://wing.coupang.com", "http://shop.example.com/store?id=3"])
def test_url_may_be_a_homepage_or_wing(url):
    assert self_developed(company_url=url).company_url == url


@pytest.mark.parametrize(
    "url",
    [
        "hanbit",  # no scheme and no domain (an empty URL means wing.coupang.com)
        "ftp://hanbit.example.co.kr",
        "https://",
        "https://localhost",
        "https://hanbit example.com",
        "https://hanbit\texample.com",
        "http://[abc",  # broken IPv6 literal: must be a refusal, not a crash
        "http://hanbit.example.com:port",
    ],
)
def test_bad_url_is_refused(url):
    error = refusal(self_developed, company_url=url)
    assert set(error.errors) == {"company_url"}


def test_missing_company_name_is_refused():
    error = refusal(self_developed, company_name="  ")
    assert set(error.errors) == {"company_name"}


def test_an_integrator_name_is_ignored_for_a_self_developed_key():
    assert self_developed(integrator_name="Sellmate").integrator_name is None


def test_self_developed_needs_at_least_one_ip():
    error = refusal(self_developed, ip_addresses="")
    assert set(error.errors) == {"ip_addresses"}


def test_ten_ips_allowed_eleven_refused():
    assert len(self_developed(ip_addresses=PUBLIC_IPS[:10]).ip_addresses) == 10
    error = refusal(self_developed, ip_addresses=PUBLIC_IPS[:11])
    assert set(error.errors) == {"ip_addresses"}
    assert "10" in error.errors["ip_addresses"]


def test_duplicate_ip_is_refused_naming_it():
    error = refusal(self_developed, ip_addresses="211.45.10.3 52.78.1.20 211.45.10.3")
    assert "211.45.10.3" in error.errors["ip_addresses"]


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.5",  # private 10/8
        "10.255.255.255",
        "172.16.0.1",  # private 172.16/12
        "172.31.255.254",
        "192.168.0.10",  # private 192.168/16
        "127.0.0.1",  # loopback
        "169.254.10.20",  # link-local
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "255.255.255.255",
        "192.0.2.10",  # documentation (TEST-NET-1)
        "198.51.100.7",  # TEST-NET-2
        "203.0.113.99",  # TEST-NET-3
        "100.64.1.1",  # carrier-grade NAT: Coupang never sees it
        "2001:4860:4860::8888",  # IPv6, public but not accepted by WING
        "::1",
        "211.45.10",  # malformed
        "211.45.10.256",
        "211.45.10.3.4",
        "0211.45.10.3",
        "example.com",
        "211.45.10.3/32",
    ],
)
def test_unusable_ip_is_refused_naming_the_address(address):
    error = refusal(validate_ip, address)
    assert set(error.errors) == {"ip_addresses"}
    assert address in error.errors["ip_addresses"]
    # and the same inside the form, among good addresses
    form_error = refusal(self_developed, ip_addresses=["211.45.10.3", address])
    assert address in form_error.errors["ip_addresses"]


@pytest.mark.parametrize("address", ["172.15.255.255", "172.32.0.1", "11.0.0.1", "192.169.0.1"])
def test_neighbours_of_private_ranges_are_public(address):
    assert validate_ip(address) == address


def test_several_field_errors_are_reported_together():
    error = refusal(
        validate_linking_info,
        "self",
        integrator_name="Sellmate",
        company_name="",
        company_url="hanbit",
        ip_addresses="10.0.0.1",
    )
    assert set(error.errors) == {"company_name", "company_url", "ip_addresses"}
    assert all(message.strip() for message in error.errors.values())
    assert "10.0.0.1" in error.errors["ip_addresses"]


# ---------------------------------------------------------------- fact 9: edit quota


NOW = utc(2025, 6, 20, 6, 0)  # 15:00 in Seoul


def edits(count: int, first: datetime, step: timedelta = timedelta(hours=1)) -> list[datetime]:
    return [first + step * i for i in range(count)]


def test_ten_edits_in_seven_days_are_allowed():
    history = edits(9, NOW - timedelta(days=3))
    quota = check_edit_allowed(history, NOW, SEOUL)  # this would be the 10th
    assert quota.used == 9
    assert quota.remaining == 1


def test_the_eleventh_edit_is_refused_with_when_the_next_is_possible():
    oldest = utc(2025, 6, 14, 1, 0)  # 2025-06-14 10:00 in Seoul
    history = edits(10, oldest)
    error = refusal(check_edit_allowed, history, NOW, SEOUL)
    # the oldest edit + 7 days, shown on the Korean clock
    assert "2025-06-21 10:00" in str(error)
    assert edit_quota(history, NOW).next_possible_at == utc(2025, 6, 21, 1, 0)
    assert edit_quota(history, NOW).remaining == 0


def test_next_edit_time_is_shown_in_the_configured_zone():
    history = edits(10, utc(2025, 6, 14, 1, 0))
    error = refusal(check_edit_allowed, history, NOW, ZoneInfo("UTC"))
    assert "2025-06-21 01:00" in str(error)


def test_edit_is_possible_again_once_the_oldest_is_seven_days_old():
    history = edits(10, utc(2025, 6, 14, 1, 0))
    reopens = utc(2025, 6, 21, 1, 0)
    with pytest.raises(InvalidInput):
        check_edit_allowed(history, reopens - timedelta(seconds=1), SEOUL)
    assert check_edit_allowed(history, reopens, SEOUL).used == 9


def test_edits_older_than_seven_days_do_not_count():
    stale = edits(10, NOW - timedelta(days=9))
    recent = edits(9, NOW - timedelta(days=2))
    quota = check_edit_allowed(stale + recent, NOW, SEOUL)
    assert quota.used == 9


def test_next_possible_edit_with_more_than_ten_recorded():
    # 12 edits in the window (e.g. imported history): three must age out before the next one.
    history = edits(12, utc(2025, 6, 14, 1, 0))
    assert edit_quota(history, NOW).next_possible_at == utc(2025, 6, 21, 3, 0)


# ---------------------------------------------------------------- property tests


def _usable(address: ipaddress.IPv4Address) -> bool:
    return address.is_global and not address.is_multicast


global_ipv4 = st.ip_addresses(v=4).filter(_usable)
# ip_addresses() favours special ranges, so lists of them filter out too much; for lists, draw from
# /8 blocks that hold no special-purpose range (the filter then only guards the construction).
_PUBLIC_FIRST_OCTETS = [
    n
    for n in range(1, 224)
    if n not in {10, 100, 127, 169, 172, 192, 198, 203}  # blocks with private/shared/doc/test ranges
]
public_block_ipv4 = st.builds(
    lambda first, rest: ipaddress.IPv4Address((first << 24) | rest),
    st.sampled_from(_PUBLIC_FIRST_OCTETS),
    st.integers(0, 2**24 - 1),
).filter(_usable)
private_ipv4 = st.one_of(
    st.ip_addresses(network="10.0.0.0/8"),
    st.ip_addresses(network="172.16.0.0/12"),
    st.ip_addresses(network="192.168.0.0/16"),
)


@given(st.one_of(global_ipv4, public_block_ipv4))
def test_any_global_ipv4_is_accepted_and_normalised(address):
    assert validate_ip(str(address)) == str(address)
    assert validate_ip(str(address)) == str(ipaddress.IPv4Address(str(address)))


@given(private_ipv4)
def test_any_private_ipv4_is_refused_naming_it(address):
    error = refusal(validate_ip, str(address))
    assert str(address) in error.errors["ip_addresses"]


@given(st.lists(st.one_of(global_ipv4, public_block_ipv4), min_size=1, max_size=10, unique=True))
def test_up_to_ten_unique_global_ips_are_accepted(addresses):
    info = self_developed(ip_addresses=" ".join(str(a) for a in addresses))
    assert info.ip_addresses == tuple(str(a) for a in addresses)


@given(st.lists(public_block_ipv4, min_size=11, max_size=15, unique=True))
def test_more_than_ten_ips_are_refused(addresses):
    error = refusal(self_developed, ip_addresses=[str(a) for a in addresses])
    assert set(error.errors) == {"ip_addresses"}


host_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(
    st.sampled_from(["http", "https"]),
    st.lists(host_label, min_size=1, max_size=3),
    st.sampled_from(["com", "co.kr", "kr", "net"]),
    st.sampled_from(["", "/", "/shop", "/store?id=3"]),
)
def test_http_urls_from_host_labels_are_accepted(scheme, labels, tld, path):
    url = f"{scheme}://{'.'.join(labels)}.{tld}{path}"
    assert validate_url(url) == url


@given(st.lists(host_label, min_size=1, max_size=3), st.sampled_from(["com", "co.kr"]))
def test_bare_domains_are_taken_as_https(labels, tld):
    url = f"{'.'.join(labels)}.{tld}"
    assert validate_url(url) == f"https://{url}"


@given(st.text(max_size=40))
def test_any_text_is_either_a_vendor_id_or_a_refusal(raw):
    try:
        value = validate_vendor_id(raw)
    except InvalidInput as error:
        assert str(error).strip()
    else:
        assert len(value) == 9
        assert value[0] == "A"
        assert value[1:].isascii() and value[1:].isdigit()


@given(st.text(max_size=40))
def test_any_text_is_either_an_ip_or_a_refusal(raw):
    try:
        value = validate_ip(raw)
    except InvalidInput as error:
        assert str(error).strip()
        assert set(error.errors) == {"ip_addresses"}
    else:
        assert ipaddress.ip_address(value).is_global


@given(st.one_of(st.text(max_size=40), st.builds(lambda s: "http://" + s, st.text(max_size=30))))
@example("shop.example.com")
@example("http://shop.example.com/a b")
@example(" WING.coupang.com ")
def test_any_text_is_either_a_url_or_a_refusal(raw):
    try:
        value = validate_url(raw)
    except InvalidInput as error:
        assert str(error).strip()
        assert set(error.errors) == {"company_url"}
    else:
        typed = raw.strip()
        assert value in {typed, f"https://{typed}"}  # as typed, or a bare domain made https://
        if typed.lower().split("://")[-1] != WING_URL:
            parts = urlsplit(value)
            assert parts.scheme in {"http", "https"} and "." in (parts.hostname or "")
            assert not any(ch.isspace() for ch in value)
        assert validate_url(value) == value  # what was stored is accepted again unchanged


@given(
    integration=st.sampled_from(["self", "integrator", "", "other"]),
    integrator_name=st.text(max_size=20),
    company_name=st.text(max_size=20),
    company_url=st.text(max_size=30),
    ip_addresses=st.text(max_size=60),
)
@example(
    integration="self",
    integrator_name="",
    company_name=" Example Co ",
    company_url="shop.example.com",
    ip_addresses="211.45.10.3\n8.8.8.8",
)
@example(integration="integrator", integrator_name=" Cafe24 ", company_name="", company_url="", ip_addresses="")
def test_any_linking_form_is_either_valid_or_refused_field_by_field(
    integration, integrator_name, company_name, company_url, ip_addresses
):
    try:
        info = validate_linking_info(integration, integrator_name, company_name, company_url, ip_addresses)
    except InvalidInput as error:
        assert error.errors
        assert all(message.strip() for message in error.errors.values())
        assert set(error.errors) <= {
            "integration",
            "integrator_name",
            "company_name",
            "company_url",
            "ip_addresses",
        }
    else:  # accepted: exactly what Coupang takes, and validating it again gives it back unchanged
        assert info.integration == integration
        if info.integration is Integration.INTEGRATOR:
            assert info.integrator_name == integrator_name.strip() != ""
            assert (info.company_name, info.company_url, info.ip_addresses) == (None, None, ())
        else:
            assert info.company_name == company_name.strip() != ""
            assert info.company_url == validate_url(company_url)
            assert 1 <= len(info.ip_addresses) <= MAX_IPS and len(set(info.ip_addresses)) == len(info.ip_addresses)
            assert info.ip_addresses == tuple(validate_ip(ip) for ip in split_ips(ip_addresses))  # each one kept
            assert all(ipaddress.ip_address(ip).is_global for ip in info.ip_addresses)
        again = [info.integrator_name, info.company_name, info.company_url, list(info.ip_addresses)]
        assert validate_linking_info(str(info.integration), *again) == info
