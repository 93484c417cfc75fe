"""``make bench``: runs every benchmark module in bench/ and writes bench/RESULTS.md.

Each module ``bench/<name>.py`` defines ``run() -> str`` returning a Markdown section (heading, table, notes).
``python -m bench ack_latency`` runs just one.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )


def main(names: list[str]) -> None:
    modules = names or sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))
    sections = []
    for name in modules:
        print(f"running bench/{name}.py ...", file=sys.stderr)
        sections.append(importlib.import_module(f"bench.{name}").run())
    header = f"# Benchmark results\n\nMachine: {machine()}  \nDate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
    (HERE / "RESULTS.md").write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
