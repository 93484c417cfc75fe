"""The lock files (SECURITY.md "A tampered dependency"): every package CI, the image and `make` install is pinned
with hashes, the pins satisfy pyproject.toml, nothing a locked package needs is missing, and pip-audit over the
lock fails on a known vulnerability."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME, DEV = ROOT / "requirements.lock", ROOT / "requirements-dev.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.+?))?\s*\\?$")


def pins(lock: Path) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, sha256 hashes)} of a lock written by `make lock`."""
    found: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        pinned = _PIN.match(line)
        if pinned:
            current = canonicalize_name(pinned.group(1))
            found[current] = (Version(pinned.group(2)), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            found[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.startswith((" ", "#")):
            raise AssertionError(f"{lock.name}: a line that is not a hashed pin: {line!r}")
    return found


def required(extras: tuple[str, ...] = ()) -> list[Requirement]:
    """pyproject.toml's dependencies (with these extras) and its build backend."""
    listed = list(PYPROJECT["project"]["dependencies"]) + list(PYPROJECT["build-system"]["requires"])
    for extra in extras:
        listed += PYPROJECT["project"]["optional-dependencies"][extra]
    return [Requirement(r.split("#")[0]) for r in listed]


@pytest.mark.parametrize(("lock", "extras"), [(RUNTIME, ()), (DEV, ("dev",))], ids=["runtime", "dev"])
def test_every_dependency_in_pyproject_is_pinned_with_hashes_at_a_version_it_accepts(lock, extras):
    locked = pins(lock)
    for requirement in required(extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in {lock.name}: run `make lock`"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{lock.name} pins {name}=={version}"
    for name, (version, hashes) in locked.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}=={version} has no hash"


def test_the_dev_lock_installs_the_same_runtime_packages_as_the_image():
    runtime, dev = pins(RUNTIME), pins(DEV)
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}


def closure(requirements: list[Requirement]) -> Iterator[tuple[str, Requirement]]:
    """(who needs it, requirement) for every package these need, transitively, on this interpreter — read from
    the installed packages' metadata, which `make` installed from the dev lock."""
    environment: dict[str, str] = dict(default_environment())
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, Requirement, str]] = [("pyproject.toml", r, "") for r in requirements]
    while todo:
        parent, requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        yield parent, requirement
        for wanted in requirement.extras or {""}:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            for line in metadata.requires(name) or []:
                todo.append((name, Requirement(line), wanted))


def test_nothing_a_locked_package_needs_is_missing_from_the_lock():
    locked = pins(DEV)
    for parent, requirement in closure(required(("dev",))):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{parent} needs {requirement}, which requirements-dev.lock does not pin"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), f"{parent} needs {requirement}"
        assert Version(metadata.version(name)) == locked[name][0], f"{name} installed is not the locked version"


def test_make_ci_and_the_image_install_from_the_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes --no-deps -r requirements-dev.lock" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert "pip install --upgrade" not in makefile and "'.[dev]'" not in makefile  # nothing resolved on the day
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    assert [line for line in re.findall(r"pip install[^\n]*", dockerfile) if "--no-deps" not in line] == []
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make audit$", ci, re.M) and re.search(r"^make test\b", ci, re.M)
    assert "pip install" not in ci  # everything goes through make's locked install


# ---------------------------------------------------------------- pip-audit, against a local OSV


class FakeOSV(ThreadingHTTPServer):
    """OSV's query API: ``vulnerable`` maps a package name to the advisory it has at any version."""

    def __init__(self, vulnerable: dict[str, str]) -> None:
        self.vulnerable = vulnerable
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = query["package"]["name"]
            advisory = self.server.vulnerable.get(name)  # type: ignore[attr-defined]
            answer: dict[str, Any] = {}
            if advisory:
                affected = {
                    "package": {"name": name, "ecosystem": "PyPI"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}],
                }
                answer = {"vulns": [{"id": advisory, "summary": "a test advisory", "affected": [affected]}]}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass


def run_audit(vulnerable: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """`.ci/audit.py` over the runtime lock against a fake OSV (None: nothing listening)."""
    server = FakeOSV(vulnerable or {})
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    if vulnerable is None:
        server.server_close()
    else:
        Thread(target=server.serve_forever, daemon=True).start()
    try:
        return subprocess.run(
            [sys.executable, ".ci/audit.py", "--service", "osv", "--osv-url", url, "requirements.lock"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        if vulnerable is not None:
            server.shutdown()
            server.server_close()


def test_audit_fails_on_a_known_vulnerability_and_passes_a_clean_lock():
    version = pins(RUNTIME)["requests"][0]
    found = run_audit({"requests": "GHSA-test-0001"})
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"requests {version} has GHSA-test-0001 (fixed in: 999.0)" in found.stdout

    clean = run_audit({})
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"no known vulnerability in \d+ packages", clean.stdout)


def test_audit_skips_with_a_note_only_when_no_database_answers():
    unreachable = run_audit(None)
    assert unreachable.returncode == 0, unreachable.stdout + unreachable.stderr
    assert "NOTE requirements.lock: not audited" in unreachable.stdout
