"""Fashion-MNIST's 55,000 training images, read per storage: build time, one pass, peak memory.

    python benchmarks/fashion_mnist_stream.py [ROOT]   # ROOT: the four .gz files (default: Debian's folder)

Each variant runs in its own process (its peak RSS is its own): ``dataset.storage=memory`` on the
``.gz`` files, ``stream`` on the same ``.gz`` files (decompressed into memory, served per sample),
and ``stream`` on the raw IDX files in torchvision's layout (memory-mapped, pages read as touched).
One pass over the training split at batch 128, in the main process (``num_workers=0``).
"""

import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from tests.conftest import make_cfg
from kdrun.data import build_datamodule
started = time.perf_counter()
data = build_datamodule(make_cfg("dataset=fashion_mnist", *sys.argv[1:]).dataset)
built = time.perf_counter() - started
started, images = time.perf_counter(), 0
for x, _, _ in data.loader("train", batch_size=128):
    images += len(x)
passed = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"build_s": built, "pass_s": passed, "images": images, "peak_rss_mb": rss}))
"""


def variant(*overrides: str) -> dict:
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *overrides], cwd=repo, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(root: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in root.glob("*-ubyte.gz"):
            (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
        stream = ("dataset.storage=stream", "dataset.num_workers=0")
        rows = {
            "memory, .gz": variant(f"dataset.root={root}", "dataset.storage=memory"),
            "stream, .gz": variant(f"dataset.root={root}", *stream),
            "stream, raw (mapped)": variant(f"dataset.root={tmp}", *stream),
        }
    print("| storage, files | build s | one pass s | images/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        rate = r["images"] / r["pass_s"]
        print(f"| {name} | {r['build_s']:.1f} | {r['pass_s']:.1f} | {rate:,.0f} | {r['peak_rss_mb']:.0f} |")
    print(time.strftime("%Y-%m-%d %H:%M"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/usr/share/datasets/fashion-mnist"))
