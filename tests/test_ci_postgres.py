"""Under CI, PostgreSQL tests fail (never skip) when the server cannot be reached; locally they skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/test"


def run_postgres_test(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DATABASE_URL_TEST"] = UNREACHABLE
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_migrations.py", "-k", "postgres", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("ci", "expect_failure"), [(True, True), (False, False)])
def test_unreachable_postgres(ci, expect_failure):
    result = run_postgres_test(ci)
    assert "PostgreSQL unreachable" in result.stdout
    assert (result.returncode != 0) is expect_failure, result.stdout[-2000:]


def test_ci_script_starts_postgres_and_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "pg_ctlcluster --skip-systemctl-redirect" in script
    assert "make test" in script
