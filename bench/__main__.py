"""``make bench``: runs every benchmark module in bench/ and writes bench/RESULTS.md.

Each module ``bench/<name>.py`` defines ``run() -> str`` returning a Markdown section (heading, table, notes).
``python -m bench ack_latency`` runs just one and keeps the other sections of RESULTS.md as they were.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS.md"


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


def section(name: str, body: str) -> str:
    stamp = f"_bench/{name}.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}_"
    return f"<!-- bench:{name} -->\n{body.strip()}\n\n{stamp}\n<!-- /bench:{name} -->"


def existing_sections() -> dict[str, str]:
    """Sections already in RESULTS.md, so running one benchmark keeps the others' results."""
    if not RESULTS.exists():
        return {}
    pattern = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.S)
    return {m.group(1): m.group(0) for m in pattern.finditer(RESULTS.read_text())}


def main(names: list[str]) -> None:
    available = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))
    unknown = sorted(set(names) - set(available))
    if unknown:
        sys.exit(f"no benchmark named {', '.join(unknown)}; available: {', '.join(available)}")
    sections = existing_sections()
    for name in names or available:
        print(f"running bench/{name}.py ...", file=sys.stderr)
        sections[name] = section(name, importlib.import_module(f"bench.{name}").run())
    header = "# Benchmark results\n\nWritten by `make bench`; each section names its machine and date.\n"
    RESULTS.write_text(header + "\n" + "\n\n".join(sections[n] for n in available if n in sections) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
