"""Listeners for seeing and changing keys: ``status``, ``add``, ``edit``, ``delete``, ``history``, their buttons
and modals. Thin: parse the payload, call a service, build a view, send. Refusals are shown only to the person.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot import i18n, rules
from bot.bootstrap import Services
from bot.i18n import N_, t
from bot.rules import InvalidInput, KeybotError, LinkingInfo, Msg
from bot.services.base import AlreadyApplied
from bot.services.keys import KeyDetails, validate_details
from bot.slack import ids, views
from bot.slack.commands import CommandRequest, CommandRouter
from bot.slack.failures import after_ack, later
from bot.slack.home import publish_home
from bot.slack.parse import (
    MAX_EXPIRING_DAYS,
    ButtonClick,
    LinkingSubmission,
    parse_click,
    parse_linking,
    parse_page,
    parse_registration,
    parse_submission_id,
)

logger = logging.getLogger(__name__)

EPHEMERAL = "ephemeral"


def _input_block_ids(body: dict[str, Any]) -> list[str]:
    blocks = (body.get("view") or {}).get("blocks") or []
    return [b.get("block_id", "") for b in blocks if b.get("type") == "input"]


EXPIRING_DEFAULT_DAYS = 30
EXPIRING_WORDS = ("expiring", "만료예정")  # ``status expiring`` / ``상태 만료예정``


def _expiring_days(args: Sequence[str]) -> int:
    """``status expiring [DAYS]``: DAYS defaults to 30."""
    if not args:
        return EXPIRING_DEFAULT_DAYS
    if not args[0].isascii() or not args[0].isdigit() or int(args[0]) > MAX_EXPIRING_DAYS:
        raise _usage(N_("status expiring [DAYS]"))
    return int(args[0])


def _usage(usage: str) -> KeybotError:
    return KeybotError(N_("Usage: `{command} {usage}`"), command=ids.COMMAND, usage=Msg(usage))


class KeyListeners:
    def __init__(self, services: Services) -> None:
        self.services = services

    # ------------------------------------------------------------ slash sub-commands

    def status(
        self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        arg = request.args[0] if request.args else ""
        if arg and arg.lower() not in EXPIRING_WORDS:
            status = self.services.keys.status(arg)
            ack(
                text=f"{status.vendor_id}: {i18n.days_left(request.lang, status.days_left)}",
                blocks=views.build_single_status_blocks(request.lang, status, self.services.ctx.settings.timezone),
                response_type=EPHEMERAL,
            )
            return
        expiring = _expiring_days(request.args[1:]) if arg else None
        page = self.services.keys.status_page(limit=views.PAGE_SIZE, expiring_within=expiring)
        ack(
            text=views.status_fallback_text(request.lang, page),
            blocks=views.build_status_blocks(
                request.lang,
                page,
                self.services.ctx.settings.timezone,
                expiring=expiring,
                problems=self.services.reminders.undeliverable(),
            ),
            response_type=EPHEMERAL,
        )

    def add(self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext) -> None:
        self.services.keys.check_can_register(request.user_id)
        ack()
        view = views.build_register_modal(request.lang, channel_id=request.channel_id)
        later(context, client.views_open, trigger_id=request.trigger_id, view=view)

    def edit(
        self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        if not request.args:
            raise _usage(N_("edit VENDOR_ID"))
        view = self._edit_modal(request.lang, request.user_id, request.args[0], request.channel_id)
        ack()
        later(context, client.views_open, trigger_id=request.trigger_id, view=view)

    def delete(
        self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        if not request.args:
            raise _usage(N_("delete VENDOR_ID"))
        status = self.services.keys.check_can_change(request.user_id, request.args[0], "key.delete")
        ack(
            text=t(request.lang, "Delete {vendor_id}?", vendor_id=status.vendor_id),
            blocks=views.build_delete_confirmation(request.lang, status),
            response_type=EPHEMERAL,
        )

    def history(
        self, request: CommandRequest, ack: Ack, client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        if not request.args:
            raise _usage(N_("history VENDOR_ID"))
        vendor_id = rules.validate_vendor_id(request.args[0])
        entries = self.services.audit.entries(vendor_id=vendor_id, limit=views.HISTORY_LIMIT)
        ack(
            text=t(request.lang, "History of {vendor_id}", vendor_id=vendor_id),
            blocks=views.build_history_blocks(request.lang, vendor_id, entries, self.services.ctx.settings.timezone),
            response_type=EPHEMERAL,
        )

    def _edit_modal(self, lang: str, user_id: str, vendor_id: str, channel_id: str | None) -> Any:
        status = self.services.keys.check_can_change(user_id, vendor_id, "key.edit")
        quota = self.services.keys.edits_left(status.vendor_id)
        rules.require_edit_slot(quota, self.services.ctx.settings.timezone)
        admin = self.services.keys.is_admin(user_id)
        return views.build_edit_linking_modal(lang, status, quota, channel_id=channel_id, admin=admin)

    # ------------------------------------------------------------ buttons

    def _tell(
        self, context: BoltContext, click: ButtonClick, client: WebClient, respond: Respond, text: str, lang: str
    ) -> None:
        """A private note to whoever clicked: ephemeral in the conversation, or a small modal from App Home
        (seen at once where the click happened, rather than in the Messages tab)."""
        if click.response_url:
            later(context, respond, text=text, response_type=EPHEMERAL, replace_original=False)
        else:
            later(context, client.views_open, trigger_id=click.trigger_id, view=views.build_notice_modal(lang, text))

    def handle_edit_click(
        self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        ack()
        click = parse_click(body)
        lang = self.services.languages.of(click.user_id)
        try:
            view = self._edit_modal(lang, click.user_id, click.value, click.channel_id)
        except KeybotError as error:
            self._tell(context, click, client, respond, views.refusal_text(lang, error), lang)
            return
        later(context, client.views_open, trigger_id=click.trigger_id, view=view)

    def handle_next_page(
        self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        ack()
        click = parse_click(body)
        lang = self.services.languages.of(click.user_id)
        try:
            page_request = parse_page(click.value)
        except KeybotError as error:
            logger.warning("a next-page button carried a damaged value")
            self._tell(context, click, client, respond, views.refusal_text(lang, error), lang)
            return
        page = self.services.keys.status_page(
            offset=page_request.offset, limit=views.PAGE_SIZE, expiring_within=page_request.expiring
        )
        later(
            context,
            respond,
            text=views.status_fallback_text(lang, page),
            blocks=views.build_status_blocks(
                lang, page, self.services.ctx.settings.timezone, expiring=page_request.expiring
            ),
            response_type=EPHEMERAL,
            replace_original=True,
        )

    def handle_expand_click(
        self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        """A key's Details button: its full entry, below the overview (status) or in place of its line (App Home)."""
        ack()
        click = parse_click(body)
        lang = self.services.languages.of(click.user_id)
        try:
            status = self.services.keys.status(click.value)
        except KeybotError as error:
            self._tell(context, click, client, respond, views.refusal_text(lang, error), lang)
            return
        if click.in_home:
            later(context, publish_home, self.services, client, click.user_id, expanded=status.vendor_id)
            return
        later(
            context,
            respond,
            text=f"{status.vendor_id}: {i18n.days_left(lang, status.days_left)}",
            blocks=views.build_single_status_blocks(lang, status, self.services.ctx.settings.timezone),
            response_type=EPHEMERAL,
            replace_original=False,
        )

    def handle_delete_click(
        self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        ack()
        click = parse_click(body)
        lang = self.services.languages.of(click.user_id)
        try:
            label, channel = self.services.keys.delete(click.user_id, click.value)
        except KeybotError as error:
            self._tell(context, click, client, respond, views.refusal_text(lang, error), lang)
            return
        vendor_id = rules.validate_vendor_id(click.value)  # valid, as it was just deleted; not echoed as typed
        if channel:  # the team sees a key leave the bot: its reminders stop with it
            team = self.services.languages.team
            announcement = views.deleted_announcement(team, click.user_id, vendor_id, label)
            later(context, client.chat_postMessage, channel=channel, text=announcement)
        text = t(
            lang,
            ":wastebasket: Deleted the key of *{vendor_id}*. Delete it in WING too if unused.",
            vendor_id=vendor_id,
        )
        if click.response_url:
            later(context, respond, text=text, response_type=EPHEMERAL, replace_original=True)
        else:
            self._tell(context, click, client, respond, text, lang)

    # ------------------------------------------------------------ modals

    def _confirm(self, client: WebClient, user_id: str, channel_id: str | None, text: str) -> None:
        if channel_id:
            client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
        else:
            client.chat_postMessage(channel=user_id, text=text)

    def handle_register_submission(
        self, ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        submission, form = parse_registration(body)
        lang = self.services.languages.of(submission.user_id)
        fields = _input_block_ids(body)
        try:
            status = self.services.keys.register(submission.user_id, form, submission=parse_submission_id(body))
        except AlreadyApplied:
            ack()
            return
        except KeybotError as error:
            ack(response_action="errors", errors=views.form_errors(lang, error, fields, "vendor_id"))
            return
        ack()
        text = views.registered_text(lang, status)
        later(context, self._confirm, client, submission.user_id, submission.channel_id, text)

    def handle_edit_submission(self, ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        submission = parse_linking(body)
        lang = self.services.languages.of(submission.user_id)
        fields = _input_block_ids(body)
        try:
            linking, details = self._checked_edit(submission, "label" in fields)
            result = self.services.keys.edit_linking(
                submission.user_id,
                submission.vendor_id,
                linking,
                expires_on=submission.expires_on,
                details=details,
                submission=parse_submission_id(body),
            )
        except AlreadyApplied:
            ack()
            return
        except KeybotError as error:
            ack(response_action="errors", errors=views.form_errors(lang, error, fields, "integration"))
            return
        ack()
        text = views.edit_result_text(lang, result, self.services.ctx.settings.timezone)
        later(context, self._confirm, client, submission.user_id, submission.channel_id, text)

    def _checked_edit(self, submission: LinkingSubmission, with_details: bool) -> tuple[LinkingInfo, KeyDetails | None]:
        """The edit form's linking info and (an admin's form) details, every field's error at once (audited)."""
        errors: dict[str, str | Msg] = {}
        linking = details = None
        try:
            linking = rules.validate_linking_info(
                submission.integration,
                submission.integrator_name,
                submission.company_name,
                submission.company_url,
                submission.ip_addresses,
            )
        except InvalidInput as error:
            errors.update(error.messages)
        if with_details:
            try:
                details = validate_details(submission.label, submission.key_channel_id, submission.owner_id)
            except InvalidInput as error:
                errors.update(error.messages)
        if errors:
            refused = InvalidInput(errors)
            raise self.services.ctx.refuse(submission.user_id, "key.edit", submission.vendor_id, refused)
        assert linking is not None
        return linking, details


def register(app: App, services: Services, router: CommandRouter) -> None:
    listeners = KeyListeners(services)
    usage, summary = N_("status [VENDOR_ID|expiring [DAYS]]"), N_("keys, most urgent first")
    router.add("status", usage, summary, listeners.status, follow_up=False)
    router.add("add", N_("add"), N_("register a key (admins)"), listeners.add)
    router.add("edit", N_("edit VENDOR_ID"), N_("edit the linking info (admins and the owner)"), listeners.edit)
    router.add(
        "history", N_("history VENDOR_ID"), N_("the last 20 events of a key"), listeners.history, follow_up=False
    )
    router.add(
        "delete", N_("delete VENDOR_ID"), N_("forget a key (admins and the owner)"), listeners.delete, follow_up=False
    )
    then = after_ack(services.languages)
    app.action(ids.EDIT_LINKING)(ack=listeners.handle_edit_click, lazy=then)
    app.action(ids.STATUS_NEXT_PAGE)(ack=listeners.handle_next_page, lazy=then)
    app.action(ids.DELETE_KEY)(ack=listeners.handle_delete_click, lazy=then)
    app.action(ids.EXPAND_KEY)(ack=listeners.handle_expand_click, lazy=then)
    app.view(ids.REGISTER_MODAL)(ack=listeners.handle_register_submission, lazy=then)
    app.view(ids.EDIT_LINKING_MODAL)(ack=listeners.handle_edit_submission, lazy=then)
