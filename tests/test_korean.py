"""Korean mode reads Korean: every catalogue message rendered with Korean values has no English words outside a short
allow-list (WING's and Coupang's own Latin words, product names, codes a person types), particles after a value
fit the value, and the console, the demo and the CLI (help, status, consumers list, keys import, audit) say nothing
in English when KEYBOT_LANGUAGE=ko."""

from __future__ import annotations

import io
import json
import os
import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot import i18n
from bot.cli import build_parser, main
from bot.console.demo import run_demo
from bot.console.render import mrkdwn_to_text
from bot.i18n import particle, t
from bot.rules import ReissuePath
from bot.services.audit import AuditEntry
from bot.services.keys import CSV_COLUMNS
from bot.services.reminders import Reminder
from bot.slack.reissue import _path_name
from bot.slack.reminders import build_digest_blocks, build_reminder_blocks
from bot.slack.views import audit_action_label, history_sentence
from tests import factories
from tests.conftest import ADMIN, make_settings
from tests.fake_coupang import FakeCoupang
from tests.slack_harness import SlackHarness
from tests.test_cli import MASTER_KEY, row, write_csv
from tests.test_console import Script
from tests.test_i18n import KOREAN_WORDS, catalog, harness, placeholders, run_every_flow
from tests.test_verification import Clock

ROOT = Path(__file__).resolve().parents[1]
SEOUL = ZoneInfo("Asia/Seoul")
MORNING = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)

# Latin words a Korean reader is meant to see: WING's and Coupang's own words, product and protocol names, Slack's
# English-only admin screens (api.slack.com), Coupang's answers quoted as Coupang's FAQ titles them
ALLOWED = (
    "Access Key",
    "Secret Key",
    "Open API",
    "Not allowed IP",
    "Not Found",
    "Access Denied",
    "Specified signature is expired",
    "Create New App",
    "From an app manifest",
    "Basic Information",
    "App-Level Tokens",
    "Bot User OAuth Token",
    "Signing Secret",
    "Install to Workspace",
    "Socket Mode",
    "Secrets Manager",
    "Parameter Store",
    "Standard Webhooks",
    "OpenBao",
    "Vault",
    "Slack",
    "WING",
    "Excel",
    "Prometheus",
    "PostgreSQL",
    "SQLite",
    "iCalendar",
    "Ctrl-D",
    "Enter",
    "Asia/Seoul",
    "Authorization: Bearer",  # the HTTP header to send, as typed
    "X-CAG-Warnings",  # Coupang's header, quoted
    "410 Gone",
    "Wing >",  # Coupang's expiry email, quoted
    "utf-8",  # an option's value
)
A, Z = r"(?<![A-Za-z0-9_])", r"(?![A-Za-z0-9_])"  # word edges that Hangul does not blur ("ID를")
CODE = [
    r"`[^`]*`",  # what a person types: commands, column names, values
    r"<[^>]*>",  # Slack mentions and links
    r"https?://\S+",
    rf"{A}[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|kr|net|org|io){Z}",  # host names: wing.coupang.com
    r":[a-z0-9_+-]+:",  # emoji
    rf"{A}--?[a-z][a-z0-9-]*",  # command-line options
    r"[\w.-]*\.(?:env|csv|db|ics|mo|po)" + Z,
    r"[a-z]*/[a-z][\w/.-]*",  # paths and slash commands: /healthz, /coupang-key, apps/orders/coupang
    rf"{A}[A-Z][A-Z0-9_]*[A-Z0-9]{Z}",  # environment variables, acronyms (URL, IP, API, HTTP…), Slack IDs
    rf"{A}fp:[0-9a-f]+",  # a Secret Key fingerprint
    rf"{A}[A-Za-z_]*\d[\w-]*",  # vendor IDs, key masks, D-7, v2, RFC 5545
    rf"{A}D-Day{Z}",
    rf"{A}(?:YYYY-MM-DD|HH:MM|e\.g\.)",
    rf"{A}(?:chat|views|users|conversations|usergroups|auth)\.[A-Za-z]+{Z}",  # Slack Web API methods
    # values a person types or reads in a file: settings, scopes, API names, the program's name
    rf"{A}(?:xoxb|xapp|xoxp|whsec|erp|order-sync|ko|en|add|remove|secret|none|self|integrator|required|true|false"
    rf"|text|json|mon|tue|sun|off|user:password|cron|https?|coupang-keybot|returnShippingCenters|apps/orders/coupang"
    rf"|settings\.socket_mode_enabled|connections:write|manifest\.yml|localhost|webhook|retarget|coupang/){Z}",
    rf":(?:help|tick|as|group|home|quit|click|bogus){Z}",  # console commands
    rf"{A}N\|Nh{Z}",  # :tick's argument, as typed
]


def english_words(text: str) -> list[str]:
    """The English words left in ``text`` once the allowed words and what a person types are taken out."""
    for word in ALLOWED:
        text = text.replace(word, " ")
    for pattern in CODE:
        text = re.sub(pattern, " ", text)
    return re.findall(r"[A-Za-z]{2,}", text)


SAMPLES: dict[str, object] = {
    "vendor_id": "A00012343",
    "vendor_ids": "A00012343, A00012346",
    "label": "행복상회",
    "user": "<@U0123ABCD>",
    "owner": "<@U0123ABCD>",
    "actor": "<@U0123ABCD>",
    "requester": "<@U0123ABCD>",
    "admins": "<@U0123ABCD>",
    "date": i18n.day("ko", date(2026, 12, 7)),
    "today": i18n.day("ko", date(2026, 11, 30)),
    "opens": i18n.day("ko", date(2026, 11, 23)),
    "expires_on": "2026-12-07",
    "expires_on_before": "2026-12-01",
    "issued_on": "2026-06-10",
    "time": i18n.moment("ko", MORNING, SEOUL),
    "when": "2026-12-07 09:00",
    "days_left": "D-7",
    "zone": "한국 시간",
    "outcome": "키 거부됨",
    "reason": "키가 유출되었습니다",
    "linking": "연동업체: 셀러허브",
    "advice": "WING의 재발급 버튼을 누르세요",
    "headline": "만료 1주일 전",
    "name": "주문연동",
    "names": "주문연동, 재고연동",
    "kind": "웹훅",
    "target": "https://erp.example.kr/keys",
    "error": "연결 시간 초과",
    "failure": "연결 거부",
    "problem": "빠진 열: 이름",
    "state": "대기 중",
    "phase": "재발급 가능 기간",
    "delay": "30분",
    "where": "#운영팀",
    "channel": "#운영팀",
    "button": "새 키 입력",
    "action": "키 등록",
    "how": "자동 확인",
    "word": "아무거나",
    "what": "사용자 ID",
    "value": "가나다",
    "mask": "A1b2…z9Y8",
    "fingerprint": "1a2b3c4d",
    "old_fingerprint": "9f8e7d6c",
    "ip": "10.0.0.5",
    "ips": "211.45.10.3",
    "company": "데모 상사",
    "url": "https://shop.example.kr",
    "path": "키목록.csv",
    "file": ".env",
    "target_file": "백업.db",
    "command": "/coupang-key",
    "method": "chat.postMessage",
    "secret": "whsec_a1B2c3D4",
    "title": "재발급 요청",
    "icon": ":key:",
    "columns": "업체코드, 이름",
    "prog": "coupang-keybot",
    "message": "인수가 필요합니다",
    "escape": "\\n",
}


def sample(name: str) -> object:
    return SAMPLES.get(name, 7)  # the rest are counts, numbers and IDs


def render_korean(msgid: str) -> str:
    params = {name: sample(name) for name in placeholders(msgid)}
    try:
        return t("ko", msgid, **params)
    except (ValueError, TypeError):  # a numeric format spec ({size:,}): numbers for every value
        return t("ko", msgid, **dict.fromkeys(params, 7))


def test_every_catalogue_message_rendered_in_korean_has_no_english_outside_the_allow_list():
    # the allow-list is no loophole: raw codes are English words, WING's words and typed values are not
    assert english_words("[reissue_window] rollout.delivered") == ["reissue", "window", "rollout", "delivered"]
    assert english_words("방법: 재발급 · Access Key `abc` D-7, 업체코드 A00012343는 이미 있습니다") == []
    english = {}
    for message in catalog():
        if message.id:
            words = english_words(render_korean(message.id))
            if words:
                english[message.id] = words
    assert english == {}


# ---------------------------------------------------------------- particles after a value


@pytest.mark.parametrize(
    ("value", "topic", "subject", "object_", "direction", "with_"),
    [
        ("A00012340", "은", "이", "을", "으로", "과"),  # 영
        ("A00012341", "은", "이", "을", "로", "과"),  # 일: ㄹ takes 로
        ("A00012342", "는", "가", "를", "로", "와"),  # 이
        ("A00012343", "은", "이", "을", "으로", "과"),  # 삼
        ("A00012345", "는", "가", "를", "로", "와"),  # 오
        ("A00012346", "은", "이", "을", "으로", "과"),  # 육
        ("A00012347", "은", "이", "을", "로", "과"),  # 칠
        ("A00012348", "은", "이", "을", "로", "과"),  # 팔
        ("A00012349", "는", "가", "를", "로", "와"),  # 구
        ("#10", "은", "이", "을", "으로", "과"),  # 십
        ("10.0.0.5", "는", "가", "를", "로", "와"),
        ("사용처", "는", "가", "를", "로", "와"),
        ("행복상회", "는", "가", "를", "로", "와"),
        ("주문연동", "은", "이", "을", "으로", "과"),
        ("서울", "은", "이", "을", "로", "과"),  # ㄹ받침
        ("2026년 12월 7일(월)", "은", "이", "을", "로", "과"),  # the weekday in parentheses is read
        ("order-sync", "는", "가", "를", "로", "와"),
        ("erp", "는", "가", "를", "로", "와"),  # a word ending in a silent-vowel consonant: 이알피
        ("mail", "은", "이", "을", "로", "과"),  # 메일
        ("team", "은", "이", "을", "으로", "과"),  # 팀
        ("URL", "은", "이", "을", "로", "과"),  # 유알엘
        ("VPN", "은", "이", "을", "으로", "과"),  # 브이피엔
        ("API", "는", "가", "를", "로", "와"),  # 에이피아이
        ("'B123'", "은", "이", "을", "으로", "과"),  # quotes are skipped
    ],
)
def test_a_particle_fits_the_value_it_follows(value, topic, subject, object_, direction, with_):
    assert [particle(value, p) for p in ("은", "이", "을", "으로", "과")] == [topic, subject, object_, direction, with_]
    assert particle(value, "는") == topic and particle(value, "를") == object_ and particle(value, "로") == direction


def test_a_value_whose_end_cannot_be_read_gets_both_particles():
    assert particle("<@U0123ABCD>", "은") == "은(는)"  # Slack shows a name the bot does not know
    assert particle("", "을") == "을(를)" and particle("…", "으로") == "(으)로"


def test_a_korean_template_names_the_particle_after_the_placeholder():
    ko = catalog()
    template = ko.get("Vendor ID {value} is not valid: it is A followed by 8 digits, e.g. A00012345.").string
    assert template.startswith("업체코드 {value:은} 올바르지 않습니다")
    said = [
        t("ko", "Vendor ID {value} is not valid: it is A followed by 8 digits, e.g. A00012345.", value=v)
        for v in (
            "A0001234",
            "B12",
        )
    ]
    assert said[0].startswith("업체코드 A0001234는 ") and said[1].startswith("업체코드 B12는 ")
    assert t("en", "Vendor ID {value} is not valid: it is A followed by 8 digits, e.g. A00012345.", value="B12") == (
        "Vendor ID B12 is not valid: it is A followed by 8 digits, e.g. A00012345."
    )


def test_no_korean_template_puts_a_fixed_particle_after_a_placeholder():
    fixed = re.compile(
        r"\{\w+(?:![rs])?\}\*?(?:은\(는\)|이\(가\)|을\(를\)|\(으\)로|[은는이가을를와과]|으로|로)(?=[\s.,)·:]|$)"
    )
    assert [m.string for m in catalog() if m.id and fixed.search(m.string)] == []


# ---------------------------------------------------------------- the review's words


def test_the_reviewed_words():
    assert t("ko", ":hourglass: Coupang is applying a change: the key works by {time}", time="오전 9:00").endswith(
        "늦어도 오전 9:00부터 키가 동작합니다"
    )
    ko = {m.id: m.string for m in catalog() if m.id}
    everything = "\n".join(ko.values())
    assert "연동 시스템" not in everything and "거절" not in everything and "이번 주" not in everything
    assert "D-0" not in everything and "모든 시스템을 바로" not in everything
    assert i18n.days_left("ko", 0) == "오늘 만료 (D-Day)"
    assert i18n.zone_name("ko", "Asia/Seoul") == "한국 시간" and i18n.zone_name("en", "Asia/Seoul") == "Asia/Seoul"
    assert not any("this week" in msgid for msgid in ko)  # the limit is a rolling 7 days in English too
    assert "Edits left in the last 7 days: {left} of {limit}" in ko
    # 확인 is checking with Coupang; a consumer's proof that it uses the new key is 적용
    proofs = {msgid: text for msgid, text in ko.items() if re.search(r"\bconfirm", msgid)}
    assert len(proofs) >= 4 and [text for text in proofs.values() if "확인" in text] == []
    assert "사용처" in t("ko", "consumers VENDOR_ID [add|retarget|remove]") and "반려" in t("ko", "Deny")


def test_no_korean_date_sits_in_nested_parentheses():
    """``(2026년 12월 7일(월))`` reads badly: no date or time placeholder inside parentheses."""
    inside = re.compile(r"\([^()]*\{(?:date|time|opens|today)\}[^()]*\)")
    assert [m.string for m in catalog() if m.id and inside.search(m.string)] == []


# ---------------------------------------------------------------- audit codes


def audit_codes() -> set[str]:
    """Every audit action the code records (string literals such as ``"rollout.delivered"``)."""
    codes = set()
    prefixes = "key|reissue|consumer|rollout|approver|summary|audit|master_key|language|reminder"
    for path in (ROOT / "bot").rglob("*.py"):
        codes |= set(re.findall(rf'"((?:{prefixes})\.[a-z_]+)"', path.read_text()))
    return codes


def test_every_audit_code_has_a_korean_label():
    untranslated = sorted(c for c in audit_codes() if not re.search("[가-힣]", audit_action_label("ko", c)))
    assert "rollout.delivered" in audit_codes() and untranslated == []


def test_a_delivery_in_the_history_reads_as_a_korean_sentence():
    entry = AuditEntry(
        seq=3, at=MORNING, actor="keybot", action="rollout.delivered", vendor_id="A00012343",
        details={"name": "order-sync", "generation": 2, "attempt": 1}, mac="",
    )  # fmt: skip
    assert history_sentence("ko", entry) == "봇: order-sync에 2세대 키를 전달했습니다."
    assert history_sentence("en", entry) == "The bot delivered generation 2 to order-sync."


# ---------------------------------------------------------------- end to end: the CLI in Korean


@pytest.fixture
def korean_cli(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("KEYBOT_", "SLACK_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("KEYBOT_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("KEYBOT_LANGUAGE", "ko")

    def run(*argv: str) -> tuple[int, str, str]:
        out = io.StringIO()
        try:
            code = main(list(argv), out=out)
        except SystemExit as exit_:  # --help
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return code, out.getvalue() + captured.out, captured.err

    return run


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status", "--help"],
        ["keys", "import", "--help"],
        ["consumers", "add", "--help"],
        ["console", "--help"],
        ["reminders", "run", "--help"],
    ],
)
def test_cli_help_is_korean(korean_cli, argv):
    code, out, _ = korean_cli(*argv)
    assert code == 0 and "사용법:" in out and "옵션" in out
    typed = {a.dest for a in build_parser()._actions} | set(COMMAND_WORDS)  # what is typed stays as typed
    assert [w for w in english_words(out) if w not in typed] == []


COMMAND_WORDS = [
    "serve",
    "init",
    "db",
    "upgrade",
    "status",
    "calendar",
    "verify",
    "keys",
    "import",
    "audit",
    "export",
    "reminders",
    "run",
    "master",
    "key",
    "rotate",
    "backup",
    "consumers",
    "add",
    "list",
    "push",
    "remove",
    "console",
]


def test_cli_help_stays_english_in_english():
    assert "usage:" in build_parser("en").format_help() and "show this help and exit" in build_parser().format_help()


@time_machine.travel("2026-11-28T03:00:00Z", tick=False)  # the key expires 2026-12-07: in the reissue window
def test_cli_status_consumers_import_and_audit_read_korean(korean_cli, tmp_path):
    code, out, err = korean_cli(
        "keys", "import", write_csv(tmp_path, row("A00000001", issued_on="", expires_on="2026-12-07"))
    )
    assert code == 0, err
    code, out, err = korean_cli("status")
    assert code == 0 and "[재발급 가능 기간]" in out and "최근 7일 연동 정보 수정 0/10" in out
    code, out, err = korean_cli("consumers", "add", "A00000001", "erp", "--webhook", "http://127.0.0.1:9/keys")
    listed = korean_cli("consumers", "list")[1]
    assert "웹훅" in listed and "시도 1회" in listed, listed
    bad = tmp_path / "bad.csv"
    bad.write_text("vendor_id,label,access_key,secret_key,colour\nA00000002,가게,a,b,red\n")
    code, _, refused = korean_cli("keys", "import", str(bad))
    assert code == 1 and "알 수 없는 열: colour" in refused and "필요한 열: vendor_id(업체코드), label(이름)" in refused
    everything = "\n".join([out, listed, refused, korean_cli("status")[1], korean_cli("audit", "verify")[1]])
    everything = re.sub(r"마지막 오류: .*", "", everything)  # the destination's own error (an exception's name)
    everything = re.sub(r"whsec_\S+", "", everything)  # the signing secret: random base64
    for typed in (*CSV_COLUMNS, "colour", "Shop", "Example Co"):  # column names as the file spells them; the row
        everything = everything.replace(typed, "")
    assert english_words(everything) == [], everything


# ---------------------------------------------------------------- end to end: the console demo in Korean


def test_the_korean_demo_says_nothing_in_english(tmp_path):
    base = make_settings(KEYBOT_LANGUAGE="ko")
    script = Script(
        [
            ":help",
            "/coupang-key 상태",
            ":tick 7",
            "/coupang-key 이력 A00010003",
            "/coupang-key 사용처 A00010002",
            ":home",
            ":bogus",
            ":quit",
        ]
    )
    run_demo(base, out=script.screen, read=script, real_now=datetime(2026, 12, 1, 1, 0, tzinfo=UTC))
    screen = script.screen.getvalue()
    assert script.finished, screen
    assert "체험 모드" in screen and "행복한 생활용품" in screen and "키 사용처" in screen
    assert "D-1" in screen and "최근 20건" in screen and "나에게만 보임" in screen and "앱 홈" in screen
    assert "KST" not in screen and "09:05 한국 시간 실행" in screen and "(한국 시간)" in screen
    assert english_words(screen) == [], screen


# ---------------------------------------------------------------- no word said twice


def _repeated(text: str) -> list[str]:
    words = re.findall(r"[가-힣]+", text)
    return [a for a, b in zip(words, words[1:], strict=False) if a == b]


@pytest.mark.parametrize("path", list(ReissuePath))
def test_the_way_to_a_new_key_names_wings_button_once(path):
    said = _path_name("ko", path)
    assert _repeated(said) == [] and said.count("재발급") <= 1 and "WING에서" in said


def test_a_reminder_without_an_owner_says_so_once():
    orphan = Reminder("A00012343", "행복상회", 1, 7, date(2026, 12, 7), 7, None, "CSHOP0001")
    blocks = build_reminder_blocks(orphan, "ko") + build_digest_blocks([orphan, orphan], "ko")
    texts = re.findall(r'"text": "((?:[^"\\]|\\.)*)"', json.dumps([b.to_dict() for b in blocks], ensure_ascii=False))
    said = " ".join(mrkdwn_to_text(json.loads(f'"{text}"')).replace("*", "") for text in texts).split()
    assert "담당자 담당자" not in " ".join(said) and "담당자: 없음" in " ".join(said)


# ---------------------------------------------------------------- end to end: Slack in Korean


def test_history_audit_and_consumers_read_korean_in_slack(slack: SlackHarness):
    """A delivery that failed, a consumer added: history, the audit list and `사용처` say it in Korean words."""
    slack.slash(ADMIN, "언어 ko")
    slack.services.keys.register(ADMIN, factories.form("A00012343", label="행복상회"))
    slack.services.rollout.add("cli:ops", "A00012343", "erp", "webhook", "http://127.0.0.1:9/keys")
    slack.services.rollout.deliver_now("A00012343", ["erp"])
    history = slack.slash(ADMIN, "이력 A00012343").text_of()
    audit = slack.slash(ADMIN, "감사").text_of()
    consumers = slack.slash(ADMIN, "사용처 A00012343").text_of()
    assert "봇: erp에 1세대 키를 전달하지 못했습니다" in history
    assert "키 사용처 전달 재시도 예정" in audit and "rollout." not in audit + history
    assert "키 사용처" in consumers and consumers == slack.slash(ADMIN, "연동 A00012343").text_of()  # the old word
    # what the destination answered, quoted as it came (an exception's name)
    said = re.sub(r"(오류: |:x: erp: ).*", "", "\n".join([history, audit, consumers]))
    said = re.sub(r"(?m)^[a-z_-]+$", "", said)  # text_of lists block types and IDs too, one per line
    said = said.replace("Example Co", "").replace("cli:ops", "")  # the server user who added it, as recorded
    assert english_words(said) == [], said


def test_the_korean_quick_start_covers_the_demo_consumers_and_the_receiver():
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## 한국어 빠른 시작") : readme.index("## Languages")]
    for needed in ("console --demo", ":tick", "/coupang-key 사용처", "consumers add", "whsec_", "standardwebhooks",
                   "/rollout/confirm"):  # fmt: skip
        assert needed in quick, needed
    assert "연동 시스템" not in quick and "이번 주" not in quick


def test_the_expiry_day_is_d_day_in_korean_and_d_0_in_english():
    today = Reminder("A00012343", "행복상회", 1, 0, date(2026, 12, 7), 0, None, "CSHOP0001")
    korean = json.dumps([b.to_dict() for b in build_reminder_blocks(today, "ko")], ensure_ascii=False)
    english = json.dumps([b.to_dict() for b in build_reminder_blocks(today, "en")], ensure_ascii=False)
    assert "쿠팡 키 알림 D-Day" in korean and "D-0" not in korean and "D-0" in english


def said_texts(value: object) -> list[str]:
    """Every ``text`` a person reads in a Web API call or an answer (Block Kit nests them)."""
    if isinstance(value, dict):
        own = [value["text"]] if isinstance(value.get("text"), str) else []
        return own + [t for v in value.values() for t in said_texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in said_texts(v)]
    return []


def answer_body(text: str | None) -> object:
    """An ack's body: JSON with text and blocks, or plain text ("" when it says nothing)."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {"text": text}


def test_a_korean_team_reads_no_english_in_slack_from_help_to_the_new_key(db_url):
    """help, register, status, verify, reminder, reissue request → approve → new key, history, App Home with
    KEYBOT_LANGUAGE=ko: every text Slack shows is Korean but for the allow-list and the key's own label."""
    clock = Clock()  # the factory's key expires the next day (D-1)
    with FakeCoupang(clock=clock.now) as gateway:
        for team in harness(db_url, clock, gateway, "ko"):
            answers = run_every_flow(team, gateway, KOREAN_WORDS)
            texts = [t for call in team.fake.calls for t in said_texts(call.params)]
            texts += [t for answer in answers for t in said_texts(answer_body(answer.text))]
            leftover = {text: words for text in texts if (words := english_words(text.replace("Shop One", "")))}
            assert len(texts) > 50 and leftover == {}


def test_the_edit_limit_refusal_names_korea_time_in_korean():
    from bot.rules import EditQuota, InvalidInput, require_edit_slot

    with pytest.raises(InvalidInput) as refused:
        require_edit_slot(EditQuota(used=10, next_possible_at=MORNING), SEOUL)
    korean, english = (i18n.render(lang, refused.value.messages["integration"]) for lang in ("ko", "en"))
    assert "2026-12-07 09:00 (한국 시간)부터" in korean and "Asia/Seoul" not in korean
    assert "(Asia/Seoul)" in english


@pytest.mark.parametrize(
    ("argv", "korean"),
    [
        (["status", "--bogus"], "오류: 알 수 없는 인수: --bogus"),
        (["verify"], "오류: 빠진 인수: VENDOR_ID"),
        (["status", "--fail-within", "x"], "오류: --fail-within: 'x'는 정수가 아닙니다"),
        (["frobnicate"], "오류: 명령: 'frobnicate'는 다음 중 하나여야 합니다"),
    ],
)
def test_cli_usage_errors_are_korean(korean_cli, argv, korean):
    code, _, err = korean_cli(*argv)
    assert code == 2 and korean in err and "error" not in err


def test_no_korean_text_uses_angle_brackets_that_slack_reads_as_a_link():
    """``<업체코드>`` would be Slack link syntax: usage lines say the bare word, as the English says VENDOR_ID."""
    assert [m.string for m in catalog() if m.id and re.search(r"<[가-힣]", m.string)] == []
