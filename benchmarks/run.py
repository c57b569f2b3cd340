"""Run the benchmarks and write their sections of docs/performance.md (`make bench`).

    python benchmarks/run.py                      # every section (about an hour on 2 cores)
    python benchmarks/run.py overhead latency     # only these; the other sections are kept

Each section is replaced between its markers and stamped with the date and the machine it was
measured on, so a partial re-run never passes off old figures as new. Within a section every
figure comes from one run, side by side (ratios are what to read on a shared machine).
"""

import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from kdrun.report import docfigs

sys.path.insert(0, str(Path(__file__).parent))

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def _sections() -> dict[str, Callable[[], list[str]]]:
    import core
    import data
    import fingerprint
    import latency
    import layout
    import loader
    import options
    import overhead
    import stems
    import step_costs
    import storage
    import sweep
    import torchdistill_compare
    import views

    return {
        "overhead": overhead.measure,
        "step_costs": step_costs.measure,
        "options": options.measure,
        "sweep": sweep.measure,
        "torchdistill": torchdistill_compare.measure,
        "latency": latency.measure,
        "layout": layout.measure,
        "core": core.measure,
        "data": data.measure,
        "loader": loader.measure,
        "storage": storage.measure,
        "fingerprint": fingerprint.measure,
        "views": views.measure,
        "stems": stems.measure,
    }


HEADER = [
    "# Performance",
    "",
    "Written by `make bench` (`python benchmarks/run.py [section ...]`). Each section says when and on",
    "which machine it was measured; within a section the figures come from one run, side by side.",
    "This machine is shared and noisy: read the ratios, not the absolute times.",
    "",
]


def _machine() -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def write(name: str, lines: list[str]) -> None:
    """Replace section ``name`` of the doc (or append it), stamped with date and machine."""
    text = DOC.read_text() if DOC.exists() else "\n".join(HEADER) + "\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = f"*Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {_machine()}.*"
    block = "\n".join([start, *lines[:2], stamp, "", *lines[2:], end])
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text)


def main(names: list[str]) -> None:
    sections = _sections()
    unknown = [n for n in names if n not in sections]
    if unknown:
        sys.exit(f"unknown section(s) {', '.join(unknown)}: allowed: {', '.join(sections)}")
    for name in names or list(sections):
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        lines = sections[name]()
        write(name, lines)
        print("\n".join(lines), f"({time.perf_counter() - started:.0f} s)", sep="\n", flush=True)
    print(f"wrote {DOC}")
    for path in docfigs.refresh(DOC.parents[1]):  # figures whose records a section refreshed
        print(f"rewrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
