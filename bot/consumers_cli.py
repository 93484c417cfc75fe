"""``coupang-keybot consumers add|list|push|remove`` (ROLLOUT.md): the command line's face of key rollout.

Deliveries here run in this process, at once, so the exit code can say whether they went through:
``add`` and ``push`` exit 0 when every named consumer holds the key, 1 when not (the bot keeps retrying).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from bot.bootstrap import Services
from bot.destinations import AWS_PARAMETER, AWS_SECRET, VAULT, WEBHOOK
from bot.i18n import ENGLISH, N_, t
from bot.rules import format_local
from bot.services.base import cli_actor
from bot.services.rollout import ConsumerState

OK, FAILED = 0, 1
_KIND_FLAGS = ((WEBHOOK, "webhook"), (AWS_SECRET, "aws_secret"), (AWS_PARAMETER, "aws_parameter"), (VAULT, "vault"))


# English prints the stored codes (scripts read them); Korean their meaning
DELIVERY_STATES = {
    "pending": N_("pending"),
    "delivered": N_("delivered"),
    "confirmed": N_("confirmed"),
    "failed": N_("failed"),
    "": N_("no delivery"),
}
KINDS = {
    WEBHOOK: N_("webhook"),
    AWS_SECRET: N_("AWS Secrets Manager"),
    AWS_PARAMETER: N_("AWS SSM"),
    VAULT: N_("Vault"),
}


def _describe(state: ConsumerState, services: Services) -> str:
    tz = services.ctx.settings.timezone
    lang = services.ctx.settings.language
    code = state.state or ""
    line = t(
        lang,
        "{vendor_id}  {name}  {kind}  {target}  {state}",
        vendor_id=state.vendor_id,
        name=state.name,
        kind=state.kind if lang == ENGLISH else t(lang, KINDS.get(state.kind, state.kind)),
        target=state.target,
        state=(code or "no delivery") if lang == ENGLISH else t(lang, DELIVERY_STATES.get(code, code)),
    )
    if state.generation is not None:
        line += t(lang, "  gen {generation}  attempts {attempts}", generation=state.generation, attempts=state.attempts)
    if state.next_attempt_at:
        line += t(lang, "  next try {time}", time=format_local(state.next_attempt_at, tz))
    if state.last_error:
        line += t(lang, "  last error: {error}", error=state.last_error)
    return line


def cmd_add(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    kind, target = next((kind, getattr(args, flag)) for kind, flag in _KIND_FLAGS if getattr(args, flag))
    rollout = services.rollout
    added = rollout.add(cli_actor(), args.vendor_id, args.name, kind, target, vault_mount=args.vault_mount)
    state = rollout.deliver_now(added.vendor_id, [added.name])[0]
    if args.json:
        fields = {"name": added.name, "kind": added.kind, "target": added.target}
        json.dump({**fields, "signing_secret": added.signing_secret, "state": state.state}, out)
        out.write("\n")
    else:
        lang = services.ctx.settings.language
        print(
            t(
                lang,
                "Added {name} ({kind} {target}) to {vendor_id}.",
                name=added.name,
                kind=added.kind if lang == ENGLISH else t(lang, KINDS.get(added.kind, added.kind)),
                target=added.target,
                vendor_id=added.vendor_id,
            ),
            file=out,
        )
        print(t(lang, "Signing secret (shown only this once): {secret}", secret=added.signing_secret), file=out)
        print(_describe(state, services), file=out)
    return OK if state.holds_key else FAILED


def cmd_list(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    states = services.rollout.consumers(args.vendor_id)
    if args.json:
        json.dump([s.as_json() for s in states], out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif not states:
        print(
            t(
                services.ctx.settings.language,
                "No consumers yet. Add one with `coupang-keybot consumers add VENDOR_ID NAME --webhook URL`.",
            ),
            file=out,
        )
    for state in [] if args.json else states:
        print(_describe(state, services), file=out)
    return OK


def cmd_push(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    names = [args.name] if args.name else []
    pushed = services.rollout.push(cli_actor(), args.vendor_id, names)
    states = services.rollout.deliver_now(args.vendor_id.strip().upper(), pushed)
    for state in states:
        print(_describe(state, services), file=out if state.holds_key else sys.stderr)
    return OK if all(s.holds_key for s in states) else FAILED


def cmd_remove(services: Services, args: argparse.Namespace, out: TextIO) -> int:
    services.rollout.remove(cli_actor(), args.vendor_id, args.name)
    print(
        t(
            services.ctx.settings.language,
            "Removed {name} from {vendor_id}.",
            name=args.name.strip().lower(),
            vendor_id=args.vendor_id.strip().upper(),
        ),
        file=out,
    )
    return OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], lang: str = ENGLISH) -> None:
    consumers = sub.add_parser("consumers", help=t(lang, "systems that receive a key when it is reissued"))
    commands = consumers.add_subparsers(dest="consumers_command", required=True)

    add = commands.add_parser("add", help=t(lang, "add a consumer and deliver the current key to it now"))
    add.add_argument("vendor_id", metavar="VENDOR_ID")
    add.add_argument("name", metavar="NAME")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--webhook", metavar="URL", help=t(lang, "https:// URL (http:// only to loopback)"))
    where.add_argument("--aws-secret", metavar="SECRET_ID", help=t(lang, "AWS Secrets Manager secret name or ARN"))
    where.add_argument("--aws-parameter", metavar="NAME", help=t(lang, "AWS SSM Parameter Store name"))
    where.add_argument("--vault", metavar="PATH", help=t(lang, "Vault / OpenBao KV v2 path"))
    add.add_argument("--vault-mount", default="secret", help=t(lang, "KV v2 mount (default: secret)"))
    add.add_argument("--json", action="store_true", help=t(lang, "print JSON"))
    add.set_defaults(handler=cmd_add)

    listing = commands.add_parser("list", help=t(lang, "consumers and their latest delivery"))
    listing.add_argument("vendor_id", metavar="VENDOR_ID", nargs="?")
    listing.add_argument("--json", action="store_true", help=t(lang, "print JSON"))
    listing.set_defaults(handler=cmd_list)

    push = commands.add_parser("push", help=t(lang, "deliver the current key again now"))
    push.add_argument("vendor_id", metavar="VENDOR_ID")
    push.add_argument("name", metavar="NAME", nargs="?")
    push.set_defaults(handler=cmd_push)

    remove = commands.add_parser("remove", help=t(lang, "stop delivering to a consumer"))
    remove.add_argument("vendor_id", metavar="VENDOR_ID")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=cmd_remove)
