"""Network settings (INTERFACE.md environment table): where the bot listens, and that the services it sends tokens
and keys to are reached over https (plain http only on this machine). A refusal stops start-up with a sentence,
in ``KEYBOT_LANGUAGE``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.config import ConfigError
from tests.conftest import MASTER_KEY, make_settings

URLS = {
    "SLACK_API_URL": "slack.com/api/",
    "COUPANG_API_URL": "api-gateway.coupang.com",
    "VAULT_ADDR": "vault.example.com:8200",
    "KEYBOT_HEARTBEAT_URL": "hc-ping.com/abc",
}


@pytest.mark.parametrize("name", sorted(URLS))
def test_a_service_url_must_be_https_unless_it_is_on_this_machine(name):
    rest = URLS[name]
    with pytest.raises(ConfigError, match=f"^{name} must be an https:// URL such as .*127.0.0.1 or localhost"):
        make_settings(**{name: f"http://{rest}"})
    for allowed in (f"https://{rest}", "http://127.0.0.1:8200/x", "http://localhost:9999", "http://[::1]:8080"):
        make_settings(**{name: allowed})
    for refused in ("ftp://example.com", "https://", "http://127.0.0.1.example.com/", "http://user@10.0.0.5/"):
        with pytest.raises(ConfigError):
            make_settings(**{name: refused})


def test_the_refusal_is_in_the_operator_s_language(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KEYBOT_", "VAULT_", "DATABASE_URL"))}
    env |= {"KEYBOT_MASTER_KEY": MASTER_KEY, "KEYBOT_LANGUAGE": "ko", "VAULT_ADDR": "http://vault.internal:8200"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'keybot.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "status"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "VAULT_ADDR" in done.stderr and "https://" in done.stderr and "Traceback" not in done.stderr
    assert "must be an https" not in done.stderr  # Korean, not the English source


def test_bind_and_ops_address_defaults_and_values():
    default = make_settings()
    assert (default.bind, default.ops_addr) == ("0.0.0.0", None)
    assert make_settings(KEYBOT_BIND="127.0.0.1").bind == "127.0.0.1"
    assert make_settings(KEYBOT_BIND="::1").bind == "::1"
    assert make_settings(KEYBOT_BIND="localhost").bind == "localhost"
    assert make_settings(KEYBOT_OPS_ADDR="127.0.0.1:9464").ops_addr == ("127.0.0.1", 9464)
    assert make_settings(KEYBOT_OPS_ADDR="[::1]:9464").ops_addr == ("::1", 9464)
    assert make_settings(KEYBOT_OPS_ADDR="0.0.0.0:9464").ops_addr == ("0.0.0.0", 9464)


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("KEYBOT_BIND", "0.0.0.0:3000", "KEYBOT_BIND='0.0.0.0:3000' must be an address to listen on"),
        ("KEYBOT_BIND", "every interface", "must be an address to listen on: 0.0.0.0"),
        ("KEYBOT_OPS_ADDR", "9464", "KEYBOT_OPS_ADDR='9464' must be HOST:PORT, e.g. 127.0.0.1:9464"),
        ("KEYBOT_OPS_ADDR", "127.0.0.1:99999", "must be HOST:PORT"),
        ("KEYBOT_OPS_ADDR", "::1:9464", "([::1]:9464 for IPv6)"),
    ],
)
def test_a_bad_listen_address_stops_start_up_with_a_sentence(name, value, sentence):
    with pytest.raises(ConfigError) as refused:
        make_settings(**{name: value})
    assert sentence in str(refused.value)
