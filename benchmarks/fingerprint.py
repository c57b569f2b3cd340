"""What ``dataset.fingerprint=content`` costs at start over ``stat``, side by side in one run.

    python benchmarks/fingerprint.py        # or: make bench SECTIONS=fingerprint

60,000 28x28 8-bit grey PNGs of noise (MNIST's training-set count, files a little larger than its
digits) in 10 class folders, then a streamed set's file fingerprint taken with ``stat`` and with
``content`` (SHA-256 of every file's bytes), each three times, ABAB. The files were just written,
so they are in the page cache: a first read from a cold disk or a network file system adds the
time to read every byte once. A 256 MiB file gives the hash rate on large files (IDX, CIFAR batches).
"""

import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILES, CLASSES, ROUNDS = 60_000, 10, 3


def write_pngs(root: Path) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(FILES):
        folder = root / str(i % CLASSES)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def timed(paths: list[Path], how: str) -> float:
    from kdrun.data.stream import FileImages

    images = FileImages(paths, 1, 28, None, False)  # a fresh object: no content hash kept from before
    started = time.perf_counter()
    images.fingerprint(hashlib.sha256(), how)
    return time.perf_counter() - started


def large_file_rate(folder: Path) -> float:
    """MB/s of the content hash over one 256 MiB file (page cache warm)."""
    from kdrun.data.fingerprint import content_hash

    path = folder / "large.bin"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 256 << 20, dtype=np.uint8).tobytes())
    started = time.perf_counter()
    content_hash(path)
    return (256 << 20) / 1e6 / (time.perf_counter() - started)


def measure() -> list[str]:
    """Markdown lines: seconds and files/s of each fingerprint over 60,000 PNGs, MB/s on a large file."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_pngs(Path(tmp, "pngs"))
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        times: dict[str, list[float]] = {"stat": [], "content": []}
        for _ in range(ROUNDS):
            for how in times:
                times[how].append(timed(paths, how))
        rate = large_file_rate(Path(tmp))
    best = {how: min(values) for how, values in times.items()}
    rows = [
        f"| {how} | {best[how]:.2f} | {statistics.median(times[how]):.2f} | {FILES / best[how]:,.0f} | "
        + (f"{megabytes / best[how]:.0f} |" if how == "content" else "- |")
        for how in times
    ]
    return [
        "## Streamed data fingerprint: stat vs content",
        "",
        f"`python benchmarks/fingerprint.py`: {FILES:,} 28x28 grey PNGs ({megabytes:.0f} MB, page cache",
        f"warm) fingerprinted {ROUNDS} times each, ABAB; load average at the start: {load:.1f} on",
        f"{os.cpu_count()} cores. SHA-256 over one 256 MiB file: {rate:.0f} MB/s.",
        "",
        "| dataset.fingerprint | best s | median s | files/s | MB/s |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"content / stat: {best['content'] / best['stat']:.1f}x at start; it is paid once per run.",
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print("\n".join(measure()))
