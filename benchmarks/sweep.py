"""Cost of a T x alpha sweep against its parts, measured side by side in one run.

    python benchmarks/sweep.py

A sweep of N points should cost one teacher + one baseline + N students (+ start-up): the ratio
sweep_wall / (teacher + baseline + N * student) is reported, with the parts timed by one
standalone run of the same settings (its phase timings in results.json) in a separate cache.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The default job, shortened: a real T x alpha grid on the default data and models.
GRID, SETTINGS = {"T": (1, 2, 4), "alpha": (0.5, 0.9)}, ["epochs=10", "teacher.epochs=5"]


def kdrun(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdrun", "train", *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def measure() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        solo_dir, sweep_dir = Path(tmp, "solo"), Path(tmp, "sweep")
        solo_dir.mkdir()
        sweep_dir.mkdir()
        solo_wall = kdrun([*SETTINGS, "hydra.run.dir=outputs/runs/solo"], solo_dir)
        phases = json.loads((solo_dir / "outputs/runs/solo/results.json").read_text())["timings_s"]
        grid = [f"{key}=" + ",".join(str(v) for v in values) for key, values in GRID.items()]
        sweep_wall = kdrun(["-m", *SETTINGS, *grid, "hydra.sweep.dir=outputs/multirun/s"], sweep_dir)
    n = len(GRID["T"]) * len(GRID["alpha"])
    student = phases["student"] + phases["evaluate"]
    parts = phases["teacher"] + phases["baseline"] + n * student
    startup = solo_wall - sum(phases.values())
    lines = [
        f"## Sweep cost (`kdrun train -m {' '.join(SETTINGS + grid)}`, N = {n})",
        "",
        "| quantity | seconds |",
        "|---|---:|",
        f"| teacher training (standalone run) | {phases['teacher']:.1f} |",
        f"| baseline training (standalone run) | {phases['baseline']:.1f} |",
        f"| one student: training + evaluation (standalone run) | {student:.1f} |",
        f"| process start-up, data loading (standalone run) | {startup:.1f} |",
        f"| sweep wall time | {sweep_wall:.1f} |",
        "",
        f"sweep / (teacher + baseline + N·student) = **{sweep_wall / parts:.2f}**; with one start-up "
        f"added to the parts: **{sweep_wall / (parts + startup):.2f}**. The points of a sweep share the "
        "process, the loaded data and the teacher/baseline measurements, which a standalone run "
        "pays for each time. Target: sweep / parts <= 1.10.",
        "",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))
