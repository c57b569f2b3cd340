"""Wall time of the core runner's commands, side by side in one run.

    python benchmarks/core.py            # this section only; `make bench` runs every benchmark

Each command runs as a real `kdrun train` subprocess in a fresh output folder (empty cache);
the headline command then runs a second time on the warm cache. Figures are wall-clock seconds on
this machine; the ratios (warm / cold, warm / student phase) are what transfers to other machines.
The default command's results.json becomes docs/records/default_run.json, the source of the doc's
"Default run" figure (`python -m kdrun.report.docfigs` regenerates it).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kdrun.report import docfigs

REPO = Path(__file__).resolve().parents[1]
HEADLINE = ["teacher=resnet50", "student=mobilenet_v3", "T=4"]
CASES = [
    ("smoke", ["debug=smoke"], "< 30 s"),
    ("default", [], "< 180 s"),
    ("headline, empty cache", HEADLINE, "< 900 s"),
    ("headline, cached teacher+baseline", HEADLINE, "≈ student phase"),
]


def run(args: list[str], root: Path, name: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "kdrun",
        "train",
        *args,
        f"paths.output_root={root}",
        f"hydra.run.dir={root}/runs/{name}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    results = json.loads((root / "runs" / name / "results.json").read_text())
    lines = proc.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "kdrun: " in line)
    table = "\n".join(line for line in lines[first:] if not line.startswith("results:"))
    return {"wall_s": wall, "results": results, "table": table}


def measure() -> list[str]:
    """Run every case; return the markdown section."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = {
            "smoke": "a",
            "default": "b",
            "headline, empty cache": "c",
            "headline, cached teacher+baseline": "c",
        }
        for i, (label, args, target) in enumerate(CASES):
            out = run(args, Path(tmp) / roots[label], f"run{i}")
            rows.append((label, args, target, out))
            print(
                f"{label:<36} {out['wall_s']:7.1f} s  phases {out['results']['timings_s']}",
                flush=True,
            )
    return section(rows)


def section(rows: list) -> list[str]:
    default, cold, warm = rows[1][3], rows[2][3], rows[3][3]
    record = docfigs.make_record([default["results"]], "kdrun train", REPO, "Run by make bench (core).")
    docfigs.save_record(REPO, "default_run", record)
    lines = [
        "## Core runner: wall time per command",
        "",
        "Each command is a real `kdrun train` subprocess in a fresh output folder (`benchmarks/core.py`).",
        "",
        "| command | target | wall s | teacher s | baseline s | student s | evaluate s "
        "| student top-1 | KD gain (pts) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, args, target, out in rows:
        r, t = out["results"], out["results"]["timings_s"]
        cmd = " ".join(["kdrun train", *args])
        lines.append(
            f"| `{cmd}` ({label}) | {target} | {out['wall_s']:.1f} | {t['teacher']:.1f} "
            f"| {t['baseline']:.1f} | {t['student']:.1f} | {t['evaluate']:.1f} "
            f"| {100 * r['student']['top1']:.2f} | {100 * r['deltas']['kd_gain_top1']:+.2f} |"
        )
    ratio = warm["wall_s"] / cold["wall_s"]
    overhead = warm["wall_s"] - warm["results"]["timings_s"]["student"]
    lines += [
        "",
        f"Second headline run / first: **{ratio:.2f}**. The second run's wall time is its student phase "
        f"plus {overhead:.1f} s of start-up, data loading and evaluation: the cache makes it cost only "
        "the distilled student.",
        "",
        "## Headline run (`kdrun train teacher=resnet50 student=mobilenet_v3 T=4`, empty cache)",
        "",
        "```",
        cold["table"].strip(),
        "```",
        "",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))
