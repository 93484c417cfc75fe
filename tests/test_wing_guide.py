"""The WING guide in Coupang's own words (DOMAIN.md facts 15 and 16): the path its expiry email names, the
validity as "180일(약 6개월)", and the warning that a delete-and-issue locks the new key's linking info."""

from __future__ import annotations

from datetime import date

import pytest

from bot.rules import ReissuePath
from bot.services.reissue import ReissuePlan
from bot.slack.reissue import build_path_warning, wing_steps

EMAIL_PATH = "Wing > 판매자정보 > 추가판매정보- OPEN API 키 발급"
LOCK = "마지막 수정일을 기준으로 7일 이후"


def plan(path: ReissuePath, days_left: int) -> ReissuePlan:
    return ReissuePlan("A00012345", "Shop", 1, date(2027, 4, 30), days_left, path)


@pytest.mark.parametrize("path", list(ReissuePath))
def test_the_steps_name_the_path_of_coupangs_expiry_email_and_the_validity(path: ReissuePath) -> None:
    korean = wing_steps("ko", path)
    assert EMAIL_PATH in korean and "180일(약 6개월)" in korean
    english = wing_steps("en", path)
    assert EMAIL_PATH in english and "180 days (about 6 months)" in english


def test_a_delete_and_issue_is_warned_that_the_linking_info_then_locks_for_7_days() -> None:
    for lang in ("en", "ko"):
        assert LOCK in build_path_warning(lang, plan(ReissuePath.EARLY, 100))  # before the request
        assert LOCK in wing_steps(lang, ReissuePath.EARLY)  # where the person acts
    assert "IP 주소를 정확히 입력하세요" in build_path_warning("ko", plan(ReissuePath.EARLY, 100))
    assert "right IP addresses" in build_path_warning("en", plan(ReissuePath.EARLY, 100))
    # a Reissue keeps the linking info, and the expired path is not a delete: no lock warning there
    assert LOCK not in build_path_warning("en", plan(ReissuePath.REISSUE, 7))
    assert LOCK not in wing_steps("en", ReissuePath.REISSUE)
