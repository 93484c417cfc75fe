"""The console session: typed lines become signed Slack requests to the bot's own Bolt app; replies become text."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from slack_bolt import BoltRequest, BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot import i18n
from bot.bootstrap import Services, build_services
from bot.console.local_slack import CONSOLE_TOKEN, ConsoleWebClient, LocalSlackServer
from bot.console.modal import FieldInputError, Modal, parse_typed, typing_hint
from bot.console.render import RULE, mrkdwn_to_text, render_blocks, render_message, text_of
from bot.i18n import N_, t
from bot.services.base import Clock
from bot.slack import ids
from bot.slack.app import build_app

TEAM_ID, TEAM_DOMAIN, APP_ID = "T0CONSOLE", "console", "A0CONSOLE"
BOT_USER_ID = "U0KEYBOT"
DEFAULT_CHANNEL = "C0CONSOLE"
NO_ADMIN_USER = "U0CONSOLE"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")

Read = Callable[[str], str]  # prompt -> the typed line; raises EOFError at the end of input

HELP = N_("""\
Type what you would type in Slack, e.g. `{command} help`, `{command} status`, `{command} add`.
  N or #N          click button #N of a message shown above
  :as U…           act as another Slack user (approvals need a second person)
  :group S… U… U…  who belongs to a user group listed in KEYBOT_APPROVERS
  :home            open the bot's App Home tab
  :tick [N|Nh]     (demo only) move the clock N days (default 1) or N hours ahead, then run what the
                   scheduler would: the reminder sweep, reissue request expiry and the 2-hour nudge
  :help            this help
  :quit            leave (Ctrl-D works too)
In a form: Enter keeps the shown value, `-` clears it, a number changes that field,
`s` submits, `c` cancels, #N clicks a button inside the form.""")


class InlineExecutor(Executor):
    """Runs Bolt's listeners on the calling thread, so everything a request causes is shown before the next prompt."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the future like a pool would
            future.set_exception(error)
        return future


@dataclass
class Message:
    key: str
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    visible_to: str | None = None  # ephemeral: only this user sees it


@dataclass(frozen=True)
class Clickable:
    element: dict[str, Any]
    block_id: str
    location: str  # a message key, or "view:<view id>"


@dataclass
class Console:
    """One console session on ``services``' database. ``clock`` is the demo's movable clock (None otherwise)."""

    services: Services
    user: str
    out: TextIO
    read: Read
    read_secret: Read | None = None
    channel: str = DEFAULT_CHANNEL
    clock: Any = None
    sweep: Callable[[Console], list[str]] | None = None  # one reminder sweep; returns a summary
    user_names: dict[str, str] = field(default_factory=dict)
    group_members: dict[str, list[str]] = field(default_factory=dict)
    admin_hint: bool = False  # KEYBOT_ADMINS is empty: at the first refusal, say how to act as an admin

    def __post_init__(self) -> None:
        self.signing_secret = secrets.token_urlsafe(32)
        self.server = LocalSlackServer(self._web_api, self._respond)
        settings = replace(
            self.services.ctx.settings,
            slack_bot_token=CONSOLE_TOKEN,
            slack_signing_secret=self.signing_secret,
            slack_app_token=None,
            slack_api_url=self.server.base_url,
        )
        clock: Clock = self.clock or self.services.ctx.clock
        # the same services and app `serve` builds, on the same engine; only the Slack side is local
        self.bot = build_services(settings, engine=self.services.engine, clock=clock)
        self.client = ConsoleWebClient(self.server, self._web_api)
        self.app = build_app(self.bot, client=self.client, listener_executor=InlineExecutor())
        self._counter = itertools.count(1)
        self._button_numbers = itertools.count(1)
        self._outbox: list[str] = []
        self._messages: dict[str, Message] = {}
        self._response_urls: dict[str, tuple[str, str | None]] = {}  # key -> (channel, message key)
        self._clickables: dict[int, Clickable] = {}
        self._triggers: set[str] = set()
        self.modals: list[Modal] = []
        self._homes: dict[str, Modal] = {}
        self._dirty = False

    # ------------------------------------------------------------------ the loop

    @property
    def lang(self) -> str:
        """The console's own words are in the team's language (KEYBOT_LANGUAGE)."""
        return self.services.languages.team

    def hint(self, message: str, /, **params: object) -> None:
        """One of the console's own hints, in the team's language (KEYBOT_LANGUAGE)."""
        self.say(t(self.lang, message, **params))

    def run(self) -> int:
        self.hint("Coupang key bot console. You are {user}. Type :help for help.", user=self._who(self.user))
        try:
            while True:
                if self.modals:
                    if self._modal_step() == "quit":
                        break
                    continue
                try:
                    line = self.read(self.prompt())
                except EOFError:
                    self.say("")
                    break
                if self.handle_line(line) == "quit":
                    break
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self.server.close()

    def prompt(self) -> str:
        day = f"[{self.bot.ctx.today().isoformat()}] " if self.clock is not None else ""
        return f"{day}{self.user} #{self.channel}> "

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def handle_line(self, line: str) -> str | None:
        line = line.strip()
        if not line:
            return None
        if line.startswith("/"):
            command, _, text = line.partition(" ")
            self.slash_command(command, text.strip())
        elif re.fullmatch(r"#?\d+", line) or line.startswith(":click"):
            number = re.sub(r"\D", "", line)
            self.click(int(number)) if number else self.hint("Which button? e.g. :click 3")
        elif line.startswith(":"):
            return self._console_command(line)
        else:
            self.hint("Type `{command} help`, a button number, or :help.", command=ids.COMMAND)
        return None

    def _console_command(self, line: str) -> str | None:
        word, *args = line.split()
        if word in (":quit", ":q", ":exit"):
            return "quit"
        if word == ":help":
            self.hint(HELP, command=ids.COMMAND)
        elif word == ":as" and len(args) == 1 and _USER_ID.match(args[0].upper()):
            self.user = args[0].upper()
            self.hint("You are now {user}.", user=self._who(self.user))
        elif word == ":as":
            self.hint("Usage: :as U0123ABCD (a Slack user ID)")
        elif word == ":group" and args and _GROUP_ID.match(args[0].upper()):
            self.group_members[args[0].upper()] = [a.upper() for a in args[1:]]
            members = ", ".join(args[1:]) or t(self.services.languages.team, "nobody")
            self.hint("Members of {group}: {members}.", group=args[0].upper(), members=members)
        elif word == ":tick":
            self._tick(args)
        elif word == ":home":
            self.open_home()
        else:
            self.hint("Unknown console command {word}. Type :help.", word=word)
        return None

    def _tick(self, args: list[str]) -> None:
        if self.clock is None or not hasattr(self.clock, "advance"):
            self.hint(":tick exists only in demo mode (`coupang-keybot console --demo`): the clock is real here.")
            return
        step = re.fullmatch(r"(\d{1,3})(h?)", args[0].lower()) if args else None
        if args and step is None:
            self.hint("Usage: :tick [days], e.g. :tick 7")
            return
        count = int(step.group(1)) if step else 1
        hours = bool(step and step.group(2))
        self.clock.advance(**({"hours": count} if hours else {"days": count}))
        now = self.clock.now().astimezone(self.bot.ctx.settings.timezone)
        lang = self.services.languages.team
        shown = {
            "time": i18n.moment(lang, now, self.bot.ctx.settings.timezone),
            "zone": i18n.zone_name(lang, self.bot.ctx.settings.timezone.key),
        }
        if hours:
            self.hint("⏩ {count} hour(s) later: {time} ({zone}).", count=count, **shown)
        else:
            self.hint("⏩ {days} day(s) later: {time} ({zone}).", days=count, **shown)
        self.run_sweep()

    def run_sweep(self) -> None:
        if self.sweep is None:
            self.hint("(No reminder sweep is available in this build.)")
            return
        summary = self.sweep(self)
        self._flush()
        for line in summary:
            self.say(line)

    # ------------------------------------------------------------------ requests to the bot

    def _new_trigger(self) -> str:
        n = next(self._counter)
        trigger = f"{n}.{int(time.time())}.console{n:06x}"
        self._triggers.add(trigger)
        return trigger

    def _dispatch(self, body: str, content_type: str = "application/x-www-form-urlencoded") -> BoltResponse:
        """Sign like Slack does (v0 HMAC over timestamp and body) and hand to Bolt, which verifies it."""
        timestamp = str(int(time.time()))  # Bolt checks it against the real time, demo clock or not
        signature = SignatureVerifier(self.signing_secret).generate_signature(timestamp=timestamp, body=body)
        headers: dict[str, str | Sequence[str]] = {
            "content-type": content_type,
            "x-slack-request-timestamp": timestamp,
            "x-slack-signature": signature or "",
        }
        latest = self._latest_audit_seq() if self.admin_hint else 0
        response = self.app.dispatch(BoltRequest(body=body, headers=headers))
        if self.admin_hint and self._refused_since(latest):
            self.admin_hint = False
            self.hint(
                "That was refused because KEYBOT_ADMINS is empty, so you are {user}, not an admin. To act as an "
                "admin, put your Slack user ID in KEYBOT_ADMINS (in .env) and start again; with several admins, "
                "`coupang-keybot console --as U…` picks which one you are.",
                user=self._who(self.user),
            )
        if response.status == 401:
            self.hint("! The bot refused the request's signature.")
        elif response.status == 404:
            self.hint("! Nothing in the bot handles that.")
        elif response.status >= 500:
            self.hint("! The bot failed while handling that; its log file says why.")
        return response

    def _latest_audit_seq(self) -> int:
        latest = self.bot.audit.entries(limit=1)
        return latest[0].seq if latest else 0

    def _refused_since(self, seq: int) -> bool:
        """A refusal of this user was audited after entry ``seq`` (every refusal is)."""
        return any(
            e.seq > seq and e.actor == self.user and e.action.endswith(".refused")
            for e in self.bot.audit.entries(limit=5)
        )

    def _user_object(self) -> dict[str, Any]:
        return {"id": self.user, "username": self.user.lower(), "name": self.user.lower(), "team_id": TEAM_ID}

    def _interaction(self, kind: str, **fields: Any) -> str:
        payload = {
            "type": kind,
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": self._user_object(),
            "api_app_id": APP_ID,
            "token": "console",
            "trigger_id": self._new_trigger(),
            "is_enterprise_install": False,
            "enterprise": None,
            **fields,
        }
        return "payload=" + quote(json.dumps(payload))

    def slash_command(self, command: str, text: str) -> None:
        key = f"cmd{next(self._counter)}"
        self._response_urls[key] = (self.channel, None)
        body = urlencode(
            {
                "token": "console",
                "team_id": TEAM_ID,
                "team_domain": TEAM_DOMAIN,
                "channel_id": self.channel,
                "channel_name": self.channel.lower(),
                "user_id": self.user,
                "user_name": self.user.lower(),
                "command": command,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": self.server.response_url(key),
                "trigger_id": self._new_trigger(),
            }
        )
        mark = len(self._outbox)
        response = self._dispatch(body)
        if response.status == 200 and response.body:
            try:
                reply = json.loads(response.body)
            except ValueError:
                reply = {"text": response.body}
            caused = self._outbox[mark:]
            del self._outbox[mark:]
            self._post_reply(self.channel, None, reply)  # Slack shows the ack's reply first
            self._outbox.extend(caused)
        self._flush()

    def open_home(self) -> None:
        """Open the bot's App Home tab: Slack sends an ``app_home_opened`` event."""
        n = next(self._counter)
        event = {
            "token": "console",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "type": "event_callback",
            "event_id": f"Ev0CONSOLE{n:06d}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": self.user,
                "channel": f"D{self.user[1:]}",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
        }
        self._dispatch(json.dumps(event), "application/json")
        self._flush()

    def click(self, number: int) -> None:
        clickable = self._clickables.get(number)
        if clickable is None:
            self.hint("There is no button #{number} on screen.", number=number)
            return
        element, location = clickable.element, clickable.location
        action: dict[str, Any] = {
            "type": element.get("type"),
            "action_id": element.get("action_id"),
            "block_id": clickable.block_id,
            "action_ts": f"{time.time():.6f}",
        }
        if element.get("type") == "button":
            action.update(text=element.get("text"), value=element.get("value"), style=element.get("style"))
        else:
            hint = typing_hint(element, self.lang)
            self.say(hint) if hint else None
            try:
                typed = self.read(f"  {text_of(element.get('placeholder'))}: ")
                action.update(parse_typed(element, typed, self.lang))
            except FieldInputError as error:
                self.say(f"! {error}")
                return
            if element.get("type") == "overflow":
                action["selected_option"] = action.get("selected_option")
        fields: dict[str, Any] = {"actions": [action]}
        if location.startswith("view:"):
            view = self._view(location.removeprefix("view:"))
            if view is None:
                self.hint("That form is closed.")
                return
            fields["container"] = {"type": "view", "view_id": view.view_id}
            fields["view"] = view.payload_view(team_id=TEAM_ID, app_id=APP_ID)
            fields["state"] = view.state()
        else:
            message = self._messages.get(location)
            if message is None:
                self.hint("That message is gone.")
                return
            url_key = f"act{next(self._counter)}"
            self._response_urls[url_key] = (message.channel, message.key)
            fields.update(
                container={
                    "type": "message",
                    "message_ts": message.ts,
                    "channel_id": message.channel,
                    "is_ephemeral": message.visible_to is not None,
                },
                channel={"id": message.channel, "name": message.channel.lower()},
                response_url=self.server.response_url(url_key),
                state={"values": {}},
            )
            if message.visible_to is None:
                fields["message"] = {
                    "type": "message",
                    "ts": message.ts,
                    "text": message.text,
                    "blocks": message.blocks,
                    "user": BOT_USER_ID,
                }
        self._dispatch(self._interaction("block_actions", **fields))
        self._flush()

    # ------------------------------------------------------------------ modals

    def _view(self, view_id: str) -> Modal | None:
        for modal in [*self.modals, *self._homes.values()]:
            if modal.view_id == view_id:
                return modal
        return None

    def _modal_step(self) -> str | None:
        modal = self.modals[-1]
        if modal.not_offered() and not modal.offered:
            title = text_of(modal.view.get("title")) or t(self.lang, "Form")
            self.hint("┌─ {title}: fill in the fields (Enter skips, - clears)", title=title)
        for f in modal.not_offered():
            if not self._ask_field(modal, f):
                return "quit"
        if self._dirty or modal is not getattr(self, "_shown_modal", None):
            self.say(modal.render(self._numberer(f"view:{modal.view_id}"), self.lang))
            self._shown_modal, self._dirty = modal, False
        try:
            line = self.read(t(self.lang, "form> ")).strip()
        except EOFError:
            return "quit"
        if line.lower() in ("s", "submit"):
            self._submit(modal)
        elif line.lower() in ("c", "cancel"):
            self._close_view(modal)
            self.hint("(form closed without submitting)")
        elif line.isdigit():
            try:
                f = modal.field(int(line), self.lang)
            except FieldInputError as error:
                self.say(f"! {error}")
            else:
                if not self._ask_field(modal, f):
                    return "quit"
                self._dirty = True
        elif re.fullmatch(r"#\d+", line):
            self.click(int(line[1:]))
        elif line in (":quit", ":q"):
            return "quit"
        elif line == ":help":
            self.hint(HELP, command=ids.COMMAND)
        elif line:
            self.hint("In a form: a field number to change it, s to submit, c to cancel, #N for a button.")
        return None

    def _ask_field(self, modal: Modal, f: Any) -> bool:
        """Prompt for one field until it holds something well-formed; False at the end of input."""
        modal.offered.add((f.block_id, f.action_id))
        hint = typing_hint(f.element, self.lang)
        label = text_of(f.block.get("hint"))
        for extra in (label, hint):
            if extra:
                self.say(f"     {extra}")
        current = modal.shown_value(f, self.lang)
        optional = t(self.lang, " (optional)") if f.optional else ""
        prompt = f"  {f.number}. {f.label}{optional}" + (f" [{current}]" if current else "") + ": "
        read = self.read_secret if (f.secret and self.read_secret) else self.read
        while True:
            try:
                typed = read(prompt)
            except EOFError:
                return False
            if not typed.strip():
                return True
            try:
                modal.set(f, typed.strip() if not f.element.get("multiline") else typed, self.lang)
                return True
            except FieldInputError as error:
                self.say(f"     ! {error}")

    def _submit(self, modal: Modal) -> None:
        view = modal.payload_view(team_id=TEAM_ID, app_id=APP_ID)
        response = self._dispatch(self._interaction("view_submission", view=view, response_urls=[]))
        if response.status != 200:
            self._flush()
            return
        answer: dict[str, Any] = json.loads(response.body) if response.body else {}
        action = answer.get("response_action")
        if action == "errors":
            modal.errors = dict(answer.get("errors") or {})
            self._dirty = True
            self.say(modal.render(self._numberer(f"view:{modal.view_id}"), self.lang))
            self._shown_modal, self._dirty = modal, False
            known = {f.block_id for f in modal.fields}
            for block_id, message in modal.errors.items():
                if block_id not in known:
                    self.say(f"! {message}")
            self.hint("Fix the fields marked ! (Enter keeps a value), then s to submit again.")
            for f in modal.fields:
                if f.block_id in modal.errors and not self._ask_field(modal, f):
                    return
            self._dirty = True
        elif action == "update":
            self._replace_view(modal, Modal(answer["view"], modal.view_id))
        elif action == "push":
            self.modals.append(Modal(answer["view"], self._new_view_id()))
        elif action == "clear":
            self.modals.clear()
            self.hint("(form submitted and closed)")
        else:
            self._close_view(modal)
            self.hint("(form submitted and closed)")
        self._flush()

    def _close_view(self, modal: Modal) -> None:
        self.modals = [m for m in self.modals if m.view_id != modal.view_id]
        self._forget(f"view:{modal.view_id}")

    def _replace_view(self, old: Modal, new: Modal) -> None:
        self.modals = [new if m.view_id == old.view_id else m for m in self.modals]
        self._dirty = True

    def _new_view_id(self) -> str:
        return f"V0CONSOLE{secrets.token_hex(4).upper()}"  # unique across runs: view id + hash mark a submission

    # ------------------------------------------------------------------ the Web API and response_url, locally

    def _web_api(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        n = next(self._counter)
        ts = f"{int(time.time())}.{n:06d}"
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://console.local/",
                "team": "Console",
                "user": "keybot",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": "B0KEYBOT",
            }
        if method == "chat.postMessage":
            channel = str(args.get("channel", ""))
            message = self._store(channel, ts, args)
            self._show(message, self._where(channel, args))
            return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts, "text": message.text}}
        if method == "chat.postEphemeral":
            channel, user = str(args.get("channel", "")), str(args.get("user", ""))
            message = self._store(channel, ts, args, visible_to=user)
            where = self._where(channel, args)
            self._show(message, t(self.lang, "only visible to {user} in {where}", user=self._who(user), where=where))
            return {"ok": True, "message_ts": ts}
        if method == "chat.update":
            channel, old_ts = str(args.get("channel", "")), str(args.get("ts", ""))
            edited = next((m for m in self._messages.values() if (m.channel, m.ts) == (channel, old_ts)), None)
            if edited is None:
                return {"ok": False, "error": "message_not_found"}
            edited.text, edited.blocks = args.get("text", edited.text), args.get("blocks") or edited.blocks
            self._show(edited, t(self.lang, "{where} (message edited)", where=self._where(channel, args)))
            return {"ok": True, "channel": channel, "ts": old_ts, "text": edited.text}
        if method == "chat.delete":
            for key, m in list(self._messages.items()):
                if (m.channel, m.ts) == (args.get("channel"), args.get("ts")):
                    del self._messages[key]
                    self._forget(key)
            self._outbox.append(t(self.lang, "(a message was deleted)"))
            return {"ok": True}
        if method == "chat.getPermalink":
            return {"ok": True, "permalink": f"https://console.local/archives/{args.get('channel')}/p{n}"}
        if method in ("views.open", "views.push"):
            trigger = str(args.get("trigger_id", ""))
            if trigger not in self._triggers:
                return {"ok": False, "error": "invalid_trigger_id"}
            self._triggers.discard(trigger)
            modal = Modal(args.get("view") or {}, self._new_view_id())
            if method == "views.open":
                self.modals = []
            self.modals.append(modal)
            return {"ok": True, "view": modal.payload_view(team_id=TEAM_ID, app_id=APP_ID)}
        if method == "views.update":
            old = next(
                (
                    m
                    for m in self.modals
                    if m.view_id == args.get("view_id")
                    or (args.get("external_id") and m.view.get("external_id") == args.get("external_id"))
                ),
                None,
            )
            if old is None:
                return {"ok": False, "error": "not_found"}
            new = old.replace_view(args.get("view") or {})
            self._replace_view(old, new)
            return {"ok": True, "view": new.payload_view(team_id=TEAM_ID, app_id=APP_ID)}
        if method == "views.publish":
            user = str(args.get("user_id", ""))
            old_home = self._homes.get(user)
            home = Modal(args.get("view") or {}, old_home.view_id if old_home else self._new_view_id())
            self._homes[user] = home
            body = render_blocks(home.view.get("blocks", []), self._numberer(f"view:{home.view_id}"))
            title = t(self.lang, "App Home of {user}", user=self._who(user))
            self._outbox.append(f"── {title} {RULE[:30]}\n{body}\n")
            return {"ok": True, "view": home.payload_view(team_id=TEAM_ID, app_id=APP_ID)}
        if method == "usergroups.users.list":
            group = str(args.get("usergroup", ""))
            return {"ok": True, "users": self._members(group)}
        if method == "users.info":
            uid = str(args.get("user", ""))
            name = self.user_names.get(uid, f"User {uid}")
            tz = self.bot.ctx.settings.timezone.key
            profile = {"real_name": name, "display_name": name}
            person = {"id": uid, "name": uid.lower(), "real_name": name, "tz": tz, "profile": profile}
            return {"ok": True, "user": {**person, "is_bot": False, "deleted": False}}
        if method == "conversations.info":
            cid = str(args.get("channel", ""))
            return {"ok": True, "channel": {"id": cid, "name": cid.lower(), "is_channel": True, "is_member": True}}
        if method == "conversations.open":
            users = str(args.get("users", "")).split(",")[0]
            return {"ok": True, "channel": {"id": f"D{users[1:]}"}}
        self._outbox.append(t(self.lang, "(the bot called {method}; the console does not show it)", method=method))
        return {"ok": True}

    def _respond(self, key: str, message: dict[str, Any]) -> None:
        channel, message_key = self._response_urls.get(key, (self.channel, None))
        self._post_reply(channel, message_key, message)

    def _post_reply(self, channel: str, message_key: str | None, reply: dict[str, Any]) -> None:
        """A slash-command ack with content, or a response_url post (``respond()``)."""
        original = self._messages.get(message_key) if message_key else None
        if reply.get("delete_original") and original is not None:
            del self._messages[original.key]
            self._forget(original.key)
            self._outbox.append(t(self.lang, "(the message above was deleted)"))
            return
        if reply.get("replace_original") and original is not None:
            original.text, original.blocks = reply.get("text", ""), reply.get("blocks") or []
            self._show(original, t(self.lang, "(message replaced)"))
            return
        n = next(self._counter)
        in_channel = reply.get("response_type") == "in_channel"
        message = self._store(
            channel, f"{int(time.time())}.{n:06d}", reply, visible_to=None if in_channel else self.user
        )
        where = (
            self._where(channel, reply) if in_channel else t(self.lang, "only visible to you ({user})", user=self.user)
        )
        self._show(message, where)

    # ------------------------------------------------------------------ showing things

    def _store(self, channel: str, ts: str, args: dict[str, Any], *, visible_to: str | None = None) -> Message:
        key = f"m{next(self._counter)}"
        blocks = args.get("blocks") or []
        message = Message(key, channel, ts, str(args.get("text") or ""), list(blocks), visible_to)
        self._messages[key] = message
        return message

    def _show(self, message: Message, where: str) -> None:
        body = render_message(message.text, message.blocks, self._numberer(message.key))
        bot = t(self.lang, "keybot")  # who posted: the bot's name in Slack
        self._outbox.append(f"── {bot} · {where} {RULE[: max(3, 56 - len(where))]}\n{body}\n")

    def _where(self, channel: str, args: dict[str, Any]) -> str:
        direct = _USER_ID.match(channel) or channel.startswith("D")
        place = t(self.lang, "DM with {user}", user=self._who(channel)) if direct else f"#{channel}"
        return place + (t(self.lang, " (in a thread)") if args.get("thread_ts") else "")

    def _who(self, user: str) -> str:
        name = self.user_names.get(user)
        return f"@{user} ({name})" if name else f"@{user}"

    def _members(self, group: str) -> list[str]:
        if group in self.group_members:
            return list(self.group_members[group])
        settings = self.bot.ctx.settings
        people = {a for a in settings.approvers if not a.startswith("S")} | set(settings.admins)
        return sorted(people)

    def _numberer(self, location: str) -> Callable[[Any, str], int]:
        self._forget(location)

        def number_for(element: Any, block_id: str) -> int:
            number = next(self._button_numbers)
            self._clickables[number] = Clickable(dict(element), block_id, location)
            return number

        return number_for

    def _forget(self, location: str) -> None:
        for number in [n for n, c in self._clickables.items() if c.location == location]:
            del self._clickables[number]

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        for text in outbox:
            self.say(text)
        if self.modals and outbox:
            self._dirty = True


def plain(text: str) -> str:
    """mrkdwn as a person reads it (exported for the CLI and tests)."""
    return mrkdwn_to_text(text)


def terminal_readers() -> tuple[Read, Read]:
    """``input`` for lines; secrets without echo when a person is typing (piped scripts just read lines)."""
    import getpass
    import sys

    return input, (getpass.getpass if sys.stdin.isatty() else input)


def run_console(
    services: Services,
    *,
    out: TextIO,
    user: str | None = None,
    read: Read | None = None,
    read_secret: Read | None = None,
) -> int:
    """The console on the configured database, acting as ``user`` (default: the first admin)."""
    admins = sorted(services.ctx.settings.admins)
    if read is None:
        read, read_secret = terminal_readers()
    console = Console(
        services,
        user=(user or (admins[0] if admins else NO_ADMIN_USER)).upper(),
        out=out,
        read=read,
        read_secret=read_secret,
        channel=services.ctx.settings.channel or DEFAULT_CHANNEL,
        admin_hint=not admins and not user,
    )
    if not admins and not user:
        console.hint(
            "KEYBOT_ADMINS is empty, so you are {user}, who may look but not register keys. "
            "Put your Slack user ID in KEYBOT_ADMINS (in .env) to manage keys.",
            user=NO_ADMIN_USER,
        )
    return console.run()
