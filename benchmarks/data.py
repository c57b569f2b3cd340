"""Peak memory of a streamed image-folder run: 2,000 vs 20,000 generated 64x64 PNGs, same work.

    python benchmarks/data.py        # or: make bench SECTIONS=data

Both runs train and evaluate the same number of batches (``trainer.limit_*_batches``), so what
differs is only the size of the folder: with ``dataset.storage=stream`` memory must not grow
with it (the target: the larger set adds at most 25% peak RSS).
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (2_000, 20_000)
CLASSES = 10
OVERRIDES = [
    "dataset=imagefolder",
    "dataset.storage=stream",
    "dataset.image_size=64",
    "dataset.num_workers=2",
    "dataset.split.val=500",
    "dataset.split.test=500",
    "teacher=cnn",
    "student=cnn",
    "epochs=1",
    "teacher.epochs=1",
    "+trainer.limit_train_batches=20",
    "+trainer.limit_val_batches=4",
    "measure.min_run_time=0.05",
    "recalibrate_bn=false",  # a pass over the whole training split: work that grows with the set
    "logger=none",
]


def write_pngs(root: Path, count: int) -> None:
    """``count`` random 64x64 RGB PNGs in CLASSES class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"c{c}").mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"c{i % CLASSES}" / f"{i:06d}.png", compress_level=1)


def peak_rss_mb(root: Path, work: Path) -> tuple[float, float]:
    """Peak resident memory (MB) of the largest process of one `kdrun train`, and its wall time."""
    command = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "kdrun",
        "train",
        f"dataset.root={root}",
        f"hydra.run.dir={work}/run",
        f"paths.output_root={work}",
        *OVERRIDES,
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=work, env={**os.environ})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return kb / 1024, wall


def measure() -> list[str]:
    """Markdown lines: peak RSS per folder size and the ratio."""
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in SIZES:
            root, work = Path(tmp, f"png{count}"), Path(tmp, f"work{count}")
            work.mkdir()
            write_pngs(root, count)
            rows[count] = peak_rss_mb(root, work)
    small, large = (rows[c][0] for c in SIZES)
    lines = [
        "## Streamed image folder: peak memory vs folder size",
        "",
        f"`kdrun train {' '.join(OVERRIDES)}` on generated 64x64 PNGs in {CLASSES} class folders;",
        "the same batches trained and evaluated at both sizes. Peak RSS: the largest single process",
        "(`/usr/bin/time -v`).",
        "",
        "| images | peak RSS | wall |",
        "|---:|---:|---:|",
        *(f"| {c:,} | {rows[c][0]:.0f} MB | {rows[c][1]:.0f} s |" for c in SIZES),
        "",
        f"20,000 vs 2,000 images: x{large / small:.2f} peak RSS (target: at most x1.25).",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))
