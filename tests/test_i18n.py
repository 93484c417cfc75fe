"""Korean and English: the catalogs are complete and fresh, Korean fits Slack's limits, dates read the Korean way,
and the whole bot runs in either language, per person and per team, end to end against the fake Slack."""

from __future__ import annotations

import io
import json
import re
import string
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from slack_sdk.models.blocks import Block

from bot import i18n
from bot.bootstrap import build_services
from bot.config import ConfigError
from bot.i18n import t
from bot.rules import EditQuota, ReissuePath, wing_advice
from bot.services.languages import CACHE_SECONDS, LanguageService
from bot.services.overview import KeyFacts, Overview
from bot.services.reminders import Reminder
from bot.services.rollout import ConsumerState, Progress
from bot.slack import ids, reminders, rollout, summary, views
from bot.slack.reminders import SlackNotifier
from tests import factories
from tests.clock import SEOUL, Clock
from tests.conftest import ADMIN, OWNER, USER, make_settings
from tests.fake_coupang import FakeCoupang
from tests.fake_slack import FakeSlack
from tests.slack_harness import INVITED_CHANNELS, SlackHarness
from tests.test_reissue_slack import buttons
from tests.test_slack_keys import GOOD
from tests.test_verification import VENDOR, build
from tests.test_views import page, status

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "bot/locale/ko/LC_MESSAGES/messages.po"
MO = PO.with_suffix(".mo")
APPROVER = "UAPPROVE1"


def catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="ko")


def extraction_keywords() -> dict[str, Any]:
    """The Makefile's I18N_KEYWORDS (``-k name`` or ``-k name:N``) in Babel's form: one list for both."""
    line = re.search(r"^I18N_KEYWORDS := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert line, "the Makefile lost I18N_KEYWORDS"
    keywords: dict[str, Any] = {}
    for spec in re.findall(r"-k (\S+)", line.group(1)):
        name, _, index = spec.partition(":")
        keywords[name] = (int(index),) if index else None
    return keywords


def source_messages() -> set[str]:
    found = extract_from_dir(str(ROOT / "bot"), method_map=[("**.py", "python")], keywords=extraction_keywords())
    return {message for _, _, message, _, _ in found if isinstance(message, str) and message}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# ---------------------------------------------------------------- the catalog


def test_extraction_finds_the_messages_of_every_marker_kind():
    """The check below passes vacuously if extraction finds nothing (a keyword renamed, a path moved)."""
    found = source_messages()
    assert {
        "Request reissue",  # t(lang, ...)
        "does not link to the entry before it",  # N_(...)
        "Enter the company name.",  # Msg(...)
        "Give the date the key was issued, or the expiry date WING shows.",  # InvalidInput.one(field, ...)
        "Only admins may manage the consumers of {vendor_id}.",  # NotAllowed(...)
        "DATABASE_URL is not a database URL: use {use}.",  # ConfigError(...)
        "Which button? e.g. :click 3",  # console hint(...)
    } <= found
    assert len(found) > 300


def test_every_message_in_the_code_has_a_korean_translation():
    ko = catalog()
    untranslated = sorted(m for m in source_messages() if ko.get(m) is None or not ko.get(m).string or ko.get(m).fuzzy)
    assert untranslated == [], "run `make translations` and translate these in messages.po"


def test_korean_strings_keep_the_english_placeholders():
    differ = {m.id: m.string for m in catalog() if m.id and placeholders(m.id) != placeholders(m.string)}
    assert differ == {}


def test_the_shipped_mo_is_compiled_from_the_po():
    compiled = io.BytesIO()
    write_mo(compiled, catalog())
    assert MO.read_bytes() == compiled.getvalue(), "bot/locale is stale: run `make translations`"


def test_the_catalog_is_package_data_so_pip_install_ships_it():
    assert 'bot = ["locale/*/LC_MESSAGES/*.mo"]' in (ROOT / "pyproject.toml").read_text()
    assert t("ko", "Request reissue") == "재발급 요청"


# ---------------------------------------------------------------- Korean words, dates and limits


def test_korean_dates_days_and_times():
    assert i18n.day("ko", date(2026, 12, 7)) == "2026년 12월 7일(월)"
    assert i18n.day("en", date(2026, 12, 7)) == "2026-12-07"
    assert i18n.days_left("ko", 7) == "D-7" and i18n.days_left("ko", -3) == "만료 3일 지남"
    assert i18n.days_left("en", 7) == "7 days left" and i18n.days_left("en", -1) == "expired 1 day ago"
    morning = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # 09:00 in Seoul
    assert i18n.moment("ko", morning, SEOUL) == "2026년 12월 7일(월) 오전 9:00"
    assert i18n.moment("ko", morning + timedelta(hours=12, minutes=5), SEOUL) == "2026년 12월 7일(월) 오후 9:05"


def test_korean_wing_steps_use_wings_own_words():
    assert i18n.render("ko", wing_advice(ReissuePath.EARLY)).endswith("(그 전에는 삭제 후 발급)")
    assert "30분" in i18n.render("ko", wing_advice(ReissuePath.REISSUE))
    steps = t(
        "ko",
        "1. Log in to <https://wing.coupang.com|WING>, click the account ID at the top right and open "
        "*Seller Information (판매자정보)* (or *Additional Sales Information (추가판매정보)*).",
    )
    assert "*판매자정보*" in steps and "*추가판매정보*" in steps and "Seller Information" not in steps


def test_korean_verification_failures_quote_coupangs_faq_titles_only_where_they_fit():
    assert "(Not allowed IP)" in i18n.outcome_label("ko", "ip_not_allowed")
    # "invalid key" also covers clock-skew 401s and a 403: no single FAQ title fits it (KOREAN_REVIEW A5)
    assert i18n.outcome_label("ko", "invalid_key") == "키 거부됨"


def _reminder(days: int) -> Reminder:
    return Reminder(VENDOR, "가게" * 50, 1, days, date(2026, 12, 7), days, OWNER, "CSHOP0001")


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_view_fits_slacks_limits_in_both_languages(lang):
    """slack_sdk's models refuse a button over 75 characters, a modal title over 24, and the like."""
    statuses = [status(n, days=d) for n, d in enumerate((30, 7, 0, -3))]
    quota = EditQuota(used=3, next_possible_at=None)
    built = [
        views.build_register_modal(lang),
        views.build_edit_linking_modal(lang, statuses[0], quota),
        views.build_home_view(lang, page(statuses), SEOUL),
        views.build_notice_modal(lang, "x"),
        *views.build_status_blocks(lang, page(statuses), SEOUL),
        *views.build_delete_confirmation(lang, statuses[1]),
        *reminders.build_reminder_blocks(_reminder(7), lang),
        *reminders.build_digest_blocks([_reminder(d) for d in (14, 7, 1, 0, -2, -9)], lang),
        rollout.build_add_modal(VENDOR, lang),
        rollout.build_remove_modal(VENDOR, ["erp"], lang),
        *rollout.build_consumers_blocks(VENDOR, [], SEOUL, lang),
    ]
    for piece in built:
        if isinstance(piece, dict):  # the status overview is built as plain dicts: the models validate it here
            assert Block.parse(piece).to_dict() == piece
        else:
            assert piece.to_dict()


# ---------------------------------------------------------------- end to end, in either language


def english_phrases() -> set[str]:
    """Every run of two or more English words from a message whose Korean translation does not keep it."""
    phrases = set()
    for message in catalog():
        if not message.id or message.string == message.id:
            continue
        for fragment in re.split(r"\{\w+\}|[*`\n]", message.id):
            fragment = fragment.strip(" .,:;()…—–•")
            if len(re.findall(r"[A-Za-z]{2,}", fragment)) >= 2 and fragment not in message.string:
                phrases.add(fragment)
    return phrases


def transcript(slack: SlackHarness, answers: list[Any]) -> str:
    """Everything the bot said: each Web API call and each answer to a slash command."""
    said = [json.dumps(call.params, ensure_ascii=False) for call in slack.fake.calls]
    said += [a.text_of() for a in answers]
    return "\n".join(said)


@pytest.fixture
def gateway(clock: Clock) -> Iterator[FakeCoupang]:
    with FakeCoupang(clock=clock.now) as fake:
        yield fake


def harness(db_url: str, clock: Clock, gateway: FakeCoupang, language: str) -> Iterator[SlackHarness]:
    settings = make_settings(DATABASE_URL=db_url, KEYBOT_LANGUAGE=language, KEYBOT_APPROVERS=APPROVER)
    services = build(settings, clock, gateway)
    with FakeSlack(invited=INVITED_CHANNELS) as fake, SlackHarness(services, fake) as slack:
        yield slack
        assert [(c.method, c.response) for c in fake.refused] == []  # Korean fits Block Kit's limits too
    services.engine.dispose()


@pytest.fixture(params=["en", "ko"])
def team(request, db_url, clock, gateway) -> Iterator[SlackHarness]:
    yield from harness(db_url, clock, gateway, request.param)


def run_every_flow(slack: SlackHarness, gateway: FakeCoupang, words: dict[str, str]) -> list[Any]:
    """help, register, status, verify, reminder, reissue request → approve → new key, history, App Home."""
    answers = [slack.slash(USER, words["help"])]
    answers.append(slack.slash(ADMIN, words["add"]))
    slack.last_modal(ids.REGISTER_MODAL)
    assert slack.submit(ADMIN, ids.REGISTER_MODAL, GOOD).text in ("", "{}")
    gateway.add_key(factories.access_key(VENDOR), factories.secret_key(VENDOR), VENDOR)
    answers.append(slack.slash(USER, words["status"]))
    answers.append(slack.slash(USER, f"{words['verify']} {VENDOR}"))
    slack.fake.wait_for("response_url")
    slack.services.reminders.sweep(SlackNotifier(slack.app.client, lang=slack.services.languages.team))

    answers.append(slack.slash(OWNER, f"{words['reissue']} {VENDOR}"))
    slack.last_modal(ids.REISSUE_REQUEST_MODAL)
    assert slack.submit(OWNER, ids.REISSUE_REQUEST_MODAL, {"reason": words["reason"]}).text in ("", "{}")
    request_id = buttons(slack.fake.wait_for("chat.postMessage", 2)[-1].params["blocks"])[ids.APPROVE_REISSUE]
    slack.click(APPROVER, ids.APPROVE_REISSUE, request_id)
    slack.fake.wait_for("chat.update")
    slack.click(OWNER, ids.ENTER_NEW_KEY, request_id)
    slack.last_modal(ids.NEW_KEY_MODAL)
    new_key = {"new_access_key": "AKIAnewaccess0123456789", "new_secret_key": "NEWsecret0123456789abcdef"}
    assert slack.submit(OWNER, ids.NEW_KEY_MODAL, new_key).text in ("", "{}")
    slack.fake.wait_for("chat.postMessage", 3)

    answers.append(slack.slash(USER, f"{words['history']} {VENDOR}"))
    slack.home_opened(USER)
    slack.fake.wait_for("views.publish")
    slack.settle()
    assert slack.services.keys.status(VENDOR).generation == 2
    return answers


ENGLISH_WORDS = {k: k for k in ("help", "add", "status", "verify", "reissue", "history")} | {"reason": "leaked"}
KOREAN_WORDS = {
    "help": "도움말",
    "add": "등록",
    "status": "상태",
    "verify": "확인",
    "reissue": "재발급",
    "history": "이력",
    "reason": "키가 유출되었습니다",
}


def test_every_flow_speaks_the_teams_language(team: SlackHarness, gateway: FakeCoupang):
    korean = team.services.languages.team == "ko"
    said = transcript(team, run_every_flow(team, gateway, KOREAN_WORDS if korean else ENGLISH_WORDS))
    if korean:
        leaked = sorted(p for p in english_phrases() if p in said)
        assert leaked == [], "English UI phrases in the Korean run"
        for korean_words in ("도움말", "상태", "판매자정보", "2026년 11월 28일(토)", "D-1", "재발급 요청", "승인"):
            assert korean_words in said
    else:
        for english in ("Request reissue", "Seller Information (판매자정보)", "1 day left", "History of", "works"):
            assert english in said
        assert "재발급 요청" not in said and "2026년" not in said


@pytest.mark.parametrize(
    ("team_language", "personal", "choice"), [("ko", "en", "language en"), ("en", "ko", "언어 ko")]
)
def test_a_person_reads_their_own_language_while_the_channel_keeps_the_teams(
    db_url, clock, gateway, team_language, personal, choice
):
    for slack in harness(db_url, clock, gateway, team_language):
        slack.services.keys.register(ADMIN, factories.form(VENDOR))
        chosen = slack.slash(USER, choice).text_of()
        assert t(personal, ":white_check_mark: From now on I answer you in English.") in chosen
        private = slack.slash(USER, f"status {VENDOR}").text_of()
        assert t(personal, "Request reissue") in private and t(team_language, "Request reissue") not in private
        other = slack.slash(OWNER, f"status {VENDOR}").text_of()
        assert t(team_language, "Request reissue") in other  # who chose nothing reads the team's language
        slack.services.reminders.sweep(SlackNotifier(slack.app.client, lang=slack.services.languages.team))
        posted = json.dumps(slack.fake.calls_to("chat.postMessage")[-1].params, ensure_ascii=False)
        assert t(team_language, "Days left") in posted and t(personal, "Days left") not in posted
        slack.home_opened(USER)
        home = json.dumps(slack.fake.wait_for("views.publish")[-1].params, ensure_ascii=False)
        assert t(personal, "Coupang Open API keys") in home


def test_a_language_that_is_not_offered_is_refused_and_changes_nothing(slack: SlackHarness):
    answer = slack.slash(USER, "language fr").text_of()
    assert "language en|ko" in answer
    assert slack.services.languages.of(USER) == "en"
    assert "I answer you in English" in slack.slash(USER, "language").text_of()
    slack.slash(USER, "언어 ko")
    assert "지금은 한국어로" in slack.slash(USER, "언어").text_of()


def test_korean_sub_commands_are_listed_in_the_korean_help(slack: SlackHarness):
    slack.slash(USER, "언어 한국어")
    help_text = slack.slash(USER, "help").text_of()
    for word in (
        "상태",
        "등록",
        "수정",
        "재발급",
        "확인",
        "이력",
        "감사",
        "승인자",
        "삭제",
        "사용처",
        "언어",
        "도움말",
    ):
        assert f"`/coupang-key {word}" in help_text, word
    assert "`/coupang-key 연동" not in help_text  # the old word still works, but reads like WING's 연동 정보
    assert "상태" in slack.slash(USER, "아무거나").text_of()  # an unknown word answers with the help


def test_status_expiring_has_a_korean_word_listed_in_the_korean_help(slack: SlackHarness):
    slack.slash(USER, "언어 한국어")
    assert "`/coupang-key 상태 [업체코드|만료예정 [일수]]`" in slack.slash(USER, "help").text_of()
    with time_machine.travel("2026-11-20 12:00 +09:00"):
        slack.services.keys.register(ADMIN, factories.form("A00000001", issued_on="2026-06-01"))  # 8 days left
        slack.services.keys.register(ADMIN, factories.form("A00000002", issued_on="2026-10-01"))  # healthy
        text = slack.slash(USER, "상태 만료예정 10").text_of()
        refused = slack.slash(USER, "상태 만료예정 열흘").text_of()
    assert "A00000001" in text and "A00000002" not in text
    assert "상태 만료예정 [일수]" in refused


def test_a_refusal_reads_in_the_persons_language(slack: SlackHarness):
    slack.slash(ADMIN, "언어 ko")
    assert "업체코드 'B123'은 올바르지 않습니다" in slack.slash(ADMIN, "이력 B123").text_of()
    assert "Vendor ID 'B123' is not valid" in slack.slash(USER, "history B123").text_of()


def test_the_weekly_summary_and_rollout_progress_read_in_korean():
    due = [KeyFacts(VENDOR, "가게", date(2026, 12, 1), d, 1, None, d == 3) for d in (3, -2)]
    overview = Overview(date(2026, 11, 30), due, healthy=4, reissue_window=1, expired=1)
    retry_at = datetime(2026, 11, 30, 1, 5, tzinfo=UTC)
    failing = ConsumerState(
        VENDOR, "erp", "webhook", "https://erp.example", "pending", 2, 1, None, None, retry_at, "HTTP 500"
    )
    progress = Progress(VENDOR, 2, (failing,))
    said = json.dumps(
        [
            b.to_dict()
            for b in summary.build_summary_blocks(overview, "ko") + rollout.build_progress_blocks(progress, SEOUL, "ko")
        ],
        ensure_ascii=False,
    )
    assert "주간 키 요약" in said and "2026년 12월 1일(화)" in said and "다시 보내기" in said
    assert sorted(p for p in english_phrases() if p in said) == []


def test_keybot_language_accepts_en_and_ko_only():
    assert make_settings().language == "en" and make_settings(KEYBOT_LANGUAGE="KO").language == "ko"
    with pytest.raises(ConfigError, match="KEYBOT_LANGUAGE='fr' must be en"):
        make_settings(KEYBOT_LANGUAGE="fr")


def test_a_language_chosen_in_another_process_is_read_once_the_cache_time_is_over(db_url):
    first, second = (build_services(make_settings(DATABASE_URL=db_url)) for _ in range(2))
    clock = [0.0]
    reader = LanguageService(first.ctx, monotonic=lambda: clock[0])
    try:
        assert reader.of(USER) == "en"
        second.languages.choose(USER, "ko")
        assert second.languages.of(USER) == "ko"  # the process that took the choice knows it at once
        clock[0] += CACHE_SECONDS + 1
        assert reader.of(USER) == "ko"
    finally:
        first.engine.dispose()
        second.engine.dispose()
