"""Same images, same job: ``dataset.storage=memory`` vs ``stream`` over 3 seeds (top-1 must agree).

    python benchmarks/storage.py        # or: make bench SECTIONS=storage

scikit-learn's 1,797 digits written as 8-bit PNGs in class folders, then the default job (cnn
teacher, mlp student, vanilla KD) at a small budget as one ``kdrun train -m`` over both storages
and three seeds. Memory holds the decoded bytes and normalises each batch; stream decodes every
file per sample in loader workers: the inputs are the same numbers, so the top-1 should be too.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2)
OVERRIDES = [
    "dataset=imagefolder",
    "dataset.image_size=16",
    "dataset.channels=1",
    "dataset.augment=none",  # the same inputs every epoch: the comparison is of storage alone
    "epochs=5",
    "teacher.epochs=5",
    "measure.min_run_time=0.05",
    "logger=none",
]


def write_digits(root: Path) -> None:
    """The 8x8 digits (0..16) as 8-bit grey PNGs (0..255), one folder per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(image * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")


def run(root: Path, work: Path) -> tuple[dict[str, list[dict]], float]:
    """One multirun over storage x seed; the results.json of each point, by storage; wall seconds."""
    command = [
        sys.executable,
        "-m",
        "kdrun",
        "train",
        "-m",
        f"dataset.root={root}",
        "dataset.storage=memory,stream",
        f"seed={','.join(map(str, SEEDS))}",
        f"paths.output_root={work}",
        f"hydra.sweep.dir={work}/sweep",
        "hydra.sweep.subdir=${hydra.job.num}",
        *OVERRIDES,
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=work, env={**os.environ})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    found: dict[str, list[dict]] = {"memory": [], "stream": []}
    for path in sorted((work / "sweep").glob("*/results.json")):
        results = json.loads(path.read_text())
        found[results["config"]["dataset"]["storage"]].append(results)
    return found, wall


def _mean_std(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def measure() -> list[str]:
    """Markdown lines: top-1 of baseline and student per storage, per seed and mean ± std."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp, "digits"), Path(tmp, "work")
        work.mkdir()
        write_digits(root)
        found, wall = run(root, work)
    rows, top1 = [], {}
    for storage in ("memory", "stream"):
        points = sorted(found[storage], key=lambda r: r["config"]["seed"])
        top1[storage] = {
            role: [r[role]["top1"] for r in points] for role in ("teacher", "baseline", "student")
        }
        teacher, baseline, student = (top1[storage][role] for role in ("teacher", "baseline", "student"))
        per_seed = ", ".join(f"{100 * v:.1f}" for v in student)
        cells = (f"{100 * teacher[0]:.2f}", _mean_std(baseline), _mean_std(student), per_seed)
        rows.append(f"| {storage} | {' | '.join(cells)} |")
    same = [
        role for role in ("teacher", "baseline", "student") if top1["memory"][role] == top1["stream"][role]
    ]
    return [
        "## Same images in memory and streamed: top-1 over 3 seeds",
        "",
        f"`kdrun train -m dataset.storage=memory,stream seed=0,1,2 {' '.join(OVERRIDES)}` on scikit-learn's",
        "1,797 digits written as 8-bit PNGs (180 val / 360 test held out by the fixed split); top-1 %",
        f"on the test images. One sweep, {wall:.0f} s; load average at the start: {load:.1f}.",
        "",
        "| storage | teacher | scratch student | distilled student | distilled, per seed |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        f"Identical in both storages, seed for seed: {', '.join(same) or 'none'} (each storage has its own",
        "data fingerprint, so its own cached teacher and teacher logits).",
    ]


if __name__ == "__main__":
    print("\n".join(measure()))
