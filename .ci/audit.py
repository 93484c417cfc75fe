"""pip-audit over the lock files (``make audit``, run by .ci/run): a known vulnerability in a locked package fails.

    python .ci/audit.py requirements.lock requirements-dev.lock
    python .ci/audit.py --service osv --osv-url http://127.0.0.1:8080/v1/query requirements.lock   # a mirror

Each lock is audited as pinned (``--require-hashes --disable-pip``: nothing is installed or resolved again)
against PyPI's vulnerability data, then OSV's if PyPI's cannot be read. Only when neither database answers for any
package is the audit skipped, with a note saying so; a database that answers for some packages but not others
fails, since an unaudited package is not a clean one. Exit 0: clean (or skipped with the note); 1: vulnerable or
incomplete.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

SERVICES = ("pypi", "osv")


def run_audit(lock: str, service: str, osv_url: str | None) -> tuple[list[dict[str, Any]] | None, str]:
    """(pip-audit's dependency list, or None when the service could not be asked; what went wrong)."""
    command = [sys.executable, "-m", "pip_audit", "-r", lock, "--require-hashes", "--disable-pip", "-s", service]
    if service == "osv" and osv_url:
        command += ["--osv-url", osv_url]
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [*command, "--progress-spinner", "off", "--format", "json"], capture_output=True, text=True, check=False
    )
    try:
        return json.loads(done.stdout)["dependencies"], ""
    except (ValueError, KeyError):
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return None, last[:300]


def audit(lock: str, services: list[str], osv_url: str | None = None) -> int:
    problems: list[str] = []
    for service in services:
        dependencies, error = run_audit(lock, service, osv_url)
        if dependencies is None:
            problems.append(f"{service}: {error}")
            continue
        vulnerable = [d for d in dependencies if d.get("vulns")]
        skipped = [d for d in dependencies if d.get("skip_reason")]
        if vulnerable:
            for dep in vulnerable:
                for vuln in dep["vulns"]:
                    fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
                    print(f"{lock}: {dep['name']} {dep['version']} has {vuln['id']} (fixed in: {fixed})")
            print(f"{lock}: bump these in pyproject.toml or with `make lock LOCK_ARGS='--upgrade-package NAME'`")
            return 1
        if not skipped:
            print(f"{lock}: no known vulnerability in {len(dependencies)} packages ({service} database)")
            return 0
        if len(skipped) < len(dependencies):
            for dep in skipped:
                print(f"{lock}: {dep['name']} {dep.get('version', '')} was not audited: {dep['skip_reason']}")
            return 1
        problems.append(f"{service}: no package found ({skipped[0]['skip_reason']})")
    print(f"NOTE {lock}: not audited, no vulnerability database could be reached from here; " + "; ".join(problems))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="pip-audit over lock files")
    parser.add_argument("locks", nargs="*", default=["requirements.lock", "requirements-dev.lock"])
    parser.add_argument("--service", action="append", choices=SERVICES, help="ask only this database (repeatable)")
    parser.add_argument("--osv-url", help="an OSV API other than api.osv.dev")
    args = parser.parse_args(argv)
    return max((audit(lock, args.service or list(SERVICES), args.osv_url) for lock in args.locks), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
