"""Scripted console sessions: lines typed in, screen text out, on a real SQLite and PostgreSQL database.

The console drives the same Bolt app, listeners and services as ``serve``; these sessions are end-to-end
(signed requests into Bolt, the bot's Web API calls rendered as text).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from bot.bootstrap import Services, build_services
from bot.config import Settings
from bot.console import Console, run_console
from bot.console.demo import DEMO_ADMIN, DEMO_APPROVER, run_demo
from tests import factories
from tests.conftest import ADMIN, OWNER, make_settings

APPROVER = "UAPPROVE1"
FIELD_PROMPT = re.compile(r"^\s+\d+\. (?P<label>.*?)(?: \(optional\))?(?: \[.*\])?: $")

Step = str | dict[str, str] | Callable[[str], str]


@dataclass
class Script:
    """Answers the console's prompts in order, echoing like a terminal does.

    A str is one typed line. A dict fills a form: each field prompt gets the value of the first key its label
    starts with ("" when none matches); the dict is used up at the next non-field prompt. A callable gets the
    screen so far and returns the line (to click a button by its label).
    """

    steps: list[Step]
    screen: io.StringIO = field(default_factory=io.StringIO)

    def __post_init__(self) -> None:
        self._steps: Iterator[Step] = iter(self.steps)
        self._current: Step | None = None

    def __call__(self, prompt: str) -> str:
        if self._current is None:
            self._current = next(self._steps, None)
            if self._current is None:
                raise EOFError
        step = self._current
        match = FIELD_PROMPT.match(prompt)
        if isinstance(step, dict):
            if match:
                label = match.group("label")
                line = next((v for k, v in step.items() if label.startswith(k)), "")
                return self._echo(prompt, line)
            self._current = None
            return self(prompt)
        self._current = None
        line = step(self.screen.getvalue()) if callable(step) else step
        return self._echo(prompt, line)

    def _echo(self, prompt: str, line: str) -> str:
        self.screen.write(f"{prompt}{line}\n")
        return line

    @property
    def finished(self) -> bool:
        return self._current is None and next(self._steps, None) is None


def click(label: str) -> Callable[[str], str]:
    """Type the number of the last button on screen whose label starts with ``label``."""

    def choose(screen: str) -> str:
        numbers = re.findall(rf"\[#(\d+) {re.escape(label)}", screen)
        assert numbers, f"no button {label!r} on screen:\n{screen}"
        return numbers[-1]

    return choose


def run_session(services: Services, steps: list[Step], *, user: str = ADMIN) -> str:
    script = Script(steps)
    Console(services, user=user, out=script.screen, read=script, channel="CSHOP0001").run()
    assert script.finished, f"the session ended before the script did:\n{script.screen.getvalue()}"
    return script.screen.getvalue()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(DATABASE_URL=db_url, KEYBOT_APPROVERS=APPROVER)


def after(screen: str, marker: str) -> str:
    assert marker in screen, screen
    return screen[screen.index(marker) :]


REGISTRATION = {
    "Vendor ID": "A0001234",  # one digit short: the bot refuses it under the field
    "Label": "Seoul <!channel> Shop",
    "Access Key": factories.access_key("A00012345"),
    "Secret Key": factories.secret_key("A00012345"),
    "Issued on": "2026-06-01",
    "How is the key used": "Self-developed",
    "Company name": "Example Co",
    "Company or service URL": "https://shop.example.com",
    "Public IPv4": "211.45.10.3\\n8.8.8.8",
}


def test_help_lists_the_sub_commands_as_a_private_reply(services: Services) -> None:
    screen = run_session(services, ["/coupang-key help", ":quit"])
    reply = after(screen, "/coupang-key help\n")
    assert "only visible to you" in reply
    assert "/coupang-key add" in reply and "/coupang-key status" in reply


def test_add_a_key_through_the_modal_fixing_one_validation_error(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    screen = run_session(services, ["/coupang-key add", REGISTRATION, "s", {"Vendor ID": "A00012345"}, "s", ":quit"])
    first_submit = after(screen, "form> s\n")
    assert "! Vendor ID 'A0001234' is not valid" in first_submit
    assert "1. Vendor ID [A0001234]: A00012345" in first_submit  # re-asked, and fixed
    assert "(form submitted and closed)" in first_submit
    status = services.keys.status("A00012345")
    assert status.label == "Seoul <!channel> Shop"
    assert status.linking.ip_addresses == ("211.45.10.3", "8.8.8.8")
    # typed once; after the first submission the screen shows it hidden, never in clear
    assert factories.SECRET_MARK not in first_submit
    assert "•••••••• (entered, hidden)" in first_submit
    assert factories.SECRET_MARK not in caplog.text


def test_status_shows_each_key_with_its_buttons(services: Services) -> None:
    services.keys.register(ADMIN, factories.form("A00012345", label="Busan Store"))
    services.keys.register(ADMIN, factories.form("A00099999", label="Daegu Outlet"))
    screen = run_session(services, ["/coupang-key status", ":quit"])
    reply = after(screen, "/coupang-key status\n")
    assert "A00012345" in reply and "Busan Store" in reply and "Daegu Outlet" in reply
    assert re.search(r"\[#\d+ Details\]", reply)
    assert factories.SECRET_MARK not in screen


def test_edit_linking_info_from_the_status_button(services: Services) -> None:
    services.keys.register(ADMIN, factories.form("A00012345"))
    screen = run_session(
        services,
        [
            "/coupang-key status A00012345",
            click("Edit linking info"),
            {"Public IPv4": "211.45.10.3\\n1.1.1.1"},
            "s",
            ":quit",
        ],
        user=OWNER,  # the key's owner may edit its linking info
    )
    assert "(form submitted and closed)" in screen
    status = services.keys.status("A00012345")
    assert status.linking.ip_addresses == ("211.45.10.3", "1.1.1.1")
    assert status.edits_last_7_days == 1


def test_request_approve_and_enter_the_new_key_as_two_people(services: Services) -> None:
    today = services.ctx.today()
    services.keys.register(ADMIN, factories.form("A00012345", issued_on=None, expires_on=today + timedelta(days=10)))
    new_secret = f"{factories.SECRET_MARK}newkey0123456789abcdef"
    screen = run_session(
        services,
        [
            "/coupang-key reissue A00012345",
            {"Reason": "Key expires in 10 days"},
            "s",
            ":as UAPPROVE1",
            click("Approve"),
            f":as {ADMIN}",
            click("Enter new key"),
            {"New Access Key": "AKIAnewaccess0123456789", "New Secret Key": new_secret},
            "s",
            ":quit",
        ],
    )
    request = after(screen, "form> s\n")
    assert "── keybot · #CSHOP0001" in request and "*Reason:* Key expires in 10 days" in request
    approved = after(screen, ":as UAPPROVE1")
    assert "Approved by @UAPPROVE1" in approved  # the request message, edited for everyone
    assert "reissued by @UADMIN001: generation 2" in approved
    assert services.keys.status("A00012345").generation == 2
    saved = screen.rsplit("form> s\n", 1)[1]
    assert "(form submitted and closed)" in saved and new_secret not in saved


def test_demo_tick_posts_the_d14_reminder_and_leaves_the_configured_database_alone(settings: Settings) -> None:
    script = Script([":tick", ":quit"])
    run_demo(settings, out=script.screen, read=script, real_now=datetime(2026, 11, 27, 3, 0, tzinfo=UTC))
    screen = script.screen.getvalue()
    tick = after(screen, ":tick\n")
    assert "2026-11-28 09:05" in tick
    assert "The reissue button in WING is active from today" in tick and "Spring Sale Store" in tick
    assert "One week left" in tick and "Outlet & Co" in tick
    configured = build_services(settings)
    try:
        assert configured.keys.statuses() == []  # the demo's keys and clock stayed in the demo
    finally:
        configured.engine.dispose()


def test_demo_tick_rehearses_the_approver_being_away(settings: Settings) -> None:
    """:tick runs what the scheduler would in the time skipped: the 2-hour nudge of an approved request without its
    key, and the expiry of requests after 24 hours (their messages updated, the requester told)."""
    script = Script(
        [
            "/coupang-key reissue A00010003",
            {"Reason": "Nobody decides this one"},
            "s",
            "/coupang-key reissue A00010002",
            {"Reason": "Approved, then forgotten"},
            "s",
            f":as {DEMO_APPROVER}",
            click("Approve"),
            f":as {DEMO_ADMIN}",
            ":tick 3h",
            ":tick",
            ":quit",
        ]
    )
    run_demo(settings, out=script.screen, read=script, real_now=datetime(2026, 11, 27, 3, 0, tzinfo=UTC))
    screen = script.screen.getvalue()
    hours = after(screen, ":tick 3h\n").split(":tick\n")[0]
    assert "3 hour(s) later: 2026-11-27 12:05" in hours
    assert "(in a thread)" in hours and "the reissue of A00010002 was approved 2 hours ago" in hours
    assert "1 approved request(s) still without their new key: nudged." in hours
    assert "expired" not in hours.lower()
    day = after(screen, ":tick\n")
    assert "Expired undecided at 2026-11-28 09:05" in day  # request #1's message, edited
    assert "Your reissue request #1 for A00010003 expired: nobody decided it" in day  # the requester, told
    assert "Your reissue request #2 for A00010002 expired: its new key was not entered" in day
    assert "2 reissue request(s) expired after 24 hours." in day
    assert day.count("approved 2 hours ago") == 0  # nudged once, not again


def test_demo_defaults_to_the_demo_admin_and_tick_is_refused_outside_it(services: Services) -> None:
    screen = run_session(services, [":tick", ":quit"])
    assert ":tick exists only in demo mode" in screen
    script = Script([":quit"])
    run_demo(None, out=script.screen, read=script)
    assert f"You are @{DEMO_ADMIN}" in script.screen.getvalue()


def test_home_tab_lists_the_keys(services: Services) -> None:
    services.keys.register(ADMIN, factories.form("A00012345", label="Busan Store"))
    screen = run_session(services, [":home", ":quit"])
    home = after(screen, f"── App Home of @{ADMIN}")
    assert "A00012345" in home and "Busan Store" in home
    assert factories.SECRET_MARK not in screen


def test_the_console_speaks_keybot_language(db_url: str) -> None:
    korean = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_LANGUAGE="ko"))
    try:
        screen = run_session(korean, [":bogus", "/coupang-key 도움말", ":quit"])
    finally:
        korean.engine.dispose()
    assert "쿠팡 키 관리 봇 콘솔입니다" in screen and ":bogus는 알 수 없는 콘솔 명령입니다" in screen
    assert "`/coupang-key 상태" in screen and "Unknown console command" not in screen


def test_the_demo_verification_limit_counts_real_seconds(settings: Settings) -> None:
    """The demo clock only jumps on :tick; a second Verify 11 real seconds later is a new check, not a repeat."""
    with time_machine.travel(datetime(2026, 11, 27, 3, 0, tzinfo=UTC), tick=False) as traveller:

        def eleven_seconds_later(screen: str) -> str:
            traveller.shift(11)
            return "/coupang-key verify A00010001"

        script = Script(["/coupang-key verify A00010001", eleven_seconds_later, ":quit"])
        run_demo(settings, out=script.screen, read=script)
    screen = script.screen.getvalue()
    assert screen.count("Checking 'A00010001' with Coupang") == 2
    assert "at most one check per vendor ID" not in screen


def test_without_admins_the_first_refusal_says_how_to_act_as_an_admin(db_url: str) -> None:
    services = build_services(make_settings(DATABASE_URL=db_url, KEYBOT_ADMINS=""))
    script = Script(["/coupang-key help", "/coupang-key add", "/coupang-key approvers add <@U0NEW0001>", ":quit"])
    try:
        run_console(services, out=script.screen, read=script)
    finally:
        services.engine.dispose()
    screen = script.screen.getvalue()
    refused = after(screen, "/coupang-key add\n")
    assert "Only admins" in refused
    assert "and start again" not in screen[: len(screen) - len(refused)]  # not before anything was refused
    assert refused.count("put your Slack user ID in KEYBOT_ADMINS (in .env) and start again") == 1  # once
    assert "console --as U…" in refused
