"""Writing a key to a consumer, through each destination's own client library (ROLLOUT.md "Kinds of consumer").

- ``webhook``: ``POST`` of a Standard Webhooks message signed with the ``standardwebhooks`` package; no redirects.
- ``aws-secretsmanager``: ``PutSecretValue`` (``CreateSecret`` when missing) with a stable ``ClientRequestToken``.
- ``aws-ssm``: ``PutParameter(Type=SecureString, Overwrite=True)``.
- ``vault``: a KV v2 write with hvac, over a session that refuses redirects.

A webhook added from Slack under the default ``KEYBOT_CONSUMER_ALLOW`` is sent with ``public_only``: its host is
resolved first, every address must be public, and the connection goes to the address that was checked (so a DNS
answer that changes to 127.0.0.1 between the check and the connection changes nothing).

Each attempt ends in an :class:`Outcome`: delivered, worth retrying (408, 429, 5xx, timeouts, lost connections)
or a configuration problem (any other refusal). Nothing here knows Slack or the database; error texts may quote
a destination's answer, so the caller scrubs them before storing. An HTML error page is never quoted (only
"HTTP 502 (HTML page)"), and a webhook's 401/403 carries a hint (:data:`HINTS`, translated where shown).

Timestamps on the wire (``webhook-timestamp``, the body's ``timestamp``, the tolerance of a signature checked with
:func:`verify_signature`) are the real wall clock (``wall_clock``), never the bot's business clock: receivers
compare them with their own clocks, and the demo console's clock runs days ahead.
"""

from __future__ import annotations

import hmac
import http.client
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from standardwebhooks import Webhook

from bot.i18n import N_

TIMEOUT_SECONDS = 10
WEBHOOK, AWS_SECRET, AWS_PARAMETER, VAULT = "webhook", "aws-secretsmanager", "aws-ssm", "vault"
KINDS = (WEBHOOK, AWS_SECRET, AWS_PARAMETER, VAULT)
EVENT_TYPE = "coupang_key.updated"
QUIET_LOGGERS = ("botocore", "boto3", "hvac")
_BODY_LIMIT = 2000  # bytes of an error answer read (the caller keeps 200 characters)
TOLERANCE = timedelta(minutes=5)  # Standard Webhooks' own: a signed timestamp further off is refused

# English phrases an error text may end with; the Slack layer shows them in the reader's language
HTML_PAGE = N_("HTML page")
SIGNING_HINT = N_("check the signing secret or the server's clock")
REDIRECT_HINT = N_("redirects are not followed: give the final URL")
HINTS = (HTML_PAGE, SIGNING_HINT, REDIRECT_HINT)

WallClock = Callable[[], datetime]


def wall_now() -> datetime:
    """The real time, for what other machines compare with their own clocks."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retry: bool = False
    error: str | None = None


DELIVERED = Outcome(ok=True)


def retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def is_html(detail: str, content_type: str = "") -> bool:
    """An error page meant for a browser (a proxy's 502, a login page): its markup says nothing worth storing."""
    head = detail.lstrip()[:100].lower()
    return "html" in content_type.lower() or head.startswith(("<!doctype html", "<html", "<head", "<body"))


def _http_outcome(status: int, detail: str, content_type: str = "", *, signed: bool = False) -> Outcome:
    """``signed``: the request carried a Standard Webhooks signature, so a 401/403 most likely refused it."""
    if 200 <= status < 300:
        return DELIVERED
    if is_html(detail, content_type):
        text = f"HTTP {status} ({HTML_PAGE})"
    else:
        text = f"HTTP {status}" + (f": {detail}" if detail else "")
    if 300 <= status < 400:
        return Outcome(ok=False, error=f"{text} ({REDIRECT_HINT})")
    if signed and status in (401, 403):
        text += f" ({SIGNING_HINT})"
    return Outcome(ok=False, retry=retryable_status(status), error=text)


def verify_signature(secret: str, body: bytes, headers: dict[str, str], *, now: datetime) -> bool:
    """A Standard Webhooks signature check against ``now`` (the wall clock), as the ``standardwebhooks`` package
    does it against ``datetime.now()``: any ``v1`` signature of ``{id}.{timestamp}.{body}`` under ``secret``, with the
    timestamp at most 5 minutes off."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures and stamp.isdigit() and len(stamp) <= 12):
        return False
    timestamp = datetime.fromtimestamp(int(stamp), UTC)
    if abs(timestamp - now) > TOLERANCE:
        return False
    try:
        expected = Webhook(secret).sign(msg_id, timestamp, body.decode()).split(",", 1)[1]
    except (ValueError, UnicodeDecodeError):
        return False
    offered = [s.split(",", 1)[1] for s in signatures.split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in offered)


def is_public_address(address: str) -> bool:
    """Reachable on the internet: not loopback, private, link-local, CGNAT (100.64/10), unique-local, multicast,
    unspecified or reserved (an IPv4-mapped IPv6 address is judged by its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_link_local)


# host, port → the addresses the host resolves to (DNS); tests give a fake
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


class RedirectRefused(Exception):
    """A destination answered with a redirect: never followed (ROLLOUT.md "Never")."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


def _refuse_redirects(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.is_redirect or 300 <= response.status_code < 400:
        raise RedirectRefused(response.status_code)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, repr=False)
class Delivery:
    """One attempt: what to write (``data`` holds the key) and where. Never printed."""

    kind: str
    config: dict[str, Any]
    message_id: str
    data: dict[str, Any]
    signing_secret: str
    public_only: bool = False  # a webhook added from Slack under the default rules: public addresses only

    def __repr__(self) -> str:
        return f"Delivery(kind={self.kind!r}, message_id={self.message_id!r})"


class Destinations:
    """The four writers. boto3 and hvac clients are built once and shared by the delivery threads."""

    def __init__(
        self,
        *,
        aws_region: str | None = None,
        vault_addr: str | None = None,
        vault_token: str | None = None,
        vault_namespace: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
        resolver: Resolver = resolve,
        wall_clock: WallClock = wall_now,
    ):
        self.aws_region, self.timeout, self.resolver = aws_region, timeout, resolver
        self.wall_clock = wall_clock  # webhook timestamps: real time, whatever the bot's clock says
        self.vault_addr, self.vault_token, self.vault_namespace = vault_addr, vault_token, vault_namespace
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        for name in QUIET_LOGGERS:  # at DEBUG they log request bodies, which hold the key
            logging.getLogger(name).setLevel(logging.WARNING)

    def deliver(self, delivery: Delivery) -> Outcome:
        try:
            if delivery.kind == WEBHOOK:
                return self._webhook(delivery, self.wall_clock())
            if delivery.kind == AWS_SECRET:
                return self._secrets_manager(delivery)
            if delivery.kind == AWS_PARAMETER:
                return self._ssm(delivery)
            if delivery.kind == VAULT:
                return self._vault(delivery)
        except (TimeoutError, ConnectionError, OSError, requests.ConnectionError, requests.Timeout) as exc:
            return Outcome(ok=False, retry=True, error=f"{type(exc).__name__}: cannot reach the destination")
        return Outcome(ok=False, error=f"unknown consumer kind {delivery.kind}")

    # ------------------------------------------------------------ webhook

    def _webhook(self, delivery: Delivery, now: datetime) -> Outcome:
        url = urlsplit(delivery.config["url"])
        body = json.dumps(
            {"type": EVENT_TYPE, "timestamp": now.astimezone(UTC).isoformat(), "data": delivery.data},
            separators=(",", ":"),
        )
        signature = Webhook(delivery.signing_secret).sign(delivery.message_id, now, body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "coupang-keybot",
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(url.hostname or "", url.port, timeout=self.timeout)
        if delivery.public_only:
            host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
            addresses = self.resolver(host, port)
            private = [a for a in addresses if not is_public_address(a)]
            if url.scheme != "https" or not addresses or private:
                shown = private[0] if private else "no address"
                return Outcome(
                    ok=False,
                    error=f"{host} resolves to {shown}, which is not a public address: webhooks added from Slack go "
                    "only to public https:// hosts (KEYBOT_CONSUMER_ALLOW)",
                )
            # connect to the address just checked, not to a second DNS answer; TLS still checks the host name
            pinned = addresses[0]
            connection._create_connection = lambda _, *rest: socket.create_connection((pinned, port), *rest)  # type: ignore[attr-defined]
        try:
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            connection.request("POST", path, body=body.encode(), headers=headers)
            answer = connection.getresponse()
            detail = answer.read(_BODY_LIMIT).decode("utf-8", "replace").strip()
            return _http_outcome(answer.status, detail, answer.getheader("Content-Type") or "", signed=True)
        finally:
            connection.close()

    # ------------------------------------------------------------ AWS

    def _aws(self, service: str) -> Any:
        import boto3  # here, not at the top: boto3 and hvac cost 10–25 MB in every process, used by few
        from botocore.config import Config

        with self._lock:
            if service not in self._clients:
                config = Config(
                    connect_timeout=self.timeout, read_timeout=self.timeout, retries={"total_max_attempts": 1}
                )
                # region, credentials and AWS_ENDPOINT_URL: boto3's standard chain
                self._clients[service] = boto3.session.Session().client(
                    service, region_name=self.aws_region, config=config
                )
            return self._clients[service]

    def _secrets_manager(self, delivery: Delivery) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._aws("secretsmanager")
        secret_id, value = delivery.config["secret_id"], json.dumps(delivery.data)
        try:
            try:
                client.put_secret_value(SecretId=secret_id, SecretString=value, ClientRequestToken=delivery.message_id)
            except ClientError as exc:
                if _aws_code(exc) != "ResourceNotFoundException":
                    raise
                client.create_secret(Name=secret_id, SecretString=value, ClientRequestToken=delivery.message_id)
        except (ClientError, BotoCoreError) as exc:
            return _aws_outcome(exc)
        return DELIVERED

    def _ssm(self, delivery: Delivery) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._aws("ssm")
        try:
            client.put_parameter(
                Name=delivery.config["parameter"],
                Value=json.dumps(delivery.data),
                Type="SecureString",
                Overwrite=True,
            )
        except (ClientError, BotoCoreError) as exc:
            return _aws_outcome(exc)
        return DELIVERED

    # ------------------------------------------------------------ Vault / OpenBao

    def _vault(self, delivery: Delivery) -> Outcome:
        import hvac
        from hvac import exceptions as vault_errors

        if not (self.vault_addr and self.vault_token):
            return Outcome(ok=False, error="VAULT_ADDR and VAULT_TOKEN must be set for Vault consumers")
        session = requests.Session()
        session.hooks["response"].append(_refuse_redirects)  # hvac would follow them, and a 3xx is no error to it
        client = hvac.Client(
            url=self.vault_addr,
            token=self.vault_token,
            namespace=self.vault_namespace,
            timeout=self.timeout,
            session=session,
            allow_redirects=False,
        )
        try:
            client.secrets.kv.v2.create_or_update_secret(
                path=delivery.config["path"], secret=delivery.data, mount_point=delivery.config.get("mount", "secret")
            )
        except RedirectRefused as exc:
            return Outcome(
                ok=False,
                error=f"Vault answered {exc} (redirects are not followed: set VAULT_ADDR to the final address)",
            )
        except vault_errors.VaultError as exc:
            status = _vault_status(exc)
            errors = "; ".join(exc.errors or []) if exc.errors else type(exc).__name__
            retry = retryable_status(status) if status else isinstance(exc, vault_errors.UnexpectedError)
            return Outcome(ok=False, retry=retry, error=f"Vault {status or ''} {errors}".replace("  ", " "))
        finally:
            client.adapter.close()
        return DELIVERED


def _vault_status(exc: Exception) -> int:
    from hvac import exceptions as vault_errors

    statuses = {
        vault_errors.InvalidRequest: 400,
        vault_errors.Unauthorized: 401,
        vault_errors.Forbidden: 403,
        vault_errors.InvalidPath: 404,
        vault_errors.RateLimitExceeded: 429,
        vault_errors.InternalServerError: 500,
        vault_errors.VaultNotInitialized: 501,
        vault_errors.BadGateway: 502,
        vault_errors.VaultDown: 503,
    }
    return statuses.get(type(exc), 0)


def _aws_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _aws_outcome(exc: Exception) -> Outcome:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return Outcome(ok=False, error="no AWS credentials: set the standard AWS variables or a role")
    if not isinstance(exc, ClientError):  # timeouts and lost connections
        return Outcome(ok=False, retry=True, error=type(exc).__name__)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = _aws_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    throttled = code in ("ThrottlingException", "TooManyUpdates", "ThrottledException")
    return Outcome(ok=False, retry=throttled or retryable_status(status), error=f"AWS {code}: {message}".strip())
