"""Run every benchmark in one process tree and write docs/performance.md (`make bench`)."""

import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import core  # noqa: E402
import layout  # noqa: E402
import sweep  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def main() -> None:
    header = [
        "# Performance",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}. Measured {time.strftime('%Y-%m-%d')} with `make bench` "
        "(`python benchmarks/run.py`); every figure below comes from that one run.",
        "",
    ]
    lines = header + layout.measure() + [""] + core.measure() + [""] + sweep.measure()
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
